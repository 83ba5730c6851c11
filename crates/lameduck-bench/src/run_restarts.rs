//! `scripts/bench run`: zero-downtime restarts of a Python server that takes
//! its socket from `LISTEN_FDS`, under `lameduck run`, under steady load:
//! `upgrade` on the control socket N times, every request accounted for.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use lameduck_drill::report::Report;
use lameduck_drill::{Drill, DrillConfig, Load, ServerSpec};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::kind::Binaries;
use crate::scratch::Scratch;

/// One run of the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Restarts, one after the other.
    pub restarts: u32,
    /// Open-loop requests per second.
    pub rate: u32,
    /// The handler's latency (`/work?ms=`).
    pub work_ms: u64,
    /// Time between two restarts.
    pub gap_ms: u64,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Restarts answered `ok`.
    pub restarts_ok: u32,
    /// Restarts answered otherwise, with the answer.
    pub restarts_failed: Vec<String>,
    /// Slowest restart, request to answer (new instance ready, old one gone).
    pub slowest_restart_ms: u64,
    /// Requests sent.
    pub requests: u64,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Those by class.
    pub failed_by_class: String,
}

/// Runs it.
///
/// # Errors
///
/// When lameduck or the load cannot be started.
pub async fn measure(plan: &Plan, bins: &Binaries) -> anyhow::Result<(Outcome, Report)> {
    let scratch = Scratch::new("restarts")?;
    let control = scratch.path().join("control.sock");
    let log = scratch.path().join("lameduck.log");
    let file = std::fs::File::create(&log)?;
    let mut child = Command::new(bins.path("lameduck"))
        .args(["run", "--output", "json", "--admin", "none"])
        .args(["--listen", "http=127.0.0.1:0", "--control-socket"])
        .arg(&control)
        .args([
            "--drain-delay",
            "0s",
            "--grace-period",
            "10s",
            "--restart-timeout",
            "10s",
        ])
        .args(["--", "python3"])
        .arg(bins.naive_server())
        .arg("--graceful")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .context("starting lameduck run")?;
    let port = wait_port(&log)
        .await
        .with_context(|| scratch.tail("lameduck.log", 20))?;
    wait_running(&control)
        .await
        .with_context(|| scratch.tail("lameduck.log", 20))?;

    let gap = Duration::from_millis(plan.gap_ms);
    let mut config =
        DrillConfig::new(&format!("http://127.0.0.1:{port}/work?ms={}", plan.work_ms))?;
    config.load = Load::Rate {
        per_second: plan.rate,
        max_in_flight: 1000,
    };
    config.duration = gap * (plan.restarts + 2);
    config.server = ServerSpec::Unknown;
    let drill = Drill::new(config)?;

    let mut outcome = Outcome {
        restarts_ok: 0,
        restarts_failed: Vec::new(),
        slowest_restart_ms: 0,
        requests: 0,
        ok: 0,
        failed: 0,
        failed_by_class: String::new(),
    };
    let restarting = async {
        tokio::time::sleep(gap).await;
        for _ in 0..plan.restarts {
            let started = Instant::now();
            let answer = ask(&control, "upgrade")
                .await
                .unwrap_or_else(|e| format!("error {e}"));
            let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            outcome.slowest_restart_ms = outcome.slowest_restart_ms.max(took);
            if answer.starts_with("ok ") {
                outcome.restarts_ok += 1;
            } else {
                outcome.restarts_failed.push(answer.trim().to_owned());
            }
            tokio::time::sleep(gap.saturating_sub(started.elapsed())).await;
        }
    };
    let (report, ()) = tokio::join!(drill.run(), restarting);
    let report = report.map_err(|e| anyhow::anyhow!("the load: {e}"))?;
    let q = &report.requests;
    outcome.requests = q.sent;
    outcome.ok = q.total.ok;
    outcome.failed = q.total.failed();
    outcome.failed_by_class = q.total.describe_failures();

    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid)?),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    Ok((outcome, report))
}

/// The port of the `http` socket, from lameduck's log.
async fn wait_port(log: &Path) -> anyhow::Result<u16> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("socket http on"))
            {
                let addr = v["addr"].as_str().context("no addr")?;
                return Ok(addr.rsplit_once(':').context("no port")?.1.parse()?);
            }
        }
        if Instant::now() > deadline {
            bail!("lameduck run never said where the socket is");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_running(control: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(answer) = ask(control, "status").await
            && answer.starts_with("ok running")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("lameduck run never became ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ask(control: &Path, command: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::UnixStream::connect(control).await?;
    s.write_all(format!("{command}\n").as_bytes()).await?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await?;
    Ok(answer)
}
