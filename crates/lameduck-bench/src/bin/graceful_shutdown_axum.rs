//! axum under tokio-graceful-shutdown, as its documentation shows: the
//! server is a subsystem, `axum::serve(..).with_graceful_shutdown(..)` on
//! the subsystem's shutdown request, and the toplevel catches SIGINT and
//! SIGTERM and gives the subsystems `handle_shutdown_requests(5 s)` (the
//! timeout of the crate's hyper example) before it abandons them. On SIGTERM
//! the listener closes at once, in-flight requests finish, the process
//! exits; `/readyz` answers 200 until the end.
//!
//! `graceful-shutdown-axum --listen 127.0.0.1:8080`; `GET /work?ms=50`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck_bench::server::{ServerArgs, bind, router};
use tokio_graceful_shutdown::{SubsystemBuilder, SubsystemHandle, Toplevel};

/// What the crate's hyper example gives `handle_shutdown_requests`.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    lameduck_bench::exit_code(run(ServerArgs::parse()))
}

#[tokio::main]
async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let listen = args.listen;
    Toplevel::new(async move |s: &mut SubsystemHandle| {
        s.start(SubsystemBuilder::new(
            "axum",
            async move |subsys: &mut SubsystemHandle| {
                let listener = bind(listen).await?;
                // axum wants a 'static future; the crate's token for this
                // subsystem is cancelled when it is asked to shut down.
                let shutdown = subsys.create_cancellation_token();
                axum::serve(listener, router())
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await?;
                anyhow::Ok(())
            },
        ));
    })
    .catch_signals()
    .handle_shutdown_requests(SHUTDOWN_TIMEOUT)
    .await
    .map_err(|err| anyhow::anyhow!("{err}"))
}
