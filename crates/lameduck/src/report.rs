//! What happened at shutdown.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::fmt::Seconds;
use crate::{ExitStatus, Phase, ShutdownReason, WorkItem};

/// What happened during a run: why it stopped, how long each phase took,
/// what work finished, was cancelled or aborted, each component's fate, and
/// the exit status.
///
/// The app logs it as one structured event at the end of Closing (target
/// `lameduck::report`); `Display` gives the same as a short text for people.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Report {
    /// The app's name.
    pub app: Arc<str>,
    /// Why the shutdown began.
    pub reason: Option<ShutdownReason>,
    /// Each phase entered, with how long it lasted.
    pub phases: Vec<PhaseTiming>,
    /// Time from the shutdown trigger to the end of Closing.
    pub shutdown: Duration,
    /// In-flight work during the shutdown.
    pub work: WorkReport,
    /// Each component, in start order.
    pub components: Vec<ComponentReport>,
    /// Each exporter's flush, in the order they ran (see
    /// [`AppBuilder::exporter`](crate::AppBuilder::exporter)).
    pub exporters: Vec<ExporterReport>,
    /// How it ended.
    pub status: ExitStatus,
}

/// One phase and how long it lasted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhaseTiming {
    /// The phase.
    pub phase: Phase,
    /// How long the app was in it.
    pub duration: Duration,
}

/// In-flight work during the shutdown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkReport {
    /// Work in flight when Stopping began.
    pub in_flight_at_stop: usize,
    /// Of that, what finished on its own before the shutdown timeout.
    pub finished: usize,
    /// Work still running at the shutdown timeout, which got the cancel
    /// signal.
    pub cancelled: Vec<WorkItem>,
    /// Work still running at the hard deadline, which was aborted.
    pub aborted: Vec<WorkItem>,
    /// Work in flight at Stopping that the shutdown ended on purpose: event
    /// streams and WebSockets told to reconnect elsewhere (see
    /// [`Tracker::mark_ended`](crate::Tracker::mark_ended)). Not a failure.
    pub ended: Vec<WorkItem>,
    /// What else held the shutdown up past a deadline: open connections,
    /// components whose run had not returned. Empty when every deadline was
    /// met; never empty when one was passed and nothing was cancelled.
    pub held: Vec<Holdup>,
}

/// Something other than tracked work that held the shutdown up past a
/// deadline: a connection still open, a component whose run had not
/// returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holdup {
    /// The component it belongs to.
    pub component: Arc<str>,
    /// What it was, as the component describes it (for a connection of
    /// [`http::Server`](crate::http::Server): peer address, protocol, state,
    /// time since its last byte and since it opened).
    pub what: String,
    /// The deadline it was still there at.
    pub deadline: Deadline,
}

/// A deadline of the shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Deadline {
    /// The shutdown timeout, where Cancelling begins.
    ShutdownTimeout,
    /// The hard deadline, where what is left is aborted.
    Hard,
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Deadline::ShutdownTimeout => "the shutdown timeout",
            Deadline::Hard => "the hard deadline",
        })
    }
}

/// One component's fate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComponentReport {
    /// The component's name.
    pub name: Arc<str>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// How its last run ended.
    pub ended: Ending,
    /// How its close went.
    pub close: CloseOutcome,
}

/// How an exporter's flush went at Closing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExporterReport {
    /// The exporter's name.
    pub name: Arc<str>,
    /// How long its flush took and whether it finished: `None` when it
    /// did not run (a second signal forced the exit first).
    pub flush: CloseOutcome,
}

/// How a component's last run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// It returned `Ok`.
    Finished,
    /// It returned `Err` or panicked; the text says which and why.
    Failed(String),
    /// It was still running at the hard deadline and was aborted.
    Aborted,
    /// It never started (a dependency never became ready).
    NeverStarted,
}

/// How a component's close went.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseOutcome {
    /// It has no close.
    None,
    /// It closed within its timeout.
    Closed(Duration),
    /// The close returned an error or panicked.
    Failed(String),
    /// The close overran its timeout and was abandoned.
    TimedOut(Duration),
}

impl Report {
    /// How it ended.
    pub fn status(&self) -> ExitStatus {
        self.status
    }

    /// The process exit code to return from `main`.
    pub fn exit_code(&self) -> std::process::ExitCode {
        self.status.into()
    }

    /// How long `phase` lasted, if the app went through it.
    pub fn phase_duration(&self, phase: Phase) -> Option<Duration> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.duration)
    }

    /// The report of the component named `name`.
    pub fn component(&self, name: &str) -> Option<&ComponentReport> {
        self.components.iter().find(|c| &*c.name == name)
    }

    pub(crate) fn log(&self) {
        let phases = self
            .phases
            .iter()
            .map(|p| format!("{}={}", p.phase, Seconds(p.duration)))
            .collect::<Vec<_>>()
            .join(" ");
        let list = |items: &[WorkItem]| {
            items
                .iter()
                .map(|w| format!("{}: {} ({})", w.tracker, w.label, Seconds(w.age)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let held = self
            .work
            .held
            .iter()
            .map(|h| format!("at {}: {}: {}", h.deadline, h.component, h.what))
            .collect::<Vec<_>>()
            .join("; ");
        let restarts: u32 = self.components.iter().map(|c| c.restarts).sum();
        let exporters = self
            .exporters
            .iter()
            .map(|e| format!("{}: {}", e.name, Flushed(&e.flush)))
            .collect::<Vec<_>>()
            .join("; ");
        let event = |status: ExitStatus| {
            tracing::info!(
                target: "lameduck::report",
                app = %self.app,
                reason = %self.reason.as_ref().map(ToString::to_string).unwrap_or_default(),
                status = %status,
                exit_code = status.code(),
                shutdown_ms = self.shutdown.as_millis() as u64,
                phases = %phases,
                in_flight_at_stop = self.work.in_flight_at_stop,
                finished = self.work.finished,
                cancelled = self.work.cancelled.len(),
                aborted = self.work.aborted.len(),
                ended = self.work.ended.len(),
                cancelled_work = %list(&self.work.cancelled),
                aborted_work = %list(&self.work.aborted),
                ended_work = %list(&self.work.ended),
                held = %held,
                restarts,
                exporters = %exporters,
                "shutdown report"
            );
        };
        event(self.status);
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.app)?;
        match &self.reason {
            Some(r) => writeln!(f, "shut down ({r}) in {}", Seconds(self.shutdown))?,
            None => writeln!(f, "stopped")?,
        }
        for p in &self.phases {
            writeln!(f, "  {:<11} {}", p.phase.as_str(), Seconds(p.duration))?;
        }
        write!(
            f,
            "  work: {} in flight at stop, {} finished",
            self.work.in_flight_at_stop, self.work.finished,
        )?;
        if !self.work.ended.is_empty() {
            write!(f, ", {} ended by the shutdown", self.work.ended.len())?;
        }
        writeln!(
            f,
            ", {} cancelled, {} aborted",
            self.work.cancelled.len(),
            self.work.aborted.len()
        )?;
        for (what, items) in [
            ("ended by the shutdown", &self.work.ended),
            ("cancelled", &self.work.cancelled),
            ("aborted", &self.work.aborted),
        ] {
            for w in items {
                writeln!(
                    f,
                    "    {what}: {}: {} (running {})",
                    w.tracker,
                    w.label,
                    Seconds(w.age)
                )?;
            }
        }
        for h in &self.work.held {
            writeln!(
                f,
                "    held up at {}: {}: {}",
                h.deadline, h.component, h.what
            )?;
        }
        for c in &self.components {
            write!(f, "  component {}: ", c.name)?;
            match &c.ended {
                Ending::Finished => write!(f, "finished")?,
                Ending::Failed(e) => write!(f, "failed: {e}")?,
                Ending::Aborted => write!(f, "aborted")?,
                Ending::NeverStarted => write!(f, "never started")?,
            }
            if c.restarts > 0 {
                write!(f, ", {} restarts", c.restarts)?;
            }
            match &c.close {
                CloseOutcome::None => {}
                CloseOutcome::Closed(d) => write!(f, ", closed in {}", Seconds(*d))?,
                CloseOutcome::Failed(e) => write!(f, ", close failed: {e}")?,
                CloseOutcome::TimedOut(d) => write!(f, ", close timed out after {}", Seconds(*d))?,
            }
            writeln!(f)?;
        }
        for e in &self.exporters {
            writeln!(f, "  exporter {}: {}", e.name, Flushed(&e.flush))?;
        }
        write!(f, "  exit: {}", self.status)
    }
}

/// An exporter's flush, in words.
struct Flushed<'a>(&'a CloseOutcome);

impl fmt::Display for Flushed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            CloseOutcome::None => write!(f, "not flushed"),
            CloseOutcome::Closed(d) => write!(f, "flushed in {}", Seconds(*d)),
            CloseOutcome::Failed(e) => write!(f, "flush failed: {e}"),
            CloseOutcome::TimedOut(d) => write!(f, "flush timed out after {}", Seconds(*d)),
        }
    }
}
