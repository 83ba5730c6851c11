//! How the process ends: what the driver, the signal thread and the exit
//! watchdog share, so that whichever of them ends the process runs the
//! flushes once and exits with a code that agrees with the report.
//!
//! The signal thread and the watchdog are plain threads on purpose: they
//! must act while the runtime is stuck in blocking code, single-threaded and
//! blocked, or already being dropped after `run()` returned (tokio#5338).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use super::builder::FlushFn;
use crate::ExitStatus;

/// Apps of this process that handle signals and have not logged their
/// report yet. After its report, an app's signal thread leaves a signal to
/// the apps still running (several apps in one process).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The end of one app's run, shared across threads.
pub(crate) struct Finish {
    app: Arc<str>,
    /// The status of the report, once logged.
    report: OnceLock<ExitStatus>,
    /// Whether this app counts in [`LIVE`].
    live: AtomicBool,
    flushes: Mutex<Flushes>,
    flushed: Condvar,
    flushed_async: tokio::sync::Notify,
    /// The budget's bound on the flushes.
    pub(crate) log_flush: Duration,
    /// The code the process exits with, once [`exit`](Self::exit) began.
    exiting: OnceLock<u8>,
}

enum Flushes {
    Pending(Vec<FlushFn>),
    Running,
    Done,
}

impl Finish {
    pub(crate) fn new(app: Arc<str>, flushes: Vec<FlushFn>, log_flush: Duration) -> Arc<Self> {
        Arc::new(Self {
            app,
            report: OnceLock::new(),
            live: AtomicBool::new(false),
            flushes: Mutex::new(Flushes::Pending(flushes)),
            flushed: Condvar::new(),
            flushed_async: tokio::sync::Notify::new(),
            log_flush,
            exiting: OnceLock::new(),
        })
    }

    pub(crate) fn app(&self) -> &str {
        &self.app
    }

    /// Counts this app among those that handle signals, until its report.
    pub(crate) fn enter_live(&self) {
        if !self.live.swap(true, Ordering::AcqRel) {
            LIVE.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// This app no longer handles signals as a running app: its report is
    /// out, or its run was dropped.
    pub(crate) fn leave_live(&self) {
        if self.live.swap(false, Ordering::AcqRel) {
            LIVE.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether another app of this process still handles signals.
    pub(crate) fn others_live() -> bool {
        LIVE.load(Ordering::Acquire) > 0
    }

    /// Records that the report was logged with `status`.
    pub(crate) fn set_report(&self, status: ExitStatus) {
        let _ = self.report.set(status);
        self.leave_live();
    }

    /// The code the process exits with, once it is exiting from a plain
    /// thread (the signal thread, the exit watchdog).
    #[cfg_attr(not(feature = "flight"), allow(dead_code))]
    pub(crate) fn exiting(&self) -> Option<u8> {
        self.exiting.get().copied()
    }

    /// The status of the report, once it was logged.
    pub(crate) fn report(&self) -> Option<ExitStatus> {
        self.report.get().copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Flushes> {
        self.flushes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the flushes on a plain thread of their own (a flush may block,
    /// and the runtime may be stuck), unless they already started.
    fn start_flushes(self: &Arc<Self>) {
        let mut state = self.lock();
        let Flushes::Pending(list) = &mut *state else {
            return;
        };
        let list = std::mem::take(list);
        *state = if list.is_empty() {
            Flushes::Done
        } else {
            Flushes::Running
        };
        drop(state);
        if list.is_empty() {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("lameduck-flush".into())
            .spawn(move || {
                for f in list {
                    f();
                }
                me.flushes_done();
            });
        if spawned.is_err() {
            // Nothing will run them; nobody should wait.
            self.flushes_done();
        }
    }

    fn flushes_done(&self) {
        *self.lock() = Flushes::Done;
        self.flushed.notify_all();
        self.flushed_async.notify_waiters();
    }

    /// Runs the flushes (or waits for the run under way), at most `bound`.
    /// False when they did not finish in time.
    pub(crate) fn flush_blocking(self: &Arc<Self>, bound: Duration) -> bool {
        self.start_flushes();
        let state = self.lock();
        let (state, _) = self
            .flushed
            .wait_timeout_while(state, bound, |s| !matches!(s, Flushes::Done))
            .unwrap_or_else(|e| e.into_inner());
        matches!(*state, Flushes::Done)
    }

    /// [`flush_blocking`](Self::flush_blocking) for the runtime, bounded by
    /// the log flush time.
    pub(crate) async fn flush(self: &Arc<Self>) -> bool {
        let wait = async {
            loop {
                // Created before the check: `notify_waiters` reaches a
                // `Notified` from its creation on, so no wake-up is missed.
                let notified = self.flushed_async.notified();
                if matches!(*self.lock(), Flushes::Done) {
                    return;
                }
                notified.await;
            }
        };
        self.start_flushes();
        tokio::time::timeout(self.log_flush, wait).await.is_ok()
    }

    /// Runs the flushes within `bound`, then exits the process with `code`.
    pub(crate) fn exit(self: &Arc<Self>, code: u8, bound: Duration) -> ! {
        let _ = self.exiting.set(code);
        if !self.flush_blocking(bound) {
            eprintln!(
                "lameduck: {}: the final flush did not finish within {bound:?}",
                self.app
            );
        }
        exit_process(code)
    }
}

/// Exits the process with `code`. The first caller wins: a second one (two
/// apps forced at once, the watchdog and a signal) waits here for the exit.
pub(crate) fn exit_process(code: u8) -> ! {
    static EXITING: Mutex<()> = Mutex::new(());
    let _only_one = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    // The exit skips Stopped: what names this process (its PID file, its
    // control socket) goes now.
    #[cfg(all(unix, feature = "upgrade"))]
    crate::upgrade::leftovers::remove_owned();
    std::process::exit(code.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushes_run_once_whoever_asks() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let finish = Finish::new(
            "t".into(),
            vec![Box::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            })],
            Duration::from_secs(5),
        );
        assert!(finish.flush_blocking(Duration::from_secs(5)));
        assert!(finish.flush_blocking(Duration::from_secs(5)));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_flush_that_hangs_is_abandoned_at_the_bound() {
        let (_keep, rx) = std::sync::mpsc::channel::<()>();
        let finish = Finish::new(
            "t".into(),
            vec![Box::new(move || {
                let _ = rx.recv();
            })],
            Duration::from_secs(5),
        );
        assert!(!finish.flush_blocking(Duration::from_millis(1)));
    }
}
