//! Lifecycle events, and the observers that hear them.
//!
//! Everything an app does that the outside world may care about — a phase
//! change, a component that started, became ready, failed or restarted, a
//! deadline that passed and what it cut, a resource closed, an upgrade, the
//! final report — leaves the app's driver one way: as an [`Event`],
//! published in order to every [`Observer`]. The log lines, systemd's
//! notifications (feature `systemd`) and the lifecycle metrics (feature
//! `metrics`) are observers of their own; add yours with
//! [`AppBuilder::observer`](crate::AppBuilder::observer) to drive a status
//! display, a flight recorder or an exporter of your own.
//!
//! # Examples
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use lameduck::observe::Event;
//! use lameduck::{App, Budget, Component, Phase};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let phases = Arc::new(Mutex::new(Vec::new()));
//! let seen = phases.clone();
//! let app = App::builder("example")
//!     .handle_signals(false)
//!     .exit_watchdog(false)
//!     .budget(Budget::default().drain_delay(std::time::Duration::ZERO))
//!     .observer(move |event: &Event<'_>| {
//!         if let Event::PhaseChanged { to, .. } = event {
//!             seen.lock().unwrap().push(*to);
//!         }
//!     })
//!     .component(Component::new("worker", |ctx| async move {
//!         ctx.ready();
//!         ctx.app().shutdown("done");
//!         ctx.on_stopping().await;
//!         Ok(())
//!     }))
//!     .build()
//!     .unwrap();
//! app.await;
//! assert_eq!(phases.lock().unwrap().last(), Some(&Phase::Stopped));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::report::{CloseOutcome, Deadline, DrainReport, Holdup, WorkReport};
use crate::{AppHandle, Phase, Report, Timeline, WorkItem};

mod log;
#[cfg(all(unix, feature = "systemd"))]
pub(crate) mod systemd;

/// Hears an app's lifecycle [`Event`]s.
///
/// Register one with [`AppBuilder::observer`](crate::AppBuilder::observer);
/// any `Fn(&Event<'_>) + Send + Sync + 'static` closure is one.
///
/// `on_event` is called on the app's driver task, in the order the events
/// happen, one at a time: it must return quickly and never block (hand
/// slow work to a task or a channel of your own). A panic in an observer
/// is caught and logged; the app goes on, and so do the other observers.
pub trait Observer: Send + Sync + 'static {
    /// One event, borrowed for the length of the call.
    fn on_event(&self, event: &Event<'_>);
}

impl<F> Observer for F
where
    F: Fn(&Event<'_>) + Send + Sync + 'static,
{
    fn on_event(&self, event: &Event<'_>) {
        self(event);
    }
}

/// What happened in an app's life; see the [module docs](self).
///
/// More kinds of event may come in minor versions: match with a `_` arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// `run()` began: the app, and the budget its deadlines come from.
    Starting {
        /// The app.
        app: &'a AppHandle,
        /// Its checked budget.
        timeline: &'a Timeline,
        /// How many components it has.
        components: usize,
    },
    /// A phase began.
    PhaseChanged {
        /// The phase it left.
        from: Phase,
        /// The phase it entered.
        to: Phase,
        /// Why: the shutdown reason for Draining, what ended the phase
        /// before otherwise.
        cause: &'a str,
        /// Time since the shutdown was triggered (zero before).
        since_shutdown: Duration,
        /// What is left of the grace period, once shutting down.
        grace_left: Option<Duration>,
    },
    /// A component's run started (`attempt` 0 the first time).
    ComponentStarted {
        /// The component's name.
        component: &'a str,
        /// Runs before this one.
        attempt: u32,
    },
    /// A component reported itself ready.
    ComponentReady {
        /// The component's name.
        component: &'a str,
        /// Its run.
        attempt: u32,
    },
    /// A component's run returned (or panicked, or was aborted).
    ComponentExited {
        /// The component's name.
        component: &'a str,
        /// Its run.
        attempt: u32,
        /// Why it failed; `None` when it returned `Ok`.
        error: Option<&'a str>,
    },
    /// A component failed (or returned) and starts again after `delay`.
    ComponentRestarting {
        /// The component's name.
        component: &'a str,
        /// Restarts so far, this one included.
        restarts: u32,
        /// The backoff before it starts again.
        delay: Duration,
    },
    /// A deadline of the shutdown passed with work left: at the shutdown
    /// timeout `work` got its cancel signal; at the hard deadline it was
    /// aborted.
    DeadlinePassed {
        /// Which deadline.
        deadline: Deadline,
        /// The work it cut (cancelled or aborted).
        work: &'a [WorkItem],
        /// What else held the shutdown up.
        held: &'a [Holdup],
    },
    /// The drain began: Draining, with a drain to wait for. Not sent when
    /// the shutdown skips it (the app was not yet Running, every component
    /// completed, the signal's policy skips it, or the budget's drain is
    /// zero).
    DrainStarted {
        /// How long it lasts at most (the budget's drain, in full when it
        /// is fixed).
        max: Duration,
    },
    /// Draining ended, just before Stopping: what ended it (a fixed delay,
    /// quiet traffic, `drain_max`) and the traffic it saw; or that it was
    /// skipped (then with no [`DrainStarted`](Self::DrainStarted) before).
    DrainEnded {
        /// How the drain went, as the report will give it.
        drain: &'a DrainReport,
    },
    /// The shutdown's work is accounted for, just before Closing: what
    /// finished, was cancelled, aborted or ended by the shutdown. Counts
    /// of the work are final from here on.
    WorkSettled {
        /// The work, as the report will give it.
        work: &'a WorkReport,
    },
    /// A component's close ran (`outcome` says how it went), or an
    /// exporter's flush (see [`AppBuilder::exporter`](crate::AppBuilder::exporter)).
    Closed {
        /// The component's or exporter's name.
        name: &'a str,
        /// How it went.
        outcome: &'a CloseOutcome,
    },
    /// An upgrade began (feature `upgrade`): a new process has `timeout`
    /// to become ready — or, `in_place`, the app's own function has
    /// `timeout` at most to replace what it supervises.
    UpgradeStarted {
        /// The new process's time to become ready; in place, the most the
        /// whole replacement may take.
        timeout: Duration,
        /// The upgrade is in place ([`Upgrade::in_place`](crate::upgrade::Upgrade::in_place)):
        /// no new process of the app.
        in_place: bool,
    },
    /// An upgrade moved on (feature `upgrade`): the new process started,
    /// became ready, was committed to, settled; or the old process took the
    /// service back.
    UpgradeStep {
        /// What happened, in words.
        step: &'a str,
    },
    /// An upgrade succeeded: process `pid` serves now, this one drains.
    UpgradeSucceeded {
        /// The new process.
        pid: u32,
    },
    /// An in-place upgrade succeeded (`Upgrade::in_place`, feature
    /// `upgrade`): process `pid` serves now, and this process stays the
    /// service's main one.
    UpgradedInPlace {
        /// The process that serves now.
        pid: u32,
    },
    /// An upgrade failed; this process goes on serving — unless a shutdown
    /// of its own is why (the error says so).
    UpgradeFailed {
        /// Why.
        error: &'a str,
    },
    /// An upgrade given up because the app began shutting down: no
    /// failure (nothing went wrong with the new process or the function),
    /// and this process does not go on serving.
    UpgradeAbandoned {
        /// What was given up, and when.
        why: &'a str,
    },
    /// The shutdown report, logged at the end of Closing (or at a forced
    /// exit), before the final flush.
    Report(&'a Report),
}

/// The app's observers, in the order they hear each event: the log lines
/// first, then systemd, then those of the builder.
pub(crate) struct Observers {
    list: Vec<Arc<dyn Observer>>,
}

impl Observers {
    pub(crate) fn new(app: Arc<str>, extra: Vec<Arc<dyn Observer>>) -> Self {
        let mut list: Vec<Arc<dyn Observer>> = vec![Arc::new(log::Log::new(app))];
        list.extend(extra);
        Self { list }
    }

    /// Adds an observer (heard after those already there).
    #[cfg_attr(not(all(unix, feature = "systemd")), allow(dead_code))]
    pub(crate) fn push(&mut self, observer: Arc<dyn Observer>) {
        self.list.push(observer);
    }

    /// Tells every observer, in turn. A panicking observer is logged and
    /// skipped: a status display must not take the shutdown down.
    pub(crate) fn publish(&self, event: &Event<'_>) {
        for observer in &self.list {
            let heard = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                observer.on_event(event);
            }));
            if heard.is_err() {
                tracing::error!(target: "lameduck", event = ?EventKind(event), "an observer panicked; it is skipped for this event");
            }
        }
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers")
            .field("len", &self.list.len())
            .finish()
    }
}

/// An event's kind alone, for a log line.
struct EventKind<'e, 'a>(&'e Event<'a>);

impl fmt::Debug for EventKind<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Event::Starting { .. } => "starting",
            Event::PhaseChanged { .. } => "phase changed",
            Event::ComponentStarted { .. } => "component started",
            Event::ComponentReady { .. } => "component ready",
            Event::ComponentExited { .. } => "component exited",
            Event::ComponentRestarting { .. } => "component restarting",
            Event::DrainStarted { .. } => "drain started",
            Event::DrainEnded { .. } => "drain ended",
            Event::DeadlinePassed { .. } => "deadline passed",
            Event::WorkSettled { .. } => "work settled",
            Event::Closed { .. } => "closed",
            Event::UpgradeStarted { .. } => "upgrade started",
            Event::UpgradeStep { .. } => "upgrade step",
            Event::UpgradeSucceeded { .. } => "upgrade succeeded",
            Event::UpgradedInPlace { .. } => "upgraded in place",
            Event::UpgradeFailed { .. } => "upgrade failed",
            Event::UpgradeAbandoned { .. } => "upgrade abandoned",
            Event::Report(_) => "report",
        })
    }
}
