//! A Unix stream socket as the main listener: served, drained and closed
//! like TCP.
#![cfg(all(unix, feature = "http"))]

mod http_support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use http_support::{budget, connection_header, handler, text};
use hyper_util::rt::TokioIo;
use lameduck::http::Server;
use lameduck::{App, ExitStatus, Phase};
use tokio::net::{UnixListener, UnixStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_listener_serves_drains_and_closes() {
    let dir = std::env::temp_dir().join(format!("lameduck-http-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("http.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let server = Server::new(listener, handler(|_| async { text("over unix") }));
    let app = App::builder("unix")
        .budget(budget(
            Duration::from_millis(200),
            Duration::from_secs(60),
            Duration::from_secs(60),
        ))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(server)
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;

    let stream = UnixStream::connect(&path).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let closed = tokio::spawn(conn);
    let get = || {
        Request::get("/")
            .header("host", "unix")
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    let resp = send.send_request(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(connection_header(&resp), None, "keep-alive while running");
    assert_eq!(
        &resp.into_body().collect().await.unwrap().to_bytes()[..],
        b"over unix"
    );

    handle.shutdown("test");
    handle.reached(Phase::Draining).await;
    // While draining the same connection is still served, told to close.
    send.ready().await.unwrap();
    let resp = send.send_request(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(connection_header(&resp), Some("close"));

    let report = run.await.unwrap();
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    closed
        .await
        .unwrap()
        .expect("the server closed the connection cleanly");
    // The listener is gone: nobody accepts on the path any more.
    assert!(UnixStream::connect(&path).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
