//! The service the baseline servers run: the routes of `lameduck demo` that
//! the benchmarks use, and nothing of its shutdown handling.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::Uri;
use axum::routing::get;
use tokio::net::TcpListener;

/// Upper bound on `ms`, as in the demo.
const MAX_MS: u64 = 60_000;

/// Flags of the baseline servers.
#[derive(Debug, clap::Parser)]
pub struct ServerArgs {
    /// Address to serve on (port 0 picks a free one)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// `/work?ms=N` answers after N milliseconds (50 by default); `/readyz`
/// always answers 200, which is what a server that knows nothing of
/// draining does.
pub fn router() -> Router {
    routes().route("/readyz", get(|| async { "ready\n" }))
}

/// The same without `/readyz`, for a server that answers it itself.
pub fn routes() -> Router {
    Router::new()
        .route("/work", get(work))
        .route("/", get(|| async { "baseline\n" }))
}

/// Binds `addr` and prints `listening on http://ADDR` first thing on stdout,
/// as `lameduck demo` does.
///
/// # Errors
///
/// When the address cannot be bound or stdout is closed.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    announce(listener.local_addr()?)?;
    Ok(listener)
}

/// Prints `listening on http://ADDR` on stdout and flushes it.
///
/// # Errors
///
/// When stdout is closed.
pub fn announce(addr: SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    Ok(())
}

async fn work(uri: Uri) -> String {
    let ms = query_ms(&uri).unwrap_or(50).min(MAX_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("worked {ms} ms\n")
}

fn query_ms(uri: &Uri) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "ms")
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_is_read_from_the_query() {
        let uri: Uri = "/work?x=1&ms=7".parse().unwrap();
        assert_eq!(query_ms(&uri), Some(7));
        let uri: Uri = "/work?ms=abc".parse().unwrap();
        assert_eq!(query_ms(&uri), None);
    }
}
