//! Shutdown signals, taken on a plain thread of their own (and, with the
//! `upgrade` feature, `SIGHUP`, which asks for an upgrade).
//!
//! `SIGTERM` and `SIGINT` are counted outside the runtime: the second one
//! must end the process whatever the runtime is doing — blocked by a
//! component, single-threaded and busy, or being dropped after `run()`
//! returned while a blocking read holds it (tokio#5338). The thread decides;
//! the driver hears of a first signal as an event, and of a second as a
//! request to log its forced report, which the thread waits for only
//! briefly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::finish::Finish;
use super::{AppHandle, Event};
use crate::{ExitStatus, Signal};

/// How close together two deliveries of the same signal must be to count
/// as one: 300 ms.
///
/// A signal is often delivered twice for one intent: GNU `timeout` signals
/// the process and then its process group, systemd with
/// `KillMode=control-group` signals every process of the unit, a terminal's
/// Ctrl+C reaches the whole foreground group. When the two deliveries do not
/// merge in the kernel, the copy must not count as the second signal that
/// forces the exit. A repeat of the signal an app took, within this window
/// of taking it, is ignored; a different signal, or the same one later,
/// counts.
pub const SIGNAL_REPEAT_WINDOW: Duration = Duration::from_millis(300);

/// How long the signal thread waits for the runtime to log the forced
/// report before it exits without it. A runtime that runs at all answers in
/// microseconds; one that does not answer is stuck.
const REPORT_WAIT: Duration = Duration::from_millis(250);

/// What one delivery means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The first signal: it starts the shutdown, or joins one under way.
    Take,
    /// A copy of the delivery just taken.
    Repeat,
    /// A signal after the one taken: it forces the exit.
    Force,
}

/// Tells the first delivery from its copies and from the second signal.
#[derive(Debug, Default)]
struct Deliveries {
    taken: Option<(Signal, Instant)>,
}

impl Deliveries {
    fn classify(&mut self, sig: Signal, at: Instant) -> Verdict {
        match self.taken {
            None => {
                self.taken = Some((sig, at));
                Verdict::Take
            }
            Some((first, t)) if first == sig && at.duration_since(t) < SIGNAL_REPEAT_WINDOW => {
                Verdict::Repeat
            }
            Some(_) => Verdict::Force,
        }
    }
}

/// The signal thread of one app, from `run()` on.
///
/// Dropped when `run()` is over: with `exit_on_force(false)` the thread
/// stops listening; otherwise it goes on for the life of the process, so
/// that a signal still ends a process whose runtime cannot shut down.
pub(crate) struct Listener {
    finish: Arc<Finish>,
    exit_on_force: bool,
    #[cfg(unix)]
    close: signal_hook::iterator::Handle,
    #[cfg(windows)]
    close: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Installs the handlers and starts the thread. The handlers are in
    /// place before this returns, so a signal that arrives right after is
    /// not lost to the default action.
    pub(crate) fn start(
        app: AppHandle,
        finish: Arc<Finish>,
        exit_on_force: bool,
    ) -> std::io::Result<Self> {
        let thread = Thread {
            app,
            finish: finish.clone(),
            exit_on_force,
        };
        let close = imp::start(thread)?;
        finish.enter_live();
        Ok(Self {
            finish,
            exit_on_force,
            close,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.finish.leave_live();
        if !self.exit_on_force {
            #[cfg(unix)]
            self.close.close();
            #[cfg(windows)]
            self.close.abort();
        }
    }
}

/// The thread's side.
struct Thread {
    app: AppHandle,
    finish: Arc<Finish>,
    exit_on_force: bool,
}

impl Thread {
    fn run(self, signals: impl Iterator<Item = Signal>) {
        let mut deliveries = Deliveries::default();
        for sig in signals {
            let verdict = deliveries.classify(sig, Instant::now());
            let app = self.app.name();
            match verdict {
                Verdict::Repeat => {
                    tracing::info!(target: "lameduck", app = %app, signal = %sig, "{sig} again within {SIGNAL_REPEAT_WINDOW:?} of the one taken: the same delivery, ignored");
                }
                _ if self.finish.report().is_some() => self.after_report(sig),
                Verdict::Take => self.app.send(Event::Signal(sig)),
                Verdict::Force => self.force(sig),
            }
        }
    }

    /// A second signal while the app runs its shutdown.
    fn force(&self, sig: Signal) {
        let code = ExitStatus::Forced(sig).code();
        tracing::error!(target: "lameduck", app = %self.app.name(), signal = %sig, exit_code = code, "second signal: forcing the exit");
        if !self.exit_on_force {
            // `run()` returns early with `Forced`; the caller ends the
            // process, once the runtime gets to run the driver.
            self.app.send(Event::Force {
                signal: sig,
                logged: None,
            });
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        self.app.send(Event::Force {
            signal: sig,
            logged: Some(tx),
        });
        let answered = rx.recv_timeout(REPORT_WAIT).is_ok();
        match self.finish.report() {
            // The app logged its report on its own just before it heard of
            // the force: say that this exit overrules it.
            Some(status) if !answered && status != ExitStatus::Forced(sig) => {
                self.say_after_report(sig, status);
            }
            Some(_) => {}
            None => self.say_no_answer(sig),
        }
        self.finish.exit(code, self.finish.log_flush);
    }

    /// Logs what is known when the runtime does not answer: the phase and
    /// the work in flight, from the trackers.
    fn say_no_answer(&self, sig: Signal) {
        let code = ExitStatus::Forced(sig).code();
        let work = self
            .app
            .trackers()
            .iter()
            .flat_map(|t| t.snapshot())
            .map(|w| format!("{}: {}", w.tracker, w.label))
            .collect::<Vec<_>>()
            .join("; ");
        tracing::error!(target: "lameduck", app = %self.app.name(), signal = %sig, exit_code = code, phase = %self.app.phase(), work_in_flight = %work, "the runtime did not answer within {REPORT_WAIT:?} (blocked by a component?): exiting without a report");
    }

    /// A signal after the report was logged: the shutdown is over, but the
    /// process has not exited — typically because dropping the runtime
    /// waits for a blocking task. The signal ends it, as it would have
    /// without lameduck, unless another app of the process still handles
    /// signals.
    fn after_report(&self, sig: Signal) {
        if !self.exit_on_force || Finish::others_live() {
            return;
        }
        let status = self.finish.report().unwrap_or(ExitStatus::Clean);
        self.say_after_report(sig, status);
        self.finish
            .exit(ExitStatus::Forced(sig).code(), self.finish.log_flush);
    }

    /// Says why the exit code differs from the report's.
    fn say_after_report(&self, sig: Signal, status: ExitStatus) {
        let code = ExitStatus::Forced(sig).code();
        let why = format!(
            "{sig} after the shutdown report ({status}): the process had not exited (something blocks the runtime's shutdown, such as a blocking read); exiting with {code}"
        );
        tracing::error!(target: "lameduck", app = %self.app.name(), signal = %sig, exit_code = code, report = %status, "{why}");
        // The log writer may be flushed and gone by now: say it on stderr too.
        eprintln!("lameduck: {}: {why}", self.app.name());
    }
}

fn spawn_thread(
    thread: Thread,
    signals: impl Iterator<Item = Signal> + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("lameduck-signals".into())
        .spawn(move || thread.run(signals))
        .map(drop)
}

/// Turns every `SIGHUP` into an upgrade request (feature `upgrade`). From
/// the moment this returns, `SIGHUP` no longer kills the process (its
/// default action).
#[cfg(all(unix, feature = "upgrade"))]
pub(crate) fn hangups(app: AppHandle) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            app.send(Event::Upgrade(crate::upgrade::Request {
                via: crate::upgrade::Via::Signal,
                reply: None,
            }));
        }
    }))
}

#[cfg(unix)]
mod imp {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::{Handle, Signals};

    use super::Thread;
    use crate::Signal;

    pub(super) fn start(thread: Thread) -> std::io::Result<Handle> {
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let handle = signals.handle();
        let iter = std::iter::from_fn(move || {
            signals.forever().next().map(|n| {
                if n == SIGINT {
                    Signal::Interrupt
                } else {
                    Signal::Terminate
                }
            })
        });
        super::spawn_thread(thread, iter)?;
        Ok(handle)
    }
}

#[cfg(windows)]
mod imp {
    use tokio::signal::windows;

    use super::Thread;
    use crate::Signal;

    /// Console events come through tokio; the thread decides as on Unix.
    pub(super) fn start(thread: Thread) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut c = windows::ctrl_c()?;
        let mut close = windows::ctrl_close()?;
        let mut shutdown = windows::ctrl_shutdown()?;
        let (tx, rx) = std::sync::mpsc::channel();
        super::spawn_thread(thread, rx.into_iter())?;
        Ok(tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    Some(()) = c.recv() => Signal::Interrupt,
                    Some(()) = close.recv() => Signal::Terminate,
                    Some(()) = shutdown.recv() => Signal::Terminate,
                    else => return,
                };
                if tx.send(sig).is_err() {
                    return;
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_within_the_window_is_the_same_delivery() {
        let mut d = Deliveries::default();
        let t = Instant::now();
        assert_eq!(d.classify(Signal::Terminate, t), Verdict::Take);
        assert_eq!(
            d.classify(Signal::Terminate, t + Duration::from_millis(1)),
            Verdict::Repeat
        );
        assert_eq!(
            d.classify(Signal::Terminate, t + SIGNAL_REPEAT_WINDOW),
            Verdict::Force
        );
    }

    #[test]
    fn a_different_signal_forces_at_once() {
        let mut d = Deliveries::default();
        let t = Instant::now();
        assert_eq!(d.classify(Signal::Terminate, t), Verdict::Take);
        assert_eq!(d.classify(Signal::Interrupt, t), Verdict::Force);
    }
}
