//! One connection's task: hyper drives the protocol; this task tells it
//! when to wind down.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

use super::stream::Io;
use super::{ResBody, ServiceBound};
use crate::http::shared::{ConnState, Proto, Shared, Stage};
use crate::http::{Connection, Drain};

/// Serves one connection until it closes, is closed, or the task is aborted.
///
/// | stage | HTTP/1 | HTTP/2 |
/// |---|---|---|
/// | Draining | responses carry `Connection: close` (the middleware) | graceful GOAWAY; streams in flight complete |
/// | Stopping | idle: closed at hyper's next read unless input waits (the IO wrapper); busy: closed after the response | (as Draining) |
/// | Cancelled | closed unless a request is in flight | closed unless a stream is in flight |
pub(super) async fn drive<I, S, B>(
    io: I,
    service: S,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) where
    I: Connection,
    S: ServiceBound<B>,
    B: ResBody,
{
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Io::new(io, state.clone(), shared.clone()));
    let service = TowerToHyperService::new(Drain::for_connection(
        service,
        shared.clone(),
        state.clone(),
    ));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut stages = shared.signals.subscribe();
    let mut watching = true;
    let mut goaway = false;
    let grace_end = state.accepted + shared.first_request_grace;
    loop {
        let stage = shared.stage();
        let proto = state.proto();
        // A connection that has not sent its first stream yet gets it
        // served first: a GOAWAY before it would refuse a request the client
        // has just sent (a connection opened while draining, or taken from
        // the accept queue at Stopping). After `first_request_grace` at
        // Stopping, it goes anyway.
        let fresh = state.is_fresh();
        let grace_over = tokio::time::Instant::now() >= grace_end;
        if proto == Proto::H2
            && !goaway
            && ((stage >= Stage::Draining && !fresh) || (stage >= Stage::Stopping && grace_over))
        {
            // GOAWAY tells the client to open new streams on a new
            // connection; hyper sends the final one with the last stream id
            // after a PING round trip, so no stream in flight is refused.
            conn.as_mut().graceful_shutdown();
            goaway = true;
        }
        let wait_grace = proto == Proto::H2 && !goaway && stage >= Stage::Stopping;
        if stage == Stage::Cancelled && proto != Proto::Upgraded && state.in_flight() == 0 {
            // Nothing left to answer here; dropping the connection closes it.
            return;
        }
        tokio::select! {
            // The connection first: on a stage change hyper then reads once
            // more, and the IO wrapper can end an idle HTTP/1 connection.
            biased;
            done = conn.as_mut() => {
                if let Err(err) = done {
                    tracing::debug!(target: "lameduck::http", error = %err, "connection ended with an error");
                }
                return;
            }
            changed = stages.changed(), if watching => watching = changed.is_ok(),
            () = state.notify.notified() => {}
            () = tokio::time::sleep_until(grace_end), if wait_grace => {}
        }
    }
}
