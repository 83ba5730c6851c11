//! The pattern of "Graceful Shutdown in Go: Practical Patterns"
//! (VictoriaMetrics, 2025), hand-rolled on axum as a careful author would:
//! on SIGTERM `/readyz` answers 503 at once; the server keeps serving for
//! the readiness drain delay (5 s in the article); then
//! `with_graceful_shutdown` closes the listener and waits for in-flight
//! requests for up to the shutdown period (15 s); past it, handlers are
//! cancelled (the article's `BaseContext` cancellation, here a
//! `CancellationToken` they select on) and get the hard period (3 s).
//!
//! `axum-article --listen 127.0.0.1:8080 [--drain-delay 5s]`; `GET /work?ms=50`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use clap::Parser;
use lameduck_bench::results::parse_duration;
use lameduck_bench::server::{ServerArgs, bind, work_ms};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// The article's three periods, as flags with its values by default.
#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Unready but serving, so that load balancers stop sending
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_delay: Duration,
    /// Wait for in-flight requests after the listener closed
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    shutdown_period: Duration,
    /// After cancelling the handlers, the last wait
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    hard_period: Duration,
}

#[derive(Clone)]
struct Shared {
    shutting_down: Arc<AtomicBool>,
    ongoing: CancellationToken,
}

fn main() -> ExitCode {
    lameduck_bench::exit_code(run(Args::parse()))
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let shared = Shared {
        shutting_down: Arc::new(AtomicBool::new(false)),
        ongoing: CancellationToken::new(),
    };
    let app = Router::new()
        .route("/work", get(work))
        .route("/readyz", get(readyz))
        .route("/", get(|| async { "axum-article\n" }))
        .with_state(shared.clone());
    let listener = bind(args.server.listen).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );

    term.recv().await;
    shared.shutting_down.store(true, Ordering::SeqCst);
    tokio::time::sleep(args.drain_delay).await;
    let _ = stop.send(());
    match tokio::time::timeout(args.shutdown_period, &mut server).await {
        Ok(served) => served??,
        Err(_) => {
            shared.ongoing.cancel();
            let _ = tokio::time::timeout(args.hard_period, server).await;
        }
    }
    Ok(())
}

async fn readyz(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    if shared.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn work(State(shared): State<Shared>, uri: Uri) -> (StatusCode, String) {
    let ms = work_ms(uri.query());
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => (StatusCode::OK, format!("worked {ms} ms\n")),
        () = shared.ongoing.cancelled() => (StatusCode::REQUEST_TIMEOUT, "request cancelled\n".to_owned()),
    }
}
