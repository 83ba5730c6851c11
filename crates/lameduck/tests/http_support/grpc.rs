//! gRPC for the tests: tonic's generated clients over hyper's HTTP/2
//! client (prior knowledge), and calls made by hand over h2's own client.

use std::net::SocketAddr;

use bytes::Bytes;

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

/// One unary gRPC call on a new connection, made over h2's own client, not
/// hyper's; returns the response's message (the payload of its one gRPC
/// frame, empty for none) and its `grpc-status`.
///
/// For a call on a connection that may get a GOAWAY at once (one opened
/// while the server drains): hyper's HTTP/2 client, right after it opens a
/// request's stream, asks h2 once more whether the connection takes new
/// streams, and fails the request it has just sent with any GOAWAY that
/// arrived in between (`ClientTask::poll` in hyper's `proto/h2/client.rs`:
/// `send_request`, then `poll_ready`) — even a GOAWAY whose last stream id
/// says the server took that stream and is answering it. Only a client
/// thread preempted between the two calls (a loaded machine) meets it. h2's
/// own response future fails a stream only if the GOAWAY excludes it.
pub async fn unary_over_h2(addr: SocketAddr, path: &str, message: &[u8]) -> (Bytes, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (client, conn) = h2::client::handshake(stream).await.expect("handshake");
    tokio::spawn(conn);
    let mut client = client.ready().await.expect("the connection takes a stream");
    let req = Request::post(format!("http://test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut send) = client.send_request(req, false).expect("a stream");
    let len = u32::try_from(message.len()).unwrap();
    let mut frame = vec![0];
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    send.send_data(Bytes::from(frame), true)
        .expect("the request");
    let response = response.await.expect("a response");
    let in_headers = response.headers().get("grpc-status").cloned();
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the response's body");
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.expect("the response's end");
    let status = in_headers
        .or_else(|| trailers.and_then(|t| t.get("grpc-status").cloned()))
        .expect("a grpc-status");
    let message = match data.get(..5) {
        Some(head) => {
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            Bytes::copy_from_slice(&data[5..5 + len])
        }
        None => Bytes::new(),
    };
    (message, status.to_str().unwrap().to_string())
}
