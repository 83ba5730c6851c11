//! PID 1 duties: lameduck becomes a child subreaper, so that every orphan
//! among the program's descendants is reparented to it, and reaps every
//! child that exits — the program's instances, their orphans, the checks it
//! runs — the moment `SIGCHLD` says so.
//!
//! The reaper is the only caller of `waitpid` in the process: children are
//! started with `std::process::Command` and never waited for through their
//! `Child`, whose status would otherwise be stolen.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::{Notify, oneshot};

/// Statuses of exited children nobody asked for (orphans), kept for a
/// late `wait`. Bounded: orphans nobody waits for must not grow it.
const MAX_UNCLAIMED: usize = 1024;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl Ended {
    /// How the library's report says it: the code, or the signal whose
    /// number + 128 is the code (the shell's convention).
    pub fn program_exit(self) -> lameduck::ProgramExit {
        match self {
            // The low byte is what a wait status holds; `as` keeps it.
            Ended::Code(c) => lameduck::ProgramExit::Exited((c & 0xff) as u8),
            Ended::Signal(s) => lameduck::ProgramExit::Killed((s & 0x7f) as u8),
        }
    }

    /// Exit code 0.
    pub fn is_success(self) -> bool {
        self == Ended::Code(0)
    }

    /// Whether this is how a program stops on `sig`: killed by it, or an
    /// exit with 128 + its number (the JVM, shells, many runtimes).
    pub fn is_stop_by(self, sig: Signal) -> bool {
        let n = sig as i32;
        self == Ended::Signal(n) || self == Ended::Code(128 + n)
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Ended::Code(c) => write!(f, "exit code {c}"),
            Ended::Signal(s) => {
                let name = Signal::try_from(s).map_or("an unknown signal", Signal::as_str);
                write!(f, "killed by {name} ({})", 128 + s)
            }
        }
    }
}

/// The reaper: cheap to clone.
#[derive(Clone, Debug)]
pub struct Reaper {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Woken after each round of reaping: whoever waits for a process group
    /// to empty looks again.
    reaped: Notify,
}

#[derive(Debug, Default)]
struct State {
    waiting: HashMap<i32, oneshot::Sender<Ended>>,
    unclaimed: HashMap<i32, Ended>,
}

impl Reaper {
    /// Becomes a subreaper (Linux) and reaps on every `SIGCHLD` from now
    /// on. Call before starting any child.
    ///
    /// # Errors
    ///
    /// When `SIGCHLD` cannot be listened for.
    pub fn start() -> std::io::Result<Self> {
        #[cfg(target_os = "linux")]
        if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(target: "lameduck::run", error = %err, "cannot become a child subreaper: orphans of the program go to init, not to lameduck");
        }
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let reaper = Self {
            inner: Arc::new(Inner::default()),
        };
        let r = reaper.clone();
        tokio::spawn(async move {
            // Zombies from before (lameduck as PID 1 of a container
            // inherits whatever the runtime left) go at once.
            r.reap_all();
            while sigchld.recv().await.is_some() {
                r.reap_all();
            }
        });
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is a single insert or remove: a panic cannot tear it.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Collects every child that has exited, without blocking.
    fn reap_all(&self) {
        loop {
            let (pid, ended) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Ended::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Ended::Signal(sig as i32)),
                // Stops and continues are not asked for (no WUNTRACED).
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    tracing::debug!(target: "lameduck::run", error = %err, "waitpid failed");
                    break;
                }
            };
            let mut state = self.lock();
            match state.waiting.remove(&pid.as_raw()) {
                // A waiter that went away does not need the status.
                Some(tx) => drop(tx.send(ended)),
                None => {
                    if state.unclaimed.len() >= MAX_UNCLAIMED {
                        state.unclaimed.clear();
                    }
                    state.unclaimed.insert(pid.as_raw(), ended);
                }
            }
        }
        self.inner.reaped.notify_waiters();
    }

    /// How `pid`, a child of this process, ends. Ask right after starting
    /// it; a status reaped before the ask is kept for it.
    pub fn wait(&self, pid: Pid) -> oneshot::Receiver<Ended> {
        let (tx, rx) = oneshot::channel();
        let mut state = self.lock();
        match state.unclaimed.remove(&pid.as_raw()) {
            Some(ended) => drop(tx.send(ended)),
            None => {
                state.waiting.insert(pid.as_raw(), tx);
            }
        }
        rx
    }

    /// Completes after the next round of reaping.
    pub async fn reaped(&self) {
        self.inner.reaped.notified().await;
    }
}
