//! State shared by the server, its connections and the per-request
//! middleware: the phase as one atomic, the tracker, where orphaned handlers
//! go, and each connection's counters.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Probes;
use crate::{Context, Tracker, WorkGuard};

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
}

impl Signals {
    pub(crate) fn new(
        draining: CancellationToken,
        stopping: CancellationToken,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            stage: AtomicU8::new(Stage::Running as u8),
            draining,
            stopping,
            cancel,
            changed: watch::Sender::new(Stage::Running),
        }
    }

    pub(crate) fn from_context(ctx: &Context) -> Self {
        Self::new(
            ctx.draining_token(),
            ctx.stopping_token(),
            ctx.cancel_token(),
        )
    }

    /// The stage now. Acquire pairs with the release in `set`, so whoever
    /// sees a stage also sees everything done before it was entered.
    #[inline]
    pub(crate) fn stage(&self) -> Stage {
        Stage::from_u8(self.stage.load(Ordering::Acquire))
    }

    fn set(&self, stage: Stage) {
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
    /// still open are closed.
    pub(crate) kill: CancellationToken,
    /// A never-used connection's wait for its first request at Stopping.
    pub(crate) first_request_grace: std::time::Duration,
}

impl Shared {
    #[inline]
    pub(crate) fn stage(&self) -> Stage {
        self.signals.stage()
    }
}

/// The protocol a connection turned out to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Proto {
    Unknown = 0,
    H1 = 1,
    H2 = 2,
    Upgraded = 3,
}

/// One connection's counters, shared by its IO wrapper, its service and its
/// driver task.
#[derive(Debug)]
pub(crate) struct ConnState {
    proto: AtomicU8,
    /// Requests dispatched whose response body has not finished.
    in_flight: AtomicUsize,
    /// Requests dispatched so far.
    requests: AtomicUsize,
    /// Bytes were read that no dispatched request accounts for yet: hyper
    /// holds (part of) a request in its buffer.
    unparsed: AtomicBool,
    pub(crate) accepted: Instant,
    /// Wakes the driver task to look at the connection again.
    pub(crate) notify: Notify,
    /// The tracked work of an upgraded connection; released when the
    /// upgraded IO is dropped.
    upgrade: Mutex<Option<WorkGuard>>,
}

impl ConnState {
    pub(crate) fn new() -> Self {
        Self {
            proto: AtomicU8::new(Proto::Unknown as u8),
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            unparsed: AtomicBool::new(false),
            accepted: Instant::now(),
            notify: Notify::new(),
            upgrade: Mutex::new(None),
        }
    }

    #[inline]
    pub(crate) fn proto(&self) -> Proto {
        match self.proto.load(Ordering::Acquire) {
            0 => Proto::Unknown,
            1 => Proto::H1,
            2 => Proto::H2,
            _ => Proto::Upgraded,
        }
    }

    pub(crate) fn set_proto(&self, proto: Proto) {
        self.proto.store(proto as u8, Ordering::Release);
        if proto == Proto::H2 {
            // The driver sends GOAWAY to HTTP/2 connections while draining;
            // it learns the protocol only now.
            self.notify.notify_one();
        }
    }

    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        self.requests.load(Ordering::Relaxed) == 0
    }

    #[inline]
    pub(crate) fn has_unparsed(&self) -> bool {
        self.unparsed.load(Ordering::Acquire)
    }

    #[inline]
    pub(crate) fn read_some(&self) {
        self.unparsed.store(true, Ordering::Release);
    }

    /// A request was handed to the service: it is in flight until the
    /// returned guard drops (with the response body).
    pub(crate) fn dispatch(self: &Arc<Self>) -> InFlight {
        // The order matters to the IO wrapper, which closes an idle
        // connection only if it sees neither: count first, then clear.
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.unparsed.store(false, Ordering::Release);
        InFlight { conn: self.clone() }
    }

    /// The connection was upgraded: its tracked work moves to the
    /// connection and lives as long as the upgraded IO.
    pub(crate) fn upgraded(&self, guard: Option<WorkGuard>) {
        self.proto.store(Proto::Upgraded as u8, Ordering::Release);
        *self.upgrade.lock().unwrap_or_else(|e| e.into_inner()) = guard;
    }

    pub(crate) fn release_upgrade(&self) {
        let guard = self
            .upgrade
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(guard);
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight {
    conn: Arc<ConnState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
