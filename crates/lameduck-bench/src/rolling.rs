//! Scenario (b): rolling restarts behind a real HAProxy.
//!
//! Two instances of one kind of server behind HAProxy, which health-checks
//! each on its readiness URL. Steady open-loop load goes through HAProxy
//! (the drill engine as a library, keep-alive). First a steady-state run
//! without restarts gives the baseline latency; then, under the same load,
//! instance A is restarted (SIGTERM, wait for the exit, start it again, wait
//! until HAProxy has it UP), then B, and so on, N rounds. Every request is
//! accounted for by the drill; errors are what the clients saw.

mod case;
mod restart;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use case::{CaseResult, run_case};
pub use restart::RestartLog;

use crate::haproxy::Retries;
use crate::kind::{Binaries, ServerKind};
use crate::table::{Table, ms};

/// What every case of a run shares.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Rolling restarts (each restarts A, then B).
    pub restarts: u32,
    /// Open-loop requests per second through HAProxy.
    pub rate: u32,
    /// The handler's latency (`/work?ms=`).
    pub work_ms: u64,
    /// The steady-state run before the restarts.
    #[serde(with = "crate::compare::micros")]
    pub steady: Duration,
    /// Load before the first restart and after the last.
    #[serde(with = "crate::compare::micros")]
    pub margin: Duration,
    /// Time slot of one rolling restart (a round starts no sooner than its
    /// slot; the load lasts margin + restarts × round + margin).
    #[serde(with = "crate::compare::micros")]
    pub round: Duration,
    /// The demo's drain delay.
    #[serde(with = "crate::compare::micros")]
    pub drain_delay: Duration,
    /// How long an instance may take to exit before it is SIGKILLed (and
    /// the demo's budget).
    #[serde(with = "crate::compare::micros")]
    pub grace_period: Duration,
    /// HAProxy's health-check interval.
    #[serde(with = "crate::compare::micros")]
    pub check_interval: Duration,
    /// HAProxy's `fall`: failed checks that take a server out.
    pub check_fall: u32,
    /// The demo's `--drain-quiet`: with it, an adaptive drain of at most
    /// `drain_delay`.
    #[serde(with = "crate::compare::micros_opt")]
    pub drain_quiet: Option<Duration>,
    /// The HAProxy binary.
    #[serde(skip)]
    pub haproxy: PathBuf,
    /// Where the servers' binaries are.
    #[serde(skip)]
    pub bins: Option<Binaries>,
}

impl Plan {
    /// How long the load of the rolling run lasts.
    pub fn load_duration(&self) -> Duration {
        self.margin * 2 + self.round * self.restarts
    }
}

/// The table: one row per HAProxy configuration and kind of server.
pub fn table(results: &[CaseResult]) -> Table {
    let mut t = Table::new(&[
        "<haproxy",
        "<server",
        "restarts",
        "requests",
        "errors",
        "<errors by class",
        "p50",
        "p99",
        "max",
        "steady p99",
        "max/steady",
        "lb retries",
        "redispatched",
    ]);
    for r in results {
        t.row(vec![
            r.retries.name().to_owned(),
            r.server.name().to_owned(),
            r.restarts_done.to_string(),
            r.requests.to_string(),
            r.errors.to_string(),
            if r.errors_by_class.is_empty() {
                "-".to_owned()
            } else {
                r.errors_by_class.clone()
            },
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.max_us),
            ms(r.steady_p99_us),
            r.max_over_steady
                .map_or("-".to_owned(), |x| format!("{x:.2}")),
            r.haproxy_retries.to_string(),
            r.haproxy_redispatches.to_string(),
        ]);
    }
    t
}

/// Every kind and HAProxy configuration asked for, in table order.
pub fn cases(kinds: &[ServerKind], retries: &[Retries]) -> Vec<(Retries, ServerKind)> {
    retries
        .iter()
        .flat_map(|r| kinds.iter().map(move |k| (*r, *k)))
        .collect()
}
