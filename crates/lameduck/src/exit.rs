//! Exit codes.

use std::fmt;

/// How the service ended, and the process exit code that says so.
///
/// | status | code | meaning |
/// |---|---|---|
/// | `Clean` | 0 | every phase finished within its deadline |
/// | `ComponentFailed` | 1 | a component failed and its restart policy gave up (or it failed during start-up); or, after an upgrade, the new process died once the handover was final (nothing serves the sockets any more) |
/// | `DeadlineExceeded` | 3 | the shutdown was graceful, but work was cancelled or aborted, or a resource did not close in time |
/// | `InvalidConfig` | 78 | the configuration was rejected at start-up (`EX_CONFIG`) |
/// | `WatchdogExpired` | 124 | the grace period ran out before the report, the runtime stuck; the exit watchdog ended the process (after the report, it exits with the report's code) |
/// | `Forced(signal)` | 128 + signal | a second `SIGTERM`/`SIGINT` forced the exit, or one ended a process still alive after its report (143, 130) |
///
/// When several apply, the most severe wins: forced, then component failure,
/// then a passed deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitStatus {
    /// Exit code 0.
    Clean,
    /// Exit code 1.
    ComponentFailed,
    /// Exit code 3.
    DeadlineExceeded,
    /// Exit code 78.
    InvalidConfig,
    /// Exit code 124.
    WatchdogExpired,
    /// Exit code 128 + the signal's number.
    Forced(crate::Signal),
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Clean => 0,
            ExitStatus::ComponentFailed => 1,
            ExitStatus::DeadlineExceeded => 3,
            ExitStatus::InvalidConfig => 78,
            ExitStatus::WatchdogExpired => 124,
            // Signal numbers we handle are 2 and 15, so this cannot overflow.
            ExitStatus::Forced(sig) => 128 + sig.number() as u8,
        }
    }

    /// Whether the service ended cleanly.
    pub fn is_clean(self) -> bool {
        self == ExitStatus::Clean
    }

    /// The most severe of two statuses.
    pub(crate) fn worst(self, other: ExitStatus) -> ExitStatus {
        fn rank(s: ExitStatus) -> u8 {
            match s {
                ExitStatus::Clean => 0,
                ExitStatus::DeadlineExceeded => 1,
                ExitStatus::ComponentFailed => 2,
                ExitStatus::InvalidConfig => 3,
                ExitStatus::WatchdogExpired => 4,
                ExitStatus::Forced(_) => 5,
            }
        }
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s.code())
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Clean => write!(f, "clean (0)"),
            ExitStatus::ComponentFailed => write!(f, "component failed (1)"),
            ExitStatus::DeadlineExceeded => write!(f, "deadline exceeded (3)"),
            ExitStatus::InvalidConfig => write!(f, "invalid configuration (78)"),
            ExitStatus::WatchdogExpired => write!(f, "exit watchdog expired (124)"),
            // Not "a second": `lameduck run` forces at the third, and a
            // signal after the report forces too.
            ExitStatus::Forced(sig) => write!(f, "forced by {sig} ({})", self.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signal;

    #[test]
    fn codes_are_distinct() {
        let all = [
            ExitStatus::Clean,
            ExitStatus::ComponentFailed,
            ExitStatus::DeadlineExceeded,
            ExitStatus::InvalidConfig,
            ExitStatus::WatchdogExpired,
            ExitStatus::Forced(Signal::Terminate),
            ExitStatus::Forced(Signal::Interrupt),
        ];
        let mut codes: Vec<u8> = all.iter().map(|s| s.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert_eq!(ExitStatus::Forced(Signal::Terminate).code(), 143);
        assert_eq!(ExitStatus::Forced(Signal::Interrupt).code(), 130);
    }

    #[test]
    fn worst_prefers_the_more_severe() {
        assert_eq!(
            ExitStatus::DeadlineExceeded.worst(ExitStatus::ComponentFailed),
            ExitStatus::ComponentFailed
        );
        assert_eq!(
            ExitStatus::ComponentFailed.worst(ExitStatus::Clean),
            ExitStatus::ComponentFailed
        );
    }
}
