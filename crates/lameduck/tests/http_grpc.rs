//! gRPC through the shutdown: the health service flips with readiness and
//! tells its watchers at once; at the cancel signal a call gets a gRPC
//! status — trailers-only `UNAVAILABLE` with no response yet, a status at
//! a message boundary for a stream — never an HTTP 503 or a broken stream.

mod http_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use http_support::grpc::Channel;
use http_support::{BoxFut, Running, budget};
use hyper::body::{Frame, Incoming};
use lameduck::http::grpc::HealthService;
use lameduck::{ExitStatus, Phase};
use tokio::sync::Notify;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

const LONG: Duration = Duration::from_secs(60);
/// A bound on each wait below, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(20);

fn whole() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_is_not_serving_from_the_first_instant_of_draining_and_watchers_are_told_at_once()
 {
    let health = HealthService::new().service("demo.Echo").into_server();
    let app = Running::start(budget(LONG, LONG, LONG), health, |s| s).await;
    let mut client = Channel::connect(app.addr).await.health();
    let check = |client: &mut tonic_health::pb::health_client::HealthClient<Channel>,
                 service: &str| {
        let mut client = client.clone();
        let service = service.to_string();
        async move { client.check(HealthCheckRequest { service }).await }
    };
    assert_eq!(
        check(&mut client, "").await.unwrap().into_inner().status(),
        ServingStatus::Serving
    );
    assert_eq!(
        check(&mut client, "demo.Echo")
            .await
            .unwrap()
            .into_inner()
            .status(),
        ServingStatus::Serving
    );
    assert_eq!(
        check(&mut client, "other.Service")
            .await
            .unwrap_err()
            .code(),
        tonic::Code::NotFound
    );
    let mut watch = client.watch(whole()).await.unwrap().into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    // The old connection got GOAWAY: ask on a new one, as a client does.
    // It is served, then told GOAWAY too: h2's client, not hyper's, takes
    // that without failing the call (see `unary_over_h2`).
    let (answer, status) =
        http_support::grpc::unary_over_h2(app.addr, "/grpc.health.v1.Health/Check", &[]).await;
    assert_eq!(status, "0");
    // No wait: the registry flipped before the phase could be seen.
    // HealthCheckResponse { status: NOT_SERVING (2) }: field 1, varint.
    assert_eq!(&answer[..], [0x08, ServingStatus::NotServing as u8]);
    let told = tokio::time::timeout(BOUND, watch.next())
        .await
        .expect("the watcher is told")
        .unwrap()
        .unwrap();
    assert_eq!(told.status(), ServingStatus::NotServing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_health_watch_ends_at_stopping_with_unavailable() {
    let mut app = Running::start(
        budget(Duration::ZERO, LONG, LONG),
        HealthService::new().into_server(),
        |s| s,
    )
    .await;
    let mut client = Channel::connect(app.addr).await.health();
    let mut watch = client.watch(whole()).await.unwrap().into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );
    app.handle.shutdown("test");
    let ended = tokio::time::timeout(BOUND, async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the watch ends");
    let status = ended.expect("a status, not a clean end");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A gRPC method by hand: it sends `messages` at once and then, if
/// `stall`, nothing more; or with no messages never responds at all.
#[derive(Clone)]
struct Stalls {
    started: Arc<Notify>,
    messages: usize,
}

impl tower_service::Service<Request<Incoming>> for Stalls {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFut<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Incoming>) -> Self::Future {
        let (started, messages) = (self.started.clone(), self.messages);
        Box::pin(async move {
            started.notify_one();
            if messages == 0 {
                std::future::pending::<()>().await;
            }
            // Each message: flag 0, length 3, "abc".
            let frames = futures_util::stream::iter(
                (0..messages).map(|_| Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\x03abc")))),
            )
            .chain(futures_util::stream::pending());
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
            resp.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            Ok(resp)
        })
    }
}

fn short() -> lameduck::Budget {
    budget(Duration::ZERO, Duration::from_millis(100), LONG)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_call_with_no_response_at_the_cancel_signal_gets_unavailable_not_a_503() {
    let started = Arc::new(Notify::new());
    let service = Stalls {
        started: started.clone(),
        messages: 0,
    };
    let app = Running::start(short(), service, |s| s).await;
    let call = tokio::spawn(call(app.addr));
    started.notified().await;
    app.handle.shutdown("test");
    let resp = tokio::time::timeout(BOUND, call)
        .await
        .expect("answered at the cancel signal")
        .unwrap();
    assert_eq!(resp.status(), 200, "gRPC answers with HTTP 200");
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    assert_eq!(resp.headers()["grpc-status"], "14", "{:?}", resp.headers());
    let body = resp.into_body().collect().await.unwrap();
    assert!(body.trailers().is_none(), "trailers-only");
    assert!(body.to_bytes().is_empty());
}

/// Sends one gRPC call over HTTP/2 and returns its response; the
/// connection stays up while the caller reads.
async fn call(addr: std::net::SocketAddr) -> Response<Incoming> {
    let mut client = http_support::H2::connect(addr).await;
    let req = Request::post("http://test/demo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let resp = client.send.send_request(req).await.expect("a response");
    tokio::spawn(async move {
        let _client = client;
        std::future::pending::<()>().await;
    });
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_stream_at_the_cancel_signal_ends_with_unavailable_after_its_last_whole_message() {
    let started = Arc::new(Notify::new());
    let service = Stalls {
        started: started.clone(),
        messages: 2,
    };
    let mut app = Running::start(short(), service, |s| s).await;
    let resp = call(app.addr).await;
    assert_eq!(resp.status(), 200);
    app.handle.shutdown("test");
    let body = tokio::time::timeout(BOUND, resp.into_body().collect())
        .await
        .expect("the stream ends at the cancel signal")
        .expect("with a status, not a reset");
    let trailers = body.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "14", "{trailers:?}");
    assert_eq!(body.to_bytes(), "\0\0\0\0\x03abc\0\0\0\0\x03abc");
    let report = app.report().await;
    // Ended by the shutdown, not failed: the client has a status to act on.
    assert!(report.work.aborted.is_empty(), "{report}");
}
