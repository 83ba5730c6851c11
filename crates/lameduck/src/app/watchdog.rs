//! The exit watchdog: a plain thread that ends the process when the shutdown
//! overruns its budget.
//!
//! It lives outside the runtime on purpose. A task stuck in blocking code
//! keeps its worker thread, and dropping the runtime then waits for it
//! forever (tokio#5338): the process never exits, and the orchestrator's
//! `SIGKILL` ends it with no report and no flushed logs. The watchdog exits
//! first, after saying why: with a distinct code (124) when the shutdown
//! itself overran and no report came out, or with the report's own code when
//! the report is out and only the runtime's teardown hangs — the exit code
//! never contradicts the report.

use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::finish::Finish;
use crate::ExitStatus;

/// Disarms the watchdog when dropped.
pub(crate) struct Watchdog {
    disarm: mpsc::Sender<()>,
}

impl Watchdog {
    /// Arms a watchdog that exits the process after `after`, unless dropped
    /// first. Its flushes get at most `flush_bound`: it fires close to the
    /// `SIGKILL`.
    pub(crate) fn arm(finish: Arc<Finish>, after: Duration, flush_bound: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("lameduck-watchdog".into())
            .spawn(move || {
                // A message or a hang-up (the sender dropped) both disarm.
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                    let app = finish.app();
                    let (code, why) = match finish.report() {
                        None => (
                            ExitStatus::WatchdogExpired.code(),
                            format!("the shutdown overran its budget of {after:?}"),
                        ),
                        Some(status) => (
                            status.code(),
                            format!(
                                "the shutdown ended ({status}), but the process had not exited {after:?} after the first trigger: something blocks the runtime's shutdown (a task stuck in blocking code, tokio#5338)"
                            ),
                        ),
                    };
                    tracing::error!(target: "lameduck", app = %app, exit_code = code, "exit watchdog: {why}; exiting now");
                    eprintln!("lameduck: {app}: exit watchdog: {why}; exiting with code {code}");
                    finish.exit(code, flush_bound);
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(target: "lameduck", error = %err, "could not start the exit watchdog thread");
        }
        Self { disarm: tx }
    }

    /// Leaves the watchdog armed for good: past `run()`, the runtime still
    /// has to shut down, and that is where a task stuck in blocking code
    /// hangs the process. If the process exits first, the thread goes with
    /// it.
    pub(crate) fn keep_armed(self) {
        std::mem::forget(self.disarm);
    }
}
