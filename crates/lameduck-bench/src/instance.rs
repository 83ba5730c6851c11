//! One server process the harness started: start it, wait until it is ready,
//! SIGTERM it by PID and wait for its exit.

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
        let child = Command::new(&self.launch.program)
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

    /// Kills the process, if it runs, and reaps it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
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
