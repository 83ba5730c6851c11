//! The listening sockets an upgrade hands to the new process.
//!
//! Process-wide, because sockets are: every listener obtained through
//! [`Listeners`](super::Listeners) — inherited or bound fresh — is recorded
//! here as a duplicate descriptor (the same socket, the same accept queue),
//! so the driver can pass them all without knowing which component owns
//! which. The duplicates are dropped when the shutdown begins: after that
//! no upgrade can start, and keeping them would hold sockets open that the
//! servers mean to close.
//!
//! Who serves them now is in [`owner`](super::owner).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

#[cfg(feature = "http")]
pub(crate) use super::owner::is_handed_off;

static SOCKETS: Mutex<Vec<(String, OwnedFd)>> = Mutex::new(Vec::new());

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
