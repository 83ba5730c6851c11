//! The response future of [`Drain`](super::Drain).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::body::{Boundary, DrainBody, EndEarly};
use crate::WorkGuard;
use crate::http::StreamEnd;
use crate::http::cancel::{self, Scoped};
use crate::http::conn::{InFlight, UpgradeEnd};
use crate::http::shared::{Shared, Stage};
use crate::http::stats::Outcome;
use crate::tracker::Mark;

pub(super) struct Parts {
    /// The server: its signals are the request's scope ([`cancel::enter`]).
    pub(super) shared: Arc<Shared>,
    pub(super) guard: WorkGuard,
    pub(super) in_flight: Option<InFlight>,
    pub(super) h1: bool,
    pub(super) upgrade: bool,
    /// A gRPC call: answered with gRPC statuses.
    pub(super) grpc: bool,
}

/// The response future of [`Drain`](super::Drain).
///
/// It resolves to the inner service's response with the request's tracking
/// moved into the body, or to a `503` when the cancel signal fires first;
/// in that case the inner future is not dropped but finishes in the
/// background (see [`Cancel`](crate::http::Cancel)).
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<F> {
    state: State<F>,
}

enum State<F> {
    Running {
        // Boxed so it can be moved into the background when cancelled.
        fut: Pin<Box<F>>,
        // Registered only once the handler has returned Pending: most
        // handlers finish on their first poll and never pay for it.
        cancel: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        parts: Parts,
    },
    Early {
        // Boxed: rare (a probe, a 503), and a response head is large; the
        // future is moved several times per request.
        resp: Box<Response<Bytes>>,
        in_flight: Option<InFlight>,
    },
    Done,
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(super) fn new(fut: Pin<Box<F>>, parts: Parts) -> Self {
        Self {
            state: State::Running {
                fut,
                cancel: None,
                parts,
            },
        }
    }

    pub(super) fn early(
        resp: Response<Bytes>,
        shared: Arc<Shared>,
        in_flight: Option<InFlight>,
        h1: bool,
    ) -> Self {
        let mut resp = resp;
        responded(in_flight.as_ref(), h1);
        if h1 {
            keep_alive_or_close(&mut resp, &shared, in_flight.is_some());
        }
        Self {
            state: State::Early {
                resp: Box::new(resp),
                in_flight,
            },
        }
    }

    pub(super) fn unavailable(in_flight: Option<InFlight>, h1: bool, grpc: bool) -> Self {
        responded(in_flight.as_ref(), h1);
        Self {
            state: State::Early {
                resp: Box::new(unavailable(h1, grpc)),
                in_flight,
            },
        }
    }
}

/// The answer for a request whose handler was cancelled before it
/// responded: retry, elsewhere, and not on this connection. A gRPC call
/// gets a gRPC status, which its client retries by its own rules.
fn unavailable(h1: bool, grpc: bool) -> Response<Bytes> {
    if grpc {
        return grpc_unavailable();
    }
    let mut resp = Response::new(Bytes::from_static(b"shutting down\n"));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if h1 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Running { .. } => "running",
            State::Early { .. } => "early",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

// Nothing is pinned in place: the inner future is boxed.
impl<F> Unpin for ResponseFuture<F> {}

impl<F> Drop for ResponseFuture<F> {
    fn drop(&mut self) {
        // Dropped with no response yet: the client went away, or the hard
        // deadline aborted its connection.
        if let State::Running { parts, .. } = &self.state {
            parts.shared.count(Outcome::Aborted);
            parts
                .shared
                .mark_after_cancel(Some(&parts.guard), Mark::Cut);
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>> + Send + 'static,
{
    type Output = Result<Response<DrainBody<B>>, E>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let State::Running { fut, cancel, parts } = &mut this.state else {
            return match std::mem::replace(&mut this.state, State::Done) {
                State::Early { resp, in_flight } => {
                    Poll::Ready(Ok((*resp).map(|b| DrainBody::full(b, in_flight))))
                }
                State::Running { .. } => unreachable!("matched above"),
                State::Done => panic!("ResponseFuture polled after completion"),
            };
        };
        loop {
            // Look at the signal before polling the handler, so that when it
            // has fired the handler gets one poll that sees it and a chance
            // to answer for itself.
            let cancelled = cancel
                .as_mut()
                .is_some_and(|c| c.as_mut().poll(cx).is_ready());
            let current = cancel::enter(&parts.shared.signals);
            let polled = fut.as_mut().poll(cx);
            drop(current);
            if let Poll::Ready(result) = polled {
                let State::Running { parts, fut, .. } =
                    std::mem::replace(&mut this.state, State::Done)
                else {
                    unreachable!("matched above")
                };
                // Its connection keeps the box for the next request's.
                match &parts.in_flight {
                    Some(in_flight) => in_flight.conn().spare.keep(fut),
                    None => drop(fut),
                }
                return Poll::Ready(match result {
                    // Counted when its body ends, in the phase it ends in.
                    Ok(resp) => Ok(finish(resp, parts)),
                    Err(e) => {
                        parts.shared.count(Outcome::Failed);
                        parts
                            .shared
                            .mark_after_cancel(Some(&parts.guard), Mark::Cut);
                        Err(e)
                    }
                });
            }
            if cancelled {
                break;
            }
            if cancel.is_none() {
                *cancel = Some(Box::pin(
                    parts.shared.signals.cancel.clone().cancelled_owned(),
                ));
                continue;
            }
            return Poll::Pending;
        }
        // Cancelled with no response yet: the client gets its 503 now; the
        // handler keeps its tracking and finishes (or is aborted) on its own.
        let State::Running { fut, parts, .. } = std::mem::replace(&mut this.state, State::Done)
        else {
            unreachable!("matched above")
        };
        let Parts {
            shared,
            guard,
            in_flight,
            h1,
            grpc,
            ..
        } = parts;
        shared.count(Outcome::Unavailable);
        shared.tracker.mark(&guard, Mark::Unavailable);
        let fut = Scoped::new(shared.signals.clone(), fut);
        shared.orphans.adopt(Box::pin(async move {
            let _guard = guard;
            let _ = fut.await;
        }));
        responded(in_flight.as_ref(), h1);
        Poll::Ready(Ok(
            unavailable(h1, grpc).map(|b| DrainBody::full(b, in_flight))
        ))
    }
}

/// A gRPC "trailers-only" response (HTTP 200, the status in the headers,
/// no body) with status `UNAVAILABLE` (14): the call was not carried out,
/// and a client may retry it (gRPC's status code guide).
fn grpc_unavailable() -> Response<Bytes> {
    let mut resp = Response::new(Bytes::new());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    super::body::grpc_status_unavailable(h);
    resp
}

/// HTTP/1: from Draining on, every response closes its connection, so
/// keep-alive clients go elsewhere; before, a connection of lameduck's
/// server announces its idle timeout (`Keep-Alive: timeout=N`), so that a
/// well-behaved pool retires it before the server closes it.
fn keep_alive_or_close<B>(resp: &mut Response<B>, shared: &Shared, served: bool) {
    if shared.stage() >= Stage::Draining {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return;
    }
    if let (true, Some((_, Some(announce)))) = (served, &shared.idle_timeout) {
        // Next to a handler's own `Connection: close` the header is moot,
        // and harmless.
        resp.headers_mut().append(KEEP_ALIVE, announce.clone());
    }
}

const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");

/// HTTP/2: the response is on its way to h2, which begins it on the wire
/// when it can (see `ConnState::responded`).
fn responded(in_flight: Option<&InFlight>, h1: bool) {
    if !h1 && let Some(in_flight) = in_flight {
        in_flight.conn().responded();
    }
}

// Inlined: a response and its parts are large, and moved once less.
#[inline]
fn finish<B>(mut resp: Response<B>, parts: Parts) -> Response<DrainBody<B>> {
    let Parts {
        shared,
        guard,
        mut in_flight,
        h1,
        upgrade,
        grpc,
    } = parts;
    let mut guard = Some(guard);
    let chosen = if resp.extensions().is_empty() {
        None
    } else {
        resp.extensions().get::<StreamEnd>().copied()
    };
    let end = chosen.unwrap_or_default();
    // Looked at before `Keep-Alive` is added: a handler's response with no
    // header (most) then costs no lookup.
    let sse = !grpc
        && !resp.headers().is_empty()
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let upgraded = upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
        // A handler that answered the cancel signal with a 503 of its own
        // gave the clean error too, not a response "finished anyway".
        shared.mark_after_cancel(guard.as_ref(), Mark::Unavailable);
    }
    // Served by lameduck's server: the connection it arrived on.
    let served = in_flight.is_some();
    if upgraded {
        if let Some(conn) = in_flight.as_ref().map(InFlight::conn) {
            // The connection stops being HTTP: its tracking now lasts as
            // long as the upgraded IO.
            let end = match end {
                StreamEnd::AtStopping => UpgradeEnd::Bounded,
                StreamEnd::AtCancel => UpgradeEnd::Handler,
            };
            conn.upgraded(guard.take(), end);
            in_flight = None;
        }
    } else if h1 {
        keep_alive_or_close(&mut resp, &shared, served);
    }
    responded(in_flight.as_ref(), h1);
    // An event stream cut at a message boundary is a clean end: the client
    // reconnects (elsewhere). A gRPC response cut at a message boundary
    // ends with the status UNAVAILABLE, which its client retries; by
    // default at the cancel signal, so streams in flight run on through
    // Stopping, as Go's GracefulStop lets them. Other streams are left to
    // their producers, since a chunked body cut short looks complete to
    // its client.
    let grpc = grpc && !h1;
    let end = if grpc {
        chosen.unwrap_or(StreamEnd::AtCancel)
    } else {
        end
    };
    let early = (sse || grpc).then(|| {
        let boundary = if grpc {
            Boundary::grpc()
        } else {
            Boundary::default()
        };
        Box::new(EndEarly::new(end, shared.clone(), boundary))
    });
    resp.map(|body| DrainBody::new(body, guard, in_flight, early, shared))
}
