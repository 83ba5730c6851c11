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
//! Two process-wide facts go with them: whether this process has handed
//! the sockets over (an upgrade's commit; undone if the new process dies
//! before the handover is final), and whether the parent this process
//! inherited them from has committed to it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use tokio::sync::watch;

static SOCKETS: Mutex<Vec<(String, OwnedFd)>> = Mutex::new(Vec::new());

/// Whether a new process serves these sockets now: set at an upgrade's
/// commit, cleared if the new process dies before the handover is final
/// (the old process takes its sockets back). Readers that must wake on a
/// change subscribe to it.
fn handed_off() -> &'static watch::Sender<bool> {
    static HANDED_OFF: OnceLock<watch::Sender<bool>> = OnceLock::new();
    HANDED_OFF.get_or_init(|| watch::Sender::new(false))
}

/// Set once the parent this process inherited its sockets from committed
/// to it (or died first): from then on the sockets are this process's.
static COMMITTED: AtomicBool = AtomicBool::new(false);

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

/// Records whether another process serves these sockets now.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn set_handed_off(yes: bool) {
    // The watch's lock orders this with every reader: a server that sees
    // the flag also sees everything the driver did before setting it.
    handed_off().send_replace(yes);
}

/// Whether another process serves these sockets now.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn is_handed_off() -> bool {
    *handed_off().borrow()
}

/// Completes once `is_handed_off()` is `yes`.
///
/// # Cancel safety
///
/// Cancel safe.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) async fn handed_off_is(yes: bool) {
    let mut rx = handed_off().subscribe();
    // The sender is a static: the channel never closes.
    let _ = rx.wait_for(|h| *h == yes).await;
}

/// Records that the parent this process inherited its sockets from
/// committed to it.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn set_committed() {
    COMMITTED.store(true, Ordering::Release);
}

/// Whether the parent this process inherited its sockets from committed to
/// it. Until then the parent is the one serving them: a new process that
/// fails, or is refused, must leave them exactly as it found them.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn is_committed() -> bool {
    // Acquire pairs with the Release in `set_committed`.
    COMMITTED.load(Ordering::Acquire)
}
