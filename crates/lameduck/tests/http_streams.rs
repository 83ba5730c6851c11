//! Long-lived responses do not turn every shutdown into a timeout: an
//! event stream ends at Stopping at a message boundary, a WebSocket gets
//! `1001` and a bounded close handshake, and both are reported as ended by
//! the shutdown. Upgraded connections are tracked while they live. A
//! response can opt out (`StreamEnd::AtCancel`); an upgraded one is then
//! force-closed at the hard deadline.
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
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use http_support::{H1, Running, budget, raw_request};
use lameduck::axum::{WebSocket, WebSocketUpgrade};
use lameduck::http::{Cancel, StreamEnd};
use lameduck::{Ending, ExitStatus, Phase, Report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

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
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let (socket, head) = raw_request(addr, req.as_bytes()).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
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

/// A raw upgraded connection whose handler says it heard the stop, then
/// ignores it; `end` is put on its response.
async fn raw_upgrade(
    end: StreamEnd,
    cancel: Cancel,
    mut req: axum::extract::Request,
) -> axum::response::Response {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.expect("upgraded");
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        cancel.stopping().await;
        io.write_all(b"stopping").await.unwrap();
        let mut buf = [0u8; 64];
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let mut resp = axum::response::Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "raw")
        .body(axum::body::Body::empty())
        .unwrap();
    resp.extensions_mut().insert(end);
    resp
}

/// Upgrades a raw connection at `/raw` and waits for the handler to say it
/// heard the stop, which the caller triggers with `stop`.
async fn raw_client(app: &Running, stop: impl FnOnce()) -> TcpStream {
    let (mut socket, head) = raw_request(
        app.addr,
        b"GET /raw HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stop();
    let mut heard = [0u8; 8];
    socket.read_exact(&mut heard).await.unwrap();
    assert_eq!(&heard, b"stopping");
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_whose_handler_ignores_the_stop_is_closed_after_the_window() {
    let router = Router::new().route(
        "/raw",
        get(|cancel, req| raw_upgrade(StreamEnd::AtStopping, cancel, req)),
    );
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), router, |s| {
        s.close_handshake_window(Duration::from_millis(100))
    })
    .await;
    let _socket = raw_client(&app, || app.handle.shutdown("test")).await;

    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(ended(&report, "GET /raw (upgrade)"), "{report}");
}

/// A raw upgraded connection whose handler never looks at the stop: it
/// says `upgraded`, then reads until its client (which never sends)
/// closes.
async fn raw_upgrade_unheeding(mut req: axum::extract::Request) -> axum::response::Response {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = on_upgrade.await.expect("upgraded");
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        io.write_all(b"upgraded").await.unwrap();
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
async fn an_upgraded_connection_waiting_on_a_silent_client_is_closed_after_the_window_though_its_handler_never_looks()
 {
    let router = Router::new().route("/raw", get(raw_upgrade_unheeding));
    let shutdown_timeout = Duration::from_secs(10);
    let mut app = Running::start(
        budget(Duration::ZERO, shutdown_timeout, shutdown_timeout),
        router,
        |s| s.close_handshake_window(Duration::from_millis(100)),
    )
    .await;
    let (mut socket, head) = raw_request(
        app.addr,
        b"GET /raw HTTP/1.1\r\nhost: test\r\nconnection: upgrade\r\nupgrade: raw\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut said = [0u8; 8];
    socket.read_exact(&mut said).await.unwrap();
    assert_eq!(&said, b"upgraded");
    // The handler's read waits on the socket; nothing but the server can
    // end it now.
    app.handle.shutdown("test");
    let mut rest = Vec::new();
    let _ = socket.read_to_end(&mut rest).await;

    // Closed at the end of the window, not at the shutdown timeout.
    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(ended(&report, "GET /raw (upgrade)"), "{report}");
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
    let router = Router::new().route(
        "/raw",
        get(|cancel, req| raw_upgrade(StreamEnd::AtCancel, cancel, req)),
    );
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
    // The handler hears the stop and ignores it; it opted out of the close
    // handshake window.
    let mut socket = raw_client(&app, || app.handle.shutdown("test")).await;
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
