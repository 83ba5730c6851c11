//! The child's side of an upgrade: the channel to the parent, the handover
//! it carries, and the ready (or failed) report.

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
    /// Started by an upgrade; the channel is open until the report.
    Child {
        parent: u32,
        channel: Option<UnixStream>,
        handover: Option<Result<(String, Vec<u8>), String>>,
    },
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// Set while this process, started by an upgrade, waits for its parent to
/// have named it the main process (systemd `MAINPID=`): until then systemd
/// refuses its notifications, the watchdog pings included.
static AWAITING_MAIN: AtomicBool = AtomicBool::new(false);

/// Whether this process still waits to be named the main process.
pub(crate) fn is_awaiting_main() -> bool {
    // Acquire pairs with the Release store of the thread that hears the
    // parent's acknowledgement.
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
    let fd = std::env::var(UPGRADE_FD_VAR)
        .ok()
        .and_then(|f| f.parse().ok());
    let channel = fd.and_then(|fd| match crate::listen::claim_fd(fd) {
        Ok(owned) => Some(UnixStream::from(owned)),
        Err(err) => {
            tracing::warn!(target: "lameduck::upgrade", error = %err, "{UPGRADE_FD_VAR}: cannot take the channel to the parent");
            None
        }
    });
    let handover = channel.as_ref().map(|c| {
        let _ = c.set_read_timeout(Some(HANDOVER_WAIT));
        protocol::decode(&mut &*c).map_err(|e| e.to_string())
    });
    tracing::info!(target: "lameduck::upgrade", parent, "started by an upgrade");
    AWAITING_MAIN.store(channel.is_some(), Ordering::Release);
    State::Child {
        parent,
        channel,
        handover,
    }
}

/// Claims the channel now if this process was started by an upgrade.
pub(crate) fn init() {
    drop(state());
}

/// Whether this process was started by an upgrade and has not reported yet.
pub(crate) fn is_pending() -> bool {
    matches!(
        &*state(),
        State::Child {
            channel: Some(_),
            ..
        }
    )
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

/// Tells the parent this process is ready; it will drain and stop.
pub(crate) fn report_ready() {
    if let Some(channel) = send(&format!("ready {}\n", std::process::id())) {
        await_main(channel);
    } else {
        AWAITING_MAIN.store(false, Ordering::Release);
    }
    crate::listen::registry::set_told_parent_ready();
}

/// Waits, on a thread of its own, for the parent's `main` line (sent after
/// `MAINPID=`), or for the channel to close: a parent that is gone can no
/// longer be the main process either way.
fn await_main(channel: UnixStream) {
    let _ = channel.set_read_timeout(None);
    let spawned = std::thread::Builder::new()
        .name("lameduck-upgrade-ack".into())
        .spawn(move || {
            let mut line = Vec::new();
            let mut reader = std::io::BufReader::new(&channel).take(protocol::MAX_LINE as u64);
            let _ = std::io::BufRead::read_until(&mut reader, b'\n', &mut line);
            AWAITING_MAIN.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        AWAITING_MAIN.store(false, Ordering::Release);
    }
}

/// Tells the parent this process will not become ready, and why.
pub(crate) fn report_failed(why: &str) {
    let why: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(protocol::MAX_LINE - 16)
        .collect();
    AWAITING_MAIN.store(false, Ordering::Release);
    send(&format!("failed {why}\n"));
}

/// Sends `line` to the parent; returns the channel when it was written.
fn send(line: &str) -> Option<UnixStream> {
    let mut state = state();
    let State::Child {
        channel, parent, ..
    } = &mut *state
    else {
        return None;
    };
    let mut c = channel.take()?;
    // A parent that is gone cannot be told; this process serves anyway.
    if let Err(err) = c.write_all(line.as_bytes()) {
        tracing::warn!(target: "lameduck::upgrade", parent = *parent, error = %err, "cannot report to the parent");
        return None;
    }
    Some(c)
}
