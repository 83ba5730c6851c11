//! Fault points: named moments of an upgrade where a test can stop a
//! process (to kill it there, or to make it late), so that an interleaving
//! that timing would decide is forced instead.
//!
//! Unset, a point costs one atomic load. Nothing in the library sets it.

use std::sync::OnceLock;

static HOOK: OnceLock<fn(&'static str)> = OnceLock::new();

/// Test support, not part of the API: `hook` is called, on the thread that
/// reaches it, at each named point of an upgrade. It may block. The first
/// call wins.
///
/// | point | process | where |
/// |---|---|---|
/// | `ready` | new | every component is ready; the ready report is next |
/// | `commit` | new | the parent's `commit` has just been read |
/// | `pid-file` | new | about to write the PID file |
/// | `control-socket` | new | about to take the control socket's path |
/// | `running` | new | Running, and the parent was told |
/// | `draining` | new | shutting down before the handover was final, and the parent was told |
/// | `handed-over` | old | the handover is final; the drain begins next |
pub fn set_fault_hook(hook: fn(&'static str)) {
    let _ = HOOK.set(hook);
}

/// Calls the hook, if one is set, at the point `name`.
pub(crate) fn fault_point(name: &'static str) {
    if let Some(hook) = HOOK.get() {
        hook(name);
    }
}
