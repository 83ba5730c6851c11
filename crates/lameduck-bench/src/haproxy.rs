//! A real HAProxy in front of two instances: its configuration, the process
//! (foreground, its own config and stats socket in a scratch directory,
//! killed by PID at the end) and what its stats socket says.

mod config;
mod stats;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

pub use config::{BACKEND, FRONTEND};

use crate::balancer::Pool;
pub use stats::ServerStat;

/// How often the stats socket is polled while waiting for a server state.
const POLL: Duration = Duration::from_millis(20);

/// A running HAProxy.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    cfg: PathBuf,
    socket: PathBuf,
    log: PathBuf,
}

impl Haproxy {
    /// The first line of `haproxy -v`, or why there is none.
    ///
    /// # Errors
    ///
    /// When `program` cannot be run: the message says how to install it.
    pub async fn version(program: &Path) -> anyhow::Result<String> {
        let out = Command::new(program)
            .arg("-v")
            .output()
            .await
            .with_context(|| {
                format!(
                    "running {} -v: install HAProxy (`apt-get install haproxy`; \
                     `scripts/bench rolling` does it)",
                    program.display()
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"
        let line = text.lines().next().unwrap_or_default();
        let version = line.split(" - ").next().unwrap_or(line);
        Ok(version
            .replacen("HAProxy version", "HAProxy", 1)
            .trim()
            .to_owned())
    }

    /// Writes the configuration of `pool` to `dir`, checks it with `haproxy -c`, and starts
    /// HAProxy in the foreground (`-db`). It is killed if this value is
    /// dropped.
    ///
    /// # Errors
    ///
    /// When the configuration is refused or HAProxy does not start.
    pub async fn start(program: &Path, pool: &Pool, dir: &Path) -> anyhow::Result<Self> {
        let cfg = dir.join("haproxy.cfg");
        let socket = dir.join("admin.sock");
        let log = dir.join("haproxy.log");
        std::fs::write(&cfg, config::render(pool, &socket))
            .with_context(|| format!("writing {}", cfg.display()))?;
        let check = Command::new(program)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .await
            .context("running haproxy -c")?;
        if !check.status.success() {
            bail!(
                "haproxy refused {}:\n{}{}",
                cfg.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        Self::launch(program, cfg, socket, log, &[]).await
    }

    /// Starts `haproxy -db -f CFG EXTRA…` and waits until its stats socket
    /// answers with its own PID (during a reload, the old process answers
    /// until the new one has taken the socket's path).
    async fn launch(
        program: &Path,
        cfg: PathBuf,
        socket: PathBuf,
        log: PathBuf,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting haproxy")?;
        let mut haproxy = Haproxy {
            child,
            cfg,
            socket,
            log,
        };
        let pid = haproxy.child.id().context("haproxy was already reaped")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while haproxy.answering_pid().await != Some(pid) {
            if let Some(status) = haproxy.child.try_wait()? {
                bail!("haproxy exited with {status}:\n{}", haproxy.log_tail());
            }
            if Instant::now() >= deadline {
                bail!("haproxy's stats socket did not answer within 10s");
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(haproxy)
    }

    /// The PID of the process that answers on the stats socket.
    async fn answering_pid(&self) -> Option<u32> {
        let info = stats::query(&self.socket, "show info").await.ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// Reloads HAProxy the documented way: a new process on the same
    /// configuration with `-sf OLD` (and with `-x SOCKET`, `seamless`, which
    /// takes the listening sockets from the old process instead of binding
    /// new ones), which tells the old one to stop listening and finish its
    /// connections. Returns the new process once the old one has exited
    /// (SIGKILLed after `grace`).
    ///
    /// # Errors
    ///
    /// When the new process does not start; the old one then goes on.
    pub async fn reload(
        mut self,
        program: &Path,
        seamless: bool,
        grace: Duration,
    ) -> anyhow::Result<Self> {
        let old = self.child.id().context("haproxy was already reaped")?;
        let mut extra = Vec::new();
        if seamless {
            extra.extend(["-x".to_owned(), self.socket.display().to_string()]);
        }
        extra.extend(["-sf".to_owned(), old.to_string()]);
        let new = Self::launch(
            program,
            self.cfg.clone(),
            self.socket.clone(),
            self.log.clone(),
            &extra,
        )
        .await?;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        Ok(new)
    }

    /// Every row of `show stat`: one per server, plus the frontend and the
    /// backend.
    ///
    /// # Errors
    ///
    /// When the socket does not answer.
    pub async fn stats(&self) -> anyhow::Result<Vec<ServerStat>> {
        let text = stats::query(&self.socket, "show stat").await?;
        stats::parse(&text)
    }

    /// One row of `show stat`.
    ///
    /// # Errors
    ///
    /// When the socket does not answer or has no such row.
    pub async fn stat(&self, proxy: &str, server: &str) -> anyhow::Result<ServerStat> {
        self.stats()
            .await?
            .into_iter()
            .find(|s| s.proxy == proxy && s.server == server)
            .with_context(|| format!("haproxy has no {proxy}/{server}"))
    }

    /// Waits until HAProxy has `server` fully UP after a successful check,
    /// for at most `timeout`.
    ///
    /// # Errors
    ///
    /// When the time runs out (the message has the last state seen).
    pub async fn wait_up(&self, server: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let stat = self.stat(BACKEND, server).await?;
            if stat.is_up() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "haproxy did not mark {server} UP within {timeout:?} (status {:?}, last check {:?})",
                    stat.status,
                    stat.check_status
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills HAProxy by PID and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    fn log_tail(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
