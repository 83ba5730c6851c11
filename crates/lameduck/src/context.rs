//! What a component gets from the app.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use crate::app::Event;
use crate::{AppHandle, Phase, ProgramExit, ShutdownReason, Tracker};

/// A component's view of the app: its stop signals, its readiness, its
/// in-flight tracker and the app handle.
///
/// # The three stop signals
///
/// | signal | fires | a component should |
/// |---|---|---|
/// | draining | at Draining, for every component at once | keep serving, tell keep-alive clients to go elsewhere |
/// | stopping | at Stopping, once every component that depends on this one has returned (and for a restart under [`Strategy::RestForOne`](crate::Strategy)) | stop taking new work, finish what is in flight, return |
/// | cancelled | at Cancelling, when the shutdown timeout has passed | abandon in-flight work with a clean error, return quickly |
///
/// Each comes as a future (`on_*`), a predicate (`is_*`) and a
/// [`CancellationToken`] (`*_token`) to hand to spawned tasks. A cancelled
/// component is also stopping, and a stopping one also draining.
///
/// Cloning a context is cheap; clones share everything.
#[derive(Clone, Debug)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    index: usize,
    attempt: u32,
    draining: CancellationToken,
    stopping: CancellationToken,
    cancelled: CancellationToken,
    tracker: Tracker,
    app: AppHandle,
    ready_sent: AtomicBool,
    program_exit: ProgramExitCell,
}

/// What one run said with [`Context::set_program_exit`], read by the driver
/// when the run ends.
pub(crate) type ProgramExitCell = Arc<Mutex<Option<ProgramExit>>>;

pub(crate) struct Tokens {
    pub(crate) draining: CancellationToken,
    pub(crate) stopping: CancellationToken,
    pub(crate) cancelled: CancellationToken,
}

impl Context {
    pub(crate) fn new(
        name: Arc<str>,
        index: usize,
        attempt: u32,
        tokens: Tokens,
        tracker: Tracker,
        app: AppHandle,
        program_exit: ProgramExitCell,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                index,
                attempt,
                draining: tokens.draining,
                stopping: tokens.stopping,
                cancelled: tokens.cancelled,
                tracker,
                app,
                ready_sent: AtomicBool::new(false),
                program_exit,
            }),
        }
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How many times this component was started before this run (0 for the
    /// first run).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// Reports the component started and ready. Components that depend on it
    /// start now; the service turns ready once every component has called
    /// it. Also clears a reason given to [`unready`](Self::unready).
    /// Idempotent.
    pub fn ready(&self) {
        let health = self.inner.app.health();
        health.set_unready(&self.inner.name, None);
        // Only the first call tells the driver; the swap makes concurrent
        // callers agree on which one that is.
        if !self.inner.ready_sent.swap(true, Ordering::AcqRel) {
            self.inner.app.send(Event::Ready {
                index: self.inner.index,
                attempt: self.inner.attempt,
            });
        }
    }

    /// Reports the component temporarily unable to serve (the readiness probe
    /// fails with `reason`) until [`ready`](Self::ready) is called again.
    pub fn unready(&self, reason: impl Into<String>) {
        self.inner
            .app
            .health()
            .set_unready(&self.inner.name, Some(reason.into()));
    }

    /// Reports the component broken beyond repair: the liveness probe fails
    /// with `reason`, and an orchestrator will restart the process.
    pub fn unhealthy(&self, reason: impl Into<String>) {
        self.inner
            .app
            .health()
            .set_unlive(&self.inner.name, Some(reason.into()));
    }

    /// Clears [`unhealthy`](Self::unhealthy).
    pub fn healthy(&self) {
        self.inner.app.health().set_unlive(&self.inner.name, None);
    }

    /// Whether the app is draining (or further along).
    pub fn is_draining(&self) -> bool {
        self.inner.draining.is_cancelled()
    }

    /// Whether this component was told to stop.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.is_cancelled()
    }

    /// Whether in-flight work was told to cancel.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.is_cancelled()
    }

    /// Completes when the app starts draining.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing, and a new one
    /// completes at once if draining has begun.
    pub fn on_draining(&self) -> WaitForCancellationFuture<'_> {
        self.inner.draining.cancelled()
    }

    /// Completes when this component is told to stop.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`on_draining`](Self::on_draining).
    pub fn on_stopping(&self) -> WaitForCancellationFuture<'_> {
        self.inner.stopping.cancelled()
    }

    /// Completes when in-flight work is told to cancel.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`on_draining`](Self::on_draining).
    pub fn on_cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.inner.cancelled.cancelled()
    }

    /// The draining signal as a token, for spawned tasks.
    pub fn draining_token(&self) -> CancellationToken {
        self.inner.draining.clone()
    }

    /// The stopping signal as a token, for spawned tasks.
    pub fn stopping_token(&self) -> CancellationToken {
        self.inner.stopping.clone()
    }

    /// The cancel signal as a token, for spawned tasks.
    pub fn cancel_token(&self) -> CancellationToken {
        self.inner.cancelled.clone()
    }

    /// The component's in-flight tracker: work tracked here holds up
    /// Stopping, and is named in the report if it outlives a deadline.
    pub fn tracker(&self) -> &Tracker {
        &self.inner.tracker
    }

    /// Names what still holds this component's run up, beyond the work in
    /// its [`tracker`](Self::tracker), for the report and the log.
    ///
    /// When the shutdown passes a deadline (the shutdown timeout, the hard
    /// deadline) with this component's run not yet returned, the app calls
    /// `describe` and lists each string as a [`Holdup`](crate::Holdup): an
    /// open connection, a broker that has not acknowledged, a child
    /// process. A component that registers nothing, or whose `describe`
    /// returns nothing, is named itself ("its run has not returned"), so a
    /// passed deadline always names its cause.
    ///
    /// `describe` runs on the app's driver task: keep it short, and never
    /// block in it. A later call replaces an earlier one (for this
    /// component).
    pub fn describe_holdups(&self, describe: impl Fn() -> Vec<String> + Send + Sync + 'static) {
        self.inner
            .app
            .set_holdups(self.inner.index, std::sync::Arc::new(describe));
    }

    /// What this component does just before the app takes an inventory of
    /// the work in flight: as Stopping begins, at the shutdown timeout, at
    /// the hard deadline, and at a forced exit (the report's and the flight
    /// record's lists).
    ///
    /// For work that a component learns of by looking rather than as it
    /// starts — the processes of a program it supervises, listed from
    /// `/proc` — `refresh` brings the [`tracker`](Self::tracker) up to
    /// date, so that the inventory is of that moment and not of the
    /// component's last look: the app takes it on its own task, and a
    /// forced exit does not wait for the component to run again.
    ///
    /// `refresh` runs on the app's driver task: keep it short, and never
    /// block in it. A later call replaces an earlier one (for this
    /// component, a restarted run's included).
    pub fn on_inventory(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.inner
            .app
            .set_before_inventory(self.inner.index, std::sync::Arc::new(refresh));
    }

    /// Lists this component's open connections for the flight record's
    /// inventories.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn list_connections(
        &self,
        list: impl Fn() -> Vec<crate::inventory::Connection> + Send + Sync + 'static,
    ) {
        self.inner.app.set_connections(
            self.inner.index,
            self.name().into(),
            std::sync::Arc::new(list),
        );
    }

    /// What this component does when the app is asked to reload its
    /// configuration ([`AppHandle::reload`], the control socket's `reload`
    /// command): read a certificate or a config file again, say. It returns
    /// an error when the new configuration is bad, and then keeps the old
    /// one. A later call replaces an earlier one (for this component).
    ///
    /// `reload` runs on the caller's task: keep it short.
    pub fn on_reload(
        &self,
        reload: impl Fn() -> Result<(), crate::BoxError> + Send + Sync + 'static,
    ) {
        self.inner
            .app
            .set_reload(self.inner.name.clone(), std::sync::Arc::new(reload));
    }

    /// Says how the program this component supervises ended, so that the
    /// process exits with that program's code: the report's status becomes
    /// [`ExitStatus::Program`](crate::ExitStatus::Program), and the report's
    /// log line, the flight record and [`Report::exit_code`](crate::Report::exit_code)
    /// give its code ([`ProgramExit::code`]: the program's own exit code,
    /// 128 + the signal that killed it, 126/127 when it could not start).
    ///
    /// For a component that runs another program, as `lameduck run` does,
    /// and passes its code through (as `tini` or a shell's `exec` would).
    /// Call it before the run returns; a later call in the same run
    /// replaces an earlier one, and a call after the run returned is
    /// ignored.
    ///
    /// It applies when this run is the component's last: the shutdown is
    /// under way, the restart policy does not restart it, or gives up. A run
    /// that is restarted has said nothing (the next run says its own); a
    /// run aborted at the hard deadline or by a forced exit neither.
    ///
    /// When several statuses apply, the most severe wins (see
    /// [`ExitStatus`](crate::ExitStatus)): a forced exit, the exit watchdog
    /// and an invalid configuration win over the program's code; the
    /// program's non-zero code wins over the component failure of a restart
    /// policy that gave up, and over a passed deadline; its 0 hides neither.
    /// Between two programs' non-zero codes, the first said in a last run
    /// wins.
    ///
    /// # Examples
    ///
    /// ```
    /// use lameduck::{App, Component, ExitStatus, ProgramExit};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let app = App::builder("wrapper")
    ///     .handle_signals(false)
    ///     .component(Component::new("program", |ctx| async move {
    ///         ctx.ready();
    ///         // … the program ran, and exited with 3 by itself.
    ///         ctx.set_program_exit(ProgramExit::Exited(3));
    ///         Ok(())
    ///     }))
    ///     .build()
    ///     .expect("valid configuration");
    /// let report = app.await;
    /// assert_eq!(report.status(), ExitStatus::Program(ProgramExit::Exited(3)));
    /// assert_eq!(report.status().to_string(), "program exited with 3 (3)");
    /// assert_eq!(report.status().code(), 3);
    /// # }
    /// ```
    pub fn set_program_exit(&self, end: ProgramExit) {
        *self
            .inner
            .program_exit
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(end);
    }

    /// The app handle.
    pub fn app(&self) -> &AppHandle {
        &self.inner.app
    }

    /// The app's phase now.
    pub fn phase(&self) -> Phase {
        self.inner.app.phase()
    }

    /// Why the app is shutting down, once it is.
    pub fn shutdown_reason(&self) -> Option<ShutdownReason> {
        self.inner.app.shutdown_reason()
    }
}
