//! The parent's side of an upgrade: start the new process with the sockets
//! and the channel, hand over, wait for its report; stop it on failure.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Report};
use super::{UpgradeError, UpgradeErrorKind, child::PARENT_PID_VAR};
use crate::listen::{Handoff, UPGRADE_FD_VAR, UPGRADE_PID_VAR};

/// How long a failed child has to exit after `SIGTERM` before `SIGKILL`.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// What an attempt needs, gathered by the driver.
pub(crate) struct Plan {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) sockets: Vec<(String, OwnedFd)>,
    pub(crate) handover: Option<(String, Vec<u8>)>,
    pub(crate) timeout: Duration,
}

/// Starts the new process and waits until it is ready: `Ok(pid)`. On any
/// failure, the process (if it was started) is stopped and reaped first.
pub(crate) async fn attempt(plan: Plan, cancel: CancellationToken) -> Result<u32, UpgradeError> {
    let spawn_error = |what: &str, e: std::io::Error| {
        UpgradeError::new(
            UpgradeErrorKind::Spawn,
            format!("cannot start {}: {what}: {e}", plan.program.display()),
        )
    };
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| spawn_error("socket pair", e))?;
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.args(&plan.args)
        .env(PARENT_PID_VAR, std::process::id().to_string());
    let mut handoff = Handoff::new();
    for (name, fd) in &plan.sockets {
        handoff = handoff
            .listener(name, fd)
            .map_err(|e| spawn_error("socket", e))?;
    }
    handoff = handoff
        .fd_var(UPGRADE_FD_VAR, &theirs)
        .map_err(|e| spawn_error("channel", e))?
        .pid_var(UPGRADE_PID_VAR);
    // systemd checks WATCHDOG_PID against the sender: the new process will
    // be the main one, and must ping as itself.
    if std::env::var_os("WATCHDOG_PID").is_some() {
        handoff = handoff.pid_var("WATCHDOG_PID");
    }
    handoff
        .apply(&mut cmd)
        .map_err(|e| spawn_error("command", e))?;
    let mut cmd = tokio::process::Command::from(cmd);
    let spawned = cmd.spawn();
    // The command holds this process's extra copies of the descriptors.
    drop(cmd);
    drop(theirs);
    let mut child = spawned.map_err(|e| spawn_error("spawn", e))?;
    let pid = child.id().unwrap_or(0);
    tracing::info!(target: "lameduck::upgrade", pid, program = %plan.program.display(), sockets = plan.sockets.len(), "new process started; waiting until it is ready");

    let outcome = {
        let wait = talk(ours, plan.handover.as_ref());
        tokio::select! {
            () = cancel.cancelled() => Err(UpgradeError::new(UpgradeErrorKind::Abandoned, "the app began shutting down")),
            r = tokio::time::timeout(plan.timeout, wait) => match r {
                Err(_) => Err(UpgradeError::new(
                    UpgradeErrorKind::Timeout,
                    format!("the new process (pid {pid}) was not ready within {:?}", plan.timeout),
                )),
                Ok(Ok(Report::Ready(p))) if p == pid => Ok(pid),
                Ok(Ok(Report::Ready(p))) => Err(UpgradeError::new(
                    UpgradeErrorKind::Exited,
                    format!("the new process (pid {pid}) reported ready as pid {p}"),
                )),
                Ok(Ok(Report::Failed(why))) => Err(UpgradeError::new(
                    UpgradeErrorKind::Exited,
                    format!("the new process (pid {pid}) failed to start: {why}"),
                )),
                Ok(Err(why)) => Err(exited(&mut child, pid, &why).await),
            },
        }
    };
    if outcome.is_err() {
        ack_slot().take();
        stop(&mut child, pid).await;
    }
    outcome
}

/// Writes the handover and reads the child's one line. `Err` with what
/// went wrong when the channel closes (the child exited) or carries
/// garbage.
async fn talk(
    ours: std::os::unix::net::UnixStream,
    handover: Option<&(String, Vec<u8>)>,
) -> Result<Report, String> {
    let frame = match handover {
        Some((kind, data)) => protocol::encode(kind, data),
        None => protocol::encode("", &[]),
    };
    ours.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stream = tokio::net::UnixStream::from_std(ours).map_err(|e| e.to_string())?;
    let (rd, mut wr) = stream.into_split();
    // Write and read at once: a large handover fills the socket buffer
    // until the child reads it, and a child that fails early reports
    // without reading.
    let write = async move {
        let r = wr.write_all(&frame).await;
        (r, wr)
    };
    let read = async move {
        let mut line = Vec::new();
        let mut rd = BufReader::new(rd).take(protocol::MAX_LINE as u64);
        rd.read_until(b'\n', &mut line)
            .await
            .map_err(|e| e.to_string())?;
        if line.last() != Some(&b'\n') {
            return Err(if line.is_empty() {
                "closed the channel".into()
            } else {
                "sent a line without an end".into()
            });
        }
        line.pop();
        protocol::parse_report(&line)
            .ok_or_else(|| format!("sent garbage: {:?}", String::from_utf8_lossy(&line)))
    };
    let ((_, wr), report) = tokio::join!(write, read);
    if let Ok(Report::Ready(pid)) = &report {
        // Kept open until `acknowledge`: the child reads its end until our
        // `main` line or until it closes.
        *ack_slot() = Some((*pid, wr));
    }
    report
}

type AckSlot = Option<(u32, tokio::net::unix::OwnedWriteHalf)>;

fn ack_slot() -> std::sync::MutexGuard<'static, AckSlot> {
    static SLOT: std::sync::Mutex<AckSlot> = std::sync::Mutex::new(None);
    // A single assignment at a time: a panic cannot tear it.
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tells the new process `pid` that it is now the main one (systemd has
/// been sent `MAINPID=`), so that it may notify systemd itself. Any other
/// outcome closes the channel, which the child takes the same way.
pub(crate) fn acknowledge(pid: u32) {
    if let Some((p, wr)) = ack_slot().take() {
        if p == pid {
            // Five bytes into an empty socket buffer: never blocks.
            if let Err(err) = wr.try_write(b"main\n") {
                tracing::debug!(target: "lameduck::upgrade", pid, error = %err, "cannot tell the new process it is the main one; it will know when this process exits");
            }
        }
    }
}

/// The error for a child whose channel closed: usually it exited, and its
/// status says how.
async fn exited(child: &mut Child, pid: u32, why: &str) -> UpgradeError {
    // The channel closes when the process exits; its status follows at
    // once. A live process that closed the channel is stopped by the caller.
    match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => UpgradeError::new(
            UpgradeErrorKind::Exited,
            format!(
                "the new process (pid {pid}) exited before it was ready: {}",
                describe(status)
            ),
        ),
        _ => UpgradeError::new(
            UpgradeErrorKind::Exited,
            format!("the new process (pid {pid}) {why} before it was ready"),
        ),
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map(|s| s.as_str())
                .unwrap_or("unknown signal");
            format!(
                "killed by signal {sig} ({name}){}",
                if status.core_dumped() {
                    ", core dumped"
                } else {
                    ""
                }
            )
        }
        _ => status.to_string(),
    }
}

/// Stops a child that will not take over: `SIGTERM` by its pid, then
/// `SIGKILL` if it is still there after a grace; reaped either way.
async fn stop(child: &mut Child, pid: u32) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(target: "lameduck::upgrade", pid, "the new process ignored SIGTERM; killing it");
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    tracing::info!(target: "lameduck::upgrade", pid, "stopped the new process");
}
