//! The report: what the driver knows, gathered.

use std::collections::{HashMap, HashSet};

use tokio::time::Instant;

use super::Driver;
use crate::report::{
    AfterCancel, CloseOutcome, ComponentReport, Ending, ExporterReport, PhaseTiming,
};
use crate::tracker::Mark;
use crate::{Phase, Report, WorkItem};

impl Driver {
    /// Sorts the work in flight at Stopping (`at_stop`) and at the shutdown
    /// timeout (`at_cancel`, each with its tracker's index) into the
    /// report's categories, once the aborted work is known: before the
    /// timeout, finished or ended by the shutdown; after it, what became of
    /// each piece, from the marks its tracker kept.
    pub(super) fn settle_work(
        &mut self,
        at_stop: &[(usize, WorkItem)],
        at_cancel: Vec<(usize, WorkItem)>,
    ) {
        let mut marks: HashMap<(usize, u64), Mark> = HashMap::new();
        for (i, tracker) in self.trackers().iter().enumerate() {
            for (id, mark) in tracker.take_marks() {
                // The first mark is how the work ended; a later one (an
                // orphaned handler's own end) does not change it.
                marks.entry((i, id)).or_insert(mark);
            }
        }
        let cancelled_ids: HashSet<(usize, u64)> =
            at_cancel.iter().map(|(i, w)| (*i, w.id)).collect();
        let (ended, finished): (Vec<_>, Vec<_>) = at_stop
            .iter()
            .filter(|(i, w)| !cancelled_ids.contains(&(*i, w.id)))
            .partition(|(i, w)| marks.get(&(*i, w.id)) == Some(&Mark::Ended));
        self.work.finished = finished.len();
        self.work.ended = ended.into_iter().map(|(_, w)| w.clone()).collect();
        let aborted: HashSet<(&str, u64)> = self
            .work
            .aborted
            .iter()
            .map(|w| (&*w.tracker, w.id))
            .collect();
        self.work.after_cancel = at_cancel
            .iter()
            .map(|(i, w)| match marks.get(&(*i, w.id)) {
                // What the client got comes first: a `503` whose handler
                // ran on until it was aborted was still a clean answer.
                Some(Mark::Unavailable) => AfterCancel::Unavailable,
                // A response the hard deadline cut short is its abort's.
                _ if aborted.contains(&(&*w.tracker, w.id)) => AfterCancel::Aborted,
                Some(Mark::Cut) => AfterCancel::Cut,
                Some(Mark::Ended) => AfterCancel::Ended,
                None => AfterCancel::Finished,
            })
            .collect();
        self.work.cancelled = at_cancel.into_iter().map(|(_, w)| w).collect();
    }

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
            drain: self.drain.clone(),
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
            #[cfg(all(unix, feature = "upgrade"))]
            upgrade: self.upgrades_said(),
            #[cfg(not(all(unix, feature = "upgrade")))]
            upgrade: None,
            status: self.status,
        }
    }
}
