//! The per-request half of the lame-duck sequence as a tower middleware, for
//! servers that lameduck does not run.

use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Method, Request, Response, Version, header};
use tower_layer::Layer;
use tower_service::Service;

use super::Cancel;
use super::cancel;
use super::conn::ConnState;
use super::shared::{Orphans, Shared, Signals, Stage};
use super::stats::Outcome;
use crate::Context;

mod body;
pub mod future;

pub use body::DrainBody;

use future::ResponseFuture;

/// Wraps a service with [`Drain`].
///
/// Built from a component's [`Context`], it gives a server loop of your own
/// (axum's `serve`, a hyper-util loop) the per-request part of the
/// shutdown sequence:
///
/// | phase | every request |
/// |---|---|
/// | Running | is tracked in the component's tracker, labelled with its method and path |
/// | Draining | HTTP/1 responses carry `Connection: close`, so keep-alive clients go elsewhere |
/// | Stopping | (as Draining) |
/// | Cancelling | handlers see [`Cancel`] fire ([`Cancel::current`]); a request still waiting for its response gets `503`, `Retry-After: 1` and `Connection: close`, while its handler finishes in the background; `text/event-stream` responses end |
///
/// What a layer cannot do is the connection half, which needs the server
/// loop: stop accepting, close idle connections, send HTTP/2 GOAWAY, close
/// upgraded connections. [`Server`](super::Server) does all of it; with
/// your own loop, stop accepting at [`Context::on_stopping`] and use its
/// graceful shutdown.
///
/// # Examples
///
/// ```
/// use lameduck::Component;
/// use lameduck::http::DrainLayer;
/// use tower_layer::Layer;
///
/// let http = Component::new("http", |ctx| async move {
///     let service = DrainLayer::new(&ctx).layer(tower_service_fn());
///     ctx.ready();
///     // ... serve `service` with your own accept loop until ctx.on_stopping() ...
///     # let _ = service;
///     Ok(())
/// });
/// # fn tower_service_fn() -> lameduck::http::Probes { lameduck::http::Probes::new(lameduck::Health::new()) }
/// # let _ = http;
/// ```
///
/// # Panics
///
/// [`new`](Self::new) panics outside a tokio runtime: it spawns the task
/// that follows the component's signals.
#[derive(Clone)]
pub struct DrainLayer {
    shared: Arc<Shared>,
}

impl DrainLayer {
    /// A layer tied to the component whose context this is: its signals and
    /// its tracker.
    pub fn new(ctx: &Context) -> Self {
        let signals = Arc::new(Signals::from_context(ctx));
        // Ends at the cancel signal; until then it is one parked task.
        tokio::spawn(signals.clone().follow());
        let shared = Arc::new(Shared {
            stats: super::stats::for_component(ctx),
            ..Shared::new(signals, ctx.tracker().clone(), Orphans::Spawn)
        });
        super::traffic::watch(ctx, &shared);
        Self { shared }
    }

    /// The [`Cancel`] this layer gives requests ([`Cancel::current`]).
    pub fn cancel(&self) -> Cancel {
        Cancel::new(self.shared.signals.clone())
    }
}

impl fmt::Debug for DrainLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DrainLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = Drain<S>;

    fn layer(&self, inner: S) -> Drain<S> {
        Drain {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A service that takes part in the shutdown sequence request by request;
/// see [`DrainLayer`].
pub struct Drain<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Drain<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Drain<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Drain<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Drain<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<DrainBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // A server of the user's own: the layer counts its traffic.
        // Relaxed: a count read by the sampler, ordering nothing.
        self.shared
            .counters
            .layered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        call(&mut self.inner, &self.shared, None, req)
    }
}

/// One request through `inner`, whose `poll_ready` said it is ready: the
/// per-request half of the sequence, for the layer (no `conn`) and for
/// lameduck's own server (the connection the request arrived on).
#[inline]
pub(crate) fn call<S, ReqBody, ResBody>(
    inner: &mut S,
    shared: &Arc<Shared>,
    conn: Option<&Arc<ConnState>>,
    req: Request<ReqBody>,
) -> ResponseFuture<S::Future>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    let in_flight = conn.map(ConnState::dispatch);
    let h1 = req.version() <= Version::HTTP_11;
    let stage = shared.stage();
    if let Some(conn) = conn
        && !h1
        && stage >= Stage::Draining
    {
        // The connection's task sends GOAWAY once a stream has been
        // dispatched; this may be the first.
        conn.ring();
    }
    // Answering without calling the inner service leaves whatever its
    // poll_ready reserved to the next call, which tower allows.
    if let Some(probes) = &shared.probes
        && let Some(resp) = probes.respond(&req)
    {
        if let Some(conn) = conn {
            conn.probed();
        }
        return ResponseFuture::early(resp, shared.clone(), in_flight, h1);
    }
    let grpc = is_grpc(&req);
    if stage >= Stage::Cancelled {
        shared.count(Outcome::Unavailable);
        return ResponseFuture::unavailable(in_flight, h1, grpc);
    }
    // Served by lameduck's server, hyper has put the upgrade's handle
    // into the request of every HTTP/1.1 request that asks for one: the
    // others (all but a few) cost no header lookup.
    let upgrade = h1
        && (conn.is_none() || !req.extensions().is_empty())
        && req.headers().contains_key(header::UPGRADE);
    let guard = track(&shared.tracker, &req, upgrade);
    // A scope rather than a request extension: no allocation, and no
    // reference count. The response future enters it again at each poll,
    // with the server's signals it holds.
    let current = cancel::enter(&shared.signals);
    let fut = inner.call(req);
    drop(current);
    // Boxed, so that a handler the cancel signal finds running can finish
    // in the background; in the box its connection kept, if there is one.
    let fut = match conn {
        Some(conn) => conn.spare.boxed(fut),
        None => Box::pin(fut),
    };
    ResponseFuture::new(
        fut,
        future::Parts {
            shared: shared.clone(),
            guard,
            in_flight,
            h1,
            upgrade,
            grpc,
        },
    )
}

/// Whether a request is a gRPC call (`application/grpc`, `+proto` and
/// the like, gRPC-Web included): it is answered with gRPC statuses.
/// Every gRPC call is a `POST`: other requests cost no lookup.
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Tracks a request under its label: method and path. Not the query,
/// which can carry credentials and would end up in logs and reports. A
/// short label costs no allocation (`Tracker::track_parts`).
fn track<B>(tracker: &crate::Tracker, req: &Request<B>, upgrade: bool) -> crate::WorkGuard {
    let (method, path) = (req.method().as_str(), req.uri().path());
    let upgrade = if upgrade { " (upgrade)" } else { "" };
    tracker.track_parts(&[method, " ", path, upgrade])
}

#[cfg(test)]
mod tests {
    use http::{Method, Request};

    use super::track;
    use crate::Tracker;

    fn label(method: Method, uri: &str, upgrade: bool) -> String {
        let tracker = Tracker::new("t");
        let req = Request::builder().method(method).uri(uri).body(()).unwrap();
        let _guard = track(&tracker, &req, upgrade);
        let items = tracker.snapshot();
        assert_eq!(items.len(), 1);
        items[0].label.clone()
    }

    #[test]
    fn a_request_is_labelled_with_its_method_and_path_never_its_query() {
        assert_eq!(label(Method::GET, "/work?token=x", false), "GET /work");
        assert_eq!(label(Method::DELETE, "/a/b", false), "DELETE /a/b");
        assert_eq!(label(Method::OPTIONS, "*", false), "OPTIONS *");
        let purge = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(label(purge, "/cache", false), "PURGE /cache");
        assert_eq!(label(Method::GET, "/ws", true), "GET /ws (upgrade)");
        let long = format!("/{}", "p".repeat(60));
        assert_eq!(label(Method::POST, &long, false), format!("POST {long}"));
    }
}
