//! One server process the harness started: start it, wait until it is ready,
//! SIGTERM it by PID and wait for its exit — or, for a server that restarts
//! itself in place (`lameduck demo` on SIGHUP), SIGHUP it and wait until its
//! successor serves.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::kind::Launch;
use crate::net::get_status;

/// How often readiness is polled while waiting for it.
const POLL: Duration = Duration::from_millis(10);

/// A server instance that can be started again on the same ports.
#[derive(Debug)]
pub struct Instance {
    launch: Launch,
    ready: SocketAddr,
    log: PathBuf,
    child: Option<Child>,
    /// For a server that restarts in place: the file that names the process
    /// serving now. Such a server runs in a process group of its own, which
    /// its successors stay in, and is killed as a group.
    pid_file: Option<PathBuf>,
}

/// How an instance ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// Its status.
    pub status: ExitStatus,
    /// From SIGTERM to the exit.
    pub after: Duration,
    /// Whether the grace period ran out and the harness SIGKILLed it.
    pub killed: bool,
}

impl Instance {
    /// An instance of `launch` whose readiness is `GET /readyz` on `ready`;
    /// its stdout and stderr are appended to `log`. Not started yet.
    pub fn new(launch: Launch, ready: SocketAddr, log: PathBuf) -> Self {
        Instance {
            launch,
            ready,
            log,
            child: None,
            pid_file: None,
        }
    }

    /// The same, for a server that restarts itself in place on SIGHUP and
    /// keeps the PID of the process serving now in `pid_file` (the caller
    /// passes the file to it); see [`Instance::restart_in_place`].
    pub fn in_place(launch: Launch, ready: SocketAddr, log: PathBuf, pid_file: PathBuf) -> Self {
        Instance {
            pid_file: Some(pid_file),
            ..Instance::new(launch, ready, log)
        }
    }

    /// Starts the process. It is killed if the `Instance` is dropped while
    /// it runs, so that an error anywhere leaves nothing behind.
    ///
    /// # Errors
    ///
    /// When it is already running or cannot be spawned.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.launch.program.display());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut command = Command::new(&self.launch.program);
        if self.pid_file.is_some() {
            command.process_group(0);
        }
        let child = command
            .args(&self.launch.args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.launch.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// The running process's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Polls `/readyz` until it answers 200, for at most `timeout`.
    ///
    /// # Errors
    ///
    /// When the process exits first, or the time runs out.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if get_status(self.ready, "/readyz").await == Some(200) {
                return Ok(());
            }
            let child = self.child.as_mut().context("the instance is not running")?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                bail!("{} exited with {status} before it was ready", self.name());
            }
            if Instant::now() >= deadline {
                bail!("{} was not ready within {timeout:?}", self.name());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sends SIGTERM and waits for the exit, SIGKILLing after `grace`.
    ///
    /// # Errors
    ///
    /// When it is not running or cannot be signalled.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<Exit> {
        let mut child = self.child.take().context("the instance is not running")?;
        let pid = child.id().context("the instance was already reaped")?;
        let pid = Pid::from_raw(i32::try_from(pid)?);
        let sent = Instant::now();
        kill(pid, Signal::SIGTERM).context("sending SIGTERM")?;
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => Ok(Exit {
                status: status?,
                after: sent.elapsed(),
                killed: false,
            }),
            Err(_) => {
                child.start_kill()?;
                let status = child.wait().await?;
                Ok(Exit {
                    status,
                    after: sent.elapsed(),
                    killed: true,
                })
            }
        }
    }

    /// Restarts a server in place: SIGHUP to the process serving now (as
    /// its pid file says), then waits until the file names another process
    /// and the old one has exited, for at most `timeout`. The old process
    /// hands its listening sockets to the new one, so no connection is
    /// refused in between.
    ///
    /// # Errors
    ///
    /// When this is not such an instance, the signal cannot be sent, or the
    /// time runs out.
    pub async fn restart_in_place(&mut self, timeout: Duration) -> anyhow::Result<Exit> {
        let file = self.pid_file.clone().context("not an in-place instance")?;
        let read = || -> Option<i32> { std::fs::read_to_string(&file).ok()?.trim().parse().ok() };
        let old = read().context("the pid file names no process")?;
        let sent = Instant::now();
        kill(Pid::from_raw(old), Signal::SIGHUP).context("sending SIGHUP")?;
        let deadline = sent + timeout;
        loop {
            if read().is_some_and(|pid| pid != old) && is_gone(old) {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} had no successor within {timeout:?} of SIGHUP",
                    self.name()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        let after = sent.elapsed();
        // The first process is this harness's child: reap it. Its successors
        // are orphans, reaped by init.
        let status = match self.child.take() {
            Some(mut child) if child.id().is_some_and(|id| id as i32 == old) => {
                child.wait().await?
            }
            child => {
                self.child = child;
                std::os::unix::process::ExitStatusExt::from_raw(0)
            }
        };
        Ok(Exit {
            status,
            after,
            killed: false,
        })
    }

    /// Kills the process, if it runs, and reaps it; an in-place instance's
    /// whole process group (the first process and its successors).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.pid_file.is_some()
                && let Some(group) = child.id().and_then(|id| i32::try_from(id).ok())
            {
                let _ = nix::sys::signal::killpg(Pid::from_raw(group), Signal::SIGKILL);
            }
            let _ = child.kill().await;
        } else if let Some(file) = &self.pid_file {
            // The first process is gone; its group id lives on in the
            // successors, which stay in its group.
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                && let Ok(group) = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
            {
                let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
            }
        }
    }

    /// Whether this instance restarts in place (SIGHUP) rather than by
    /// stop and start.
    pub fn is_in_place(&self) -> bool {
        self.pid_file.is_some()
    }

    fn name(&self) -> String {
        let program = self
            .launch
            .program
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        format!("{program} (log: {})", self.log.display())
    }
}

/// Whether `pid` has exited: gone from `/proc`, or a zombie its parent has
/// yet to reap.
pub(crate) fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_fields(&stat).is_none_or(|(state, _)| state == "Z"),
        Err(_) => true,
    }
}

/// The state and the parent PID from `/proc/PID/stat` (after the command,
/// which is in parentheses and may hold anything).
pub(crate) fn stat_fields(stat: &str) -> Option<(&str, i32)> {
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_with_parentheses() {
        let stat = "4242 (nginx: (master)) S 1 4242 4242 0 -1";
        assert_eq!(stat_fields(stat), Some(("S", 1)));
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn this_process_is_not_gone() {
        assert!(!is_gone(i32::try_from(std::process::id()).unwrap()));
    }
}
