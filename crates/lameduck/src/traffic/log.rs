//! The traffic log: one tick per sample, each with what every listener saw
//! since the last one. While the app runs it holds the look-back (the last
//! 10 s); from the drain on it keeps every tick, for the flight record.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::TrafficCounts;

/// How far back the gaps between arrivals are looked at, at the signal.
pub(crate) const LOOKBACK: Duration = Duration::from_secs(10);

/// The most ticks kept from the drain on: ten minutes of them. Past it the
/// log keeps only the last arrival.
const MAX_KEPT: usize = 6000;

/// What one listener saw during one tick.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub(crate) arrivals: u64,
    pub(crate) connections: u64,
    pub(crate) requests: Option<u64>,
    pub(crate) finished: Option<u64>,
}

/// One sample: when, and what each listener that saw anything saw.
#[derive(Clone, Debug)]
pub(crate) struct Tick {
    pub(crate) at: Instant,
    pub(crate) seen: Vec<(usize, Delta)>,
}

impl Tick {
    pub(crate) fn new(at: Instant) -> Self {
        Self {
            at,
            seen: Vec::new(),
        }
    }

    /// Adds what `listener` saw between two readings of its counts.
    pub(crate) fn add(&mut self, listener: usize, before: &TrafficCounts, now: &TrafficCounts) {
        let since = |a: Option<u64>, b: Option<u64>| b.map(|b| b.saturating_sub(a.unwrap_or(b)));
        let delta = Delta {
            arrivals: now.arrivals.saturating_sub(before.arrivals),
            connections: now.connections.saturating_sub(before.connections),
            requests: since(before.requests, now.requests),
            finished: since(before.finished, now.finished),
        };
        let nothing = delta.arrivals == 0
            && delta.connections == 0
            && delta.requests.unwrap_or(0) == 0
            && delta.finished.unwrap_or(0) == 0;
        if !nothing {
            self.seen.push((listener, delta));
        }
    }

    /// Arrivals on every listener.
    pub(crate) fn arrivals(&self) -> u64 {
        self.seen.iter().map(|(_, d)| d.arrivals).sum()
    }
}

/// What the look-back says about the traffic before the signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// Ticks of the look-back with an arrival.
    pub(crate) ticks: usize,
    /// The longest gap between two of them, the first counted from the
    /// arrival before the look-back (or the start of sampling).
    pub(crate) longest_gap: Duration,
}

#[derive(Default)]
pub(crate) struct Log {
    listeners: Vec<Arc<str>>,
    /// Whether each listener counts requests, and finished ones.
    sees: Vec<(bool, bool)>,
    started: Option<Instant>,
    ticks: VecDeque<Tick>,
    keeping: bool,
    /// The last arrival among the ticks dropped from the look-back.
    dropped_arrival: Option<Instant>,
    last_arrival: Option<Instant>,
    last_sample: Option<Instant>,
}

impl Log {
    /// The index of `name`'s series, made if new.
    pub(crate) fn listener(&mut self, name: Arc<str>) -> usize {
        match self.listeners.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                self.listeners.push(name);
                self.sees.push((false, false));
                self.listeners.len() - 1
            }
        }
    }

    /// Notes what `listener`'s counts hold.
    pub(crate) fn saw(&mut self, listener: usize, counts: &TrafficCounts) {
        if let Some(sees) = self.sees.get_mut(listener) {
            sees.0 |= counts.requests.is_some();
            sees.1 |= counts.finished.is_some();
        }
    }

    /// Whether `listener` counts requests, and finished ones.
    #[cfg_attr(not(feature = "flight"), allow(dead_code))]
    pub(crate) fn sees(&self, listener: usize) -> (bool, bool) {
        self.sees.get(listener).copied().unwrap_or_default()
    }

    /// The listeners' names, by index.
    #[cfg_attr(not(feature = "flight"), allow(dead_code))]
    pub(crate) fn listeners(&self) -> &[Arc<str>] {
        &self.listeners
    }

    pub(crate) fn start(&mut self, at: Instant) {
        self.started.get_or_insert(at);
    }

    pub(crate) fn keep(&mut self) {
        self.keeping = true;
    }

    pub(crate) fn push(&mut self, tick: Tick) {
        self.last_sample = Some(tick.at);
        if tick.arrivals() > 0 {
            self.last_arrival = Some(tick.at);
        }
        if self.keeping && self.ticks.len() >= MAX_KEPT {
            return;
        }
        let at = tick.at;
        self.ticks.push_back(tick);
        if self.keeping {
            return;
        }
        while let Some(front) = self.ticks.front() {
            if at.saturating_duration_since(front.at) <= LOOKBACK {
                break;
            }
            if front.arrivals() > 0 {
                self.dropped_arrival = Some(front.at);
            }
            self.ticks.pop_front();
        }
    }

    /// When the last sample was taken.
    pub(crate) fn last_sample(&self) -> Option<Instant> {
        self.last_sample
    }

    /// The tick of the last arrival.
    pub(crate) fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// The ticks kept, oldest first.
    pub(crate) fn ticks(&self) -> impl Iterator<Item = &Tick> {
        self.ticks.iter()
    }

    /// The arrivals in the [`LOOKBACK`] before `signal`.
    pub(crate) fn evidence(&self, signal: Instant) -> Evidence {
        let from = signal.checked_sub(LOOKBACK);
        let arrivals = self
            .ticks
            .iter()
            .filter(|t| t.at <= signal && from.is_none_or(|from| t.at >= from))
            .filter(|t| t.arrivals() > 0)
            .map(|t| t.at);
        // Before the look-back: the last arrival there, else the start.
        let before = self
            .ticks
            .iter()
            .rev()
            .filter(|t| from.is_some_and(|from| t.at < from) && t.arrivals() > 0)
            .map(|t| t.at)
            .next()
            .or(self.dropped_arrival)
            .or(self.started);
        let mut evidence = Evidence::default();
        let mut previous = before;
        for at in arrivals {
            evidence.ticks += 1;
            if let Some(p) = previous {
                evidence.longest_gap = evidence.longest_gap.max(at.saturating_duration_since(p));
            }
            previous = Some(at);
        }
        evidence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tick(at: Instant, arrivals: u64) -> Tick {
        let mut t = Tick::new(at);
        t.add(0, &TrafficCounts::default(), &TrafficCounts::new(arrivals));
        t
    }

    #[test]
    fn the_first_gap_of_the_look_back_counts_from_the_arrival_before_it() {
        let t0 = Instant::now();
        let mut log = Log::default();
        log.start(t0);
        // One arrival at 1 s, then nothing until a burst at 30 s.
        log.push(tick(t0 + ms(1000), 1));
        for i in 0..5 {
            log.push(tick(t0 + ms(30_000 + i * 100), 1));
        }
        let e = log.evidence(t0 + ms(31_000));
        assert_eq!(e.ticks, 5);
        assert_eq!(e.longest_gap, ms(29_000));
    }

    #[test]
    fn a_look_back_with_no_arrival_before_it_counts_from_the_start_of_sampling() {
        let t0 = Instant::now();
        let mut log = Log::default();
        log.start(t0);
        for i in 0..5 {
            log.push(tick(t0 + ms(2_000 + i * 100), 1));
        }
        let e = log.evidence(t0 + ms(3_000));
        assert_eq!((e.ticks, e.longest_gap), (5, ms(2_000)));
    }

    #[test]
    fn ticks_past_the_look_back_go_until_the_drain_keeps_them() {
        let t0 = Instant::now();
        let mut log = Log::default();
        for i in 0..200 {
            log.push(tick(t0 + ms(i * 100), 0));
        }
        assert_eq!(log.ticks().count(), 101);
        log.keep();
        for i in 200..400 {
            log.push(tick(t0 + ms(i * 100), 0));
        }
        assert_eq!(log.ticks().count(), 301);
    }
}
