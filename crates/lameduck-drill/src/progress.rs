//! A live view of a running drill, for progress bars.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::events::EventLog;
use crate::process::Server;
use crate::record::{Clock, RecordSink};

/// Where a drill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stage {
    /// Starting the server.
    Starting,
    /// Waiting for the server to answer its readiness check.
    WaitingReady,
    /// Sending load.
    Loading,
    /// Load over; waiting for the signalled process to exit.
    WaitingExit,
    /// Stopping what is left of a spawned server.
    CleaningUp,
    /// Over.
    Done,
}

/// A handle to watch a drill from another task, got from
/// [`Drill::progress`](crate::Drill::progress). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stage: AtomicU8,
    duration: Duration,
    live: OnceLock<Live>,
}

#[derive(Debug)]
struct Live {
    clock: Clock,
    sink: Arc<RecordSink>,
    events: Arc<EventLog>,
    server: Arc<Server>,
}

/// The drill at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Where the drill is.
    pub stage: Stage,
    /// Time since the load started.
    pub elapsed: Duration,
    /// How long the load runs.
    pub duration: Duration,
    /// Requests started.
    pub sent: u64,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Requests that failed (but those in `not_counted`).
    pub failed: u64,
    /// In a stop drill, requests refused after the signal: the listener had
    /// closed, and the verdict does not hold them against the server.
    pub not_counted: u64,
    /// Signals sent.
    pub signals: usize,
    /// Whether the first signalled process has exited.
    pub exited: bool,
}

impl fmt::Display for Snapshot {
    /// One line for a progress bar: `loading · 1137 sent · 623 ok · 0 failed
    /// · 514 refused after close (not counted) · 1 signal(s) sent · exited`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            Stage::Starting => "starting the server",
            Stage::WaitingReady => "waiting until ready",
            Stage::Loading => "loading",
            Stage::WaitingExit => "waiting for the exit",
            Stage::CleaningUp => "cleaning up",
            Stage::Done => "done",
        };
        write!(
            f,
            "{stage} · {} sent · {} ok · {} failed",
            self.sent, self.ok, self.failed
        )?;
        if self.not_counted > 0 {
            write!(
                f,
                " · {} refused after close (not counted)",
                self.not_counted
            )?;
        }
        if self.signals > 0 {
            write!(f, " · {} signal(s) sent", self.signals)?;
        }
        if self.exited {
            f.write_str(" · exited")?;
        }
        Ok(())
    }
}

const STAGES: [Stage; 6] = [
    Stage::Starting,
    Stage::WaitingReady,
    Stage::Loading,
    Stage::WaitingExit,
    Stage::CleaningUp,
    Stage::Done,
];

impl Progress {
    pub(crate) fn new(duration: Duration) -> Self {
        Progress {
            inner: Arc::new(Inner {
                stage: AtomicU8::new(0),
                duration,
                live: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn set_stage(&self, stage: Stage) {
        let index = STAGES.iter().position(|s| *s == stage).unwrap_or(0);
        self.inner.stage.store(index as u8, Ordering::Relaxed);
    }

    pub(crate) fn start_load(
        &self,
        clock: Clock,
        sink: Arc<RecordSink>,
        events: Arc<EventLog>,
        server: Arc<Server>,
    ) {
        let _ = self.inner.live.set(Live {
            clock,
            sink,
            events,
            server,
        });
        self.set_stage(Stage::Loading);
    }

    /// The drill now.
    pub fn snapshot(&self) -> Snapshot {
        let stage =
            STAGES[usize::from(self.inner.stage.load(Ordering::Relaxed)).min(STAGES.len() - 1)];
        let mut snapshot = Snapshot {
            stage,
            elapsed: Duration::ZERO,
            duration: self.inner.duration,
            sent: 0,
            ok: 0,
            failed: 0,
            not_counted: 0,
            signals: 0,
            exited: false,
        };
        if let Some(live) = self.inner.live.get() {
            snapshot.elapsed = live.clock.t0().elapsed();
            snapshot.sent = live.sink.sent();
            let counts = live.sink.counts();
            (snapshot.ok, snapshot.failed, snapshot.not_counted) =
                (counts.ok, counts.failed, counts.not_counted);
            let first = live.events.first_signalled();
            snapshot.signals = live.events.signals_sent();
            snapshot.exited = first.is_some_and(|pid| live.server.exit_of(pid).is_some());
        }
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_separates_refused_after_close_from_failed() {
        let mut snapshot = Progress::new(Duration::from_secs(1)).snapshot();
        snapshot.stage = Stage::Loading;
        (snapshot.sent, snapshot.ok, snapshot.failed) = (1137, 623, 0);
        snapshot.not_counted = 514;
        snapshot.signals = 1;
        assert_eq!(
            snapshot.to_string(),
            "loading · 1137 sent · 623 ok · 0 failed · 514 refused after close (not counted) \
             · 1 signal(s) sent"
        );
        snapshot.not_counted = 0;
        assert!(!snapshot.to_string().contains("not counted"));
    }
}
