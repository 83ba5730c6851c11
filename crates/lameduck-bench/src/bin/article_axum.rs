//! The article pattern (the VictoriaMetrics "graceful shutdown" recipe, and
//! Kubernetes' `preStop: sleep 5`, done in the process): on SIGTERM
//! `/readyz` turns 503 at once, everything still serves for a fixed 5 s
//! while the load balancers catch up, then axum's
//! `with_graceful_shutdown` closes the listener and lets in-flight requests
//! finish. The fixed wait is the guess the adaptive drain replaces.
//!
//! `article-axum --listen 127.0.0.1:8080`; `GET /work?ms=50`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use lameduck_bench::server::{ServerArgs, bind, routes};
use tokio::signal::unix::{SignalKind, signal};

/// The article's fixed drain delay.
const DRAIN: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    lameduck_bench::exit_code(run(ServerArgs::parse()))
}

#[tokio::main]
async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let draining = Arc::new(AtomicBool::new(false));
    let ready = draining.clone();
    let app = routes().route(
        "/readyz",
        get(move || {
            let ready = ready.clone();
            async move {
                // Relaxed: one flag, read on its own.
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else {
                    (StatusCode::OK, "ready\n")
                }
            }
        }),
    );
    let listener = bind(args.listen).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            term.recv().await;
            draining.store(true, Ordering::Relaxed);
            tokio::time::sleep(DRAIN).await;
        })
        .await?;
    Ok(())
}
