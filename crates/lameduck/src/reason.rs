//! Why a service shuts down.

use std::fmt;
use std::sync::Arc;

/// A signal that can start (or force) a shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGTERM`: the orchestrator asks the service to stop. Always drains.
    Terminate,
    /// `SIGINT` (Ctrl+C; on Windows, the console's Ctrl+C).
    Interrupt,
}

impl Signal {
    /// The signal's number on Unix (15, 2).
    pub fn number(self) -> i32 {
        match self {
            Signal::Terminate => 15,
            Signal::Interrupt => 2,
        }
    }

    /// The conventional name (`SIGTERM`, `SIGINT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why the shutdown began. Every component can read it from its
/// [`Context`](crate::Context), so a component can, say, skip a slow
/// checkpoint when the service is being replaced by an upgrade.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownReason {
    /// A signal arrived.
    Signal(Signal),
    /// [`AppHandle::shutdown`](crate::AppHandle::shutdown) was called.
    Requested(Arc<str>),
    /// A component failed and its restart policy gave up.
    ComponentFailed {
        /// The component's name.
        component: Arc<str>,
        /// What went wrong, as text.
        error: Arc<str>,
    },
    /// Every component finished on its own; nothing was left to run.
    Completed,
    /// An upgrade succeeded (feature `upgrade`): the new process, `new_pid`,
    /// is ready and serves the same sockets; this one drains and exits.
    Upgraded {
        /// The new process's pid.
        new_pid: u32,
    },
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownReason::Signal(s) => write!(f, "{s}"),
            ShutdownReason::Requested(why) => write!(f, "requested: {why}"),
            ShutdownReason::ComponentFailed { component, error } => {
                write!(f, "component {component} failed: {error}")
            }
            ShutdownReason::Completed => f.write_str("every component finished"),
            ShutdownReason::Upgraded { new_pid } => write!(f, "upgraded: pid {new_pid} took over"),
        }
    }
}
