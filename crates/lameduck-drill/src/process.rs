//! The server process: spawned (so the drill knows its PID and exit code and
//! can clean up after it) or attached to (never killed), and every process
//! the drill signals, watched until it exits.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::error::DrillError;
use crate::{Signal, procfs};

/// How often a process that is not the drill's child is checked for exit.
const EXIT_POLL: Duration = Duration::from_millis(5);
/// How long cleanup waits for the spawned server to go after a signal.
const CLEANUP_WAIT: Duration = Duration::from_secs(2);
/// How often cleanup looks whether the spawned group has emptied.
const GROUP_POLL: Duration = Duration::from_millis(20);

/// How a watched process ended. The code and signal are known only for the
/// drill's own child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExitInfo {
    pub(crate) at: Instant,
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
}

type ExitWatch = watch::Receiver<Option<ExitInfo>>;

/// The server process and every process the drill watches.
#[derive(Debug)]
pub(crate) struct Server {
    /// The process started or attached to.
    pid: Option<u32>,
    /// The process group of a spawned server (its PID).
    group: Option<Pid>,
    watches: Mutex<HashMap<u32, ExitWatch>>,
    /// What the cleanup did, to tell which exits it caused.
    cleanup: Mutex<Cleanup>,
}

/// The cleanup's signals, each with the processes it went to.
#[derive(Debug, Default)]
struct Cleanup {
    /// Each signal, with when (just before it was sent) and to which pids.
    signals: Vec<(Instant, Signal, Vec<u32>)>,
}

impl Cleanup {
    /// The last signal the cleanup sent to `pid` before its exit was seen
    /// at `at`: the one that stopped it.
    fn stopped(&self, pid: u32, at: Instant) -> Option<Signal> {
        self.signals
            .iter()
            .rev()
            .find(|(sent, _, pids)| *sent <= at && pids.contains(&pid))
            .map(|(_, sig, _)| *sig)
    }
}

impl Server {
    pub(crate) fn none() -> Self {
        Server {
            pid: None,
            group: None,
            watches: Mutex::default(),
            cleanup: Mutex::default(),
        }
    }

    /// Spawns the server in its own process group, stdin closed, stdout and
    /// stderr to `log` or to the drill's stderr (never its stdout, which may
    /// carry the JSON report).
    pub(crate) fn spawn(
        program: &OsString,
        args: &[OsString],
        log: Option<&Path>,
    ) -> Result<Self, DrillError> {
        let spawn_error = |source| DrillError::Spawn {
            program: program.to_string_lossy().into_owned(),
            source,
        };
        // A log that cannot be created is the log's fault, not the program's.
        let (stdout, stderr) = output(log).map_err(|source| match log {
            Some(path) => DrillError::ServerLog {
                path: path.to_path_buf(),
                source,
            },
            None => spawn_error(source),
        })?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(spawn_error)?;
        let pid = child.id().expect("a child that was just spawned has a PID");
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = tx.send(Some(ExitInfo {
                    at: Instant::now(),
                    code: status.code(),
                    signal: status.signal(),
                }));
            }
        });
        let server = Server {
            pid: Some(pid),
            group: Some(Pid::from_raw(pid as i32)),
            watches: Mutex::default(),
            cleanup: Mutex::default(),
        };
        server.lock_watches().insert(pid, rx);
        Ok(server)
    }

    /// Attaches to a running process, which the drill will signal and watch
    /// but never kill.
    pub(crate) fn attach(pid: u32) -> Result<Self, DrillError> {
        if !is_alive(pid) {
            return Err(DrillError::NoSuchProcess { pid });
        }
        let server = Server {
            pid: Some(pid),
            group: None,
            watches: Mutex::default(),
            cleanup: Mutex::default(),
        };
        server.watch(pid);
        Ok(server)
    }

    /// The process started or attached to.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The process group of a spawned server.
    pub(crate) fn group(&self) -> Option<i32> {
        self.group.map(Pid::as_raw)
    }

    fn lock_watches(&self) -> std::sync::MutexGuard<'_, HashMap<u32, ExitWatch>> {
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `pid` for its exit (if not already); whether it was
    /// not watched before.
    pub(crate) fn watch(&self, pid: u32) -> bool {
        let mut watches = self.lock_watches();
        if watches.contains_key(&pid) {
            return false;
        }
        let (tx, rx) = watch::channel(None);
        watches.insert(pid, rx);
        tokio::spawn(async move {
            // Not the drill's child: no exit code, only the moment it is gone.
            while is_alive(pid) {
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(EXIT_POLL).await;
            }
            let _ = tx.send(Some(ExitInfo {
                at: Instant::now(),
                code: None,
                signal: None,
            }));
        });
        true
    }

    /// Stops watching `pid`, and forgets it: a process that was never there
    /// (a signal to it found no such process) did not exit either.
    pub(crate) fn forget(&self, pid: u32) {
        self.lock_watches().remove(&pid);
    }

    /// How `pid` exited, if it has (and is watched).
    pub(crate) fn exit_of(&self, pid: u32) -> Option<ExitInfo> {
        *self.lock_watches().get(&pid)?.borrow()
    }

    /// Every watched process that exited, with the cleanup's signal that
    /// stopped it, if the cleanup did.
    pub(crate) fn exits(&self) -> Vec<(u32, ExitInfo, Option<Signal>)> {
        let cleanup = self.lock_cleanup();
        let mut exits: Vec<_> = self
            .lock_watches()
            .iter()
            .filter_map(|(&pid, rx)| {
                let info = (*rx.borrow())?;
                Some((pid, info, cleanup.stopped(pid, info.at)))
            })
            .collect();
        exits.sort_by_key(|(_, info, _)| info.at);
        exits
    }

    /// Waits until `pid` exits (forever if it is not watched).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the exit stays recorded for [`Server::exit_of`].
    pub(crate) async fn wait_exit(&self, pid: u32) -> ExitInfo {
        let rx = self.lock_watches().get(&pid).cloned();
        match rx {
            Some(mut rx) => match rx.wait_for(Option::is_some).await {
                Ok(info) => (*info).expect("waited for Some"),
                Err(_) => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    /// Sends `signal` to `pid`.
    pub(crate) fn signal(&self, pid: u32, signal: Signal) -> Result<(), Errno> {
        let pid = i32::try_from(pid).map_err(|_| Errno::ESRCH)?;
        kill(Pid::from_raw(pid), signal.to_nix())
    }

    /// Stops what is left of a spawned server: with a `grace`, first waits
    /// for the processes in `leaving` to exit (replaced by a restart, they
    /// exit on their own: a second signal would cut their drain short, and
    /// their exit is not the cleanup's doing), then `TERM` to every other
    /// process of its group, all within `grace` for every process of the
    /// group to exit; then `KILL` for
    /// whatever is still there. Every process, not only the one spawned:
    /// after a restart the successor serves, drains at the `TERM`, and
    /// killed mid-drain it would leave its PID file behind, naming a
    /// process that no longer exists. Each process signalled is watched, so
    /// that its exit is recorded and said to be the cleanup's doing. Does
    /// nothing for an attached server.
    ///
    /// The wait comes first because a restart is under way until the
    /// process it replaced is gone: a new process signalled before then is
    /// stopped mid-handover (lameduck's, before it has settled, makes the
    /// old one take the service back and log an error), a failure the
    /// drill would have caused.
    pub(crate) async fn clean_up(&self, grace: Option<Duration>, leaving: &[u32]) {
        let (Some(group), Some(pid)) = (self.group, self.pid) else {
            return;
        };
        if !self.group_is_alive(group) {
            return;
        }
        let started = Instant::now();
        if let Some(grace) = grace {
            let deadline = started + grace;
            // Each was watched when it was signalled; one that was not
            // cannot be waited for.
            let handing_over: Vec<u32> = leaving
                .iter()
                .copied()
                .filter(|p| self.lock_watches().contains_key(p))
                .collect();
            for p in handing_over {
                let _ = tokio::time::timeout_at(deadline.into(), self.wait_exit(p)).await;
            }
            let serving: Vec<u32> = procfs::group_members(group.as_raw())
                .into_iter()
                .filter(|p| !leaving.contains(p))
                .collect();
            self.send_cleanup(&serving, Signal::TERM);
            // The spawned process's exit is watched; the others are looked
            // for in /proc.
            let _ = tokio::time::timeout_at(deadline.into(), self.wait_exit(pid)).await;
            while self.group_is_alive(group) && Instant::now() < deadline {
                tokio::time::sleep(GROUP_POLL.min(deadline - Instant::now())).await;
            }
        }
        if self.group_is_alive(group) {
            let left = procfs::group_members(group.as_raw());
            self.send_cleanup(&left, Signal::KILL);
            let _ = killpg(group, Signal::KILL.to_nix());
            let _ = tokio::time::timeout(CLEANUP_WAIT, self.wait_exit(pid)).await;
        }
        // The exits of the processes signalled, each seen by its watch (a
        // few milliseconds after the group emptied), so that the report
        // has them all.
        let signalled: Vec<u32> = self
            .lock_cleanup()
            .signals
            .iter()
            .flat_map(|(_, _, pids)| pids.iter().copied())
            .collect();
        for p in signalled {
            let _ = tokio::time::timeout(CLEANUP_WAIT, self.wait_exit(p)).await;
        }
    }

    /// Sends the cleanup's `signal` to each of `pids`, watched and noted
    /// first: an exit of one of them seen from then on is the cleanup's
    /// doing.
    fn send_cleanup(&self, pids: &[u32], signal: Signal) {
        for &p in pids {
            self.watch(p);
        }
        self.lock_cleanup()
            .signals
            .push((Instant::now(), signal, pids.to_vec()));
        for &p in pids {
            let _ = self.signal(p, signal);
        }
    }

    fn lock_cleanup(&self) -> std::sync::MutexGuard<'_, Cleanup> {
        self.cleanup.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any process of the spawned group still runs: the child, or a
    /// process it started (a successor that took over its socket, say). A
    /// group id is only reused once the group is empty, so signalling a group
    /// that has members never reaches a stranger.
    fn group_is_alive(&self, group: Pid) -> bool {
        !procfs::group_members(group.as_raw()).is_empty()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The drill was abandoned (Ctrl+C, a panic): never leave a server it
        // started running behind it.
        if let Some(group) = self.group
            && self.group_is_alive(group)
        {
            let _ = killpg(group, Signal::KILL.to_nix());
        }
    }
}

/// Whether `pid` is a running (not zombie) process. 0 is none: `kill(0, …)`
/// would answer for the drill's own process group.
pub(crate) fn is_alive(pid: u32) -> bool {
    let Ok(raw @ 1..) = i32::try_from(pid) else {
        return false;
    };
    match kill(Pid::from_raw(raw), None) {
        Ok(()) | Err(Errno::EPERM) => procfs::stat(pid).is_none_or(|s| s.state != 'Z'),
        Err(_) => false,
    }
}

fn output(log: Option<&Path>) -> std::io::Result<(Stdio, Stdio)> {
    match log {
        Some(path) => {
            let file = std::fs::File::create(path)?;
            Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
        }
        None => {
            let stderr = std::io::stderr();
            let fd = stderr.as_fd();
            Ok((
                Stdio::from(fd.try_clone_to_owned()?),
                Stdio::from(fd.try_clone_to_owned()?),
            ))
        }
    }
}
