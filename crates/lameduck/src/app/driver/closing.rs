//! Closing: each resource in reverse dependency order, then the flushes.

use tokio::time::Instant;

use super::Driver;
use crate::report::CloseOutcome;
use crate::{ExitStatus, Signal};

impl Driver {
    /// Runs every close in reverse dependency order, each bounded by its
    /// timeout. A second signal interrupts and is returned; other events are
    /// handled as in any phase (an upgrade request is refused).
    pub(super) async fn close_all(&mut self) -> Result<(), Signal> {
        for k in (0..self.order.len()).rev() {
            let i = self.order[k];
            let Some(close) = self.slots[i].close.take() else {
                continue;
            };
            // Resolved at build, in one place: every component with a close
            // has its timeout in the timeline.
            let timeout = self
                .timeline
                .close_timeout(&self.slots[i].name)
                .unwrap_or(crate::DEFAULT_CLOSE_TIMEOUT);
            let started = Instant::now();
            // A task of its own, so that a panic in the close is caught like
            // a panic in a run.
            let task = tokio::spawn(close());
            let abort = task.abort_handle();
            let close = tokio::time::timeout(timeout, task);
            tokio::pin!(close);
            let outcome = loop {
                tokio::select! {
                    biased;
                    Some(event) = self.events.recv() => {
                        if let Some(sig) = self.on_event(event) {
                            abort.abort();
                            return Err(sig);
                        }
                    }
                    r = &mut close => break match r {
                        Ok(Ok(Ok(()))) => CloseOutcome::Closed(started.elapsed()),
                        Ok(Ok(Err(e))) => CloseOutcome::Failed(e.to_string()),
                        Ok(Err(e)) if e.is_panic() => CloseOutcome::Failed(format!("panicked: {}", super::panic_message(e.into_panic()))),
                        Ok(Err(_)) => CloseOutcome::Failed("aborted".into()),
                        Err(_) => {
                            abort.abort();
                            CloseOutcome::TimedOut(timeout)
                        }
                    },
                }
            };
            let name = &self.slots[i].name;
            match &outcome {
                CloseOutcome::Closed(d) => {
                    tracing::info!(target: "lameduck", app = %self.handle.name(), component = %name, close_ms = d.as_millis() as u64, "component closed");
                }
                CloseOutcome::Failed(e) => {
                    self.status = self.status.worst(ExitStatus::ComponentFailed);
                    tracing::error!(target: "lameduck", app = %self.handle.name(), component = %name, error = %e, "component close failed");
                }
                CloseOutcome::TimedOut(d) => {
                    self.status = self.status.worst(ExitStatus::DeadlineExceeded);
                    tracing::error!(target: "lameduck", app = %self.handle.name(), component = %name, timeout_ms = d.as_millis() as u64, "component close timed out");
                }
                CloseOutcome::None => {}
            }
            self.slots[i].closed = Some(outcome);
        }
        Ok(())
    }

    /// Runs the flushes, bounded by the budget's log flush time.
    pub(super) async fn flush(&mut self) {
        if !self.finish.flush().await {
            eprintln!(
                "lameduck: {}: the final flush did not finish within {:?}",
                self.handle.name(),
                self.timeline.log_flush
            );
        }
    }
}
