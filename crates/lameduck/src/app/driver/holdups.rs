//! Naming what holds a shutdown up past a deadline, beyond tracked work.

use super::Driver;
use super::slot::State;
use crate::report::{Deadline, Holdup};

impl Driver {
    /// Asks every component still running what holds it up, logs each
    /// answer and keeps it for the report. A component with nothing to say
    /// and no tracked work is named itself: a passed deadline always names
    /// its cause.
    pub(super) fn record_holdups(&mut self, deadline: Deadline) {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.state != State::Running {
                continue;
            }
            let described = self
                .handle
                .holdups_of(i)
                .map(|describe| describe())
                .unwrap_or_default();
            let tracked = !slot.tracker.is_empty();
            let whats = if described.is_empty() && !tracked {
                vec!["its run has not returned".to_string()]
            } else {
                described
            };
            for what in whats {
                tracing::warn!(target: "lameduck", app = %self.handle.name(), component = %slot.name, deadline = %deadline, held_by = %what, "shutdown held up");
                self.work.held.push(Holdup {
                    component: slot.name.clone(),
                    what,
                    deadline,
                });
            }
        }
    }
}
