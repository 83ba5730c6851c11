//! nginx as a daemon, for its binary upgrade: it must fork into the
//! background (in the foreground it ignores `USR2` while its parent lives),
//! so it is known by the PID in its pid file, signalled and waited for by
//! that PID.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Command;

use crate::balancer::{Pool, nginx_render};
use crate::instance::{is_gone, stat_fields};
use crate::kind::which;

/// Bound on each step of a start, an upgrade or a stop.
const STEP: Duration = Duration::from_secs(10);

/// How often the pid file and `/proc` are looked at.
const POLL: Duration = Duration::from_millis(10);

/// A daemonized nginx master and its workers.
#[derive(Debug)]
pub(super) struct Daemon {
    pid_file: PathBuf,
    error_log: PathBuf,
    master: Option<i32>,
}

impl Daemon {
    /// Writes the configuration, starts nginx and waits until the master
    /// has written its pid file and has a worker.
    pub(super) async fn start(program: &Path, pool: &Pool, dir: &Path) -> anyhow::Result<Self> {
        let conf = dir.join("nginx.conf");
        let error_log = dir.join("nginx-error.log");
        std::fs::write(&conf, nginx_render(pool, dir, true))?;
        // USR2 re-executes the master's argv[0] as it is, without a search
        // of PATH: a bare `nginx` would not be found.
        let program = which(&program.to_string_lossy()).with_context(|| {
            format!(
                "{} is not an executable file here or on PATH: install nginx (`apt-get install nginx`)",
                program.display()
            )
        })?;
        let out = Command::new(&program)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(&error_log)
            .arg("-c")
            .arg(&conf)
            .output()
            .await
            .context("starting nginx")?;
        if !out.status.success() {
            bail!(
                "nginx did not start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut daemon = Daemon {
            pid_file: dir.join("nginx.pid"),
            error_log,
            master: None,
        };
        let master = daemon.wait_new_master(None).await?;
        daemon.master = Some(master);
        Ok(daemon)
    }

    /// The binary upgrade, step by step as nginx's documentation gives it:
    /// `USR2` to the old master starts a new master from the binary on disk,
    /// on the inherited listening sockets; once it has workers, `WINCH`
    /// tells the old workers to finish and exit; once they are gone, `QUIT`
    /// ends the old master.
    pub(super) async fn upgrade(&mut self) -> anyhow::Result<()> {
        let old = self.master.context("nginx is not running")?;
        signal(old, Signal::SIGUSR2)?;
        let new = self.wait_new_master(Some(old)).await?;
        self.master = Some(new);
        let retired = async {
            signal(old, Signal::SIGWINCH)?;
            wait_for("the old workers to exit", || {
                old_workers(&children(old), new).is_empty()
            })
            .await?;
            signal(old, Signal::SIGQUIT)?;
            wait_for("the old master to exit", || is_gone(old)).await
        }
        .await;
        if retired.is_err() {
            // Only the new master is stopped at the end: the old one, and
            // the workers it still has, must not outlive the run.
            let _ = signal(old, Signal::SIGTERM);
        }
        retired
    }

    /// Waits until the pid file names a live master other than `old`, with a
    /// worker.
    async fn wait_new_master(&self, old: Option<i32>) -> anyhow::Result<i32> {
        let mut found = None;
        wait_for("a new nginx master with workers", || {
            found = std::fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
                .filter(|pid| Some(*pid) != old && !is_gone(*pid) && !children(*pid).is_empty());
            found.is_some()
        })
        .await
        .map_err(|err| {
            anyhow::anyhow!(
                "{err:#}\n{}",
                std::fs::read_to_string(&self.error_log).unwrap_or_default()
            )
        })?;
        found.context("no master")
    }

    /// `SIGTERM` to the master (it stops its workers), `SIGKILL` to it and
    /// to what is left of its workers if it is not gone in time.
    pub(super) async fn stop(&mut self) {
        if let Some(master) = self.master.take() {
            let workers = children(master);
            let _ = signal(master, Signal::SIGTERM);
            if wait_for("nginx to stop", || is_gone(master)).await.is_err() {
                for pid in workers.into_iter().chain([master]) {
                    let _ = signal(pid, Signal::SIGKILL);
                }
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(master) = self.master {
            let _ = signal(master, Signal::SIGTERM);
        }
    }
}

fn signal(pid: i32, signal: Signal) -> anyhow::Result<()> {
    kill(Pid::from_raw(pid), signal).with_context(|| format!("sending {signal} to nginx {pid}"))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP;
    while !done() {
        if Instant::now() >= deadline {
            bail!("waited {STEP:?} for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// The old master's workers among its `children`: the new master is one of
/// them too (the old master forked it to execute the binary), and lives on.
fn old_workers(children: &[i32], new_master: i32) -> Vec<i32> {
    children
        .iter()
        .copied()
        .filter(|pid| *pid != new_master)
        .collect()
}

/// The live processes whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| stat_fields(&stat).map(|(s, ppid)| s != "Z" && ppid == pid))
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_master_is_no_old_worker_left_to_wait_for() {
        assert_eq!(old_workers(&[10, 11, 12], 12), vec![10, 11]);
        assert!(old_workers(&[12], 12).is_empty());
        assert!(old_workers(&[], 12).is_empty());
    }

    #[test]
    fn this_process_is_a_child_of_its_parent() {
        let me = i32::try_from(std::process::id()).unwrap();
        let parent = i32::try_from(std::os::unix::process::parent_id()).unwrap();
        assert!(children(parent).contains(&me));
    }
}
