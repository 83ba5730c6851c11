//! lameduck makes a tokio service stop, restart and roll over without
//! dropping work.
//!
//! A service is an [`App`] of named [`Component`]s — an HTTP server, a queue
//! consumer, a database pool — with dependencies between them. On `SIGTERM`
//! (or `SIGINT`, or [`AppHandle::shutdown`], or a component that keeps
//! failing) the app walks the shutdown sequence:
//!
//! 1. **Draining** — readiness turns false at once, but everything keeps
//!    serving for the drain delay, while load balancers catch up.
//! 2. **Stopping** — components get their stop signal in reverse dependency
//!    order (the database pool outlives the HTTP server that uses it);
//!    in-flight work, counted by each component's [`Tracker`], finishes
//!    within the shutdown timeout.
//! 3. **Cancelling** — what is left gets its cancel signal (the stop
//!    signals keep their order: the pool still outlives the handlers being
//!    cancelled), and is aborted and named in the [`Report`] at the hard
//!    deadline.
//! 4. **Closing** — resources close in reverse dependency order, each with
//!    its own timeout; logs flush last.
//!
//! A second signal forces the exit. Every deadline comes from one number, the
//! orchestrator's grace period, split by the [`Budget`]; a budget whose
//! phases do not fit is rejected at start-up, with the arithmetic.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use lameduck::{App, Budget, Component};
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let app = App::builder("orders")
//!         .budget(Budget::new(Duration::from_secs(30)).drain_delay(Duration::from_secs(5)))
//!         .component(
//!             Component::new("db", |ctx| async move {
//!                 // connect the pool, then:
//!                 ctx.ready();
//!                 ctx.on_stopping().await;
//!                 Ok(())
//!             })
//!             .on_close(|| async {
//!                 // close the pool: runs after every component has stopped
//!                 Ok(())
//!             }),
//!         )
//!         .component(
//!             Component::new("worker", |ctx| async move {
//!                 ctx.ready();
//!                 loop {
//!                     tokio::select! {
//!                         _ = ctx.on_stopping() => return Ok(()),
//!                         _ = tokio::time::sleep(Duration::from_millis(100)) => {
//!                             let _job = ctx.tracker().track("job");
//!                             // ... a job that the shutdown waits for
//!                         }
//!                     }
//!                 }
//!             })
//!             .depends_on("db"),
//!         )
//!         .build();
//!     match app {
//!         Ok(app) => app.await.exit_code(),
//!         Err(err) => {
//!             eprintln!("orders: {err}");
//!             err.exit_status().into()
//!         }
//!     }
//! }
//! ```
//!
//! # The signal contract
//!
//! | signal | while | behaviour |
//! |---|---|---|
//! | `SIGTERM` | running | drain for the drain delay, then stop, cancel, close; exit 0 when clean |
//! | `SIGINT` | running, stdin not a terminal | as `SIGTERM` |
//! | `SIGINT` | running, stdin a terminal | as `SIGTERM` but without the drain delay (Ctrl+C in development) |
//! | either | starting | skip the drain (never ready, nobody routes here), stop |
//! | either | shutting down for another reason (`shutdown()`, an upgrade's handover, a failed component) | join that shutdown: nothing is forced or cut; `SIGINT` from a terminal ends the drain delay |
//! | the same one again within [`SIGNAL_REPEAT_WINDOW`] (300 ms) | any | the same delivery (GNU `timeout`, systemd's `KillMode=control-group`): ignored |
//! | either, again | shutting down | abort what is left, log the report, flush logs, exit 128 + signal — from a plain thread, even while the runtime is blocked |
//! | either | after the report, the process still alive (dropping the runtime waits for a blocking read) | exit 128 + signal at once |
//! | `SIGHUP` (feature `upgrade`) | running | upgrade (module `upgrade`): start the new binary with the same sockets; once it is ready, commit to it, and once it has settled, drain and exit 0; if it fails, or dies before it settled, keep serving |
//!
//! [`AppBuilder::exit_on_force`] and [`AppBuilder::handle_signals`] hand
//! the forced exit, or every signal, back to the program. Exit codes are
//! listed in [`ExitStatus`]. The user guide in the
//! repository's `docs/` folder covers the sequence, the budget, Kubernetes
//! and systemd.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `http` | an HTTP server component for any `tower::Service` that drains per connection and per request, with probes |
//! | `axum` | axum glue: WebSocket going-away, extractors |
//! | `grpc` | `http::grpc`: the `grpc.health.v1` service (tonic-health) answered from the health registry, `NOT_SERVING` from the first instant of Draining; gRPC calls get gRPC statuses at the cancel signal (with or without this feature) |
//! | `tls` | HTTPS for the HTTP server (rustls, ring provider): certificates from PEM files, reloaded without a restart, ALPN `h2` and `http/1.1` |
//! | `systemd` | (Unix) module `systemd`: `READY`, `STOPPING`, `STATUS`, `EXTEND_TIMEOUT_USEC` and watchdog pings sent by the app itself; module `listen`: sockets from systemd socket activation |
//! | `metrics` | module `metrics`: lifecycle metrics (OpenMetrics) on the admin listener, the final scrape, a Pushgateway push (with `http`) |
//! | `logging` | module `logging`: a non-blocking log writer flushed last on every exit path, and a panic hook |
//! | `flight` | module `flight`: the flight record, a JSON file of every shutdown and upgrade (phases, the drain, the traffic, what was in flight at each deadline), written on every exit path |
//! | `upgrade` | (Unix) module `upgrade`: zero-downtime restarts on `SIGHUP`, `AppHandle::upgrade` or a control socket, the listening sockets handed to the new process (module `listen`), rollback, PID file, handover |
// docs.rs (nightly rustdoc, `--cfg docsrs`, every feature) marks each item
// behind a feature with a "crate feature" badge. `doc_auto_cfg` was merged
// into `doc_cfg` (Rust 1.92), which now does the marking by itself.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "http", all(unix, feature = "upgrade")))]
mod accept;
mod app;
#[cfg(feature = "axum")]
pub mod axum;
mod backlog;
mod budget;
mod component;
mod context;
mod exit;
#[cfg(feature = "flight")]
pub mod flight;
mod fmt;
mod health;
#[cfg(feature = "http")]
pub mod http;
#[cfg_attr(not(feature = "http"), allow(dead_code))]
mod inventory;
#[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
pub mod listen;
#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod observe;
mod phase;
mod reason;
mod reload;
mod report;
mod restart;
#[cfg(all(unix, feature = "systemd"))]
pub mod systemd;
mod tracker;
mod traffic;
#[cfg(all(unix, feature = "upgrade"))]
pub mod upgrade;

pub use app::{
    App, AppBuilder, AppHandle, BuildError, BuildErrorKind, DrainPolicy, RunFuture,
    SIGNAL_REPEAT_WINDOW,
};
pub use backlog::{MIN_LISTEN_BACKLOG, default_listen_backlog};
pub use budget::{
    Budget, BudgetError, BudgetErrorKind, DEFAULT_CLOSE_TIMEOUT, DEFAULT_DRAIN_DELAY,
    DEFAULT_DRAIN_QUIET, DEFAULT_GRACE_PERIOD, DEFAULT_HARD_TIMEOUT, DEFAULT_LOG_FLUSH,
    MIN_DRAIN_QUIET, MIN_SHUTDOWN_TIMEOUT, Timeline, default_drain_quiet,
};
pub use component::{BoxError, Component};
pub use context::Context;
pub use exit::{ExitStatus, ProgramExit};
pub use health::{Check, Health, Status};
pub use phase::Phase;
pub use reason::{ShutdownReason, Signal};
pub use reload::ReloadError;
pub use report::{
    AfterCancel, CloseOutcome, ComponentReport, Deadline, DrainEnd, DrainReport, Ending,
    ExporterReport, Holdup, PhaseTiming, Report, WorkReport,
};
pub use restart::{Restart, RestartPolicy, Strategy};
pub use tokio_util::sync::CancellationToken;
pub use tracker::{IdleFuture, Tracker, WorkGuard, WorkItem};
pub use traffic::{TRAFFIC_TICK, TrafficCounts};

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
