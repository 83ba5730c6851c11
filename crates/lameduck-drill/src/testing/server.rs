//! The test server: hyper's HTTP/1.1 and HTTP/2 connection builders over a
//! plain accept loop, so that each mode controls exactly when the listener
//! closes and how connections end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::{Hup, Mode, TargetConfig, handoff, supervisor};

/// How long a graceful stop waits for open connections.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How long a graceful stop waits for the first request of a connection
/// that has not sent one yet.
const FIRST_REQUEST_WAIT: Duration = Duration::from_secs(1);
const BODY: [&[u8]; 2] = [b"lameduck", b" drill!\n"];

/// Told each time a readiness probe is answered 503 (for `hup=handoff-unready`,
/// which stays unready until a probe has heard it). One server per process
/// uses it.
static UNREADY_HEARD: Notify = Notify::const_new();

/// What connections watch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    /// Readiness 503; responses ask to close; HTTP/2 gets GOAWAY.
    draining: bool,
    /// Close idle connections, finish busy ones.
    stopping: bool,
    /// A supervisor's worker being replaced: responses ask to close and
    /// HTTP/2 gets GOAWAY, but readiness stays 200 — the service is not
    /// leaving, another worker of the same supervisor serves.
    retiring: bool,
    /// Connections accepted before this generation are torn down.
    reset_generation: u64,
}

impl State {
    /// Whether connections are told to go elsewhere: draining or retiring.
    fn leaving(self) -> bool {
        self.draining || self.retiring
    }
}

type Body = BoxBody<Bytes, Infallible>;

pub(super) async fn serve(
    config: TargetConfig,
    bound: Option<std::sync::mpsc::Sender<SocketAddr>>,
) -> i32 {
    let (listener, inherited) = handoff::listener(config.port)
        .await
        .expect("bind the test server");
    let addr = listener.local_addr().expect("a bound address");
    if let Some(bound) = bound {
        let _ = bound.send(addr);
    }
    eprintln!(
        "test server ({:?}, pid {}) listening on {addr}",
        config.mode,
        std::process::id()
    );
    if inherited {
        handoff::announce_ready();
    }
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    // Without a handler, SIGHUP kills the process, as it does any program
    // that does not expect it.
    let mut hup =
        (config.hup != Hup::Die).then(|| signal(SignalKind::hangup()).expect("a SIGHUP handler"));
    let (state, _) = watch::channel(State::default());
    let state = Arc::new(state);
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    let mut drain_over = Box::pin(tokio::time::sleep_until(far_future()));
    let mut terminated = false;
    // A supervisor's worker retires on SIGTERM: it stops accepting at once
    // (the supervisor keeps the socket open) and drains what it has.
    let worker = supervisor::is_worker();
    // hup=handoff-unready: unready since the SIGHUP, waiting to be heard.
    let mut handoff_pending = false;

    loop {
        tokio::select! {
            accepted = accept(listener.as_ref()) => {
                if let Ok((stream, _)) = accepted {
                    conns.spawn(connection(stream, config, Arc::clone(&state)));
                }
            }
            _ = term.recv() => {
                if terminated {
                    continue;
                }
                terminated = true;
                if worker {
                    drop(listener.take());
                    state.send_modify(|s| s.retiring = true);
                    drain_over.as_mut().reset(tokio::time::Instant::now() + config.drain);
                    continue;
                }
                match config.mode {
                    Mode::IgnoreTerm => {
                        eprintln!("test server: ignoring SIGTERM");
                        continue;
                    }
                    Mode::ExitAtOnce => std::process::exit(0),
                    Mode::Graceful => state.send_modify(|s| s.draining = true),
                    Mode::CloseFirst => close(&mut listener, &mut conns, config, &state).await,
                    Mode::ResetKeepalive => state.send_modify(|s| {
                        s.draining = true;
                        s.reset_generation += 1;
                    }),
                }
                drain_over.as_mut().reset(tokio::time::Instant::now() + config.drain);
            }
            () = recv(&mut hup) => {
                if config.hup == Hup::HandoffUnready && !terminated && !handoff_pending {
                    // The bug this mode stands for: unready before the
                    // successor is ready. It waits for a probe to hear it.
                    handoff_pending = true;
                    state.send_modify(|s| s.draining = true);
                    continue;
                }
                if config.hup == Hup::Handoff && !terminated && hand_off(listener.as_ref()).await {
                    terminated = true;
                    drop(listener.take());
                    state.send_modify(|s| s.draining = true);
                    drain_over.as_mut().reset(tokio::time::Instant::now() + config.drain);
                } else {
                    eprintln!("test server: SIGHUP, nothing to reload");
                }
            }
            () = UNREADY_HEARD.notified(), if handoff_pending => {
                handoff_pending = false;
                if hand_off(listener.as_ref()).await {
                    terminated = true;
                    drop(listener.take());
                    drain_over.as_mut().reset(tokio::time::Instant::now() + config.drain);
                } else {
                    state.send_modify(|s| s.draining = false);
                }
            }
            () = &mut drain_over => {
                drain_over.as_mut().reset(far_future());
                close(&mut listener, &mut conns, config, &state).await;
                state.send_modify(|s| {
                    if worker {
                        s.retiring = true;
                    } else {
                        s.draining = true;
                    }
                    s.stopping = true;
                });
                let _ = tokio::time::timeout(STOP_WAIT, async { while conns.join_next().await.is_some() {} }).await;
                return 0;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Starts a successor on the listener; whether it is ready.
async fn hand_off(listener: Option<&TcpListener>) -> bool {
    let Some(listener) = listener else {
        return false;
    };
    match handoff::start_successor(listener, &[]).await {
        Ok(pid) => {
            eprintln!("test server: handed the listener to pid {pid}; draining");
            true
        }
        Err(err) => {
            eprintln!("test server: no successor, still serving: {err}");
            false
        }
    }
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Closes the listener, after taking every connection already waiting in its
/// accept queue: closing a listening socket resets the connections the kernel
/// completed but the server never accepted, and their clients would see a
/// reset for a request they sent before the listener closed.
///
/// The queue is emptied with `accept(2)` itself until it would block, not
/// with tokio's `accept`: that one answers from the readiness the reactor
/// last saw, and a connection queued since the reactor's last turn (under
/// load, many milliseconds) would be left to the reset.
async fn close(
    listener: &mut Option<TcpListener>,
    conns: &mut JoinSet<()>,
    config: TargetConfig,
    state: &Arc<watch::Sender<State>>,
) {
    let Some(open) = listener.take() else { return };
    for stream in take_queued(open) {
        conns.spawn(connection(stream, config, Arc::clone(state)));
    }
}

/// Every connection in `listener`'s accept queue, then the listener closed.
/// Bounded: a queue refilled as fast as it is emptied stops being taken
/// after the listen backlog's worth.
fn take_queued(listener: TcpListener) -> Vec<TcpStream> {
    let mut taken = Vec::new();
    let Ok(listener) = listener.into_std() else {
        return taken;
    };
    for _ in 0..4096 {
        // Non-blocking, as tokio left it: `WouldBlock` once the queue is empty.
        let Ok((stream, _)) = listener.accept() else {
            break;
        };
        if stream.set_nonblocking(true).is_ok()
            && let Ok(stream) = TcpStream::from_std(stream)
        {
            taken.push(stream);
        }
    }
    taken
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Whether the client opened with the HTTP/2 preface.
async fn is_http2(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4];
    for _ in 0..1000 {
        match stream.peek(&mut buf).await {
            Ok(4) => return &buf == b"PRI ",
            Ok(0) | Err(_) => return false,
            Ok(n) if buf[..n] != b"PRI "[..n] => return false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    false
}

async fn connection(stream: TcpStream, config: TargetConfig, state: Arc<watch::Sender<State>>) {
    // The body goes out in two small writes: without this, Nagle's algorithm
    // holds the second one back until the client's delayed ACK.
    let _ = stream.set_nodelay(true);
    if config.mode == Mode::ResetKeepalive {
        // Closing with a zero linger sends RST instead of FIN.
        let _ = stream.set_zero_linger();
    }
    let http2 = is_http2(&stream).await;
    let io = TokioIo::new(stream);
    let first_request = Arc::new(Notify::new());
    let service = {
        let watcher = state.subscribe();
        let first_request = Arc::clone(&first_request);
        service_fn(move |request| {
            first_request.notify_one();
            let now = *watcher.borrow();
            respond(request, config, now.draining, now.draining || now.retiring)
        })
    };
    let served = first_request.notified();
    if http2 {
        let conn = http2::Builder::new(TokioExecutor::new()).serve_connection(io, service);
        drive(conn, true, served, config, state.subscribe()).await;
    } else {
        let conn = http1::Builder::new().serve_connection(io, service);
        drive(conn, false, served, config, state.subscribe()).await;
    }
}

/// Serves one connection until it ends, shutting it down gracefully when the
/// state says so, or dropping it (a reset) when its generation is torn down.
async fn drive<C: Graceful>(
    conn: C,
    http2: bool,
    served: Notified<'_>,
    config: TargetConfig,
    mut watcher: watch::Receiver<State>,
) {
    let generation = watcher.borrow().reset_generation;
    // A connection opened while draining is served until the stop: a GOAWAY
    // at once would refuse all new HTTP/2 work during the drain.
    let draining_at_accept = watcher.borrow().leaving();
    let mut conn = std::pin::pin!(conn);
    let mut served = std::pin::pin!(served);
    let mut has_served = false;
    // hyper's graceful shutdown closes an idle connection at once, including
    // one just accepted whose client is about to send its first request: a
    // graceful server lets that request in (for a while) before it closes.
    let first_request_wait = tokio::time::sleep(FIRST_REQUEST_WAIT);
    let mut first_request_wait = std::pin::pin!(first_request_wait);
    let mut told_to_close = false;
    loop {
        let now = *watcher.borrow_and_update();
        if now.reset_generation > generation {
            // Dropping the connection closes the socket.
            return;
        }
        let goaway =
            http2 && now.leaving() && !draining_at_accept && config.mode != Mode::ResetKeepalive;
        let close = now.stopping || goaway;
        let may_close =
            has_served || first_request_wait.is_elapsed() || config.mode != Mode::Graceful;
        if close && may_close && !told_to_close {
            told_to_close = true;
            conn.as_mut().shutdown();
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = watcher.changed() => if changed.is_err() { return },
            () = served.as_mut(), if !has_served => has_served = true,
            () = first_request_wait.as_mut(), if close && !told_to_close => {}
        }
    }
}

/// hyper's two connection types, which share no trait for graceful shutdown.
trait Graceful: std::future::Future {
    fn shutdown(self: std::pin::Pin<&mut Self>);
}

impl<S> Graceful for http1::Connection<TokioIo<TcpStream>, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<S> Graceful for http2::Connection<TokioIo<TcpStream>, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = Body>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

async fn respond(
    request: Request<Incoming>,
    config: TargetConfig,
    draining: bool,
    leaving: bool,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() == "/readyz" {
        let (status, text) = if draining {
            UNREADY_HEARD.notify_one();
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        } else {
            (StatusCode::OK, "ready\n")
        };
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
        *response.status_mut() = status;
        return Ok(response);
    }
    if let Some(code) = request.uri().path().strip_prefix("/status/") {
        let status = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok());
        let mut response = Response::new(Full::new(Bytes::from_static(b"as asked\n")).boxed());
        *response.status_mut() = status.unwrap_or(StatusCode::BAD_REQUEST);
        return Ok(response);
    }
    let half = config.delay / 2;
    tokio::time::sleep(half).await;
    let (mut sender, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(2);
    tokio::spawn(async move {
        let _ = sender.send_data(Bytes::from_static(BODY[0])).await;
        tokio::time::sleep(half).await;
        let _ = sender.send_data(Bytes::from_static(BODY[1])).await;
    });
    let mut response = Response::new(body.boxed());
    let length = BODY[0].len() + BODY[1].len();
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(length));
    // A graceful server tells keep-alive clients to go elsewhere while it
    // drains (HTTP/2 connections get GOAWAY instead).
    let says_close = matches!(config.mode, Mode::Graceful | Mode::CloseFirst);
    if leaving && says_close && request.version() == http::Version::HTTP_11 {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections the kernel completed that the reactor has not yet
    /// reported are taken at the close, not reset.
    #[tokio::test]
    async fn closing_takes_the_connections_queued_since_the_reactor_last_looked() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Blocking connects: each returns once the kernel queued it, and
        // the runtime never turns in between.
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut conns = JoinSet::new();
        let (state, _) = watch::channel(State::default());
        let config = TargetConfig::new(Mode::Graceful, 0);
        close(&mut Some(listener), &mut conns, config, &Arc::new(state)).await;
        assert_eq!(conns.len(), clients.len());
    }
}
