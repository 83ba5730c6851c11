//! lameduck run's exit code, from the program's end and the report.

use lameduck::{Report, ShutdownReason};

use super::supervisor::Outcome;

/// lameduck's exit code: the program's, except that a program stopped by
/// the signal lameduck sent it stopped cleanly, and that a third signal
/// forces the exit (128 + its number).
pub fn exit_code(report: &Report, outcome: Outcome) -> u8 {
    if let Some(err) = outcome.cannot_start {
        return err.code;
    }
    if let Some(sig) = outcome.forced_by {
        return 128 + sig as u8;
    }
    let Some(ended) = outcome.last else {
        return report.status().code();
    };
    if outcome.stopped_with.iter().any(|s| ended.is_stop_by(*s)) {
        // A clean stop, unless stragglers had to be killed at the deadline
        // (3, the library's code for it).
        return report.status().code();
    }
    let asked = matches!(
        report.reason,
        Some(ShutdownReason::Signal(_) | ShutdownReason::Requested(_))
    );
    if outcome.last_while_running && asked {
        // Stopped while the program was down between crash restarts: the
        // stop was lameduck's, and its report says how it went.
        return report.status().code();
    }
    let gave_up = matches!(report.reason, Some(ShutdownReason::ComponentFailed { .. }));
    match ended.exit_code() {
        // Giving up after too many restarts is a failure even when the
        // last run exited 0 (`--restart always`).
        0 if gave_up => 1,
        code => code,
    }
}
