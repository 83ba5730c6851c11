//! The listening sockets an upgrade hands to the new process.
//!
//! Process-wide, because sockets are: every listener obtained through
//! [`Listeners`](super::Listeners) — inherited or bound fresh — is recorded
//! here as a duplicate descriptor (the same socket, the same accept queue),
//! so the driver can pass them all without knowing which component owns
//! which. The duplicates are dropped when the shutdown begins: after that
//! no upgrade can start, and keeping them would hold sockets open that the
//! servers mean to close.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static SOCKETS: Mutex<Vec<(String, OwnedFd)>> = Mutex::new(Vec::new());

/// Set once a new process has taken over the sockets.
static HANDED_OFF: AtomicBool = AtomicBool::new(false);

/// Set once this process told the lameduck parent it inherited its sockets
/// from that it is ready: from then on the parent drains and lets go.
static TOLD_PARENT_READY: AtomicBool = AtomicBool::new(false);

fn lock() -> std::sync::MutexGuard<'static, Vec<(String, OwnedFd)>> {
    // Every update is a single push or clear: a panic cannot tear it.
    SOCKETS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records `socket` under `name`.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn register(name: &str, socket: impl AsFd) -> io::Result<()> {
    let dup = socket.as_fd().try_clone_to_owned()?;
    lock().push((name.to_string(), dup));
    Ok(())
}

/// Fresh duplicates of every recorded socket, in the order recorded.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn snapshot() -> io::Result<Vec<(String, OwnedFd)>> {
    lock()
        .iter()
        .map(|(n, fd)| Ok((n.clone(), fd.try_clone()?)))
        .collect()
}

/// Forgets every socket (closing the duplicates).
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn clear() {
    lock().clear();
}

/// Records that another process now serves these sockets.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn set_handed_off() {
    // Release pairs with the Acquire in `is_handed_off`: a server that sees
    // the flag also sees everything the driver did before setting it.
    HANDED_OFF.store(true, Ordering::Release);
}

/// Whether another process now serves these sockets.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn is_handed_off() -> bool {
    HANDED_OFF.load(Ordering::Acquire)
}

/// Records that this process reported ready to its parent.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn set_told_parent_ready() {
    TOLD_PARENT_READY.store(true, Ordering::Release);
}

/// Whether this process reported ready to the parent it inherited its
/// sockets from. Until then the parent is the one serving them: a new
/// process that fails before it is ready must leave them exactly as it
/// found them.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn told_parent_ready() -> bool {
    TOLD_PARENT_READY.load(Ordering::Acquire)
}
