//! The lifecycle metrics over a real admin listener: `/metrics` answers
//! through Closing, the shutdown waits for one scrape that saw the final
//! counts (and only when something scrapes), and the final values are
//! logged whatever happens.

mod http_support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http_support::{H1, connection_header, handler, text};
use lameduck::http::Server;
use lameduck::metrics::Metrics;
use lameduck::{App, AppHandle, Budget, BuildErrorKind, ExitStatus, Phase, Report};
use tokio::task::JoinHandle;

/// A bound on each wait, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(30);

/// Every log line of this test binary, as JSON.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_writer(move || Sink(writer.clone()))
            .try_init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines(app: &str) -> Vec<String> {
    String::from_utf8_lossy(&logs().lock().unwrap())
        .lines()
        .filter(|l| l.contains(&format!("\"app\":\"{app}\"")))
        .map(str::to_string)
        .collect()
}

struct Started {
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    handle: AppHandle,
    run: JoinHandle<Report>,
}

async fn start(name: &str, drain: Duration, metrics: &Metrics) -> Started {
    logs();
    let server = Server::bind("127.0.0.1:0", handler(|_req| async { text("hello\n") }))
        .unwrap()
        .admin("127.0.0.1:0")
        .unwrap();
    let (addr, admin) = (server.local_addr().unwrap(), server.admin_addr().unwrap());
    let app = App::builder(name.to_string())
        .budget(Budget::new(Duration::from_secs(600)).drain_delay(drain))
        .handle_signals(false)
        .exit_watchdog(false)
        .metrics(metrics)
        .component(server)
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    tokio::time::timeout(BOUND, handle.reached(Phase::Running))
        .await
        .expect("running");
    Started {
        addr,
        admin,
        handle,
        run,
    }
}

async fn scrape(admin: std::net::SocketAddr) -> String {
    let mut client = H1::connect(admin).await;
    let resp = client.get("/metrics").await.expect("/metrics answers");
    assert_eq!(resp.status(), 200);
    String::from_utf8(resp.into_body().to_vec()).unwrap()
}

/// The value of the sample `series` (name and labels, as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn answered(text: &str, phase: &str) -> f64 {
    sample(
        text,
        &format!(
            "lameduck_http_requests_total{{component=\"http\",phase=\"{phase}\",outcome=\"answered\"}}"
        ),
    )
    .unwrap_or_else(|| panic!("no answered count for {phase} in:\n{text}"))
}

#[tokio::test]
async fn metrics_answer_through_closing_and_the_final_scrape_sees_every_answered_request() {
    // A long wait: the scrape below ends it, or the test's bound does.
    let metrics = Metrics::new().final_scrape(Duration::from_secs(300));
    let s = start("scraped", Duration::from_millis(500), &metrics).await;
    let mut client = H1::connect(s.addr).await;
    for _ in 0..5 {
        client.get("/").await.unwrap();
    }
    // Prometheus asks for OpenMetrics.
    let (mut socket, head) = http_support::raw_request(
        s.admin,
        b"GET /metrics HTTP/1.1\r\nhost: t\r\naccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    let mut before = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut socket, &mut before)
        .await
        .unwrap();
    assert!(
        before.contains("# HELP lameduck_http_requests "),
        "{before}"
    );
    assert!(before.ends_with("# EOF\n"), "{before}");
    assert_eq!(answered(&before, "running"), 5.0, "{before}");

    s.handle.shutdown("test");
    tokio::time::timeout(BOUND, s.handle.reached(Phase::Draining))
        .await
        .unwrap();
    // Answered while draining: each says so by closing its connection.
    let mut while_draining = 0;
    for _ in 0..3 {
        let mut c = H1::connect(s.addr).await;
        let resp = c.get("/").await.unwrap();
        if connection_header(&resp) == Some("close") {
            while_draining += 1;
        }
    }

    tokio::time::timeout(BOUND, s.handle.reached(Phase::Closing))
        .await
        .unwrap();
    let last = scrape(s.admin).await;
    assert_eq!(
        sample(&last, "lameduck_phase{phase=\"closing\"}"),
        Some(1.0),
        "{last}"
    );
    assert_eq!(
        answered(&last, "draining"),
        f64::from(while_draining),
        "{last}"
    );
    let total: f64 = ["running", "draining", "stopping"]
        .iter()
        .map(|p| answered(&last, p))
        .sum();
    assert_eq!(total, 8.0, "{last}");
    assert_eq!(
        sample(
            &last,
            "lameduck_shutdown_work{outcome=\"in_flight_at_stop\"}"
        ),
        Some(0.0),
        "{last}"
    );
    assert!(
        sample(&last, "lameduck_shutdown_phase_seconds{phase=\"draining\"}").is_some(),
        "{last}"
    );

    let report = tokio::time::timeout(BOUND, s.run)
        .await
        .expect("Closing goes on once the final scrape is served")
        .unwrap();
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    let lines = log_lines("scraped");
    assert!(
        lines.iter().any(|l| l.contains("final scrape served")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn with_no_scraper_the_final_values_are_logged_and_closing_does_not_wait() {
    let metrics = Metrics::new().final_scrape(Duration::from_secs(300));
    let s = start("unscraped", Duration::ZERO, &metrics).await;
    let mut client = H1::connect(s.addr).await;
    for _ in 0..2 {
        client.get("/").await.unwrap();
    }
    drop(client);
    s.handle.shutdown("test");
    let report = tokio::time::timeout(BOUND, s.run)
        .await
        .expect("nothing ever scraped: no wait")
        .unwrap();
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
    let lines = log_lines("unscraped");
    let values = lines
        .iter()
        .find(|l| l.contains("\"final metrics\""))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        values.contains(
            r#"lameduck_http_requests_total{component=\"http\",phase=\"running\",outcome=\"answered\"} 2"#
        ),
        "{values}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("nothing has scraped /metrics yet")),
        "{lines:#?}"
    );
}

#[test]
fn the_final_scrape_timeout_comes_from_one_place() {
    let wait = Duration::from_secs(16);
    let app = App::builder("one")
        .metrics(&Metrics::new().final_scrape(wait))
        .build()
        .unwrap();
    assert_eq!(app.timeline().final_scrape_timeout, wait);

    let err = App::builder("twice")
        .budget(Budget::default().final_scrape_timeout(wait))
        .metrics(&Metrics::new().final_scrape(wait))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), BuildErrorKind::TimeoutSetTwice);
    assert!(err.to_string().contains("set twice"), "{err}");

    let err = App::builder("none")
        .budget(Budget::default().final_scrape_timeout(wait))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), BuildErrorKind::FinalScrapeWithoutMetrics);

    let shared = Metrics::new();
    let _first = App::builder("first").metrics(&shared).build().unwrap();
    let err = App::builder("second").metrics(&shared).build().unwrap_err();
    assert_eq!(err.kind(), BuildErrorKind::MetricsTaken);
}
