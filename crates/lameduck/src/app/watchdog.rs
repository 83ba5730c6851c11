//! The exit watchdog: a plain thread that ends the process when the shutdown
//! overruns its budget.
//!
//! It lives outside the runtime on purpose. A task stuck in blocking code
//! keeps its worker thread, and dropping the runtime then waits for it
//! forever (tokio#5338): the process never exits, and the orchestrator's
//! `SIGKILL` ends it with no report and no flushed logs. The watchdog exits
//! first, with a distinct code, after saying why.

use std::sync::mpsc;
use std::time::Duration;

use crate::ExitStatus;

/// Disarms the watchdog when dropped.
pub(crate) struct Watchdog {
    disarm: mpsc::Sender<()>,
}

impl Watchdog {
    /// Arms a watchdog that exits the process after `after`, unless dropped
    /// first.
    pub(crate) fn arm(app: &str, after: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let app = app.to_string();
        let spawned = std::thread::Builder::new()
            .name("lameduck-watchdog".into())
            .spawn(move || {
                // A message or a hang-up (the sender dropped) both disarm.
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(after) {
                    let code = ExitStatus::WatchdogExpired.code();
                    tracing::error!(
                        target: "lameduck",
                        app = %app,
                        exit_code = code,
                        "exit watchdog: the shutdown overran its budget of {:?}; exiting now",
                        after
                    );
                    eprintln!(
                        "lameduck: {app}: exit watchdog: the shutdown overran its budget of {after:?}; exiting with code {code}"
                    );
                    #[cfg(all(unix, feature = "upgrade"))]
                    crate::upgrade::leftovers::remove_owned();
                    std::process::exit(code.into());
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
