//! Upgraded connections: tracked, told to close at Stopping (WebSocket:
//! 1001 Going Away), and, when they opt out of the close handshake window,
//! force-closed at the hard deadline. (Event streams and the window:
//! `http_streams.rs`.)
#![cfg(feature = "axum")]

mod http_support;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use http_support::{Running, budget};
use lameduck::axum::{WebSocket, WebSocketUpgrade};
use lameduck::http::{Cancel, StreamEnd};
use lameduck::{Ending, ExitStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const LONG: Duration = Duration::from_secs(60);

async fn echo(ws: WebSocketUpgrade) -> axum::response::Response {
    ws.on_upgrade(|mut socket: WebSocket| async move {
        while let Some(Ok(msg)) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_gets_1001_going_away_at_stopping_and_the_shutdown_is_clean() {
    let router = Router::new().route("/ws", get(echo));
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), router, |s| s).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr))
        .await
        .expect("handshake");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    app.handle.shutdown("test");
    // The next frame is the server's close, 1001.
    let frame = loop {
        match ws
            .next()
            .await
            .expect("a close frame before the end")
            .expect("no error")
        {
            Message::Close(frame) => break frame.expect("a close code"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(frame.code, CloseCode::Away);
    // tungstenite answered the close; the connection ends cleanly.
    assert!(
        ws.next()
            .await
            .is_none_or(|m| m.is_err() || matches!(m, Ok(Message::Close(_))))
    );

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    // The upgraded connection was tracked: in flight when Stopping began.
    assert_eq!(report.work.in_flight_at_stop, 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_upgrade_that_ignores_the_stop_is_force_closed_and_named_at_the_hard_deadline() {
    let router = Router::new().route("/raw", get(raw_upgrade));
    let mut app = Running::start(
        budget(
            Duration::ZERO,
            Duration::from_millis(200),
            Duration::from_millis(200),
        ),
        router,
        |s| s,
    )
    .await;
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    socket
        .write_all(
            b"GET /raw HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // The upgraded handler says it heard the stop, then ignores it.
    let mut heard = [0u8; 8];
    app.handle.shutdown("test");
    socket.read_exact(&mut heard).await.unwrap();
    assert_eq!(&heard, b"stopping");
    // At the hard deadline the server closes the connection under the
    // handler.
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest).await;

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    assert!(
        report
            .work
            .aborted
            .iter()
            .any(|w| w.label == "GET /raw (upgrade)"),
        "{report}"
    );
    assert_eq!(
        report.component("http").unwrap().ended,
        Ending::Aborted,
        "{report}"
    );
}

async fn raw_upgrade(cancel: Cancel, mut req: axum::extract::Request) -> axum::response::Response {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.expect("upgraded");
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        cancel.stopping().await;
        io.write_all(b"stopping").await.unwrap();
        // Ignores the stop: reads until the connection is closed under it.
        let mut buf = [0u8; 64];
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    // Out of the close handshake window: left to its handler.
    let mut resp = axum::response::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "raw")
        .body(axum::body::Body::empty())
        .unwrap();
    resp.extensions_mut().insert(StreamEnd::AtCancel);
    resp
}
