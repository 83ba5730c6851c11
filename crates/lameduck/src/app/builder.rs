//! Building an app: components, budget, signal policy; checked at build.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{App, AppHandle, graph};
use crate::{Budget, BudgetError, Component, ExitStatus, Signal, Strategy, Timeline};

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
    /// period). Component close timeouts are added to it at build.
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

    /// Whether the app listens for `SIGTERM` and `SIGINT` (Ctrl+C on
    /// Windows) itself (default true). Turn it off to trigger shutdowns only
    /// through [`AppHandle::shutdown`], e.g. when several apps share a
    /// process.
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

    /// Whether a plain thread ends the process with exit code 124 when the
    /// shutdown overruns its budget, even if the runtime is stuck in blocking
    /// code (default true).
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
    /// (default true). When false, `run` returns early with
    /// [`ExitStatus::Forced`] instead, for callers that must clean up
    /// themselves.
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

    /// Checks the configuration and builds the app.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] for two components with one name, a dependency on a
    /// name that is not a component, a dependency cycle (naming it), a
    /// budget that does not fit its grace period (showing the arithmetic),
    /// or upgrade settings that cannot be honoured
    /// ([`BuildErrorKind::Upgrade`]).
    pub fn build(self) -> Result<App, BuildError> {
        let order = graph::order(&self.components)?;
        let mut budget = self.budget;
        for c in &self.components {
            if c.close.is_some() {
                budget = budget.close_timeout(c.name.to_string(), c.close_timeout);
            }
        }
        let timeline = budget.check().map_err(BuildError::budget)?;
        #[cfg(all(unix, feature = "upgrade"))]
        self.upgrade
            .check()
            .map_err(|message| BuildError::new(BuildErrorKind::Upgrade, message))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = AppHandle::new(self.name, tx);
        Ok(App {
            handle,
            events: rx,
            parts: Parts {
                components: self.components,
                order,
                timeline,
                strategy: self.strategy,
                handle_signals: self.handle_signals,
                sigterm: self.sigterm,
                sigint: self.sigint,
                exit_watchdog: self.exit_watchdog,
                exit_on_force: self.exit_on_force,
                flushes: self.flushes,
                #[cfg(all(unix, feature = "upgrade"))]
                upgrade: self.upgrade,
            },
        })
    }
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
