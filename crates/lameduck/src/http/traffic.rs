//! An HTTP server's traffic, for the adaptive drain and the flight record:
//! added up from each connection's own counters when the app samples it,
//! so that a request pays nothing more for it. Probes answered on the main
//! listener are left out; the admin listener is not counted at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::shared::{Orphans, Shared};
use crate::{Context, TrafficCounts};

/// What a server (or a layer) counts besides its connections' counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Connections registered so far.
    pub(crate) accepted: AtomicU64,
    /// Requests (probes left out) of the connections that closed.
    pub(crate) retired: AtomicU64,
    /// Requests through a [`DrainLayer`](super::DrainLayer), which sees no
    /// connection.
    pub(crate) layered: AtomicU64,
    /// The most requests counted finished so far: the count only grows.
    finished: AtomicU64,
}

impl Shared {
    /// The server's traffic so far.
    pub(crate) fn traffic(&self) -> TrafficCounts {
        let c = &self.counters;
        // Relaxed: the counts are read once each, and nothing is ordered
        // by them; the lock keeps a closing connection from being counted
        // twice, or not at all.
        let (requests, in_flight) = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            let mut requests =
                c.retired.load(Ordering::Relaxed) + c.layered.load(Ordering::Relaxed);
            let mut in_flight = 0;
            for (_, conn) in conns.iter() {
                requests += conn.served() as u64;
                in_flight += conn.in_flight() as u64;
            }
            (requests, in_flight)
        };
        let counts = TrafficCounts::new(requests)
            .with_connections(c.accepted.load(Ordering::Relaxed))
            .with_requests(requests);
        if matches!(self.orphans, Orphans::Spawn) {
            // A layer does not see its requests end.
            return counts;
        }
        let finished = requests.saturating_sub(in_flight);
        counts.with_finished(
            c.finished
                .fetch_max(finished, Ordering::Relaxed)
                .max(finished),
        )
    }
}

impl Counters {
    /// The server's last counts, once it is gone: every connection has
    /// closed (each held the server), so each of its requests is retired
    /// and over.
    fn last(&self) -> TrafficCounts {
        let requests = self.retired.load(Ordering::Relaxed);
        TrafficCounts::new(requests)
            .with_connections(self.accepted.load(Ordering::Relaxed))
            .with_requests(requests)
            .with_finished(requests)
    }
}

/// Reports `shared`'s traffic to the app, under the component's name, for
/// as long as it lives.
///
/// Once a server is gone the source gives its last counts in one more
/// sample, then ends: the requests that ended after the last sample that
/// found it running (an event stream ended at Stopping, its connection
/// closed and the server's run over, all within one tick) count as
/// finished, not as still running when sampling stopped.
pub(crate) fn watch(ctx: &Context, shared: &Arc<Shared>) {
    // A layer does not see its requests end: it has nothing to add.
    let counters = matches!(shared.orphans, Orphans::Server(_)).then(|| shared.counters.clone());
    let shared = Arc::downgrade(shared);
    let told = AtomicBool::new(false);
    ctx.app().traffic_source(ctx.name(), move || {
        if let Some(shared) = shared.upgrade() {
            return Some(shared.traffic());
        }
        let counters = counters.as_ref()?;
        (!told.swap(true, Ordering::Relaxed)).then(|| counters.last())
    });
}
