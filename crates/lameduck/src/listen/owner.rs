//! Who serves the listening sockets now, as far as this process knows:
//! process-wide, because sockets are.
//!
//! An old process of an upgrade goes through three states: it serves the
//! sockets; it has committed to a new process (it accepts nothing more,
//! and its probe connections are told to close); the handover is final
//! and it is leaving (its last probe connections are closed, and only once
//! none is left does it drain, so that no probe ever hears its readiness
//! turn false). If the new process dies before the handover is final, the
//! old one serves again. A new process, for its part, shares the sockets
//! with its parent until the parent has committed to it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Where this process stands with the sockets it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
// Only an upgrade hands the sockets over.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) enum Handoff {
    /// This process serves them.
    Own,
    /// An upgrade committed to a new process, which serves them now; this
    /// one may still take them back.
    Committed,
    /// The handover is final: this process leaves.
    Leaving,
}

fn state() -> &'static watch::Sender<Handoff> {
    static STATE: OnceLock<watch::Sender<Handoff>> = OnceLock::new();
    STATE.get_or_init(|| watch::Sender::new(Handoff::Own))
}

/// Probe connections open on the admin listener: the old process waits for
/// none to be left before it drains.
fn probes() -> &'static watch::Sender<usize> {
    static PROBES: OnceLock<watch::Sender<usize>> = OnceLock::new();
    PROBES.get_or_init(|| watch::Sender::new(0))
}

/// Set once the parent this process inherited its sockets from committed
/// to it (or died first): from then on the sockets are this process's.
static COMMITTED: AtomicBool = AtomicBool::new(false);

/// Records where this process stands with its sockets.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn set(handoff: Handoff) {
    // The watch's lock orders this with every reader: a server that sees
    // the state also sees everything the driver did before setting it.
    state().send_replace(handoff);
    #[cfg(feature = "upgrade")]
    super::files::sync();
}

/// Where this process stands with its sockets.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn now() -> Handoff {
    *state().borrow()
}

/// Whether another process serves these sockets now.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn is_handed_off() -> bool {
    now() != Handoff::Own
}

/// Completes once the state is not `from` any more; the new one.
///
/// # Cancel safety
///
/// Cancel safe.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) async fn changed_from(from: Handoff) -> Handoff {
    let mut rx = state().subscribe();
    // The sender is a static: the channel never closes.
    rx.wait_for(|h| *h != from).await.map_or(from, |h| *h)
}

/// Completes once another process serves these sockets (`yes`), or this
/// one does again.
///
/// # Cancel safety
///
/// Cancel safe.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) async fn handed_off_is(yes: bool) {
    let mut rx = state().subscribe();
    let _ = rx.wait_for(|h| (*h != Handoff::Own) == yes).await;
}

/// A probe connection, counted while it lives.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct ProbeConnection(());

#[cfg_attr(not(feature = "http"), allow(dead_code))]
impl ProbeConnection {
    pub(crate) fn open() -> Self {
        probes().send_modify(|n| *n += 1);
        Self(())
    }
}

impl Drop for ProbeConnection {
    fn drop(&mut self) {
        probes().send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Completes once no probe connection is open.
///
/// # Cancel safety
///
/// Cancel safe.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) async fn no_probe_connections() {
    let mut rx = probes().subscribe();
    let _ = rx.wait_for(|n| *n == 0).await;
}

/// Records that the parent this process inherited its sockets from
/// committed to it.
#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
pub(crate) fn set_committed() {
    COMMITTED.store(true, Ordering::Release);
    #[cfg(feature = "upgrade")]
    super::files::sync();
}

/// Whether the parent this process inherited its sockets from committed to
/// it. Until then the parent is the one serving them: a new process that
/// fails, or is refused, must leave them exactly as it found them.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn is_committed() -> bool {
    // Acquire pairs with the Release in `set_committed`.
    COMMITTED.load(Ordering::Acquire)
}
