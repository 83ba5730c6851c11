//! The demo's gRPC service, `lameduck.demo.Echo`, written out by hand (no
//! code generation, so no `protoc` to build the CLI):
//!
//! ```proto
//! package lameduck.demo;
//! service Echo {
//!   rpc Say(SayRequest) returns (SayReply);            // after `ms` milliseconds
//!   rpc Count(CountRequest) returns (stream CountReply); // `n` replies, one every `ms`
//! }
//! message SayRequest { string message = 1; uint32 ms = 2; }
//! message SayReply { string message = 1; }
//! message CountRequest { uint32 n = 1; uint32 ms = 2; }
//! message CountReply { uint32 i = 1; }
//! ```
//!
//! Both heed the cancel signal: `Say` answers `UNAVAILABLE`, `Count` ends
//! its stream with `UNAVAILABLE` after its last whole reply. Served next
//! to `grpc.health.v1.Health`, answered from the app's readiness.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use lameduck::http::Cancel;
use lameduck::http::grpc::HealthService;
use tonic::codec::ProstCodec;
use tonic::codegen::{Service, http};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};

use super::routes::{MAX_CHUNKS, MAX_MS};

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = Result<T, Status>> + Send>>;

/// `SayRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SayRequest {
    #[prost(string, tag = "1")]
    pub message: String,
    #[prost(uint32, tag = "2")]
    pub ms: u32,
}

/// `SayReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SayReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// `CountRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountRequest {
    #[prost(uint32, tag = "1")]
    pub n: u32,
    #[prost(uint32, tag = "2")]
    pub ms: u32,
}

/// `CountReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CountReply {
    #[prost(uint32, tag = "1")]
    pub i: u32,
}

/// The gRPC services next to the demo's HTTP routes: requests whose path
/// names a gRPC service go to it, the rest to `router`.
pub(super) fn with_grpc(router: axum::Router) -> tonic::service::Routes {
    tonic::service::Routes::from(router)
        .add_service(Echo)
        .add_service(HealthService::new().serving::<Echo>().into_server())
}

/// `lameduck.demo.Echo`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = "lameduck.demo.Echo";
}

fn unavailable() -> Status {
    Status::unavailable("the server is shutting down")
}

struct Say;

impl UnaryService<SayRequest> for Say {
    type Response = SayReply;
    type Future = BoxFuture<Response<SayReply>>;

    fn call(&mut self, req: Request<SayRequest>) -> Self::Future {
        Box::pin(async move {
            let cancel = Cancel::current();
            let SayRequest { message, ms } = req.into_inner();
            let wait = tokio::time::sleep(Duration::from_millis(u64::from(ms).min(MAX_MS)));
            match cancel {
                Some(cancel) => tokio::select! {
                    () = wait => {}
                    () = cancel.cancelled() => return Err(unavailable()),
                },
                None => wait.await,
            }
            Ok(Response::new(SayReply { message }))
        })
    }
}

struct Count;

type Replies = Pin<Box<dyn Stream<Item = Result<CountReply, Status>> + Send>>;

impl ServerStreamingService<CountRequest> for Count {
    type Response = CountReply;
    type ResponseStream = Replies;
    type Future = BoxFuture<Response<Replies>>;

    fn call(&mut self, req: Request<CountRequest>) -> Self::Future {
        Box::pin(async move {
            let cancel = Cancel::current();
            let CountRequest { n, ms } = req.into_inner();
            let n = u64::from(n).min(MAX_CHUNKS);
            let every = Duration::from_millis(u64::from(ms).min(MAX_MS));
            let replies = futures_util::stream::unfold(0u64, move |i| {
                let cancel = cancel.clone();
                async move {
                    if i >= n {
                        return None;
                    }
                    let wait = tokio::time::sleep(every);
                    match cancel {
                        Some(cancel) => tokio::select! {
                            () = wait => {}
                            () = cancel.cancelled() => return Some((Err(unavailable()), n)),
                        },
                        None => wait.await,
                    }
                    let i = u32::try_from(i).unwrap_or(u32::MAX);
                    Some((Ok(CountReply { i }), u64::from(i) + 1))
                }
            });
            Ok(Response::new(Box::pin(replies) as Replies))
        })
    }
}

impl<B> Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            "/lameduck.demo.Echo/Say" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                Ok(grpc.unary(Say, req).await)
            }),
            "/lameduck.demo.Echo/Count" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                Ok(grpc.server_streaming(Count, req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}
