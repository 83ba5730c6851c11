//! An ordinary deploy with event-stream and WebSocket clients connected:
//! `lameduck demo` counts both as in flight while draining, ends them at
//! Stopping (the event stream at a message boundary, the WebSocket with
//! `1001 Going Away`), exits 0, and reports them as ended by the shutdown.

mod support;

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::demo::Demo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Safety bound, never reached when things work.
const BOUND: Duration = Duration::from_secs(20);

/// Sends `head` and reads the response head.
async fn open(addr: &str, head: &str) -> BufReader<TcpStream> {
    let mut stream = BufReader::new(TcpStream::connect(addr).await.unwrap());
    stream.get_mut().write_all(head.as_bytes()).await.unwrap();
    let mut status = String::new();
    stream.read_line(&mut status).await.unwrap();
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        if line.trim_end().is_empty() {
            break;
        }
    }
    assert!(status.starts_with("HTTP/1.1 "), "{status}");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_with_event_stream_and_websocket_clients_connected_exits_0() {
    let mut demo = Demo::start(
        &[
            "--drain-delay",
            "100ms",
            "--grace-period",
            "30s",
            "--output",
            "human",
        ],
        Stdio::piped(),
    )
    .await;
    let addr = demo.addr.to_string();

    // An event stream, read up to its first event.
    let mut events = open(
        &addr,
        "GET /events HTTP/1.1\r\nhost: demo\r\naccept: text/event-stream\r\n\r\n",
    )
    .await;
    let mut first = String::new();
    while !first.contains("tick 0") {
        timeout(BOUND, events.read_line(&mut first))
            .await
            .expect("the first event")
            .unwrap();
    }
    // A WebSocket, open.
    let mut ws = open(
        &addr,
        "GET /ws HTTP/1.1\r\nhost: demo\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;

    demo.signal(Signal::SIGTERM);

    // The WebSocket hears 1001 and answers it, as a browser does.
    let mut close = [0u8; 4];
    timeout(BOUND, ws.read_exact(&mut close))
        .await
        .expect("a close frame")
        .unwrap();
    assert_eq!(close[0], 0x88, "a close frame: {close:?}");
    assert_eq!(&close[2..4], &1001u16.to_be_bytes());
    let mut rest = vec![0u8; usize::from(close[1]) - 2];
    ws.read_exact(&mut rest).await.unwrap();
    let mask = [1u8, 2, 3, 4];
    let code = 1001u16.to_be_bytes();
    ws.get_mut()
        .write_all(&[0x88, 0x82, 1, 2, 3, 4, code[0] ^ mask[0], code[1] ^ mask[1]])
        .await
        .unwrap();
    // The event stream ends cleanly, after whole events only.
    let mut tail = String::new();
    timeout(BOUND, events.read_to_string(&mut tail))
        .await
        .expect("the event stream ends")
        .expect("a clean end");
    assert!(
        tail.is_empty() || tail.ends_with("\n\n") || tail.ends_with("\r\n0\r\n\r\n"),
        "{tail:?}"
    );

    let status = timeout(BOUND, demo.child.wait())
        .await
        .expect("exit bound")
        .unwrap();
    let mut stderr = String::new();
    demo.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let draining = stderr
        .lines()
        .find(|l| l.contains("draining for up to"))
        .unwrap_or_else(|| panic!("no draining line: {stderr}"));
    assert!(
        draining.contains("2 requests"),
        "the streams are in flight while draining: {draining}"
    );
    assert!(
        stderr.contains("2 ended by the shutdown"),
        "the report lists the streams as ended: {stderr}"
    );
    assert!(stderr.contains("GET /events"), "{stderr}");
    assert!(stderr.contains("GET /ws (upgrade)"), "{stderr}");
}
