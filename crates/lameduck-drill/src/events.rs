//! What the drill observed besides requests and exits: signals sent, probes,
//! GOAWAYs. Everything is kept raw and interpreted once the drill is
//! over, when all instants are known.

use std::sync::Mutex;

use crate::outcome::Outcome;

/// A signal the drill sent (or failed to send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SentSignal {
    pub(crate) at_us: u64,
    pub(crate) signal: crate::Signal,
    pub(crate) pid: Option<u32>,
    pub(crate) error: Option<String>,
}

/// In a restart drill, what followed one signal: the new process that took
/// over the listening socket, if one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestartSeen {
    /// The signal, as its index in the signals sent.
    pub(crate) signal: usize,
    /// The process it went to (`None` when it was not delivered).
    pub(crate) pid: Option<u32>,
    /// The new process serving at `until_us`, and when it was first seen.
    pub(crate) new_pid: Option<u32>,
    pub(crate) seen_us: Option<u64>,
    /// A new process that was seen but no longer served at `until_us`.
    pub(crate) gone_pid: Option<u32>,
    /// Until when the drill looked: just before the next signal, the end of
    /// the drill, or the moment nothing was left to look for.
    pub(crate) until_us: u64,
    /// Whether, at `until_us`, nothing was left that could bring in a new
    /// process (see `RestartEvent::nothing_left`).
    pub(crate) nothing_left: bool,
    /// The process signalled is a supervisor: it keeps its PID and
    /// replaced a worker, so nothing replaced *it*.
    pub(crate) supervisor: bool,
}

/// What one readiness probe saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeResult {
    /// An HTTP answer with this status.
    Status(u16),
    /// No HTTP answer.
    Failed(Outcome),
}

impl ProbeResult {
    pub(crate) fn is_ready(self) -> bool {
        matches!(self, ProbeResult::Status(200..=299))
    }
}

/// One readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadinessProbe {
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    pub(crate) result: ProbeResult,
}

/// Everything observed, in the order it happened.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    inner: Mutex<Events>,
}

/// The raw observations.
#[derive(Debug, Default, Clone)]
pub(crate) struct Events {
    pub(crate) signals: Vec<SentSignal>,
    pub(crate) readiness: Vec<ReadinessProbe>,
    /// Start instants of bare connects (the listener probe) that were refused.
    pub(crate) refused_probes: Vec<u64>,
    /// Bare connects tried.
    pub(crate) connect_probes: u64,
    /// Instants at which a keep-alive HTTP/2 connection was closed by the
    /// server with GOAWAY.
    pub(crate) goaways: Vec<u64>,
    /// In a restart drill, what followed each signal.
    pub(crate) restarts: Vec<RestartSeen>,
}

impl EventLog {
    fn with<R>(&self, f: impl FnOnce(&mut Events) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn signal(&self, event: SentSignal) {
        self.with(|e| e.signals.push(event));
    }

    pub(crate) fn restart(&self, seen: RestartSeen) {
        self.with(|e| e.restarts.push(seen));
    }

    pub(crate) fn readiness(&self, probe: ReadinessProbe) {
        self.with(|e| e.readiness.push(probe));
    }

    pub(crate) fn connect_probe(&self, start_us: u64, refused: bool) {
        self.with(|e| {
            e.connect_probes += 1;
            if refused {
                e.refused_probes.push(start_us);
            }
        });
    }

    pub(crate) fn goaway(&self, at_us: u64) {
        self.with(|e| e.goaways.push(at_us));
    }

    /// The PID the first delivered signal went to.
    pub(crate) fn first_signalled(&self) -> Option<u32> {
        self.with(|e| {
            e.signals
                .iter()
                .find(|s| s.error.is_none())
                .and_then(|s| s.pid)
        })
    }

    pub(crate) fn signals_sent(&self) -> usize {
        self.with(|e| e.signals.len())
    }

    pub(crate) fn snapshot(&self) -> Events {
        self.with(|e| e.clone())
    }
}
