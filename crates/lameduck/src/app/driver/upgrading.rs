//! The driver's side of upgrades (feature `upgrade`): one at a time,
//! started only while Running, finished by a shutdown with reason
//! `Upgraded` — or rolled back, leaving the app as it was.

use std::path::PathBuf;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Driver;
use crate::app::Event;
use crate::listen::registry;
use crate::upgrade::control::ControlSocket;
use crate::upgrade::spawn::{Plan, attempt};
use crate::upgrade::{
    Reply, Request, Upgrade, UpgradeError, UpgradeErrorKind, Upgraded, Via, child, exe, pidfile,
};
use crate::{Phase, ShutdownReason};

pub(in crate::app) struct Upgrades {
    config: Upgrade,
    busy: Option<InFlight>,
    control: Option<ControlSocket>,
    hangups: Option<tokio::task::JoinHandle<()>>,
    /// The PID file, once this process wrote it.
    pid_file: Option<PathBuf>,
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
                child::report_ready();
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
        self.publish(&crate::observe::Event::UpgradeStarted { timeout });
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
            let result = attempt(plan, token).await;
            handle.send(Event::UpgradeDone(result));
        });
        self.upgrades.busy = Some(InFlight {
            via: req.via,
            waiters: req.reply.into_iter().collect(),
            cancel,
            started: Instant::now(),
        });
    }

    pub(super) fn on_upgrade_done(&mut self, result: Result<u32, UpgradeError>) {
        let Some(done) = self.upgrades.busy.take() else {
            return;
        };
        let took = done.started.elapsed();
        let app = self.handle.name().to_string();
        match result {
            Ok(pid) if self.trigger.is_none() => {
                registry::set_handed_off();
                self.publish(&crate::observe::Event::UpgradeSucceeded { pid });
                // Only now may the new process notify systemd itself.
                crate::upgrade::spawn::acknowledge(pid);
                if let Some(path) = &self.upgrades.pid_file {
                    if let Err(err) = pidfile::write(path, pid) {
                        tracing::error!(target: "lameduck::upgrade", path = %path.display(), error = %err, "cannot write the new pid to the PID file");
                    }
                }
                tracing::info!(target: "lameduck::upgrade", app = %app, new_pid = pid, took_ms = took.as_millis() as u64, "upgrade complete: the new process is ready; this one drains and exits");
                answer(done.waiters, &Ok(Upgraded { new_pid: pid, took }));
                self.trigger(ShutdownReason::Upgraded { new_pid: pid });
            }
            Ok(pid) => {
                // Ready just as a shutdown began: the shutdown wins, and the
                // new process must not outlive it.
                tracing::warn!(target: "lameduck::upgrade", app = %app, new_pid = pid, "the new process became ready during the shutdown; stopping it");
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(raw),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                answer(
                    done.waiters,
                    &Err(UpgradeError::new(
                        UpgradeErrorKind::Abandoned,
                        "the app began shutting down",
                    )),
                );
            }
            Err(e) => {
                tracing::error!(target: "lameduck::upgrade", app = %app, error = %e, took_ms = took.as_millis() as u64, "upgrade failed; this process goes on serving");
                self.publish(&crate::observe::Event::UpgradeFailed {
                    error: &e.to_string(),
                });
                answer(done.waiters, &Err(e));
            }
        }
    }
}
