//! The log lines: each lifecycle event as one structured `tracing` event
//! (target `lameduck`; the report's is `lameduck::report`).

use std::sync::Arc;

use super::{Event, Observer};
use crate::fmt::Seconds;
use crate::report::{CloseOutcome, Deadline};

pub(super) struct Log {
    app: Arc<str>,
}

impl Log {
    pub(super) fn new(app: Arc<str>) -> Self {
        Self { app }
    }
}

impl Observer for Log {
    fn on_event(&self, event: &Event<'_>) {
        let app = &*self.app;
        match *event {
            Event::Starting { components, .. } => {
                tracing::info!(target: "lameduck", app = %app, phase = "starting", components, "phase changed");
            }
            Event::PhaseChanged {
                from,
                to,
                cause,
                since_shutdown,
                ..
            } => {
                tracing::info!(target: "lameduck", app = %app, phase = %to, from = %from, cause = %cause, since_shutdown_ms = since_shutdown.as_millis() as u64, "phase changed");
            }
            Event::ComponentStarted { component, attempt } => {
                tracing::info!(target: "lameduck", app = %app, component = %component, attempt, "component started");
            }
            Event::ComponentReady { component, attempt } => {
                tracing::info!(target: "lameduck", app = %app, component = %component, attempt, "component ready");
            }
            Event::ComponentExited {
                component,
                attempt,
                error: None,
            } => {
                tracing::info!(target: "lameduck", app = %app, component = %component, attempt, "component finished");
            }
            Event::ComponentExited {
                component,
                attempt,
                error: Some(error),
            } => {
                tracing::warn!(target: "lameduck", app = %app, component = %component, attempt, error = %error, "component failed");
            }
            Event::ComponentRestarting {
                component,
                restarts,
                delay,
            } => {
                tracing::info!(target: "lameduck", app = %app, component = %component, restarts, delay_ms = delay.as_millis() as u64, "component restarting in {}", Seconds(delay));
            }
            Event::DeadlinePassed {
                deadline,
                work,
                held,
            } => {
                let held_up = || {
                    for h in held {
                        tracing::warn!(target: "lameduck", app = %app, component = %h.component, deadline = %h.deadline, held_by = %h.what, "shutdown held up");
                    }
                };
                match deadline {
                    Deadline::ShutdownTimeout => {
                        for w in work {
                            tracing::warn!(target: "lameduck", app = %app, tracker = %w.tracker, work = %w.label, age_ms = w.age.as_millis() as u64, "cancelling work still in flight");
                        }
                        held_up();
                    }
                    _ => {
                        held_up();
                        for w in work {
                            tracing::error!(target: "lameduck", app = %app, tracker = %w.tracker, work = %w.label, age_ms = w.age.as_millis() as u64, "aborting work still in flight at the hard deadline");
                        }
                    }
                }
            }
            Event::Closed { name, outcome } => match outcome {
                CloseOutcome::Closed(d) => {
                    tracing::info!(target: "lameduck", app = %app, component = %name, close_ms = d.as_millis() as u64, "component closed");
                }
                CloseOutcome::Failed(e) => {
                    tracing::error!(target: "lameduck", app = %app, component = %name, error = %e, "component close failed");
                }
                CloseOutcome::TimedOut(d) => {
                    tracing::error!(target: "lameduck", app = %app, component = %name, timeout_ms = d.as_millis() as u64, "component close timed out");
                }
                _ => {}
            },
            Event::DrainEnded { drain } => {
                tracing::info!(
                    target: "lameduck",
                    app = %app,
                    ended = %drain.ended,
                    lasted_ms = drain.lasted.as_millis() as u64,
                    quiet_needed_ms = drain.quiet_needed.map(|d| d.as_millis() as u64),
                    last_traffic_ms = drain.last_traffic.map(|d| d.as_millis() as u64),
                    // Nothing to count when no listener reports traffic.
                    arrivals = drain.watched.then_some(drain.arrivals),
                    "drain ended: {drain}"
                );
            }
            // The change to Draining said it, and the drain's end says how
            // it went.
            Event::DrainStarted { .. } => {}
            Event::Report(report) => report.log(),
            // The report says it.
            Event::WorkSettled { .. } => {}
            // Logged where they happen, with details the event leaves out.
            Event::UpgradeStarted { .. }
            | Event::UpgradeStep { .. }
            | Event::UpgradeSucceeded { .. }
            | Event::UpgradedInPlace { .. }
            | Event::UpgradeFailed { .. }
            | Event::UpgradeAbandoned { .. } => {}
        }
    }
}
