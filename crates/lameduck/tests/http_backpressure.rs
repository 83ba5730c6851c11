//! A service with back-pressure under lameduck's server: one whose
//! `poll_ready` is not ready at once is waited for (the server calls it in
//! hyper's own `call` when it is ready at once, which most are), and one
//! whose `poll_ready` fails ends that request's connection only.
#![cfg(feature = "http")]

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use http_support::{H1, H2, Running, budget, text};
use hyper::body::Incoming;
use lameduck::ExitStatus;
use lameduck::http::Cancel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Each clone is not ready the first time it is asked (it wakes its
/// caller at once), then ready; or never ready, with an error.
#[derive(Clone)]
struct Gated {
    not_ready: Arc<AtomicUsize>,
    asked: bool,
    broken: bool,
}

impl Gated {
    fn new(broken: bool) -> Self {
        Self {
            not_ready: Arc::new(AtomicUsize::new(0)),
            asked: false,
            broken,
        }
    }
}

impl tower_service::Service<Request<Incoming>> for Gated {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.broken {
            return Poll::Ready(Err("the service is broken".into()));
        }
        if !self.asked {
            self.asked = true;
            self.not_ready.fetch_add(1, Ordering::Relaxed);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Incoming>) -> Self::Future {
        assert!(self.asked, "called only once ready");
        let body = if Cancel::current().is_some() {
            "served in the scope\n"
        } else {
            "served without a scope\n"
        };
        std::future::ready(Ok(text(body)))
    }
}

fn short() -> lameduck::Budget {
    budget(
        Duration::ZERO,
        Duration::from_secs(5),
        Duration::from_secs(1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_not_ready_at_once_is_waited_for_then_serves_in_the_scope() {
    let service = Gated::new(false);
    let not_ready = service.not_ready.clone();
    let server = Running::start(short(), service, |s| s).await;

    let mut h1 = H1::connect(server.addr).await;
    for _ in 0..2 {
        let resp = h1.get("/").await.expect("an HTTP/1.1 response");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), "served in the scope\n");
    }
    let mut h2 = H2::connect(server.addr).await;
    let resp = h2.request("/").await.expect("an HTTP/2 response");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body(), "served in the scope\n");
    assert_eq!(
        not_ready.load(Ordering::Relaxed),
        3,
        "each request met a service that was not ready at first"
    );

    let report = server.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_whose_readiness_fails_ends_only_that_connection() {
    let server = Running::start(short(), Gated::new(true), |s| s).await;

    let mut h1 = H1::connect(server.addr).await;
    assert!(
        h1.get("/").await.is_err(),
        "no response from a broken service"
    );
    // The server goes on: the next connection is accepted and fails alike.
    let mut again = H1::connect(server.addr).await;
    assert!(again.get("/").await.is_err());

    let report = server.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}
