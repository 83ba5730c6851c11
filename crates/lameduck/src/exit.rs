//! Exit codes.

use std::fmt;

/// How the service ended, and the process exit code that says so.
///
/// | status | code | meaning |
/// |---|---|---|
/// | `Clean` | 0 | every phase finished within its deadline |
/// | `ComponentFailed` | 1 | a component failed and its restart policy gave up (or it failed during start-up); or, after an upgrade, the new process died once the handover was final (nothing serves the sockets any more), or, told to stop before the handover was final, it did not exit within a whole shutdown of the budget and was killed |
/// | `DeadlineExceeded` | 3 | the shutdown was graceful, but the shutdown timeout passed with work in flight (cancelled, even if it then finished anyway), work was aborted, or a resource did not close in time |
/// | `InvalidConfig` | 78 | the configuration was rejected at start-up (`EX_CONFIG`) |
/// | `WatchdogExpired` | 124 | the grace period ran out before the report, the runtime stuck; the exit watchdog ended the process (after the report, it exits with the report's code) |
/// | `Forced(signal)` | 128 + signal | a second `SIGTERM`/`SIGINT` forced the exit, or one ended a process still alive after its report (143, 130) |
/// | `Program(end)` | the program's | a component that supervises a program said how that program ended ([`Context::set_program_exit`](crate::Context::set_program_exit)): its own exit code, 128 + the signal that killed it, or 126/127 when it could not be started (see [`ProgramExit`]) |
///
/// When several apply, the most severe wins: forced, then the exit
/// watchdog, then invalid configuration, then a supervised program's
/// non-zero code, then component failure, then a passed deadline, then a
/// supervised program's 0. A program's own non-zero code wins over the
/// component failure that giving up on its restarts is, as a supervisor
/// passes its program's code through (`tini`, `dumb-init`, a shell's
/// `exec`); its 0 does not hide a failure or a passed deadline.
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
    /// The supervised program's code: [`ProgramExit::code`].
    Program(ProgramExit),
}

/// How a program that a component supervises ended, for the process's exit
/// code: said by the component with
/// [`Context::set_program_exit`](crate::Context::set_program_exit), and
/// reported as [`ExitStatus::Program`].
///
/// The codes follow the POSIX shell's `$?`: the program's own exit code,
/// 128 + the number of the signal that killed it, 126 for a program that
/// is not executable and 127 for one not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProgramExit {
    /// It exited with this code (0–255).
    Exited(u8),
    /// The signal with this number (1–127) killed it: code 128 + the
    /// number (139 for `SIGSEGV`). A number above 127 is taken as 127.
    Killed(u8),
    /// It could not be started: code as given (126 not executable, 127
    /// not found, by the shell's convention).
    NotStarted(u8),
}

impl ProgramExit {
    /// The process exit code it makes.
    pub fn code(self) -> u8 {
        match self {
            ProgramExit::Exited(code) | ProgramExit::NotStarted(code) => code,
            ProgramExit::Killed(sig) => 128 + sig.min(127),
        }
    }
}

impl fmt::Display for ProgramExit {
    /// `program exited with 3`, `program killed by signal 11`, `program
    /// not started`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgramExit::Exited(code) => write!(f, "program exited with {code}"),
            ProgramExit::Killed(sig) => write!(f, "program killed by signal {sig}"),
            ProgramExit::NotStarted(_) => write!(f, "program not started"),
        }
    }
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
            ExitStatus::Program(end) => end.code(),
        }
    }

    /// Whether the service ended cleanly: exit code 0 ([`Clean`](Self::Clean),
    /// or a supervised program's own 0, which only stands when nothing
    /// failed and no deadline passed).
    pub fn is_clean(self) -> bool {
        self.code() == 0
    }

    /// The most severe of two statuses.
    pub(crate) fn worst(self, other: ExitStatus) -> ExitStatus {
        fn rank(s: ExitStatus) -> u8 {
            match s {
                ExitStatus::Clean => 0,
                ExitStatus::Program(end) if end.code() == 0 => 1,
                ExitStatus::DeadlineExceeded => 2,
                ExitStatus::ComponentFailed => 3,
                ExitStatus::Program(_) => 4,
                ExitStatus::InvalidConfig => 5,
                ExitStatus::WatchdogExpired => 6,
                ExitStatus::Forced(_) => 7,
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
            ExitStatus::Program(end) => write!(f, "{end} ({})", end.code()),
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

    #[test]
    fn a_program_s_own_code_wins_over_giving_up_but_not_over_a_forced_exit() {
        let three = ExitStatus::Program(ProgramExit::Exited(3));
        assert_eq!(ExitStatus::ComponentFailed.worst(three), three);
        assert_eq!(three.worst(ExitStatus::ComponentFailed), three);
        assert_eq!(three.worst(ExitStatus::DeadlineExceeded), three);
        let forced = ExitStatus::Forced(Signal::Terminate);
        assert_eq!(three.worst(forced), forced);
        assert_eq!(three.worst(ExitStatus::InvalidConfig).code(), 78);
    }

    #[test]
    fn a_program_s_zero_hides_neither_a_failure_nor_a_passed_deadline() {
        let zero = ExitStatus::Program(ProgramExit::Exited(0));
        assert_eq!(zero.worst(ExitStatus::ComponentFailed).code(), 1);
        assert_eq!(ExitStatus::DeadlineExceeded.worst(zero).code(), 3);
        assert_eq!(ExitStatus::Clean.worst(zero), zero);
    }

    #[test]
    fn a_program_s_status_says_how_it_ended_and_its_code() {
        let said = |end: ProgramExit| ExitStatus::Program(end).to_string();
        assert_eq!(said(ProgramExit::Exited(3)), "program exited with 3 (3)");
        assert_eq!(
            said(ProgramExit::Killed(11)),
            "program killed by signal 11 (139)"
        );
        assert_eq!(
            said(ProgramExit::NotStarted(127)),
            "program not started (127)"
        );
        assert_eq!(ProgramExit::Killed(200).code(), 255);
    }
}
