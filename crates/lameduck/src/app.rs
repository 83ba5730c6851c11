//! The app: components, a budget and signals, run through the shutdown
//! sequence.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, watch};

use crate::component::BoxFuture;
use crate::{Health, Phase, Report, ShutdownReason, Timeline, Tracker};

mod builder;
mod driver;
pub(crate) mod finish;
mod graph;
#[cfg(any(feature = "flight", all(unix, feature = "upgrade")))]
pub(crate) mod probe;
pub(crate) mod signals;
mod watchdog;

#[cfg(feature = "metrics")]
pub(crate) use builder::FinalScrapeFn;
pub use builder::{AppBuilder, BuildError, BuildErrorKind, DrainPolicy};
pub use signals::SIGNAL_REPEAT_WINDOW;

/// A service: its components, its timing budget and its signal handling,
/// driven through `Starting → Running → Draining → Stopping → Cancelling →
/// Closing → Stopped`.
///
/// Build one with [`App::builder`], then `.await` it (or call
/// [`run`](Self::run)): it runs until a shutdown is triggered and completes,
/// returning a [`Report`] whose [`exit_code`](Report::exit_code) `main`
/// should return. It never exits the process itself, except when a second
/// signal forces the exit (or a signal ends a process still alive after its
/// report) or the exit watchdog fires past the grace period; see
/// [`AppBuilder::exit_on_force`] and [`AppBuilder::exit_watchdog`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use lameduck::{App, Budget, Component};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::process::ExitCode {
/// let app = App::builder("example")
///     .budget(Budget::new(Duration::from_secs(30)).drain_delay(Duration::from_millis(10)))
///     .component(Component::new("worker", |ctx| async move {
///         ctx.ready();
///         ctx.on_stopping().await;
///         Ok(())
///     }))
///     .build()
///     .expect("valid configuration");
///
/// // Stop it from anywhere: a signal, or a handle.
/// app.handle().shutdown("example done");
///
/// let report = app.await;
/// assert!(report.status().is_clean());
/// report.exit_code()
/// # }
/// ```
#[must_use = "an app does nothing until it is run or awaited"]
pub struct App {
    handle: AppHandle,
    parts: builder::Parts,
    events: mpsc::UnboundedReceiver<Event>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.handle.name())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Starts building an app named `name` (used in logs and the report).
    pub fn builder(name: impl Into<Arc<str>>) -> AppBuilder {
        AppBuilder::new(name.into())
    }

    /// A handle to observe and control the app; valid before, during and
    /// after `run`.
    pub fn handle(&self) -> AppHandle {
        self.handle.clone()
    }

    /// The checked timing budget.
    pub fn timeline(&self) -> &Timeline {
        &self.parts.timeline
    }

    /// Runs the app until it has shut down.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future mid-way abandons the shutdown
    /// sequence (components are aborted with the runtime, nothing is closed).
    pub async fn run(self) -> Report {
        driver::Driver::new(self.handle, self.parts, self.events)
            .run()
            .await
    }
}

impl IntoFuture for App {
    type Output = Report;
    type IntoFuture = RunFuture;

    fn into_future(self) -> RunFuture {
        RunFuture {
            inner: Box::pin(self.run()),
        }
    }
}

/// The future of [`App::run`], from `app.await`.
#[must_use = "futures do nothing unless polled"]
pub struct RunFuture {
    inner: BoxFuture<Report>,
}

impl std::fmt::Debug for RunFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFuture").finish_non_exhaustive()
    }
}

impl Future for RunFuture {
    type Output = Report;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Report> {
        self.inner.as_mut().poll(cx)
    }
}

/// What components and handles tell the driver.
#[derive(Debug)]
pub(crate) enum Event {
    Ready {
        index: usize,
        attempt: u32,
    },
    Shutdown(ShutdownReason),
    /// The first `SIGTERM`/`SIGINT` the signal thread took: it starts the
    /// shutdown, or joins one begun for another reason.
    Signal(crate::Signal),
    /// A second signal: log the forced report, then tell the signal thread
    /// (when it waits to exit the process itself).
    Force {
        signal: crate::Signal,
        logged: Option<std::sync::mpsc::Sender<()>>,
    },
    /// A signal the program took itself cuts the drain short
    /// ([`AppHandle::cut_drain`]).
    CutDrain(crate::Signal),
    TrackerIdle(usize),
    /// The traffic was sampled while draining: an adaptive drain looks
    /// again.
    TrafficSampled,
    /// An upgrade request: `SIGHUP`, the handle or the control socket.
    #[cfg(all(unix, feature = "upgrade"))]
    Upgrade(crate::upgrade::Request),
    /// An upgrade moved on: the new process is ready or failed, or (in a
    /// new process) the parent gave its verdict.
    #[cfg(all(unix, feature = "upgrade"))]
    UpgradeStep(crate::upgrade::Step),
    /// An in-place upgrade ended (`Upgrade::in_place`): the pid that
    /// serves now, or why not.
    #[cfg(all(unix, feature = "upgrade"))]
    UpgradedInPlace(Result<u32, String>),
}

/// A cheap, cloneable handle to a running (or not yet running) [`App`]:
/// observe its phase and health, request a shutdown, add trackers.
#[derive(Clone, Debug)]
pub struct AppHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: Arc<str>,
    phase: watch::Sender<Phase>,
    reason: OnceLock<ShutdownReason>,
    events: mpsc::UnboundedSender<Event>,
    health: Health,
    trackers: Mutex<Vec<Tracker>>,
    /// The work in flight as Stopping began, counted once: the report's
    /// `in_flight_at_stop` and the flight record's inventory at stopping
    /// are this one list.
    at_stop: OnceLock<Vec<crate::WorkItem>>,
    holdups: Mutex<Holdups>,
    /// What each component brings up to date in its tracker before an
    /// inventory ([`Context::on_inventory`](crate::Context::on_inventory)).
    before_inventory: Mutex<Holdups<RefreshFn>>,
    /// The serving listeners' traffic, sampled for the adaptive drain and
    /// the flight record.
    traffic: crate::traffic::Traffic,
    /// Each component's open connections, by component index.
    connections: Mutex<crate::inventory::Lists>,
    reloads: Mutex<crate::reload::Reloads>,
    /// The phase as one atomic (`Phase as u8`), set before the watch
    /// channel: hot paths read it without a lock, and whoever sees a phase
    /// on the channel finds it here too.
    phase_now: Arc<AtomicU8>,
    /// Tasks that serve until the end of `run()`, not of the component
    /// that started them (an admin listener: the final scrape of
    /// `/metrics` comes at Closing); aborted then.
    kept: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The lifecycle metrics (feature `metrics`), when the app has them.
    #[cfg(feature = "metrics")]
    metrics: OnceLock<Arc<crate::metrics::Hub>>,
}

/// Each component's description of what holds it up (or another hook of
/// it), by component index.
pub(crate) struct Holdups<F = DescribeFn>(pub(crate) std::collections::HashMap<usize, F>);

impl<F> Default for Holdups<F> {
    fn default() -> Self {
        Self(std::collections::HashMap::new())
    }
}

pub(crate) type DescribeFn = Arc<dyn Fn() -> Vec<String> + Send + Sync>;
pub(crate) type RefreshFn = Arc<dyn Fn() + Send + Sync>;

impl<F> std::fmt::Debug for Holdups<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl AppHandle {
    pub(crate) fn new(name: Arc<str>, events: mpsc::UnboundedSender<Event>) -> Self {
        let (phase, _) = watch::channel(Phase::Starting);
        let health = Health::new();
        health.set_phase(Phase::Starting);
        Self {
            shared: Arc::new(Shared {
                name,
                phase,
                reason: OnceLock::new(),
                events,
                health,
                trackers: Mutex::new(Vec::new()),
                at_stop: OnceLock::new(),
                holdups: Mutex::new(Holdups::default()),
                before_inventory: Mutex::new(Holdups::default()),
                traffic: crate::traffic::Traffic::default(),
                connections: Mutex::new(crate::inventory::Lists::default()),
                reloads: Mutex::new(crate::reload::Reloads::default()),
                phase_now: Arc::new(AtomicU8::new(Phase::Starting as u8)),
                kept: Mutex::new(Vec::new()),
                #[cfg(feature = "metrics")]
                metrics: OnceLock::new(),
            }),
        }
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        *self.shared.phase.borrow()
    }

    /// A receiver that sees every phase change.
    pub fn watch_phase(&self) -> watch::Receiver<Phase> {
        self.shared.phase.subscribe()
    }

    /// Completes once the app has reached `phase` (or gone past it).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.watch_phase();
        // The sender lives in `Shared`, which this handle keeps alive, so
        // the channel cannot close while we wait.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }

    /// Asks the app to shut down, with `reason` in logs and the report. The
    /// first trigger wins; later ones are ignored.
    pub fn shutdown(&self, reason: impl Into<String>) {
        self.send(Event::Shutdown(ShutdownReason::Requested(
            reason.into().into(),
        )));
    }

    /// Forces the exit as a second `signal` would when the app handles its
    /// own signals: what is left of the shutdown is skipped, the work still
    /// in flight is aborted and named, and the report (status
    /// [`ExitStatus::Forced`](crate::ExitStatus::Forced), exit code 128 +
    /// the signal's number) is published — the flight record written — and
    /// returned by `run()`. For a program that takes its signals itself
    /// ([`AppBuilder::handle_signals(false)`](crate::AppBuilder::handle_signals))
    /// and decides when the operator has insisted.
    pub fn force(&self, signal: crate::Signal) {
        self.send(Event::Force {
            signal,
            logged: None,
        });
    }

    /// Ends the drain now, as cut short by `signal`, for a program that
    /// takes its signals itself
    /// ([`AppBuilder::handle_signals(false)`](crate::AppBuilder::handle_signals))
    /// and decides that this one skips what is left of the drain (`lameduck
    /// run`'s second signal): the shutdown goes on to Stopping, and the
    /// report, the log and the flight record say the drain was cut short by
    /// `signal` ([`DrainEnd::CutBySignal`](crate::DrainEnd::CutBySignal)).
    /// Nothing else is skipped. Ignored before a shutdown began and after
    /// the drain ended.
    pub fn cut_drain(&self, signal: crate::Signal) {
        self.send(Event::CutDrain(signal));
    }

    /// Starts a zero-downtime upgrade (feature `upgrade`): a new process of
    /// the program on disk takes over the listening sockets, and once it is
    /// ready this app drains and stops with
    /// [`ShutdownReason::Upgraded`]. The future gives the outcome; see
    /// [`upgrade`](crate::upgrade) for the whole story.
    ///
    /// # Errors
    ///
    /// The future fails with an [`UpgradeError`](crate::upgrade::UpgradeError)
    /// when another upgrade is under way (`Busy`), the app is not Running,
    /// upgrades are disabled, or the new process failed, exited or was not
    /// ready in time — in which case it was stopped, and this app goes on
    /// serving.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not cancel the upgrade.
    #[cfg(all(unix, feature = "upgrade"))]
    pub fn upgrade(&self) -> crate::upgrade::UpgradeFuture {
        self.request_upgrade(crate::upgrade::Via::Handle)
    }

    /// [`upgrade`](Self::upgrade) asked for by `SIGHUP`, for an app that
    /// takes its signals itself
    /// ([`AppBuilder::handle_signals(false)`](crate::AppBuilder::handle_signals)),
    /// as `lameduck run` does: the log, the flight record and a refused
    /// concurrent request name `SIGHUP`, not the app handle.
    ///
    /// # Errors
    ///
    /// As [`upgrade`](Self::upgrade).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future does not cancel the upgrade.
    #[cfg(all(unix, feature = "upgrade"))]
    pub fn upgrade_on_sighup(&self) -> crate::upgrade::UpgradeFuture {
        self.request_upgrade(crate::upgrade::Via::Signal)
    }

    #[cfg(all(unix, feature = "upgrade"))]
    pub(crate) fn request_upgrade(
        &self,
        via: crate::upgrade::Via,
    ) -> crate::upgrade::UpgradeFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Event::Upgrade(crate::upgrade::Request {
            via,
            reply: Some(tx),
        }));
        crate::upgrade::UpgradeFuture::new(rx)
    }

    /// Reloads the configuration of every component that can (see
    /// [`Context::on_reload`](crate::Context::on_reload)) — the certificate
    /// of an HTTPS [`Server`](crate::http::Server), say — without a
    /// restart. The control socket's `reload` command (feature `upgrade`)
    /// calls it. Returns the names of the components reloaded.
    ///
    /// # Errors
    ///
    /// A [`ReloadError`](crate::ReloadError) naming each component whose
    /// reload failed and why; each of those keeps its old configuration,
    /// and the others have reloaded.
    pub fn reload(&self) -> Result<Vec<Arc<str>>, crate::ReloadError> {
        let reloads = self
            .shared
            .reloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all();
        crate::reload::run(reloads)
    }

    pub(crate) fn set_reload(&self, component: Arc<str>, reload: crate::reload::ReloadFn) {
        self.shared
            .reloads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(component, reload);
    }

    /// Why the app is shutting down, once it is.
    pub fn shutdown_reason(&self) -> Option<ShutdownReason> {
        self.shared.reason.get().cloned()
    }

    /// The health registry behind the probes.
    pub fn health(&self) -> &Health {
        &self.shared.health
    }

    /// A new tracker for work that belongs to no single component; the app
    /// waits for it at Stopping and names what is left in its report.
    pub fn tracker(&self, name: impl Into<Arc<str>>) -> Tracker {
        let tracker = Tracker::new(name);
        self.register_tracker(tracker.clone());
        tracker
    }

    /// The work in flight now in every tracker of the app (each
    /// component's, and those made with [`tracker`](Self::tracker)): what a
    /// shutdown would wait for. With [`http::Server`](crate::http::Server)
    /// that includes responses still being written, event streams and
    /// upgraded connections.
    pub fn work(&self) -> Vec<crate::WorkItem> {
        self.trackers().iter().flat_map(Tracker::snapshot).collect()
    }

    /// The driver's count of the work in flight as Stopping begins, taken
    /// before the phase is observed.
    pub(crate) fn set_work_at_stop(&self, work: Vec<crate::WorkItem>) {
        let _ = self.shared.at_stop.set(work);
    }

    /// The work in flight as Stopping began (the list the report counts),
    /// or, before Stopping, the work in flight now.
    #[cfg(feature = "flight")]
    pub(crate) fn work_at_stop(&self) -> Vec<crate::WorkItem> {
        match self.shared.at_stop.get() {
            Some(work) => work.clone(),
            None => self.work(),
        }
    }

    pub(crate) fn register_tracker(&self, tracker: Tracker) -> usize {
        let mut list = self
            .shared
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        list.push(tracker);
        list.len() - 1
    }

    pub(crate) fn trackers(&self) -> Vec<Tracker> {
        self.shared
            .trackers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds a source of traffic for the adaptive drain and the flight
    /// record: a listener of a server that lameduck does not run, say.
    /// `sample` is called every [`TRAFFIC_TICK`](crate::TRAFFIC_TICK) (100
    /// ms) on the app's runtime, and must return at once: the cumulative
    /// counts of what `listener` saw so far, or `None` once it is gone for
    /// good (it is then dropped). Several sources may share a name: their
    /// traffic adds up under it.
    ///
    /// [`http::Server`](crate::http::Server) and
    /// [`DrainLayer`](crate::http::DrainLayer) add their own, named after
    /// their component.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use lameduck::{App, TrafficCounts};
    ///
    /// let app = App::builder("svc").build().unwrap();
    /// let requests = Arc::new(AtomicU64::new(0));
    /// let seen = requests.clone();
    /// app.handle().traffic_source("grpc", move || {
    ///     Some(TrafficCounts::new(seen.load(Ordering::Relaxed)))
    /// });
    /// // In the server, for each request: one relaxed add.
    /// requests.fetch_add(1, Ordering::Relaxed);
    /// ```
    pub fn traffic_source(
        &self,
        listener: impl Into<Arc<str>>,
        sample: impl Fn() -> Option<crate::TrafficCounts> + Send + Sync + 'static,
    ) {
        self.shared.traffic.add(listener.into(), Arc::new(sample));
    }

    pub(crate) fn traffic(&self) -> &crate::traffic::Traffic {
        &self.shared.traffic
    }

    /// Lists `component`'s open connections with `list` from now on.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn set_connections(
        &self,
        index: usize,
        component: Arc<str>,
        list: crate::inventory::ListFn,
    ) {
        self.shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .insert(index, (component, list));
    }

    /// Every component's open connections now, by component name.
    #[cfg_attr(not(feature = "flight"), allow(dead_code))]
    pub(crate) fn connections(&self) -> Vec<(Arc<str>, crate::inventory::Connection)> {
        let lists: Vec<_> = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .values()
            .cloned()
            .collect();
        lists
            .into_iter()
            .flat_map(|(name, list)| list().into_iter().map(move |c| (name.clone(), c)))
            .collect()
    }

    /// The phase as an atomic `Phase as u8`, for hot paths.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn phase_cell(&self) -> Arc<AtomicU8> {
        self.shared.phase_now.clone()
    }

    /// Keeps `task` running until the end of `run()`, then aborts it.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn keep_until_stopped(&self, task: tokio::task::AbortHandle) {
        self.shared
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// Where the app's metrics are (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics_slot(&self) -> &OnceLock<Arc<crate::metrics::Hub>> {
        &self.shared.metrics
    }

    /// Aborts what [`keep_until_stopped`](Self::keep_until_stopped) kept.
    pub(crate) fn release_kept(&self) {
        let kept = std::mem::take(&mut *self.shared.kept.lock().unwrap_or_else(|e| e.into_inner()));
        for task in kept {
            task.abort();
        }
    }

    pub(crate) fn set_holdups(&self, component: usize, describe: DescribeFn) {
        self.shared
            .holdups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .insert(component, describe);
    }

    pub(crate) fn set_before_inventory(&self, component: usize, refresh: RefreshFn) {
        self.shared
            .before_inventory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .insert(component, refresh);
    }

    /// Runs every component's [`Context::on_inventory`](crate::Context::on_inventory)
    /// hook, outside the lock (a hook may track work).
    pub(crate) fn before_inventory(&self) {
        let hooks: Vec<RefreshFn> = self
            .shared
            .before_inventory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .values()
            .cloned()
            .collect();
        for refresh in hooks {
            refresh();
        }
    }

    pub(crate) fn holdups_of(&self, component: usize) -> Option<DescribeFn> {
        self.shared
            .holdups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get(&component)
            .cloned()
    }

    pub(crate) fn send(&self, event: Event) {
        // After the driver is gone nobody listens, and there is nothing left
        // to tell; dropping the event is right.
        let _ = self.shared.events.send(event);
    }

    pub(crate) fn set_reason(&self, reason: ShutdownReason) -> bool {
        self.shared.reason.set(reason).is_ok()
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        // Health first: readiness must be false before anyone can observe
        // the new phase, so that nothing sees "draining" while still ready.
        self.shared.health.set_phase(phase);
        self.shared.phase_now.store(phase as u8, Ordering::Release);
        self.shared.phase.send_replace(phase);
    }
}
