//! lameduck: graceful shutdown, draining and zero-downtime restarts for tokio
//! services.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod budget;
mod fmt;
mod tracker;

pub use budget::{
    Budget, BudgetError, BudgetErrorKind, Timeline, DEFAULT_CLOSE_TIMEOUT, DEFAULT_DRAIN_DELAY,
    DEFAULT_GRACE_PERIOD, DEFAULT_HARD_TIMEOUT, DEFAULT_LOG_FLUSH, MIN_SHUTDOWN_TIMEOUT,
};
pub use tracker::{Tracker, WorkGuard, WorkItem};
