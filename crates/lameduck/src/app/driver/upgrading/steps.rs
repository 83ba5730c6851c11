//! What the driver does at each step of an upgrade, in either process.
//!
//! | step | process | what it does |
//! |---|---|---|
//! | all components ready | new | binds the control socket under a temporary name, reports ready, waits |
//! | verdict `commit` | new | takes the PID file and the control socket's path, enters Running, says so |
//! | verdict `abort` | new | stands down, having touched nothing |
//! | ready | old | commits (stops accepting on the shared sockets) and watches the new process |
//! | running | old | waits for the new process to settle, ready to take everything back |
//! | settled | old | systemd's main process changes, the requester hears `ok`, this process drains |
//! | failed, or died before settling | old | rollback: owns its sockets, PID file and control socket again, and checks them |
//! | began shutting down before the handover was final | old | the same rollback; then tells it to stop and lets it finish its shutdown |
//! | told to stop (either shutdown began first) | old | waits for its exit within a whole shutdown of the budget, else kills it: said, and a kill makes the exit not clean |
//! | died after settling | old | too late to take back: said as an error, and the exit is not clean |

use super::{InFlight, Start};
use crate::app::Event;
use crate::app::driver::Driver;
use crate::listen::owner::{self, Handoff};
use crate::upgrade::child::{self, Verdict};
use crate::upgrade::spawn::Candidate;
use crate::upgrade::successor::{self, Command};
use crate::upgrade::{Step, UpgradeError, UpgradeErrorKind, Upgraded, fault_point};
use crate::{ExitStatus, ShutdownReason};

/// How long an old process waits for its last probe connections to close
/// once the handover is final, before it drains anyway.
const LAST_PROBES: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn answer(waiters: Vec<crate::upgrade::Reply>, result: &Result<Upgraded, UpgradeError>) {
    for w in waiters {
        // A requester that went away does not need the answer.
        let _ = w.send(result.clone());
    }
}

impl Driver {
    /// Whether this app may enter Running, as far as upgrades go. A process
    /// started by an upgrade first reports ready, then waits for its
    /// parent's commit: until then it changes nothing the parent owns. Any
    /// process takes the PID file just before it runs, and the control
    /// socket too unless it serves it already (a first start, from its
    /// start).
    pub(in crate::app::driver) fn upgrades_may_run(&mut self) -> bool {
        match self.upgrades.start {
            Start::Taken => true,
            Start::Reported => false,
            Start::Unreported => {
                if let Err(why) = self.upgrades.owned.prepare() {
                    tracing::error!(target: "lameduck::upgrade", error = %why, "cannot take part in the upgrade");
                    self.status = self.status.worst(ExitStatus::InvalidConfig);
                    self.trigger(ShutdownReason::Requested(why.into()));
                    return false;
                }
                fault_point("ready");
                let handle = self.handle.clone();
                let reported = child::report_ready(move |verdict| {
                    handle.send(Event::UpgradeStep(Step::Verdict(verdict)));
                });
                if !reported {
                    self.upgrades.start = Start::Own;
                    return self.upgrades_may_run();
                }
                tracing::info!(target: "lameduck::upgrade", parent = child::parent_pid().unwrap_or(0), "ready; waiting for the old process to commit to this one");
                self.upgrades.start = Start::Reported;
                false
            }
            Start::Own => match self.upgrades.owned.take_over(&self.handle) {
                Ok(()) => {
                    self.upgrades.start = Start::Taken;
                    true
                }
                // Committed to: the sockets are this process's to serve,
                // whatever the files say.
                Err(why) if child::parent_pid().is_some() => {
                    tracing::error!(target: "lameduck::upgrade", error = %why, "taking over without it");
                    self.upgrades.start = Start::Taken;
                    true
                }
                Err(why) => {
                    tracing::error!(target: "lameduck::upgrade", error = %why, "cannot start");
                    self.status = self.status.worst(ExitStatus::InvalidConfig);
                    self.trigger(ShutdownReason::Requested(why.into()));
                    false
                }
            },
        }
    }

    pub(in crate::app::driver) fn on_upgrade_step(&mut self, step: Step) {
        match step {
            Step::Verdict(v) => self.on_verdict(v),
            Step::Ready(candidate) => self.on_candidate(candidate),
            Step::Failed(e) => self.on_upgrade_failed(e),
            Step::Running(pid) => self.on_successor_running(pid),
            Step::Settled(pid) => self.on_successor_settled(pid),
            Step::Left(pid) => self.on_handover_final(pid),
            Step::Died(pid, how) => self.on_successor_died(pid, &how),
            Step::Draining(pid) => self.on_successor_draining(pid),
            Step::Stopped { pid, how, killed } => self.on_successor_stopped(pid, &how, killed),
        }
    }

    /// (New process.) The parent's verdict.
    fn on_verdict(&mut self, verdict: Verdict) {
        let parent = child::parent_pid().unwrap_or(0);
        if self.trigger.is_some() {
            // Shutting down already: nothing to take.
            return;
        }
        if self.upgrades.start == Start::Taken && verdict == Verdict::Abort {
            tracing::warn!(target: "lameduck::upgrade", parent, "the old process took the service back before the handover was final; its sockets are its own again; this process stops");
            return self.trigger(ShutdownReason::Requested(
                format!("the old process (pid {parent}) took the service back").into(),
            ));
        }
        match verdict {
            Verdict::Commit | Verdict::ParentGone => {
                if verdict == Verdict::ParentGone {
                    tracing::warn!(target: "lameduck::upgrade", parent, "the old process is gone without a verdict; this process takes over");
                } else {
                    fault_point("commit");
                    tracing::info!(target: "lameduck::upgrade", parent, "the old process committed to this one; taking over");
                }
                owner::set_committed();
                self.upgrades.start = Start::Own;
                self.check_started();
            }
            Verdict::Abort => {
                tracing::warn!(target: "lameduck::upgrade", parent, "the old process did not commit to this one (it gave up, or is shutting down); standing down, leaving its sockets and files as they are");
                self.trigger(ShutdownReason::Requested(
                    format!("the old process (pid {parent}) did not commit to this one").into(),
                ));
            }
        }
    }

    /// (Old process.) The new process is ready: commit to it, unless a
    /// shutdown began meanwhile.
    fn on_candidate(&mut self, mut candidate: Box<Candidate>) {
        let pid = candidate.pid;
        let Some(mut busy) = self.upgrades.busy.take() else {
            tokio::spawn(candidate.refuse());
            return;
        };
        if self.trigger.is_some() {
            // Ready just as a shutdown began: the shutdown wins, and the
            // new process stands down without having touched anything.
            tracing::warn!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, "the new process became ready during the shutdown; refusing it");
            tokio::spawn(candidate.refuse());
            let e = UpgradeError::new(UpgradeErrorKind::Abandoned, "the app began shutting down");
            return answer(busy.waiters, &Err(e.with_pid(pid)));
        }
        if let Err(err) = candidate.try_commit() {
            let e = UpgradeError::new(
                UpgradeErrorKind::Exited,
                format!("the new process (pid {pid}) went away before the commit: {err}"),
            );
            tokio::spawn(candidate.refuse());
            return self.rolled_back(busy, e.with_pid(pid));
        }
        // The point of no return: the new process owns the sockets now.
        // This one stops accepting on them (the shared queue goes to the new
        // one) but keeps them, and its files, until the new one settles.
        owner::set(Handoff::Committed);
        busy.committed = Some(pid);
        self.upgrades.busy = Some(busy);
        self.upgrades.stopping_successor = false;
        self.upgrades.successor = Some(successor::watch(
            candidate,
            self.handle.clone(),
            self.upgrades.config.timeout,
            self.settle_time(),
        ));
        tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, "committed to the new process; it takes over now");
        self.publish(&crate::observe::Event::UpgradeStep {
            step: &format!("process {pid} is ready; committed to it: it takes over now"),
        });
    }

    /// (Old process.) The new process took the PID file and the control
    /// socket and runs.
    fn on_successor_running(&mut self, pid: u32) {
        tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, settle_ms = self.settle_time().as_millis() as u64, "the new process runs; this one stays ready to take the service back until it settles");
        self.publish(&crate::observe::Event::UpgradeStep {
            step: &format!(
                "process {pid} runs; this one can take the service back until it settles ({})",
                crate::fmt::Seconds(self.settle_time())
            ),
        });
    }

    /// (Old process.) The new process has run for the settle time: this
    /// process closes its last probe connections, and drains once none is
    /// left, so that no probe hears its readiness turn false.
    fn on_successor_settled(&mut self, pid: u32) {
        if self.upgrades.busy.as_ref().and_then(|b| b.committed) != Some(pid) {
            return;
        }
        owner::set(Handoff::Leaving);
        self.publish(&crate::observe::Event::UpgradeStep {
            step: &format!("process {pid} settled; the last probe connections close"),
        });
        let handle = self.handle.clone();
        tokio::spawn(async move {
            // Probes are answered in a moment; the bound keeps a stuck
            // prober from holding the handover.
            let _ = tokio::time::timeout(LAST_PROBES, owner::no_probe_connections()).await;
            handle.send(Event::UpgradeStep(Step::Left(pid)));
        });
    }

    /// (Old process.) The handover is final: systemd hears of the new main
    /// process, the requester of `ok`, and this process drains.
    fn on_handover_final(&mut self, pid: u32) {
        if self.upgrades.busy.as_ref().and_then(|b| b.committed) != Some(pid) {
            return;
        }
        let Some(busy) = self.upgrades.busy.take() else {
            return;
        };
        let took = busy.started.elapsed();
        self.publish(&crate::observe::Event::UpgradeSucceeded { pid });
        // Only now may the new process notify systemd itself, and upgrade.
        if let Some(s) = &self.upgrades.successor {
            s.send(Command::MakeMain);
        }
        tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, took_ms = took.as_millis() as u64, "upgrade complete: the new process serves; this one drains and exits");
        answer(busy.waiters, &Ok(Upgraded { new_pid: pid, took }));
        self.trigger(ShutdownReason::Upgraded { new_pid: pid });
        fault_point("handed-over");
    }

    /// (Old process.) The new process it committed to began shutting
    /// down. Before the handover is final, a process that is leaving is
    /// not handed the service: this one takes it back, as from one that
    /// died, and lets it finish its shutdown. After, it is the main process
    /// and stops as it was asked.
    fn on_successor_draining(&mut self, pid: u32) {
        let Some(busy) = self.may_take_back(pid) else {
            tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, "the new process began shutting down after the handover was final");
            return;
        };
        // Taken back first (the sockets, then the files), then told: its
        // close must leave the sockets to this process.
        self.take_back(busy, pid, "began shutting down before it settled");
        self.stop_successor();
    }

    /// The upgrade under way, taken out, if it committed to `pid` and the
    /// handover is not final, while this process still serves (no shutdown
    /// began): the service can be taken back.
    fn may_take_back(&mut self, pid: u32) -> Option<InFlight> {
        match self.upgrades.busy.take() {
            Some(busy) if busy.committed == Some(pid) && self.trigger.is_none() => Some(busy),
            busy => {
                self.upgrades.busy = busy;
                None
            }
        }
    }

    /// (Old process.) The new process this one told to stop has exited, or
    /// was killed at the bound: said, in the log and the flight record, and
    /// a kill makes the exit not clean.
    fn on_successor_stopped(&mut self, pid: u32, how: &str, killed: bool) {
        if self.upgrades.successor.as_ref().map(|s| s.pid) == Some(pid) {
            self.upgrades.successor = None;
        }
        self.upgrades.stopping_successor = false;
        self.upgrades.stop_deadline = None;
        let said = self.upgrades.owned.reassert(&self.handle, pid);
        if killed {
            tracing::error!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, how, checked = %said.join("; "), "the new process did not finish its shutdown in time and was killed: its work in flight was lost");
            self.status = self.status.worst(ExitStatus::ComponentFailed);
        } else {
            tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, how, checked = %said.join("; "), "the new process told to stop has exited; this process owns its files again");
        }
        let said = format!("process {pid}, told to stop, {how}");
        self.publish(&crate::observe::Event::UpgradeStep { step: &said });
        self.upgrades.said = Some(said);
    }

    /// (Old process.) The new process it committed to is gone.
    fn on_successor_died(&mut self, pid: u32, how: &str) {
        if self.upgrades.successor.as_ref().map(|s| s.pid) == Some(pid) {
            self.upgrades.successor = None;
        }
        if self.upgrades.stopping_successor {
            // It ended before the stop reached it.
            return self.on_successor_stopped(pid, how, false);
        }
        // Not settled yet, and this process still serves: take the
        // service back.
        if let Some(busy) = self.may_take_back(pid) {
            return self.take_back(busy, pid, &format!("{how} after the commit"));
        }
        // Settled: this process has begun its drain, and its sockets close
        // at Stopping. Nothing serves them after.
        tracing::error!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, how, "the new process is gone after this one handed the service over; too late to take it back: nothing serves the sockets once this process exits");
        let said = format!(
            "process {pid} {how} after the handover; too late to take the service back: nothing serves it once this process exits"
        );
        self.publish(&crate::observe::Event::UpgradeStep { step: &said });
        self.upgrades.said = Some(said);
        self.status = self.status.worst(ExitStatus::ComponentFailed);
        // What it left names a dead process: a later
        // `kill -HUP $(cat pidfile)` must not find a recycled pid.
        self.upgrades.owned.forget_dead(pid);
    }

    fn on_upgrade_failed(&mut self, e: UpgradeError) {
        let Some(busy) = self.upgrades.busy.take() else {
            return;
        };
        self.rolled_back(busy, e);
    }

    /// The new process died, or began shutting down, after the commit,
    /// before it settled: this process serves again, owns its sockets, its PID file and its control
    /// socket, and says so loudly.
    fn take_back(&mut self, busy: InFlight, pid: u32, what: &str) {
        let e = UpgradeError::new(
            UpgradeErrorKind::Exited,
            format!("the new process (pid {pid}) {what}"),
        )
        .with_pid(pid);
        owner::set(Handoff::Own);
        tracing::error!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, error = %e, "the new process will not serve; this process takes the service back and serves again");
        self.publish(&crate::observe::Event::UpgradeStep {
            step: &format!("{e}; this process takes the service back"),
        });
        self.rolled_back(busy, e);
    }

    /// The upgrade failed: this process goes on serving and owns everything
    /// again; it checks that it does, and says what it found.
    fn rolled_back(&mut self, busy: InFlight, e: UpgradeError) {
        let took = busy.started.elapsed();
        if self.trigger.is_some() {
            // Shutting down: the new process never owned anything (the
            // shutdown refused it before the commit), and this process
            // does not go on serving.
            tracing::warn!(target: "lameduck::upgrade", app = %self.handle.name(), error = %e, took_ms = took.as_millis() as u64, "upgrade abandoned: this process is shutting down, and the new process was stopped");
            self.publish(&crate::observe::Event::UpgradeAbandoned {
                why: &e.to_string(),
            });
            return answer(busy.waiters, &Err(e));
        }
        tracing::error!(target: "lameduck::upgrade", app = %self.handle.name(), error = %e, took_ms = took.as_millis() as u64, "upgrade failed; this process goes on serving");
        owner::set(Handoff::Own);
        let said = self
            .upgrades
            .owned
            .reassert(&self.handle, e.pid().unwrap_or(0));
        tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), checked = %said.join("; "), "rollback: this process accepts on its listening sockets again");
        self.publish(&crate::observe::Event::UpgradeFailed {
            error: &e.to_string(),
        });
        answer(busy.waiters, &Err(e));
    }
}
