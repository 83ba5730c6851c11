//! Naming what holds a shutdown up past a deadline, beyond tracked work.

use super::Driver;
use super::slot::State;
use crate::report::{Deadline, Holdup};

impl Driver {
    /// Asks every component still running what holds it up and keeps each
    /// answer for the report; returns where this deadline's answers begin
    /// in `work.held`, for the event that names them. A component with
    /// nothing to say and no tracked work is named itself: a passed
    /// deadline always names its cause.
    pub(super) fn record_holdups(&mut self, deadline: Deadline) -> usize {
        let start = self.work.held.len();
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
                vec![self.why_running(i)]
            } else {
                described
            };
            for what in whats {
                self.work.held.push(Holdup {
                    component: slot.name.clone(),
                    what,
                    deadline,
                });
            }
        }
        start
    }

    /// Why component `i`'s run has not returned: it was told to stop, or
    /// it waits for its dependents, which stop first.
    fn why_running(&self, i: usize) -> String {
        let slot = &self.slots[i];
        if slot.stop.is_cancelled() {
            return "its run has not returned".to_string();
        }
        let first: Vec<&str> = slot
            .dependents
            .iter()
            .map(|&d| &self.slots[d])
            .filter(|d| d.state == State::Running || !d.tracker.is_empty())
            .map(|d| &*d.name)
            .collect();
        if first.is_empty() {
            return "not told to stop yet".to_string();
        }
        format!(
            "not told to stop yet: it outlives {}, still running or with work in flight",
            first.join(", ")
        )
    }
}
