//! An HTTP server's traffic, for the adaptive drain and the flight record:
//! added up from each connection's own counters when the app samples it,
//! so that a request pays nothing more for it. Probes answered on the main
//! listener are left out; the admin listener is not counted at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Reports `shared`'s traffic to the app, under the component's name, for
/// as long as it lives.
pub(crate) fn watch(ctx: &Context, shared: &Arc<Shared>) {
    let shared = Arc::downgrade(shared);
    ctx.app()
        .traffic_source(ctx.name(), move || shared.upgrade().map(|s| s.traffic()));
}
