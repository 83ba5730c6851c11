//! The report: what the driver knows, gathered.

use tokio::time::Instant;

use super::Driver;
use crate::report::{CloseOutcome, ComponentReport, Ending, ExporterReport, PhaseTiming};
use crate::{Phase, Report};

impl Driver {
    /// The report as things stand, `current` being the phase the app is in.
    pub(super) fn report(&self, current: Phase) -> Report {
        let mut phases = self.phases.clone();
        phases.push(PhaseTiming {
            phase: current,
            duration: Instant::now() - self.phase_started,
        });
        // Starting and Running are not part of the shutdown.
        phases.retain(|p| p.phase.is_shutting_down());
        Report {
            app: self.handle.name().into(),
            reason: self.trigger.as_ref().map(|(r, _)| r.clone()),
            phases,
            shutdown: self
                .shutdown_at
                .map_or_else(Default::default, |t| Instant::now() - t),
            work: self.work.clone(),
            components: self
                .order
                .iter()
                .map(|&i| {
                    let s = &self.slots[i];
                    ComponentReport {
                        name: s.name.clone(),
                        restarts: s.restarts,
                        ended: s.ended.clone().unwrap_or(Ending::NeverStarted),
                        close: s.closed.clone().unwrap_or(CloseOutcome::None),
                    }
                })
                .collect(),
            // Those that did not run (a forced exit) are listed too.
            exporters: self
                .exported
                .iter()
                .cloned()
                .chain(self.exporters.iter().map(|e| ExporterReport {
                    name: e.name.clone(),
                    flush: CloseOutcome::None,
                }))
                .collect(),
            status: self.status,
        }
    }
}
