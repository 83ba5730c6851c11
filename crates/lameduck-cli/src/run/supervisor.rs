//! The supervisor: what the `program` component and the signal handlers
//! share — how to start an instance, the instances running now, and the
//! commands for the running component.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lameduck::systemd::{Notifier, Notify};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot, watch};

use super::checks::{self, CheckSpec, State};
use super::flags::{Probe, RestartWhen};
use super::guard::Guard;
use super::instance::{Instance, Launch, SpawnError, signal_group};
use super::known::Known;
use super::reaper::Reaper;
use super::tree::{self, Lister};

/// What the signal handlers and the control socket ask of the running
/// component.
#[derive(Debug)]
pub enum Command {
    /// Send this signal to the program now (a second `SIGTERM`/`SIGINT`, or
    /// the first from a terminal): the drain is cut short.
    StopNow(Signal),
    /// A zero-downtime restart; answered with the new pid once the old
    /// instance is gone, or why not.
    Restart(oneshot::Sender<Result<u32, String>>),
}

/// Everything about supervising the program that outlives one run of the
/// component.
#[derive(Debug)]
pub struct Supervisor {
    pub(super) launch: Launch,
    pub(super) reaper: Reaper,
    pub(super) guard: Guard,
    pub(super) ready: Option<CheckSpec>,
    pub(super) live: Option<CheckSpec>,
    pub(super) stop_signal: Signal,
    /// When the program is started again after it ended.
    pub(super) restart: RestartWhen,
    /// How long a new instance of a zero-downtime restart has to be ready.
    pub(super) restart_timeout: Duration,
    /// Stopping: the budget's shutdown timeout (for an instance replaced by
    /// a restart), and the hard timeout (for leftovers and failed starts).
    pub(super) shutdown_timeout: Duration,
    pub(super) hard_timeout: Duration,
    /// The library's restart decisions: the number of restarts, changed
    /// as the restart policy decides to start the program again
    /// ([`restart_decisions`]). A crashed run's leftovers are stopped by
    /// the restart's rules once it changes, by the shutdown's if the
    /// shutdown begins instead.
    pub(super) restarts: watch::Receiver<u32>,
    /// Held while what a crashed instance left running is stopped: the
    /// next run starts the program only once it is free.
    pub(super) leftovers: Arc<tokio::sync::Mutex<()>>,
    pub(super) commands_tx: mpsc::UnboundedSender<Command>,
    pub(super) commands: tokio::sync::Mutex<mpsc::UnboundedReceiver<Command>>,
    pub(super) systemd: Option<Notifier>,
    /// The program's processes known from the drain on.
    pub(super) known: Known,
    live_groups: Mutex<Vec<Pid>>,
    notified: Mutex<Notified>,
    /// The running component's processes, listed before a forced exit's
    /// `SIGKILL`.
    before_force: Mutex<Option<Lister>>,
}

/// What each instance said on the notify socket.
#[derive(Debug, Default)]
struct Notified {
    by_group: HashMap<i32, watch::Sender<Option<bool>>>,
    newest: Option<i32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single assignment or push: a panic cannot tear it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The parts of a [`Supervisor`], gathered by `run`.
#[derive(Debug)]
pub struct Parts {
    pub launch: Launch,
    pub reaper: Reaper,
    pub guard: Guard,
    pub ready: Option<CheckSpec>,
    pub live: Option<CheckSpec>,
    pub stop_signal: Signal,
    pub restart: RestartWhen,
    pub restart_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub hard_timeout: Duration,
    pub restarts: watch::Receiver<u32>,
}

impl Supervisor {
    /// A supervisor; nothing is started yet.
    pub fn new(parts: Parts) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let systemd = Notifier::from_env().ok().flatten();
        Arc::new(Self {
            launch: parts.launch,
            reaper: parts.reaper,
            guard: parts.guard.clone(),
            ready: parts.ready,
            live: parts.live,
            stop_signal: parts.stop_signal,
            restart: parts.restart,
            restart_timeout: parts.restart_timeout,
            shutdown_timeout: parts.shutdown_timeout,
            hard_timeout: parts.hard_timeout,
            restarts: parts.restarts,
            leftovers: Arc::default(),
            commands_tx: tx,
            commands: tokio::sync::Mutex::new(rx),
            systemd,
            known: Known::new(parts.guard.clone()),
            live_groups: Mutex::new(Vec::new()),
            notified: Mutex::new(Notified::default()),
            before_force: Mutex::new(None),
        })
    }

    /// Sends a command to the running component (or to the next run).
    pub fn command(&self, cmd: Command) {
        // The receiver lives as long as the supervisor.
        let _ = self.commands_tx.send(cmd);
    }

    /// A zero-downtime restart, by the running component: the pid that
    /// serves now, or why not.
    pub async fn restart(&self) -> Result<u32, String> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Restart(tx));
        rx.await
            .unwrap_or_else(|_| Err("the program stopped before the restart finished".into()))
    }

    /// Has `lister` list the running component's processes before a
    /// forced exit's `SIGKILL` ([`force`](Self::force)).
    pub fn list_before_force(&self, lister: Lister) {
        *lock(&self.before_force) = Some(lister);
    }

    /// A forced exit: the program's processes are listed — the forced
    /// report names each that runs now, also one the component has not
    /// looked at yet — then every instance's group gets `SIGKILL`.
    pub fn force(&self) {
        let lister = lock(&self.before_force).clone();
        if let Some(lister) = lister {
            lister.list(true);
        }
        self.forward(Signal::SIGKILL);
    }

    /// Sends `sig` to every instance running now.
    pub fn forward(&self, sig: Signal) {
        let groups = lock(&self.live_groups).clone();
        for pgid in groups {
            tracing::debug!(target: "lameduck::run", pid = pgid.as_raw(), signal = sig.as_str(), "forwarding");
            signal_group(pgid, sig);
        }
    }

    /// Whether a program that ended on its own (`failed` or not) is
    /// started again, as the restart policy says (unless its restarts
    /// were too many, which only the library counts).
    pub fn restarts_after(&self, failed: bool) -> bool {
        match self.restart {
            RestartWhen::Always => true,
            RestartWhen::OnFailure => failed,
            RestartWhen::Never => false,
        }
    }

    /// Starts an instance and registers it.
    pub fn start(&self) -> Result<Instance, SpawnError> {
        let not_before = tree::now();
        let inst = Instance::spawn(&self.launch, &self.reaper, &self.guard)?;
        let pid = inst.pid();
        lock(&self.live_groups).push(pid);
        self.known.add_instance(pid, not_before);
        tracing::info!(target: "lameduck::run", pid = pid.as_raw(), program = %self.launch.program.to_string_lossy(), "program started");
        Ok(inst)
    }

    /// Forgets an instance that is gone (the guard too: its process group
    /// id may be reused).
    pub fn forget(&self, pid: Pid) {
        self.guard.forget(pid);
        self.known.remove_instance(pid);
        lock(&self.live_groups).retain(|p| *p != pid);
        let mut n = lock(&self.notified);
        n.by_group.remove(&pid.as_raw());
        if n.newest == Some(pid.as_raw()) {
            n.newest = None;
        }
    }

    /// The readiness of `inst`; `None` without a check (ready once started).
    pub fn readiness(&self, inst: &Instance) -> Option<watch::Receiver<State>> {
        self.check(self.ready.clone()?, inst)
    }

    /// The liveness of `inst`; `None` without a check.
    pub fn liveness(&self, inst: &Instance) -> Option<watch::Receiver<State>> {
        self.check(self.live.clone()?, inst)
    }

    fn check(&self, spec: CheckSpec, inst: &Instance) -> Option<watch::Receiver<State>> {
        let notify = (spec.probe == Probe::Notify).then(|| {
            let (tx, rx) = watch::channel(None);
            let mut n = lock(&self.notified);
            n.by_group.insert(inst.pid().as_raw(), tx);
            n.newest = Some(inst.pid().as_raw());
            rx
        });
        Some(checks::watch(spec, inst.pid(), self.reaper.clone(), notify))
    }

    /// Reads the notify socket and hands each message to the instance that
    /// sent it: by the sender's process group, or, for a sender already
    /// gone (`systemd-notify` exits at once), to the newest instance.
    pub async fn hear(self: Arc<Self>, notify: super::sockets::NotifyDir) {
        let socket = &notify.socket;
        loop {
            let n = match socket.recv().await {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(target: "lameduck::run", error = %err, "notify socket: cannot read; the program's READY=1 will not be heard");
                    return;
                }
            };
            if n.rejected > 0 {
                tracing::debug!(target: "lameduck::run", pid = n.pid, rejected = n.rejected, "notify socket: malformed lines dropped");
            }
            let group = n
                .pid
                .and_then(|p| nix::unistd::getpgid(Some(Pid::from_raw(p as i32))).ok())
                .map(Pid::as_raw);
            let said = if n.is_ready() {
                Some(true)
            } else if n.is_stopping() || n.is_reloading() {
                Some(false)
            } else {
                None
            };
            if let Some(status) = n.status() {
                tracing::info!(target: "lameduck::run", pid = n.pid, status, "program status");
                if let Some(systemd) = &self.systemd {
                    let _ = systemd.notify(&[Notify::Status(status)]);
                }
            }
            if let Some(said) = said {
                let notified = lock(&self.notified);
                let target = group
                    .filter(|g| notified.by_group.contains_key(g))
                    .or(notified.newest);
                match target.and_then(|g| notified.by_group.get(&g)) {
                    Some(tx) => {
                        tracing::info!(target: "lameduck::run", pid = n.pid, ready = said, "program notified {}", if said { "READY=1" } else { "STOPPING=1" });
                        tx.send_replace(Some(said));
                    }
                    None => {
                        tracing::debug!(target: "lameduck::run", pid = n.pid, "notify socket: a message from no instance")
                    }
                }
            }
        }
    }
}

/// The restart decisions of the library's policy for the component named
/// `component`: an observer for the app, and the receiver for
/// [`Parts::restarts`]. The observer hears the decision as the library
/// makes it, before the next run exists (a run cannot tell whether it is
/// the last: the restart intensity is the library's).
pub fn restart_decisions(
    component: &'static str,
) -> (impl lameduck::observe::Observer, watch::Receiver<u32>) {
    let (tx, rx) = watch::channel(0);
    let observer = move |event: &lameduck::observe::Event<'_>| {
        if let lameduck::observe::Event::ComponentRestarting {
            component: name,
            restarts,
            ..
        } = event
            && *name == component
        {
            tx.send_replace(*restarts);
        }
    };
    (observer, rx)
}
