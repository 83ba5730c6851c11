//! One HTTP server of the hot-path benchmark (`scripts/bench http`), with a
//! trivial handler: `hello\n` for every request.
//!
//! | `--kind` | what serves |
//! |---|---|
//! | `bare` | hyper-util's auto builder (HTTP/1.1 and h2c), a plain accept loop, no shutdown handling |
//! | `bare-keep-alive` | `bare` whose handler also announces lameduck's default idle timeout, `Keep-Alive: timeout=619`, as lameduck's server does on every HTTP/1 keep-alive response |
//! | `lameduck` | `lameduck::http::Server` with the same service, in an `App` |
//! | `axum-serve` | an axum `Router` under `axum::serve` |
//! | `lameduck-axum` | the same `Router` served by `lameduck::http::Server` |
//! | `lameduck-metrics` | `lameduck`, with the app's lifecycle metrics on (feature `metrics`) |
//! | `bare-tls` | `bare` behind tokio-rustls (ALPN `h2`, `http/1.1`), the certificate of `--tls-cert` and `--tls-key` |
//! | `lameduck-tls` | `lameduck` with `Server::tls`, the same certificate |
//! | `tonic` | tonic's own `Server` with a unary gRPC service, `bench.Echo/Say`, answering `hello\n` (h2c) |
//! | `lameduck-grpc` | the same service served by `lameduck::http::Server` |
//! | `bare-echo` | `bare`'s loop with an upgrade service: `Upgrade: echo` gets `101`, then every byte back |
//! | `lameduck-echo` | the same service served by `lameduck::http::Server` |
//!
//! It runs on a runtime of `--threads` worker threads (default 1), prints
//! `listening on http://ADDR`, and serves until SIGTERM (or SIGKILL).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use lameduck::http::Server;
use lameduck::{App, Budget};
use lameduck_bench::server::announce;

#[path = "http_server/echo.rs"]
mod echo;
#[path = "http_server/grpc.rs"]
mod grpc;
#[path = "http_server/tls.rs"]
mod tls;

/// A server of the hot-path benchmark.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Which server: bare, lameduck, axum-serve or lameduck-axum
    #[arg(long, value_enum)]
    kind: Kind,
    /// Address to serve on (port 0 picks a free one)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Worker threads of the server's runtime
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// lameduck's HTTP/1 idle timeout, in seconds, or `off` (default: the
    /// library's, announced with `Keep-Alive`)
    #[arg(long, value_name = "SECONDS|off")]
    idle_timeout: Option<String>,
    /// The certificate chain (PEM) of the TLS kinds
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM)
    #[arg(long, value_name = "PATH")]
    tls_key: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Kind {
    Bare,
    BareKeepAlive,
    Lameduck,
    AxumServe,
    LameduckAxum,
    LameduckMetrics,
    BareTls,
    LameduckTls,
    Tonic,
    LameduckGrpc,
    BareEcho,
    LameduckEcho,
}

/// A tower service (no axum) that answers every request at once with what
/// `F` makes of it.
#[derive(Clone, Copy)]
struct Answer<F>(F);

impl<F> tower_service::Service<http::Request<Incoming>> for Answer<F>
where
    F: Fn(http::Request<Incoming>) -> http::Response<Full<Bytes>>,
{
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
        std::future::ready(Ok((self.0)(req)))
    }
}

/// The trivial handler, for `bare` and `lameduck` (`Answer(hello)`).
fn hello(_: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    http::Response::new(Full::new(Bytes::from_static(b"hello\n")))
}

/// [`hello`] with the header lameduck's server adds to an HTTP/1
/// keep-alive response at its default idle timeout (for `bare-keep-alive`).
/// The name and value are constants, as lameduck's are: made at compile
/// time, not checked again per request.
fn hello_keep_alive(req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");
    const TIMEOUT: http::HeaderValue = http::HeaderValue::from_static("timeout=619");
    let mut resp = hello(req);
    resp.headers_mut().append(KEEP_ALIVE, TIMEOUT);
    resp
}

fn router() -> Router {
    Router::new().route("/", get(|| async { "hello\n" }))
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("a runtime");
    lameduck_bench::exit_code(runtime.block_on(serve(args)))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    announce(listener.local_addr()?)?;
    match args.kind {
        Kind::Bare => bare(listener, Answer(hello)).await,
        Kind::BareKeepAlive => bare(listener, Answer(hello_keep_alive)).await,
        Kind::BareEcho => bare(listener, Answer(echo::echo)).await,
        Kind::LameduckEcho => {
            lameduck(
                idle(
                    Server::new(listener, Answer(echo::echo)),
                    &args.idle_timeout,
                )?,
                false,
            )
            .await
        }
        Kind::AxumServe => Ok(axum::serve(listener, router()).await?),
        Kind::Lameduck => {
            lameduck(
                idle(Server::new(listener, Answer(hello)), &args.idle_timeout)?,
                false,
            )
            .await
        }
        Kind::LameduckMetrics => {
            lameduck(
                idle(Server::new(listener, Answer(hello)), &args.idle_timeout)?,
                true,
            )
            .await
        }
        Kind::LameduckAxum => {
            lameduck(
                idle(Server::new(listener, router()), &args.idle_timeout)?,
                false,
            )
            .await
        }
        Kind::BareTls => {
            let (cert, key) = cert(&args)?;
            tls::bare(listener, tls::server_config(cert, key)?).await
        }
        Kind::LameduckTls => {
            let (cert, key) = cert(&args)?;
            let server = Server::new(listener, Answer(hello))
                .tls(lameduck::http::Tls::from_pem_files(cert, key)?);
            lameduck(idle(server, &args.idle_timeout)?, false).await
        }
        Kind::Tonic => grpc::tonic_server(listener).await,
        Kind::LameduckGrpc => {
            let routes = tonic::service::Routes::new(grpc::Echo);
            lameduck(
                idle(Server::new(listener, routes), &args.idle_timeout)?,
                false,
            )
            .await
        }
    }
}

/// `--tls-cert` and `--tls-key`, which the TLS kinds need.
fn cert(args: &Args) -> anyhow::Result<(&std::path::Path, &std::path::Path)> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Ok((cert, key)),
        _ => anyhow::bail!("--kind {:?} needs --tls-cert and --tls-key", args.kind),
    }
}

fn idle<S>(server: Server<S>, timeout: &Option<String>) -> anyhow::Result<Server<S>> {
    Ok(match timeout.as_deref() {
        None => server,
        Some("off") => server.idle_timeout(None),
        Some(secs) => server.idle_timeout(Duration::from_secs(secs.parse()?)),
    })
}

async fn bare<S>(listener: tokio::net::TcpListener, service: S) -> anyhow::Result<()>
where
    S: tower_service::Service<
            http::Request<Incoming>,
            Response = http::Response<Full<Bytes>>,
            Error = Infallible,
            Future: Send,
        > + Clone
        + Send
        + 'static,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(service),
                )
                .await;
        });
    }
}

async fn lameduck(server: impl Into<lameduck::Component>, metrics: bool) -> anyhow::Result<()> {
    let mut app = App::builder("bench")
        .budget(Budget::new(Duration::from_secs(10)).drain_delay(Duration::ZERO))
        .component(server);
    if metrics {
        app = app.metrics(&lameduck::metrics::Metrics::new());
    }
    let app = app.build()?;
    let report = app.await;
    anyhow::ensure!(report.status().is_clean(), "{report}");
    Ok(())
}
