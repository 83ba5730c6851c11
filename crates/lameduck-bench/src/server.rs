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

/// The milliseconds `/work` should take, from its query string: `ms=N`, 50
/// by default, at most a minute.
pub fn work_ms(query: Option<&str>) -> u64 {
    query_ms(query).unwrap_or(50).min(MAX_MS)
}

async fn work(uri: Uri) -> String {
    let ms = work_ms(uri.query());
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("worked {ms} ms\n")
}

fn query_ms(query: Option<&str>) -> Option<u64> {
    query?
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
        assert_eq!(query_ms(Some("x=1&ms=7")), Some(7));
        assert_eq!(query_ms(Some("ms=abc")), None);
        assert_eq!(work_ms(None), 50);
        assert_eq!(work_ms(Some("ms=99999999")), MAX_MS);
    }
}
