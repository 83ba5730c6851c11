//! Supervision: starting components once their dependencies are ready,
//! and what happens when one exits — a restart with backoff, the
//! dependents held for rest-for-one, or a shutdown when it gives up.

use std::collections::HashSet;

use tokio::time::Instant;

use super::slot::{Slot, State};
use super::{Driver, panic_message};
use crate::context::{ProgramExitCell, Tokens};
use crate::fmt::Seconds;
use crate::observe::Event as Observed;
use crate::report::Ending;
use crate::{Context, ExitStatus, Phase, ShutdownReason, Strategy};

/// Why a component restarted or gave up when it returned `Ok`: its
/// restart policy restarts it after any end.
const ENDED_OK: &str = "it ended without an error (its restart policy restarts it after any end)";

impl Driver {
    /// Starts every waiting component whose dependencies are ready.
    pub(super) fn start_waiting(&mut self) {
        if self.trigger.is_some() {
            return;
        }
        for k in 0..self.order.len() {
            let i = self.order[k];
            if self.slots[i].state != State::Waiting {
                continue;
            }
            if let Some(&d) = self.slots[i]
                .deps
                .iter()
                .find(|&&d| self.slots[d].is_dead())
            {
                let (name, dep) = (self.slots[i].name.clone(), self.slots[d].name.clone());
                self.status = self.status.worst(ExitStatus::ComponentFailed);
                self.trigger(ShutdownReason::ComponentFailed {
                    component: name,
                    error: format!("its dependency {dep} failed and will not restart").into(),
                });
                return;
            }
            if self.slots[i]
                .deps
                .iter()
                .all(|&d| self.slots[d].satisfies_dependents())
            {
                self.spawn(i);
            }
        }
    }

    pub(super) fn spawn(&mut self, i: usize) {
        let tokens = Tokens {
            draining: self.draining.clone(),
            stopping: self.slots[i].stop.child_token(),
            cancelled: self.cancel.clone(),
        };
        let slot = &mut self.slots[i];
        let attempt = slot.attempt;
        slot.attempt += 1;
        slot.run_stop = Some(tokens.stopping.clone());
        // A cell per run: what an earlier run said, or says late, is not
        // this run's.
        slot.program_exit = ProgramExitCell::default();
        slot.state = State::Running;
        slot.ready = false;
        slot.held = false;
        let ctx = Context::new(
            slot.name.clone(),
            i,
            attempt,
            tokens,
            slot.tracker.clone(),
            self.handle.clone(),
            slot.program_exit.clone(),
        );
        // The run function itself (not only its future) may panic; that is
        // the component's failure, not the driver's.
        let run = &mut slot.run;
        let fut = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(ctx))) {
            Ok(fut) => fut,
            Err(payload) => {
                let why = format!("panicked: {}", panic_message(payload));
                Box::pin(async move { Err(why.into()) })
            }
        };
        let component = slot.name.clone();
        self.publish(&Observed::ComponentStarted {
            component: &component,
            attempt,
        });
        let abort = self.tasks.spawn(async move { (i, attempt, fut.await) });
        self.task_ids.insert(abort.id(), (i, attempt));
    }

    pub(super) fn check_started(&mut self) {
        if self.handle.phase() != Phase::Starting || self.trigger.is_some() {
            return;
        }
        if self.slots.iter().all(Slot::is_up) {
            // Inherited sockets nobody took: said now, or the start refused.
            #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
            if let Err(why) = crate::listen::check_unclaimed() {
                tracing::error!(target: "lameduck::listen", app = %self.handle.name(), error = %why, "cannot run");
                self.status = self.status.worst(ExitStatus::InvalidConfig);
                return self.trigger(ShutdownReason::Requested(why.into()));
            }
            // A process started by an upgrade runs only once its parent has
            // committed to it.
            #[cfg(all(unix, feature = "upgrade"))]
            if !self.upgrades_may_run() {
                return;
            }
            self.enter(Phase::Running, "every component is ready");
        }
    }

    pub(super) fn on_exit(&mut self, i: usize, attempt: u32, result: Result<(), String>) {
        let app = self.handle.name().to_string();
        let component = self.slots[i].name.clone();
        self.publish(&Observed::ComponentExited {
            component: &component,
            attempt,
            error: result.as_ref().err().map(String::as_str),
        });
        let slot = &mut self.slots[i];
        slot.run_stop = None;
        slot.ready = false;
        slot.state = State::Done;
        slot.ended = Some(match &result {
            Ok(()) => Ending::Finished,
            Err(e) => Ending::Failed(e.clone()),
        });
        // Counts only if this run is the last: not when it restarts.
        let said = slot
            .program_exit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(ExitStatus::Program);
        if self.trigger.is_some() {
            if result.is_err() {
                self.status = self.status.worst(ExitStatus::ComponentFailed);
            }
            self.status = self.status.worst(said.unwrap_or(ExitStatus::Clean));
            return;
        }
        if slot.held {
            // Stopped on purpose for a rest-for-one restart: it starts again
            // once its dependencies are ready.
            slot.state = State::Waiting;
            slot.restarts += 1;
            self.start_waiting();
            return;
        }
        let failed = result.is_err();
        if slot.policy.restarts_after(failed) {
            let now = Instant::now();
            if slot.window.allow(&slot.policy, now) {
                slot.restarts += 1;
                let delay = slot.policy.delay(slot.restarts, &mut self.rng);
                slot.state = State::Backoff(now + delay);
                let why = result.err().unwrap_or_else(|| ENDED_OK.into());
                self.handle
                    .health()
                    .set_unready(&slot.name, Some(format!("restarting: {why}")));
                let restarts = slot.restarts;
                self.publish(&Observed::ComponentRestarting {
                    component: &component,
                    restarts,
                    delay,
                });
                if self.strategy == Strategy::RestForOne {
                    self.hold_dependents(i);
                }
            } else {
                let recent = slot.window.recent();
                let error = format!(
                    "{}; restarted {recent} time{} within {}, giving up",
                    result.err().unwrap_or_else(|| ENDED_OK.into()),
                    if recent == 1 { "" } else { "s" },
                    Seconds(slot.policy.within)
                );
                tracing::error!(target: "lameduck", app = %app, component = %slot.name, error = %error, "restart intensity exceeded");
                let component = slot.name.clone();
                slot.ended = Some(Ending::Failed(error.clone()));
                self.status = self.status.worst(ExitStatus::ComponentFailed);
                self.status = self.status.worst(said.unwrap_or(ExitStatus::Clean));
                self.trigger(ShutdownReason::ComponentFailed {
                    component,
                    error: error.into(),
                });
                return;
            }
        } else {
            // Ended for good: it no longer holds readiness or start-up back.
            self.handle.health().set_done(&slot.name);
            self.status = self.status.worst(said.unwrap_or(ExitStatus::Clean));
        }
        self.start_waiting();
        self.check_started();
        if !self.slots.is_empty() && self.slots.iter().all(|s| s.state == State::Done) {
            self.trigger(ShutdownReason::Completed);
        }
    }

    /// Rest-for-one: stops every component that depends on `i`, directly or
    /// not; they start again once `i` is ready.
    pub(super) fn hold_dependents(&mut self, i: usize) {
        let mut stack = self.slots[i].dependents.clone();
        let cause = self.slots[i].name.clone();
        let mut seen = HashSet::new();
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            stack.extend(self.slots[d].dependents.iter().copied());
            let slot = &mut self.slots[d];
            match slot.state {
                State::Running => {
                    slot.held = true;
                    if let Some(stop) = &slot.run_stop {
                        stop.cancel();
                    }
                    tracing::info!(target: "lameduck", app = %self.handle.name(), component = %slot.name, cause = %cause, "stopping dependent for restart");
                }
                State::Backoff(_) => slot.state = State::Waiting,
                State::Waiting | State::Done => {}
            }
        }
    }
}
