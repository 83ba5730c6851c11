//! A server that exits the moment it gets SIGTERM, cutting whatever was in
//! flight: the worst case, for scale. Same routes as `baseline-axum`.
//!
//! `dies-on-term --listen 127.0.0.1:8080`; `GET /work?ms=50`.

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
    tokio::select! {
        served = axum::serve(listener, router()).into_future() => served?,
        _ = term.recv() => std::process::exit(0),
    }
    Ok(())
}
