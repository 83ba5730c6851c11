//! The last values: logged at once when they are final, then served to
//! one more scrape, or pushed.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::collect::Lifecycle;
use super::hub::Hub;
use crate::ShutdownReason;
use crate::component::BoxFuture;
use crate::fmt::Seconds;

impl Hub {
    /// The final step, at Closing, within `bound`. The values are logged
    /// before it returns, so that nothing can cut them off; the future
    /// waits for a scrape that saw them, and pushes them when none came.
    pub(crate) fn final_step(
        self: Arc<Self>,
        bound: Duration,
        reason: Option<ShutdownReason>,
    ) -> BoxFuture<()> {
        // Published just before Closing; a forced shutdown never gets here.
        self.scrapes.mark_final();
        let app = self
            .app
            .get()
            .map(|a| a.name().to_string())
            .unwrap_or_default();
        tracing::info!(target: "lameduck::metrics", app = %app, values = %self.final_values(), "final metrics");
        #[cfg(feature = "http")]
        let push = self.config().push.clone();
        #[cfg(not(feature = "http"))]
        let push: Option<std::convert::Infallible> = None;
        Box::pin(async move {
            #[cfg(feature = "http")]
            let push_timeout = push.as_ref().map_or(Duration::ZERO, |p| p.timeout);
            #[cfg(not(feature = "http"))]
            let push_timeout = Duration::ZERO;
            let push_time = push_timeout.min(bound);
            let wait = bound.saturating_sub(push_time);
            let started = Instant::now();
            let upgraded = matches!(reason, Some(ShutdownReason::Upgraded { .. }));
            let skip = no_scrape(bound, push_timeout, self.scrapes.any(), upgraded);
            if skip.is_none() {
                let served = tokio::time::timeout(wait, self.scrapes.final_served()).await;
                if served.is_ok() {
                    tracing::info!(target: "lameduck::metrics", app = %app, waited_ms = started.elapsed().as_millis() as u64, "final scrape served");
                    return;
                }
            }
            let why = skip.unwrap_or_else(|| format!("no scrape within {}", Seconds(wait)));
            match push {
                #[cfg(feature = "http")]
                Some(push) => {
                    let body = self.encode_registry(false);
                    match tokio::time::timeout(push_time, push.put(body)).await {
                        Ok(Ok(())) => {
                            tracing::info!(target: "lameduck::metrics", app = %app, why = %why, url = %push.group_url(), "final metrics pushed to the Pushgateway");
                        }
                        Ok(Err(err)) => {
                            tracing::warn!(target: "lameduck::metrics", app = %app, why = %why, url = %push.group_url(), error = %err, "final metrics not pushed; they are in the log only");
                        }
                        Err(_) => {
                            tracing::warn!(target: "lameduck::metrics", app = %app, why = %why, url = %push.group_url(), timeout_ms = push_time.as_millis() as u64, "final metrics push timed out; they are in the log only");
                        }
                    }
                }
                #[allow(unreachable_patterns)]
                _ => {
                    tracing::info!(target: "lameduck::metrics", app = %app, why = %why, "no final scrape and no Pushgateway: the final metrics are in the log only");
                }
            }
        })
    }

    /// The registry `/metrics` serves, encoded: OpenMetrics text, or
    /// Prometheus text (0.0.4, what a Pushgateway takes).
    pub(super) fn encode_registry(&self, openmetrics: bool) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &registry)
        } else {
            prometheus_text::encode(&mut out, &registry)
        };
        // Writing to a String fails only when a collector does: say so
        // rather than serve half a page.
        if let Err(err) = encoded {
            tracing::warn!(target: "lameduck::metrics", error = %err, "encoding the metrics failed");
        }
        out
    }

    /// lameduck's own values, one `name{labels} value` per series that is
    /// not zero, joined with `; `: the final values as one log field.
    pub(super) fn final_values(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Lifecycle { hub: self.clone() }));
        let mut text = String::new();
        if prometheus_text::encode(&mut text, &registry).is_err() {
            return String::new();
        }
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.ends_with(" 0") && !l.ends_with(" 0.0"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Why the final values are not waited for by a scrape, if they are not:
/// `bound` is the budget's `final_scrape_timeout`, which the push's
/// `push_timeout` (zero: no push) is counted in. Said next to the push's
/// outcome, so it names what the time went to.
fn no_scrape(
    bound: Duration,
    push_timeout: Duration,
    scraped: bool,
    upgraded: bool,
) -> Option<String> {
    if bound.is_zero() {
        Some("final_scrape_timeout is 0: no scrape is waited for".to_string())
    } else if bound <= push_timeout {
        Some(format!(
            "no scrape is waited for: final_scrape_timeout ({}) leaves no wait beside the push's timeout ({})",
            Seconds(bound),
            Seconds(push_timeout)
        ))
    } else if !scraped {
        Some("nothing has scraped /metrics yet".to_string())
    } else if upgraded {
        Some("the new process answers on the admin socket".to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_push_that_takes_the_whole_final_scrape_timeout_is_said_so_not_a_budget_with_no_time() {
        let why = no_scrape(S, S, true, false).expect("no wait");
        assert!(why.contains("final_scrape_timeout (1s)"), "{why}");
        assert!(why.contains("the push's timeout (1s)"), "{why}");
        assert!(!why.contains("budget"), "{why}");
        assert!(
            no_scrape(Duration::ZERO, Duration::ZERO, true, false)
                .expect("no wait")
                .contains("final_scrape_timeout is 0")
        );
    }

    #[test]
    fn with_time_left_beside_the_push_a_scrape_is_waited_for_unless_none_will_come() {
        assert_eq!(no_scrape(2 * S, S, true, false), None);
        assert_eq!(
            no_scrape(2 * S, S, false, false).as_deref(),
            Some("nothing has scraped /metrics yet")
        );
        assert_eq!(
            no_scrape(2 * S, S, true, true).as_deref(),
            Some("the new process answers on the admin socket")
        );
    }
}
