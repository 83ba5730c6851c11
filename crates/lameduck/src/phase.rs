//! The phases of a service's life.

use std::fmt;

/// Where the service is in its life. Phases only move forward, though a
/// shutdown may skip some (a service that fails while starting never drains).
///
/// | phase | what happens |
/// |---|---|
/// | `Starting` | components start in dependency order; not ready yet |
/// | `Running` | every component reported ready; ready |
/// | `Draining` | lame duck: unready, but still serving while load balancers catch up |
/// | `Stopping` | no new work; components stop in reverse dependency order; in-flight work finishes |
/// | `Cancelling` | remaining work got its cancel signal; aborted at the hard deadline |
/// | `Closing` | resources close in reverse dependency order, logs flush last |
/// | `Stopped` | the report is ready; `run()` returns |
///
/// Observe it with [`AppHandle::phase`](crate::AppHandle::phase) or
/// [`AppHandle::watch_phase`](crate::AppHandle::watch_phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Components are starting.
    Starting,
    /// Every component is ready.
    Running,
    /// Unready, still serving.
    Draining,
    /// Not accepting new work; in-flight work finishes.
    Stopping,
    /// Remaining work was told to cancel.
    Cancelling,
    /// Resources are closing.
    Closing,
    /// Done.
    Stopped,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 7] = [
        Phase::Starting,
        Phase::Running,
        Phase::Draining,
        Phase::Stopping,
        Phase::Cancelling,
        Phase::Closing,
        Phase::Stopped,
    ];

    /// The phase's name in lower case, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
            Phase::Cancelling => "cancelling",
            Phase::Closing => "closing",
            Phase::Stopped => "stopped",
        }
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(self) -> bool {
        self >= Phase::Draining
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
