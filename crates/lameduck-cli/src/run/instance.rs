//! One instance of the program: started in a process group of its own with
//! the sockets, signalled as a group (stopped whole, with its processes
//! outside the group, by `run/known.rs`).

use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use lameduck::listen::Handoff;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::guard::Guard;
use super::held::Held;
use super::reaper::{Ended, Reaper};

/// Variables of lameduck's own environment that belong to lameduck, not to
/// the program: its systemd notify socket and watchdog (the program gets
/// lameduck's notify socket, or none), and the upgrade channel.
const NOT_PASSED_ON: [&str; 5] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LAMEDUCK_UPGRADE_FD",
    "LAMEDUCK_UPGRADE_PID",
];

/// What every instance is started with.
#[derive(Debug)]
pub struct Launch {
    /// The program.
    pub program: OsString,
    /// Its arguments, with `{fd:NAME}` placeholders expanded.
    pub args: Vec<OsString>,
    /// The sockets, in `LISTEN_FDS` order, until given up at the
    /// shutdown.
    pub sockets: Held,
    /// The notify socket's path, for `NOTIFY_SOCKET`.
    pub notify: Option<PathBuf>,
}

/// Why the program could not be started.
#[derive(Debug)]
pub struct SpawnError {
    /// The shell's code for it: 127 not found, 126 not executable.
    pub code: u8,
    /// What happened.
    pub message: String,
}

/// A running instance.
#[derive(Debug)]
pub struct Instance {
    pid: Pid,
    exit: Option<oneshot::Receiver<Ended>>,
    ended: Option<Ended>,
}

impl Instance {
    /// Starts an instance.
    ///
    /// # Errors
    ///
    /// When the program is not found, not executable, or cannot be started.
    pub fn spawn(launch: &Launch, reaper: &Reaper, guard: &Guard) -> Result<Self, SpawnError> {
        let mut cmd = std::process::Command::new(&launch.program);
        cmd.args(&launch.args).process_group(0);
        for var in NOT_PASSED_ON {
            cmd.env_remove(var);
        }
        if let Some(path) = &launch.notify {
            cmd.env("NOTIFY_SOCKET", path);
        }
        let error = |e: io::Error| spawn_error(&launch.program, &e);
        let handed = launch.sockets.with(|sockets| {
            let mut handoff = Handoff::new();
            for (name, fd) in sockets {
                handoff = handoff.listener(name, fd)?;
            }
            handoff.apply(&mut cmd)
        });
        match handed {
            Some(result) => result.map_err(error)?,
            // Only a shutdown gives them up, and nothing starts after it.
            None => {
                return Err(SpawnError {
                    code: 1,
                    message: "the sockets were given up: lameduck is shutting down".into(),
                });
            }
        }
        let child = cmd.spawn().map_err(error)?;
        // The command held extra copies of the sockets.
        drop(cmd);
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
        // Reaped by the reaper, never through `child`.
        drop(child);
        let exit = reaper.wait(pid);
        guard.watch(pid);
        Ok(Self {
            pid,
            exit: Some(exit),
            ended: None,
        })
    }

    /// The pid of the program (and of its process group).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// How it ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// Completes when the program itself (not its group) exits.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn exited(&mut self) -> Ended {
        if let Some(e) = self.ended {
            return e;
        }
        let ended = match self.exit.as_mut() {
            // The reaper dropped the sender only if it stopped: the process
            // cannot be waited for any more, so count it gone.
            Some(rx) => rx.await.unwrap_or(Ended::Signal(Signal::SIGKILL as i32)),
            None => std::future::pending().await,
        };
        self.exit = None;
        self.ended = Some(ended);
        ended
    }

    /// Sends `sig` to the whole group; a group already gone is no error.
    pub fn signal(&self, sig: Signal) {
        signal_group(self.pid, sig);
    }

    /// Whether any process of the group is left.
    pub fn group_alive(&self) -> bool {
        group_alive(self.pid)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Whatever path leaves an instance behind (an error, a panic, an
        // aborted task), its processes do not outlive it.
        if self.group_alive() {
            signal_group(self.pid, Signal::SIGKILL);
        }
    }
}

/// Sends `sig` to the process group `pgid`.
pub fn signal_group(pgid: Pid, sig: Signal) {
    match killpg(pgid, sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => {
            tracing::warn!(target: "lameduck::run", pgid = pgid.as_raw(), signal = sig.as_str(), error = %err, "cannot signal the program's group")
        }
    }
}

/// Whether the process group `pgid` has a member left (zombies count until
/// reaped).
pub fn group_alive(pgid: Pid) -> bool {
    !matches!(kill(Pid::from_raw(-pgid.as_raw()), None), Err(Errno::ESRCH))
}

fn spawn_error(program: &OsString, e: &io::Error) -> SpawnError {
    let shown = Path::new(program).display();
    match e.kind() {
        io::ErrorKind::NotFound => SpawnError {
            code: 127,
            message: format!("{shown}: command not found"),
        },
        // execve says EACCES for a directory too; bash says what it is.
        io::ErrorKind::PermissionDenied if Path::new(program).is_dir() => SpawnError {
            code: 126,
            message: format!("{shown}: is a directory"),
        },
        io::ErrorKind::PermissionDenied => SpawnError {
            code: 126,
            message: format!("{shown}: permission denied (not executable?)"),
        },
        _ if e.raw_os_error() == Some(Errno::ENOEXEC as i32) => SpawnError {
            code: 126,
            message: format!("{shown}: not an executable format (a script without #!?)"),
        },
        _ => SpawnError {
            code: 126,
            message: format!("{shown}: cannot start: {e}"),
        },
    }
}

/// lameduck's children other than `except` (the guard): descendants of
/// the program that left its process group (`setsid`, a daemon's double
/// fork) and were orphaned, so reparented to lameduck, the subreaper.
/// Linux only (`/proc/self/task/*/children`); empty elsewhere.
pub fn strays(except: Option<u32>) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for pid in list
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            if Some(pid) != except && !out.contains(&pid) {
                out.push(pid);
            }
        }
    }
    out.into_iter()
        .filter_map(|p| i32::try_from(p).ok().map(Pid::from_raw))
        .filter(|p| alive(*p))
        .collect()
}

/// Whether `pid` is a process other than a zombie.
fn alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => !matches!(kill(pid, None), Err(Errno::ESRCH)),
    }
}
