//! Stopping: the listener closes, idle connections close at once, busy ones
//! after their response, and nothing that was sent before is lost.
#![cfg(feature = "http")]

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http_support::{H1, Running, budget, connection_header, handler, text};
use lameduck::{ExitStatus, Phase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_never_used_connections_do_not_hold_the_shutdown_up() {
    // A shutdown timeout of 60 s: were an idle connection waited for, the
    // app would cancel it (and report a passed deadline) or the test would
    // hang; neither may happen.
    let app = Running::start(
        budget(Duration::ZERO, LONG, LONG),
        handler(|_| async { text("hi") }),
        // The never-used connection was opened before the shutdown; it gets
        // no more grace than this.
        |s| s.first_request_grace(Duration::from_millis(50)),
    )
    .await;
    let mut used = H1::connect(app.addr).await;
    assert_eq!(used.get("/").await.unwrap().status(), 200);
    let never_used = H1::connect(app.addr).await;

    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert_eq!(report.phase_duration(Phase::Cancelling), None, "{report}");
    assert!(report.work.cancelled.is_empty(), "{report}");
    // Both were closed by the server, cleanly.
    used.closed
        .await
        .unwrap()
        .expect("idle keep-alive connection closed cleanly");
    // hyper's client calls the end of a connection it never used an
    // incomplete message; what matters is an end-of-file, not a reset.
    match never_used.closed.await.unwrap() {
        Ok(()) => {}
        Err(err) => assert!(err.is_incomplete_message(), "{err:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_stopping_completes_and_then_its_connection_closes() {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let service = {
        let (started, release) = (started.clone(), release.clone());
        handler(move |_| {
            let (started, release) = (started.clone(), release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                text("finished")
            }
        })
    };
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), service, |s| s).await;
    let mut client = H1::connect(app.addr).await;
    let request = tokio::spawn(async move {
        let resp = client.get("/slow").await;
        (resp, client)
    });
    started.notified().await;
    app.handle.shutdown("test");
    app.handle.reached(Phase::Stopping).await;

    // The listener is closed: a new connection is refused.
    let refused = loop_until_refused(app.addr).await;
    assert!(refused, "the listener still accepts at Stopping");

    release.notify_one();
    let (resp, client) = request.await.unwrap();
    let resp = resp.expect("the request in flight completes");
    assert_eq!(resp.body(), "finished");
    assert_eq!(connection_header(&resp), Some("close"));
    client
        .closed
        .await
        .unwrap()
        .expect("closed cleanly after the response");
    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert_eq!(report.work.in_flight_at_stop, 1, "{report}");
    assert_eq!(report.work.finished, 1, "{report}");
}

/// The listener closes a task hop after Stopping begins; connect until it
/// refuses, within a bound.
async fn loop_until_refused(addr: std::net::SocketAddr) -> bool {
    for _ in 0..1000 {
        match tokio::net::TcpStream::connect(addr).await {
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ => tokio::task::yield_now().await,
        }
    }
    false
}

/// hyper alone closes an idle keep-alive connection at shutdown even when
/// the next request already sits unread in its socket buffer, and the
/// client sees a reset. lameduck serves that request.
#[test]
fn a_request_already_in_the_socket_buffer_at_stopping_is_served_not_reset() {
    // One thread: nothing runs between the write below and the shutdown,
    // so the server learns of the stop before it reads the request.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut app = Running::start(
            budget(Duration::ZERO, LONG, LONG),
            handler(|_| async { text("hi") }),
            |s| s,
        )
        .await;
        let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let request = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n";
        socket.write_all(request).await.unwrap();
        let first = read_response(&mut socket).await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");

        // The connection is idle now. Write the next request and stop, with
        // no await in between.
        assert_eq!(socket.try_write(request).unwrap(), request.len());
        app.handle.shutdown("test");
        let report = app.report().await;
        assert_eq!(report.status(), ExitStatus::Clean, "{report}");

        let second = read_response(&mut socket).await;
        assert!(
            second.starts_with("HTTP/1.1 200"),
            "the buffered request was not served: {second:?}"
        );
        assert!(
            second.to_ascii_lowercase().contains("connection: close"),
            "{second}"
        );
        let mut rest = Vec::new();
        socket
            .read_to_end(&mut rest)
            .await
            .expect("a clean close, not a reset");
        assert!(rest.is_empty());
    });
}

/// Reads one response whose body is "hi".
async fn read_response(socket: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(_) => buf.push(byte[0]),
        }
    }
    let mut body = [0u8; 2];
    if socket.read_exact(&mut body).await.is_ok() {
        buf.extend_from_slice(&body);
    }
    String::from_utf8_lossy(&buf).into_owned()
}
