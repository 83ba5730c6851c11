//! What can go wrong with an upgrade.

/// An upgrade that did not happen. The old process goes on serving,
/// unless it is shutting down ([`UpgradeErrorKind::Abandoned`]).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct UpgradeError {
    kind: UpgradeErrorKind,
    message: String,
    pid: Option<u32>,
}

/// The kind of an [`UpgradeError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeErrorKind {
    /// Another upgrade is under way.
    Busy,
    /// The app is not Running (starting, or shutting down).
    NotRunning,
    /// Upgrades are off ([`Upgrade::disabled`](super::Upgrade::disabled)).
    Disabled,
    /// The new process could not be started.
    Spawn,
    /// The new process exited, crashed or reported a failure before it was
    /// ready — or died (or did not take over in time) after the commit,
    /// before it settled: the old process took the service back.
    Exited,
    /// The new process was not ready within the timeout.
    Timeout,
    /// The app began shutting down meanwhile.
    Abandoned,
    /// The handover bytes were of another kind, or malformed.
    Handover,
    /// A new process could not outlive this one: this process is PID 1 of
    /// its PID namespace (a container's init), or the child of an init
    /// that exits with it. See the [module docs](super).
    Unsupported,
}

impl UpgradeError {
    pub(crate) fn new(kind: UpgradeErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            pid: None,
        }
    }

    pub(crate) fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> UpgradeErrorKind {
        self.kind
    }

    /// The pid of the new process, when one was started.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }
}
