//! The connection as hyper sees it: the socket, plus the decisions that
//! have to be taken at the moment hyper reads.
//!
//! hyper closes an HTTP/1 connection it believes idle without looking at
//! the socket, even when the next request already sits unread in it; that
//! request is then reset (measured: dozens per shutdown under load). So
//! lameduck never asks hyper to close an idle HTTP/1 connection. Instead,
//! at Stopping, when hyper reads for the next request on a connection with
//! nothing in flight, this wrapper looks at the socket with a non-blocking
//! peek: bytes there are read and served as usual (the response then closes
//! the connection); no bytes, and it answers end-of-file, which hyper takes
//! as the client leaving and closes cleanly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep, sleep_until};

use super::late::{IGNORED, LateStreams};
use super::wire::{Found, Frames, Streams};
use crate::http::Connection;
use crate::http::conn::{ConnState, EXPIRED_HEAD, EXPIRED_IDLE, Proto};
use crate::http::fired::TokenWait;
use crate::http::shared::{Registered, Shared, Stage};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(super) struct Io<T> {
    inner: T,
    conn: Arc<ConnState>,
    shared: Arc<Shared>,
    /// How many bytes of the HTTP/2 preface the input has matched so far.
    preface: usize,
    /// HTTP/2's view of the wire, made when the input begins as HTTP/2's
    /// preface does. Boxed: inline, it made every HTTP/1 connection's task
    /// larger.
    h2: Option<Box<H2Wire>>,
    /// A connection's wait, at Stopping, for its first request or for the
    /// rest of a request head.
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
    /// hyper was given end-of-file to close an idle connection.
    ended: bool,
    /// The connection's close says so in a message of its own (TLS's
    /// close_notify): the shutdown hyper asks for is passed on even for an
    /// ended connection.
    close_message: bool,
    /// An upgraded connection's registrations for the kill and for
    /// Stopping. Boxed: only an upgraded connection has them, and inline
    /// they made every connection's task larger.
    waits: Option<Box<Waits>>,
    /// An upgraded connection's close handshake window, from Stopping.
    close_by: Option<Pin<Box<Sleep>>>,
    /// HTTP/2, once shut down: how long the close waits for the client's
    /// (see `poll_shutdown`).
    linger: Option<Pin<Box<Sleep>>>,
    /// The connection's place among the server's open ones, held as long
    /// as the socket: an upgraded connection (a WebSocket) outlives the
    /// connection's task, and is still open, for the inventories and for
    /// what holds a shutdown up.
    registered: Option<Registered>,
}

impl<T: Connection> Io<T> {
    pub(super) fn new(inner: T, conn: Arc<ConnState>, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            conn,
            shared,
            preface: 0,
            h2: None,
            timer: None,
            ended: false,
            close_message: false,
            waits: None,
            close_by: None,
            linger: None,
            registered: None,
        }
    }

    /// The connection stays among the server's open ones until the IO is
    /// dropped.
    pub(super) fn with_registration(mut self, registered: Registered) -> Self {
        self.registered = Some(registered);
        self
    }

    /// The connection ends with a message (TLS's `close_notify`), which a
    /// close of an idle connection must send too.
    #[cfg(feature = "tls")]
    pub(super) fn with_close_message(mut self) -> Self {
        self.close_message = true;
        self
    }

    /// Whether hyper should see end-of-file instead of reading: at Stopping,
    /// with nothing in flight and nothing waiting in the socket, once the
    /// grace for a request still to come has passed.
    fn should_end(&mut self, cx: &mut Context<'_>) -> bool {
        if self.shared.stage() >= Stage::Cancelled {
            return true;
        }
        if self.inner.has_unread_input() {
            return false;
        }
        // A connection with part of a request head (its client is sending)
        // or with none yet (its client is likely between its connect and
        // its write, or the connection was taken from the accept queue just
        // now) waits, counted from its last byte or its accept; one that
        // finished a request and went quiet is idle and goes at once.
        let since = if self.conn.has_unparsed() {
            self.conn.last_read()
        } else if self.conn.is_fresh() {
            self.conn.accepted
        } else {
            return true;
        };
        self.waited(since + self.shared.first_request_grace, cx)
    }

    /// Whether `deadline` has passed; if not, wakes the task when it does.
    ///
    /// Called on every read of an idle connection, with a deadline that
    /// moves later with each request: the timer is moved only when the new
    /// deadline is earlier, and otherwise left to fire early, when the
    /// deadline is looked at again. No clock is read and no timer touched
    /// per request.
    fn waited(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        let Some((armed, timer)) = &mut self.timer else {
            let mut timer = Box::pin(sleep_until(deadline));
            let fired = timer.as_mut().poll(cx).is_ready();
            self.timer = Some((deadline, timer));
            return fired;
        };
        if deadline < *armed {
            *armed = deadline;
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        *armed = deadline;
        timer.as_mut().reset(deadline);
        timer.as_mut().poll(cx).is_ready()
    }

    /// HTTP/1 while running: a timeout the server's sweeper found passed
    /// — the request-head timeout, counted from a request's first byte, or
    /// the idle timeout between requests. An idle connection is ended as
    /// at Stopping: a request already in the socket is read and served
    /// instead. A finding that no longer holds (a request began since) is
    /// dropped.
    fn expire(&mut self) -> Option<io::Result<()>> {
        let handling = self.conn.is_handling() || self.conn.has_parked();
        match self.conn.expired() {
            EXPIRED_HEAD if !handling && self.conn.has_unparsed() => {
                return Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head timeout: the client did not send a whole request head in time",
                )));
            }
            EXPIRED_IDLE
                if !handling && !self.conn.has_unparsed() && !self.inner.has_unread_input() =>
            {
                self.ended = true;
                return Some(Ok(()));
            }
            _ => {}
        }
        self.conn.clear_expired();
        None
    }

    /// Bytes read, before hyper or h2 sees them. Returns whether a frame
    /// header that began before these bytes, its type held back (see
    /// [`Io::read_h2`]), is to reach h2 as an ignored frame.
    fn saw(&mut self, bytes: &mut [u8]) -> bool {
        let proto = self.conn.proto();
        if proto == Proto::H1 {
            self.saw_h1();
            return false;
        }
        self.saw_frames(bytes, proto)
    }

    /// HTTP/1 bytes read: only the times and whether a request began.
    /// Inline, apart from the HTTP/2 frame reading: a request reads twice
    /// (its bytes, then nothing until the next), and this is all the
    /// bookkeeping of either.
    #[inline]
    fn saw_h1(&self) {
        let now = crate::tracker::coarse_nanos();
        self.conn.touched(now);
        // Bytes read while no request is being handled (none in flight, or
        // only responses still being written) begin the next request.
        if !self.conn.is_handling() {
            self.conn.read_some(now);
        }
    }

    /// [`Io::saw`] for a connection whose protocol is not yet known, or
    /// HTTP/2.
    #[inline(never)]
    fn saw_frames(&mut self, bytes: &mut [u8], mut proto: Proto) -> bool {
        let now = crate::tracker::coarse_nanos();
        self.conn.touched(now);
        if proto == Proto::Unknown {
            let want = &H2_PREFACE[self.preface..];
            let n = want.len().min(bytes.len());
            if bytes[..n] != want[..n] {
                proto = Proto::H1;
                self.conn.set_proto(proto);
            } else {
                self.preface += n;
                if self.preface == H2_PREFACE.len() {
                    proto = Proto::H2;
                    self.conn.set_proto(proto);
                }
            }
        }
        let mut earlier = false;
        match proto {
            // A preface still arriving is fed too: the reader skips it.
            Proto::H2 | Proto::Unknown => {
                let H2Wire {
                    frames_in,
                    streams,
                    late,
                    ..
                } = wire(&mut self.h2);
                let conn = &self.conn;
                let mut ignore = Vec::new();
                frames_in.feed(bytes, |found| {
                    if late.received(found)
                        && let Found::Head(_, at) = found
                    {
                        ignore.push(at + 3);
                    }
                    streams.received(found, conn);
                });
                for kind in ignore {
                    match usize::try_from(kind) {
                        Ok(kind) => bytes[kind] = IGNORED,
                        Err(_) => earlier = true,
                    }
                }
            }
            Proto::H1 | Proto::Upgraded => {}
        }
        // Bytes read while no request is being handled (none in flight, or
        // only responses still being written) begin the next request.
        if !self.conn.is_handling() {
            self.conn.read_some(now);
        }
        earlier
    }

    /// HTTP/2: a read whose frames are looked at, and some changed (see
    /// [`LateStreams`]), before h2 reads them.
    ///
    /// A frame's type can be changed only until h2 has it: after the final
    /// GOAWAY, a frame header split across reads has its bytes from the
    /// type on held back until the rest of it is read, then given to h2
    /// first. The rest is read into a buffer of our own, exactly what the
    /// header lacks, so that a read into a nearly full buffer of h2's
    /// (one byte free, even) never splits a header's type from its stream.
    ///
    /// Not inlined: inline, its buffers made every HTTP/1 read's frame
    /// larger too.
    #[inline(never)]
    fn read_h2(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        // Each turn returns, or reads more of the one header held back:
        // seven turns at most.
        loop {
            let held = &mut wire(&mut self.h2).held;
            if held.len > 0 && held.whole {
                let n = held.len.min(buf.remaining());
                buf.put_slice(&held.bytes[..n]);
                held.bytes.copy_within(n..held.len, 0);
                held.len -= n;
                return Poll::Ready(Ok(()));
            }
            if held.len > 0 {
                let mut more = [0u8; 6];
                let need = 9 - wire(&mut self.h2).frames_in.partial().len();
                let mut rest = ReadBuf::new(&mut more[..need]);
                ready!(Pin::new(&mut self.inner).poll_read(cx, &mut rest))?;
                let got = rest.filled().len();
                if got == 0 {
                    // End of input: what was held goes to h2 as it is.
                    wire(&mut self.h2).held.whole = true;
                    continue;
                }
                let ignored = self.saw(&mut more[..got]);
                let w = wire(&mut self.h2);
                if ignored {
                    w.held.bytes[0] = IGNORED;
                }
                let held = &mut w.held;
                held.bytes[held.len..held.len + got].copy_from_slice(&more[..got]);
                held.len += got;
                held.whole = w.frames_in.partial().is_empty();
                continue;
            }
            let before = buf.filled().len();
            ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
            let len = buf.filled().len();
            if len == before {
                return Poll::Ready(Ok(()));
            }
            // A header begun before these bytes had at most its length
            // given to h2: its type is among them.
            self.saw(&mut buf.filled_mut()[before..]);
            let w = wire(&mut self.h2);
            let partial = w.frames_in.partial().len();
            if !w.late.is_final() || partial <= 3 {
                return Poll::Ready(Ok(()));
            }
            let hold = partial - 3;
            w.held.bytes[..hold].copy_from_slice(&buf.filled()[len - hold..]);
            (w.held.len, w.held.whole) = (hold, false);
            buf.set_filled(len - hold);
            if len - hold > before {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// HTTP/2: bytes handed to the socket.
    fn wrote(&mut self, bytes: &[u8]) {
        let H2Wire {
            frames_out,
            streams,
            late,
            ..
        } = wire(&mut self.h2);
        let conn = &self.conn;
        frames_out.feed(bytes, |found| {
            late.sent(found);
            streams.sent(found, conn);
        });
    }

    fn wrote_vectored(&mut self, bufs: &[io::IoSlice<'_>], mut n: usize) {
        for buf in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(buf.len());
            self.wrote(&buf[..take]);
            n -= take;
        }
    }

    /// Whether an upgraded connection must be closed now: the server's run
    /// is over, or (unless its handler keeps it) its close handshake window
    /// since Stopping has passed.
    ///
    /// While the app runs, a few atomic loads: each task registers for the
    /// kill and for Stopping once (again only when its waker changes), and
    /// the flags set before either fires say whether it has.
    fn must_close(&mut self, reading: bool, cx: &mut Context<'_>) -> bool {
        let waits = self.waits.get_or_insert_with(Box::default);
        let (kill, stop) = if reading {
            (&mut waits.kill_read, &mut waits.stop_read)
        } else {
            (&mut waits.kill_write, &mut waits.stop_write)
        };
        // Registered before the flag is read: a kill in between still wakes
        // the task.
        kill.register(&self.shared.kill, cx);
        if self.shared.is_killed() {
            return true;
        }
        let signals = &self.shared.signals;
        if !signals.stop_fired() {
            // Woken at Stopping, a task waiting on a client that sends
            // nothing starts the close handshake window as one its handler
            // woke does.
            stop.register(signals.stop_token(), cx);
            if !signals.stop_fired() {
                return false;
            }
        }
        if !self.conn.upgrade_is_bounded() {
            return false;
        }
        let Some(deadline) = signals.close_deadline() else {
            return false;
        };
        let close_by = self
            .close_by
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        // Both halves may wait on it; the last to register is woken, and
        // the next poll of the other finds the deadline passed.
        close_by.as_mut().poll(cx).is_ready() || Instant::now() >= deadline
    }
}

/// HTTP/2: the frames each way, the response streams they open, the
/// graceful shutdown's GOAWAYs and the client's frames h2 must not see
/// after them, and after the final GOAWAY a frame header's bytes from its
/// type on, held back from h2 until the header is whole.
struct H2Wire {
    frames_in: Frames,
    frames_out: Frames,
    streams: Streams,
    late: LateStreams,
    held: Held,
}

/// The connection's HTTP/2 state, made at its first use.
#[inline]
fn wire(h2: &mut Option<Box<H2Wire>>) -> &mut H2Wire {
    h2.get_or_insert_with(new_wire)
}

#[cold]
#[inline(never)]
fn new_wire() -> Box<H2Wire> {
    Box::new(H2Wire {
        frames_in: Frames::client(),
        frames_out: Frames::default(),
        streams: Streams::default(),
        late: LateStreams::default(),
        held: Held::default(),
    })
}

/// The registrations of an upgraded connection: reads and writes may come
/// from two tasks, so each registers its own waker for the kill and for
/// Stopping.
#[derive(Default)]
struct Waits {
    kill_read: TokenWait,
    kill_write: TokenWait,
    stop_read: TokenWait,
    stop_write: TokenWait,
}

fn closed_error(shared: &Shared) -> io::Error {
    let why = if shared.is_killed() {
        "closed by the server at its hard deadline"
    } else {
        "closed by the server: the close handshake window after Stopping has passed"
    };
    io::Error::new(io::ErrorKind::ConnectionAborted, why)
}

/// The bytes of a frame header from its type on (the length may be given
/// to h2 before: it is never changed).
#[derive(Debug, Default)]
struct Held {
    bytes: [u8; 6],
    len: usize,
    /// The header is whole: what is held goes to h2 next.
    whole: bool,
}

impl<T: Connection> AsyncRead for Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let proto = this.conn.proto();
        if proto == Proto::H2 {
            return this.read_h2(cx, buf);
        }
        // HTTP/1 while running, the common case, looks at two atomics
        // before it reads; the rest is out of line.
        if (proto != Proto::H1
            || this.conn.expired() != 0
            || this.shared.stage() >= Stage::Stopping)
            && let Some(end) = this.before_read(proto, cx)
        {
            return Poll::Ready(end);
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read
            && buf.filled().len() > before
        {
            match proto {
                Proto::H1 => this.saw_h1(),
                // An upgraded connection's bytes are its handler's: no
                // request head, no frames, no time that any wait counts
                // from.
                Proto::Upgraded => {}
                _ => {
                    this.saw(&mut buf.filled_mut()[before..]);
                }
            }
        }
        read
    }
}

impl<T: Connection> Io<T> {
    /// What a read of a connection that is not HTTP/1 while running does
    /// first: an upgraded connection may have to be closed; at Stopping an
    /// idle HTTP/1 connection ends; a timeout found passed ends one.
    /// `Some` is the read's result, given instead of reading.
    #[inline(never)]
    fn before_read(&mut self, proto: Proto, cx: &mut Context<'_>) -> Option<io::Result<()>> {
        if proto == Proto::Upgraded {
            return self
                .must_close(true, cx)
                .then(|| Err(closed_error(&self.shared)));
        }
        if self.shared.stage() >= Stage::Stopping {
            if self.conn.in_flight() == 0 && self.should_end(cx) {
                self.ended = true;
                return Some(Ok(()));
            }
            return None;
        }
        if self.conn.expired() != 0 {
            return self.expire();
        }
        None
    }
}

impl<T: Connection> AsyncWrite for Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.proto() == Proto::Upgraded && this.must_close(false, cx) {
            return Poll::Ready(Err(closed_error(&this.shared)));
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && this.conn.proto() == Proto::H2
        {
            this.wrote(&buf[..n]);
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.proto() == Proto::Upgraded && this.must_close(false, cx) {
            return Poll::Ready(Err(closed_error(&this.shared)));
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written
            && this.conn.proto() == Proto::H2
        {
            this.wrote_vectored(bufs, n);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            match this.conn.proto() {
                // hyper's HTTP/1 side writes out its whole buffer before it
                // flushes the socket: every body that ended before now is
                // on the wire.
                Proto::H1 | Proto::Unknown if this.conn.has_parked() => {
                    this.conn.release_flushed();
                    this.conn.went_idle(crate::tracker::coarse_nanos());
                }
                // h2 flushes after each batch of frames: the streams whose
                // last frame was written before now are on the wire (over
                // TLS, written meant taken by rustls, flushed means
                // encrypted and handed to the socket).
                Proto::H2 => {
                    if let Some(w) = this.h2.as_mut() {
                        w.streams.flushed(&this.conn);
                    }
                }
                _ => {}
            }
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended && !this.close_message {
            // hyper half-closes before it drops the connection; the close
            // that follows sends the same FIN, one system call fewer for
            // each of thousands of idle connections closed at once.
            return Poll::Ready(Ok(()));
        }
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            if this.conn.proto() != Proto::H2 {
                return Poll::Ready(Ok(()));
            }
            this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        // HTTP/2: a client still reading the last responses sends window
        // updates (and acknowledges the GOAWAY) after the server's FIN; a
        // socket closed with that input unread is reset, and the reset
        // discards what the client had not read yet. So the input is read,
        // and dropped, until the client closes too, for at most LINGER and
        // never past the cancel signal (nginx's lingering close, for the
        // same reason).
        this.poll_linger(cx)
    }
}

/// The longest an HTTP/2 connection's close waits for its client's
/// (see `Io::poll_shutdown`).
const LINGER: Duration = Duration::from_secs(1);

impl<T: Connection> Io<T> {
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut scratch = [0u8; 1024];
        // Bounded: a client that keeps sending is cut at LINGER anyway.
        for _ in 0..64 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        let over = self.shared.stage() >= Stage::Cancelled
            || self
                .linger
                .as_mut()
                .is_some_and(|t| t.as_mut().poll(cx).is_ready());
        if over {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for Io<T> {
    fn drop(&mut self) {
        // The upgraded connection (if it was one) is over: its tracked work
        // ends with it, ended by the shutdown if the server closes such
        // connections at Stopping and Stopping has begun. Stopping as the
        // stop signal's flag says it, set before the signal's waiters wake:
        // the stage is mirrored from the tokens by a task, a hop later, and
        // a WebSocket whose handler heard the signal, said 1001 and got the
        // client's close in that hop was reported finished.
        if self.conn.proto() == Proto::Upgraded {
            let stopping =
                self.shared.stage() >= Stage::Stopping || self.shared.signals.stop_fired();
            let by_shutdown = self.conn.upgrade_is_bounded() && stopping;
            self.conn
                .release_upgrade(by_shutdown.then_some(&self.shared.tracker));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::http::server::late::IGNORED;
    use crate::http::server::wire::test_frame::frame;
    use crate::http::server::wire::{ACK, GOAWAY, HEADERS, PING, WINDOW_UPDATE};
    use crate::http::shared::{Orphans, Signals};

    /// A socket whose reads return the given chunks, one per read.
    struct Chunks(VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Chunks {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Connection for Chunks {}

    /// Everything h2 would read from a client whose bytes arrive in
    /// `chunk`-byte reads, read `want`-byte buffers at a time.
    async fn through(chunk: usize, want: usize) -> (Vec<u8>, Vec<u8>) {
        let ping = [7u8; 8];
        let mut before = H2_PREFACE.to_vec();
        before.extend(frame(HEADERS, 0x5, 1, &[0x82]));
        let mut after = frame(PING, ACK, 0, &ping);
        after.extend(frame(HEADERS, 0x5, 3, &[0x82]));
        after.extend(frame(WINDOW_UPDATE, 0, 3, &[0, 1, 0, 0]));
        after.extend(frame(WINDOW_UPDATE, 0, 1, &[0, 1, 0, 0]));
        let token = CancellationToken::new;
        let signals = Arc::new(Signals::new(token(), token(), token()));
        let shared = Arc::new(Shared::new(
            signals,
            crate::Tracker::new("test"),
            Orphans::Spawn,
        ));
        let chunks = before.chunks(chunk).chain(after.chunks(chunk));
        let inner = Chunks(chunks.map(<[u8]>::to_vec).collect());
        let mut io = Io::new(inner, Arc::new(ConnState::new(None)), shared);
        let mut seen = vec![0; before.len()];
        io.read_exact(&mut seen).await.unwrap();
        assert_eq!(seen, before);
        // The server's graceful shutdown: GOAWAY(2^31-1), then its PING.
        let mut out = frame(GOAWAY, 0, 0, &[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        out.extend(frame(PING, 0, 0, &ping));
        io.write_all(&out).await.unwrap();
        let mut read = Vec::new();
        let mut buf = vec![0; want];
        for _ in 0..after.len() * 2 {
            let n = io.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            read.extend_from_slice(&buf[..n]);
        }
        (after, read)
    }

    #[test]
    fn an_upgraded_connection_closed_before_the_stage_follows_the_stop_signal_is_ended_by_the_shutdown()
     {
        use crate::http::conn::UpgradeEnd;
        use crate::tracker::Mark;

        let token = CancellationToken::new;
        let (draining, stopping) = (token(), token());
        let signals = Arc::new(Signals::new(draining.clone(), stopping.clone(), token()));
        let tracker = crate::Tracker::new("test");
        let shared = Arc::new(Shared::new(signals, tracker.clone(), Orphans::Spawn));
        let conn = Arc::new(ConnState::new(None));
        let guard = tracker.track("GET /ws (upgrade)");
        let id = guard.id();
        conn.upgraded(Some(guard), UpgradeEnd::Bounded);
        let io = Io::new(Chunks(VecDeque::new()), conn, shared.clone());
        // The stop signal fires; no task has mirrored it into the stage yet
        // (none runs here): the handler heard it, said 1001, and its client
        // closed, all in that hop.
        draining.cancel();
        stopping.cancel();
        assert!(shared.stage() < Stage::Stopping);
        drop(io);
        assert_eq!(tracker.take_marks(), vec![(id, Mark::Ended)]);
    }

    #[tokio::test]
    async fn a_late_streams_window_update_reaches_h2_as_an_ignored_frame_however_the_reads_split() {
        for chunk in [1, 2, 5, 9, 13, 200] {
            for want in [1, 3, 8, 9, 64] {
                let (mut sent, read) = through(chunk, want).await;
                // The frame for stream 3 (opened after the PING's answer)
                // has its type changed, and nothing else.
                let at = sent.len() - 2 * 13;
                sent[at + 3] = IGNORED;
                assert_eq!(read, sent, "reads of {chunk} bytes into buffers of {want}");
            }
        }
    }
}
