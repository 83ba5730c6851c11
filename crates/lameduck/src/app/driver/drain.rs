//! Draining: how long the app stays unready but serving. A fixed drain
//! waits its delay; an adaptive one (`drain_min` < `drain_max`) ends once
//! the traffic has stopped (see `traffic/quiet.rs` for the rule).

use tokio::time::Instant;

use super::{Driver, Step};
use crate::Signal;
use crate::report::{DrainEnd, DrainReport};
use crate::traffic::quiet::{Verdict, Window};

impl Driver {
    /// Drains until the drain window says so, every component has returned
    /// with nothing tracked, or a signal cuts it short. A second signal is
    /// returned, for the caller to force the exit.
    pub(super) async fn drain(&mut self) -> Result<DrainReport, Signal> {
        let began = Instant::now();
        let window = Window::of(&self.timeline);
        let adaptive = self.timeline.is_adaptive();
        let handle = self.handle.clone();
        let traffic = handle.traffic();
        let watched = traffic.has_sources();
        // Without the sampler (a fixed drain, no flight record), the counts
        // are read at the drain's start and end: the arrivals are known,
        // not when the last one came.
        let counted_at_ends = watched && !self.sample_traffic;
        if counted_at_ends {
            traffic.sample(began);
        }
        let needs = if adaptive {
            traffic.with_log(|log| window.needs(log.evidence(began)))
        } else {
            None
        };
        let ended = loop {
            if let Some(sig) = self.cut_drain {
                break DrainEnd::CutBySignal(sig);
            }
            // Every component has returned and no work is tracked: nothing
            // is left to serve while load balancers catch up. (An app of no
            // components serves outside them, if at all: its drain is kept.)
            if !self.slots.is_empty() && self.all_done() {
                break DrainEnd::NothingLeft;
            }
            let now = Instant::now();
            let (sampled, last) = traffic.with_log(|log| (log.last_sample(), log.last_arrival()));
            let wake = match window.decide(needs, began, now, sampled, last) {
                Verdict::Max if adaptive => break DrainEnd::MaxReached,
                Verdict::Max => break DrainEnd::DelayOver,
                Verdict::Quiet(quiet) if adaptive => {
                    break DrainEnd::Quiet {
                        quiet,
                        after: now - began,
                    };
                }
                Verdict::Quiet(_) => began + window.max,
                Verdict::Wait(at) => at,
            };
            match self.step(Some(wake)).await {
                Step::Forced(sig) => return Err(sig),
                Step::Deadline | Step::Handled => {}
            }
        };
        let end = Instant::now();
        if counted_at_ends {
            traffic.sample(end);
        }
        let (last, arrivals) = traffic.with_log(|log| {
            let arrivals = log
                .ticks()
                .filter(|t| t.at > began)
                .map(|t| t.arrivals())
                .sum();
            (log.last_arrival(), arrivals)
        });
        Ok(DrainReport {
            ended,
            lasted: end - began,
            quiet_needed: needs,
            last_traffic: last
                .filter(|_| !counted_at_ends)
                .map(|at| end.saturating_duration_since(at)),
            arrivals,
            watched,
            sampled: !counted_at_ends,
        })
    }

    /// The drain that did not happen.
    pub(super) fn no_drain(&self) -> DrainReport {
        DrainReport {
            ended: DrainEnd::Skipped,
            lasted: std::time::Duration::ZERO,
            quiet_needed: None,
            last_traffic: self.handle.traffic().with_log(|log| {
                log.last_arrival()
                    .map(|at| Instant::now().saturating_duration_since(at))
            }),
            arrivals: 0,
            watched: self.handle.traffic().has_sources(),
            sampled: self.sample_traffic,
        }
    }
}
