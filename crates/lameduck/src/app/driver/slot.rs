//! One component's state, as the driver keeps it.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::app::AppHandle;
use crate::component::{CloseFn, RunFn};
use crate::context::ProgramExitCell;
use crate::report::{CloseOutcome, Ending};
use crate::restart::RestartWindow;
use crate::{Component, RestartPolicy, Tracker};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Not running; starts once its dependencies are ready.
    Waiting,
    /// Running now.
    Running,
    /// Failed; starts again at the instant given.
    Backoff(Instant),
    /// Ended for good.
    Done,
}

pub(super) struct Slot {
    pub(super) name: Arc<str>,
    pub(super) dep_names: Vec<Arc<str>>,
    pub(super) deps: Vec<usize>,
    pub(super) dependents: Vec<usize>,
    pub(super) policy: RestartPolicy,
    pub(super) run: RunFn,
    pub(super) close: Option<CloseFn>,
    /// The component's stop signal for the shutdown.
    pub(super) stop: CancellationToken,
    /// The current run's stop signal: a child of `stop`, also fired alone
    /// for a rest-for-one restart.
    pub(super) run_stop: Option<CancellationToken>,
    /// What the current run says of the program it supervises.
    pub(super) program_exit: ProgramExitCell,
    pub(super) tracker: Tracker,
    /// Runs started so far.
    pub(super) attempt: u32,
    pub(super) state: State,
    pub(super) ready: bool,
    /// Stopped on purpose for a rest-for-one restart.
    pub(super) held: bool,
    pub(super) window: RestartWindow,
    pub(super) restarts: u32,
    pub(super) ended: Option<Ending>,
    pub(super) closed: Option<CloseOutcome>,
}

impl Slot {
    pub(super) fn new(c: Component, handle: &AppHandle) -> Self {
        let tracker = Tracker::new(c.name.clone());
        handle.register_tracker(tracker.clone());
        handle.health().register(&c.name);
        Self {
            name: c.name,
            dep_names: c.deps,
            deps: Vec::new(),
            dependents: Vec::new(),
            policy: c.policy,
            run: c.run,
            close: c.close,
            stop: CancellationToken::new(),
            run_stop: None,
            program_exit: ProgramExitCell::default(),
            tracker,
            attempt: 0,
            state: State::Waiting,
            ready: false,
            held: false,
            window: RestartWindow::default(),
            restarts: 0,
            ended: None,
            closed: None,
        }
    }

    pub(super) fn restart_due(&self) -> Option<Instant> {
        match self.state {
            State::Backoff(due) => Some(due),
            _ => None,
        }
    }

    /// Whether components that depend on this one may start.
    pub(super) fn satisfies_dependents(&self) -> bool {
        match self.state {
            State::Running => self.ready,
            // A component that ran to completion (a migration, say) lets its
            // dependents start.
            State::Done => self.ended == Some(Ending::Finished),
            State::Waiting | State::Backoff(_) => false,
        }
    }

    /// Whether it ended in failure for good, so its dependents can never
    /// start.
    pub(super) fn is_dead(&self) -> bool {
        self.state == State::Done && matches!(self.ended, Some(Ending::Failed(_)))
    }

    /// Whether it no longer holds up start-up.
    pub(super) fn is_up(&self) -> bool {
        self.satisfies_dependents() || self.state == State::Done
    }
}
