//! The gRPC pair: one unary method, `bench.Echo/Say`, answering `hello\n`
//! (the trivial handler's body) whatever it is sent; served by lameduck
//! and by tonic's own `Server`. Written by hand, as the demo's service is,
//! so that no `protoc` is needed.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codec::ProstCodec;
use tonic::codegen::{Service, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// `message Bytes { bytes data = 1; }`, the request and the reply.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Bytes {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// The service.
#[derive(Clone, Copy, Debug)]
pub(super) struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = "bench.Echo";
}

struct Say;

impl UnaryService<Bytes> for Say {
    type Response = Bytes;
    type Future = std::future::Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, _: Request<Bytes>) -> Self::Future {
        std::future::ready(Ok(Response::new(Bytes {
            data: b"hello\n".to_vec(),
        })))
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = Result<T, Infallible>> + Send>>;

impl<B> Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() == "/bench.Echo/Say" {
            Box::pin(async move { Ok(Grpc::new(ProstCodec::default()).unary(Say, req).await) })
        } else {
            Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}

/// tonic's own server, on the listener.
pub(super) async fn tonic_server(listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(Echo)
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
