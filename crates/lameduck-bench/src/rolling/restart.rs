//! The restarts: A then B, round after round, each on its time slot.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use lameduck_drill::{Progress, Stage};
use serde::Serialize;

use crate::balancer::Running;
use crate::instance::Instance;

/// Bound on waiting for a restarted instance (its own readiness, then the
/// balancer's taking it in).
const COME_BACK: Duration = Duration::from_secs(30);

/// One instance restart, timed from the start of the load.
#[derive(Debug, Clone, Serialize)]
pub struct RestartLog {
    /// The round (0-based).
    pub round: u32,
    /// `a` or `b`.
    pub server: String,
    /// SIGTERM sent.
    pub term_us: u64,
    /// The old process exited.
    pub exited_us: u64,
    /// Its exit code, `None` for a signal.
    pub exit_code: Option<i32>,
    /// Whether it outlived the grace period and was SIGKILLed.
    pub killed: bool,
    /// The new process answered its own readiness check (restarted in
    /// place: the old one had handed over and exited).
    pub ready_us: u64,
    /// The balancer had it back (HAProxy: UP; nginx and Caddy: see
    /// [`Running::wait_up`]).
    pub up_us: u64,
    /// Failed requests the drill had recorded when the balancer had it back,
    /// minus those when SIGTERM went (requests end late, so a stall may count
    /// in the next restart).
    pub failures_seen: u64,
}

/// Restarts the two instances `restarts` times, A then B, the `n`th round
/// no sooner than `margin + n × round` into the load. Stops at the first
/// error, returning what was done (and the error).
pub async fn roll(
    instances: &mut [Instance; 2],
    balancer: &Running,
    progress: &Progress,
    restarts: u32,
    margin: Duration,
    round: Duration,
    grace: Duration,
) -> (Vec<RestartLog>, anyhow::Result<()>) {
    let mut log = Vec::new();
    let result = async {
        let t0 = load_start(progress).await?;
        let us = |t: Instant| u64::try_from(t.duration_since(t0).as_micros()).unwrap_or(u64::MAX);
        for n in 0..restarts {
            tokio::time::sleep_until((t0 + margin + round * n).into()).await;
            for (instance, name) in instances.iter_mut().zip(["a", "b"]) {
                let failed = progress.snapshot().failed;
                let term = Instant::now();
                let (exit, ready) = if instance.is_in_place() {
                    // The successor is ready before the old process drains
                    // and exits.
                    let exit = instance
                        .restart_in_place(COME_BACK + grace)
                        .await
                        .with_context(|| format!("restarting {name} in place"))?;
                    (exit, Instant::now())
                } else {
                    let exit = instance.terminate(grace).await?;
                    instance.start()?;
                    instance
                        .wait_ready(COME_BACK)
                        .await
                        .with_context(|| format!("restarting {name}"))?;
                    (exit, Instant::now())
                };
                let exited = term + exit.after;
                balancer
                    .wait_up(name, !instance.is_in_place(), COME_BACK)
                    .await?;
                log.push(RestartLog {
                    round: n,
                    server: name.to_owned(),
                    term_us: us(term),
                    exited_us: us(exited),
                    exit_code: exit.status.code(),
                    killed: exit.killed,
                    ready_us: us(ready),
                    up_us: us(Instant::now()),
                    failures_seen: progress.snapshot().failed.saturating_sub(failed),
                });
            }
        }
        Ok(())
    }
    .await;
    (log, result)
}

/// Waits until the drill starts its load; returns when that was.
async fn load_start(progress: &Progress) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = progress.snapshot();
        match snapshot.stage {
            Stage::Loading => return Ok(Instant::now() - snapshot.elapsed),
            Stage::Starting | Stage::WaitingReady if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stage => anyhow::bail!("the load never started (drill stage {stage:?})"),
        }
    }
}
