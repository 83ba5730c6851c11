//! One case: one kind of server behind one balancer, retries on or off.

use std::time::Duration;

use anyhow::Context as _;
use lameduck_drill::report::Report;
use lameduck_drill::{Drill, DrillConfig, Load};
use serde::Serialize;

use super::Plan;
use super::restart::{RestartLog, roll};
use crate::balancer::{Backend, Balancer, Counters, Pool, Retries, Running};
use crate::instance::Instance;
use crate::kind::{DemoTiming, ServerKind};
use crate::net::free_ports;
use crate::scratch::Scratch;

/// Bound on the instances' first start and the balancer taking them in.
const START: Duration = Duration::from_secs(30);

/// What one case measured.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The load balancer.
    pub balancer: Balancer,
    /// Whether it retries on another instance.
    pub retries: Retries,
    /// The kind of server.
    pub server: ServerKind,
    /// The time slot of one rolling restart in this case.
    #[serde(with = "crate::compare::micros")]
    pub round: Duration,
    /// Rolling restarts completed (each restarts both instances).
    pub restarts_done: u32,
    /// Requests of the rolling run.
    pub requests: u64,
    /// Those that failed, as the clients saw them.
    pub errors: u64,
    /// The failures by class (`64 other 5xx`).
    pub errors_by_class: String,
    /// Ok responses of the rolling run slower than 2× the steady p99.
    pub slow: Option<u64>,
    /// Latency of ok responses in the rolling run.
    pub p50_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// The slowest: the longest stall.
    pub max_us: Option<u64>,
    /// p99 of the steady-state run (same load, no restarts), just before.
    pub steady_p99_us: Option<u64>,
    /// The slowest of the steady-state run.
    pub steady_max_us: Option<u64>,
    /// Failures in the steady-state run (should be 0).
    pub steady_errors: u64,
    /// Rolling max ÷ steady p99: a stall shows here.
    pub max_over_steady: Option<f64>,
    /// The median rolling restart: SIGTERM to A until the balancer takes B
    /// in again.
    pub rolling_restart_us: Option<u64>,
    /// The balancer's counters over the rolling run, where it keeps them.
    pub lb: Counters,
    /// Every instance restart, timed.
    pub restarts: Vec<RestartLog>,
    /// The rolling run's drill report (written to its own file, not here).
    #[serde(skip)]
    pub report: Option<Report>,
}

/// Runs one case to the end and cleans up: the balancer and the instances
/// are stopped by PID, the scratch directory removed.
///
/// # Errors
///
/// When the case cannot be carried out (an instance does not start, the
/// balancer refuses its config, the restarts overrun the load…).
pub async fn run_case(
    plan: &Plan,
    balancer: Balancer,
    retries: Retries,
    kind: ServerKind,
) -> anyhow::Result<CaseResult> {
    let scratch = Scratch::new(&format!(
        "rolling-{}-{}-{}",
        balancer.name(),
        retries.name(),
        kind.name()
    ))?;
    let bins = plan.bins.as_ref().context("no binaries")?;
    let timing = DemoTiming {
        drain_delay: plan.drain_delay,
        drain_quiet: plan.drain_quiet,
        grace_period: plan.grace_period,
    };
    let ports = kind.pool_ports()?;
    let frontend = free_ports(1)?[0];
    let mut instances = [0, 1].map(|i| {
        let name = ["a", "b"][i];
        let mut launch = kind.launch(bins, ports[i], timing);
        let log = scratch.path().join(format!("{name}.log"));
        if kind.restarts_in_place() {
            let pid_file = scratch.path().join(format!("{name}.pid"));
            launch.args.push("--pid-file".to_owned());
            launch.args.push(pid_file.display().to_string());
            Instance::in_place(launch, ports[i].admin_addr(), log, pid_file)
        } else {
            Instance::new(launch, ports[i].admin_addr(), log)
        }
    });
    let outcome = async {
        for instance in &mut instances {
            instance.start()?;
        }
        for instance in &mut instances {
            instance.wait_ready(START).await?;
        }
        let pool = Pool {
            frontend_port: frontend,
            servers: ["a", "b"]
                .iter()
                .zip(ports)
                .map(|(name, p)| Backend {
                    name: (*name).to_owned(),
                    host: p.host,
                    port: p.listen,
                    check_port: p.admin,
                })
                .collect(),
            retries,
            check_interval: plan.check_interval,
            check_fall: plan.check_fall,
            caddy_policy: plan.caddy_policy,
        };
        let program = plan.program(balancer);
        let running = balancer.start(&program, &pool, scratch.path()).await?;
        let round = plan.round_for(balancer, kind);
        let result = measure(plan, round, &mut instances, &running, frontend).await;
        running.stop().await;
        result.map(|mut r| {
            r.round = round;
            r
        })
    }
    .await;
    for instance in &mut instances {
        instance.kill().await;
    }
    outcome
        .map(|mut r| {
            r.balancer = balancer;
            r.retries = retries;
            r.server = kind;
            r
        })
        .map_err(|err| {
            anyhow::anyhow!(
                "{err:#}\n--- instance a (last lines)\n{}\n--- instance b (last lines)\n{}",
                scratch.tail("a.log", 10),
                scratch.tail("b.log", 10)
            )
        })
}

async fn measure(
    plan: &Plan,
    round: Duration,
    instances: &mut [Instance; 2],
    balancer: &Running,
    frontend: u16,
) -> anyhow::Result<CaseResult> {
    for name in ["a", "b"] {
        balancer.wait_up(name, false, START).await?;
    }
    let steady = Drill::new(load(plan, frontend, plan.steady, None)?)?
        .run()
        .await
        .context("the steady-state load")?;
    anyhow::ensure!(
        steady.latency.all.p99_us.is_some(),
        "the steady-state load got no ok response ({})",
        steady.requests.total.describe_failures()
    );
    let before = balancer.counters().await?;

    let steady_p99 = steady.latency.all.p99_us;
    let slow = steady_p99.map(|p99| Duration::from_micros(p99 * 2));
    let drill = Drill::new(load(plan, frontend, plan.load_duration(round), slow)?)?;
    let progress = drill.progress();
    let (report, (restarts, rolled)) = tokio::join!(
        drill.run(),
        roll(
            instances,
            balancer,
            &progress,
            plan.restarts,
            plan.margin,
            round,
            plan.grace_period,
        )
    );
    let report = report.context("the rolling load")?;
    rolled?;
    let load_end = report.events.load_end_us;
    if let Some(last) = restarts.last() {
        anyhow::ensure!(
            last.up_us <= load_end,
            "the restarts overran the load (the last was done at {:.2}s, the load ended at {:.2}s): \
             give each round more time (--round)",
            last.up_us as f64 / 1e6,
            load_end as f64 / 1e6
        );
    }
    let after = balancer.counters().await?;

    let q = &report.requests;
    let max = report.latency.all.max_us;
    Ok(CaseResult {
        balancer: Balancer::Haproxy,
        retries: Retries::Off,
        server: ServerKind::Lameduck,
        round,
        restarts_done: u32::try_from(restarts.len() / 2)?,
        requests: q.sent,
        errors: q.total.failed(),
        errors_by_class: q.total.describe_failures(),
        slow: report.latency.slow.map(|s| s.count),
        p50_us: report.latency.all.p50_us,
        p99_us: report.latency.all.p99_us,
        max_us: max,
        steady_p99_us: steady_p99,
        steady_max_us: steady.latency.all.max_us,
        steady_errors: steady.requests.total.failed(),
        max_over_steady: match (max, steady_p99) {
            (Some(m), Some(s)) if s > 0 => Some(m as f64 / s as f64),
            _ => None,
        },
        rolling_restart_us: median_rolling_restart(&restarts),
        lb: after.since(&before),
        restarts,
        report: Some(report),
    })
}

/// The median over rounds of SIGTERM to the first instance until the
/// balancer took the second back.
fn median_rolling_restart(restarts: &[RestartLog]) -> Option<u64> {
    let mut rounds: Vec<u64> = restarts
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| pair[1].up_us.saturating_sub(pair[0].term_us))
        .collect();
    rounds.sort_unstable();
    rounds.get(rounds.len().checked_sub(1)? / 2).copied()
}

/// Plain load through the balancer: no signal, no server of its own.
fn load(
    plan: &Plan,
    frontend: u16,
    duration: Duration,
    slow: Option<Duration>,
) -> anyhow::Result<DrillConfig> {
    let mut config = DrillConfig::new(&format!(
        "http://127.0.0.1:{frontend}/work?ms={}",
        plan.work_ms
    ))?;
    config.load = Load::Rate {
        per_second: plan.rate,
        max_in_flight: 1000,
    };
    config.duration = duration;
    config.slow_threshold = slow;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restart(term_us: u64, up_us: u64) -> RestartLog {
        RestartLog {
            round: 0,
            server: String::new(),
            term_us,
            exited_us: term_us,
            exit_code: Some(0),
            killed: false,
            ready_us: up_us,
            up_us,
            failures_seen: 0,
        }
    }

    #[test]
    fn a_rolling_restart_runs_from_the_first_sigterm_to_the_second_instance_back() {
        let log = [
            restart(1_000, 2_000),
            restart(2_000, 4_000),
            restart(10_000, 11_000),
            restart(11_000, 12_000),
            restart(20_000, 29_000),
            restart(29_000, 40_000),
        ];
        // Rounds of 3000, 2000 and 20000 µs.
        assert_eq!(median_rolling_restart(&log), Some(3_000));
        assert_eq!(median_rolling_restart(&log[..1]), None);
    }
}
