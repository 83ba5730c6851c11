//! The baseline: what most axum services do for graceful shutdown, and no
//! more. `axum::serve(..).with_graceful_shutdown(sigterm)`: on SIGTERM the
//! listener closes at once, in-flight requests finish, the process exits.
//! `/readyz` answers 200 until the end, because nothing tells it otherwise.
//!
//! `baseline-axum --listen 127.0.0.1:8080`; `GET /work?ms=50`.

use std::process::ExitCode;

use clap::Parser;
use lameduck_bench::server::{ServerArgs, bind, router};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    lameduck_bench::exit_code(run(ServerArgs::parse()))
}

#[tokio::main]
async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let listener = bind(args.listen).await?;
    axum::serve(listener, router())
        .with_graceful_shutdown(async move {
            term.recv().await;
        })
        .await?;
    Ok(())
}
