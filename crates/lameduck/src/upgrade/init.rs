//! Whether a new process can outlive this one.
//!
//! The old process of an upgrade exits once the new one has taken over;
//! the new one, its child, is then reparented. That only works if
//! something outlives the old process to take it:
//!
//! - **PID 1 of a PID namespace** (a container's entry point, `unshare
//!   --pid --fork`): when it exits, the kernel kills every other process in
//!   the namespace — the new one included — and the container stops.
//! - **The child of a minimal init** (tini, dumb-init, `docker run
//!   --init`, catatonit) that is PID 1: such an init exits as soon as its
//!   one child does, with the same result.
//!
//! In both cases an upgrade would kill the service, and is refused.

/// Minimal inits that exit when their child does.
const EXITING_INITS: [&str; 4] = ["tini", "docker-init", "dumb-init", "catatonit"];

/// Why a new process could not outlive this one, when it could not.
pub(crate) fn successor_cannot_outlive() -> Option<String> {
    if std::process::id() == 1 {
        return Some(
            "this process is PID 1 of its PID namespace (a container's entry point): \
             when it exits, the kernel kills every process left in the namespace, \
             the new one included; restart the container instead"
                .into(),
        );
    }
    if nix::unistd::getppid().as_raw() == 1 {
        let init = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        let init = init.trim();
        if EXITING_INITS.contains(&init) {
            return Some(format!(
                "this process's parent is {init}, PID 1 of its namespace, which exits when \
                 this process does and takes the new one with it; restart the container instead"
            ));
        }
    }
    None
}
