//! The demo's routes: a handler of configurable latency, a chunked stream,
//! server-sent events and a WebSocket echo.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use lameduck::axum::{WebSocket, WebSocketUpgrade};
use lameduck::http::Cancel;

/// Upper bound on `ms` and `n`: the demo must not be a way to pin a
/// connection for hours.
pub(super) const MAX_MS: u64 = 60_000;
pub(super) const MAX_CHUNKS: u64 = 10_000;

pub(super) fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/work", get(work))
        .route("/stream", get(stream))
        .route("/events", get(events))
        .route("/ws", get(echo))
}

async fn index() -> &'static str {
    "lameduck demo\n\n  /work?ms=50\n  /stream?n=10&ms=200\n  /events\n  /ws\n\nprobes on the admin port: /livez /readyz /startupz (?verbose)\n"
}

/// Answers after `ms` milliseconds; at the cancel signal, 503 with the
/// library's own words for a request it cancels (`shutting down`), so that
/// a drill of the demo shows the answer the docs name.
async fn work(uri: Uri, cancel: Cancel) -> Response {
    let ms = query(&uri, "ms").unwrap_or(50).min(MAX_MS);
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => format!("worked {ms} ms\n").into_response(),
        () = cancel.cancelled() => (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], "shutting down\n").into_response(),
    }
}

/// `n` chunks, one every `ms`; a producer that heeds the cancel signal ends
/// the stream early and says so in its last chunk.
async fn stream(uri: Uri, cancel: Cancel) -> Response {
    let n = query(&uri, "n").unwrap_or(10).min(MAX_CHUNKS);
    let ms = query(&uri, "ms").unwrap_or(200).min(MAX_MS);
    let chunks = futures_util::stream::unfold((0, cancel), move |(i, cancel)| async move {
        if i >= n {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => {
                Some((Ok::<_, Infallible>(Bytes::from(format!("chunk {i}\n"))), (i + 1, cancel)))
            }
            () = cancel.cancelled() => Some((Ok(Bytes::from_static(b"cancelled\n")), (n, cancel))),
        }
    });
    Body::from_stream(chunks).into_response()
}

/// A tick a second; the server ends the stream at Stopping, between two
/// ticks, and the client reconnects (to another instance).
async fn events() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = tokio::time::interval(Duration::from_secs(1));
    let stream = futures_util::stream::unfold((ticks, 0u64), |(mut ticks, i)| async move {
        ticks.tick().await;
        Some((
            Ok(Event::default().data(format!("tick {i}"))),
            (ticks, i + 1),
        ))
    })
    .boxed();
    Sse::new(stream)
}

/// Echoes every message; at Stopping the socket says 1001 Going Away.
async fn echo(ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

fn query(uri: &Uri, key: &str) -> Option<u64> {
    uri.query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}
