//! The drain window's own check: `drain_min`, `drain_max` and
//! `drain_quiet` must agree, and an error says which settings conflict, in
//! the library's names or a front end's ([`BudgetError::with_setting_names`]).

use std::time::Duration;

use super::{Budget, BudgetError, BudgetErrorKind, MIN_DRAIN_QUIET};
use crate::fmt::Seconds;

impl Budget {
    pub(super) fn check_drain_window(&self) -> Result<(), BudgetError> {
        let wrong = |conflict: WindowConflict| BudgetError {
            kind: BudgetErrorKind::DrainWindow,
            message: conflict.message(&|setting| setting.to_owned()),
            conflict: Some(conflict),
        };
        if self.drain_min > self.drain_delay {
            return Err(wrong(WindowConflict::MinAboveMax {
                min: self.drain_min,
                max: self.drain_delay,
            }));
        }
        let fixed = self.drain_min == self.drain_delay;
        match self.drain_quiet {
            // A quiet left to default is the window's rule, not a wish:
            // a fixed drain simply has none.
            Some(quiet) if fixed => {
                return Err(wrong(WindowConflict::QuietWithFixed {
                    quiet,
                    drain: self.drain_delay,
                }));
            }
            Some(quiet) if quiet >= self.drain_delay => {
                return Err(wrong(WindowConflict::QuietNotShorter {
                    quiet,
                    max: self.drain_delay,
                }));
            }
            _ => {}
        }
        let quiet = self.get_drain_quiet();
        if !fixed && quiet < MIN_DRAIN_QUIET {
            return Err(wrong(WindowConflict::QuietUnseen { quiet }));
        }
        Ok(())
    }
}

/// What is wrong with a drain window, kept so that the message can be
/// written again with the settings spelled as the user gave them
/// ([`BudgetError::with_setting_names`]).
#[derive(Clone, Copy, Debug)]
pub(super) enum WindowConflict {
    MinAboveMax { min: Duration, max: Duration },
    QuietWithFixed { quiet: Duration, drain: Duration },
    QuietNotShorter { quiet: Duration, max: Duration },
    QuietUnseen { quiet: Duration },
}

impl WindowConflict {
    pub(super) fn message(&self, name: &dyn Fn(&'static str) -> String) -> String {
        let (min, max, quiet, delay) = (
            name("drain_min"),
            name("drain_max"),
            name("drain_quiet"),
            name("drain_delay"),
        );
        match *self {
            Self::MinAboveMax { min: m, max: x } => format!(
                "{min} {} is longer than {max} {}; the drain window needs {min} <= {max} (equal for a fixed drain)",
                Seconds(m),
                Seconds(x)
            ),
            Self::QuietWithFixed { quiet: q, drain } => format!(
                "{quiet} {} conflicts with a fixed drain of {} ({delay}, or {min} = {max}): no quiet can end it; leave {quiet} out, or set {min} below {max}",
                Seconds(q),
                Seconds(drain)
            ),
            Self::QuietNotShorter { quiet: q, max: x } => format!(
                "{quiet} {} conflicts with {max} {}: the drain reaches {max} before the traffic can be quiet that long; shorten {quiet} or lengthen {max}",
                Seconds(q),
                Seconds(x)
            ),
            Self::QuietUnseen { quiet: q } => format!(
                "{quiet} {} is shorter than {}: traffic is sampled every 100ms, so a shorter quiet cannot be seen",
                Seconds(q),
                Seconds(MIN_DRAIN_QUIET)
            ),
        }
    }
}
