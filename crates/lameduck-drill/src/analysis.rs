//! From raw observations to the report: every instant is known by now, so
//! each request is placed exactly relative to the signal, the listener
//! closing and the exit.

mod timeline;

use std::time::Duration;

use crate::Expectation;
use crate::events::{Events as RawEvents, ProbeResult};
use crate::outcome::Outcome;
use crate::record::{FailureDetail, Record, flags};
use crate::report::{
    Events, ExitEvent, FailureSample, Failures, KeepAlive, Latency, LatencyStats, Notices,
    OutcomeCounts, ReadinessChange, Requests, RestartEvent, SignalEvent, SlowCount,
};

pub(crate) use self::timeline::timeline;

/// Everything the drill saw, before interpretation.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) records: Vec<Record>,
    pub(crate) details: Vec<FailureDetail>,
    pub(crate) sent: u64,
    pub(crate) events: RawEvents,
    pub(crate) exits: Vec<ExitEvent>,
    pub(crate) load_end_us: u64,
    pub(crate) end_us: u64,
    /// How the drill is judged: in a stop drill, what starts after the
    /// listener closed is not held against the server.
    pub(crate) expect: Expectation,
    /// The exit code in the signalled process's flight record, when one
    /// was read: what the drill cannot see of a process it did not start.
    pub(crate) recorded_exit: Option<u8>,
}

/// The instants that divide a drill into windows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    /// The first signal that was delivered, and to whom.
    pub(crate) signal: Option<(u64, u32)>,
    pub(crate) listener_closed_us: Option<u64>,
    pub(crate) readiness_flip_us: Option<u64>,
    /// How the first signalled process exited.
    pub(crate) signalled_exit: Option<ExitEvent>,
    /// Its exit code as its flight record gives it.
    pub(crate) recorded_exit: Option<u8>,
    /// The last exit among signalled processes.
    pub(crate) last_exit_us: Option<u64>,
    /// Whether failures that started after the listener closed are excused
    /// (a stop drill: nobody should have sent them).
    pub(crate) excuses_after_close: bool,
    /// When the last request started.
    pub(crate) last_start_us: Option<u64>,
}

impl Facts {
    pub(crate) fn find(observed: &Observed) -> Facts {
        let events = &observed.events;
        let signal = events
            .signals
            .iter()
            .find(|s| s.error.is_none())
            .and_then(|s| Some((s.at_us, s.pid?)));
        let after = |at: u64| signal.is_none_or(|(sig, _)| at >= sig);
        let refused_requests = observed
            .records
            .iter()
            .filter(|r| r.raw.resolve(false) == Outcome::Refused)
            .map(|r| r.start_us);
        let listener_closed_us = refused_requests
            .chain(events.refused_probes.iter().copied())
            .filter(|&at| after(at))
            .min();
        let readiness_flip_us = signal.and_then(|(sig, _)| {
            events
                .readiness
                .iter()
                .find(|p| {
                    p.start_us >= sig
                        && matches!(p.result, ProbeResult::Status(s) if !(200..300).contains(&s))
                })
                .map(|p| p.end_us)
        });
        let signalled: Vec<u32> = events
            .signals
            .iter()
            .filter(|s| s.error.is_none())
            .filter_map(|s| s.pid)
            .collect();
        let signalled_exit =
            signal.and_then(|(_, pid)| observed.exits.iter().find(|e| e.pid == pid).cloned());
        let last_exit_us = observed
            .exits
            .iter()
            .filter(|e| signalled.contains(&e.pid) && e.stopped_by_cleanup.is_none())
            .map(|e| e.at_us)
            .max();
        Facts {
            signal,
            listener_closed_us,
            readiness_flip_us,
            signalled_exit,
            recorded_exit: observed.recorded_exit,
            last_exit_us,
            excuses_after_close: observed.expect == Expectation::Stop,
            last_start_us: observed.records.iter().map(|r| r.start_us).max(),
        }
    }

    /// Whether a failure of `record` is held against the server: not when,
    /// in a stop drill, the request started after the listener closed.
    pub(crate) fn counts(&self, record: &Record) -> bool {
        !(self.excuses_after_close
            && self
                .listener_closed_us
                .is_some_and(|close| record.start_us >= close))
    }

    pub(crate) fn signal_us(&self) -> Option<u64> {
        self.signal.map(|(at, _)| at)
    }

    /// The class of a record, now that the signal time is known.
    pub(crate) fn outcome(&self, record: &Record) -> Outcome {
        record
            .raw
            .resolve(self.signal_us().is_some_and(|sig| record.end_us >= sig))
    }
}

pub(crate) fn requests(observed: &Observed, facts: &Facts) -> Requests {
    let mut requests = Requests {
        sent: observed.sent,
        accounted: observed.records.len() as u64,
        retried: 0,
        total: OutcomeCounts::default(),
        before_signal: OutcomeCounts::default(),
        after_signal: OutcomeCounts::default(),
        after_listener_close: OutcomeCounts::default(),
        failed_before_listener_close: 0,
        ok_after_exit: facts.last_exit_us.map(|_| 0),
        failed: 0,
        not_counted: OutcomeCounts::default(),
    };
    for record in &observed.records {
        let outcome = facts.outcome(record);
        let start = record.start_us;
        requests.total.add(outcome);
        let before_close = facts.listener_closed_us.is_none_or(|close| start < close);
        let window = if facts.signal_us().is_none_or(|sig| start < sig) {
            &mut requests.before_signal
        } else if before_close {
            &mut requests.after_signal
        } else {
            &mut requests.after_listener_close
        };
        window.add(outcome);
        if outcome.is_failure() && before_close {
            requests.failed_before_listener_close += 1;
        }
        if outcome.is_failure() {
            if facts.counts(record) {
                requests.failed += 1;
            } else {
                requests.not_counted.add(outcome);
            }
        }
        if record.has(flags::RETRIED) {
            requests.retried += 1;
        }
        if outcome == Outcome::Ok
            && let (Some(exit), Some(count)) = (facts.last_exit_us, requests.ok_after_exit.as_mut())
            && start >= exit
        {
            *count += 1;
        }
    }
    requests
}

pub(crate) fn latency(observed: &Observed, facts: &Facts) -> Latency {
    let (mut all, mut before, mut during, mut after) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let exit = facts.signalled_exit.as_ref().map(|e| e.at_us);
    for record in observed
        .records
        .iter()
        .filter(|r| facts.outcome(r) == Outcome::Ok)
    {
        all.push(record.latency_us);
        let phase = if facts.signal_us().is_none_or(|sig| record.start_us < sig) {
            &mut before
        } else if exit.is_none_or(|exit| record.start_us < exit) {
            &mut during
        } else {
            &mut after
        };
        phase.push(record.latency_us);
    }
    Latency {
        all: stats(all),
        before_signal: stats(before),
        during: stats(during),
        after_exit: stats(after),
        slow: None,
    }
}

/// The `ok` responses slower than `threshold`.
pub(crate) fn slow(observed: &Observed, facts: &Facts, threshold: Duration) -> SlowCount {
    let threshold_us = u64::try_from(threshold.as_micros()).unwrap_or(u64::MAX);
    let count = observed
        .records
        .iter()
        .filter(|r| facts.outcome(r) == Outcome::Ok && r.latency_us > threshold_us)
        .count();
    SlowCount {
        threshold_us,
        count: count as u64,
    }
}

/// Nearest-rank percentiles of `samples`.
pub(crate) fn stats(mut samples: Vec<u64>) -> LatencyStats {
    if samples.is_empty() {
        return LatencyStats::default();
    }
    samples.sort_unstable();
    let n = samples.len();
    let rank = |percent: usize| samples[(percent * n).div_ceil(100).max(1) - 1];
    LatencyStats {
        count: n as u64,
        p50_us: Some(rank(50)),
        p90_us: Some(rank(90)),
        p99_us: Some(rank(99)),
        max_us: samples.last().copied(),
    }
}

pub(crate) fn keepalive(observed: &Observed, facts: &Facts) -> KeepAlive {
    let closes = observed
        .records
        .iter()
        .filter(|r| r.has(flags::CONNECTION_CLOSE))
        .map(|r| r.end_us);
    KeepAlive {
        connection_close: notices(closes, facts),
        goaway: notices(observed.events.goaways.iter().copied(), facts),
    }
}

fn notices(instants: impl Iterator<Item = u64>, facts: &Facts) -> Notices {
    let mut notices = Notices::default();
    for at in instants {
        if facts.signal_us().is_none_or(|sig| at < sig) {
            notices.before_signal += 1;
        } else {
            notices.after_signal += 1;
            notices.first_after_signal_us = Some(
                notices
                    .first_after_signal_us
                    .map_or(at, |first| first.min(at)),
            );
        }
    }
    notices
}

pub(crate) fn failures(observed: &Observed, facts: &Facts) -> Failures {
    let total = observed
        .records
        .iter()
        .filter(|r| facts.outcome(r).is_failure())
        .count() as u64;
    let samples = observed
        .details
        .iter()
        .filter_map(|d| {
            let record = observed.records.get(d.index)?;
            Some(FailureSample {
                start_us: record.start_us,
                end_us: record.end_us,
                outcome: facts.outcome(record),
                detail: d.detail.clone(),
                counted: facts.counts(record),
            })
        })
        .collect();
    Failures { total, samples }
}

pub(crate) fn events(observed: &Observed, facts: &Facts) -> Events {
    let raw = &observed.events;
    let mut readiness: Vec<ReadinessChange> = Vec::new();
    for probe in &raw.readiness {
        let (status, error) = match probe.result {
            ProbeResult::Status(status) => (Some(status), None),
            ProbeResult::Failed(outcome) => (None, Some(outcome)),
        };
        let changed = readiness
            .last()
            .is_none_or(|last| last.status != status || last.error != error);
        if changed {
            readiness.push(ReadinessChange {
                at_us: probe.end_us,
                ready: probe.result.is_ready(),
                status,
                error,
            });
        }
    }
    Events {
        load_end_us: observed.load_end_us,
        end_us: observed.end_us,
        signals: raw
            .signals
            .iter()
            .map(|s| SignalEvent {
                at_us: s.at_us,
                signal: s.signal.name().to_owned(),
                pid: s.pid,
                error: s.error.clone(),
            })
            .collect(),
        readiness,
        readiness_flip_us: facts.readiness_flip_us,
        listener_closed_us: facts.listener_closed_us,
        connect_probes: raw.connect_probes,
        exits: observed.exits.clone(),
        restarts: raw
            .restarts
            .iter()
            .map(|r| RestartEvent {
                signal: r.signal,
                pid: r.pid,
                new_pid: r.new_pid,
                seen_us: r.seen_us,
                gone_pid: r.gone_pid,
                until_us: r.until_us,
                nothing_left: r.nothing_left,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
