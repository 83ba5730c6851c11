//! The plan for machines: JSON with stable field names, durations in seconds
//! as floats.

use std::time::Duration;

use anyhow::Context;
use lameduck::Timeline;
use serde::Serialize;

use super::DrainIn;
use super::k8s::{PodSettings, ProbeTiming};

/// The top-level object. Each field is named after its flag.
#[derive(Serialize)]
struct Plan<'a> {
    grace_period_seconds: f64,
    /// `--drain-max`: the longest drain, what the budget reserves for
    /// Draining.
    drain_max_seconds: f64,
    drain_min_seconds: f64,
    /// `null` for a fixed drain (`drain_min` = `drain_max`).
    drain_quiet_seconds: Option<f64>,
    shutdown_timeout_seconds: f64,
    hard_timeout_seconds: f64,
    closes: Vec<Close<'a>>,
    close_total_seconds: f64,
    final_scrape_seconds: f64,
    log_flush_seconds: f64,
    safety_margin_seconds: f64,
    /// From the first signal to the end of the log flush, at most.
    worst_case_seconds: f64,
    phases: Vec<Phase>,
    kubernetes: Kubernetes,
}

#[derive(Serialize)]
struct Close<'a> {
    name: &'a str,
    timeout_seconds: f64,
}

/// One row of the table: offsets from the first signal.
#[derive(Serialize)]
struct Phase {
    name: &'static str,
    starts_seconds: f64,
    lasts_seconds: f64,
    ends_by_seconds: f64,
}

#[derive(Serialize)]
struct Kubernetes {
    termination_grace_period_seconds: u64,
    drain_in: DrainIn,
    /// `null` when there is no preStop hook.
    prestop_sleep_seconds: Option<f64>,
    admin_port: u16,
    startup_probe: ProbeTiming,
    readiness_probe: ProbeTiming,
    liveness_probe: ProbeTiming,
}

/// Renders the plan as pretty-printed JSON with a trailing newline.
pub(super) fn render(t: &Timeline, pod: &PodSettings) -> anyhow::Result<String> {
    let s = |d: Duration| d.as_secs_f64();
    let mut at = Duration::ZERO;
    let phases = t
        .rows()
        .into_iter()
        .map(|(name, lasts)| {
            let starts = at;
            at += lasts;
            Phase {
                name,
                starts_seconds: s(starts),
                lasts_seconds: s(lasts),
                ends_by_seconds: s(at),
            }
        })
        .collect();
    let plan = Plan {
        grace_period_seconds: s(t.grace_period),
        drain_max_seconds: s(t.drain_max()),
        drain_min_seconds: s(t.drain_min),
        drain_quiet_seconds: t.is_adaptive().then(|| s(t.drain_quiet)),
        shutdown_timeout_seconds: s(t.shutdown_timeout),
        hard_timeout_seconds: s(t.hard_timeout),
        closes: t
            .closes
            .iter()
            .map(|(name, d)| Close {
                name,
                timeout_seconds: s(*d),
            })
            .collect(),
        close_total_seconds: s(t.close_total()),
        final_scrape_seconds: s(t.final_scrape_timeout),
        log_flush_seconds: s(t.log_flush),
        safety_margin_seconds: s(t.safety_margin),
        worst_case_seconds: s(t.worst_case()),
        phases,
        kubernetes: Kubernetes {
            termination_grace_period_seconds: pod.termination_grace_period_seconds,
            drain_in: pod.drain_in,
            prestop_sleep_seconds: pod.prestop_sleep.map(s),
            admin_port: pod.admin_port,
            startup_probe: pod.startup,
            readiness_probe: pod.readiness,
            liveness_probe: pod.liveness,
        },
    };
    let mut out = serde_json::to_string_pretty(&plan).context("serializing the plan")?;
    out.push('\n');
    Ok(out)
}
