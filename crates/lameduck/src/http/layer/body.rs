//! The response body of [`Drain`](super::Drain).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::WorkGuard;
use crate::http::StreamEnd;
use crate::http::conn::InFlight;
use crate::http::shared::{Shared, Stage};
use crate::http::stats::Outcome;
use crate::tracker::Mark;

pin_project_lite::pin_project! {
    /// The response body of [`Drain`](super::Drain): the inner body, or a
    /// short text lameduck answered with (a probe, a `503`).
    ///
    /// The request counts as in flight until the body has been sent (or
    /// dropped), so a slow download holds the shutdown up like a slow
    /// handler does. Served by [`Server`](crate::http::Server), "sent"
    /// means handed to the socket in full, not only given to hyper.
    pub struct DrainBody<B> {
        #[pin]
        kind: Kind<B>,
        guard: Option<WorkGuard>,
        in_flight: Option<InFlight>,
        // Boxed: only event streams have one.
        end: Option<Box<EndEarly>>,
        // Data bytes given so far.
        bytes: u64,
        // Ended by the shutdown with a gRPC status: nothing more to give.
        done: bool,
        // A service's response not yet over: counted for the metrics and
        // the report when it ends, in full or cut short.
        pending: Option<Arc<Shared>>,
        // Polled at least once.
        polled: bool,
    }

    impl<B> PinnedDrop for DrainBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(shared) = this.pending.take() {
                // hyper drops unpolled a body that says it is over (an
                // empty one) or that it must not send (`HEAD`, `304`):
                // those responses were given in full.
                if *this.polled {
                    cut(&shared, this.guard.as_ref());
                } else {
                    shared.count(Outcome::Answered);
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

/// An event stream or a gRPC response that the shutdown ends early, at a
/// message boundary.
///
/// The stage is read from the server's atomic on each poll; the signals'
/// wake-ups are registered only once the body has had to wait. A response
/// whose body never waits (a unary gRPC call, the common case) so costs no
/// waiter registered and unregistered under the tokens' locks, and no
/// allocation beyond this one.
pub(super) struct EndEarly {
    /// Ends at its next message boundary from this stage on.
    at: Stage,
    /// The signals, and the tracker where the stream's ending is recorded.
    shared: Arc<Shared>,
    /// The wake-ups, once the body has waited.
    waits: Option<Waits>,
    /// The last bytes given end a message (a blank line).
    pub(super) boundary: Boundary,
}

/// A waiting body's wake-ups: at its end's signal, and at the cancel
/// signal, past which the stream ends even mid-message.
struct Waits {
    at: Pin<Box<WaitForCancellationFutureOwned>>,
    at_the_latest: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl EndEarly {
    pub(super) fn new(end: StreamEnd, shared: Arc<Shared>, boundary: Boundary) -> Self {
        let at = match end {
            StreamEnd::AtStopping => Stage::Stopping,
            StreamEnd::AtCancel => Stage::Cancelled,
        };
        Self {
            at,
            shared,
            waits: None,
            boundary,
        }
    }

    /// Whether the stream ends now: its signal has fired, and it is at a
    /// message boundary or the cancel signal has fired too.
    fn is_due(&mut self, cx: &mut Context<'_>) -> bool {
        // The stage follows the signals a task's hop behind them: a body
        // that has waited also asks the signals themselves, which woke it.
        let stage = self.shared.stage();
        let due = stage >= self.at
            || self
                .waits
                .as_mut()
                .is_some_and(|w| w.at.as_mut().poll(cx).is_ready());
        due && (self.boundary.is_at_boundary()
            || stage >= Stage::Cancelled
            || self
                .waits
                .as_mut()
                .is_some_and(|w| w.at_the_latest.as_mut().poll(cx).is_ready()))
    }

    /// The body waits: from now on the signals wake it. Whether one has
    /// fired already (the body is then to be polled again).
    fn wait(&mut self, cx: &mut Context<'_>) -> bool {
        if self.waits.is_some() {
            return false;
        }
        let signals = &self.shared.signals;
        let at = match self.at {
            Stage::Stopping => &signals.stopping,
            _ => &signals.cancel,
        };
        let waits = self.waits.insert(Waits {
            at: Box::pin(at.clone().cancelled_owned()),
            at_the_latest: Box::pin(signals.cancel.clone().cancelled_owned()),
        });
        // Both registered: either may be the one that matters.
        let at = waits.at.as_mut().poll(cx).is_ready();
        let latest = waits.at_the_latest.as_mut().poll(cx).is_ready();
        at || latest
    }
}

/// Where a long response may end cleanly.
#[derive(Clone, Copy, Debug)]
pub(super) enum Boundary {
    /// An event stream: after a blank line.
    Sse(SseTail),
    /// gRPC: between two length-prefixed messages; the end then carries
    /// the status `UNAVAILABLE`.
    Grpc(GrpcFrames),
}

impl Default for Boundary {
    fn default() -> Self {
        Boundary::Sse(SseTail::default())
    }
}

impl Boundary {
    pub(super) fn grpc() -> Self {
        Boundary::Grpc(GrpcFrames::default())
    }

    fn saw(&mut self, data: &impl Buf) {
        match self {
            Boundary::Sse(tail) => tail.saw(data),
            Boundary::Grpc(frames) => frames.saw(data),
        }
    }

    fn is_at_boundary(&self) -> bool {
        match self {
            Boundary::Sse(tail) => tail.is_at_boundary(),
            Boundary::Grpc(frames) => frames.is_at_boundary(),
        }
    }
}

/// Follows gRPC's message framing: a compressed flag, a four-byte length,
/// the message (gRPC over HTTP/2, "Length-Prefixed-Message").
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GrpcFrames {
    /// Prefix bytes seen of the message now being given.
    have: u8,
    len: [u8; 4],
    /// Message bytes still to come.
    rest: u64,
    /// The framing is unknown (a frame of too many chunks to walk).
    lost: bool,
}

impl GrpcFrames {
    fn saw(&mut self, data: &impl Buf) {
        let chunk = data.chunk();
        if chunk.len() == data.remaining() {
            // One chunk, as tonic gives them: nothing to gather.
            self.feed(chunk);
            return;
        }
        let mut chunks = [std::io::IoSlice::new(&[]); 16];
        let n = data.chunks_vectored(&mut chunks);
        let seen: usize = chunks[..n].iter().map(|c| c.len()).sum();
        if seen != data.remaining() {
            self.lost = true;
            return;
        }
        for chunk in &chunks[..n] {
            self.feed(chunk);
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.rest > 0 {
                let n = (self.rest.min(bytes.len() as u64)) as usize;
                self.rest -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            if self.have == 0
                && let Some((prefix, rest)) = bytes.split_first_chunk::<5>()
            {
                // A whole prefix at hand: read at once, not byte by byte.
                let [_, len @ ..] = *prefix;
                self.rest = u64::from(u32::from_be_bytes(len));
                bytes = rest;
                continue;
            }
            if self.have > 0 {
                self.len[usize::from(self.have) - 1] = bytes[0];
            }
            bytes = &bytes[1..];
            self.have += 1;
            if self.have == 5 {
                self.have = 0;
                self.rest = u64::from(u32::from_be_bytes(self.len));
            }
        }
    }

    fn is_at_boundary(&self) -> bool {
        !self.lost && self.have == 0 && self.rest == 0
    }
}

/// The trailers that end a gRPC call with `UNAVAILABLE` (14): the server
/// is shutting down, and the client may retry elsewhere.
pub(super) fn grpc_status_unavailable(h: &mut http::HeaderMap) {
    h.insert("grpc-status", http::HeaderValue::from_static("14"));
    h.insert(
        "grpc-message",
        http::HeaderValue::from_static("the server is shutting down"),
    );
}

/// Follows the end of an event stream's text: an event is complete at a
/// blank line, whichever of CRLF, LF or CR ends its lines (WHATWG HTML,
/// "Server-sent events", section 9.2.5).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SseTail {
    /// The stream's last bytes, newest last.
    tail: [u8; 4],
    /// How many of `tail` are real (the stream may be shorter).
    len: usize,
    /// The tail is unknown (a frame made of several chunks).
    lost: bool,
}

impl SseTail {
    fn saw(&mut self, data: &impl Buf) {
        let chunk = data.chunk();
        if chunk.len() != data.remaining() {
            // A chained buffer's last bytes are out of reach without
            // copying: the stream then waits for a frame that is one chunk.
            self.lost = true;
            return;
        }
        if chunk.is_empty() {
            return;
        }
        self.lost = false;
        for &b in &chunk[chunk.len().saturating_sub(4)..] {
            self.tail = [self.tail[1], self.tail[2], self.tail[3], b];
            self.len = (self.len + 1).min(4);
        }
    }

    /// Whether ending the stream now cuts no event in half.
    fn is_at_boundary(&self) -> bool {
        if self.lost {
            return false;
        }
        let tail = &self.tail[4 - self.len..];
        // Take off the last line's end; what is left must end a line too.
        let rest = if tail.ends_with(b"\r\n") {
            &tail[..tail.len() - 2]
        } else if tail.ends_with(b"\n") || tail.ends_with(b"\r") {
            &tail[..tail.len() - 1]
        } else {
            // Nothing sent yet is a boundary; a line in progress is not.
            return tail.is_empty();
        };
        rest.ends_with(b"\n") || rest.ends_with(b"\r")
    }
}

impl<B> DrainBody<B> {
    pub(super) fn new(
        body: B,
        guard: Option<WorkGuard>,
        in_flight: Option<InFlight>,
        end: Option<Box<EndEarly>>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            kind: Kind::Inner { body },
            guard,
            in_flight,
            end,
            bytes: 0,
            done: false,
            pending: Some(shared),
            polled: false,
        }
    }

    pub(super) fn full(data: Bytes, in_flight: Option<InFlight>) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            guard: None,
            in_flight,
            end: None,
            bytes: 0,
            done: false,
            pending: None,
            polled: false,
        }
    }
}

impl<B> fmt::Debug for DrainBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainBody").finish_non_exhaustive()
    }
}

impl<B> Body for DrainBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        *this.polled = true;
        if let Some(end) = this.end.as_mut()
            && end.is_due(cx)
        {
            // Ended by the shutdown, cleanly: the client reconnects, to
            // another instance.
            if let Some(guard) = this.guard.as_ref() {
                end.shared.tracker.mark_ended(guard);
            }
            let grpc = matches!(end.boundary, Boundary::Grpc(_));
            *this.end = None;
            finished(this.guard, this.in_flight, *this.bytes, this.pending);
            if grpc {
                // A status, never a broken stream.
                *this.done = true;
                let mut trailers = http::HeaderMap::new();
                grpc_status_unavailable(&mut trailers);
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            return Poll::Ready(None);
        }
        let frame = match this.kind.as_mut().project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into())))),
        };
        match &frame {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.remaining() as u64;
                    if let Some(end) = this.end.as_mut() {
                        end.boundary.saw(data);
                    }
                    // hyper asks `is_end_stream` after each frame and, when
                    // true, never polls again: this was the last one.
                    if this.kind.is_end_stream() {
                        finished(this.guard, this.in_flight, *this.bytes, this.pending);
                    }
                } else if frame.is_trailers() {
                    // Trailers are always last.
                    finished(this.guard, this.in_flight, *this.bytes, this.pending);
                }
            }
            Poll::Ready(None) => finished(this.guard, this.in_flight, *this.bytes, this.pending),
            // A failed body is not sent in full: the request is over, and
            // its connection goes with it.
            Poll::Ready(Some(Err(_))) => {
                if let Some(shared) = this.pending.take() {
                    cut(&shared, this.guard.as_ref());
                }
                this.guard.take();
                this.in_flight.take();
            }
            Poll::Pending => {
                if let Some(end) = this.end.as_mut()
                    && end.wait(cx)
                {
                    // A signal fired before the wake-ups were in place: look
                    // again at once.
                    cx.waker().wake_by_ref();
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.kind.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl<B: Body> Kind<B> {
    fn is_end_stream(&self) -> bool {
        match self {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }
}

/// The body has given its last byte: the request stays in flight, on its
/// connection, until the bytes are on the wire (served by lameduck's
/// server), or is over now (under the layer, which cannot see the socket).
/// It is counted as answered now, in the phase of this moment.
fn finished(
    guard: &mut Option<WorkGuard>,
    in_flight: &mut Option<InFlight>,
    bytes: u64,
    pending: &mut Option<Arc<Shared>>,
) {
    let shared = pending.take();
    if let Some(shared) = &shared {
        shared.count(Outcome::Answered);
    }
    let guard = guard.take();
    match in_flight.take() {
        // A response is complete only once on the wire: its connection
        // may yet end first.
        Some(in_flight) => in_flight.park(guard, bytes, shared),
        None => drop(guard),
    }
}

/// The response began and will not end: counted as cut, and marked so for
/// the report when the cancel signal had fired.
#[cold]
fn cut(shared: &Shared, guard: Option<&WorkGuard>) {
    shared.count(Outcome::Cut);
    shared.mark_after_cancel(guard, Mark::Cut);
}

#[cfg(test)]
mod tests {
    use super::GrpcFrames;

    #[test]
    fn grpc_messages_end_at_their_last_byte_whatever_the_split() {
        // Two messages: 3 bytes, then 300.
        let mut wire = vec![0, 0, 0, 0, 3, 1, 2, 3];
        wire.extend([1, 0, 0, 1, 44]);
        wire.extend(std::iter::repeat_n(7, 300));
        for chunk in 1..wire.len() {
            let mut frames = GrpcFrames::default();
            let mut seen = 0;
            for piece in wire.chunks(chunk) {
                frames.saw(&bytes::Bytes::copy_from_slice(piece));
                seen += piece.len();
                let at_end = seen == 8 || seen == wire.len();
                assert_eq!(frames.is_at_boundary(), at_end, "every {chunk}, at {seen}");
            }
        }
    }
}
