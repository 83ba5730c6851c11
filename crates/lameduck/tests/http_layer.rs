//! The tower layer in a server loop of one's own: requests are tracked,
//! HTTP/1 responses say `Connection: close` while draining, and a request
//! still waiting at the cancel signal gets a 503.
#![cfg(feature = "http")]

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http_support::{H1, budget, connection_header, handler, text};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use lameduck::http::{Cancel, DrainLayer};
use lameduck::{App, Component, ExitStatus, Phase};
use tokio::sync::Notify;
use tower_layer::Layer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_rolled_server_gets_the_per_request_sequence_from_the_layer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Arc::new(Notify::new());
    let service = {
        let started = started.clone();
        handler(move |req| {
            let started = started.clone();
            async move {
                if req.uri().path() == "/hang" {
                    assert!(Cancel::current().is_some());
                    started.notify_one();
                    std::future::pending::<()>().await;
                }
                text("hi")
            }
        })
    };
    let mut listener = Some(listener);
    let component = Component::new("own", move |ctx| {
        let listener = listener.take().expect("runs once");
        let service = service.clone();
        async move {
            let service = DrainLayer::new(&ctx).layer(service);
            ctx.ready();
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    () = ctx.on_stopping() => break,
                    Ok((io, _)) = listener.accept() => {
                        let service = TowerToHyperService::new(service.clone());
                        conns.spawn(async move {
                            let builder = auto::Builder::new(TokioExecutor::new());
                            let _ = builder.serve_connection(TokioIo::new(io), service).await;
                        });
                    }
                }
            }
            while conns.join_next().await.is_some() {}
            Ok(())
        }
    });
    let app = App::builder("layer")
        .budget(budget(
            Duration::from_secs(60),
            Duration::from_millis(200),
            Duration::from_secs(60),
        ))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(component)
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;

    let mut keep_alive = H1::connect(addr).await;
    assert_eq!(connection_header(&keep_alive.get("/").await.unwrap()), None);
    let mut hung = H1::connect(addr).await;
    let hang = tokio::spawn(async move { hung.get("/hang").await });
    started.notified().await;

    handle.shutdown("test");
    handle.reached(Phase::Draining).await;
    let mut told = false;
    for _ in 0..1000 {
        if connection_header(&keep_alive.get("/").await.unwrap()) == Some("close") {
            told = true;
            break;
        }
    }
    assert!(told, "no Connection: close while draining");

    // The 503 at the cancel signal is the next test's; with a drain delay of
    // a minute, stop the app here rather than wait for it.
    run.abort();
    let _ = hang.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_answers_503_at_the_cancel_signal_and_the_report_names_the_request() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Arc::new(Notify::new());
    let service = {
        let started = started.clone();
        handler(move |_| {
            let started = started.clone();
            async move {
                started.notify_one();
                std::future::pending::<()>().await;
                text("never")
            }
        })
    };
    let mut listener = Some(listener);
    let component = Component::new("own", move |ctx| {
        let listener = listener.take().expect("runs once");
        let service = service.clone();
        async move {
            let service = DrainLayer::new(&ctx).layer(service);
            ctx.ready();
            let (io, _) = listener.accept().await?;
            drop(listener);
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
                .await;
            Ok(())
        }
    });
    let app = App::builder("layer")
        .budget(budget(
            Duration::ZERO,
            Duration::from_millis(200),
            Duration::from_millis(200),
        ))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(component)
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    let mut client = H1::connect(addr).await;
    let request = tokio::spawn(async move { client.get("/slow").await });
    started.notified().await;
    handle.shutdown("test");

    let resp = request.await.unwrap().expect("a 503, not a reset");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let report = run.await.unwrap();
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    assert!(
        report.work.cancelled.iter().any(|w| w.label == "GET /slow"),
        "{report}"
    );
}
