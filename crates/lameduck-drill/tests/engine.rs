//! The engine in-process, as benchmarks use it: plain load drills (no
//! signal: signals are process-wide, and the CLI tests cover them with
//! server processes) against a test server on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use lameduck_drill::report::{ConditionStatus, SCHEMA};
use lameduck_drill::testing::{Mode, TargetConfig};
use lameduck_drill::{
    ConnectionMode, Drill, DrillConfig, DrillError, GrpcCall, HttpVersion, Load, Report,
};

/// One graceful test server for the whole binary.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| lameduck_drill::testing::start(TargetConfig::new(Mode::Graceful, 0)))
}

fn config(path: &str) -> DrillConfig {
    let mut config = DrillConfig::new(&format!("http://{}{path}", server())).expect("a valid URL");
    config.duration = Duration::from_millis(400);
    config.load = Load::Concurrency(4);
    config
}

async fn drill(config: DrillConfig) -> Report {
    Drill::new(config)
        .expect("a valid drill")
        .run()
        .await
        .expect("the drill runs")
}

fn assert_accounted(report: &Report) {
    let q = &report.requests;
    assert!(q.sent > 0);
    assert_eq!(q.sent, q.accounted);
    assert_eq!(q.total.total(), q.sent);
    let timeline: u64 = report
        .timeline
        .buckets
        .iter()
        .map(|b| b.outcomes.total())
        .sum();
    assert_eq!(timeline, q.sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_test_over_every_connection_mode_and_version_loses_nothing() {
    for http in [HttpVersion::Http1, HttpVersion::Http2] {
        for connections in [
            ConnectionMode::Keepalive,
            ConnectionMode::Fresh,
            ConnectionMode::Mixed,
        ] {
            let mut config = config("/");
            config.http = http;
            config.connections = connections;
            let report = drill(config).await;
            assert_accounted(&report);
            assert!(
                report.verdict.pass,
                "{http:?} {connections:?}\n{}",
                report.summary()
            );
            assert_eq!(report.requests.total.ok, report.requests.sent);
            assert_eq!(report.latency.all.count, report.requests.sent);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_rate_sends_exactly_its_schedule() {
    let mut config = config("/");
    config.load = Load::Rate {
        per_second: 100,
        max_in_flight: 50,
    };
    let report = drill(config).await;
    assert_accounted(&report);
    // Due at 0, 10, …, 390 ms: 40 requests, whatever the server does.
    assert_eq!(report.requests.sent, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readiness_endpoint_is_polled_and_stays_ready_without_a_signal() {
    let mut config = config("/");
    config.ready_url = Some(
        format!("http://{}/readyz", server())
            .parse()
            .expect("a URL"),
    );
    let report = drill(config).await;
    let readiness = &report.events.readiness;
    assert!(!readiness.is_empty());
    assert!(
        readiness
            .iter()
            .all(|change| change.ready && change.status == Some(200))
    );
    assert_eq!(report.events.readiness_flip_us, None);
    assert!(report.events.connect_probes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_statuses_fail_a_load_test_by_class() {
    for (path, class) in [
        ("/status/404", "other_status"),
        ("/status/503", "server_error"),
    ] {
        let mut config = config(path);
        config.ready_url = Some(
            format!("http://{}/readyz", server())
                .parse()
                .expect("a URL"),
        );
        let report = drill(config).await;
        assert_accounted(&report);
        assert!(!report.verdict.pass, "{path}");
        let total = serde_json::to_value(report.requests.total).expect("counts serialize");
        // A 503 with no signal sent is a plain server error, not draining.
        assert_eq!(
            total[class].as_u64(),
            Some(report.requests.sent),
            "{path}: {total}"
        );
        let sample = &report.failures.samples[0];
        assert!(sample.detail.starts_with("HTTP "), "{}", sample.detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_nobody_listens_on_is_a_setup_error_naming_the_last_answer() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("an address");
    drop(free);
    let mut config = DrillConfig::new(&format!("http://{addr}/")).expect("a valid URL");
    config.ready_timeout = Duration::from_millis(200);
    let err = Drill::new(config)
        .expect("a valid drill")
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, DrillError::NotReady { .. }), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_round_trips_exactly() {
    let report = drill(config("/")).await;
    assert_eq!(report.schema, SCHEMA);
    let json = report.to_json();
    let back = Report::from_json(&json).expect("the report reads back");
    assert_eq!(back, report);
    assert_eq!(back.to_json(), json);
    let other = json.replacen(SCHEMA, "lameduck.drill/v0", 1);
    let err = Report::from_json(&other).unwrap_err();
    assert!(err.to_string().contains("expected"), "{err}");
    let load = report
        .verdict
        .conditions
        .iter()
        .find(|c| c.name == "no_failures")
        .expect("a condition");
    assert_eq!(load.status, ConditionStatus::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_is_one_self_contained_page() {
    let report = drill(config("/")).await;
    let page = report.to_html();
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.trim_end().ends_with("</html>"));
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(
            !page.contains(external),
            "the page refers outside itself: {external}"
        );
    }
    assert!(page.contains("<svg") && page.contains("PASS") && page.contains("load end"));
}

/// A server that speaks HTTP/2 only, as gRPC servers may: each call of
/// `/t.S/Ok` answers `grpc-status: 0`, any other `grpc-status: 14` with a
/// percent-encoded message (trailers-only answers).
async fn grpc_only_server() -> SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service =
                hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                    let (code, message) = if req.uri().path() == "/t.S/Ok" {
                        ("0", "")
                    } else {
                        ("14", "going%20away")
                    };
                    let response = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .header("grpc-status", code)
                        .header("grpc-message", message)
                        .body(http_body_util::Empty::<bytes::Bytes>::new());
                    std::future::ready(response)
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_drill_waits_for_an_http2_only_server_with_a_call_and_sorts_calls_by_status() {
    let addr = grpc_only_server().await;
    let grpc = |method: &str| {
        let mut config = DrillConfig::new(&format!("http://{addr}/")).expect("a valid URL");
        config.duration = Duration::from_millis(300);
        config.load = Load::Concurrency(2);
        config.http = HttpVersion::Http2;
        config.grpc = Some(GrpcCall::new(method, &b""[..]).expect("a method"));
        config.ready_timeout = Duration::from_secs(5);
        config
    };
    // Ready by a call: an HTTP/1.1 GET would never be answered.
    let report = drill(grpc("t.S/Ok")).await;
    assert_accounted(&report);
    assert!(report.verdict.pass, "{}", report.summary());
    assert_eq!(report.requests.total.ok, report.requests.sent);
    assert_eq!(report.config.grpc.as_deref(), Some("t.S/Ok"));

    // A server that answers every call UNAVAILABLE is never ready, and the
    // error says what the last call got.
    let mut config = grpc("t.S/Down");
    config.ready_timeout = Duration::from_millis(200);
    let err = Drill::new(config)
        .expect("a valid drill")
        .run()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("gRPC UNAVAILABLE: going away"),
        "{err}"
    );
}
