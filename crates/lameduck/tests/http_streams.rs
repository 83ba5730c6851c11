//! Long-lived responses do not turn every shutdown into a timeout: an
//! event stream ends at Stopping at a message boundary, a WebSocket gets
//! `1001` and a bounded close handshake, and both are reported as ended by
//! the shutdown. A response can opt out (`StreamEnd::AtCancel`).
#![cfg(feature = "axum")]

mod http_support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use http_support::{H1, Running, budget};
use lameduck::axum::{WebSocket, WebSocketUpgrade};
use lameduck::http::{Cancel, StreamEnd};
use lameduck::{ExitStatus, Phase, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(60);

/// One event, then silence for ever.
async fn events() -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::once(async { Ok(Event::default().data("first")) })
        .chain(futures_util::stream::pending());
    Sse::new(stream)
}

fn ended(report: &Report, label: &str) -> bool {
    report.work.ended.iter().any(|w| w.label == label)
}

/// Opens an event stream; the client must live as long as its body.
async fn get_events(app: &Running, path: &str) -> (H1, hyper::body::Incoming) {
    let mut client = H1::connect(app.addr).await;
    let req = http::Request::get(path)
        .header("host", "test")
        .body(http_body_util::Full::default())
        .unwrap();
    let resp = client.send.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    (client, resp.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ends_at_stopping_and_the_shutdown_is_clean() {
    let router = Router::new().route("/events", get(events));
    // Were the stream waited for, the shutdown timeout would pass.
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), router, |s| s).await;
    let (_client, mut body) = get_events(&app, "/events").await;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: first\n\n");

    app.handle.shutdown("test");
    let rest = body.collect().await.expect("a clean end of the stream");
    assert!(rest.to_bytes().is_empty());

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert_eq!(report.work.in_flight_at_stop, 1, "{report}");
    assert!(ended(&report, "GET /events"), "{report}");
    assert!(
        report.to_string().contains("1 ended by the shutdown"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_is_not_cut_in_the_middle_of_an_event() {
    // "data: one\n" is half an event; the blank line that ends it comes
    // only once the test says so, after Stopping has begun.
    let more = Arc::new(Notify::new());
    let router = Router::new().route(
        "/half",
        get({
            let more = more.clone();
            move || {
                let more = more.clone();
                async move {
                    let chunks = futures_util::stream::unfold(0, move |i| {
                        let more = more.clone();
                        async move {
                            match i {
                                0 => Some((
                                    Ok::<_, Infallible>(Bytes::from_static(b"data: one\n")),
                                    1,
                                )),
                                1 => {
                                    more.notified().await;
                                    Some((Ok(Bytes::from_static(b"\n")), 2))
                                }
                                _ => std::future::pending().await,
                            }
                        }
                    });
                    (
                        [("content-type", "text/event-stream")],
                        axum::body::Body::from_stream(chunks),
                    )
                        .into_response()
                }
            }
        }),
    );
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), router, |s| s).await;
    let (_client, mut body) = get_events(&app, "/half").await;
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: one\n");

    app.handle.shutdown("test");
    app.handle.reached(Phase::Stopping).await;
    more.notify_one();
    let rest = body.collect().await.expect("a clean end").to_bytes();
    assert_eq!(&rest[..], b"\n", "the event was cut before its blank line");

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(ended(&report, "GET /half"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_that_opts_out_runs_to_the_cancel_signal() {
    async fn kept() -> axum::response::Response {
        let mut resp = events().await.into_response();
        resp.extensions_mut().insert(StreamEnd::AtCancel);
        resp
    }
    let router = Router::new().route("/kept", get(kept));
    let mut app = Running::start(
        budget(Duration::ZERO, Duration::from_millis(200), LONG),
        router,
        |s| s,
    )
    .await;
    let (_client, mut body) = get_events(&app, "/kept").await;
    body.frame().await.unwrap().unwrap();
    app.handle.shutdown("test");
    let rest = body
        .collect()
        .await
        .expect("a clean end at the cancel signal");
    assert!(rest.to_bytes().is_empty());

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    assert!(
        report.work.cancelled.iter().any(|w| w.label == "GET /kept"),
        "{report}"
    );
}

async fn echo(ws: WebSocketUpgrade) -> axum::response::Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

/// Opens a WebSocket by hand and returns the socket after the `101`: the
/// caller then reads nothing and answers nothing.
async fn deaf_websocket(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    socket.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_never_answers_the_close_frame_does_not_hold_the_shutdown() {
    let router = Router::new().route("/ws", get(echo));
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), router, |s| {
        s.close_handshake_window(Duration::from_millis(300))
    })
    .await;
    let mut socket = deaf_websocket(app.addr, "/ws").await;
    app.handle.shutdown("test");

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(ended(&report, "GET /ws (upgrade)"), "{report}");
    // What the deaf client would have read: the 1001 close frame, then the
    // end of the connection.
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest).await;
    assert!(rest.len() >= 4, "{rest:?}");
    assert_eq!(rest[0], 0x88, "a close frame");
    assert_eq!(&rest[2..4], &1001u16.to_be_bytes());
}

/// A raw upgraded connection whose handler hears the stop and ignores it.
async fn raw_upgrade(cancel: Cancel, mut req: axum::extract::Request) -> axum::response::Response {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.expect("upgraded");
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        cancel.stopping().await;
        let mut buf = [0u8; 64];
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    axum::response::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "raw")
        .body(axum::body::Body::empty())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_whose_handler_ignores_the_stop_is_closed_after_the_window() {
    let router = Router::new().route("/raw", get(raw_upgrade));
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), router, |s| {
        s.close_handshake_window(Duration::from_millis(100))
    })
    .await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    socket
        .write_all(
            b"GET /raw HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    app.handle.shutdown("test");

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(ended(&report, "GET /raw (upgrade)"), "{report}");
}
