//! State shared by the server, its connections and the per-request
//! middleware: the phase as one atomic, the tracker, where orphaned handlers
//! go, and each connection's counters.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use slab::Slab;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Probes;
use super::conn::ConnState;
use super::fired::Fired;
use crate::{Context, Phase, Tracker};

pub(crate) type Orphan = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How far the shutdown has gone, as the HTTP code sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Stage {
    Running = 0,
    Draining = 1,
    Stopping = 2,
    Cancelled = 3,
}

impl Stage {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Stage::Running,
            1 => Stage::Draining,
            2 => Stage::Stopping,
            _ => Stage::Cancelled,
        }
    }
}

/// The three stop signals of a component, plus the stage as an atomic.
///
/// `CancellationToken::is_cancelled` takes a mutex; every request and every
/// read asks "how far are we", so the answer is mirrored into one atomic
/// that [`follow`](Self::follow) keeps up to date.
#[derive(Debug)]
pub(crate) struct Signals {
    stage: AtomicU8,
    pub(crate) draining: CancellationToken,
    pub(crate) stopping: CancellationToken,
    pub(crate) cancel: CancellationToken,
    changed: watch::Sender<Stage>,
    /// When this server's Stopping began.
    stopping_at: OnceLock<Instant>,
    /// Whether `stopping` or `cancel` has fired, without their lock.
    stop: Fired,
    /// How long an upgraded connection has for its close handshake once
    /// Stopping has begun.
    close_window: Duration,
    /// The app's phase (`Phase as u8`), set synchronously with the phase
    /// itself: the tokens above are mirrored into `stage` by a task, a hop
    /// later, and a request that saw the app Draining must be answered as
    /// Draining.
    app_phase: Option<Arc<AtomicU8>>,
    /// The app's health registry, for handlers that answer from it (the
    /// gRPC health service).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) health: Option<crate::Health>,
}

impl Signals {
    pub(crate) fn new(
        draining: CancellationToken,
        stopping: CancellationToken,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            stage: AtomicU8::new(Stage::Running as u8),
            stop: Fired::watch(&[&stopping, &cancel]),
            draining,
            stopping,
            cancel,
            changed: watch::Sender::new(Stage::Running),
            stopping_at: OnceLock::new(),
            close_window: super::DEFAULT_CLOSE_HANDSHAKE_WINDOW,
            app_phase: None,
            health: None,
        }
    }

    pub(crate) fn from_context(ctx: &Context) -> Self {
        Self {
            app_phase: Some(ctx.app().phase_cell()),
            health: Some(ctx.app().health().clone()),
            ..Self::new(
                ctx.draining_token(),
                ctx.stopping_token(),
                ctx.cancel_token(),
            )
        }
    }

    /// The stage now. Acquire pairs with the release in `set`, so whoever
    /// sees a stage also sees everything done before it was entered.
    #[inline]
    pub(crate) fn stage(&self) -> Stage {
        let own = self.stage.load(Ordering::Acquire);
        // Draining and Cancelling are the app's, not each component's: the
        // app's phase says them first.
        let app = self
            .app_phase
            .as_ref()
            .map_or(0, |phase| match phase.load(Ordering::Acquire) {
                p if p >= Phase::Cancelling as u8 => Stage::Cancelled as u8,
                p if p >= Phase::Draining as u8 => Stage::Draining as u8,
                _ => Stage::Running as u8,
            });
        Stage::from_u8(own.max(app))
    }

    /// Sets the close handshake window of upgraded connections.
    pub(crate) fn with_close_window(mut self, window: Duration) -> Self {
        self.close_window = window;
        self
    }

    /// When an upgraded connection must have finished its close handshake:
    /// the close handshake window after Stopping began, once it has.
    ///
    /// The tokens fire first and [`follow`](Self::follow) marks the stage a
    /// hop later, so a handler woken by the stopping token can ask before
    /// the follower has run: whoever first sees the token fired starts the
    /// window. Answering `None` then would leave that handler without a
    /// deadline — nothing wakes it when the follower sets one — and a deaf
    /// client would hold Stopping until the cancel signal.
    pub(crate) fn close_deadline(&self) -> Option<Instant> {
        let at = match self.stopping_at.get() {
            Some(&at) => at,
            // An atomic, not the tokens' lock: asked at every read and
            // write of every upgraded connection.
            None if self.stop.fired() => *self.stopping_at.get_or_init(Instant::now),
            None => return None,
        };
        Some(at + self.close_window)
    }

    /// Whether the stopping or the cancel signal has fired: one atomic
    /// load, and [`close_deadline`](Self::close_deadline) is known once it
    /// is true.
    #[inline]
    pub(crate) fn stop_fired(&self) -> bool {
        self.stop.fired()
    }

    /// Fired once the stopping or the cancel signal has, and
    /// [`close_deadline`](Self::close_deadline) is known: a task that waits
    /// on it wakes to start the close handshake window.
    pub(crate) fn stop_token(&self) -> &CancellationToken {
        self.stop.token()
    }

    fn set(&self, stage: Stage) {
        if stage >= Stage::Stopping {
            self.stopping_at.get_or_init(Instant::now);
        }
        self.stage.fetch_max(stage as u8, Ordering::AcqRel);
        self.changed.send_replace(self.stage());
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Stage> {
        self.changed.subscribe()
    }

    /// Mirrors the tokens into the atomic as they fire; returns once
    /// cancelled. A token fired out of order (a cancel with no drain, say)
    /// still moves the stage straight to the furthest one.
    pub(crate) async fn follow(self: Arc<Self>) {
        tokio::select! { biased; () = self.cancel.cancelled() => {}, () = self.stopping.cancelled() => {}, () = self.draining.cancelled() => {} }
        self.catch_up();
        if self.stage() < Stage::Stopping {
            tokio::select! { biased; () = self.cancel.cancelled() => {}, () = self.stopping.cancelled() => {} }
            self.catch_up();
        }
        self.cancel.cancelled().await;
        self.catch_up();
    }

    fn catch_up(&self) {
        let stage = if self.cancel.is_cancelled() {
            Stage::Cancelled
        } else if self.stopping.is_cancelled() {
            Stage::Stopping
        } else if self.draining.is_cancelled() {
            Stage::Draining
        } else {
            Stage::Running
        };
        self.set(stage);
    }
}

/// Where a cancelled handler goes to finish on its own while its client
/// already has a 503.
#[derive(Debug)]
pub(crate) enum Orphans {
    /// Onto the runtime: used by the layer, which owns no task set.
    Spawn,
    /// Into the server's task set, which aborts them at the hard deadline.
    Server(mpsc::UnboundedSender<Orphan>),
}

impl Orphans {
    pub(crate) fn adopt(&self, orphan: Orphan) {
        match self {
            Orphans::Spawn => {
                tokio::spawn(orphan);
            }
            Orphans::Server(tx) => {
                if let Err(mpsc::error::SendError(orphan)) = tx.send(orphan) {
                    // The server is gone (its run was aborted); nobody is
                    // left to wait for the handler, but it may still finish.
                    tokio::spawn(orphan);
                }
            }
        }
    }
}

/// What every request of one server (or one layer) shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) signals: Arc<Signals>,
    pub(crate) tracker: Tracker,
    pub(crate) orphans: Orphans,
    /// Probes answered before the service, when mounted on the main listener.
    pub(crate) probes: Option<Probes>,
    /// Fired when the server's run ends or is aborted: upgraded connections
    /// still open are closed. Fire it with [`kill`](Self::kill).
    pub(crate) kill: CancellationToken,
    /// Set before `kill` fires: read without the token's lock.
    pub(crate) killed: AtomicBool,
    /// A never-used connection's wait for its first request at Stopping,
    /// and a part-sent request head's wait for its next byte.
    pub(crate) first_request_grace: Duration,
    /// Every connection open now: rung at each stage change, swept for
    /// their timeouts, named in the report if they hold the shutdown up.
    pub(crate) conns: Mutex<Slab<Arc<ConnState>>>,
    /// HTTP/1: how long a keep-alive connection may wait for its next
    /// request, and the `Keep-Alive` header that announces it (none for a
    /// timeout too short to announce).
    pub(crate) idle_timeout: Option<(Duration, Option<http::HeaderValue>)>,
    /// HTTP/1: how long a request head may take from its first byte.
    pub(crate) head_timeout: Option<Duration>,
    /// Requests counted for the lifecycle metrics, when the app has them.
    pub(crate) stats: Option<Arc<super::stats::HttpStats>>,
    /// The traffic's counts beyond each connection's own.
    /// Shared with the traffic's sampler, which reads the last of them
    /// once the server is gone.
    pub(crate) counters: Arc<super::traffic::Counters>,
}

impl Shared {
    pub(crate) fn new(signals: Arc<Signals>, tracker: Tracker, orphans: Orphans) -> Self {
        Self {
            signals,
            tracker,
            orphans,
            probes: None,
            kill: CancellationToken::new(),
            killed: AtomicBool::new(false),
            first_request_grace: Duration::ZERO,
            conns: Mutex::new(Slab::new()),
            idle_timeout: None,
            head_timeout: None,
            stats: None,
            counters: Arc::default(),
        }
    }

    /// Ends the upgraded connections still open: the server's run is over.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.cancel();
    }

    /// Whether [`kill`](Self::kill) has been called: one atomic load.
    #[inline]
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn stage(&self) -> Stage {
        self.signals.stage()
    }

    /// Records how `guard`'s request ended, for the report, when the
    /// cancel signal has fired (before it, the report has no use for it,
    /// and nothing is kept).
    pub(crate) fn mark_after_cancel(
        &self,
        guard: Option<&crate::WorkGuard>,
        how: crate::tracker::Mark,
    ) {
        if let Some(guard) = guard
            && self.stage() >= Stage::Cancelled
        {
            self.tracker.mark(guard, how);
        }
    }

    /// Counts one request for the metrics, when the app has them.
    #[inline]
    pub(crate) fn count(&self, how: super::stats::Outcome) {
        if let Some(stats) = &self.stats {
            stats.count(how);
        }
    }

    /// Keeps `conn` among the open connections until the returned guard
    /// drops (with the connection's task).
    pub(crate) fn register(self: &Arc<Self>, conn: &Arc<ConnState>) -> Registered {
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        let key = self.open_conns().insert(conn.clone());
        Registered {
            shared: self.clone(),
            key,
        }
    }

    fn open_conns(&self) -> std::sync::MutexGuard<'_, Slab<Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connections open now, described for a report.
    pub(crate) fn describe_open(&self) -> Vec<String> {
        let now = Instant::now();
        self.open_conns()
            .iter()
            .map(|(_, c)| c.describe(now))
            .collect()
    }

    /// The connections open now, for an inventory.
    pub(crate) fn inventory(&self) -> Vec<crate::inventory::Connection> {
        let now = Instant::now();
        self.open_conns()
            .iter()
            .map(|(_, c)| c.inventory(now))
            .collect()
    }

    /// Wakes every connection's driver, at each stage change; and, while
    /// running, looks at each connection's timeouts (HTTP/1 idle and
    /// request-head) every tenth of the shorter one (between 10 ms and 1 s):
    /// one task for all, so that a request pays nothing for them.
    pub(crate) async fn watch_connections(self: Arc<Self>) {
        let mut stages = self.signals.subscribe();
        let idle = self.idle_timeout.as_ref().map(|(d, _)| *d);
        let shortest = idle.into_iter().chain(self.head_timeout).min();
        let tick =
            shortest.map(|d| (d / 10).clamp(Duration::from_millis(10), Duration::from_secs(1)));
        let mut sweep = tokio::time::interval(tick.unwrap_or(Duration::from_secs(3600)));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = stages.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    for (_, conn) in self.open_conns().iter() {
                        conn.ring();
                    }
                }
                _ = sweep.tick(), if tick.is_some() && self.stage() == Stage::Running => {
                    let now = crate::tracker::coarse_nanos();
                    for (_, conn) in self.open_conns().iter() {
                        conn.sweep(now, idle, self.head_timeout);
                    }
                }
            }
        }
    }
}

/// A connection's place among the open ones; dropping it removes it.
pub(crate) struct Registered {
    shared: Arc<Shared>,
    key: usize,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut conns = self.shared.open_conns();
        if let Some(conn) = conns.try_remove(self.key) {
            // Under the lock: the traffic's sampler sees the connection's
            // requests either here or among the open ones, never both.
            let served = conn.served() as u64;
            self.shared
                .counters
                .retired
                .fetch_add(served, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals() -> Signals {
        Signals::new(
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        )
        .with_close_window(Duration::from_secs(2))
    }

    #[tokio::test(start_paused = true)]
    async fn the_close_deadline_is_known_as_soon_as_the_stopping_token_fires_before_the_stage_follows()
     {
        let signals = signals();
        assert_eq!(signals.close_deadline(), None);
        let fired = Instant::now();
        signals.stopping.cancel();
        // No follower has run: the stage is still Running.
        assert_eq!(signals.stage(), Stage::Running);
        let deadline = signals
            .close_deadline()
            .expect("a deadline once the token fired");
        assert_eq!(deadline, fired + Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(1)).await;
        // The follower's later mark keeps the window where it began.
        signals.catch_up();
        assert_eq!(signals.stage(), Stage::Stopping);
        assert_eq!(signals.close_deadline(), Some(deadline));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_with_no_stop_before_it_also_starts_the_close_window() {
        let signals = signals();
        signals.cancel.cancel();
        assert!(signals.close_deadline().is_some());
    }
}
