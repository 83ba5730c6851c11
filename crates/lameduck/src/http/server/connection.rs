//! One connection's task: hyper drives the protocol; this task tells it
//! when to wind down.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::time::{Instant, Sleep, sleep_until};

use super::service::ConnService;
use super::stream::Io;
use super::{ResBody, ServiceBound, TlsOption};
use crate::http::conn::{ConnState, Proto};
use crate::http::shared::{Shared, Stage};

/// How long an HTTP/2 connection with no stream open waits, after its
/// GOAWAY (and after the client's last byte), for the client's
/// acknowledgement before it is closed anyway: a client that stopped
/// reading never sends one. Go's HTTP/2 server waits as long.
const GOAWAY_ACK_WAIT: Duration = Duration::from_secs(1);
use crate::http::Connection;

/// Serves one connection until it closes, is closed, or the task is aborted.
///
/// | stage | HTTP/1 | HTTP/2 |
/// |---|---|---|
/// | Draining | responses carry `Connection: close` (the per-request half, `ConnService`) | graceful GOAWAY; streams in flight complete |
/// | Stopping | idle: closed at hyper's next read unless input waits (the IO wrapper); busy: closed after the response | (as Draining) |
/// | Cancelled | closed unless a request is in flight | closed unless a stream is in flight |
///
/// "In flight" lasts until the response's last byte is on the wire, and
/// an HTTP/2 connection with no stream left closes [`GOAWAY_ACK_WAIT`]
/// after its GOAWAY even if the client never acknowledges it.
pub(super) async fn drive<I, S, B>(
    io: I,
    peer: Box<dyn fmt::Debug + Send + Sync>,
    tls: TlsOption,
    service: S,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) where
    I: Connection,
    S: ServiceBound<B>,
    B: ResBody,
{
    let state = Arc::new(ConnState::new(Some(peer)));
    // Registered from the accept: a connection still handshaking is rung at
    // a stage change, and named if it holds the shutdown up. The IO wrapper
    // then holds the registration: an upgraded connection outlives this
    // task.
    let registered = shared.register(&state);
    match tls {
        None => {
            serve(
                Io::new(io, state.clone(), shared.clone()).with_registration(registered),
                state,
                service,
                shared,
                builder,
            )
            .await
        }
        // Boxed: a TLS session and its handshake are large, and inline they
        // would make every plain connection's task as large.
        #[cfg(feature = "tls")]
        Some(tls) => {
            Box::pin(async move {
                // Here, not in the accept loop: a slow client stalls no one else.
                if let Some(io) = crate::http::tls::handshake(io, &tls, &state, &shared).await {
                    // A connection the server ends says so with close_notify.
                    let io = Io::new(io, state.clone(), shared.clone())
                        .with_close_message()
                        .with_registration(registered);
                    serve(io, state, service, shared, builder).await;
                }
            })
            .await
        }
        #[cfg(not(feature = "tls"))]
        Some(never) => match never {},
    }
}

/// Serves one connection through its IO wrapper.
async fn serve<I, S, B>(
    io: Io<I>,
    state: Arc<ConnState>,
    service: S,
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) where
    I: Connection,
    S: ServiceBound<B>,
    B: ResBody,
{
    let io = TokioIo::new(io);
    let service = ConnService::new(service, shared.clone(), state.clone());
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let grace_end = state.accepted + shared.first_request_grace;
    let mut seen = Stage::Running;
    let mut goaway: Option<Instant> = None;
    // Only the shutdown waits on a timer here; while running a request
    // costs one poll of the connection and one register of the bell.
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let mut listening: Option<std::task::Waker> = None;
    std::future::poll_fn(|cx| {
        loop {
            let stage = shared.stage();
            if stage != seen {
                seen = stage;
                if stage >= Stage::Stopping {
                    // From now on the end of each request matters here.
                    state.watch();
                }
            }
            let proto = state.proto();
            let mut wait_until = None;
            // A connection that has not sent its first stream yet gets it
            // served first: a GOAWAY before it would refuse a request the
            // client has just sent (a connection opened while draining, or
            // taken from the accept queue at Stopping). After
            // `first_request_grace` at Stopping, it goes anyway.
            if proto == Proto::H2 && goaway.is_none() && stage >= Stage::Draining {
                let grace_over = stage >= Stage::Stopping && Instant::now() >= grace_end;
                if !state.is_fresh() || grace_over {
                    // GOAWAY tells the client to open new streams on a new
                    // connection; hyper sends the final one with the last
                    // stream id after a PING round trip, so no stream in
                    // flight is refused.
                    conn.as_mut().graceful_shutdown();
                    goaway = Some(Instant::now());
                } else if stage >= Stage::Stopping {
                    wait_until = Some(grace_end);
                }
            }
            if stage == Stage::Cancelled && proto != Proto::Upgraded && !state.is_busy() {
                // Nothing left to answer here; dropping the connection
                // closes it.
                return Poll::Ready(());
            }
            // The connection first: on a stage change hyper then reads once
            // more, and the IO wrapper can end an idle HTTP/1 connection.
            // It also reads whatever the client has sent, so that a close
            // below never leaves input unread (closing a socket with unread
            // input resets the connection, and with it what the client has
            // not read yet).
            if let Poll::Ready(done) = conn.as_mut().poll(cx) {
                if let Err(err) = done {
                    tracing::debug!(target: "lameduck::http", error = %err, "connection ended with an error");
                }
                return Poll::Ready(());
            }
            if let Some(sent) = goaway.filter(|_| !state.is_busy()) {
                // The wait counts from the GOAWAY or from the client's last
                // byte, whichever is later: a client still reading the
                // last response sends window updates, and will answer the
                // PING behind it; closing under it would reset what it has
                // not read yet. Its last byte is known here: the poll
                // above read all it had sent.
                let ack_by = sent.max(state.last_read()) + GOAWAY_ACK_WAIT;
                if Instant::now() >= ack_by {
                    // No stream open, and for a second not a byte from the
                    // client, nor the acknowledgement: the client is gone
                    // or not reading. Nothing is lost by closing.
                    tracing::debug!(target: "lameduck::http", "HTTP/2 GOAWAY not acknowledged; closing the idle connection");
                    return Poll::Ready(());
                }
                wait_until = Some(ack_by);
            }
            // The bell keeps the waker it was given until it rings: given
            // again only when the task's waker changed or it rang.
            let rung = match &listening {
                Some(waker) if waker.will_wake(cx.waker()) => state.has_rung(),
                _ => {
                    listening = Some(cx.waker().clone());
                    state.listen(cx.waker())
                }
            };
            if rung {
                listening = None;
            }
            if rung || shared.stage() != seen {
                continue;
            }
            if let Some(at) = wait_until {
                let timer = timer.get_or_insert_with(|| Box::pin(sleep_until(at)));
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            return Poll::Pending;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hyper_util::rt::TokioExecutor;
    use hyper_util::server::conn::auto;
    use tokio_util::sync::CancellationToken;

    use super::drive;
    use crate::http::Probes;
    use crate::http::shared::{Orphans, Shared, Signals};

    /// A connection's task is what every open connection costs while it
    /// waits (with hyper's buffers). Its layout is fragile: 80 bytes more
    /// in the IO wrapper once made it 4,624 bytes in a release build
    /// instead of 2,520, rustc no longer overlapping the states around the
    /// connection. State only an upgraded or an HTTP/2 connection needs is
    /// boxed: 2,072 bytes in a release build. A test build lays it out
    /// otherwise (2,168 bytes): the bound keeps any growth a decision; the
    /// release figure is the benchmark's memory per idle connection
    /// (`scripts/bench http`).
    #[tokio::test]
    async fn a_plain_connection_s_task_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (io, peer) = listener.accept().await.unwrap();
        let token = CancellationToken::new;
        let signals = Arc::new(Signals::new(token(), token(), token()));
        let shared = Arc::new(Shared::new(
            signals,
            crate::Tracker::new("test"),
            Orphans::Spawn,
        ));
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let task = drive(
            io,
            Box::new(peer),
            None,
            Probes::new(crate::Health::new()),
            shared,
            builder,
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 2_400, "a connection's task takes {size} bytes");
    }
}
