//! The child's side of an upgrade: the channel to the parent, the handover
//! it carries, the ready (or failed) report, and the parent's verdict.
//!
//! A child changes nothing that its parent owns until the parent has
//! committed to it (see [`protocol`]): the driver waits for the verdict in
//! Starting, so that everything keyed on Running — accepting on the shared
//! sockets, the PID file, the control socket's path, systemd — happens only
//! after the commit.

use std::io::Read as _;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::{UpgradeError, UpgradeErrorKind, protocol};
use crate::listen::{UPGRADE_FD_VAR, UPGRADE_PID_VAR};

/// The lameduck-private variable naming the parent, for logs.
pub(crate) const PARENT_PID_VAR: &str = "LAMEDUCK_UPGRADE_PARENT";

/// How long the child waits for the handover frame, which the parent
/// writes right after the spawn: a bound, so that a broken parent cannot
/// hang the child's start.
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum State {
    /// Not started by an upgrade.
    None,
    /// The upgrade variables name this process, but the channel they point
    /// at is not one (see [`claim`]): starting would take over what the
    /// parent owns without its word.
    Broken(String),
    /// Started by an upgrade; the channel is open until the parent is gone.
    Child {
        parent: u32,
        channel: Option<UnixStream>,
        handover: Option<Result<(String, Vec<u8>), String>>,
    },
}

/// The parent's answer to this process's ready report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The parent committed: this process owns the service now.
    Commit,
    /// The parent refused (it gave up waiting, or began shutting down):
    /// stand down, leaving everything as found.
    Abort,
    /// The parent died before it said either: nobody else serves, so this
    /// process takes over.
    ParentGone,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// Set while this process, started by an upgrade, waits for its parent to
/// have named it the main process (systemd `MAINPID=`): until then systemd
/// refuses its notifications, the watchdog pings included, and this
/// process does not upgrade itself.
static AWAITING_MAIN: AtomicBool = AtomicBool::new(false);

/// Set once this process, started by an upgrade, entered Running.
static RAN: AtomicBool = AtomicBool::new(false);

/// Whether this process still waits to be named the main process.
pub(crate) fn is_awaiting_main() -> bool {
    // Acquire pairs with the Release store of the thread that hears the
    // parent's last word.
    AWAITING_MAIN.load(Ordering::Acquire)
}

fn state() -> MutexGuard<'static, State> {
    STATE
        .get_or_init(|| Mutex::new(claim()))
        // Every update is a single assignment: a panic cannot tear it.
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn claim() -> State {
    let me = std::process::id().to_string();
    if std::env::var(UPGRADE_PID_VAR).ok().as_deref() != Some(me.as_str()) {
        return State::None;
    }
    let parent = std::env::var(PARENT_PID_VAR)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let channel = match take_channel(parent) {
        Ok(c) => c,
        Err(why) => {
            tracing::error!(target: "lameduck::upgrade", parent, error = %why, "started by an upgrade, but the channel to the parent is unusable");
            return State::Broken(why);
        }
    };
    let _ = channel.set_read_timeout(Some(HANDOVER_WAIT));
    let handover = protocol::decode(&mut &channel).map_err(|e| e.to_string());
    tracing::info!(target: "lameduck::upgrade", parent, "started by an upgrade");
    AWAITING_MAIN.store(true, Ordering::Release);
    State::Child {
        parent,
        channel: Some(channel),
        handover: Some(handover),
    }
}

/// Takes the descriptor `LAMEDUCK_UPGRADE_FD` names, once it is checked to
/// be what the parent passed: a connected Unix stream socket whose peer is
/// the parent, outside the `LISTEN_FDS` range. A number that names
/// anything else — a listening socket passed under `LISTEN_FDS`, or a
/// socket this process opened since — is left alone: claiming it would
/// close what another part of the process owns.
fn take_channel(parent: u32) -> Result<UnixStream, String> {
    use nix::sys::socket::{AddressFamily, SockType, SockaddrLike, SockaddrStorage};
    use nix::sys::socket::{getsockname, getsockopt, sockopt};

    let raw = std::env::var(UPGRADE_FD_VAR).map_err(|_| format!("{UPGRADE_FD_VAR} is not set"))?;
    let fd: std::os::fd::RawFd = raw
        .parse()
        .ok()
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| format!("{UPGRADE_FD_VAR}={raw:?} is not a descriptor number"))?;
    let listen_fds = crate::listen::inherited_range();
    if listen_fds.contains(&fd) {
        return Err(format!(
            "{UPGRADE_FD_VAR}: fd {fd} is also one of the LISTEN_FDS sockets ({}..={})",
            listen_fds.start(),
            listen_fds.end()
        ));
    }
    let what = |why: &str| format!("{UPGRADE_FD_VAR}: fd {fd} {why}");
    crate::listen::inspect_fd(fd, |fd| {
        let family = getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .ok()
            .and_then(|a| a.family());
        if family != Some(AddressFamily::Unix)
            || getsockopt(&fd, sockopt::SockType).ok() != Some(SockType::Stream)
        {
            return Err(what("is not a Unix stream socket"));
        }
        if getsockopt(&fd, sockopt::AcceptConn).unwrap_or(false) {
            return Err(what("is a listening socket, not the channel to the parent"));
        }
        // A socket pair's peer credentials are those of the process that
        // made it: the parent. Anything else is not our channel.
        let cred = getsockopt(&fd, sockopt::PeerCredentials)
            .map_err(|e| what(&format!("has no peer: {e}")))?;
        if parent != 0 && u32::try_from(cred.pid()).ok() != Some(parent) {
            return Err(what(&format!(
                "is connected to pid {}, not to the parent (pid {parent})",
                cred.pid()
            )));
        }
        Ok(())
    })
    .map_err(|e| what(&format!("is not open: {e}")))??;
    let owned = crate::listen::claim_fd(fd).map_err(|e| what(&format!("cannot be taken: {e}")))?;
    Ok(UnixStream::from(owned))
}

/// Claims the channel now if this process was started by an upgrade: call
/// before anything opens descriptors. Idempotent.
pub(crate) fn init() {
    drop(state());
}

/// Why this process, named by the upgrade variables, cannot take part in
/// the upgrade (an unusable channel): it must not start.
pub(crate) fn init_error() -> Option<String> {
    match &*state() {
        State::Broken(why) => Some(why.clone()),
        _ => None,
    }
}

/// Whether this process was started by an upgrade and has not entered
/// Running yet: until then its parent speaks for the service.
pub(crate) fn is_pending() -> bool {
    matches!(&*state(), State::Child { .. }) && !RAN.load(Ordering::Acquire)
}

/// The pid of the process that started this one by an upgrade.
pub fn parent_pid() -> Option<u32> {
    match &*state() {
        State::Child { parent, .. } if *parent != 0 => Some(*parent),
        _ => None,
    }
}

/// The bytes the old process handed over with
/// [`Upgrade::handover`](super::Upgrade::handover), if this process was
/// started by an upgrade and the old one handed over a `kind`. Taken once:
/// a second call returns `Ok(None)`.
///
/// # Errors
///
/// [`UpgradeErrorKind::Handover`] when the old process handed over another
/// kind (the formats differ: better to start empty than to misread), or
/// the frame was malformed.
pub fn take_handover(kind: &str) -> Result<Option<Vec<u8>>, UpgradeError> {
    let mut state = state();
    let State::Child { handover, .. } = &mut *state else {
        return Ok(None);
    };
    match handover.take() {
        None => Ok(None),
        Some(Err(e)) => Err(UpgradeError::new(
            UpgradeErrorKind::Handover,
            format!("cannot read the handover: {e}"),
        )),
        Some(Ok((k, _))) if k.is_empty() => Ok(None),
        Some(Ok((k, data))) if k == kind => Ok(Some(data)),
        Some(Ok((k, _))) => Err(UpgradeError::new(
            UpgradeErrorKind::Handover,
            format!("the old process handed over {k:?}, this one expects {kind:?}"),
        )),
    }
}

/// Tells the parent this process is ready, and hands its verdict to
/// `on_verdict` (on a thread of its own) once the parent has said it, or
/// has gone. After a commit, `on_verdict` hears `Abort` again if the
/// parent takes the service back before the handover is final. Nothing to
/// do when this process was not started by an upgrade: `false`.
pub(crate) fn report_ready(on_verdict: impl Fn(Verdict) + Send + 'static) -> bool {
    let (channel, parent) = {
        let mut state = state();
        let State::Child {
            channel, parent, ..
        } = &mut *state
        else {
            return false;
        };
        let Some(c) = channel.as_ref().and_then(|c| c.try_clone().ok()) else {
            return false;
        };
        (c, *parent)
    };
    let line = format!("ready {}\n", std::process::id());
    let written = (&channel).write_all(line.as_bytes());
    let spawned = std::thread::Builder::new()
        .name("lameduck-upgrade-verdict".into())
        .spawn(move || {
            let verdict = match written {
                Ok(()) => read_verdict(&channel, parent),
                // The parent closed its end: it gave up on this process,
                // or it is gone.
                Err(_) => closed(parent),
            };
            on_verdict(verdict);
            match verdict {
                // The last line is `main`, or the end of the channel: either
                // way nobody else is the main process any more. Or `abort`:
                // the parent took the service back, and the sockets are its
                // again.
                Verdict::Commit => {
                    if read_line(&channel).as_deref() == Some(protocol::ABORT) {
                        crate::listen::owner::set(crate::listen::owner::Handoff::Committed);
                        on_verdict(Verdict::Abort);
                    } else {
                        AWAITING_MAIN.store(false, Ordering::Release);
                    }
                }
                Verdict::ParentGone => AWAITING_MAIN.store(false, Ordering::Release),
                // Refused: never the main process, never a word to systemd.
                Verdict::Abort => {}
            }
        });
    if let Err(err) = spawned {
        tracing::error!(target: "lameduck::upgrade", error = %err, "cannot wait for the parent's verdict");
        return false;
    }
    true
}

fn read_verdict(channel: &UnixStream, parent: u32) -> Verdict {
    let _ = channel.set_read_timeout(None);
    match read_line(channel) {
        Some(line) if line == protocol::COMMIT => Verdict::Commit,
        Some(line) if line == protocol::ABORT => Verdict::Abort,
        Some(line) => {
            tracing::warn!(target: "lameduck::upgrade", parent, line = %String::from_utf8_lossy(&line).trim_end(), "the parent sent garbage instead of its verdict; standing down");
            Verdict::Abort
        }
        None => closed(parent),
    }
}

/// The verdict of a channel the parent closed without a word: a refusal
/// if the parent lives (it let go of this process), else nobody is left.
fn closed(parent: u32) -> Verdict {
    if parent != 0 && nix::unistd::getppid().as_raw() as u32 == parent {
        Verdict::Abort
    } else {
        Verdict::ParentGone
    }
}

/// One line, newline included; `None` at the end of the channel.
fn read_line(channel: &UnixStream) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut reader = std::io::BufReader::new(channel).take(protocol::MAX_LINE as u64);
    match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
        Ok(_) if line.last() == Some(&b'\n') => Some(line),
        _ => None,
    }
}

/// Tells the parent this process has taken over and entered Running.
pub(crate) fn report_running() {
    RAN.store(true, Ordering::Release);
    if let State::Child {
        channel: Some(c),
        parent,
        ..
    } = &*state()
    {
        // The parent watches this process until the handover is final; if
        // it is gone, nobody needs the word.
        if let Err(err) = (&*c).write_all(protocol::RUNNING) {
            tracing::debug!(target: "lameduck::upgrade", parent = *parent, error = %err, "cannot tell the parent this process runs");
        }
    }
}

/// Tells the parent this process, which runs but is not the main process
/// yet, began shutting down: the parent takes the service back instead of
/// handing it over to a process that is leaving. Nothing to do once the
/// handover is final, or for a process that never ran: `false`.
pub(crate) fn report_draining() -> bool {
    if !RAN.load(Ordering::Acquire) || !is_awaiting_main() {
        return false;
    }
    if let State::Child {
        channel: Some(c),
        parent,
        ..
    } = &*state()
    {
        tracing::info!(target: "lameduck::upgrade", parent = *parent, "shutting down before the handover is final: telling the old process, which takes the service back unless it is shutting down too");
        if let Err(err) = (&*c).write_all(protocol::DRAINING) {
            tracing::debug!(target: "lameduck::upgrade", parent = *parent, error = %err, "cannot tell the parent this process is shutting down");
        }
        return true;
    }
    false
}

/// Tells the parent this process will not become ready, and why.
pub(crate) fn report_failed(why: &str) {
    let why: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(protocol::MAX_LINE - 16)
        .collect();
    let mut state = state();
    let State::Child {
        channel, parent, ..
    } = &mut *state
    else {
        return;
    };
    // Closing the channel afterwards tells the parent the rest.
    if let Some(mut c) = channel.take()
        && let Err(err) = c.write_all(format!("failed {why}\n").as_bytes())
    {
        tracing::debug!(target: "lameduck::upgrade", parent = *parent, error = %err, "cannot report the failure to the parent");
    }
}
