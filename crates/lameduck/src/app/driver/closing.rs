//! Closing: each resource in reverse dependency order, the final scrape,
//! each exporter's flush, then the log flush.

use std::time::Duration;

use tokio::time::Instant;

use super::Driver;
use crate::component::BoxFuture;
use crate::observe::Event as Observed;
use crate::report::{CloseOutcome, ExporterReport};
use crate::{BoxError, ExitStatus, Signal};

impl Driver {
    /// Runs every close in reverse dependency order, then the final scrape
    /// and the exporters' flushes, each bounded by its timeout. A second
    /// signal interrupts and is returned; other events are handled as in
    /// any phase (an upgrade request is refused).
    pub(super) async fn close_all(&mut self) -> Result<(), Signal> {
        for k in (0..self.order.len()).rev() {
            let i = self.order[k];
            let Some(close) = self.slots[i].close.take() else {
                continue;
            };
            let name = self.slots[i].name.clone();
            let outcome = self.close_one(&name, close()).await?;
            self.slots[i].closed = Some(outcome);
        }
        if let Some(step) = self.final_scrape.take() {
            let bound = self.timeline.final_scrape_timeout;
            let reason = self.trigger.as_ref().map(|(r, _)| r.clone());
            // Bounded inside (it keeps time for its push); the bound here
            // only catches a step that overruns it.
            let run = step(bound, reason);
            self.bounded(run, bound).await?;
        }
        for exporter in std::mem::take(&mut self.exporters) {
            let outcome = self.close_one(&exporter.name, (exporter.flush)()).await?;
            self.exported.push(ExporterReport {
                name: exporter.name,
                flush: outcome,
            });
        }
        Ok(())
    }

    /// Runs one close (a component's or an exporter's), bounded by its
    /// timeout from the timeline; says how it went, and lets the exit code
    /// say so too.
    async fn close_one(
        &mut self,
        name: &str,
        close: BoxFuture<Result<(), BoxError>>,
    ) -> Result<CloseOutcome, Signal> {
        // Resolved at build, in one place: every close has its timeout in
        // the timeline.
        let timeout = self
            .timeline
            .close_timeout(name)
            .unwrap_or(crate::DEFAULT_CLOSE_TIMEOUT);
        let started = Instant::now();
        let outcome = match self.bounded(close, timeout).await? {
            Some(Ok(Ok(()))) => CloseOutcome::Closed(started.elapsed()),
            Some(Ok(Err(e))) => CloseOutcome::Failed(e.to_string()),
            Some(Err(e)) => CloseOutcome::Failed(e),
            None => CloseOutcome::TimedOut(timeout),
        };
        match &outcome {
            CloseOutcome::Failed(_) => {
                self.status = self.status.worst(ExitStatus::ComponentFailed);
            }
            CloseOutcome::TimedOut(_) => {
                self.status = self.status.worst(ExitStatus::DeadlineExceeded);
            }
            _ => {}
        }
        self.publish(&Observed::Closed {
            name,
            outcome: &outcome,
        });
        Ok(outcome)
    }

    /// Runs `work` on a task of its own (so that a panic in it is caught
    /// like a panic in a run), at most `bound`, handling events meanwhile:
    /// its output, `Err` with the panic for one that panicked, or `None`
    /// past the bound (then it is aborted). A second signal aborts it and
    /// is returned.
    async fn bounded<T: Send + 'static>(
        &mut self,
        work: BoxFuture<T>,
        bound: Duration,
    ) -> Result<Option<Result<T, String>>, Signal> {
        let task = tokio::spawn(work);
        let abort = task.abort_handle();
        let run = tokio::time::timeout(bound, task);
        tokio::pin!(run);
        loop {
            tokio::select! {
                biased;
                Some(event) = self.events.recv() => {
                    if let Some(sig) = self.on_event(event) {
                        abort.abort();
                        return Err(sig);
                    }
                }
                r = &mut run => return Ok(match r {
                    Ok(Ok(out)) => Some(Ok(out)),
                    Ok(Err(e)) if e.is_panic() => Some(Err(format!("panicked: {}", super::panic_message(e.into_panic())))),
                    Ok(Err(_)) => Some(Err("aborted".into())),
                    Err(_) => {
                        abort.abort();
                        None
                    }
                }),
            }
        }
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
