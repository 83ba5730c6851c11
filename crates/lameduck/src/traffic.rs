//! Traffic: what the serving listeners see arrive, sampled every 100 ms, for
//! the adaptive drain (see [`Budget`](crate::Budget)'s drain window) and the
//! flight record.
//!
//! Every [`http::Server`](crate::http::Server) and
//! [`DrainLayer`](crate::http::DrainLayer) counts its own traffic; a server
//! of your own reports its counts with
//! [`AppHandle::traffic_source`](crate::AppHandle::traffic_source). Counting
//! costs a request nothing the server did not already do: the sampler adds
//! up the connections' own counters ten times a second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

mod log;
pub(crate) mod quiet;

pub(crate) use log::{Evidence, Log, Tick};

/// How often the traffic is sampled: the resolution of the adaptive drain
/// and of the flight record's traffic.
pub const TRAFFIC_TICK: Duration = Duration::from_millis(100);

/// One listener's traffic so far: cumulative counts, as a
/// [traffic source](crate::AppHandle::traffic_source) reports them.
///
/// # Examples
///
/// ```
/// use lameduck::TrafficCounts;
///
/// // A server that sees requests: each one is an arrival.
/// let counts = TrafficCounts::new(120).with_requests(120).with_connections(7);
/// assert_eq!(counts.arrivals, 120);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrafficCounts {
    /// Arrivals so far: what the adaptive drain waits to stop. A server
    /// that sees requests counts each request it starts; one that sees only
    /// connections counts each new connection and each read on an open one.
    /// Probes and admin traffic never count.
    pub arrivals: u64,
    /// Connections accepted so far (probes' included: a health check on the
    /// main port opens connections too).
    pub connections: u64,
    /// Requests started so far, probes left out; `None` when the source
    /// cannot see requests.
    pub requests: Option<u64>,
    /// Requests finished so far, when the source can tell.
    pub finished: Option<u64>,
}

impl TrafficCounts {
    /// Counts with `arrivals` so far and nothing else known.
    pub fn new(arrivals: u64) -> Self {
        Self {
            arrivals,
            ..Self::default()
        }
    }

    /// With `n` connections accepted so far.
    pub fn with_connections(mut self, n: u64) -> Self {
        self.connections = n;
        self
    }

    /// With `n` requests started so far.
    pub fn with_requests(mut self, n: u64) -> Self {
        self.requests = Some(n);
        self
    }

    /// With `n` requests finished so far.
    pub fn with_finished(mut self, n: u64) -> Self {
        self.finished = Some(n);
        self
    }
}

/// Reads one source's counts; `None` once the listener is gone.
pub(crate) type SampleFn = Arc<dyn Fn() -> Option<TrafficCounts> + Send + Sync>;

struct Source {
    /// Index of its listener in the log (sources of one name share it: a
    /// restarted server goes on in the same series).
    listener: usize,
    sample: SampleFn,
    /// Its counts at the last sample (at its registration, before the
    /// first); `None` until it gave any.
    last: Option<TrafficCounts>,
}

/// An app's traffic sources and what they reported.
#[derive(Default)]
pub(crate) struct Traffic {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sources: Vec<Source>,
    log: Log,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic").finish_non_exhaustive()
    }
}

impl Traffic {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a source for `listener`; what it counted so far is its
    /// baseline, not traffic.
    pub(crate) fn add(&self, listener: Arc<str>, sample: SampleFn) {
        let last = sample();
        let mut inner = self.lock();
        let listener = inner.log.listener(listener);
        inner.sources.push(Source {
            listener,
            sample,
            last,
        });
    }

    /// Reads every source at `now` and logs what arrived since the last
    /// sample. Sources that are gone are dropped.
    pub(crate) fn sample(&self, now: Instant) {
        let mut inner = self.lock();
        let Inner { sources, log } = &mut *inner;
        let mut tick = Tick::new(now);
        sources.retain_mut(|source| {
            let Some(counts) = (source.sample)() else {
                return false;
            };
            log.saw(source.listener, &counts);
            if let Some(last) = source.last.replace(counts) {
                tick.add(source.listener, &last, &counts);
            }
            true
        });
        log.push(tick);
    }

    /// Whether any listener reports its traffic.
    pub(crate) fn has_sources(&self) -> bool {
        !self.lock().sources.is_empty()
    }

    /// Starts keeping every tick from now on (the look-back stays): the
    /// drain began.
    pub(crate) fn keep_from_now(&self) {
        self.lock().log.keep();
    }

    /// Reads the log.
    pub(crate) fn with_log<R>(&self, f: impl FnOnce(&Log) -> R) -> R {
        f(&self.lock().log)
    }

    /// Samples `traffic` every [`TRAFFIC_TICK`] until aborted; while the app
    /// drains, tells the driver after each sample.
    pub(crate) async fn run(app: crate::AppHandle) {
        let mut tick = tokio::time::interval(TRAFFIC_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        app.traffic().lock().log.start(Instant::now());
        // The first tick completes at once: it is the start, not a sample.
        tick.tick().await;
        loop {
            let now = tick.tick().await;
            app.traffic().sample(now);
            if app.phase() == crate::Phase::Draining {
                app.send(crate::app::Event::TrafficSampled);
            }
        }
    }
}
