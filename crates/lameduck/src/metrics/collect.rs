//! The metrics, summed up at scrape time from what the hub holds.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::hub::Hub;
use crate::Phase;

/// lameduck's lifecycle metrics, as a [`Collector`]: register it into a
/// registry of your own with
/// [`Metrics::collector`](super::Metrics::collector).
#[derive(Clone)]
pub struct Lifecycle {
    pub(super) hub: Arc<Hub>,
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle").finish_non_exhaustive()
    }
}

/// The names, help texts and types, in one place (the user guide's table
/// is checked against them).
pub(crate) const FAMILIES: &[(&str, &str, Option<Unit>, MetricType)] = &[
    (
        "lameduck_phase",
        "The app's phase now: 1 for the phase it is in, 0 for the others.",
        None,
        MetricType::Gauge,
    ),
    (
        "lameduck_work_in_flight",
        "Work in flight now in each tracker (requests, jobs): what a shutdown waits for.",
        None,
        MetricType::Gauge,
    ),
    (
        "lameduck_shutdown_phase",
        "How long each phase of the shutdown lasted, once it has ended.",
        Some(Unit::Seconds),
        MetricType::Gauge,
    ),
    (
        "lameduck_shutdown_work",
        "The shutdown's work, once settled (end of Stopping or Cancelling): in flight at stop, finished, cancelled, aborted, ended by the shutdown; the cancelled by what became of them: finished anyway, ended by the shutdown, answered 503, cut, aborted.",
        None,
        MetricType::Gauge,
    ),
    (
        "lameduck_component_restarts",
        "Restarts of each component.",
        None,
        MetricType::Counter,
    ),
    (
        "lameduck_upgrades",
        "Upgrades (zero-downtime restarts) by outcome.",
        None,
        MetricType::Counter,
    ),
    (
        "lameduck_budget",
        "The budget's deadlines: the grace period and each phase's longest time.",
        Some(Unit::Seconds),
        MetricType::Gauge,
    ),
    (
        "lameduck_http_requests",
        "HTTP requests by the app phase they ended in (a response ends with its body's last byte) and how: answered, unavailable (503 at the cancel signal), failed (the service's error), aborted (no response: client gone or hard deadline), cut (a response begun and cut short).",
        None,
        MetricType::Counter,
    ),
    (
        "lameduck_http_connections",
        "Open HTTP connections by state: new (no request yet), idle, busy, upgraded.",
        None,
        MetricType::Gauge,
    ),
];

fn family(
    name: &str,
) -> (
    &'static str,
    &'static str,
    Option<&'static Unit>,
    MetricType,
) {
    let (n, help, unit, ty) = FAMILIES
        .iter()
        .find(|f| f.0 == name)
        .expect("every family is listed");
    (n, help, unit.as_ref(), *ty)
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    rows: &[(&[(&str, &str)], f64)],
) -> fmt::Result {
    let (name, help, unit, ty) = family(name);
    let mut m = e.encode_descriptor(name, help, unit, ty)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    rows: &[(&[(&str, &str)], u64)],
) -> fmt::Result {
    let (name, help, unit, ty) = family(name);
    let mut m = e.encode_descriptor(name, help, unit, ty)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Lifecycle {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> fmt::Result {
        let hub = &self.hub;
        let e = &mut e;
        let now = hub
            .app
            .get()
            .map_or(Phase::Starting, crate::AppHandle::phase);
        let phases: Vec<[(&str, &str); 1]> =
            Phase::ALL.iter().map(|p| [("phase", p.as_str())]).collect();
        let rows: Vec<_> = Phase::ALL
            .iter()
            .zip(&phases)
            .map(|(p, l)| (&l[..], f64::from(u8::from(*p == now))))
            .collect();
        gauge(e, "lameduck_phase", &rows)?;

        let trackers = hub
            .app
            .get()
            .map(crate::AppHandle::trackers)
            .unwrap_or_default();
        let names: Vec<[(&str, &str); 1]> =
            trackers.iter().map(|t| [("tracker", t.name())]).collect();
        let rows: Vec<_> = trackers
            .iter()
            .zip(&names)
            .map(|(t, l)| (&l[..], t.len() as f64))
            .collect();
        gauge(e, "lameduck_work_in_flight", &rows)?;

        let life = hub.life();
        let rows: Vec<_> = life
            .phase_seconds
            .iter()
            .filter_map(|(p, d)| {
                let i = Phase::ALL.iter().position(|q| q == p)?;
                Some((&phases[i][..], d.as_secs_f64()))
            })
            .collect();
        gauge(e, "lameduck_shutdown_phase", &rows)?;

        const WORK: [&str; 10] = [
            "in_flight_at_stop",
            "finished",
            "cancelled",
            "aborted",
            "ended",
            // The cancelled, by what became of them (`AfterCancel::ALL`).
            "cancelled_finished",
            "cancelled_ended",
            "cancelled_unavailable",
            "cancelled_cut",
            "cancelled_aborted",
        ];
        let outcomes: Vec<[(&str, &str); 1]> = WORK.iter().map(|w| [("outcome", *w)]).collect();
        let rows: Vec<_> = life
            .work
            .iter()
            .flat_map(|w| w.iter().zip(&outcomes).map(|(v, l)| (&l[..], *v as f64)))
            .collect();
        gauge(e, "lameduck_shutdown_work", &rows)?;

        let names: Vec<[(&str, &str); 1]> = life
            .restarts
            .keys()
            .map(|c| [("component", &**c)])
            .collect();
        let rows: Vec<_> = life
            .restarts
            .values()
            .zip(&names)
            .map(|(v, l)| (&l[..], *v))
            .collect();
        counter(e, "lameduck_component_restarts", &rows)?;
        counter(
            e,
            "lameduck_upgrades",
            &[
                (&[("outcome", "succeeded")], life.upgrades_succeeded),
                (&[("outcome", "failed")], life.upgrades_failed),
                (&[("outcome", "abandoned")], life.upgrades_abandoned),
            ],
        )?;
        drop(life);

        if let Some(t) = hub.timeline.get() {
            let rows: [(&[(&str, &str)], f64); 8] = [
                (
                    &[("deadline", "grace_period")],
                    t.grace_period.as_secs_f64(),
                ),
                (&[("deadline", "drain_delay")], t.drain_delay.as_secs_f64()),
                (
                    &[("deadline", "shutdown_timeout")],
                    t.shutdown_timeout.as_secs_f64(),
                ),
                (
                    &[("deadline", "hard_timeout")],
                    t.hard_timeout.as_secs_f64(),
                ),
                (&[("deadline", "close")], t.close_total().as_secs_f64()),
                (
                    &[("deadline", "final_scrape")],
                    t.final_scrape_timeout.as_secs_f64(),
                ),
                (&[("deadline", "log_flush")], t.log_flush.as_secs_f64()),
                (
                    &[("deadline", "safety_margin")],
                    t.safety_margin.as_secs_f64(),
                ),
            ];
            gauge(e, "lameduck_budget", &rows)?;
        }

        #[cfg(feature = "http")]
        encode_http(hub, e)?;
        Ok(())
    }
}

#[cfg(feature = "http")]
fn encode_http(hub: &Hub, e: &mut DescriptorEncoder<'_>) -> fmt::Result {
    use crate::http::stats::CONN_STATES;

    let servers = hub
        .http
        .lock()
        .unwrap_or_else(|err| err.into_inner())
        .clone();
    if servers.is_empty() {
        return Ok(());
    }
    let (name, help, unit, ty) = family("lameduck_http_requests");
    let mut m = e.encode_descriptor(name, help, unit, ty)?;
    for (component, stats) in &servers {
        for (phase, outcome, n) in stats.requests() {
            let labels = [
                ("component", &**component),
                ("phase", phase.as_str()),
                ("outcome", outcome.as_str()),
            ];
            ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
        }
    }

    let (name, help, unit, ty) = family("lameduck_http_connections");
    let mut m = e.encode_descriptor(name, help, unit, ty)?;
    for (component, stats) in &servers {
        for (state, n) in CONN_STATES.iter().zip(stats.connections()) {
            let labels = [("component", &**component), ("state", *state)];
            ConstGauge::new(n as f64).encode(m.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
