//! One record per request, kept exactly once.
//!
//! Every request the load generator commits to gets a [`RecordGuard`] before
//! it starts. The guard writes the request's record when the request ends,
//! and writes an `error` record if the request's task panics or is dropped
//! first, so the number of records always equals the number of requests sent:
//! nothing is counted twice, nothing is dropped when the target dies
//! mid-response.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::outcome::{Outcome, RawOutcome};

/// The drill's time base: every instant in a report is microseconds since the
/// load started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    t0: Instant,
}

impl Clock {
    pub(crate) fn start() -> Self {
        Clock { t0: Instant::now() }
    }

    pub(crate) fn t0(&self) -> Instant {
        self.t0
    }

    pub(crate) fn us(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.t0).as_micros()).unwrap_or(u64::MAX)
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.us(Instant::now())
    }
}

/// Flags on a record.
pub(crate) mod flags {
    /// The request went over a keep-alive connection.
    pub(crate) const KEEPALIVE: u8 = 1;
    /// The response carried `Connection: close` (keep-alive requests only).
    pub(crate) const CONNECTION_CLOSE: u8 = 2;
    /// The request was sent again on a new connection because the first one
    /// could not take it (closed before it was written, or refused unprocessed).
    pub(crate) const RETRIED: u8 = 4;
}

/// What happened to one request. 32 bytes; a drill keeps one per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// When its last attempt started (µs since t0): the instant that decides
    /// its window relative to the signal and the listener closing.
    pub(crate) start_us: u64,
    /// When it ended.
    pub(crate) end_us: u64,
    /// From when it was due to when it ended.
    pub(crate) latency_us: u64,
    pub(crate) raw: RawOutcome,
    pub(crate) flags: u8,
}

impl Record {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A failure with its error text, for the report's samples.
#[derive(Debug, Clone)]
pub(crate) struct FailureDetail {
    pub(crate) index: usize,
    pub(crate) detail: String,
}

/// How many failures of each kind keep their error text: enough to see what
/// went wrong, and a flood of one kind (refused connects after the listener
/// closed) cannot crowd out the others.
pub(crate) const MAX_DETAILS_PER_KIND: usize = 20;

/// Where records go. Shared by every request task.
#[derive(Debug)]
pub(crate) struct RecordSink {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    not_counted: AtomicU64,
    /// From this instant (µs since t0) on, a refused connect is not held
    /// against the server (the first signal of a stop drill: the first
    /// refused connect after it is, by definition, the listener closing).
    /// `u64::MAX` until then.
    refused_excused_from_us: AtomicU64,
    inner: Mutex<Inner>,
}

impl Default for RecordSink {
    fn default() -> Self {
        RecordSink {
            sent: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            not_counted: AtomicU64::new(0),
            refused_excused_from_us: AtomicU64::new(u64::MAX),
            inner: Mutex::default(),
        }
    }
}

/// The requests ended so far, for progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LiveCounts {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) not_counted: u64,
}

#[derive(Debug, Default)]
struct Inner {
    records: Vec<Record>,
    details: Vec<FailureDetail>,
    /// Details kept so far, by [`detail_kind`].
    kept: [usize; 10],
}

/// Which cap a failure's detail counts against.
fn detail_kind(raw: RawOutcome) -> usize {
    match raw {
        RawOutcome::Status(_) | RawOutcome::Grpc(_) => 0,
        RawOutcome::Failed(outcome) => {
            1 + Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0)
        }
    }
}

impl RecordSink {
    /// Commits to one more request: from here on it will have exactly one
    /// record.
    pub(crate) fn begin(self: &Arc<Self>, clock: Clock, due: Instant) -> RecordGuard {
        self.sent.fetch_add(1, Ordering::Relaxed);
        RecordGuard {
            sink: Arc::clone(self),
            clock,
            due,
            done: false,
        }
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Requests ended so far: answered 2xx, failed, and refused after the
    /// listener closed in a stop drill (not counted). The report classifies
    /// exactly, once the close instant is known; this is the live view.
    pub(crate) fn counts(&self) -> LiveCounts {
        LiveCounts {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            not_counted: self.not_counted.load(Ordering::Relaxed),
        }
    }

    /// From `at_us` on, counts refused connects as not held against the
    /// server: called at the first signal of a stop drill.
    pub(crate) fn excuse_refused_from(&self, at_us: u64) {
        self.refused_excused_from_us
            .fetch_min(at_us, Ordering::Relaxed);
    }

    fn push(&self, record: Record, detail: Option<String>) {
        let excused_from = self.refused_excused_from_us.load(Ordering::Relaxed);
        let counter = match record.raw {
            raw if raw.is_ok() => &self.ok,
            RawOutcome::Failed(Outcome::Refused) if record.start_us >= excused_from => {
                &self.not_counted
            }
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let index = inner.records.len();
        inner.records.push(record);
        let kind = detail_kind(record.raw);
        if let Some(detail) = detail
            && inner.kept[kind] < MAX_DETAILS_PER_KIND
        {
            inner.kept[kind] += 1;
            inner.details.push(FailureDetail { index, detail });
        }
    }

    /// Takes the records out (at the end of the load).
    pub(crate) fn take(&self) -> (Vec<Record>, Vec<FailureDetail>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::take(&mut inner.records),
            std::mem::take(&mut inner.details),
        )
    }
}

/// The promise that one request gets exactly one record.
#[derive(Debug)]
pub(crate) struct RecordGuard {
    sink: Arc<RecordSink>,
    clock: Clock,
    due: Instant,
    done: bool,
}

/// How a request ended, as the client saw it.
#[derive(Debug)]
pub(crate) struct Ending {
    pub(crate) start: Instant,
    pub(crate) raw: RawOutcome,
    pub(crate) flags: u8,
    pub(crate) detail: Option<String>,
}

impl RecordGuard {
    /// When the request was due (its latency counts from here).
    pub(crate) fn due(&self) -> Instant {
        self.due
    }

    /// Writes the record.
    pub(crate) fn finish(mut self, ending: Ending) {
        self.done = true;
        let end = Instant::now();
        let record = Record {
            start_us: self.clock.us(ending.start),
            end_us: self.clock.us(end),
            latency_us: duration_us(end.saturating_duration_since(self.due)),
            raw: ending.raw,
            flags: ending.flags,
        };
        self.sink.push(record, ending.detail);
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Reached only when the request's task panicked or was dropped before
        // it ended: still one record, so the totals stay exact.
        let end = Instant::now();
        let record = Record {
            start_us: self.clock.us(self.due),
            end_us: self.clock.us(end),
            latency_us: duration_us(end.saturating_duration_since(self.due)),
            raw: RawOutcome::Failed(Outcome::Error),
            flags: 0,
        };
        let detail = if std::thread::panicking() {
            "the drill's request task panicked"
        } else {
            "the drill's request task was cancelled"
        };
        self.sink.push(record, Some(detail.to_owned()));
    }
}

pub(crate) fn duration_us(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_request_has_one_record() {
        let sink = Arc::new(RecordSink::default());
        let clock = Clock::start();
        let guard = sink.begin(clock, Instant::now());
        guard.finish(Ending {
            start: Instant::now(),
            raw: RawOutcome::Status(200),
            flags: flags::KEEPALIVE,
            detail: None,
        });
        let (records, details) = sink.take();
        assert_eq!(sink.sent(), 1);
        assert_eq!(records.len(), 1);
        assert!(records[0].has(flags::KEEPALIVE));
        assert!(details.is_empty());
        assert_eq!(
            sink.counts(),
            LiveCounts {
                ok: 1,
                failed: 0,
                not_counted: 0
            }
        );
    }

    #[test]
    fn refused_connects_after_a_stop_signal_are_counted_apart_live() {
        let sink = Arc::new(RecordSink::default());
        let clock = Clock::start();
        let refuse = |sink: &Arc<RecordSink>| {
            sink.begin(clock, Instant::now()).finish(Ending {
                start: Instant::now(),
                raw: RawOutcome::Failed(Outcome::Refused),
                flags: 0,
                detail: None,
            });
        };
        refuse(&sink);
        sink.excuse_refused_from(clock.now_us());
        refuse(&sink);
        sink.begin(clock, Instant::now()).finish(Ending {
            start: Instant::now(),
            raw: RawOutcome::Failed(Outcome::Reset),
            flags: 0,
            detail: None,
        });
        assert_eq!(
            sink.counts(),
            LiveCounts {
                ok: 0,
                failed: 2,
                not_counted: 1
            }
        );
    }

    #[test]
    fn a_dropped_request_still_has_one_record() {
        let sink = Arc::new(RecordSink::default());
        let guard = sink.begin(Clock::start(), Instant::now());
        drop(guard);
        let (records, details) = sink.take();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].raw, RawOutcome::Failed(Outcome::Error));
        assert!(details[0].detail.contains("cancelled"));
    }

    #[test]
    fn a_panicking_request_still_has_one_record() {
        let sink = Arc::new(RecordSink::default());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = sink.begin(Clock::start(), Instant::now());
            panic!("boom");
        }));
        assert!(result.is_err());
        let (records, details) = sink.take();
        assert_eq!(records.len(), 1);
        assert!(details[0].detail.contains("panicked"));
    }

    #[test]
    fn failure_details_are_capped() {
        let sink = Arc::new(RecordSink::default());
        let fail = |outcome| {
            sink.begin(Clock::start(), Instant::now()).finish(Ending {
                start: Instant::now(),
                raw: RawOutcome::Failed(outcome),
                flags: 0,
                detail: Some("failed".into()),
            });
        };
        for _ in 0..(MAX_DETAILS_PER_KIND + 5) {
            fail(Outcome::Refused);
        }
        fail(Outcome::Reset);
        let (records, details) = sink.take();
        assert_eq!(records.len(), MAX_DETAILS_PER_KIND + 6);
        assert_eq!(details.len(), MAX_DETAILS_PER_KIND + 1);
        assert_eq!(details.last().unwrap().index, MAX_DETAILS_PER_KIND + 5);
    }
}
