//! The benchmark harness behind `scripts/bench` (see `docs/benchmarks.md`).
//!
//! Binaries:
//!
//! | binary | what it is |
//! |---|---|
//! | `baseline-axum` | the naive graceful server: axum's plain `serve(..).with_graceful_shutdown(sigterm)`, `/readyz` always 200 |
//! | `dies-on-term` | the same routes, and it exits the moment SIGTERM arrives |
//! | `drill-compare` | scenario (a): the drill against `lameduck demo`, `baseline-axum` and `dies-on-term`, side by side |
//! | `rolling` | scenario (b): rolling restarts of two instances behind HAProxy, nginx and Caddy under steady load, lameduck and every peer |
//! | `actix-graceful` | a peer: actix-web 4's `HttpServer` with its default graceful shutdown |
//! | `graceful-shutdown-axum` | a peer: axum under tokio-graceful-shutdown, as its documentation shows |
//! | `axum-article` | a peer: the VictoriaMetrics article's pattern (readiness flip, drain delay, graceful shutdown, hard deadline) on axum |
//! | `go-article` | a peer, not a Rust binary: the article's Go server, `fixtures/go-article/main.go`, built by `scripts/bench` with Debian's `golang-go` |
//! | `http-server` | one server of scenario (c), `--kind bare`, `bare-keep-alive`, `lameduck`, `axum-serve`, `lameduck-axum` and the others its `--help` lists, with a trivial handler |
//! | `http-compare` | scenario (c): the HTTP hot path, lameduck against hyper-util and `axum::serve`, under wrk and h2load, then callgrind |
//! | `reload-bench` | scenario (f): lameduck's `SIGHUP` upgrade next to nginx's binary upgrade and HAProxy's `-sf` reload, under load |
//! | `run-bench` | `lameduck run`: zero-downtime restarts of a `LISTEN_FDS` Python server under load, and what each wrapper (tini, dumb-init, catatonit, `lameduck run`) costs |
//!
//! Everything listens on 127.0.0.1, on ports the harness picks by binding
//! port 0. Every process the harness starts is killed by PID when it is done
//! with it (or when it fails), and its scratch directory is removed.

#![warn(missing_docs)]

pub mod balancer;
pub mod compare;
pub mod haproxy;
pub mod hotpath;
pub mod instance;
pub mod kind;
pub mod net;
pub mod reload;
pub mod results;
pub mod rolling;
pub mod run_cost;
pub mod run_restarts;
pub mod scratch;
pub mod server;
pub mod table;

use std::process::ExitCode;

/// Prints an error with its causes and turns the result into an exit code:
/// 0, or 2 when the harness itself could not do its job.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs `work` until it is done or the process gets SIGTERM or SIGINT. On a
/// signal `work` is dropped, and with it every process it started (each is
/// killed by PID on drop), so an interrupted run leaves nothing behind.
///
/// # Errors
///
/// `work`'s error, or "interrupted" on a signal.
pub async fn interruptible<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        result = work => result,
        _ = term.recv() => anyhow::bail!("interrupted by SIGTERM; everything it started is stopped"),
        _ = int.recv() => anyhow::bail!("interrupted by SIGINT; everything it started is stopped"),
    }
}
