//! Cancelling: at the shutdown timeout handlers see the cancel signal, a
//! request with no response yet gets a clean 503, and what still runs at the
//! hard deadline is aborted and named in the report.
#![cfg(feature = "http")]

mod http_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_support::{H1, Running, budget, connection_header, handler, text};
use lameduck::http::Cancel;
use lameduck::{Ending, ExitStatus, Phase};
use tokio::sync::Notify;

fn short() -> lameduck::Budget {
    budget(
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_millis(300),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_handler_gets_the_cancel_signal_its_client_a_503_and_it_is_aborted_and_named_at_the_hard_deadline()
 {
    let started = Arc::new(Notify::new());
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let service = {
        let (started, saw_cancel) = (started.clone(), saw_cancel.clone());
        handler(move |req| {
            let (started, saw_cancel) = (started.clone(), saw_cancel.clone());
            // In the service's call.
            let cancel = Cancel::current().expect("the server gives Cancel to the call");
            let _ = req;
            async move {
                started.notify_one();
                cancel.cancelled().await;
                saw_cancel.store(true, Ordering::SeqCst);
                // Ignores the signal from here on.
                std::future::pending::<()>().await;
                text("never")
            }
        })
    };
    let mut app = Running::start(short(), service, |s| s).await;
    let mut client = H1::connect(app.addr).await;
    let request = tokio::spawn(async move { client.get("/hang?secret=1").await });
    started.notified().await;
    app.handle.shutdown("test");

    let resp = request.await.unwrap().expect("a response, not a reset");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(connection_header(&resp), Some("close"));
    assert!(app.handle.phase() >= Phase::Cancelling);

    let report = app.report().await;
    assert!(
        saw_cancel.load(Ordering::SeqCst),
        "the handler never saw the cancel signal"
    );
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    let named = |items: &[lameduck::WorkItem]| items.iter().any(|w| w.label == "GET /hang");
    assert!(named(&report.work.cancelled), "{report}");
    assert!(named(&report.work.aborted), "{report}");
    // The query never reaches the report: it can carry credentials.
    assert!(!report.to_string().contains("secret"), "{report}");
    assert_eq!(
        report.component("http").unwrap().ended,
        Ending::Aborted,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_heeds_the_cancel_signal_answers_for_itself() {
    let started = Arc::new(Notify::new());
    let service = {
        let started = started.clone();
        handler(move |req| {
            let started = started.clone();
            let _ = req;
            async move {
                // In the response future.
                let cancel = Cancel::current().expect("the server gives Cancel to the future");
                started.notify_one();
                tokio::select! {
                    () = std::future::pending::<()>() => text("never"),
                    () = cancel.cancelled() => text("partial"),
                }
            }
        })
    };
    let mut app = Running::start(short(), service, |s| s).await;
    let mut client = H1::connect(app.addr).await;
    let request = tokio::spawn(async move { client.get("/report").await });
    started.notified().await;
    app.handle.shutdown("test");

    let resp = request.await.unwrap().unwrap();
    assert_eq!(
        (resp.status().as_u16(), &resp.body()[..]),
        (200, &b"partial"[..])
    );
    assert_eq!(connection_header(&resp), Some("close"));
    let report = app.report().await;
    // Cancelled, but finished before the hard deadline: nothing aborted.
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    assert!(
        report
            .work
            .cancelled
            .iter()
            .any(|w| w.label == "GET /report"),
        "{report}"
    );
    assert!(report.work.aborted.is_empty(), "{report}");
    assert_eq!(
        report.component("http").unwrap().ended,
        Ending::Finished,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_finishing_in_the_background_after_its_503_still_finds_its_cancel() {
    let started = Arc::new(Notify::new());
    let go = Arc::new(Notify::new());
    let (found_tx, found_rx) = tokio::sync::oneshot::channel();
    let found_tx = Arc::new(std::sync::Mutex::new(Some(found_tx)));
    let service = {
        let (started, go) = (started.clone(), go.clone());
        handler(move |_req| {
            let (started, go, found_tx) = (started.clone(), go.clone(), found_tx.clone());
            async move {
                let cancel = Cancel::current().expect("the server gives Cancel to the future");
                started.notify_one();
                cancel.cancelled().await;
                // Its client has had the 503: this runs in the background.
                go.notified().await;
                let found = Cancel::current().is_some_and(|c| c.is_cancelled());
                if let Some(tx) = found_tx.lock().unwrap().take() {
                    let _ = tx.send(found);
                }
                text("too late")
            }
        })
    };
    let long_hard = budget(
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_secs(30),
    );
    let mut app = Running::start(long_hard, service, |s| s).await;
    let mut client = H1::connect(app.addr).await;
    let request = tokio::spawn(async move { client.get("/slow").await });
    started.notified().await;
    app.handle.shutdown("test");

    let resp = request.await.unwrap().expect("a response, not a reset");
    assert_eq!(resp.status(), 503);
    go.notify_one();
    // Bounded: the hard deadline aborts the handler, which drops the sender.
    let found = found_rx.await.expect("the handler ran on after its 503");
    assert!(found, "the handler lost its Cancel in the background");
    let report = app.report().await;
    assert!(report.work.aborted.is_empty(), "{report}");
}
