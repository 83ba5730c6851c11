//! A response still being written is in-flight work: a handler that
//! returns one large buffer is done for hyper long before its bytes are on
//! the wire. The request lasts until its last byte is handed to the socket
//! (HTTP/1 and HTTP/2 alike): the shutdown waits for it, and past its
//! deadlines it is cut and named, never silently.
#![cfg(feature = "http")]

mod http_support;

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Full};
use http_support::{H2, Running, budget, handler, raw_request_on};
use lameduck::{ExitStatus, Phase, Report};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

const LONG: Duration = Duration::from_secs(60);
/// Far more than the socket buffers on both sides hold.
const SIZE: usize = 8 << 20;

type Req = http::Request<hyper::body::Incoming>;
type Res = Response<Full<Bytes>>;

fn big_body() -> Bytes {
    (0..SIZE)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// A handler returning the whole body as one buffer, as an axum handler
/// returning a `Vec<u8>` does.
fn big() -> impl tower_service::Service<
    Req,
    Response = Res,
    Error = std::convert::Infallible,
    Future = http_support::BoxFut<Result<Res, std::convert::Infallible>>,
> + Clone {
    let body = big_body();
    handler(move |_| {
        let body = body.clone();
        async move { Response::new(Full::new(body)) }
    })
}

/// A client with a small receive buffer that sends `GET /big` and reads
/// only the response head.
async fn start_download(addr: std::net::SocketAddr) -> (TcpStream, usize) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let (stream, head) = raw_request_on(stream, b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a content-length");
    (stream, length)
}

/// `GET /big` over HTTP/2, up to the response head: the body then waits
/// behind the client's flow-control window while nothing reads it.
async fn start_h2_download(app: &Running) -> (H2, http::Response<hyper::body::Incoming>) {
    let mut client = H2::connect(app.addr).await;
    let req = http::Request::get("http://test/big")
        .body(Full::default())
        .unwrap();
    let resp = client.send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    (client, resp)
}

/// The body arrived whole, and the shutdown waited for it.
fn assert_whole(body: &[u8], report: &Report) {
    assert_eq!(body.len(), SIZE, "the body was cut");
    assert!(body == big_body(), "the body arrived corrupted");
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert_eq!(report.work.in_flight_at_stop, 1, "{report}");
    assert_eq!(report.work.finished, 1, "{report}");
}

/// The download was in flight at Stopping, and named at both deadlines.
fn assert_cut_and_named(report: &Report) {
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    assert_eq!(report.work.in_flight_at_stop, 1, "{report}");
    for (items, what) in [
        (&report.work.cancelled, "cancelled"),
        (&report.work.aborted, "aborted"),
    ] {
        assert!(
            items.iter().any(|w| w.label == "GET /big"),
            "GET /big not {what}: {report}"
        );
    }
}

/// Short deadlines: a download that does not move passes both.
fn short() -> lameduck::Budget {
    budget(
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_millis(200),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_response_still_being_written_at_stopping_is_in_flight_and_arrives_whole() {
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), big(), |s| s).await;
    let (mut client, length) = start_download(app.addr).await;
    assert_eq!(length, SIZE);

    // The client pauses: most of the body is still unwritten.
    app.handle.shutdown("test");
    app.handle.reached(Phase::Stopping).await;

    let mut body = Vec::with_capacity(SIZE);
    client
        .read_to_end(&mut body)
        .await
        .expect("a clean end after the body");
    assert_whole(&body, &app.report().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_response_its_client_stops_reading_is_cut_and_named_at_the_deadlines() {
    let mut app = Running::start(short(), big(), |s| s).await;
    // Never read past the head.
    let (_client, _) = start_download(app.addr).await;
    app.handle.shutdown("test");

    assert_cut_and_named(&app.report().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_response_still_being_written_at_stopping_is_in_flight_and_arrives_whole() {
    let mut app = Running::start(budget(Duration::ZERO, LONG, LONG), big(), |s| s).await;
    let (_client, resp) = start_h2_download(&app).await;

    app.handle.shutdown("test");
    app.handle.reached(Phase::Stopping).await;

    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the whole body, no reset")
        .to_bytes();
    assert_whole(&body, &app.report().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_response_its_client_stops_reading_is_cut_and_named_at_the_deadlines() {
    let mut app = Running::start(short(), big(), |s| s).await;
    let (_client, resp) = start_h2_download(&app).await;
    app.handle.shutdown("test");

    assert_cut_and_named(&app.report().await);
    drop(resp);
}

/// A server whose response to `GET /N` is `N` bytes: bodies of different
/// sizes, so that each is told from the others.
async fn start_sized() -> Running {
    let service = handler(|req: http::Request<hyper::body::Incoming>| async move {
        let n: usize = req.uri().path()[1..].parse().unwrap_or(0);
        Response::new(Full::new(Bytes::from(vec![b'x'; n])))
    });
    Running::start(
        budget(Duration::ZERO, Duration::from_secs(5), LONG),
        service,
        |s| s,
    )
    .await
}

/// Many small responses on one HTTP/2 connection, each parked until its
/// stream's last frame is written: none may stay counted once its bytes
/// are on the wire, or the shutdown would wait for work that is over (and
/// pass its timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_responses_on_the_wire_stop_counting_as_in_flight() {
    let app = start_sized().await;
    let mut client = H2::connect(app.addr).await;
    let requests: Vec<_> = (0..200)
        .map(|i| client.request(&format!("/{}", i * 97)))
        .collect();
    for (i, resp) in futures_util::future::join_all(requests)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(resp.unwrap().body().len(), i * 97);
    }
    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert!(report.work.cancelled.is_empty(), "{report}");
}

/// Pipelined HTTP/1.1 requests, sent in one write: the connection answers
/// them one after another from what it has already read, each response
/// parked until a flush hands it to the socket. Each must stop counting
/// once its bytes are on the wire, or the shutdown would wait for work
/// that is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_http1_responses_parked_before_one_flush_each_stop_counting() {
    let app = start_sized().await;
    const N: usize = 16;
    let requests: String = (1..=N)
        .map(|i| format!("GET /{} HTTP/1.1\r\nhost: test\r\n\r\n", i * 10))
        .collect();
    let mut client = TcpStream::connect(app.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut client, requests.as_bytes())
        .await
        .unwrap();
    // Every response, in order: its head, then as many bytes as it says.
    let mut got = Vec::new();
    let mut buf = Vec::new();
    for i in 1..=N {
        let length = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .expect("a content-length")
                    .parse()
                    .unwrap();
                buf.drain(..end + 4);
                break length;
            }
            let mut more = [0u8; 4096];
            let n = client.read(&mut more).await.unwrap();
            assert!(n > 0, "the connection closed before response {i}");
            buf.extend_from_slice(&more[..n]);
        };
        while buf.len() < length {
            let mut more = [0u8; 4096];
            let n = client.read(&mut more).await.unwrap();
            assert!(n > 0, "the connection closed inside response {i}");
            buf.extend_from_slice(&more[..n]);
        }
        got.push(buf.drain(..length).count());
    }
    assert_eq!(got, (1..=N).map(|i| i * 10).collect::<Vec<_>>());
    let report = app.stop().await;
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert_eq!(report.work.in_flight_at_stop, 0, "{report}");
    assert!(report.work.cancelled.is_empty(), "{report}");
}
