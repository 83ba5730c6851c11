//! The parent's side of an upgrade: start the new process with the sockets
//! and the channel, hand over, wait for its report; stop it on failure.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use super::family::Family;
use super::protocol::{self, Report};
use super::{Step, UpgradeError, UpgradeErrorKind, child::PARENT_PID_VAR};
use crate::listen::{Handoff, UPGRADE_FD_VAR, UPGRADE_PID_VAR, files};

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

/// A new process that reported ready, waiting for the parent's verdict:
/// [`commit`](Self::commit) or [`refuse`](Self::refuse). It changes
/// nothing the parent owns until it reads `commit`.
pub(crate) struct Candidate {
    pub(crate) pid: u32,
    pub(crate) child: Child,
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl fmt::Debug for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidate")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// Refuses it (`abort`), then stops and reaps it.
    pub(crate) async fn refuse(mut self: Box<Self>) {
        let _ = self.wr.write_all(protocol::ABORT).await;
        // The channel closes as a whole before the stop: the child reads
        // the refusal, then the end.
        let Candidate {
            pid,
            mut child,
            rd,
            wr,
        } = *self;
        drop((rd, wr));
        stop(&mut child, pid).await;
    }

    /// Commits to it: from here on it owns the service.
    ///
    /// # Errors
    ///
    /// When the word cannot be written: the process is gone, or closed its
    /// end. (It may die after reading it, too.)
    pub(crate) fn try_commit(&mut self) -> io::Result<()> {
        // Seven bytes into a socket buffer the child has emptied (it read
        // the handover before reporting ready): one write, never blocking.
        match self.wr.try_write(protocol::COMMIT) {
            Ok(n) if n == protocol::COMMIT.len() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the commit was cut short",
            )),
            Err(e) => Err(e),
        }
    }

    /// Takes the service back from it after the commit (`abort`: its
    /// sockets are the old process's again, so its close leaves them
    /// alone, and it shuts down gracefully), then waits for it to exit
    /// within `bound`, and kills it past that. A process the word cannot
    /// reach gets `SIGTERM` instead. Never a `SIGTERM` after the word: to a
    /// process that is already shutting down, it would be a second signal,
    /// which cuts its shutdown short.
    pub(crate) async fn take_back(&mut self, bound: Duration) -> Step {
        let pid = self.pid;
        if self.wr.write_all(protocol::ABORT).await.is_err()
            && let Ok(raw) = i32::try_from(pid)
            && matches!(self.child.try_wait(), Ok(None))
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(Ok(status)) => {
                // It had its whole shutdown to stop what it started; what
                // is left of it now is stopped, as after any refusal.
                let mut family = Family::of(pid, true);
                family.terminate();
                family.finish(std::time::Instant::now() + TERM_GRACE).await;
                Step::Stopped {
                    pid,
                    how: format!("exited: {}", describe(status)),
                    killed: false,
                }
            }
            Ok(Err(e)) => Step::Stopped {
                pid,
                how: format!("cannot be waited for: {e}"),
                killed: false,
            },
            Err(_) => {
                let bound = crate::fmt::Seconds(bound);
                tracing::warn!(target: "lameduck::upgrade", new_pid = pid, "the new process, told to stop, has not exited within {bound}; killing it");
                let mut family = Family::of(pid, false);
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                family.finish(std::time::Instant::now()).await;
                Step::Stopped {
                    pid,
                    how: format!(
                        "did not exit within {bound} of being told to stop; killed (SIGKILL)"
                    ),
                    killed: true,
                }
            }
        }
    }

    /// The next line from the new process, without its newline.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a line cut short is lost. After the commit the new
    /// process says one line, and anything else ends the watch.
    pub(crate) async fn read_line(&mut self) -> Result<Vec<u8>, String> {
        read_line(&mut self.rd).await
    }

    /// Tells it the handover is final: it is systemd's main process now.
    pub(crate) fn make_main(&mut self) {
        // Five bytes into a socket buffer the child reads: never blocks for
        // long, and a failure only means the child is gone, which it
        // learns... by being gone.
        if let Err(err) = self.wr.try_write(protocol::MAIN) {
            tracing::debug!(target: "lameduck::upgrade", new_pid = self.pid, error = %err, "cannot tell the new process it is the main one; it will know when this process exits");
        }
    }
}

/// Starts the new process and waits until it is ready: the [`Candidate`].
/// On any failure, the process (if it was started) is refused, stopped and
/// reaped first.
pub(crate) async fn attempt(
    plan: Plan,
    cancel: CancellationToken,
) -> Result<Candidate, UpgradeError> {
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
        .env(PARENT_PID_VAR, std::process::id().to_string())
        .env(files::FILES_VAR, files::names());
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
    tracing::info!(target: "lameduck::upgrade", new_pid = pid, program = %plan.program.display(), sockets = plan.sockets.len(), "new process started; waiting until it is ready");

    let (rd, mut wr) = match channel(ours) {
        Ok(halves) => halves,
        Err(e) => {
            stop(&mut child, pid).await;
            return Err(spawn_error("channel", e));
        }
    };
    let mut rd = BufReader::new(rd);
    // `Err(why)`: the channel closed, or carried garbage.
    let heard: Result<Result<(), UpgradeError>, String> = {
        let wait = talk(&mut rd, &mut wr, plan.handover.as_ref());
        tokio::select! {
            () = cancel.cancelled() => Ok(Err(UpgradeError::new(UpgradeErrorKind::Abandoned, "the app began shutting down"))),
            // Its exit ends the wait even while the channel stays open: a
            // wrapper script's children inherit the channel, and the
            // process that exited is the only one that could have reported.
            status = child.wait() => Ok(Err(match status {
                Ok(status) => exited_with(pid, status),
                Err(e) => UpgradeError::new(
                    UpgradeErrorKind::Exited,
                    format!("the new process (pid {pid}) cannot be waited for: {e}"),
                ),
            })),
            r = tokio::time::timeout(plan.timeout, wait) => match r {
                Err(_) => Ok(Err(UpgradeError::new(
                    UpgradeErrorKind::Timeout,
                    format!("the new process (pid {pid}) was not ready within {:?}", plan.timeout),
                ))),
                Ok(Ok(Report::Ready(p))) if p == pid => Ok(Ok(())),
                Ok(Ok(Report::Ready(p))) => Ok(Err(UpgradeError::new(
                    UpgradeErrorKind::Exited,
                    format!("the new process (pid {pid}) reported ready as pid {p}"),
                ))),
                Ok(Ok(Report::Failed(why))) => Ok(Err(UpgradeError::new(
                    UpgradeErrorKind::Exited,
                    format!("the new process (pid {pid}) failed to start: {why}"),
                ))),
                Ok(Err(why)) => Err(why),
            },
        }
    };
    let outcome = match heard {
        Ok(outcome) => outcome,
        Err(why) => Err(exited(&mut child, pid, &why).await),
    };
    match outcome {
        Ok(()) => Ok(Candidate { pid, child, rd, wr }),
        Err(e) => {
            // Said before anything else, so that a ready report that comes
            // now, too late, meets a refusal: the child stands down.
            let _ = wr.try_write(protocol::ABORT);
            drop(wr);
            tracing::warn!(target: "lameduck::upgrade", new_pid = pid, error = %e, "giving up on the new process; stopping it");
            stop(&mut child, pid).await;
            Err(e.with_pid(pid))
        }
    }
}

fn channel(ours: std::os::unix::net::UnixStream) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
    ours.set_nonblocking(true)?;
    Ok(tokio::net::UnixStream::from_std(ours)?.into_split())
}

/// Writes the handover and reads the child's one line. `Err` with what
/// went wrong when the channel closes (the child exited) or carries
/// garbage.
///
/// # Cancel safety
///
/// Not cancel safe: dropped at the timeout, the channel is then refused
/// and closed as a whole.
async fn talk(
    rd: &mut BufReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    handover: Option<&(String, Vec<u8>)>,
) -> Result<Report, String> {
    let frame = match handover {
        Some((kind, data)) => protocol::encode(kind, data),
        None => protocol::encode("", &[]),
    };
    // Write and read at once: a large handover fills the socket buffer
    // until the child reads it, and a child that fails early reports
    // without reading.
    let write = wr.write_all(&frame);
    let read = async move {
        let line = read_line(rd).await?;
        protocol::parse_report(&line)
            .ok_or_else(|| format!("sent garbage: {:?}", String::from_utf8_lossy(&line)))
    };
    let (_, report) = tokio::join!(write, read);
    report
}

/// One line from the child, without its newline. `Err` when the channel
/// closes first or the line is too long.
pub(crate) async fn read_line(rd: &mut BufReader<OwnedReadHalf>) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut limited = (&mut *rd).take(protocol::MAX_LINE as u64);
    limited
        .read_until(b'\n', &mut line)
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
    Ok(line)
}

/// The error for a child whose channel closed: usually it exited, and its
/// status says how.
async fn exited(child: &mut Child, pid: u32, why: &str) -> UpgradeError {
    // The channel closes when the process exits; its status follows at
    // once. A live process that closed the channel is stopped by the caller.
    match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => exited_with(pid, status),
        _ => UpgradeError::new(
            UpgradeErrorKind::Exited,
            format!("the new process (pid {pid}) {why} before it was ready"),
        ),
    }
}

fn exited_with(pid: u32, status: ExitStatus) -> UpgradeError {
    UpgradeError::new(
        UpgradeErrorKind::Exited,
        format!(
            "the new process (pid {pid}) exited before it was ready: {}",
            describe(status)
        ),
    )
}

pub(crate) fn describe(status: ExitStatus) -> String {
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

/// Stops a child that will not take over, and everything it started (its
/// [`Family`]): `SIGTERM` to each, by pid, then `SIGKILL` to what is still
/// there after a grace; the child is reaped either way. A child that has
/// already exited leaves only its family to stop.
pub(crate) async fn stop(child: &mut Child, pid: u32) {
    let deadline = std::time::Instant::now() + TERM_GRACE;
    // Looked for before the child is signalled: once it is gone, what it
    // started leaves its tree.
    let running = matches!(child.try_wait(), Ok(None));
    let mut family = Family::of(pid, !running);
    if !running && family.len() == 0 {
        return;
    }
    // Everything at once, as systemd stops a unit's control group: a
    // wrapper script that dies of its `SIGTERM` must not leave a server
    // that never heard one.
    if running && let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let started = family.len();
    family.terminate();
    if running
        && tokio::time::timeout_at(deadline.into(), child.wait())
            .await
            .is_err()
    {
        tracing::warn!(target: "lameduck::upgrade", new_pid = pid, "the new process did not exit within {} of SIGTERM; killing it", crate::fmt::Seconds(TERM_GRACE));
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let killed = family.finish(deadline).await;
    if started > 0 {
        tracing::info!(target: "lameduck::upgrade", new_pid = pid, processes = started, killed, "stopped the processes the new process started");
    }
    tracing::info!(target: "lameduck::upgrade", new_pid = pid, "stopped the new process");
}
