//! The connection timeouts while running: the request-head timeout counts
//! from a request's first byte (a slow-loris client), the idle timeout
//! between requests, announced as `Keep-Alive: timeout=N`; neither closes a
//! connection early.
#![cfg(feature = "http")]

mod http_support;

use std::time::Duration;

use http_support::{H1, Running, budget, handler, text};
use lameduck::ExitStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

const LONG: Duration = Duration::from_secs(60);
/// Safety bound, never reached when things work.
const BOUND: Duration = Duration::from_secs(20);

fn keep_alive<B>(resp: &http::Response<B>) -> Option<&str> {
    resp.headers()
        .get("keep-alive")
        .and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_the_request_head_timeout() {
    // hyper's header read timeout also ran between requests, closing every
    // idle connection after it; the request-head timeout must not.
    let app = Running::start(
        budget(Duration::ZERO, LONG, LONG),
        handler(|_| async { text("hi") }),
        |s| {
            s.request_head_timeout(Duration::from_millis(200))
                .idle_timeout(None)
        },
    )
    .await;
    let mut client = H1::connect(app.addr).await;
    assert_eq!(client.get("/").await.unwrap().status(), 200);
    // Idle for several times the request-head timeout.
    sleep(Duration::from_millis(800)).await;
    let resp = client.get("/").await.expect("the connection is still open");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        keep_alive(&resp),
        None,
        "no idle timeout, nothing announced"
    );
    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_stalls_is_closed_after_the_request_head_timeout() {
    let _app = Running::start(
        budget(Duration::ZERO, LONG, LONG),
        handler(|_| async { text("hi") }),
        |s| s.request_head_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut socket = TcpStream::connect(_app.addr).await.unwrap();
    socket
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    timeout(BOUND, socket.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(!String::from_utf8_lossy(&rest).contains("200"), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_timeout_is_announced_and_closes_an_idle_connection_cleanly() {
    let app = Running::start(
        budget(Duration::ZERO, LONG, LONG),
        handler(|_| async { text("hi") }),
        |s| s.idle_timeout(Duration::from_millis(1500)),
    )
    .await;
    let mut client = H1::connect(app.addr).await;
    let resp = client.get("/").await.unwrap();
    // One second less than the timeout, rounded down, leaves no whole
    // second: nothing is announced (`timeout=0` would be no promise).
    assert_eq!(keep_alive(&resp), None);
    timeout(BOUND, client.closed)
        .await
        .expect("the server closes the idle connection")
        .unwrap()
        .expect("cleanly");

    // The shortest timeout announced, and a longer one.
    for (idle, announced) in [(2, "timeout=1"), (75, "timeout=74")] {
        let other = Running::start(
            budget(Duration::ZERO, LONG, LONG),
            handler(|_| async { text("hi") }),
            |s| s.idle_timeout(Duration::from_secs(idle)),
        )
        .await;
        let mut client = H1::connect(other.addr).await;
        assert_eq!(
            keep_alive(&client.get("/").await.unwrap()),
            Some(announced),
            "an idle timeout of {idle}s"
        );
    }
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_while_draining_say_close_and_announce_no_keep_alive() {
    let app = Running::start(
        budget(Duration::from_secs(30), LONG, LONG),
        handler(|_| async { text("hi") }),
        |s| s,
    )
    .await;
    let mut client = H1::connect(app.addr).await;
    let resp = client.get("/").await.unwrap();
    assert_eq!(keep_alive(&resp), Some("timeout=619"), "the default, 620 s");
    app.handle.shutdown("test");
    app.handle.reached(lameduck::Phase::Draining).await;
    let mut client = H1::connect(app.addr).await;
    let resp = client.get("/").await.unwrap();
    assert_eq!(http_support::connection_header(&resp), Some("close"));
    assert_eq!(keep_alive(&resp), None);
}
