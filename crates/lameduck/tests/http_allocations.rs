//! What lameduck's server adds to a request in heap allocations, against a
//! bare hyper-util server with the same handler, over the same keep-alive
//! HTTP/1.1 connection from a client that allocates nothing.
//!
//! Draining must cost nothing while nothing drains: the request's
//! [`Cancel`] is a scope, not a request extension (which allocated a map,
//! its table and a box: three per request); the `Keep-Alive` announcement
//! goes in the header map that hyper keeps for the connection's next
//! request head (a response map with an entry is the next request's, so
//! its two allocations replace the two of that request's map); and the box
//! of the handler's future, which lets a handler cancelled at the deadline
//! finish in the background while its client gets a `503`, is the one the
//! connection's last request used (`http/spare.rs`).
//!
//! Against hyper-util's `TowerToHyperService`, as a user would serve the
//! same tower service, lameduck saves more: there the request waits in a
//! `Oneshot` until hyper polls it, hyper reads the socket in between (to
//! notice a client that closes), and a request still alive then holds on to
//! hyper's read buffer, which must be split off and reallocated (two
//! allocations per request with this handler).
#![cfg(feature = "http")]

mod http_support;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use http_support::{Running, budget};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use lameduck::http::Cancel;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// Requests counted, after as many to warm the connection up.
const REQUESTS: usize = 400;

/// `hello\n` at once: a handler that allocates nothing, and that checks
/// what lameduck gives it, when served by lameduck.
#[derive(Clone, Copy)]
struct Hello {
    lameduck: bool,
}

impl tower_service::Service<http::Request<Incoming>> for Hello {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Incoming>) -> Self::Future {
        if self.lameduck {
            assert!(Cancel::current().is_some(), "the call runs in the scope");
            assert!(
                req.extensions().is_empty(),
                "nothing was inserted into the request"
            );
        }
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            b"hello\n",
        )))))
    }
}

/// Sends `n` requests on one connection, one at a time, each read to its
/// end, with no allocation of its own.
fn load(stream: &mut std::net::TcpStream, n: usize) {
    let mut buf = [0u8; 1024];
    for _ in 0..n {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .unwrap();
        let mut len = 0;
        // Bounded: the connection has a read timeout.
        while !buf[..len].ends_with(b"\r\n\r\nhello\n") {
            let got = stream.read(&mut buf[len..]).expect("a response");
            assert!(got > 0, "closed before the response's end");
            len += got;
            assert!(len < buf.len(), "one response at a time");
        }
    }
}

/// Allocations per request on a warm connection to `addr`, counted over the
/// whole process while only the server works.
async fn allocations_per_request(addr: SocketAddr) -> f64 {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        load(&mut stream, REQUESTS);
        let region = Region::new(GLOBAL);
        load(&mut stream, REQUESTS);
        region.change().allocations as f64 / REQUESTS as f64
    })
    .await
    .unwrap()
}

/// hyper-util's auto builder in a plain accept loop, `service` on each
/// connection.
async fn accept_loop<S, F>(service: S) -> SocketAddr
where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<Full<Bytes>>,
            Error = Infallible,
            Future = F,
        > + Clone
        + Send
        + 'static,
    F: std::future::Future<Output = Result<http::Response<Full<Bytes>>, Infallible>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                return;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(io), service).await;
            });
        }
    });
    addr
}

/// The tower service under hyper-util's `TowerToHyperService`, as a user
/// would serve it.
async fn bare() -> SocketAddr {
    accept_loop(TowerToHyperService::new(Hello { lameduck: false })).await
}

/// hyper's own `service_fn`, whose response carries one header as
/// lameduck's carries `Keep-Alive`: what hyper itself allocates per request.
async fn hyper_one_header() -> SocketAddr {
    accept_loop(hyper::service::service_fn(
        |_req: http::Request<Incoming>| {
            let mut resp = http::Response::new(Full::new(Bytes::from_static(b"hello\n")));
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            std::future::ready(Ok::<_, Infallible>(resp))
        },
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_request_costs_no_more_allocations_than_under_bare_hyper_util() {
    let bare = allocations_per_request(bare().await).await;
    let hyper = allocations_per_request(hyper_one_header().await).await;
    let server = Running::start(
        budget(
            Duration::ZERO,
            Duration::from_secs(5),
            Duration::from_secs(1),
        ),
        Hello { lameduck: true },
        |s| s,
    )
    .await;
    let lameduck = allocations_per_request(server.addr).await;
    server.stop().await;
    eprintln!(
        "allocations per request: lameduck {lameduck:.2}, bare hyper-util {bare:.2}, \
         hyper's service_fn answering with one header {hyper:.2}"
    );
    // A quarter of an allocation per request for what runs beside the
    // requests (timers, the traffic sampler), which is not per request.
    // Was bare + 1 while the server went through `TowerToHyperService`.
    assert!(
        lameduck <= bare + 0.25,
        "lameduck {lameduck:.2} allocations per request, bare hyper-util {bare:.2}"
    );
    // Nothing of lameduck's own: was one more (the handler's future's box)
    // before the connection kept it for the next request.
    assert!(
        lameduck <= hyper + 0.25,
        "lameduck {lameduck:.2} allocations per request, hyper alone {hyper:.2}"
    );
}
