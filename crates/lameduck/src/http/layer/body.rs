//! The response body of [`Drain`](super::Drain).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::http::conn::InFlight;
use crate::{Tracker, WorkGuard};

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
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

/// An event stream that the shutdown ends early, at a message boundary.
pub(super) struct EndEarly {
    pub(super) at: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Past it the stream ends even mid-message.
    pub(super) at_the_latest: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Where the stream's ending is recorded.
    pub(super) tracker: Tracker,
    /// The last bytes given end a message (a blank line).
    pub(super) boundary: Boundary,
}

/// Follows the end of an event stream's text: an event is complete at a
/// blank line, whichever of CRLF, LF or CR ends its lines (WHATWG HTML,
/// "Server-sent events", section 9.2.5).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Boundary {
    /// The stream's last bytes, newest last.
    tail: [u8; 4],
    /// How many of `tail` are real (the stream may be shorter).
    len: usize,
    /// The tail is unknown (a frame made of several chunks).
    lost: bool,
}

impl Boundary {
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
    ) -> Self {
        Self {
            kind: Kind::Inner { body },
            guard,
            in_flight,
            end,
            bytes: 0,
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
        if let Some(end) = this.end.as_mut() {
            let due = end.at.as_mut().poll(cx).is_ready();
            if due
                && (end.boundary.is_at_boundary() || end.at_the_latest.as_mut().poll(cx).is_ready())
            {
                // Ended by the shutdown, cleanly: the client reconnects,
                // to another instance.
                if let Some(guard) = this.guard.as_ref() {
                    end.tracker.mark_ended(guard);
                }
                *this.end = None;
                finished(this.guard, this.in_flight, *this.bytes);
                return Poll::Ready(None);
            }
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
                        finished(this.guard, this.in_flight, *this.bytes);
                    }
                } else if frame.is_trailers() {
                    // Trailers are always last.
                    finished(this.guard, this.in_flight, *this.bytes);
                }
            }
            Poll::Ready(None) => finished(this.guard, this.in_flight, *this.bytes),
            // A failed body is not sent in full: the request is over, and
            // its connection goes with it.
            Poll::Ready(Some(Err(_))) => {
                this.guard.take();
                this.in_flight.take();
            }
            Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.kind.is_end_stream()
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
fn finished(guard: &mut Option<WorkGuard>, in_flight: &mut Option<InFlight>, bytes: u64) {
    let guard = guard.take();
    match in_flight.take() {
        Some(in_flight) => in_flight.park(guard, bytes),
        None => drop(guard),
    }
}
