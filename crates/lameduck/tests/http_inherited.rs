//! A socket another process answers on until this app is Running (the
//! parent of an upgrade, systemd): the server accepts on it only once the
//! app is Running, so that a probe waits in the kernel's queue rather than
//! hear the 503 of an app still Starting — also when the socket is no
//! longer shared by the time the server first runs (the parent of an
//! upgrade committed to this process between its ready report and the
//! server's first poll).
#![cfg(feature = "http")]

mod http_support;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http_support::{H1, budget, handler, text};
use lameduck::http::{Listener, Server};
use lameduck::{App, AppHandle, Component, Phase};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(60);

/// A socket handed in by another process that has already handed it over:
/// not shared any more, but inherited.
struct Inherited {
    inner: TcpListener,
    /// The app's phase at each call of `accept`.
    phases: Arc<Mutex<Vec<Phase>>>,
    app: Arc<OnceLock<AppHandle>>,
    /// Told when the server's admin listener first asks for the address,
    /// the first thing it does when it starts.
    started: Arc<Notify>,
}

impl Listener for Inherited {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let phase = self.app.get().map_or(Phase::Starting, AppHandle::phase);
        self.phases.lock().unwrap().push(phase);
        self.inner.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.started.notify_one();
        self.inner.local_addr()
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn is_inherited(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_admin_socket_is_not_accepted_on_before_the_app_is_running() {
    inherited_socket_waits_for_running(Port::Admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inherited_service_socket_is_not_accepted_on_before_the_app_is_running() {
    inherited_socket_waits_for_running(Port::Service).await;
}

#[derive(Clone, Copy, Debug)]
enum Port {
    Admin,
    Service,
}

async fn inherited_socket_waits_for_running(port: Port) {
    let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = inner.local_addr().unwrap();
    let phases = Arc::new(Mutex::new(Vec::new()));
    let app_cell = Arc::new(OnceLock::new());
    let started = Arc::new(Notify::new());
    let listener = Inherited {
        inner,
        phases: phases.clone(),
        app: app_cell.clone(),
        started: started.clone(),
    };
    let service = handler(|_| async { text("hi") });
    let server: lameduck::Component = match port {
        Port::Admin => Server::bind("127.0.0.1:0", service)
            .unwrap()
            .admin_listener(listener)
            .into(),
        Port::Service => Server::new(listener, service).into(),
    };
    // The app stays Starting until this component is told to be ready.
    let release = Arc::new(Notify::new());
    let app = App::builder("inherited")
        .budget(budget(Duration::ZERO, LONG, LONG))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(server)
        .component(Component::new("slow-start", {
            let release = release.clone();
            move |ctx| {
                let release = release.clone();
                async move {
                    release.notified().await;
                    ctx.ready();
                    ctx.on_stopping().await;
                    Ok(())
                }
            }
        }))
        .build()
        .expect("valid app");
    let handle = app.handle();
    let _ = app_cell.set(handle.clone());
    let run = tokio::spawn(app.run());

    // A client that connects while the app is Starting: the kernel
    // completes the handshake and queues it.
    tokio::time::timeout(LONG, started.notified())
        .await
        .expect("the server started");
    let mut early = H1::connect(addr).await;
    assert_eq!(handle.phase(), Phase::Starting);
    release.notify_one();
    let path = match port {
        Port::Admin => "/readyz",
        Port::Service => "/",
    };
    let resp = tokio::time::timeout(LONG, early.get(path))
        .await
        .expect("answered")
        .expect("a response");
    assert_eq!(resp.status(), 200, "{port:?}: answered once Running");
    let seen = phases.lock().unwrap().clone();
    assert!(!seen.is_empty(), "{port:?}: the server accepted");
    assert!(
        seen.iter().all(|p| *p >= Phase::Running),
        "{port:?}: accept was called while the app was {seen:?}"
    );

    handle.shutdown("test");
    let report = run.await.expect("the app's task");
    assert_eq!(report.status(), lameduck::ExitStatus::Clean);
}
