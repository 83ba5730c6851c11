//! The engine behind `lameduck drill`: load a server, signal it at a chosen
//! moment, account for every request, and give a verdict fit for CI.
//!
//! ```no_run
//! use std::time::Duration;
//! use lameduck_drill::{Drill, DrillConfig, ServerSpec, Signal, SignalPlan};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = DrillConfig::new("http://127.0.0.1:8080/")?;
//! config.ready_url = Some("http://127.0.0.1:8080/readyz".parse()?);
//! config.server = ServerSpec::Spawn { program: "./my-server".into(), args: vec![], log: None };
//! config.duration = Duration::from_secs(10);
//! config.signal = Some(SignalPlan::once(Signal::TERM, Duration::from_secs(3)));
//!
//! let report = Drill::new(config)?.run().await?;
//! println!("{}", report.summary());
//! std::fs::write("drill.json", report.to_json())?;
//! std::fs::write("drill.html", report.to_html())?;
//! std::process::exit(if report.verdict.pass { 0 } else { 1 });
//! # }
//! ```
//!
//! # What it measures
//!
//! Every request gets exactly one record: when it started, when it ended,
//! and its [`Outcome`] (ok, 503 after the signal, other 5xx, refused, reset,
//! incomplete, timeout). Once the drill is over, each request is placed
//! relative to the first signal, the listener closing (the first refused
//! connect after the signal) and the signalled process's exit, and the
//! [`Report`] counts them by window, measures latency by phase, lists the
//! readiness changes and the drain notices keep-alive clients saw
//! (`Connection: close`, GOAWAY), and gives a [`Verdict`](report::Verdict)
//! whose conditions depend on the [`Expectation`].
//!
//! The JSON form of the report is the stable schema
//! [`lameduck.drill/v1`](report::SCHEMA); the HTML form is a self-contained
//! page with a timeline.
//!
//! # The server's side
//!
//! With [`DrillConfig::flight_record`], the drill reads the target's
//! flight record once it is over (waiting at most [`FLIGHT_RECORD_WAIT`]
//! for one written after the load started) and puts the server's phases,
//! drain and stuck work on the drill's own timeline, aligned by this host's
//! wall clock: [`Report::server`]. [`report::ServerRecord`] also renders a
//! record alone ([`ServerRecord::to_html`](report::ServerRecord::to_html)),
//! as `lameduck report --html` does.
//!
//! # Platform
//!
//! Unix only (it signals processes); finding the process that holds a
//! listening socket after a restart reads Linux's `/proc`.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `testing` | [`testing`]: servers that misbehave on purpose, to test the drill |

#![warn(missing_docs)]
// docs.rs marks the items behind the feature `testing` (see the lameduck crate).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod analysis;
mod client;
mod config;
mod dial;
mod drill;
mod error;
mod events;
mod flight;
mod html;
mod human;
mod load;
mod outcome;
mod probe;
mod process;
mod procfs;
mod progress;
mod record;
pub mod report;
mod signal;
mod summary;
#[cfg(feature = "testing")]
pub mod testing;
mod verdict;

pub use config::{
    ConfigError, ConnectionMode, DrillConfig, Expectation, GrpcCall, HttpVersion, Load,
    MAX_DURATION, RequestSpec, ServerSpec, SignalPlan, Trust,
};
pub use drill::Drill;
pub use error::DrillError;
pub use flight::FLIGHT_RECORD_WAIT;
pub use outcome::Outcome;
pub use progress::{Progress, Snapshot, Stage};
pub use report::Report;
pub use signal::{ParseSignalError, Signal};
pub use summary::Summary;
