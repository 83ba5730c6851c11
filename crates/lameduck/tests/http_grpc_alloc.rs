//! What a unary gRPC call costs the per-request layer: its response body
//! is watched for the shutdown (to end a stream with `UNAVAILABLE` at a
//! message boundary), and a body that never waits must not pay for
//! wake-ups it never needs. Counted with a counting allocator, so in a
//! test binary of its own.
#![cfg(feature = "http")]

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Version, header};
use http_body_util::Full;
use hyper::body::Body;
use lameduck::http::DrainLayer;
use lameduck::{App, Budget, Component, Phase};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower_layer::Layer;
use tower_service::Service;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A unary gRPC method's answer, ready at once: one message, as tonic
/// gives it (a five-byte prefix, then the message).
#[derive(Clone, Copy)]
struct Unary;

impl Service<Request<()>> for Unary {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"\0\0\0\0\x02\x0a\x00")));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        std::future::ready(Ok(resp))
    }
}

/// Allocations of one HTTP/2 call served to its body's end (the request
/// built before counting): a gRPC call when `grpc`, else the same request
/// without gRPC's content type.
fn allocations<S, B>(service: &mut S, grpc: bool) -> u64
where
    S: Service<Request<()>, Response = Response<B>>,
    B: Body,
{
    let mut req = Request::post("/bench.Echo/Say").version(Version::HTTP_2);
    if grpc {
        req = req.header(header::CONTENT_TYPE, "application/grpc");
    }
    let req = req.body(()).expect("a request");
    let mut cx = Context::from_waker(Waker::noop());
    let region = Region::new(GLOBAL);
    let Poll::Ready(Ok(resp)) = pin!(service.call(req)).poll(&mut cx) else {
        panic!("the response is ready at once");
    };
    let mut body = pin!(resp.into_body());
    // Bounded: one message and the end.
    for _ in 0..8 {
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(None) => break,
            Poll::Ready(Some(Err(_))) => panic!("the body failed"),
            Poll::Pending => panic!("the body waits"),
        }
    }
    assert!(body.is_end_stream(), "the body was given to its end");
    region.change().allocations as u64
}

#[tokio::test(flavor = "current_thread")]
async fn a_unary_grpc_response_allocates_no_shutdown_wakeups_it_never_waits_for() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut tx = Some(tx);
    let component = Component::new("grpc", move |ctx| {
        let tx = tx.take().expect("runs once");
        async move {
            let mut service = DrainLayer::new(&ctx).layer(Unary);
            ctx.ready();
            // Polled by hand, without yielding: no other task of this
            // runtime allocates in between. The first calls warm up.
            let counts: Vec<(u64, u64)> = (0..16)
                .map(|_| {
                    (
                        allocations(&mut service, false),
                        allocations(&mut service, true),
                    )
                })
                .skip(4)
                .collect();
            let _ = tx.send(counts);
            ctx.on_stopping().await;
            Ok(())
        }
    });
    let app = App::builder("alloc")
        .budget(Budget::new(Duration::from_secs(60)).drain_delay(Duration::ZERO))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(component)
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    let counts = rx.await.expect("the component measured");
    handle.shutdown("measured");
    assert!(run.await.unwrap().status().is_clean());

    // The least of each: an allocation of the runtime's own falling into
    // one count is not the call's.
    let plain = counts.iter().map(|c| c.0).min().unwrap();
    let grpc = counts.iter().map(|c| c.1).min().unwrap();
    // The watch itself, once: the body's end-early state. Its wake-ups
    // (two boxed waits on the signals) only once the body waits.
    assert!(
        grpc <= plain + 1,
        "a unary gRPC call allocated {grpc} times, the same call without gRPC {plain}"
    );
}
