//! Draining: the server keeps accepting and serving, tells HTTP/1 keep-alive
//! clients `Connection: close` and HTTP/2 clients GOAWAY, and readiness is
//! false from the first instant.
#![cfg(feature = "http")]

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use http_support::{H1, H2, Running, budget, connection_header, handler, text};
use lameduck::Phase;
use tokio::sync::Notify;

/// Long enough that the test never sees Draining end on its own.
const LONG: Duration = Duration::from_secs(60);

/// The server learns of the drain a task hop after the app does; ask until
/// a response shows it, within a bound.
const ATTEMPTS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_get_connection_close_while_draining_and_new_clients_are_still_served() {
    let app = Running::start(
        budget(LONG, LONG, LONG),
        handler(|_| async { text("hi") }),
        |s| s,
    )
    .await;
    let mut client = H1::connect(app.addr).await;
    let before = client.get("/").await.unwrap();
    assert_eq!(before.status(), 200);
    assert_eq!(connection_header(&before), None, "no close while running");

    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    let mut told = false;
    for _ in 0..ATTEMPTS {
        // Each response before the close is a keep-alive one; the connection
        // must survive to the one that says close.
        let resp = client.get("/").await.expect("served while draining");
        assert_eq!(resp.status(), 200);
        if connection_header(&resp) == Some("close") {
            told = true;
            break;
        }
    }
    assert!(told, "no response carried Connection: close while draining");
    client
        .closed
        .await
        .unwrap()
        .expect("the server closed the connection cleanly");

    // Still draining, still accepting: a new client is served (and told).
    assert_eq!(app.handle.phase(), Phase::Draining);
    let mut fresh = H1::connect(app.addr).await;
    let resp = fresh
        .get("/")
        .await
        .expect("a new connection is served while draining");
    assert_eq!(resp.status(), 200);
    assert_eq!(connection_header(&resp), Some("close"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_get_goaway_while_draining_and_their_streams_in_flight_complete() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let service = {
        let (release, started) = (release.clone(), started.clone());
        handler(move |req| {
            let (release, started) = (release.clone(), started.clone());
            async move {
                if req.uri().path() == "/slow" {
                    started.notify_one();
                    release.notified().await;
                }
                text("done")
            }
        })
    };
    let app = Running::start(budget(LONG, LONG, LONG), service, |s| s).await;
    let mut client = H2::connect(app.addr).await;
    assert_eq!(client.request("/").await.unwrap().status(), 200);
    let slow = tokio::spawn(client.request("/slow"));
    started.notified().await;

    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    // GOAWAY: hyper's client connection ends once its last stream does,
    // without our closing the socket; the stream in flight completes.
    release.notify_one();
    let resp = slow.await.unwrap().expect("the stream in flight completes");
    assert_eq!(resp.body(), "done");
    client
        .closed
        .await
        .unwrap()
        .expect("the connection ends cleanly after GOAWAY");
    assert_eq!(
        app.handle.phase(),
        Phase::Draining,
        "GOAWAY came while draining"
    );

    // New connections are still accepted while draining.
    let mut fresh = H2::connect(app.addr).await;
    assert_eq!(fresh.request("/").await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_at_the_first_instant_of_draining_while_livez_stays_200() {
    let app = Running::start(
        budget(LONG, LONG, LONG),
        handler(|_| async { text("hi") }),
        |s| s.admin("127.0.0.1:0").unwrap(),
    )
    .await;
    let admin = app.admin.expect("admin listener");
    let mut probe = H1::connect(admin).await;
    let ready = probe.get("/readyz").await.unwrap();
    assert_eq!(
        (ready.status().as_u16(), &ready.body()[..]),
        (200, &b"ok\n"[..])
    );
    assert_eq!(probe.get("/startupz").await.unwrap().status(), 200);

    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    // No retry: readiness is false before anyone can see the phase change.
    let ready = probe.get("/readyz?verbose").await.unwrap();
    assert_eq!(ready.status(), 503);
    let body = String::from_utf8(ready.body().to_vec()).unwrap();
    assert!(body.contains("[-]phase failed: draining"), "{body}");
    assert_eq!(probe.get("/livez").await.unwrap().status(), 200);
    assert_eq!(probe.get("/startupz").await.unwrap().status(), 200);

    // The service itself still serves.
    let mut client = H1::connect(app.addr).await;
    assert_eq!(client.get("/").await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_mounted_on_the_main_listener_answer_ahead_of_the_service() {
    let app = Running::start(
        budget(LONG, LONG, LONG),
        handler(|_| async { text("service") }),
        |s| s.probes_on_main(),
    )
    .await;
    let mut client = H1::connect(app.addr).await;
    assert_eq!(&client.get("/readyz").await.unwrap().body()[..], b"ok\n");
    assert_eq!(
        &client.get("/livez/http").await.unwrap().body()[..],
        b"[+]http ok\nok\n"
    );
    assert_eq!(&client.get("/other").await.unwrap().body()[..], b"service");

    app.handle.shutdown("test");
    app.handle.reached(Phase::Draining).await;
    assert_eq!(client.get("/readyz").await.unwrap().status(), 503);
}
