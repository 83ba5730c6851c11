//! Lifecycle metrics (feature `metrics`), whose last values are never lost.
//!
//! [`Metrics`] observes an app: its phase, the work in flight, how long
//! each phase of the shutdown lasted, what the shutdown finished,
//! cancelled and aborted, restarts, upgrades, the budget's deadlines and
//! (with [`http::Server`](crate::http::Server)) requests by the phase they
//! ended in and connections by state. With feature `http`, every
//! [`Server::admin`](crate::http::Server::admin) listener of the app
//! serves them as `/metrics`, next to the probes; or serve them yourself
//! with [`Metrics::encode`], or put them into a registry of your own with
//! [`Metrics::collector`].
//!
//! # The final scrape
//!
//! The values that matter most — what the shutdown did — are only final at
//! its end, after the last regular scrape. So at Closing, once every
//! component has stopped and the counts are final, the app:
//!
//! 1. logs every non-zero value as one structured event (target
//!    `lameduck::metrics`, message `final metrics`): they are never simply
//!    gone;
//! 2. keeps the admin listener serving and waits, within the budget's
//!    [`final_scrape_timeout`](crate::Budget::final_scrape_timeout), for
//!    one scrape that *began* after they were final — unless nothing has
//!    scraped the metrics yet, or an upgrade's new process answers on the
//!    admin socket now;
//! 3. if none came, pushes them to a [`Pushgateway`] when one is set
//!    (features `metrics` and `http`; without `http` there is no push).
//!
//! Then Closing goes on: exporters' flushes, the report, the log flush.
//! Readiness is false throughout, liveness true.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use lameduck::metrics::{Metrics, Pushgateway};
//! use lameduck::{App, Budget, Component};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = Metrics::new()
//!     // Prometheus scrapes every 15 s: wait up to 16 s for its next scrape.
//!     .final_scrape(Duration::from_secs(16))
//!     .push(Pushgateway::new("http://127.0.0.1:9091")?);
//! let app = App::builder("orders")
//!     .budget(Budget::new(Duration::from_secs(45)))
//!     .metrics(&metrics)
//!     .component(Component::new("worker", |ctx| async move {
//!         ctx.ready();
//!         ctx.on_stopping().await;
//!         Ok(())
//!     }))
//!     .build()?;
//! // 16 s for the scrape + 1 s for the push, counted by the budget:
//! assert_eq!(app.timeline().final_scrape_timeout, Duration::from_secs(17));
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::AppHandle;

mod collect;
mod hub;
mod last;
#[cfg(feature = "http")]
mod push;

pub use collect::Lifecycle;
pub(crate) use hub::Hub;
#[cfg(feature = "http")]
pub use push::{DEFAULT_PUSH_TIMEOUT, PushError, Pushgateway};

/// The `Content-Type` of [`Metrics::encode`]'s text: OpenMetrics 1.0.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An app's lifecycle metrics; see the [module docs](self).
///
/// Give it to one app with
/// [`AppBuilder::metrics`](crate::AppBuilder::metrics). Clones share
/// everything: keep one to encode the metrics yourself.
#[derive(Clone)]
pub struct Metrics {
    hub: Arc<Hub>,
}

/// What the metrics were told before the app started.
#[derive(Clone, Default)]
pub(crate) struct Config {
    pub(crate) final_scrape: Option<Duration>,
    #[cfg(feature = "http")]
    pub(crate) push: Option<Pushgateway>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics in a registry of their own.
    pub fn new() -> Self {
        Self::with_registry(Registry::default())
    }

    /// Metrics added to `registry`, which `/metrics` then serves whole: an
    /// application's metrics and lameduck's share one endpoint, and the
    /// final scrape and push carry both.
    pub fn with_registry(mut registry: Registry) -> Self {
        let hub = Arc::new(Hub::new(Config::default(), Registry::default()));
        registry.register_collector(Box::new(Lifecycle { hub: hub.clone() }));
        *hub.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        Self { hub }
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn from_hub(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Waits up to `wait` at Closing for a scrape that saw the final
    /// values (default: no wait). Take the scrape interval plus a little:
    /// 16 s for Prometheus's 15 s. The budget counts it (with the push's
    /// timeout) as its
    /// [`final_scrape_timeout`](crate::Budget::final_scrape_timeout): set
    /// it here or there, not both.
    pub fn final_scrape(self, wait: Duration) -> Self {
        self.hub.config().final_scrape = Some(wait);
        self
    }

    /// Pushes the final values to `gateway` when no scrape came for them
    /// (features `metrics` and `http`). Its timeout is counted in the
    /// budget's final scrape timeout.
    #[cfg(feature = "http")]
    pub fn push(self, gateway: Pushgateway) -> Self {
        self.hub.config().push = Some(gateway);
        self
    }

    /// lameduck's metrics as a collector, for a registry of your own
    /// (`registry.register_collector(Box::new(metrics.collector()))`).
    ///
    /// A scrape of that registry is seen by the final scrape only when it
    /// goes through [`encode_registry`](Self::encode_registry).
    pub fn collector(&self) -> Lifecycle {
        Lifecycle {
            hub: self.hub.clone(),
        }
    }

    /// The metrics as OpenMetrics text ([`CONTENT_TYPE`]), counted as a
    /// scrape: serve it from an endpoint of your own.
    pub fn encode(&self) -> String {
        self.scrape(true).0
    }

    /// `registry` as OpenMetrics text, counted as a scrape: for a registry
    /// of your own that holds [`collector`](Self::collector).
    pub fn encode_registry(&self, registry: &Registry) -> String {
        let n = self.hub.scrapes.begin();
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, registry) {
            tracing::warn!(target: "lameduck::metrics", error = %err, "encoding the metrics failed");
        }
        self.hub.scrapes.answered(n);
        out
    }

    /// One scrape: the text and its content type (OpenMetrics, or
    /// Prometheus text 0.0.4 for a scraper that did not ask for it).
    pub(crate) fn scrape(&self, openmetrics: bool) -> (String, &'static str) {
        let n = self.hub.scrapes.begin();
        let text = self.hub.encode_registry(openmetrics);
        self.hub.scrapes.answered(n);
        let content_type = if openmetrics {
            CONTENT_TYPE
        } else {
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        };
        (text, content_type)
    }

    /// The budget's final scrape timeout, resolved: what the metrics
    /// want (their wait plus the push's timeout) unless the budget set
    /// it.
    ///
    /// # Errors
    ///
    /// Both set it: the message names both.
    pub(crate) fn resolve_budget(&self, budget: crate::Budget) -> Result<crate::Budget, String> {
        let config = self.hub.config().clone();
        #[cfg(feature = "http")]
        let push = config.push.as_ref().map_or(Duration::ZERO, |p| p.timeout);
        #[cfg(not(feature = "http"))]
        let push = Duration::ZERO;
        match (budget.get_final_scrape_timeout(), config.final_scrape) {
            (Some(b), Some(m)) => Err(format!(
                "the final scrape timeout is set twice: Budget::final_scrape_timeout({}) and Metrics::final_scrape({}); set it in one place",
                crate::fmt::Seconds(b),
                crate::fmt::Seconds(m)
            )),
            (Some(_), None) => Ok(budget),
            (None, m) => Ok(budget.final_scrape_timeout(m.unwrap_or_default() + push)),
        }
    }

    /// Ties the metrics to `app`, once.
    ///
    /// # Errors
    ///
    /// They already observe another app.
    pub(crate) fn attach(&self, app: &AppHandle) -> Result<(), String> {
        if let Some(other) = self.hub.app.get() {
            return Err(format!(
                "these metrics already observe the app {}; give each app a Metrics of its own",
                other.name()
            ));
        }
        let _ = self.hub.app.set(app.clone());
        let _ = app.metrics_slot().set(self.hub.clone());
        #[cfg(feature = "http")]
        if let Some(push) = &self.hub.config().push {
            push.resolve_job(app.name());
        }
        Ok(())
    }

    /// The observer that keeps the metrics up to date.
    pub(crate) fn observer(&self) -> Arc<dyn crate::observe::Observer> {
        self.hub.clone()
    }

    /// The final step at Closing.
    pub(crate) fn final_step(&self) -> crate::app::FinalScrapeFn {
        let hub = self.hub.clone();
        Box::new(move |bound, reason| hub.final_step(bound, reason))
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.hub.config();
        let mut d = f.debug_struct("Metrics");
        d.field("final_scrape", &config.final_scrape);
        #[cfg(feature = "http")]
        d.field("push", &config.push);
        d.field("app", &self.hub.app.get().map(AppHandle::name));
        d.finish()
    }
}

/// The metrics of `app`, when it has them.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn hub_of(app: &AppHandle) -> Option<Arc<Hub>> {
    app.metrics_slot().get().cloned()
}
