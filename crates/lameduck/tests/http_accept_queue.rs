//! The accept queue at Stopping: connections the kernel completed but the
//! server had not accepted yet are served, not reset.
#![cfg(feature = "http")]

mod http_support;

use std::time::Duration;

use http_support::{Running, budget, handler, text};
use lameduck::ExitStatus;
use lameduck::http::Listener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn closing_a_listener_hands_back_every_queued_connection_and_refuses_new_ones() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::new();
    for _ in 0..5 {
        // The kernel completes the handshake; nobody accepts.
        clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let queued = Listener::close(listener);
    assert_eq!(queued.len(), clients.len());
    let err = tokio::net::TcpStream::connect(addr)
        .await
        .expect_err("closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    // The connections handed back are live: bytes go both ways.
    for ((mut server, _), client) in queued.into_iter().zip(&mut clients) {
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }
}

#[test]
fn requests_on_connections_still_in_the_accept_queue_at_stopping_are_served() {
    // One thread: the connections below complete in the kernel, and the
    // shutdown is asked for, before the server runs again.
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
        let mut sockets = Vec::new();
        for _ in 0..8 {
            let socket = std::net::TcpStream::connect(app.addr).unwrap();
            (&socket)
                .write_all_sync(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
                .unwrap();
            sockets.push(socket);
        }
        app.handle.shutdown("test");
        let report = app.report().await;
        assert_eq!(report.status(), ExitStatus::Clean, "{report}");
        for socket in sockets {
            socket.set_nonblocking(true).unwrap();
            let mut socket = tokio::net::TcpStream::from_std(socket).unwrap();
            let mut response = Vec::new();
            socket
                .read_to_end(&mut response)
                .await
                .expect("a response, not a reset");
            let response = String::from_utf8_lossy(&response);
            assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
        }
    });
}

/// A blocking write on a `&std::net::TcpStream`, named so it cannot be
/// mistaken for tokio's.
trait WriteAllSync {
    fn write_all_sync(self, buf: &[u8]) -> std::io::Result<()>;
}

impl WriteAllSync for &std::net::TcpStream {
    fn write_all_sync(mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::Write::write_all(&mut self, buf)
    }
}
