//! Per-request counts for the lifecycle metrics (feature `metrics`): one
//! relaxed atomic add into a fixed array per request, summed up only when
//! something scrapes them. No label lookup, no lock, no allocation on the
//! request's path.
// Without feature `metrics` nothing reads the counts, and none is made.
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use super::conn::Proto;
use super::shared::Shared;
use crate::Phase;

/// How a request ended, as the metrics count it: when its response's
/// last byte was given (or it was given up), in the phase of that moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Outcome {
    /// The service gave its response, body and all (an event stream the
    /// shutdown ended at a message boundary included).
    Answered = 0,
    /// The cancel signal came first: `503` with `Retry-After`.
    Unavailable = 1,
    /// The service returned an error: the connection was closed.
    Failed = 2,
    /// Dropped before any response: the client went away, or the hard
    /// deadline aborted the handler.
    Aborted = 3,
    /// The response had begun and did not end: its body failed, or was
    /// dropped before its end (the client went away, the connection was
    /// closed).
    Cut = 4,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 5] = [
        Outcome::Answered,
        Outcome::Unavailable,
        Outcome::Failed,
        Outcome::Aborted,
        Outcome::Cut,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Unavailable => "unavailable",
            Outcome::Failed => "failed",
            Outcome::Aborted => "aborted",
            Outcome::Cut => "cut",
        }
    }
}

const PHASES: usize = Phase::ALL.len();
const OUTCOMES: usize = Outcome::ALL.len();

/// The states a connection is counted in.
pub(crate) const CONN_STATES: [&str; 4] = ["new", "idle", "busy", "upgraded"];

/// One server's (or one layer's) counts.
pub(crate) struct HttpStats {
    /// Requests by the phase they ended in and how.
    requests: [[AtomicU64; OUTCOMES]; PHASES],
    /// The app's phase, as `Phase as u8`.
    phase: std::sync::Arc<AtomicU8>,
    /// The server's open connections, once it runs.
    conns: Mutex<Option<Weak<Shared>>>,
}

impl std::fmt::Debug for HttpStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStats").finish_non_exhaustive()
    }
}

impl HttpStats {
    pub(crate) fn new(phase: std::sync::Arc<AtomicU8>) -> Self {
        Self {
            requests: Default::default(),
            phase,
            conns: Mutex::new(None),
        }
    }

    /// Counts one request that ended `how`, in the app's phase now.
    #[inline]
    pub(crate) fn count(&self, how: Outcome) {
        // Relaxed, both: a count lands in the phase it was seen in, and a
        // scrape reads each cell once; nothing is ordered by them.
        let phase = usize::from(self.phase.load(Ordering::Relaxed)).min(PHASES - 1);
        self.requests[phase][how as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every count, by phase and outcome.
    pub(crate) fn requests(&self) -> impl Iterator<Item = (Phase, Outcome, u64)> + '_ {
        Phase::ALL
            .into_iter()
            .enumerate()
            .flat_map(move |(p, phase)| {
                Outcome::ALL.into_iter().map(move |o| {
                    (
                        phase,
                        o,
                        self.requests[p][o as usize].load(Ordering::Relaxed),
                    )
                })
            })
    }

    /// Follows `shared`'s open connections.
    pub(crate) fn watch_connections(&self, shared: Weak<Shared>) {
        *self.conns.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared);
    }

    /// Open connections in each of [`CONN_STATES`].
    pub(crate) fn connections(&self) -> [u64; 4] {
        let mut counts = [0; 4];
        let shared = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(Weak::upgrade);
        if let Some(shared) = shared {
            for (_, conn) in shared
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                let state = if conn.proto() == Proto::Upgraded {
                    3
                } else if conn.in_flight() > 0 || conn.has_unparsed() {
                    2
                } else if conn.is_fresh() {
                    0
                } else {
                    1
                };
                counts[state] += 1;
            }
        }
        counts
    }
}

/// The counts of the component whose context this is, when its app has
/// metrics (feature `metrics`); `None` costs a request nothing but a
/// branch.
pub(crate) fn for_component(ctx: &crate::Context) -> Option<std::sync::Arc<HttpStats>> {
    #[cfg(feature = "metrics")]
    return crate::metrics::hub_of(ctx.app()).map(|hub| hub.http_stats(ctx.name(), ctx.app()));
    #[cfg(not(feature = "metrics"))]
    {
        let _ = ctx;
        None
    }
}
