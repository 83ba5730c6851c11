//! The quiescence rule: when an adaptive drain may end.
//!
//! After `drain_min`, the drain ends once no arrival was sampled for the
//! quiet it needs, and at `drain_max` at the latest. The quiet needed is
//! `drain_quiet`, or [`GAP_MULTIPLE`] times the longest gap between
//! arrivals in the look-back before the signal if that is longer: a pause
//! of a second means the balancers have gone at a thousand requests a
//! second, and nothing at one every two seconds. With fewer than
//! [`MIN_EVIDENCE`] tenths of a second with an arrival in the look-back,
//! the traffic before the signal says nothing, and the drain lasts
//! `drain_max`.

use std::time::Duration;

use tokio::time::Instant;

use super::Evidence;
use crate::Timeline;

/// The quiet needed is at least this many times the longest gap between
/// arrivals before the signal.
pub(crate) const GAP_MULTIPLE: u32 = 4;

/// The fewest ticks with an arrival, in the look-back, that let a pause
/// mean anything.
pub(crate) const MIN_EVIDENCE: usize = 5;

/// A drain window: `drain_min`, `drain_max`, `drain_quiet`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
    pub(crate) quiet: Duration,
}

/// What the drain does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Goes on; looks again at the next sample, or at this instant
    /// (`drain_min` or `drain_max`) if no sample comes first.
    Wait(Instant),
    /// Ends: nothing arrived for `quiet`, which is enough.
    Quiet(Duration),
    /// Ends: `drain_max` is reached.
    Max,
}

impl Window {
    pub(crate) fn of(timeline: &Timeline) -> Self {
        Self {
            min: timeline.drain_min,
            max: timeline.drain_max(),
            quiet: timeline.drain_quiet,
        }
    }

    /// The quiet the drain needs, given the look-back before the signal;
    /// `None` when the look-back is too thin to tell (the drain lasts
    /// `drain_max`).
    pub(crate) fn needs(&self, evidence: Evidence) -> Option<Duration> {
        (evidence.ticks >= MIN_EVIDENCE).then(|| {
            self.quiet
                .max(evidence.longest_gap.saturating_mul(GAP_MULTIPLE))
        })
    }

    /// The verdict at `now` for a drain that began at `began` and `needs`
    /// the quiet so: `sampled` is the last sample, `last_arrival` the tick
    /// of the last arrival (before the drain or during it). The quiet counts
    /// up to the last sample, not to `now`: what arrived since is not known.
    pub(crate) fn decide(
        &self,
        needs: Option<Duration>,
        began: Instant,
        now: Instant,
        sampled: Option<Instant>,
        last_arrival: Option<Instant>,
    ) -> Verdict {
        let max = began + self.max;
        if now >= max {
            return Verdict::Max;
        }
        let min = began + self.min;
        if now < min {
            return Verdict::Wait(min);
        }
        if let (Some(needs), Some(sampled), Some(last)) = (needs, sampled, last_arrival) {
            let quiet = sampled.saturating_duration_since(last);
            if quiet >= needs {
                return Verdict::Quiet(quiet);
            }
        }
        Verdict::Wait(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const WINDOW: Window = Window {
        min: Duration::from_secs(1),
        max: Duration::from_secs(10),
        quiet: Duration::from_millis(500),
    };

    fn evidence(ticks: usize, gap: u64) -> Evidence {
        Evidence {
            ticks,
            longest_gap: ms(gap),
        }
    }

    #[test]
    fn the_quiet_needed_is_drain_quiet_at_high_traffic_and_grows_with_the_gaps() {
        assert_eq!(WINDOW.needs(evidence(100, 100)), Some(ms(500)));
        assert_eq!(WINDOW.needs(evidence(20, 400)), Some(ms(1600)));
    }

    #[test]
    fn too_few_arrivals_before_the_signal_prove_nothing() {
        assert_eq!(WINDOW.needs(evidence(MIN_EVIDENCE - 1, 100)), None);
        let t0 = Instant::now();
        // Quiet for ever: still drain_max.
        assert_eq!(
            WINDOW.decide(None, t0, t0 + ms(9_900), Some(t0 + ms(9_900)), None),
            Verdict::Wait(t0 + WINDOW.max)
        );
    }

    #[test]
    fn a_quiet_drain_never_ends_before_drain_min() {
        let t0 = Instant::now();
        let needs = WINDOW.needs(evidence(100, 100));
        // Quiet since long before the signal: wait for drain_min anyway.
        let last = t0.checked_sub(ms(5_000));
        assert_eq!(
            WINDOW.decide(needs, t0, t0 + ms(100), Some(t0 + ms(100)), last),
            Verdict::Wait(t0 + WINDOW.min)
        );
        assert_eq!(
            WINDOW.decide(needs, t0, t0 + WINDOW.min, Some(t0 + ms(900)), last),
            Verdict::Quiet(ms(5_900))
        );
    }

    #[test]
    fn the_quiet_counts_to_the_last_sample_not_to_now() {
        let t0 = Instant::now();
        let needs = WINDOW.needs(evidence(100, 100));
        let last = Some(t0 + ms(1_000));
        assert_eq!(
            WINDOW.decide(needs, t0, t0 + ms(1_550), Some(t0 + ms(1_400)), last),
            Verdict::Wait(t0 + WINDOW.max)
        );
        assert_eq!(
            WINDOW.decide(needs, t0, t0 + ms(1_550), Some(t0 + ms(1_500)), last),
            Verdict::Quiet(ms(500))
        );
    }

    #[test]
    fn traffic_that_never_stops_ends_at_drain_max() {
        let t0 = Instant::now();
        let needs = WINDOW.needs(evidence(100, 100));
        let at = t0 + WINDOW.max;
        assert_eq!(
            WINDOW.decide(needs, t0, at, Some(at), Some(at)),
            Verdict::Max
        );
    }
}
