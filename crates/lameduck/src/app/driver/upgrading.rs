//! The driver's side of upgrades (feature `upgrade`): one at a time,
//! started only while Running; committed to the new process once it is
//! ready; finished by a shutdown with reason `Upgraded` once the new
//! process has settled — or rolled back, the old process owning everything
//! again. The step handlers are in `upgrading/steps.rs`.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Driver;
use crate::Phase;
use crate::app::Event;
use crate::listen::owner::{self, Handoff};
use crate::listen::registry;
use crate::upgrade::owned::Owned;
use crate::upgrade::spawn::{Plan, attempt};
use crate::upgrade::successor::{Command, Successor};
use crate::upgrade::{Request, Step, Upgrade, UpgradeError, UpgradeErrorKind, Via, child, exe};

mod steps;

mod in_place;

pub(in crate::app) struct Upgrades {
    config: Upgrade,
    busy: Option<InFlight>,
    hangups: Option<tokio::task::JoinHandle<()>>,
    /// The PID file and the control socket.
    owned: Owned,
    /// A process started by an upgrade: where it stands with its parent.
    start: Start,
    /// The new process this one committed to, watched until it exits.
    successor: Option<Successor>,
    /// This process stops the successor itself (its own shutdown began
    /// before the handover was final, or the successor's did): that exit is
    /// no news.
    stopping_successor: bool,
    /// When the successor being stopped is killed if it has not exited.
    stop_deadline: Option<Instant>,
    /// What became of a successor, for the report: told to stop and
    /// waited for, or gone after the handover.
    said: Option<String>,
}

/// Whether this process may enter Running, as far as upgrades go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Not started by an upgrade, or its parent committed to it: takes the
    /// PID file and the control socket, then runs.
    Own,
    /// Started by an upgrade; ready, not reported yet.
    Unreported,
    /// Reported ready; waits for the parent's verdict.
    Reported,
    /// Took the PID file and the control socket.
    Taken,
}

struct InFlight {
    via: Via,
    waiters: Vec<crate::upgrade::Reply>,
    cancel: CancellationToken,
    started: Instant,
    /// Once this process committed: the new process's pid.
    committed: Option<u32>,
}

impl Upgrades {
    pub(in crate::app) fn new(config: Upgrade) -> Self {
        // As early as the app exists: the program path is the one the
        // process was started with, and the channel to an upgrading parent
        // is claimed before anything else can open descriptors.
        exe::capture();
        child::init();
        Self {
            owned: Owned::new(&config),
            config,
            busy: None,
            hangups: None,
            start: if child::is_pending() {
                Start::Unreported
            } else {
                Start::Own
            },
            successor: None,
            stopping_successor: false,
            stop_deadline: None,
            said: None,
        }
    }
}

impl Drop for Upgrades {
    fn drop(&mut self) {
        if let Some(h) = self.hangups.take() {
            h.abort();
        }
        // Already done at Stopped; not when a panic unwinds through the
        // driver.
        self.owned.release();
    }
}

impl Driver {
    pub(super) fn upgrades_start(&mut self) {
        // A first start serves its control socket from now on, so that
        // `status` tells "starting" from "not running"; a new process of an
        // upgrade takes the path only once its parent committed to it.
        if self.upgrades.start == Start::Own
            && let Err(why) = self.upgrades.owned.serve_at_start(&self.handle)
        {
            tracing::error!(target: "lameduck::upgrade", error = %why, "cannot start");
            self.status = self.status.worst(crate::ExitStatus::InvalidConfig);
            self.trigger(crate::ShutdownReason::Requested(why.into()));
        }
        if self.upgrades.config.enabled && self.upgrades.config.on_sighup && self.handle_signals {
            match crate::app::signals::hangups(self.handle.clone()) {
                Ok(task) => self.upgrades.hangups = Some(task),
                Err(err) => {
                    tracing::warn!(target: "lameduck::upgrade", error = %err, "cannot listen for SIGHUP; upgrades only through the handle or the control socket")
                }
            }
        }
    }

    pub(super) fn upgrades_entered(&mut self, from: Phase, phase: Phase, cause: &str) {
        match phase {
            Phase::Running => {
                // The PID file and the control socket were taken just
                // before: whoever the parent answers finds them here.
                child::report_running();
                crate::upgrade::fault_point("running");
            }
            Phase::Draining => {
                if from == Phase::Starting {
                    child::report_failed(&format!("shut down while starting: {cause}"));
                } else if child::report_draining() {
                    // A new process that leaves before the handover is
                    // final must not be handed the service: its parent was
                    // told.
                    crate::upgrade::fault_point("draining");
                }
                self.upgrades_interrupted();
                // No upgrade can start any more: let the servers' close
                // really close the sockets.
                registry::clear();
            }
            Phase::Stopped => self.upgrades.owned.release(),
            _ => {}
        }
    }

    /// A shutdown began with an upgrade under way: the shutdown wins. Before
    /// the commit, the attempt is cancelled (the new process is refused and
    /// stopped); after it, while the new process has not settled, this
    /// process takes everything back and stops it.
    fn upgrades_interrupted(&mut self) {
        let Some(busy) = self.upgrades.busy.take() else {
            return;
        };
        let Some(pid) = busy.committed else {
            busy.cancel.cancel();
            // The attempt answers with Abandoned when it is done.
            self.upgrades.busy = Some(busy);
            return;
        };
        tracing::warn!(target: "lameduck::upgrade", app = %self.handle.name(), new_pid = pid, stop_within_ms = self.stop_bound().as_millis() as u64, "a shutdown began before the handover to the new process was final: taking the sockets back and telling it to stop; it shuts down gracefully");
        owner::set(Handoff::Own);
        // The PID file and the control socket are checked once the new
        // process is gone: until then it may still write them.
        self.stop_successor();
        let e = UpgradeError::new(UpgradeErrorKind::Abandoned, "the app began shutting down")
            .with_pid(pid);
        self.publish(&crate::observe::Event::UpgradeAbandoned {
            why: &e.to_string(),
        });
        steps::answer(busy.waiters, &Err(e));
    }

    pub(super) fn on_upgrade_request(&mut self, req: Request) {
        let refuse = |req: Request, e: UpgradeError| {
            tracing::warn!(target: "lameduck::upgrade", app = %self.handle.name(), via = %req.via, error = %e, "upgrade refused");
            if let Some(r) = req.reply {
                let _ = r.send(Err(e));
            }
        };
        if !self.upgrades.config.enabled {
            return refuse(
                req,
                UpgradeError::new(UpgradeErrorKind::Disabled, "upgrades are disabled"),
            );
        }
        if let Some(why) = crate::upgrade::init::successor_cannot_outlive() {
            return refuse(
                req,
                UpgradeError::new(
                    UpgradeErrorKind::Unsupported,
                    format!("a new process would not outlive this one: {why}"),
                ),
            );
        }
        let phase = self.handle.phase();
        if self.trigger.is_none() && phase == Phase::Starting {
            return refuse(
                req,
                UpgradeError::new(
                    UpgradeErrorKind::NotRunning,
                    "the app is still starting (not ready yet): an upgrade can begin once it runs (`status` answers `ok running`)",
                ),
            );
        }
        if self.trigger.is_some() || phase != Phase::Running {
            return refuse(
                req,
                UpgradeError::new(
                    UpgradeErrorKind::NotRunning,
                    format!("the app is {phase}, not running"),
                ),
            );
        }
        if let Some(s) = self
            .upgrades
            .successor
            .as_ref()
            .filter(|_| self.upgrades.stopping_successor)
        {
            let e = UpgradeError::new(
                UpgradeErrorKind::Busy,
                format!(
                    "the new process of the last upgrade (pid {}) is still shutting down",
                    s.pid
                ),
            );
            return refuse(req, e);
        }
        if let Some(b) = &self.upgrades.busy {
            let e = UpgradeError::new(
                UpgradeErrorKind::Busy,
                format!("an upgrade requested by {} is under way", b.via),
            );
            return refuse(req, e);
        }
        if child::is_awaiting_main() {
            let e = UpgradeError::new(
                UpgradeErrorKind::Busy,
                format!(
                    "the previous process (pid {}) has not finished handing over to this one",
                    child::parent_pid().unwrap_or(0)
                ),
            );
            return refuse(req, e);
        }
        if let Some(replace) = self.upgrades.config.in_place.clone() {
            return self.upgrade_in_place(req, &replace);
        }
        let sockets = match registry::snapshot() {
            Ok(s) => s,
            Err(err) => {
                return refuse(
                    req,
                    UpgradeError::new(
                        UpgradeErrorKind::Spawn,
                        format!("cannot duplicate the listening sockets: {err}"),
                    ),
                );
            }
        };
        let (start_program, args) = exe::capture();
        let program = self
            .upgrades
            .config
            .program
            .clone()
            .unwrap_or_else(|| start_program.clone());
        let handover = self
            .upgrades
            .config
            .handover
            .as_ref()
            .map(|(kind, produce)| (kind.to_string(), produce()));
        let timeout = self.upgrades.config.timeout;
        tracing::info!(
            target: "lameduck::upgrade",
            app = %self.handle.name(),
            via = %req.via,
            program = %program.display(),
            sockets = %sockets.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(","),
            timeout_ms = timeout.as_millis() as u64,
            "upgrade started"
        );
        self.publish(&crate::observe::Event::UpgradeStarted {
            timeout,
            in_place: false,
        });
        let plan = Plan {
            program,
            args: args.clone(),
            sockets,
            handover,
            timeout,
        };
        let cancel = CancellationToken::new();
        let handle = self.handle.clone();
        let token = cancel.clone();
        tokio::spawn(async move {
            let step = match attempt(plan, token).await {
                Ok(candidate) => Step::Ready(Box::new(candidate)),
                Err(e) => Step::Failed(e),
            };
            handle.send(Event::UpgradeStep(step));
        });
        self.upgrades.busy = Some(InFlight {
            via: req.via,
            waiters: req.reply.into_iter().collect(),
            cancel,
            started: Instant::now(),
            committed: None,
        });
    }

    /// Tells the successor this process takes the service back, and has it
    /// stopped: it shuts down gracefully, and is killed only if it has not
    /// exited within [`stop_bound`](Self::stop_bound).
    fn stop_successor(&mut self) {
        let bound = self.stop_bound();
        if let Some(s) = &self.upgrades.successor {
            s.send(Command::Stop(bound));
            self.upgrades.stopping_successor = true;
            self.upgrades.stop_deadline = Some(Instant::now() + bound);
        }
    }

    /// How long a successor told to stop has to exit: a whole shutdown of
    /// this budget (drain delay, shutdown and hard timeouts, closes, final
    /// scrape, log flush). The new process runs the same program, and its
    /// own exit watchdog ends it around then.
    fn stop_bound(&self) -> Duration {
        self.timeline.worst_case()
    }

    /// (Old process, at the end of its shutdown.) Waits until an upgrade
    /// under way has ended and a successor being stopped has exited (or was
    /// killed at its bound), so that the report and the flight record say
    /// how it ended, and no process is left running unwatched. A second
    /// signal ends the wait.
    pub(super) async fn upgrades_finish(&mut self) -> Result<(), crate::Signal> {
        let pending = |d: &Self| {
            // An in-place upgrade bounds itself and watches the shutdown.
            (d.upgrades.busy.is_some() && d.upgrades.config.in_place.is_none())
                || (d.upgrades.stopping_successor && d.upgrades.successor.is_some())
        };
        if !pending(self) {
            return Ok(());
        }
        // The successor task kills at its deadline; a refused candidate is
        // stopped within `spawn::TERM_GRACE`. A little more for the reaping.
        let now = Instant::now();
        let deadline = self.upgrades.stop_deadline.unwrap_or(now).max(now) + Duration::from_secs(5);
        tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), "waiting for the new process of the upgrade to exit");
        while pending(self) {
            match self.step(Some(deadline)).await {
                super::Step::Forced(sig) => return Err(sig),
                super::Step::Deadline => {
                    tracing::error!(target: "lameduck::upgrade", app = %self.handle.name(), "the new process of the upgrade has not been seen to exit; this process exits without knowing how it ended");
                    self.status = self.status.worst(crate::ExitStatus::ComponentFailed);
                    return Ok(());
                }
                super::Step::Handled => {}
            }
        }
        Ok(())
    }

    /// What became of a successor, for the report.
    pub(super) fn upgrades_said(&self) -> Option<String> {
        self.upgrades.said.clone()
    }

    /// How long the old process stays ready to take the service back once
    /// the new one runs: [`Upgrade::settle`], or the drain delay.
    fn settle_time(&self) -> Duration {
        self.upgrades
            .config
            .settle
            .unwrap_or(self.timeline.drain_delay)
    }
}
