//! The service hyper calls for each request of a connection: the user's
//! service with the per-request half of the sequence, without the generic
//! tower glue.
//!
//! [`Drain`](crate::http::Drain) under hyper-util's `TowerToHyperService`
//! moves each request into a `Oneshot` with a clone of the whole layer,
//! polls the clone ready, moves the request out again into the call, and
//! keeps the response future inside the `Oneshot`'s state: several
//! hundred bytes copied per request, and two reference counts taken and
//! dropped. Here the call happens in hyper's own `call`, whenever the
//! service is ready at once (every axum `Router`, every `service_fn`): the
//! request is moved once, and the future hyper keeps is the response
//! future itself.
//!
//! So the service's `call` (not its future) runs where hyper calls it: in
//! the connection's task, also for an HTTP/2 stream, whose future hyper
//! then spawns. Under `TowerToHyperService` an HTTP/2 stream's `call` ran
//! in the stream's task. A `call` that only builds its future, as axum's,
//! tonic's and `service_fn`'s do, costs the connection nothing more.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use hyper::body::Incoming;
use tower_service::Service;

use super::{ResBody, ServiceBound};
use crate::BoxError;
use crate::http::DrainBody;
use crate::http::conn::ConnState;
use crate::http::layer::{self, future::ResponseFuture};
use crate::http::shared::Shared;

/// One connection's service.
pub(super) struct ConnService<S> {
    inner: S,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
}

impl<S> ConnService<S> {
    pub(super) fn new(inner: S, shared: Arc<Shared>, conn: Arc<ConnState>) -> Self {
        Self {
            inner,
            shared,
            conn,
        }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + ServiceBound<B>,
    B: ResBody,
{
    type Response = Response<DrainBody<B>>;
    type Error = BoxError;
    type Future = ServeFuture<S>;

    #[inline]
    fn call(&self, req: Request<Incoming>) -> ServeFuture<S> {
        // A clone per request, as `TowerToHyperService` and `axum::serve`
        // take: tower's `call` needs the service to itself.
        let mut inner = self.inner.clone();
        // Asked with a waker that does nothing: a service that is not ready
        // at once is asked again, with the task's, by the future.
        match inner.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => ServeFuture {
                state: State::Called(layer::call(&mut inner, &self.shared, Some(&self.conn), req)),
            },
            Poll::Ready(Err(e)) => ServeFuture {
                state: State::Failed(Some(e.into())),
            },
            Poll::Pending => ServeFuture {
                state: State::NotReady(Box::new(NotReady {
                    inner,
                    req: Some(req),
                    shared: self.shared.clone(),
                    conn: self.conn.clone(),
                })),
            },
        }
    }
}

/// The future of [`ConnService`]: the response future of the call, or the
/// wait for a service that was not ready.
pub(super) struct ServeFuture<S: Service<Request<Incoming>>> {
    state: State<S>,
}

enum State<S: Service<Request<Incoming>>> {
    Called(ResponseFuture<S::Future>),
    // Boxed: rare (a service with back-pressure), and the request is large.
    NotReady(Box<NotReady<S>>),
    // Not `S::Error`, which need not be `Send`.
    Failed(Option<BoxError>),
}

struct NotReady<S> {
    inner: S,
    req: Option<Request<Incoming>>,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
}

// Nothing is pinned in place: the response future is `Unpin` and the rest
// is never pinned.
impl<S: Service<Request<Incoming>>> Unpin for ServeFuture<S> {}

impl<S, B> Future for ServeFuture<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + ServiceBound<B>,
    B: ResBody,
{
    type Output = Result<Response<DrainBody<B>>, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Called(fut) => return Pin::new(fut).poll(cx).map_err(Into::into),
                State::Failed(e) => {
                    let e = e.take().expect("ServeFuture polled after completion");
                    return Poll::Ready(Err(e));
                }
                State::NotReady(wait) => {
                    let ready = std::task::ready!(wait.inner.poll_ready(cx));
                    if let Err(e) = ready {
                        this.state = State::Failed(Some(e.into()));
                        continue;
                    }
                    let req = wait.req.take().expect("the request is taken once");
                    let fut = layer::call(&mut wait.inner, &wait.shared, Some(&wait.conn), req);
                    this.state = State::Called(fut);
                }
            }
        }
    }
}
