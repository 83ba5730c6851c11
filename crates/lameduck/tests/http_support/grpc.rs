//! gRPC for the tests: tonic's generated clients over hyper's HTTP/2
//! client (prior knowledge), and calls made by hand.

use std::net::SocketAddr;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic_health::pb::health_client::HealthClient;

use super::BoxFut;

/// hyper's HTTP/2 client as the tower service tonic's clients take.
#[derive(Clone)]
pub struct Channel(SendRequest<tonic::body::Body>);

impl tower_service::Service<Request<tonic::body::Body>> for Channel {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = BoxFut<Result<Response<Incoming>, hyper::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

impl Channel {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        Self(send)
    }

    pub fn health(self) -> HealthClient<Self> {
        HealthClient::with_origin(self, "http://test".parse().unwrap())
    }
}
