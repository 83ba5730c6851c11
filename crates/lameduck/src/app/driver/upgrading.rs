//! The driver's side of upgrades (feature `upgrade`): one at a time,
//! started only while Running, finished by a shutdown with reason
//! `Upgraded` — or rolled back, leaving the app as it was.

use std::path::PathBuf;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Driver;
use crate::app::Event;
use crate::listen::registry;
use crate::upgrade::child::Verdict;
use crate::upgrade::control::ControlSocket;
use crate::upgrade::spawn::{Candidate, Plan, attempt};
use crate::upgrade::{
    Reply, Request, Step, Upgrade, UpgradeError, UpgradeErrorKind, Upgraded, Via, child, exe,
    pidfile,
};
use crate::{Phase, ShutdownReason};

pub(in crate::app) struct Upgrades {
    config: Upgrade,
    busy: Option<InFlight>,
    control: Option<ControlSocket>,
    hangups: Option<tokio::task::JoinHandle<()>>,
    /// The PID file, once this process wrote it.
    pid_file: Option<PathBuf>,
    /// A process started by an upgrade: where it stands with its parent.
    start: Start,
}

/// Whether this process may enter Running, as far as upgrades go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Not started by an upgrade, or its parent committed to it.
    Own,
    /// Started by an upgrade; ready, not reported yet.
    Unreported,
    /// Reported ready; waits for the parent's verdict.
    Reported,
}

struct InFlight {
    via: Via,
    waiters: Vec<Reply>,
    cancel: CancellationToken,
    started: Instant,
}

impl Upgrades {
    pub(in crate::app) fn new(config: Upgrade) -> Self {
        // As early as the app exists: the program path is the one the
        // process was started with, and the channel to an upgrading parent
        // is claimed before anything else can open descriptors.
        exe::capture();
        child::init();
        Self {
            config,
            busy: None,
            control: None,
            hangups: None,
            pid_file: None,
            start: if child::is_pending() {
                Start::Unreported
            } else {
                Start::Own
            },
        }
    }
}

impl Drop for Upgrades {
    fn drop(&mut self) {
        if let Some(h) = self.hangups.take() {
            h.abort();
        }
    }
}

fn answer(waiters: Vec<Reply>, result: &Result<Upgraded, UpgradeError>) {
    for w in waiters {
        // A requester that went away does not need the answer.
        let _ = w.send(result.clone());
    }
}

impl Driver {
    pub(super) fn upgrades_start(&mut self) {
        if self.upgrades.config.enabled && self.handle_signals {
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
                if let Some(path) = self.upgrades.config.control_socket.clone() {
                    match ControlSocket::bind(&path, self.handle.clone()) {
                        Ok(c) => self.upgrades.control = Some(c),
                        Err(err) => {
                            tracing::error!(target: "lameduck::upgrade", path = %path.display(), error = %err, "cannot bind the control socket")
                        }
                    }
                }
                if let Some(path) = self.upgrades.config.pid_file.clone() {
                    match pidfile::write(&path, std::process::id()) {
                        Ok(()) => self.upgrades.pid_file = Some(path),
                        Err(err) => {
                            tracing::error!(target: "lameduck::upgrade", path = %path.display(), error = %err, "cannot write the PID file")
                        }
                    }
                }
                // Last: once the parent hears this, it answers its requester
                // and drains, so the control socket and the PID file must
                // already point here.
                child::report_running();
            }
            Phase::Draining => {
                if from == Phase::Starting {
                    child::report_failed(&format!("shut down while starting: {cause}"));
                }
                if let Some(b) = &self.upgrades.busy {
                    b.cancel.cancel();
                }
                // No upgrade can start any more: let the servers' close
                // really close the sockets.
                registry::clear();
            }
            Phase::Stopped => {
                self.upgrades.control = None;
                if let Some(path) = self.upgrades.pid_file.take() {
                    pidfile::remove_if_ours(&path, std::process::id());
                }
            }
            _ => {}
        }
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
        let phase = self.handle.phase();
        if self.trigger.is_some() || phase != Phase::Running {
            return refuse(
                req,
                UpgradeError::new(
                    UpgradeErrorKind::NotRunning,
                    format!("the app is {phase}, not running"),
                ),
            );
        }
        if let Some(b) = &self.upgrades.busy {
            let e = UpgradeError::new(
                UpgradeErrorKind::Busy,
                format!("an upgrade requested by {} is under way", b.via),
            );
            return refuse(req, e);
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
        self.systemd.reloading(timeout);
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
        });
    }

    /// Whether this app may enter Running: a process started by an upgrade
    /// first reports ready, then waits for its parent's commit. Until then
    /// it changes nothing the parent owns.
    pub(super) fn upgrades_may_run(&mut self) -> bool {
        match self.upgrades.start {
            Start::Own => true,
            Start::Reported => false,
            Start::Unreported => {
                crate::upgrade::fault_point("ready");
                let handle = self.handle.clone();
                let reported = child::report_ready(move |verdict| {
                    handle.send(Event::UpgradeStep(Step::Verdict(verdict)));
                });
                if !reported {
                    self.upgrades.start = Start::Own;
                    return true;
                }
                tracing::info!(target: "lameduck::upgrade", parent = child::parent_pid().unwrap_or(0), "ready; waiting for the old process to commit to this one");
                self.upgrades.start = Start::Reported;
                false
            }
        }
    }

    pub(super) fn on_upgrade_step(&mut self, step: Step) {
        match step {
            Step::Ready(candidate) => self.on_candidate(candidate),
            Step::Failed(e) => self.on_upgrade_failed(e),
            Step::Verdict(v) => self.on_verdict(v),
        }
    }

    /// (New process.) The parent's verdict.
    fn on_verdict(&mut self, verdict: Verdict) {
        let parent = child::parent_pid().unwrap_or(0);
        match verdict {
            Verdict::Commit | Verdict::ParentGone => {
                if verdict == Verdict::ParentGone {
                    tracing::warn!(target: "lameduck::upgrade", parent, "the old process is gone without a verdict; this process takes over");
                } else {
                    crate::upgrade::fault_point("commit");
                    tracing::info!(target: "lameduck::upgrade", parent, "the old process committed to this one; taking over");
                }
                registry::set_committed();
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

    /// (Old process.) The new process is ready: commit, unless a shutdown
    /// began meanwhile.
    fn on_candidate(&mut self, mut candidate: Box<Candidate>) {
        let Some(done) = self.upgrades.busy.take() else {
            tokio::spawn(candidate.refuse());
            return;
        };
        let took = done.started.elapsed();
        let app = self.handle.name().to_string();
        let pid = candidate.pid;
        if self.trigger.is_some() {
            // Ready just as a shutdown began: the shutdown wins, and the
            // new process stands down without having touched anything.
            tracing::warn!(target: "lameduck::upgrade", app = %app, new_pid = pid, "the new process became ready during the shutdown; refusing it");
            tokio::spawn(candidate.refuse());
            answer(
                done.waiters,
                &Err(UpgradeError::new(
                    UpgradeErrorKind::Abandoned,
                    "the app began shutting down",
                )),
            );
            return;
        }
        if let Err(err) = candidate.try_commit() {
            let e = UpgradeError::new(
                UpgradeErrorKind::Exited,
                format!("the new process (pid {pid}) went away before the commit: {err}"),
            );
            tokio::spawn(candidate.refuse());
            return self.rolled_back(done, e);
        }
        registry::set_handed_off(true);
        self.systemd.upgraded(pid);
        // Only now may the new process notify systemd itself.
        candidate.make_main();
        if let Some(path) = &self.upgrades.pid_file {
            if let Err(err) = pidfile::write(path, pid) {
                tracing::error!(target: "lameduck::upgrade", path = %path.display(), error = %err, "cannot write the new pid to the PID file");
            }
        }
        tracing::info!(target: "lameduck::upgrade", app = %app, new_pid = pid, took_ms = took.as_millis() as u64, "upgrade complete: the new process is ready; this one drains and exits");
        answer(done.waiters, &Ok(Upgraded { new_pid: pid, took }));
        self.trigger(ShutdownReason::Upgraded { new_pid: pid });
    }

    fn on_upgrade_failed(&mut self, e: UpgradeError) {
        let Some(done) = self.upgrades.busy.take() else {
            return;
        };
        self.rolled_back(done, e);
    }

    /// The attempt failed and the new process is gone: this one goes on
    /// serving.
    fn rolled_back(&mut self, done: InFlight, e: UpgradeError) {
        let took = done.started.elapsed();
        tracing::error!(target: "lameduck::upgrade", app = %self.handle.name(), error = %e, took_ms = took.as_millis() as u64, "upgrade failed; this process goes on serving");
        self.systemd.upgrade_failed(&e.to_string());
        answer(done.waiters, &Err(e));
    }
}
