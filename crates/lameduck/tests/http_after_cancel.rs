//! What became of the work in flight at the cancel signal, as the report,
//! the metrics and the flight record tell it: a response delivered in full
//! after the signal is "finished anyway", not cancelled like the request
//! answered `503` or the response cut short; a response is counted when it
//! ends, in the phase it ended in; and an event stream the shutdown ended
//! counts as finished in the record's traffic, not as still running.
#![cfg(all(feature = "axum", feature = "metrics", feature = "flight"))]

mod http_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use http_support::H1;
use lameduck::http::{Cancel, Server};
use lameduck::metrics::Metrics;
use lameduck::{AfterCancel, App, AppHandle, Budget, ExitStatus, Phase, Report};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A bound on each wait, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(30);
/// A deadline the tests never reach.
const LONG: Duration = Duration::from_secs(200);

struct Started {
    addr: SocketAddr,
    handle: AppHandle,
    run: JoinHandle<Report>,
}

/// An app serving `router`, with the metrics and, when given, a flight
/// record; started and running.
async fn start(
    router: Router,
    budget: Budget,
    metrics: &Metrics,
    record: Option<&std::path::Path>,
) -> Started {
    let server = Server::bind("127.0.0.1:0", router).expect("bind");
    let addr = server.local_addr().unwrap();
    let mut builder = App::builder("test")
        .budget(budget)
        .handle_signals(false)
        .exit_watchdog(false)
        .metrics(metrics)
        .component(server);
    if let Some(path) = record {
        builder = builder.flight_record(path);
    }
    let app = builder.build().expect("valid app");
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    timeout(BOUND, handle.reached(Phase::Running))
        .await
        .expect("running");
    Started { addr, handle, run }
}

/// Sends `GET path` on a connection of its own; the client lives as long
/// as the response.
async fn request(addr: SocketAddr, path: &str) -> (H1, http::Response<hyper::body::Incoming>) {
    let mut client = H1::connect(addr).await;
    let req = http::Request::get(path)
        .header("host", "test")
        .body(http_body_util::Full::default())
        .unwrap();
    let resp = client.send.send_request(req).await.expect("a response");
    (client, resp)
}

/// The next data frame of `body`, as text.
async fn next_chunk(body: &mut hyper::body::Incoming) -> String {
    loop {
        let frame = timeout(BOUND, body.frame())
            .await
            .expect("a chunk in time")
            .expect("the body goes on")
            .expect("no error");
        if let Ok(data) = frame.into_data() {
            return String::from_utf8(data.to_vec()).unwrap();
        }
    }
}

/// The value of the sample `series` (name and labels, as written).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn requests(text: &str, phase: &str, outcome: &str) -> f64 {
    sample(
        text,
        &format!(
            "lameduck_http_requests_total{{component=\"http\",phase=\"{phase}\",outcome=\"{outcome}\"}}"
        ),
    )
}

fn after_cancel(report: &Report, label: &str) -> Option<AfterCancel> {
    report
        .work
        .cancelled_with_outcome()
        .find(|(w, _)| w.label == label)
        .map(|(_, then)| then)
}

/// The gates the handlers wait at, opened by the test.
#[derive(Default)]
struct Gates {
    /// `/chunked` sends its other nine chunks.
    chunked: Notify,
    /// `/slow`'s handler returns.
    slow: Notify,
    /// `/slow`'s handler has started.
    slow_started: Notify,
}

/// The new user's service: `/chunked` sends ten chunks, the last nine once
/// let through, whatever the shutdown does; `/slow` answers once let
/// through, ignoring the cancel signal; `/cut` sends one chunk, then fails
/// at the cancel signal.
fn router(gates: &Arc<Gates>) -> Router {
    let chunked = {
        let gates = gates.clone();
        move || {
            let gates = gates.clone();
            async move {
                let first = futures_util::stream::once(async { Ok(Bytes::from("chunk 0\n")) });
                let rest = futures_util::stream::once(async move {
                    gates.chunked.notified().await;
                    futures_util::stream::iter(
                        (1..10).map(|i| Ok::<_, Infallible>(Bytes::from(format!("chunk {i}\n")))),
                    )
                })
                .flatten();
                Body::from_stream(first.chain(rest)).into_response()
            }
        }
    };
    let slow = {
        let gates = gates.clone();
        move || {
            let gates = gates.clone();
            async move {
                gates.slow_started.notify_one();
                gates.slow.notified().await;
                "slow\n"
            }
        }
    };
    let cut = |cancel: Cancel| async move {
        let first = futures_util::stream::once(async { Ok(Bytes::from("part 0\n")) });
        let fail = futures_util::stream::once(async move {
            cancel.cancelled().await;
            Err::<Bytes, _>(std::io::Error::other("the producer failed"))
        });
        Body::from_stream(first.chain(fail)).into_response()
    };
    Router::new()
        .route("/chunked", get(chunked))
        .route("/slow", get(slow))
        .route("/cut", get(cut))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_delivered_in_full_after_the_cancel_signal_is_reported_finished_not_cancelled() {
    let gates = Arc::new(Gates::default());
    let metrics = Metrics::new();
    let budget = Budget::new(Duration::from_secs(600))
        .drain_delay(Duration::ZERO)
        .shutdown_timeout(Duration::from_millis(300))
        .hard_timeout(LONG);
    let app = start(router(&gates), budget, &metrics, None).await;

    // In flight in Running: two responses begun, one handler waiting.
    let (_c1, chunked) = request(app.addr, "/chunked").await;
    assert_eq!(chunked.status(), 200);
    let mut chunked = chunked.into_body();
    let mut got = next_chunk(&mut chunked).await;
    let (_c2, cut) = request(app.addr, "/cut").await;
    let mut cut = cut.into_body();
    assert_eq!(next_chunk(&mut cut).await, "part 0\n");
    let slow = tokio::spawn({
        let addr = app.addr;
        async move {
            let (_c, resp) = request(addr, "/slow").await;
            let status = resp.status();
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            (status, body)
        }
    });
    timeout(BOUND, gates.slow_started.notified())
        .await
        .expect("/slow started");

    // Kind 2: a response whose headers went out and whose body has not
    // ended is not counted yet.
    let scraped = metrics.encode();
    assert_eq!(
        requests(&scraped, "running", "answered"),
        0.0,
        "counted before its end:\n{scraped}"
    );

    app.handle.shutdown("test");
    timeout(BOUND, app.handle.reached(Phase::Cancelling))
        .await
        .expect("the shutdown timeout passes with the three in flight");

    // The clean 503 for the handler with no response yet.
    let (status, body) = timeout(BOUND, slow).await.expect("/slow answered").unwrap();
    assert_eq!(status, 503);
    assert_eq!(&body.expect("a whole 503")[..], b"shutting down\n");
    gates.slow.notify_one();
    // The response cut short: its client sees a broken body.
    let cut_end = timeout(BOUND, cut.collect()).await.expect("/cut ends");
    assert!(cut_end.is_err(), "a cut response looked complete");
    // The response delivered in full, after the cancel signal.
    gates.chunked.notify_one();
    while let Some(frame) = timeout(BOUND, chunked.frame()).await.expect("in time") {
        if let Ok(data) = frame.expect("no error").into_data() {
            got.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let want: String = (0..10).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(got, want);

    let report = timeout(BOUND, app.run).await.expect("a report").unwrap();
    assert_eq!(
        after_cancel(&report, "GET /chunked"),
        Some(AfterCancel::Finished),
        "{report}"
    );
    assert_eq!(
        after_cancel(&report, "GET /slow"),
        Some(AfterCancel::Unavailable),
        "{report}"
    );
    assert_eq!(
        after_cancel(&report, "GET /cut"),
        Some(AfterCancel::Cut),
        "{report}"
    );
    assert!(report.work.aborted.is_empty(), "{report}");
    let text = report.to_string();
    assert!(
        text.contains("3 cancelled (1 finished anyway, 1 answered 503, 1 cut)"),
        "{text}"
    );
    assert!(
        text.contains("cancelled, finished anyway: http: GET /chunked"),
        "{text}"
    );
    assert!(
        text.contains("cancelled, answered 503: http: GET /slow"),
        "{text}"
    );
    assert!(text.contains("cancelled, cut: http: GET /cut"), "{text}");
    // The shutdown timeout was passed with work in flight: that alone is
    // exit code 3, however the work then ended.
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");

    // Kind 2: each counted once, when it ended, in the phase it ended in.
    let scraped = metrics.encode();
    for (outcome, n) in [
        ("cancelled", 3.0),
        ("cancelled_finished", 1.0),
        ("cancelled_unavailable", 1.0),
        ("cancelled_cut", 1.0),
        ("cancelled_aborted", 0.0),
    ] {
        let series = format!("lameduck_shutdown_work{{outcome=\"{outcome}\"}}");
        assert_eq!(sample(&scraped, &series), n, "{series}:\n{scraped}");
    }
    for (phase, outcome, n) in [
        ("running", "answered", 0.0),
        ("cancelling", "answered", 1.0),
        ("cancelling", "unavailable", 1.0),
        ("cancelling", "cut", 1.0),
    ] {
        assert_eq!(
            requests(&scraped, phase, outcome),
            n,
            "{phase} {outcome}:\n{scraped}"
        );
    }
}

/// An app whose `GET /big` answers `bytes` bytes in one frame, with a
/// shutdown timeout of 300 ms and a hard deadline the tests never reach.
async fn big_body_app(bytes: usize) -> Started {
    let big = move || async move { vec![b'x'; bytes] };
    let router = Router::new().route("/big", get(big));
    let budget = Budget::new(Duration::from_secs(600))
        .drain_delay(Duration::ZERO)
        .shutdown_timeout(Duration::from_millis(300))
        .hard_timeout(LONG);
    start(router, budget, &Metrics::new(), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_whose_connection_ends_before_it_is_on_the_wire_is_cut_not_finished_anyway() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // More than the socket buffers on both sides hold: the body ends at
    // once (one frame), and its bytes wait on the connection.
    let app = big_body_app(64 << 20).await;
    let mut client = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    client
        .write_all(b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    timeout(BOUND, client.read_exact(&mut head))
        .await
        .expect("the response begins")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    app.handle.shutdown("test");
    timeout(BOUND, app.handle.reached(Phase::Cancelling))
        .await
        .expect("the shutdown timeout passes with the response unsent");
    // The client goes away with the response half read.
    drop(client);

    let report = timeout(BOUND, app.run).await.expect("a report").unwrap();
    assert_eq!(
        after_cancel(&report, "GET /big"),
        Some(AfterCancel::Cut),
        "{report}"
    );
}

/// A tick, then silence for ever: the shutdown ends it at Stopping.
async fn events() -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::once(async { Ok(Event::default().data("tick 0")) })
        .chain(futures_util::stream::pending());
    Sse::new(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ended_at_stopping_counts_as_finished_in_the_flight_record() {
    let dir = std::env::temp_dir().join(format!("lameduck-after-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("record.json");
    let metrics = Metrics::new();
    let budget = Budget::new(Duration::from_secs(600))
        .drain_delay(Duration::ZERO)
        .shutdown_timeout(LONG)
        .hard_timeout(LONG);
    let router = Router::new().route("/events", get(events));
    let app = start(router, budget, &metrics, Some(&path)).await;

    let (_client, resp) = request(app.addr, "/events").await;
    let mut body = resp.into_body();
    assert!(next_chunk(&mut body).await.contains("tick 0"));
    app.handle.shutdown("test");
    // The stream ends, cleanly.
    let rest = timeout(BOUND, body.collect())
        .await
        .expect("the stream ends");
    assert!(rest.is_ok(), "the stream was cut");

    let report = timeout(BOUND, app.run).await.expect("a report").unwrap();
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    assert_eq!(report.work.ended.len(), 1, "{report}");
    let record: lameduck::flight::FlightRecord =
        serde_json::from_slice(&std::fs::read(&path).expect("the record")).expect("JSON");
    let _ = std::fs::remove_dir_all(&dir);
    let http = record
        .traffic
        .listeners
        .iter()
        .find(|l| l.name == "http")
        .expect("the server's traffic");
    let sum = |v: &Option<Vec<u64>>| v.as_ref().expect("counted").iter().sum::<u64>();
    assert_eq!(sum(&http.requests), 1, "{http:?}");
    assert_eq!(
        sum(&http.finished),
        1,
        "the ended stream is still running in the record: {http:?}"
    );
    // Kind 2: an event stream the shutdown ended is an answer, counted in
    // the phase it ended in.
    let scraped = metrics.encode();
    assert_eq!(requests(&scraped, "running", "answered"), 0.0, "{scraped}");
    assert_eq!(requests(&scraped, "stopping", "answered"), 1.0, "{scraped}");
}

/// One HTTP/2 frame read off `socket`: its type, flags and stream.
async fn read_frame(socket: &mut tokio::net::TcpStream) -> (u8, u8, u32) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    socket.read_exact(&mut head).await.expect("a frame header");
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    socket
        .read_exact(&mut payload)
        .await
        .expect("a frame payload");
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    (head[3], head[4], stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_response_whose_stream_the_client_resets_before_it_is_on_the_wire_is_cut_not_finished_anyway()
 {
    use tokio::io::AsyncWriteExt;

    // More than the client's stream window (65,535 bytes, the default):
    // the body ends at once (one frame), and most of its bytes wait in h2
    // for a window the client never opens.
    let app = big_body_app(1 << 20).await;
    // A client of raw frames, which does only what the test says: a
    // library client may reset its streams on the server's GOAWAY.
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    // HEADERS on stream 1, END_STREAM | END_HEADERS: GET http://test/big
    // (HPACK: :method GET, :scheme http, :path and :authority literal).
    let block = [&[0x82, 0x86, 0x44, 4][..], b"/big", &[0x41, 4], b"test"].concat();
    hello.extend([0, 0, block.len() as u8, 0x1, 0x5, 0, 0, 0, 1]);
    hello.extend(&block);
    socket.write_all(&hello).await.unwrap();
    // Up to the response's HEADERS, acknowledging the server's SETTINGS.
    timeout(BOUND, async {
        loop {
            match read_frame(&mut socket).await {
                (0x4, 0, _) => socket
                    .write_all(&[0, 0, 0, 0x4, 0x1, 0, 0, 0, 0])
                    .await
                    .unwrap(),
                (0x1, _, 1) => break,
                _ => {}
            }
        }
    })
    .await
    .expect("the response begins");
    app.handle.shutdown("test");
    timeout(BOUND, app.handle.reached(Phase::Cancelling))
        .await
        .expect("the shutdown timeout passes with the response unsent");
    // RST_STREAM on stream 1, CANCEL (0x8); the connection stays open.
    socket
        .write_all(&[0, 0, 4, 0x3, 0, 0, 0, 0, 1, 0, 0, 0, 0x8])
        .await
        .unwrap();

    let report = timeout(BOUND, app.run).await.expect("a report").unwrap();
    assert_eq!(
        after_cancel(&report, "GET /big"),
        Some(AfterCancel::Cut),
        "{report}"
    );
}
