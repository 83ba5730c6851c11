//! The flight record on each exit path, with the real `lameduck demo`, real
//! signals and a real client: a clean shutdown, one whose deadline passed
//! with a stream still open, and one forced by a second signal. Each
//! record is read back, and `lameduck report` renders it. What became of
//! the requests in flight: a stream that ends in full after the cancel
//! signal is "finished anyway", not cancelled like the request answered
//! 503; an event stream ended at Stopping counts as finished, not as still
//! running when sampling stopped.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lameduck::flight::FlightRecord;
use nix::sys::signal::Signal;
use support::demo::Demo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// A bound on what must happen, never reached when things work.
const BOUND: Duration = Duration::from_secs(20);

/// A directory of its own for one test, removed at its end.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo, started with a flight record at `file` in a scratch
/// directory of its own (`name`) and `args`, once ready: the directory
/// (removed when dropped), the record's path and the demo.
async fn recording_demo(name: &str, file: &str, args: &[&str]) -> (TempDir, PathBuf, Demo) {
    let dir = tempdir(name);
    let path = dir.path().join(file);
    let mut all = vec!["--flight-record", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let demo = Demo::start(&all, Stdio::null()).await;
    wait_readyz(demo.admin, 200).await;
    (dir, path, demo)
}

fn tempdir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("lameduck-flight-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    TempDir(dir)
}

/// Opens a stream that will outlast the shutdown's deadlines, and returns
/// it once its first chunk is in: the request is in flight.
async fn open_stream(addr: SocketAddr) -> (TcpStream, SocketAddr) {
    let mut conn = TcpStream::connect(addr).await.expect("connecting");
    let local = conn.local_addr().expect("the client's address");
    conn.write_all(b"GET /stream?n=10000&ms=100 HTTP/1.1\r\nHost: demo\r\n\r\n")
        .await
        .expect("sending the request");
    let mut seen = Vec::new();
    timeout(BOUND, async {
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("chunk 0") {
            let n = conn.read(&mut buf).await.expect("reading the stream");
            assert!(n > 0, "the stream ended before its first chunk");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first chunk arrives");
    (conn, local)
}

/// Waits until the demo's `/readyz` answers `status`: 200 once it is
/// ready (its signal handling is in place), 503 once it is draining.
async fn wait_readyz(admin: SocketAddr, status: u16) {
    let head = format!("HTTP/1.1 {status}");
    wait_admin(admin, "/readyz", "/readyz answers as awaited", |r| {
        r.starts_with(&head)
    })
    .await;
}

async fn exit_code(demo: &mut Demo) -> i32 {
    timeout(BOUND, demo.child.wait())
        .await
        .expect("the demo exits")
        .expect("waiting for the demo")
        .code()
        .expect("an exit code")
}

fn read_record(path: &Path) -> FlightRecord {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no flight record at {}: {e}", path.display()));
    FlightRecord::from_json(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The connection from `peer` in any inventory of `record`, with the
/// inventory's moment.
fn stuck(record: &FlightRecord, peer: SocketAddr) -> Vec<(&str, &str)> {
    record
        .inventories
        .iter()
        .flat_map(|inv| {
            inv.connections
                .iter()
                .filter(move |c| c.peer == peer.to_string())
                .map(move |c| (inv.at.as_str(), c.state.as_str()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_writes_a_flight_record_with_its_phases_and_drain() {
    let (_dir, path, mut demo) =
        recording_demo("clean", "flight.json", &["--drain-delay", "200ms"]).await;
    demo.signal(Signal::SIGTERM);
    assert_eq!(exit_code(&mut demo).await, 0);

    let record = read_record(&path);
    assert_eq!(record.app, "demo");
    assert_eq!(record.kind, "shutdown");
    assert_eq!(record.reason.as_deref(), Some("SIGTERM"));
    let exit = record.exit.as_ref().expect("the exit");
    assert_eq!(exit.code, 0);
    for phase in ["draining", "stopping", "closing"] {
        assert!(record.phase(phase).is_some(), "no {phase} in {record:#?}");
    }
    let drain = record.drain.as_ref().expect("the drain");
    assert_eq!(drain.ended, "delay", "{drain:#?}");
    assert_eq!(record.budget.drain_max_ms, 200);

    // `lameduck report` renders it for a person.
    let out = support::run(&["report", path.to_str().unwrap()]);
    out.assert_code(0);
    for needle in ["demo", "SIGTERM", "draining", "drain delay over", "exit 0"] {
        assert!(out.stdout.contains(needle), "{needle:?} in\n{}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_past_its_deadline_records_the_stream_it_waited_for() {
    let (_dir, path, mut demo) = recording_demo(
        "deadline",
        "flight.json",
        &[
            "--drain-delay",
            "0s",
            "--shutdown-timeout",
            "300ms",
            "--hard-timeout",
            "300ms",
        ],
    )
    .await;
    let (_conn, peer) = open_stream(demo.addr).await;
    demo.signal(Signal::SIGTERM);
    let code = exit_code(&mut demo).await;

    let record = read_record(&path);
    assert_eq!(record.exit.as_ref().expect("the exit").code as i32, code);
    let seen = stuck(&record, peer);
    assert!(
        seen.iter().any(|(at, _)| *at != "stopping"),
        "the stream from {peer} is in no deadline's inventory: {seen:?}\n{record:#?}"
    );
    assert!(
        record
            .inventories
            .iter()
            .any(|inv| inv.work.iter().any(|w| w.label.contains("/stream"))),
        "no deadline names the /stream request: {:#?}",
        record.inventories
    );

    let out = support::run(&["report", path.to_str().unwrap()]);
    out.assert_code(0);
    assert!(
        out.stdout.contains(&peer.to_string()),
        "the report names the stuck connection {peer}:\n{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_forced_by_a_second_signal_still_writes_its_flight_record() {
    let (dir, _path, mut demo) = recording_demo(
        "forced",
        "flight-{pid}.json",
        &["--drain-delay", "20s", "--grace-period", "60s"],
    )
    .await;
    let (_conn, peer) = open_stream(demo.addr).await;
    demo.signal(Signal::SIGTERM);
    wait_readyz(demo.admin, 503).await;
    // Another signal than the first: a repeat of the same one within
    // 300 ms would count as the same delivery.
    demo.signal(Signal::SIGINT);
    assert_eq!(exit_code(&mut demo).await, 130);

    let written = dir.path().join(format!("flight-{}.json", demo.pid));
    let record = read_record(&written);
    assert_eq!(record.pid as i32, demo.pid.as_raw());
    assert_eq!(record.exit.as_ref().expect("the exit").code, 130);
    assert!(
        !stuck(&record, peer).is_empty(),
        "the forced exit's inventory names the open stream from {peer}: {:#?}",
        record.inventories
    );
}

/// The checked-in record of a demo shutdown past its deadline.
const RECORD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flight-record.json");

#[test]
fn report_renders_a_checked_in_record_as_text() {
    let out = support::run(&["report", RECORD]);
    out.assert_code(0);
    let expected = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/flight-record.txt"
    ))
    .expect("the expected text");
    assert_eq!(out.stdout, expected);
    // What an operator looks for first: the drain's end and the stuck work.
    for needle in [
        "quiet for 500ms after 1.613s",
        "in flight at shutdown_timeout",
        "GET /stream",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?}");
    }
}

/// A file of any size named by mistake — a device that never ends, a log —
/// is refused once past the largest record there can be, not read whole
/// into memory.
#[test]
fn report_of_an_endless_file_stops_at_the_largest_record_and_exits_2() {
    let out = support::run(&["report", "/dev/zero"]);
    out.assert_code(2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("larger than 64 MiB: not a flight record"),
        "{}",
        out.stderr
    );
}

#[test]
fn report_of_a_file_that_is_not_a_flight_record_exits_2_saying_why() {
    let dir = tempdir("not-a-record");
    let cases = [
        ("not-json.json", "{".to_string(), "not a flight record"),
        (
            "drill.json",
            r#"{"format": "lameduck.drill", "version": 1}"#.to_string(),
            "its format is \"lameduck.drill\"",
        ),
        (
            "future.json",
            std::fs::read_to_string(RECORD).unwrap().replacen(
                "\"version\": 1",
                "\"version\": 99",
                1,
            ),
            "version 99",
        ),
        (
            "hollow.json",
            r#"{"format": "lameduck.flight-record", "version": 1}"#.to_string(),
            "missing field `kind`",
        ),
    ];
    for (name, text, why) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = support::run(&["report", path.to_str().unwrap()]);
        out.assert_code(2);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(out.stderr.contains(why), "{name}: {}", out.stderr);
    }
    let out = support::run(&["report", dir.path().join("missing.json").to_str().unwrap()]);
    out.assert_code(2);
    assert!(out.stderr.contains("reading"), "{}", out.stderr);
}

/// `n` requests to `/work?ms=1`, one every 50 ms, each on its own
/// connection: a steady load the adaptive drain can judge a pause by.
async fn steady(addr: SocketAddr, n: usize) {
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    for i in 0..n {
        pace.tick().await;
        let mut conn = TcpStream::connect(addr).await.expect("connecting");
        conn.write_all(b"GET /work?ms=1 HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            .await
            .expect("sending");
        let mut out = String::new();
        timeout(BOUND, conn.read_to_string(&mut out))
            .await
            .expect("an answer")
            .expect("reading");
        assert!(out.starts_with("HTTP/1.1 200"), "request {i}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adaptive_drain_ends_once_the_traffic_stops_and_the_log_and_record_say_so() {
    let dir = tempdir("adaptive");
    let path = dir.path().join("flight.json");
    let mut demo = Demo::start(
        &[
            "--flight-record",
            path.to_str().unwrap(),
            "--drain-max",
            "20s",
            "--drain-quiet",
            "300ms",
            "--output",
            "json",
        ],
        Stdio::piped(),
    )
    .await;
    let mut stderr = demo.child.stderr.take().expect("piped");
    let log = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    wait_readyz(demo.admin, 200).await;
    steady(demo.addr, 20).await;
    demo.signal(Signal::SIGTERM);
    // Still served while draining; then nothing more arrives.
    steady(demo.addr, 5).await;
    assert_eq!(exit_code(&mut demo).await, 0);
    let log = timeout(BOUND, log).await.expect("the log ends").unwrap();

    let record = read_record(&path);
    let drain = record.drain.as_ref().expect("the drain");
    assert_eq!(drain.ended, "quiet", "{drain:#?}");
    assert!(drain.arrivals >= 5, "{drain:#?}");
    assert!(
        log.contains("drain ended: quiet for"),
        "the log says what ended the drain:\n{log}"
    );
    let stopping = record.phase("stopping").expect("stopping");
    assert!(stopping.cause.starts_with("quiet for"), "{stopping:?}");
}

/// The checked-in record, changed by `edit`, written to a scratch file.
fn edited_record(name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> (TempDir, String) {
    let text = std::fs::read_to_string(RECORD).expect("the checked-in record");
    let mut record: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    edit(&mut record);
    let dir = tempdir(name);
    let path = dir.path().join("record.json");
    std::fs::write(&path, record.to_string()).expect("writing the edited record");
    (dir, path.display().to_string())
}

#[test]
fn report_says_what_the_requests_not_finished_were_and_times_the_last_arrival_by_its_sample() {
    // The last arrival's tick, as the series places it, ends at 3600 ms;
    // the drain began at 3604 ms and sampled that arrival at 3605 ms, so
    // it counts it as sampled during the drain.
    let (_dir, path) = edited_record("sampled", |r| {
        r["shutdown_ms"] = 3604.into();
        r["phases"][1]["end_ms"] = 3604.into();
        r["phases"][2]["start_ms"] = 3604.into();
        r["drain"]["start_ms"] = 3604.into();
        r["drain"]["last_traffic_ms"] = 3605.into();
        r["drain"]["arrivals"] = 1.into();
        // An older record: the phase under way at the report has no end.
        r["phases"][5]["end_ms"] = serde_json::Value::Null;
    });
    let out = support::run(&["report", &path]);
    out.assert_code(0);
    let text = &out.stdout;
    assert!(
        text.contains("last arrival sampled at +1ms"),
        "the last arrival agrees with the drain that counted it: {text}"
    );
    assert!(!text.contains("last arrival sampled at -"), "{text}");
    assert!(
        text.contains("41 requests, 40 finished, 1 still running when sampling stopped (+1.5s)"),
        "{text}"
    );
    let closing = text.lines().find(|l| l.contains(" closing ")).unwrap();
    assert!(closing.contains("≥1ms"), "{closing}");
}

/// Sends `GET path` on a connection of its own.
async fn send(addr: SocketAddr, path: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.expect("connecting");
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n").as_bytes())
        .await
        .expect("sending the request");
    conn
}

/// Reads from `conn` until what was read contains `needle`; returns it all.
async fn read_until(conn: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(seen).contains(needle) {
            let n = conn.read(&mut buf).await.expect("reading");
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} in time: {}", String::from_utf8_lossy(seen)));
}

/// An HTTP/1 request to the admin listener; the whole response.
async fn admin_get(admin: SocketAddr, path: &str) -> Option<String> {
    let mut conn = TcpStream::connect(admin).await.ok()?;
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut out = String::new();
    conn.read_to_string(&mut out).await.ok()?;
    Some(out)
}

/// Waits, polling the admin listener, until `check` holds of a response.
async fn wait_admin(admin: SocketAddr, path: &str, what: &str, check: impl Fn(&str) -> bool) {
    timeout(BOUND, async {
        let mut poll = tokio::time::interval(Duration::from_millis(20));
        loop {
            poll.tick().await;
            if admin_get(admin, path).await.is_some_and(|r| check(&r)) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_delivered_in_full_after_the_cancel_signal_is_finished_anyway_not_cancelled_like_the_503()
 {
    let (dir, path, mut demo) = recording_demo(
        "after-cancel",
        "flight.json",
        &[
            "--drain-delay",
            "0s",
            "--shutdown-timeout",
            "300ms",
            "--hard-timeout",
            "5s",
        ],
    )
    .await;
    // A handler that answers the cancel signal with its own 503, and a
    // stream that, at the signal, sends a last chunk and ends in full.
    let mut work = send(demo.addr, "/work?ms=60000").await;
    let mut stream = send(demo.addr, "/stream?n=10000&ms=100").await;
    let mut streamed = Vec::new();
    read_until(&mut stream, &mut streamed, "chunk 0").await;
    wait_admin(demo.admin, "/metrics", "both in flight", |r| {
        r.lines()
            .any(|l| l == "lameduck_work_in_flight{tracker=\"http\"} 2.0")
    })
    .await;
    demo.signal(Signal::SIGTERM);

    let mut answered = Vec::new();
    // In the library's words for a request it cancels (the drill's docs
    // show them): the demo's handler says the same.
    read_until(&mut work, &mut answered, "shutting down\n").await;
    let answered = String::from_utf8_lossy(&answered);
    assert!(answered.starts_with("HTTP/1.1 503"), "{answered}");
    assert!(!answered.contains("cancelled"), "{answered}");
    read_until(&mut stream, &mut streamed, "cancelled\n\r\n0\r\n\r\n").await;
    assert_eq!(exit_code(&mut demo).await, 3, "the shutdown timeout passed");

    let record = read_record(&path);
    let work = record.work.as_ref().expect("the work settled");
    assert_eq!(work.cancelled, 2, "{work:?}");
    let want: std::collections::BTreeMap<String, u64> =
        [("finished".to_string(), 1), ("unavailable".to_string(), 1)].into();
    assert_eq!(work.after_cancel, want, "{work:?}");
    let then = |label: &str| {
        record
            .inventories
            .iter()
            .filter(|inv| inv.at == "shutdown_timeout")
            .flat_map(|inv| &inv.work)
            .find(|w| w.label.starts_with(label))
            .and_then(|w| w.then.clone())
    };
    assert_eq!(then("GET /stream").as_deref(), Some("finished anyway"));
    assert_eq!(then("GET /work").as_deref(), Some("answered 503"));

    let out = support::run(&["report", path.to_str().unwrap()]);
    out.assert_code(0);
    for needle in [
        "2 cancelled (1 finished anyway, 1 answered 503)",
        ", then finished anyway",
        ", then answered 503",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in\n{}", out.stdout);
    }
    // The page says the same.
    let html = dir.path().join("flight.html");
    let out = support::run(&[
        "report",
        path.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    out.assert_code(0);
    let page = std::fs::read_to_string(&html).expect("the page");
    assert!(
        page.contains("2 cancelled (1 finished anyway, 1 answered 503)"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ended_at_stopping_is_finished_in_the_flight_record_not_still_running() {
    let (_dir, path, mut demo) =
        recording_demo("events-ended", "flight.json", &["--drain-delay", "500ms"]).await;
    let mut events = send(demo.addr, "/events").await;
    let mut seen = Vec::new();
    read_until(&mut events, &mut seen, "tick 0").await;
    demo.signal(Signal::SIGTERM);
    // Ended at Stopping, in full: the chunked body's last chunk.
    read_until(&mut events, &mut seen, "\r\n0\r\n\r\n").await;
    assert_eq!(exit_code(&mut demo).await, 0);

    let record = read_record(&path);
    let http = record
        .traffic
        .listeners
        .iter()
        .find(|l| l.name == "http")
        .expect("the server's traffic");
    let sum = |v: &Option<Vec<u64>>| v.as_ref().expect("counted").iter().sum::<u64>();
    assert_eq!(sum(&http.requests), 1, "{http:?}");
    assert_eq!(sum(&http.finished), 1, "{http:?}");
    let out = support::run(&["report", path.to_str().unwrap()]);
    out.assert_code(0);
    assert!(
        out.stdout.contains("1 requests, 1 finished") && !out.stdout.contains("still running"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_is_in_the_stopping_inventory_as_an_upgraded_connection() {
    let (_dir, path, mut demo) =
        recording_demo("websocket", "flight.json", &["--drain-delay", "100ms"]).await;
    let mut ws = TcpStream::connect(demo.addr).await.expect("connecting");
    let local = ws.local_addr().expect("the client's address");
    ws.write_all(b"GET /ws HTTP/1.1\r\nhost: demo\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .expect("sending the upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout(BOUND, ws.read(&mut byte))
            .await
            .expect("the response head")
            .expect("reading the response head");
        assert!(n > 0, "closed before the response head: {head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    demo.signal(Signal::SIGTERM);
    // The server's close frame (1001) at Stopping, answered as a browser
    // does; then the demo exits.
    let mut close = [0u8; 4];
    timeout(BOUND, ws.read_exact(&mut close))
        .await
        .expect("a close frame")
        .expect("reading the close frame");
    assert_eq!(close[0], 0x88, "a close frame: {close:?}");
    let mut rest = vec![0u8; usize::from(close[1]) - 2];
    ws.read_exact(&mut rest)
        .await
        .expect("the close frame's reason");
    let code = 1001u16.to_be_bytes();
    ws.write_all(&[0x88, 0x82, 1, 2, 3, 4, code[0] ^ 1, code[1] ^ 2])
        .await
        .expect("answering the close frame");
    assert_eq!(exit_code(&mut demo).await, 0);

    // The upgraded connection left the connection's task, not the server:
    // the inventories name it, upgraded, where they name its work.
    let record = read_record(&path);
    let seen = stuck(&record, local);
    assert!(
        seen.iter()
            .any(|&(at, state)| at == "stopping" && state == "upgraded"),
        "{seen:?} in {:#?}",
        record.inventories
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_exit_in_human_output_still_says_its_report_and_the_work_it_cut() {
    let mut demo = Demo::start(
        &[
            "--output",
            "human",
            "--drain-delay",
            "20s",
            "--grace-period",
            "60s",
        ],
        Stdio::piped(),
    )
    .await;
    wait_readyz(demo.admin, 200).await;
    let (_conn, _peer) = open_stream(demo.addr).await;
    demo.signal(Signal::SIGTERM);
    wait_readyz(demo.admin, 503).await;
    demo.signal(Signal::SIGINT);
    assert_eq!(exit_code(&mut demo).await, 130);
    let mut stderr = String::new();
    demo.child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .await
        .expect("reading stderr");
    // The demo prints its report after every other shutdown; this one
    // ends from the signal thread, and still says it.
    assert!(
        stderr.contains(&format!("[pid {}] demo: shut down (SIGTERM)", demo.pid))
            && stderr.contains("forced by SIGINT (130)"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with("aborted:") && l.contains("GET /stream")),
        "the report names the stream it cut: {stderr}"
    );
}
