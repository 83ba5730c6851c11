//! One case: one kind of server, one HAProxy configuration.

use std::time::Duration;

use anyhow::Context as _;
use lameduck_drill::report::Report;
use lameduck_drill::{Drill, DrillConfig, Load};
use serde::Serialize;

use super::Plan;
use super::restart::{RestartLog, roll};
use crate::haproxy::{Backend, Config, Haproxy, Retries, ServerStat};
use crate::instance::Instance;
use crate::kind::{DemoTiming, ServerKind};
use crate::net::{free_ports, loopback};
use crate::scratch::Scratch;

/// Bound on the instances' first start and HAProxy marking them UP.
const START: Duration = Duration::from_secs(30);

/// What one case measured.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The HAProxy configuration.
    pub retries: Retries,
    /// The kind of server.
    pub server: ServerKind,
    /// Rolling restarts completed (each restarts both instances).
    pub restarts_done: u32,
    /// Requests of the rolling run.
    pub requests: u64,
    /// Those that failed, as the clients saw them.
    pub errors: u64,
    /// The failures by class (`64 other 5xx`).
    pub errors_by_class: String,
    /// Latency of ok responses in the rolling run.
    pub p50_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// The slowest.
    pub max_us: Option<u64>,
    /// p99 of the steady-state run (same load, no restarts), just before.
    pub steady_p99_us: Option<u64>,
    /// The slowest of the steady-state run.
    pub steady_max_us: Option<u64>,
    /// Failures in the steady-state run (should be 0).
    pub steady_errors: u64,
    /// Rolling max ÷ steady p99: a stall shows here.
    pub max_over_steady: Option<f64>,
    /// HAProxy's backend counters at the end: connects retried.
    pub haproxy_retries: u64,
    /// Requests sent to the other server after a failed connect.
    pub haproxy_redispatches: u64,
    /// Every instance restart, timed.
    pub restarts: Vec<RestartLog>,
    /// The rolling run's drill report (written to its own file, not here).
    #[serde(skip)]
    pub report: Option<Report>,
}

/// Runs one case to the end and cleans up: HAProxy and the instances are
/// killed by PID, the scratch directory removed.
///
/// # Errors
///
/// When the case cannot be carried out (an instance does not start, HAProxy
/// refuses its config, the restarts overrun the load…).
pub async fn run_case(
    plan: &Plan,
    retries: Retries,
    kind: ServerKind,
) -> anyhow::Result<CaseResult> {
    let scratch = Scratch::new(&format!("rolling-{}-{}", retries.name(), kind.name()))?;
    let bins = plan.bins.as_ref().context("no binaries")?;
    let timing = DemoTiming {
        drain_delay: plan.drain_delay,
        drain_quiet: plan.drain_quiet,
        grace_period: plan.grace_period,
    };
    let ports = [kind.ports()?, kind.ports()?];
    let frontend = free_ports(1)?[0];
    let mut instances = [0, 1].map(|i| {
        Instance::new(
            kind.launch(bins, ports[i], timing),
            loopback(ports[i].admin),
            scratch.path().join(format!("{}.log", ["a", "b"][i])),
        )
    });
    let outcome = async {
        for instance in &mut instances {
            instance.start()?;
        }
        for instance in &mut instances {
            instance.wait_ready(START).await?;
        }
        let config = Config {
            frontend_port: frontend,
            servers: ["a", "b"]
                .iter()
                .zip(ports)
                .map(|(name, p)| Backend {
                    name: (*name).to_owned(),
                    port: p.listen,
                    check_port: p.admin,
                })
                .collect(),
            retries,
            check_interval: plan.check_interval,
            check_fall: plan.check_fall,
        };
        let haproxy = Haproxy::start(&plan.haproxy, &config, scratch.path()).await?;
        let result = measure(plan, &mut instances, &haproxy, frontend).await;
        haproxy.stop().await;
        result
    }
    .await;
    for instance in &mut instances {
        instance.kill().await;
    }
    outcome
        .map(|mut r| {
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
    instances: &mut [Instance; 2],
    haproxy: &Haproxy,
    frontend: u16,
) -> anyhow::Result<CaseResult> {
    for name in ["a", "b"] {
        haproxy.wait_up(name, START).await?;
    }
    let steady = Drill::new(load(plan, frontend, plan.steady)?)?
        .run()
        .await
        .context("the steady-state load")?;
    let before = backend(haproxy).await?;

    let drill = Drill::new(load(plan, frontend, plan.load_duration())?)?;
    let progress = drill.progress();
    let (report, (restarts, rolled)) = tokio::join!(
        drill.run(),
        roll(
            instances,
            haproxy,
            &progress,
            plan.restarts,
            plan.margin,
            plan.round,
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
    let after = backend(haproxy).await?;

    let q = &report.requests;
    let (max, steady_p99) = (report.latency.all.max_us, steady.latency.all.p99_us);
    Ok(CaseResult {
        retries: Retries::Stock,
        server: ServerKind::Lameduck,
        restarts_done: u32::try_from(restarts.len() / 2)?,
        requests: q.sent,
        errors: q.total.failed(),
        errors_by_class: q.total.describe_failures(),
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
        haproxy_retries: after.retries.saturating_sub(before.retries),
        haproxy_redispatches: after.redispatches.saturating_sub(before.redispatches),
        restarts,
        report: Some(report),
    })
}

/// Plain load through HAProxy: no signal, no server of its own.
fn load(plan: &Plan, frontend: u16, duration: Duration) -> anyhow::Result<DrillConfig> {
    let mut config = DrillConfig::new(&format!(
        "http://127.0.0.1:{frontend}/work?ms={}",
        plan.work_ms
    ))?;
    config.load = Load::Rate {
        per_second: plan.rate,
        max_in_flight: 1000,
    };
    config.duration = duration;
    Ok(config)
}

async fn backend(haproxy: &Haproxy) -> anyhow::Result<ServerStat> {
    haproxy.stat(Config::BACKEND, "BACKEND").await
}
