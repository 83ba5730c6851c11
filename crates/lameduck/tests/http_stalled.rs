//! Clients that stall hold a shutdown up only for a bounded time, and
//! whatever holds it past a deadline is named in the report: a request head
//! that never completes, an HTTP/2 client that stopped reading.
#![cfg(feature = "http")]

mod http_support;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use http_support::{Running, budget, handler, text};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lameduck::{Deadline, ExitStatus};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(60);

/// The first line and one header of a request, and then nothing.
const HALF_A_HEAD: &[u8] = b"GET /work?ms=1 HTTP/1.1\r\nHost: x\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_received_request_head_does_not_hold_the_shutdown_to_its_timeout() {
    // Were the connection waited for, the 5 s shutdown timeout would pass
    // and the report say so.
    let mut app = Running::start(
        budget(Duration::ZERO, Duration::from_secs(5), LONG),
        handler(|_| async { text("hi") }),
        |s| s.first_request_grace(Duration::from_millis(100)),
    )
    .await;
    let mut client = TcpStream::connect(app.addr).await.unwrap();
    client.write_all(HALF_A_HEAD).await.unwrap();
    // Bytes sent before the shutdown; the server has read them or will.
    app.handle.shutdown("test");
    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(report.work.held.is_empty(), "{report}");
    // The server closed it: end-of-file, nothing answered to half a request.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest).await;
    assert!(!String::from_utf8_lossy(&rest).contains("200"), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_holds_the_shutdown_past_its_timeout_is_named_with_its_peer_and_state() {
    // A grace longer than the deadlines: the stalled head outlives both.
    let mut app = Running::start(
        budget(
            Duration::ZERO,
            Duration::from_millis(200),
            Duration::from_millis(200),
        ),
        handler(|_| async { text("hi") }),
        |s| s.first_request_grace(LONG),
    )
    .await;
    let mut client = TcpStream::connect(app.addr).await.unwrap();
    let peer = client.local_addr().unwrap().to_string();
    client.write_all(HALF_A_HEAD).await.unwrap();
    app.handle.shutdown("test");
    let report = app.report().await;

    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    // No request was in flight: the cause is the connection, named.
    assert!(report.work.cancelled.is_empty(), "{report}");
    let held = report
        .work
        .held
        .iter()
        .find(|h| h.deadline == Deadline::ShutdownTimeout && h.what.contains(&peer))
        .unwrap_or_else(|| panic!("{peer} not named: {report}"));
    assert_eq!(&*held.component, "http");
    assert!(held.what.contains("request head incomplete"), "{report}");
    assert!(report.to_string().contains(&peer), "{report}");
    // With no request in flight, the cancel signal closes it: nothing is
    // left for the hard deadline.
    assert!(
        report
            .work
            .held
            .iter()
            .all(|h| h.deadline != Deadline::Hard),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_does_not_return_is_named_at_the_deadline() {
    let app = lameduck::App::builder("test")
        .budget(budget(
            Duration::ZERO,
            Duration::from_millis(100),
            Duration::from_millis(100),
        ))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(lameduck::Component::new("stubborn", |ctx| async move {
            ctx.ready();
            std::future::pending::<()>().await;
            Ok(())
        }))
        .build()
        .unwrap();
    app.handle().shutdown("test");
    let report = app.await;
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    assert!(
        report
            .work
            .held
            .iter()
            .any(|h| &*h.component == "stubborn" && h.deadline == Deadline::ShutdownTimeout),
        "{report}"
    );
}

/// A socket that, once frozen, reads nothing more: the client never sees
/// the server's GOAWAY and PING, so never acknowledges them.
struct Freezable {
    inner: TcpStream,
    frozen: Arc<AtomicBool>,
}

impl AsyncRead for Freezable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.frozen.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Freezable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_whose_peer_went_silent_closes_after_its_goaway() {
    let mut app = Running::start(
        budget(Duration::ZERO, Duration::from_secs(10), LONG),
        handler(|_| async { text("hi") }),
        |s| s,
    )
    .await;
    let frozen = Arc::new(AtomicBool::new(false));
    let io = Freezable {
        inner: TcpStream::connect(app.addr).await.unwrap(),
        frozen: frozen.clone(),
    };
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get("http://test/")
        .body(Full::<bytes::Bytes>::default())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // One completed request; now the client stops reading (and so never
    // acknowledges anything).
    frozen.store(true, Ordering::Release);

    app.handle.shutdown("test");
    let report = app.report().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(report.work.held.is_empty(), "{report}");
    conn.abort();
}
