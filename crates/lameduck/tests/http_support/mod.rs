//! A small harness for the HTTP tests: an app with one server on
//! 127.0.0.1:0, real hyper clients (HTTP/1 and HTTP/2) over real sockets,
//! and handlers written as plain async closures.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lameduck::http::Server;
use lameduck::{App, AppHandle, Budget, Phase, Report};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "tls")]
pub mod tls;

/// A tower service from an async closure.
pub struct Handler<F>(pub Arc<F>);

impl<F> Clone for Handler<F> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

pub fn handler<F, Fut>(f: F) -> Handler<F>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    Handler(Arc::new(f))
}

impl<F, Fut> tower_service::Service<Request<Incoming>> for Handler<F>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFut<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let fut = (self.0)(req);
        Box::pin(async move { Ok(fut.await) })
    }
}

pub fn text(body: &'static str) -> Response<Full<Bytes>> {
    Response::new(Full::new(Bytes::from_static(body.as_bytes())))
}

/// A budget whose phases are given; the rest is generous.
pub fn budget(drain: Duration, shutdown: Duration, hard: Duration) -> Budget {
    Budget::new(Duration::from_secs(600))
        .drain_delay(drain)
        .shutdown_timeout(shutdown)
        .hard_timeout(hard)
}

/// An app running one server; the app's task is aborted when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub handle: AppHandle,
    run: Option<JoinHandle<Report>>,
}

impl Running {
    /// Builds the server on 127.0.0.1:0 with `configure`, runs it in an app
    /// with `budget`, and waits until the app is running.
    pub async fn start<S>(
        budget: Budget,
        service: S,
        configure: impl FnOnce(Server<S>) -> Server<S>,
    ) -> Self
    where
        Server<S>: Into<lameduck::Component>,
    {
        let server = configure(Server::bind("127.0.0.1:0", service).expect("bind"));
        let addr = server.local_addr().unwrap();
        let admin = server.admin_addr();
        let app = App::builder("test")
            .budget(budget)
            .handle_signals(false)
            .exit_watchdog(false)
            .component(server)
            .build()
            .expect("valid app");
        let handle = app.handle();
        let run = tokio::spawn(app.run());
        handle.reached(Phase::Running).await;
        Self {
            addr,
            admin,
            handle,
            run: Some(run),
        }
    }

    /// Asks for a shutdown and waits for the report.
    pub async fn stop(mut self) -> Report {
        self.handle.shutdown("test");
        self.report().await
    }

    /// Waits for the report of a shutdown already asked for.
    pub async fn report(&mut self) -> Report {
        self.run
            .take()
            .expect("report once")
            .await
            .expect("app task")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run.abort();
        }
    }
}

/// An HTTP/1.1 keep-alive connection.
pub struct H1 {
    pub send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// Completes when the connection closes.
    pub closed: JoinHandle<Result<(), hyper::Error>>,
}

impl H1 {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).await.expect("connect")).await
    }

    /// Over a stream connected already (a TLS one, say).
    pub async fn over<T>(stream: T) -> Self
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        let closed = tokio::spawn(conn.with_upgrades());
        Self { send, closed }
    }

    pub async fn get(&mut self, path: &str) -> Result<Response<Bytes>, hyper::Error> {
        self.send.ready().await?;
        let req = Request::get(path)
            .header("host", "test")
            .body(Full::default())
            .unwrap();
        collect(self.send.send_request(req).await?).await
    }
}

/// An HTTP/2 connection (prior knowledge).
pub struct H2 {
    pub send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    pub closed: JoinHandle<Result<(), hyper::Error>>,
}

impl H2 {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).await.expect("connect")).await
    }

    /// Over a stream connected already (a TLS one, say).
    pub async fn over<T>(stream: T) -> Self
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("handshake");
        let closed = tokio::spawn(conn);
        Self { send, closed }
    }

    pub fn request(
        &mut self,
        path: &str,
    ) -> impl Future<Output = Result<Response<Bytes>, hyper::Error>> + use<> {
        let req = Request::get(format!("http://test{path}"))
            .body(Full::default())
            .unwrap();
        let fut = self.send.send_request(req);
        async move { collect(fut.await?).await }
    }
}

pub async fn collect(resp: Response<Incoming>) -> Result<Response<Bytes>, hyper::Error> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// The `Connection` header of a response, if any.
pub fn connection_header<B>(resp: &Response<B>) -> Option<&str> {
    resp.headers()
        .get("connection")
        .and_then(|v| v.to_str().ok())
}

/// Sends `request` over a new raw connection and reads the response head.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> (TcpStream, String) {
    raw_request_on(TcpStream::connect(addr).await.expect("connect"), request).await
}

/// Sends `request` on `socket` and reads the response head.
pub async fn raw_request_on(mut socket: TcpStream, request: &[u8]) -> (TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.write_all(request).await.expect("write the request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.expect("a response head");
        head.push(byte[0]);
    }
    (socket, String::from_utf8_lossy(&head).into_owned())
}
