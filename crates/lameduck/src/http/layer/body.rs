//! The response body of [`Drain`](super::Drain).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::WorkGuard;
use crate::http::shared::InFlight;

pin_project_lite::pin_project! {
    /// The response body of [`Drain`](super::Drain): the inner body, or a
    /// short text lameduck answered with (a probe, a `503`).
    ///
    /// The request counts as in flight until the body has been sent (or
    /// dropped), so a slow download holds the shutdown up like a slow
    /// handler does.
    pub struct DrainBody<B> {
        #[pin]
        kind: Kind<B>,
        guard: Option<WorkGuard>,
        in_flight: Option<InFlight>,
        end_at: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> DrainBody<B> {
    pub(super) fn new(
        body: B,
        guard: Option<WorkGuard>,
        in_flight: Option<InFlight>,
        end_at: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    ) -> Self {
        Self {
            kind: Kind::Inner { body },
            guard,
            in_flight,
            end_at,
        }
    }

    pub(super) fn full(data: Bytes, in_flight: Option<InFlight>) -> Self {
        Self {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            guard: None,
            in_flight,
            end_at: None,
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
        let this = self.project();
        if let Some(end_at) = this.end_at {
            if end_at.as_mut().poll(cx).is_ready() {
                this.guard.take();
                this.in_flight.take();
                return Poll::Ready(None);
            }
        }
        let frame = match this.kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d.into())))),
        };
        // Done (or failed): the request stops counting now, not when hyper
        // gets round to dropping the body.
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.guard.take();
            this.in_flight.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
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
