//! One connection's state, shared by its IO wrapper, its service, the
//! response bodies it sends and its driver task.
//!
//! The hard part is knowing when a request is over. A handler's response
//! body can end long before its bytes are on the wire: an 8 MiB body given
//! as one buffer "ends" the moment hyper takes the buffer, and hyper then
//! spends seconds writing it to a slow client. Until the last byte has been
//! handed to the socket the request is in flight — the shutdown must wait
//! for it, name it at a deadline, and never take its connection for idle.
//! So a body that ends *parks* its tracking here, and the IO wrapper, which
//! sees what is written, releases it:
//!
//! - HTTP/1: hyper flushes its write buffer into the socket before it
//!   flushes the socket itself, so the first flush that completes after a
//!   body ended means every byte of it was handed over.
//! - HTTP/2: many streams share the socket and h2 queues each one's data
//!   behind its flow-control window. The IO wrapper reads the frames going
//!   out (see `server/wire.rs`) and releases a parked body when its
//!   stream's last frame is written; which parked body is the stream's is
//!   told by the amount of data, which is the same on both sides.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use tokio::time::Instant;

use crate::WorkGuard;
use crate::tracker::{coarse_nanos, instant_at};

mod parking;
use parking::{Parked, Parking};

/// The protocol a connection turned out to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Proto {
    Unknown = 0,
    H1 = 1,
    H2 = 2,
    Upgraded = 3,
}

/// What an upgraded connection (a WebSocket) does at Stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpgradeEnd {
    /// Closed by the server once its close handshake window has passed.
    Bounded,
    /// Left to its handler until the cancel signal.
    Handler,
}

/// [`ConnState::expired`]: idle past the idle timeout.
pub(crate) const EXPIRED_IDLE: u8 = 1;
/// [`ConnState::expired`]: a request head past the request-head timeout.
pub(crate) const EXPIRED_HEAD: u8 = 2;

/// One connection's counters.
pub(crate) struct ConnState {
    proto: AtomicU8,
    /// Requests dispatched whose response has not been handed to the socket
    /// in full (parked ones included).
    in_flight: AtomicUsize,
    /// Requests dispatched so far.
    requests: AtomicUsize,
    /// Of those, probes answered on the main listener: not traffic.
    probes: AtomicUsize,
    /// Bytes were read that no dispatched request accounts for yet: hyper
    /// holds (part of) a request in its buffer.
    unparsed: AtomicBool,
    pub(crate) accepted: Instant,
    /// The times below are the trackers' coarse clock: nanoseconds since
    /// its epoch, read for the cost of a load (`tracker::coarse_nanos`).
    /// When the last byte was read (the accept, before any).
    last_read: AtomicU64,
    /// When the request head now arriving began, likewise.
    head_started: AtomicU64,
    /// Wakes the driver task to look at the connection again: rung by a
    /// stage change, a timeout, or (once the driver watches) the end of a
    /// request. A load and a register per wake, where a `Notify` would take
    /// a lock.
    bell: AtomicWaker,
    rung: AtomicBool,
    /// The driver waits for the connection to go idle (from Stopping): the
    /// end of each request then rings the bell.
    watched: AtomicBool,
    /// A timeout the server's sweeper found passed (`EXPIRED_*`).
    expired: AtomicU8,
    /// When the connection last went idle (the end of its last response,
    /// or the accept).
    idle_since: AtomicU64,
    /// The tracked work of an upgraded connection; released when the
    /// upgraded IO is dropped.
    upgrade: Mutex<Option<WorkGuard>>,
    upgrade_end: AtomicBool,
    /// Responses whose body has ended but not yet reached the socket.
    parking: Parking,
    /// HTTP/2: response streams begun on the wire and not ended there.
    open_streams: AtomicUsize,
    /// HTTP/2: responses the service gave (their headers may still be
    /// queued in h2).
    responses: AtomicUsize,
    /// HTTP/2: responses whose headers are on the wire (written and
    /// flushed). Fewer than `responses`: one is still on its way, bodiless
    /// ones (a trailers-only gRPC status) included.
    begun: AtomicUsize,
    /// Who is at the other end, for the report.
    peer: Option<Box<dyn fmt::Debug + Send + Sync>>,
    /// The box of the last handler's future that finished, for the next.
    pub(crate) spare: super::spare::Spare,
}

impl ConnState {
    pub(crate) fn new(peer: Option<Box<dyn fmt::Debug + Send + Sync>>) -> Self {
        Self {
            proto: AtomicU8::new(Proto::Unknown as u8),
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            probes: AtomicUsize::new(0),
            unparsed: AtomicBool::new(false),
            accepted: Instant::now(),
            last_read: AtomicU64::new(coarse_nanos()),
            head_started: AtomicU64::new(0),
            bell: AtomicWaker::new(),
            rung: AtomicBool::new(false),
            watched: AtomicBool::new(false),
            expired: AtomicU8::new(0),
            idle_since: AtomicU64::new(coarse_nanos()),
            upgrade: Mutex::new(None),
            upgrade_end: AtomicBool::new(false),
            parking: Parking::new(),
            open_streams: AtomicUsize::new(0),
            responses: AtomicUsize::new(0),
            begun: AtomicUsize::new(0),
            peer,
            spare: super::spare::Spare::new(),
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
            self.ring();
        }
    }

    /// Requests on this connection that are not over: dispatched, and their
    /// response not yet handed to the socket in full.
    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether the connection owes its client anything: a request in
    /// flight, or (HTTP/2) a response stream still open on the wire.
    #[inline]
    pub(crate) fn is_busy(&self) -> bool {
        self.in_flight() > 0
            || self.open_streams.load(Ordering::Acquire) > 0
            || self.responses.load(Ordering::Acquire) > self.begun.load(Ordering::Acquire)
    }

    /// Whether a request is with the service: dispatched, and its body not
    /// yet ended.
    #[inline]
    pub(crate) fn is_handling(&self) -> bool {
        self.in_flight() > self.parking.len()
    }

    /// A request dispatched was a probe, answered ahead of the service.
    pub(crate) fn probed(&self) {
        self.probes.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests dispatched so far that were not probes: the connection's
    /// traffic.
    pub(crate) fn served(&self) -> usize {
        let probes = self.probes.load(Ordering::Relaxed);
        self.requests.load(Ordering::Relaxed).saturating_sub(probes)
    }

    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        self.requests.load(Ordering::Relaxed) == 0
    }

    #[inline]
    pub(crate) fn has_unparsed(&self) -> bool {
        self.unparsed.load(Ordering::Acquire)
    }

    /// Bytes arrived at `now` (coarse nanoseconds) that belong to the next
    /// request.
    #[inline]
    pub(crate) fn read_some(&self, now: u64) {
        if !self.unparsed.swap(true, Ordering::AcqRel) {
            self.head_started.store(now, Ordering::Relaxed);
        }
    }

    /// Bytes arrived (of anything): the time is kept for the waits that
    /// count from the last byte.
    #[inline]
    pub(crate) fn touched(&self, now: u64) {
        self.last_read.store(now, Ordering::Relaxed);
    }

    /// When the last byte was read (the accept, before any).
    pub(crate) fn last_read(&self) -> Instant {
        Instant::from_std(instant_at(self.last_read.load(Ordering::Relaxed)))
    }

    /// A request was handed to the service: it is in flight until the
    /// returned guard drops, or, parked with its body's end, until its
    /// response is on the wire.
    pub(crate) fn dispatch(self: &Arc<Self>) -> InFlight {
        // The order matters to the IO wrapper, which closes an idle
        // connection only if it sees neither: count first, then clear.
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.unparsed.store(false, Ordering::Release);
        InFlight {
            conn: Some(self.clone()),
        }
    }

    /// The connection was upgraded: its tracked work moves to the
    /// connection and lives as long as the upgraded IO.
    pub(crate) fn upgraded(&self, guard: Option<WorkGuard>, end: UpgradeEnd) {
        self.upgrade_end
            .store(end == UpgradeEnd::Bounded, Ordering::Release);
        self.proto.store(Proto::Upgraded as u8, Ordering::Release);
        *lock(&self.upgrade) = guard;
    }

    /// Whether the server ends this upgraded connection at Stopping, after
    /// its close handshake window.
    #[inline]
    pub(crate) fn upgrade_is_bounded(&self) -> bool {
        self.upgrade_end.load(Ordering::Acquire)
    }

    /// The upgraded connection is over; `ended` says the shutdown ended it
    /// (it is then reported as such, not as finished).
    pub(crate) fn release_upgrade(&self, ended: Option<&crate::Tracker>) {
        let guard = lock(&self.upgrade).take();
        if let (Some(tracker), Some(guard)) = (ended, &guard) {
            tracker.mark_ended(guard);
        }
        drop(guard);
    }

    /// Whether some ended body still waits for the socket (HTTP/1: for the
    /// next flush).
    #[inline]
    pub(crate) fn has_parked(&self) -> bool {
        self.parking.len() > 0
    }

    /// HTTP/1: a flush completed, so every body that ended before it is on
    /// the wire.
    pub(crate) fn release_flushed(&self) {
        let released = self.parking.release_all();
        self.forget_parked(released);
    }

    /// HTTP/2: a response stream ended on the wire after `bytes` bytes of
    /// data; the parked body that gave as many is that stream's.
    pub(crate) fn release_stream(&self, bytes: u64) {
        let released = self.parking.take_by_bytes(bytes);
        if released.is_some() {
            self.forget_parked(1);
        }
        drop(released);
    }

    /// HTTP/2: nothing is open or queued on the wire any more, so no
    /// parked body can still be waiting (one whose stream the client reset
    /// would otherwise stay parked until the connection closes). A body
    /// still parked here never had its stream's last frame written: after
    /// the cancel signal its response was cut, not finished anyway.
    pub(crate) fn release_all_parked(&self) {
        let released = self.parking.take_all();
        let n = released.len();
        for p in released {
            p.cut();
        }
        self.forget_parked(n);
    }

    fn forget_parked(&self, n: usize) {
        if n > 0 {
            self.in_flight.fetch_sub(n, Ordering::AcqRel);
            self.ring_if_watched();
        }
    }

    /// HTTP/2: the service gave a response, which h2 will begin on the wire.
    #[inline]
    pub(crate) fn responded(&self) {
        self.responses.fetch_add(1, Ordering::AcqRel);
    }

    /// HTTP/2: how many responses the service gave.
    pub(crate) fn responses(&self) -> usize {
        self.responses.load(Ordering::Acquire)
    }

    /// HTTP/2: `n` responses have begun on the wire (written and flushed).
    pub(crate) fn set_begun(&self, n: usize) {
        let before = self.begun.swap(n, Ordering::AcqRel);
        if n != before {
            self.ring_if_watched();
        }
    }

    /// Sets how many HTTP/2 response streams are open on the wire.
    pub(crate) fn set_open_streams(&self, n: usize) {
        let before = self.open_streams.swap(n, Ordering::AcqRel);
        if n == 0 && before != 0 {
            self.ring_if_watched();
        }
    }

    /// Wakes the connection's driver to look again.
    pub(crate) fn ring(&self) {
        self.rung.store(true, Ordering::Release);
        self.bell.wake();
    }

    fn ring_if_watched(&self) {
        if self.watched.load(Ordering::Acquire) {
            self.ring();
        }
    }

    /// The driver waits for the connection to go idle from now on.
    pub(crate) fn watch(&self) {
        self.watched.store(true, Ordering::Release);
    }

    /// Registers the driver's waker; then whether the bell rang since the
    /// last call (a ring before the registration is not lost).
    pub(crate) fn listen(&self, waker: &std::task::Waker) -> bool {
        self.bell.register(waker);
        self.rung.swap(false, Ordering::AcqRel)
    }

    /// Whether the bell rang since the last call, for a driver whose waker
    /// is registered already: a ring takes the waker out, so after `true`
    /// the driver registers again with [`listen`](Self::listen).
    #[inline]
    pub(crate) fn has_rung(&self) -> bool {
        // A load first: no read-modify-write while nothing rings.
        self.rung.load(Ordering::Acquire) && self.rung.swap(false, Ordering::AcqRel)
    }

    /// The request now arriving took too long, or the connection was idle
    /// too long: the sweeper's finding, which the IO wrapper acts on.
    #[inline]
    pub(crate) fn expired(&self) -> u8 {
        self.expired.load(Ordering::Acquire)
    }

    pub(crate) fn clear_expired(&self) {
        self.expired.store(0, Ordering::Release);
    }

    /// The last response is on the wire at `now`: idle from here.
    #[inline]
    pub(crate) fn went_idle(&self, now: u64) {
        self.idle_since.store(now, Ordering::Relaxed);
    }

    /// The sweeper's look at the connection at `now`: marks a passed
    /// timeout and rings the driver.
    pub(crate) fn sweep(&self, now: u64, idle: Option<Duration>, head: Option<Duration>) {
        let proto = self.proto();
        if self.is_handling() || self.has_parked() || proto == Proto::H2 || proto == Proto::Upgraded
        {
            return;
        }
        let passed = |since: &AtomicU64, limit: Duration| {
            Duration::from_nanos(now.saturating_sub(since.load(Ordering::Relaxed))) >= limit
        };
        let expired = if self.has_unparsed() {
            head.is_some_and(|head| passed(&self.head_started, head))
                .then_some(EXPIRED_HEAD)
        } else {
            idle.is_some_and(|idle| passed(&self.idle_since, idle))
                .then_some(EXPIRED_IDLE)
        };
        if let Some(expired) = expired {
            self.expired.store(expired, Ordering::Release);
            self.ring();
        }
    }

    /// What the connection is doing now.
    pub(crate) fn activity(&self) -> Activity {
        let streams = self.open_streams.load(Ordering::Acquire);
        if self.proto() == Proto::Upgraded {
            Activity::Upgraded
        } else if self.in_flight() > 0 {
            let parked = self.parking.len();
            if parked > 0 && parked == self.in_flight() {
                Activity::Writing
            } else {
                Activity::Handling(self.in_flight())
            }
        } else if streams > 0 {
            Activity::Streaming(streams)
        } else if self.has_unparsed() {
            Activity::Reading
        } else if self.is_fresh() {
            Activity::New
        } else {
            Activity::Idle
        }
    }

    /// The connection for an inventory (the flight record's): who, what it
    /// is doing, since when.
    pub(crate) fn inventory(&self, now: Instant) -> crate::inventory::Connection {
        crate::inventory::Connection {
            peer: self.peer_text(),
            protocol: match self.proto() {
                Proto::Unknown => "unknown",
                Proto::H1 => "http/1",
                Proto::H2 => "http/2",
                Proto::Upgraded => "upgraded",
            },
            state: self.activity().name(),
            in_flight: self.in_flight(),
            idle: now.saturating_duration_since(self.last_read()),
            age: now.saturating_duration_since(self.accepted),
        }
    }

    fn peer_text(&self) -> String {
        match &self.peer {
            Some(peer) => format!("{peer:?}"),
            None => "(unknown peer)".to_string(),
        }
    }

    /// Describes the connection for a report: who, what it is doing, since
    /// when.
    pub(crate) fn describe(&self, now: Instant) -> String {
        use crate::fmt::{Count, Seconds};
        let proto = match self.proto() {
            Proto::Unknown => "protocol not yet known",
            Proto::H1 => "HTTP/1",
            Proto::H2 => "HTTP/2",
            Proto::Upgraded => "upgraded",
        };
        let state = match self.activity() {
            Activity::Upgraded => "upgraded connection open".to_string(),
            Activity::Writing => "writing a response the client is not reading".to_string(),
            Activity::Handling(n) => format!("{} in flight", Count(n, "request")),
            Activity::Streaming(n) => {
                format!("{} not finished on the wire", Count(n, "response stream"))
            }
            Activity::Reading => "request head incomplete".to_string(),
            Activity::New => "no request sent yet".to_string(),
            Activity::Idle => "idle".to_string(),
        };
        format!(
            "connection {} ({proto}): {state}, last byte read {} ago, open {}",
            self.peer_text(),
            Seconds(now.saturating_duration_since(self.last_read())),
            Seconds(now.saturating_duration_since(self.accepted)),
        )
    }
}

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Accepted; no request yet.
    New,
    /// Between requests.
    Idle,
    /// Part of a request head arrived.
    Reading,
    /// Requests with the service.
    Handling(usize),
    /// Only responses whose bytes are not all on the wire yet.
    Writing,
    /// HTTP/2 response streams still open on the wire.
    Streaming(usize),
    /// Upgraded (a WebSocket).
    Upgraded,
}

impl Activity {
    /// The state's name in an inventory.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Activity::New => "new",
            Activity::Idle => "idle",
            Activity::Reading => "reading",
            Activity::Handling(_) => "handling",
            Activity::Writing => "writing",
            Activity::Streaming(_) => "stream",
            Activity::Upgraded => "upgraded",
        }
    }
}

impl fmt::Debug for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnState")
            .field("proto", &self.proto())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// Taken when the request parks: the count then goes with the entry.
    conn: Option<Arc<ConnState>>,
}

impl InFlight {
    /// The connection the request arrived on.
    pub(crate) fn conn(&self) -> &ConnState {
        self.conn
            .as_deref()
            .expect("an in-flight request has its connection until it parks")
    }

    /// The response body ended after `bytes` bytes of data: the request
    /// stays in flight, with its tracking, until the IO wrapper sees the
    /// bytes handed to the socket.
    /// Should the connection end first, after the cancel signal, `server`
    /// hears that the response was cut.
    pub(crate) fn park(
        mut self,
        guard: Option<WorkGuard>,
        bytes: u64,
        server: Option<Arc<super::shared::Shared>>,
    ) {
        // The count taken at dispatch now belongs to the parked entry.
        let Some(conn) = self.conn.take() else {
            return;
        };
        conn.parking.park(Parked {
            guard,
            bytes,
            server,
        });
        // The connection's task may be waiting for the connection to go
        // idle; it must now wait for the flush instead.
        conn.ring_if_watched();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = &self.conn {
            conn.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
