//! Building an app: components, budget, signal policy; checked at build.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{App, AppHandle, graph};
use crate::component::CloseFn;
use crate::fmt::Seconds;
use crate::observe::Observer;
use crate::{
    BoxError, Budget, BudgetError, Component, DEFAULT_CLOSE_TIMEOUT, ExitStatus, Signal, Strategy,
    Timeline,
};

/// Whether a shutdown signal goes through Draining or skips it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainPolicy {
    /// Always wait the drain delay.
    Always,
    /// Never wait the drain delay.
    Never,
    /// Skip the drain delay when standard input is a terminal: a person
    /// pressed Ctrl+C, no load balancer is involved.
    UnlessTerminal,
}

pub(crate) type FlushFn = Box<dyn FnOnce() + Send>;

/// The metrics' final step at Closing: wait for a last scrape, else push;
/// given its bound and why the app shuts down.
pub(crate) type FinalScrapeFn = Box<
    dyn FnOnce(
            std::time::Duration,
            Option<crate::ShutdownReason>,
        ) -> crate::component::BoxFuture<()>
        + Send,
>;

/// An exporter's flush, run at Closing after every component has closed.
pub(crate) struct Exporter {
    pub(crate) name: Arc<str>,
    pub(crate) flush: CloseFn,
}

/// Builds an [`App`]; see [`App::builder`].
#[must_use = "a builder does nothing until built"]
pub struct AppBuilder {
    name: Arc<str>,
    budget: Budget,
    components: Vec<Component>,
    strategy: Strategy,
    handle_signals: bool,
    sigterm: DrainPolicy,
    sigint: DrainPolicy,
    exit_watchdog: bool,
    exit_on_force: bool,
    flushes: Vec<FlushFn>,
    observers: Vec<Arc<dyn Observer>>,
    exporters: Vec<Exporter>,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
    /// Where the flight record goes, and its size limit.
    #[cfg(feature = "flight")]
    flight_record: Option<(std::path::PathBuf, usize)>,
    #[cfg(all(unix, feature = "upgrade"))]
    upgrade: crate::upgrade::Upgrade,
}

/// What the driver needs, checked.
pub(crate) struct Parts {
    pub(crate) components: Vec<Component>,
    pub(crate) order: Vec<usize>,
    pub(crate) timeline: Timeline,
    pub(crate) strategy: Strategy,
    pub(crate) handle_signals: bool,
    pub(crate) sigterm: DrainPolicy,
    pub(crate) sigint: DrainPolicy,
    pub(crate) exit_watchdog: bool,
    pub(crate) exit_on_force: bool,
    pub(crate) flushes: Vec<FlushFn>,
    pub(crate) observers: Vec<Arc<dyn Observer>>,
    pub(crate) exporters: Vec<Exporter>,
    pub(crate) final_scrape: Option<FinalScrapeFn>,
    pub(crate) sample_traffic: bool,
    #[cfg(feature = "flight")]
    pub(crate) recorder: Option<Arc<crate::flight::Recorder>>,
    #[cfg(all(unix, feature = "upgrade"))]
    pub(crate) upgrade: crate::upgrade::Upgrade,
}

impl AppBuilder {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            budget: Budget::default(),
            components: Vec::new(),
            strategy: Strategy::default(),
            handle_signals: true,
            sigterm: DrainPolicy::Always,
            sigint: DrainPolicy::UnlessTerminal,
            exit_watchdog: true,
            exit_on_force: true,
            flushes: Vec::new(),
            observers: Vec::new(),
            exporters: Vec::new(),
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "flight")]
            flight_record: None,
            #[cfg(all(unix, feature = "upgrade"))]
            upgrade: {
                // The path to start again is the one the process was started
                // with: record it as early as the app exists.
                crate::upgrade::exe::capture();
                crate::upgrade::Upgrade::new()
            },
        }
    }

    /// How the app upgrades (feature `upgrade`; default [`Upgrade::new`]:
    /// on `SIGHUP` and [`AppHandle::upgrade`](super::AppHandle::upgrade),
    /// 30 s to become ready). See [`upgrade`](crate::upgrade).
    ///
    /// [`Upgrade::new`]: crate::upgrade::Upgrade::new
    #[cfg(all(unix, feature = "upgrade"))]
    pub fn upgrade(mut self, upgrade: crate::upgrade::Upgrade) -> Self {
        self.upgrade = upgrade;
        self
    }

    /// Sets the timing budget (default: [`Budget::default`], a 30 s grace
    /// period). At build, each component with a close gets its close timeout
    /// from the budget (by name) or from the component, and the budget
    /// counts it: one source for every timeout.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// Adds a component.
    pub fn component(mut self, component: impl Into<Component>) -> Self {
        self.components.push(component.into());
        self
    }

    /// Sets which components restart along with a failed one (default
    /// one-for-one).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Whether the app takes `SIGTERM` and `SIGINT` (Ctrl+C on Windows)
    /// itself (default true), and `SIGHUP` for upgrades (feature `upgrade`).
    ///
    /// When true, `run` installs the handlers and starts a plain thread that
    /// counts the signals: the first starts the shutdown (or joins one begun
    /// for another reason), a repeat within [`SIGNAL_REPEAT_WINDOW`] is the
    /// same delivery, and a second forces the exit (see
    /// [`exit_on_force`](Self::exit_on_force)). A handler cannot be given
    /// back: from then on the signals no longer have their default action,
    /// for the life of the process.
    ///
    /// Turn it off to trigger shutdowns only through
    /// [`AppHandle::shutdown`], e.g. when several apps share a process and
    /// the program handles the signals itself.
    ///
    /// [`SIGNAL_REPEAT_WINDOW`]: crate::SIGNAL_REPEAT_WINDOW
    pub fn handle_signals(mut self, yes: bool) -> Self {
        self.handle_signals = yes;
        self
    }

    /// Sets whether `signal` drains first. Defaults: `SIGTERM` always drains;
    /// `SIGINT` drains unless standard input is a terminal.
    pub fn drain_on(mut self, signal: Signal, policy: DrainPolicy) -> Self {
        match signal {
            Signal::Terminate => self.sigterm = policy,
            Signal::Interrupt => self.sigint = policy,
        }
        self
    }

    /// Whether a plain thread ends the process when the shutdown overruns
    /// its budget, even if the runtime is stuck in blocking code (default
    /// true): with exit code 124 when no report came out, or with the
    /// report's own code when only the runtime's teardown hangs, so that the
    /// exit code never contradicts the report. It runs the flushes first.
    ///
    /// The watchdog is armed at the shutdown trigger and stays armed after
    /// `run` returns, because dropping the runtime is where a task stuck in
    /// blocking code hangs the process (tokio#5338). A process that goes on
    /// living after its app has stopped (several apps in one process, tests)
    /// should turn it off.
    pub fn exit_watchdog(mut self, yes: bool) -> Self {
        self.exit_watchdog = yes;
        self
    }

    /// Whether a second signal exits the process at once with 128 + signal
    /// (default true).
    ///
    /// When true, the signal thread ends the process whatever the runtime is
    /// doing: it asks the app to abort what is left and log its report,
    /// waits at most 250 ms for that (a runtime blocked by a component does
    /// not answer), runs the flushes within the log flush time, and exits.
    /// After `run` returned, it stays: a signal (other than a repeat of the
    /// first) then ends a process that has not exited — typically because
    /// dropping the runtime waits for a blocking read — with 128 + signal,
    /// unless another app of the process still handles signals.
    ///
    /// When false, lameduck never exits the process on a signal: `run`
    /// returns early with [`ExitStatus::Forced`] as soon as the runtime runs
    /// the app, for callers that must clean up themselves, and once `run`
    /// returned the app no longer acts on signals. A process that outlives
    /// its app wants this, and [`exit_watchdog(false)`](Self::exit_watchdog).
    pub fn exit_on_force(mut self, yes: bool) -> Self {
        self.exit_on_force = yes;
        self
    }

    /// Adds a flush to run last of all, on a plain thread, bounded by the
    /// budget's log flush time — typically dropping a non-blocking log
    /// writer's guard. Flushes also run on a forced exit.
    pub fn on_flush(mut self, flush: impl FnOnce() + Send + 'static) -> Self {
        self.flushes.push(Box::new(flush));
        self
    }

    /// Adds an exporter's flush to Closing: an OpenTelemetry provider's
    /// `force_flush` or `shutdown`, a Kafka producer's flush, a Sentry
    /// client's close — whatever must send what it holds before the
    /// process goes.
    ///
    /// Exporters flush at Closing, in the order they were added, after
    /// every component has closed and after the metrics' final scrape,
    /// before the report and the log flush. Each is bounded by its own
    /// timeout, set in one place like a component's close timeout:
    /// [`Budget::close_timeout`] with the exporter's `name`, or else
    /// [`DEFAULT_CLOSE_TIMEOUT`]; the budget counts it. A flush past its
    /// timeout is abandoned, and the exit code says a deadline passed
    /// (3); one that fails or panics makes it 1. The report says how long
    /// each took, and whether it finished
    /// ([`Report::exporters`](crate::Report::exporters)).
    ///
    /// A second signal skips the exporters (the exit must be quick); the
    /// report then says they did not run.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use lameduck::{App, Budget};
    ///
    /// let app = App::builder("svc")
    ///     .budget(Budget::default().close_timeout("otel", Duration::from_secs(2)))
    ///     .exporter("otel", || async {
    ///         // provider.force_flush() on a blocking thread, say
    ///         Ok(())
    ///     })
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(app.timeline().close_timeout("otel"), Some(Duration::from_secs(2)));
    /// ```
    pub fn exporter<F, Fut>(mut self, name: impl Into<Arc<str>>, flush: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.exporters.push(Exporter {
            name: name.into(),
            flush: Box::new(move || Box::pin(flush())),
        });
        self
    }

    /// Gives the app lifecycle metrics (feature `metrics`): kept up to
    /// date from its events, served as `/metrics` on each admin listener
    /// of its [`http::Server`](crate::http::Server)s, waited for or pushed
    /// at Closing. See [`metrics`](crate::metrics).
    ///
    /// At build, the budget's final scrape timeout comes from the metrics
    /// (their wait plus the push's timeout) unless the budget sets it; set
    /// it in one place.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Writes a flight record of every shutdown and upgrade to `path`
    /// (feature `flight`; off by default): a JSON file of the phases, what
    /// ended the drain, the traffic, what was in flight at each deadline,
    /// the restarts, the upgrade's steps and the exit code. See
    /// [`flight`](crate::flight).
    ///
    /// `{pid}` in the path becomes the process id and `{app}` the app's
    /// name: with `{pid}`, the two processes of an upgrade keep a record
    /// each; without, each record replaces the last. The directory must
    /// exist. A record never exceeds 1 MiB unless
    /// [`flight_record_limit`](Self::flight_record_limit) says otherwise.
    #[cfg(feature = "flight")]
    pub fn flight_record(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        let limit = self
            .flight_record
            .as_ref()
            .map_or(crate::flight::DEFAULT_LIMIT, |(_, l)| *l);
        self.flight_record = Some((path.into(), limit));
        self
    }

    /// Sets the flight record's size limit, in bytes (default 1 MiB, at
    /// least [`MIN_LIMIT`](crate::flight::MIN_LIMIT), 16 KiB, at most
    /// [`MAX_LIMIT`](crate::flight::MAX_LIMIT), 64 MiB: the most a reader
    /// reads): past it the longest lists are cut, and the record says how
    /// much went.
    #[cfg(feature = "flight")]
    pub fn flight_record_limit(mut self, bytes: usize) -> Self {
        let path = self
            .flight_record
            .take()
            .map(|(p, _)| p)
            .unwrap_or_default();
        self.flight_record = Some((path, bytes));
        self
    }

    /// Adds an observer of the app's lifecycle: phase changes, components
    /// starting, ready, failing and restarting, deadlines and what they
    /// cut, closes, upgrades and the report. See [`observe`](crate::observe).
    ///
    /// Observers hear each event in the order they were added, after the
    /// app's own log line and systemd's notification.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Checks the configuration and builds the app.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for two components with one name, a dependency on a
    /// name that is not a component, a dependency cycle (naming it), a close
    /// timeout set both in the budget and on the component (naming both), a
    /// budget close timeout that names no component with a close, a budget
    /// that does not fit its grace period (showing the arithmetic), or
    /// upgrade settings that cannot be honoured ([`BuildErrorKind::Upgrade`]).
    pub fn build(self) -> Result<App, BuildError> {
        let order = graph::order(&self.components)?;
        exporter_names(&self.exporters, &self.components)?;
        let budget = close_timeouts(self.budget, &self.components, &self.exporters)?;
        #[cfg(feature = "metrics")]
        let budget = match &self.metrics {
            Some(m) => m
                .resolve_budget(budget)
                .map_err(|message| BuildError::new(BuildErrorKind::TimeoutSetTwice, message))?,
            None => budget,
        };
        #[cfg(feature = "metrics")]
        let with_metrics = self.metrics.is_some();
        #[cfg(not(feature = "metrics"))]
        let with_metrics = false;
        if let (Some(d), false) = (budget.get_final_scrape_timeout(), with_metrics)
            && !d.is_zero()
        {
            return Err(BuildError::new(
                BuildErrorKind::FinalScrapeWithoutMetrics,
                format!(
                    "Budget::final_scrape_timeout({}) is set, but the app has no metrics to wait for (AppBuilder::metrics, feature `metrics`)",
                    Seconds(d)
                ),
            ));
        }
        let timeline = budget.check().map_err(BuildError::budget)?;
        #[cfg(feature = "flight")]
        let recorder = match &self.flight_record {
            Some((path, limit)) => Some(Arc::new(recorder(path, *limit)?)),
            None => None,
        };
        #[cfg(feature = "flight")]
        let records = recorder.is_some();
        #[cfg(not(feature = "flight"))]
        let records = false;
        #[cfg(all(unix, feature = "upgrade"))]
        self.upgrade
            .check()
            .map_err(|message| BuildError::new(BuildErrorKind::Upgrade, message))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = AppHandle::new(self.name, tx);
        #[allow(unused_mut)]
        let mut observers = self.observers;
        #[allow(unused_mut)]
        let mut final_scrape = None;
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.metrics {
            metrics
                .attach(&handle)
                .map_err(|message| BuildError::new(BuildErrorKind::MetricsTaken, message))?;
            // First of the builder's: what users' observers read from the
            // metrics is up to date with the event they hear.
            observers.insert(0, metrics.observer());
            final_scrape = Some(metrics.final_step());
        }
        #[allow(unused_mut)]
        let mut flushes = self.flushes;
        #[cfg(feature = "flight")]
        if let Some(recorder) = &recorder {
            observers.push(recorder.clone());
            // First of the flushes: the record is on disk before the logs
            // are flushed, when the process ends with no report.
            let on_exit = recorder.clone();
            flushes.insert(0, Box::new(move || on_exit.on_exit()));
        }
        Ok(App {
            handle,
            events: rx,
            parts: Parts {
                components: self.components,
                order,
                strategy: self.strategy,
                handle_signals: self.handle_signals,
                sigterm: self.sigterm,
                sigint: self.sigint,
                exit_watchdog: self.exit_watchdog,
                exit_on_force: self.exit_on_force,
                flushes,
                observers,
                exporters: self.exporters,
                final_scrape,
                sample_traffic: timeline.is_adaptive() || records,
                #[cfg(feature = "flight")]
                recorder,
                timeline,
                #[cfg(all(unix, feature = "upgrade"))]
                upgrade: self.upgrade,
            },
        })
    }
}

/// The flight recorder for `path`, checked: a directory that exists, a
/// limit that leaves room for the record.
#[cfg(feature = "flight")]
fn recorder(path: &std::path::Path, limit: usize) -> Result<crate::flight::Recorder, BuildError> {
    let wrong = |message: String| BuildError::new(BuildErrorKind::FlightRecord, message);
    if path.as_os_str().is_empty() || path.file_name().is_none() {
        return Err(wrong(format!(
            "the flight record's path {path:?} names no file"
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(wrong(format!(
            "the flight record's directory {} {what}",
            dir.display()
        )));
    }
    // The record is written to a temporary file in the directory, renamed
    // over the path: both must be possible, or the record would be lost at
    // the very end, with only a warning.
    if path.to_str().is_none_or(|p| !p.contains("{pid}")) && path.is_dir() {
        return Err(wrong(format!(
            "the flight record's path {} is a directory",
            path.display()
        )));
    }
    super::probe::create_file_in(dir).map_err(|err| {
        wrong(format!(
            "the flight record {} cannot be written in {}: {}",
            path.display(),
            dir.display(),
            super::probe::why(&err)
        ))
    })?;
    if limit < crate::flight::MIN_LIMIT {
        return Err(wrong(format!(
            "the flight record's size limit {limit} bytes is below the minimum {} bytes",
            crate::flight::MIN_LIMIT
        )));
    }
    if limit > crate::flight::MAX_LIMIT {
        return Err(wrong(format!(
            "the flight record's size limit {limit} bytes is above the maximum {} bytes",
            crate::flight::MAX_LIMIT
        )));
    }
    Ok(crate::flight::Recorder::new(path.to_path_buf(), limit))
}

/// Resolves each close timeout to one value, set in one place: the budget
/// (by name), the component, or else the default; the budget counts them
/// all.
fn close_timeouts(
    mut budget: Budget,
    components: &[Component],
    exporters: &[Exporter],
) -> Result<Budget, BuildError> {
    let closing = || components.iter().filter(|c| c.close.is_some());
    if let Some(name) = budget
        .close_names()
        .find(|n| !closing().any(|c| &*c.name == *n) && !exporters.iter().any(|e| &*e.name == *n))
    {
        let d = budget.get_close_timeout(name).unwrap_or_default();
        let known: Vec<&str> = closing()
            .map(|c| c.name())
            .chain(exporters.iter().map(|e| &*e.name))
            .collect();
        return Err(BuildError::new(
            BuildErrorKind::UnknownCloseTimeout,
            format!(
                "Budget::close_timeout({name:?}, {}) names no component with an on_close and no exporter (those that close: {})",
                Seconds(d),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    for c in closing() {
        budget = match (budget.get_close_timeout(&c.name), c.close_timeout) {
            (Some(b), Some(d)) => {
                return Err(BuildError::new(
                    BuildErrorKind::TimeoutSetTwice,
                    format!(
                        "the close timeout of component {} is set twice: Budget::close_timeout({:?}, {}) and Component::close_timeout({}); set it in one place",
                        c.name,
                        &*c.name,
                        Seconds(b),
                        Seconds(d)
                    ),
                ));
            }
            (Some(_), None) => budget,
            (None, d) => budget.close_timeout(c.name(), d.unwrap_or(DEFAULT_CLOSE_TIMEOUT)),
        };
    }
    for e in exporters {
        if budget.get_close_timeout(&e.name).is_none() {
            budget = budget.close_timeout(&*e.name, DEFAULT_CLOSE_TIMEOUT);
        }
    }
    Ok(budget)
}

/// An exporter's name is its own: its timeout and its line in the report
/// are found by it.
fn exporter_names(exporters: &[Exporter], components: &[Component]) -> Result<(), BuildError> {
    for (i, e) in exporters.iter().enumerate() {
        let twice = exporters[..i].iter().any(|o| o.name == e.name);
        if twice || components.iter().any(|c| c.name == e.name) {
            return Err(BuildError::new(
                BuildErrorKind::DuplicateName,
                format!(
                    "the exporter {} has the name of another {}; each needs a name of its own",
                    e.name,
                    if twice { "exporter" } else { "component" }
                ),
            ));
        }
    }
    Ok(())
}

impl std::fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("name", &self.name)
            .field("budget", &self.budget)
            .field("components", &self.components)
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// A configuration the app refuses to start with.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    kind: BuildErrorKind,
    message: String,
}

/// What is wrong with the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// Two components have the same name.
    DuplicateName,
    /// A component depends on a name that is not a component.
    UnknownDependency,
    /// Components depend on each other in a cycle.
    DependencyCycle,
    /// The timing budget does not fit the grace period.
    Budget,
    /// A timeout is set in two places (a close timeout in the budget and on
    /// the component).
    TimeoutSetTwice,
    /// The budget sets a close timeout for a name that is no component with
    /// a close.
    UnknownCloseTimeout,
    /// The budget sets a final scrape timeout, and the app has no metrics.
    FinalScrapeWithoutMetrics,
    /// The metrics given already observe another app.
    MetricsTaken,
    /// The flight record (feature `flight`) cannot be written where asked:
    /// its directory does not exist, or its size limit is too small.
    FlightRecord,
    /// The upgrade settings (feature `upgrade`) cannot be honoured: an
    /// unusable PID file or control socket path, or a process started by an
    /// upgrade whose channel to its parent is unusable.
    Upgrade,
}

impl BuildError {
    pub(crate) fn new(kind: BuildErrorKind, message: String) -> Self {
        Self { kind, message }
    }

    fn budget(err: BudgetError) -> Self {
        // The budget error's message is the whole story (it shows the
        // arithmetic); repeating it as a source would print it twice.
        Self {
            kind: BuildErrorKind::Budget,
            message: err.to_string(),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> BuildErrorKind {
        self.kind
    }

    /// The exit status for this error: [`ExitStatus::InvalidConfig`] (78).
    pub fn exit_status(&self) -> ExitStatus {
        ExitStatus::InvalidConfig
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn closing(name: &'static str) -> Component {
        Component::new(name, |_ctx| async { Ok(()) }).on_close(|| async { Ok(()) })
    }

    #[test]
    fn each_close_timeout_comes_from_the_one_place_that_sets_it() {
        let app = App::builder("t")
            .budget(Budget::default().close_timeout("db", Duration::from_secs(3)))
            .component(closing("db"))
            .component(closing("cache").close_timeout(Duration::from_secs(2)))
            .component(closing("queue"))
            .component(Component::new("worker", |_ctx| async { Ok(()) }))
            .build()
            .unwrap();
        let t = app.timeline();
        assert_eq!(t.close_timeout("db"), Some(Duration::from_secs(3)));
        assert_eq!(t.close_timeout("cache"), Some(Duration::from_secs(2)));
        assert_eq!(t.close_timeout("queue"), Some(DEFAULT_CLOSE_TIMEOUT));
        assert_eq!(t.close_timeout("worker"), None);
        assert_eq!(t.close_total(), Duration::from_secs(6));
    }

    #[test]
    fn a_close_timeout_set_in_the_budget_and_on_the_component_is_rejected_naming_both() {
        let err = App::builder("t")
            .budget(Budget::default().close_timeout("db", Duration::from_secs(3)))
            .component(closing("db").close_timeout(Duration::from_millis(1500)))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), BuildErrorKind::TimeoutSetTwice);
        assert_eq!(
            err.to_string(),
            "the close timeout of component db is set twice: Budget::close_timeout(\"db\", 3s) and Component::close_timeout(1.5s); set it in one place"
        );
        assert_eq!(err.exit_status(), ExitStatus::InvalidConfig);
    }

    #[test]
    fn a_budget_close_timeout_that_names_no_closing_component_is_rejected() {
        let err = App::builder("t")
            .budget(Budget::default().close_timeout("dB", Duration::from_secs(3)))
            .component(closing("db"))
            .component(Component::new("worker", |_ctx| async { Ok(()) }))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), BuildErrorKind::UnknownCloseTimeout);
        assert_eq!(
            err.to_string(),
            "Budget::close_timeout(\"dB\", 3s) names no component with an on_close and no exporter (those that close: db)"
        );
    }
}
