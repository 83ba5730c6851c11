//! The adaptive drain behind a real server: requests that keep arriving
//! keep it going, probes on the main listener do not.
#![cfg(feature = "http")]

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http_support::{H1, Running, handler, text};
use lameduck::{Budget, Phase};

/// Far longer than any quiet the tests wait for: a drain that reaches it
/// has not seen the traffic stop.
const DRAIN_MAX: Duration = Duration::from_secs(30);

/// The bound on every wait, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(90);

fn adaptive() -> Budget {
    Budget::new(Duration::from_secs(600))
        .drain_max(DRAIN_MAX)
        .drain_quiet(Duration::from_millis(200))
}

/// `n` requests to `/`, one every 50 ms (a steady load, so that the
/// drain has traffic to judge a pause by), reconnecting whenever the server
/// closes the connection. Every one must be answered 200.
async fn steady(app: &Running, n: usize) {
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let mut client = H1::connect(app.addr).await;
    for i in 0..n {
        pace.tick().await;
        if client.send.is_closed() || client.closed.is_finished() {
            client = H1::connect(app.addr).await;
        }
        let resp = match client.get("/").await {
            Ok(resp) => resp,
            // Closed under the request by a `Connection: close` just read.
            Err(_) => {
                client = H1::connect(app.addr).await;
                client.get("/").await.expect("served on a new connection")
            }
        };
        assert_eq!(resp.status(), 200, "request {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_keep_arriving_keep_the_drain_going_until_they_stop() {
    let mut app = Running::start(adaptive(), handler(|_| async { text("hi") }), |s| s).await;
    steady(&app, 20).await;
    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    // A keep-alive client told `Connection: close` comes back on a new
    // connection: traffic, as long as it keeps coming.
    steady(&app, 20).await;
    let report = tokio::time::timeout(BOUND, app.report())
        .await
        .expect("the app stops");
    let drain = report.drain.clone().expect("a drain");
    assert!(drain.ended.is_quiet(), "{report}");
    assert!(drain.arrivals >= 20, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_traffic_on_the_main_listener_does_not_keep_the_drain_going() {
    let mut app = Running::start(adaptive(), handler(|_| async { text("hi") }), |s| {
        s.probes_on_main()
    })
    .await;
    steady(&app, 20).await;
    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    // A balancer's health checks, each on a new connection, as fast as
    // they go, until the drain ends.
    let stop = Arc::new(AtomicBool::new(false));
    let probes = Arc::new(AtomicU64::new(0));
    let prober = {
        let (stop, probes, addr) = (stop.clone(), probes.clone(), app.addr);
        let handle = app.handle.clone();
        tokio::spawn(async move {
            for _ in 0..1_000_000 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    return; // the listener closed: the drain is over
                };
                let mut probe = H1::over(stream).await;
                if let Ok(resp) = probe.get("/readyz").await
                    && handle.phase() == Phase::Draining
                {
                    assert_eq!(resp.status(), 503);
                    probes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let report = tokio::time::timeout(BOUND, app.report())
        .await
        .expect("the app stops");
    stop.store(true, Ordering::Relaxed);
    prober.await.unwrap();
    let drain = report.drain.clone().expect("a drain");
    assert!(
        probes.load(Ordering::Relaxed) > 0,
        "probes ran during the drain"
    );
    // Counted, the probes would have kept it going to drain_max.
    assert!(drain.ended.is_quiet(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_drain_counts_the_requests_it_served_and_never_says_none_came() {
    // A fixed drain with no flight record: no sampler runs, the counts are
    // read at the drain's start and end.
    let fixed = Budget::new(Duration::from_secs(600)).drain_delay(Duration::from_secs(2));
    let mut app = Running::start(fixed, handler(|_| async { text("hi") }), |s| s).await;
    steady(&app, 5).await;
    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    steady(&app, 10).await;
    let report = tokio::time::timeout(BOUND, app.report())
        .await
        .expect("the app stops");
    let drain = report.drain.clone().expect("a drain");
    assert!(drain.watched, "{report}");
    assert!(drain.arrivals >= 10, "{report}");
    let said = drain.to_string();
    assert!(!said.contains("no traffic seen"), "{said}");
    // Counted at its ends, not sampled: it says so, and how many came.
    assert!(!drain.sampled, "{report}");
    assert!(said.contains("traffic not sampled: "), "{said}");
    assert!(
        said.contains("arrivals counted between its start and end"),
        "{said}"
    );
}
