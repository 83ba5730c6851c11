//! Scenario (b): rolling restarts behind real load balancers.
//!
//! Two instances of one kind of server behind HAProxy, nginx or Caddy (see
//! [`crate::balancer`]). Steady open-loop load goes through the balancer
//! (the drill engine as a library, keep-alive). First a steady-state run
//! without restarts gives the baseline latency; then, under the same load,
//! instance A is restarted (SIGTERM, wait for the exit, start it again, wait
//! until the balancer has it back), then B, and so on, N rounds. Every request is
//! accounted for by the drill; errors are what the clients saw.

mod case;
mod restart;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use serde::Serialize;

pub use case::{CaseResult, run_case};
pub use restart::RestartLog;

use crate::balancer::{Balancer, CaddyPolicy, Retries};
use crate::kind::{Binaries, ServerKind};
use crate::table::{Table, ms, span};

/// What every case of a run shares.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Rolling restarts (each restarts A, then B).
    pub restarts: u32,
    /// Open-loop requests per second through the balancer.
    pub rate: u32,
    /// The handler's latency (`/work?ms=`).
    pub work_ms: u64,
    /// The steady-state run before the restarts.
    #[serde(with = "crate::compare::micros")]
    pub steady: Duration,
    /// Load before the first restart and after the last.
    #[serde(with = "crate::compare::micros")]
    pub margin: Duration,
    /// Time slot of one rolling restart at least (a round starts no sooner
    /// than its slot; the load lasts margin + (restarts + 1) × round).
    /// Servers with a longer drain get a longer slot: [`Plan::round_for`].
    #[serde(with = "crate::compare::micros")]
    pub round: Duration,
    /// The demo's drain delay.
    #[serde(with = "crate::compare::micros")]
    pub drain_delay: Duration,
    /// How long an instance may take to exit before it is SIGKILLed (and
    /// the demo's budget).
    #[serde(with = "crate::compare::micros")]
    pub grace_period: Duration,
    /// The balancers' health-check interval (nginx: `fail_timeout`, at
    /// least 1 s).
    #[serde(with = "crate::compare::micros")]
    pub check_interval: Duration,
    /// HAProxy's `fall`: failed checks that take a server out.
    pub check_fall: u32,
    /// The demo's `--drain-quiet`: with it, an adaptive drain of at most
    /// `drain_delay`.
    #[serde(with = "crate::compare::micros_opt")]
    pub drain_quiet: Option<Duration>,
    /// How Caddy picks an instance.
    pub caddy_policy: CaddyPolicy,
    /// The balancers' binaries, by [`Balancer::name`] (the name on `PATH`
    /// when absent).
    #[serde(skip)]
    pub programs: Vec<(Balancer, PathBuf)>,
    /// Where the servers' binaries are.
    #[serde(skip)]
    pub bins: Option<Binaries>,
}

impl Plan {
    /// How long the load of a rolling run with slots of `round` lasts: the
    /// margin, the slots, and one more slot (at least the margin) after the
    /// last, so that a restart that runs late is still under load.
    pub fn load_duration(&self, round: Duration) -> Duration {
        self.margin + round * self.restarts + round.max(self.margin)
    }

    /// The slot of one rolling restart of `kind` behind `balancer`: the
    /// plan's, or more when two restarts take longer — each instance's
    /// drain delay, its exit ([`ServerKind::exit_bound`]), half a second to
    /// start, and the wait for the balancer to take it back (nginx: its
    /// `fail_timeout`).
    pub fn round_for(&self, balancer: Balancer, kind: ServerKind) -> Duration {
        let back = match balancer {
            Balancer::Haproxy => Duration::ZERO,
            Balancer::Nginx => self.check_interval.max(Duration::from_secs(1)),
            Balancer::Caddy => self.check_interval * 2,
        };
        let one = kind.drain_delay(self.drain_delay)
            + kind.exit_bound(self.grace_period)
            + Duration::from_millis(500)
            + back;
        self.round.max(one * 2)
    }

    /// The binary of `balancer`.
    pub fn program(&self, balancer: Balancer) -> PathBuf {
        self.programs
            .iter()
            .find(|(b, _)| *b == balancer)
            .map_or_else(|| PathBuf::from(balancer.name()), |(_, p)| p.clone())
    }
}

/// The table of one retries setting: a row per balancer and kind of server.
pub fn table(results: &[CaseResult], retries: Retries) -> Table {
    let mut t = Table::new(&[
        "<balancer",
        "<server",
        "restarts",
        "requests",
        "errors",
        "<errors by class",
        "slow",
        "p99",
        "max",
        "steady p99",
        "max/steady",
        "rolling restart",
        "lb retries",
        "lb passed on",
    ]);
    let count = |n: Option<u64>| n.map_or("-".to_owned(), |n| n.to_string());
    for r in results.iter().filter(|r| r.retries == retries) {
        t.row(vec![
            r.balancer.name().to_owned(),
            r.server.name().to_owned(),
            r.restarts_done.to_string(),
            r.requests.to_string(),
            r.errors.to_string(),
            if r.errors_by_class.is_empty() {
                "-".to_owned()
            } else {
                r.errors_by_class.clone()
            },
            count(r.slow),
            ms(r.p99_us),
            ms(r.max_us),
            ms(r.steady_p99_us),
            r.max_over_steady
                .map_or("-".to_owned(), |x| format!("{x:.2}")),
            r.rolling_restart_us
                .map_or("-".to_owned(), |us| span(Duration::from_micros(us))),
            count(r.lb.retries),
            count(r.lb.redispatches),
        ]);
    }
    t
}

/// Every balancer, retries setting and kind asked for, in table order:
/// retries, then balancer, then kind.
pub fn cases(
    balancers: &[Balancer],
    retries: &[Retries],
    kinds: &[ServerKind],
) -> Vec<(Balancer, Retries, ServerKind)> {
    let mut cases = Vec::new();
    for r in retries {
        for b in balancers {
            for k in kinds {
                cases.push((*b, *r, *k));
            }
        }
    }
    cases
}

/// Checks that `kinds` can all run behind `balancers`: Caddy checks every
/// upstream on one port, which a kind with its own readiness port can only
/// give when it serves on any loopback address.
///
/// # Errors
///
/// Naming the first pair that cannot.
pub fn check_cases(balancers: &[Balancer], kinds: &[ServerKind]) -> anyhow::Result<()> {
    for kind in kinds {
        let ports = kind.pool_ports().context("picking ports")?;
        let separate = ports.iter().any(|p| p.admin != p.listen);
        let shared = ports[0].admin == ports[1].admin;
        anyhow::ensure!(
            !balancers.contains(&Balancer::Caddy) || !separate || shared,
            "{} cannot run behind caddy: it answers /readyz on a port of its own, \
             which differs between its two instances on 127.0.0.1, and caddy checks \
             every upstream on one port",
            kind.name()
        );
    }
    Ok(())
}
