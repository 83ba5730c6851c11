//! lameduck: graceful shutdown, draining and zero-downtime restarts for tokio
//! services.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod app;
mod budget;
mod component;
mod context;
mod exit;
mod fmt;
mod health;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "axum")]
pub mod axum;
mod phase;
mod reason;
mod report;
mod restart;
mod tracker;

pub use app::{App, AppBuilder, AppHandle, BuildError, BuildErrorKind, DrainPolicy, RunFuture};
pub use budget::{
    Budget, BudgetError, BudgetErrorKind, Timeline, DEFAULT_CLOSE_TIMEOUT, DEFAULT_DRAIN_DELAY,
    DEFAULT_GRACE_PERIOD, DEFAULT_HARD_TIMEOUT, DEFAULT_LOG_FLUSH, MIN_SHUTDOWN_TIMEOUT,
};
pub use component::{BoxError, Component};
pub use context::Context;
pub use exit::ExitStatus;
pub use health::{Check, Health, Status};
pub use phase::Phase;
pub use reason::{ShutdownReason, Signal};
pub use report::{CloseOutcome, ComponentReport, Ending, PhaseTiming, Report, WorkReport};
pub use restart::{Restart, RestartPolicy, Strategy};
pub use tokio_util::sync::CancellationToken;
pub use tracker::{Tracker, WorkGuard, WorkItem};
