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
    /// How Draining went: what ended it, and the traffic it saw. `None`
    /// when the shutdown was forced before the drain ended.
    pub drain: Option<DrainReport>,
    /// Time from the shutdown trigger to the end of Closing.
    pub shutdown: Duration,
    /// In-flight work during the shutdown.
    pub work: WorkReport,
    /// Each component, in start order.
    pub components: Vec<ComponentReport>,
    /// Each exporter's flush, in the order they ran (see
    /// [`AppBuilder::exporter`](crate::AppBuilder::exporter)).
    pub exporters: Vec<ExporterReport>,
    /// What became of the new process of an upgrade this shutdown dealt
    /// with (feature `upgrade`): told to stop and waited for (`process 41,
    /// told to stop, exited: exit code 0`), killed past its bound, or gone
    /// after the handover. `None` without one.
    pub upgrade: Option<String>,
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

/// How Draining went.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// What ended it.
    pub ended: DrainEnd,
    /// How long it lasted.
    pub lasted: Duration,
    /// The quiet an adaptive drain needed to end early (`drain_quiet`, or
    /// more at low traffic); `None` for a fixed drain, or when the traffic
    /// before the signal was too little to tell (the drain then lasts
    /// `drain_max`).
    pub quiet_needed: Option<Duration>,
    /// How long before the drain ended the last traffic arrived (which may
    /// be before the drain began); `None` when none was seen, or when the
    /// traffic was counted only at the drain's start and end (a fixed
    /// drain, with no flight record).
    pub last_traffic: Option<Duration>,
    /// Arrivals during the drain, every listener together (requests, or
    /// connections for a source that sees no requests); sampled every
    /// tenth of a second, the first sample may hold some from the last
    /// tenth of a second before.
    pub arrivals: u64,
    /// Whether any listener reported its traffic: `false` for an app with
    /// no [traffic source](crate::AppHandle::traffic_source) (no
    /// `http::Server` or `DrainLayer`, or `lameduck run` holding no TCP
    /// socket for its program), whose report then says nothing about
    /// traffic.
    pub watched: bool,
    /// Whether the traffic was sampled through the drain, every tenth of a
    /// second, so that [`last_traffic`](Self::last_traffic) is known:
    /// `false` for a fixed drain with no flight record, whose arrivals are
    /// counted at its start and end only (requests already in flight at
    /// its start are not arrivals).
    pub sampled: bool,
}

/// What ended Draining.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainEnd {
    /// There was none: the signal's drain policy skips it, the shutdown
    /// began before Running, or `drain_max` is zero.
    Skipped,
    /// A fixed drain's delay passed.
    DelayOver,
    /// The traffic had stopped: nothing arrived for `quiet`, `after` into
    /// the drain.
    Quiet {
        /// How long nothing had arrived.
        quiet: Duration,
        /// How long the drain lasted.
        after: Duration,
    },
    /// An adaptive drain reached `drain_max`: the traffic went on, or too
    /// little of it was seen to tell.
    MaxReached,
    /// Every component had returned and nothing was tracked.
    NothingLeft,
    /// This signal cut it short: `SIGINT` from a terminal (by default),
    /// or a signal that a program taking its own signals said cuts it
    /// ([`AppHandle::cut_drain`](crate::AppHandle::cut_drain): `lameduck
    /// run`'s second signal).
    CutBySignal(crate::Signal),
}

impl DrainEnd {
    /// Whether the drain ended because the traffic had stopped.
    pub fn is_quiet(&self) -> bool {
        matches!(self, DrainEnd::Quiet { .. })
    }
}

impl fmt::Display for DrainEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainEnd::Skipped => f.write_str("drain skipped"),
            DrainEnd::DelayOver => f.write_str("drain delay over"),
            DrainEnd::Quiet { quiet, after } => {
                write!(f, "quiet for {} after {}", Seconds(*quiet), Seconds(*after))
            }
            DrainEnd::MaxReached => f.write_str("drain_max reached"),
            DrainEnd::NothingLeft => f.write_str("nothing left to drain"),
            DrainEnd::CutBySignal(sig) => write!(f, "drain cut short by {sig}"),
        }
    }
}

impl fmt::Display for DrainReport {
    /// `quiet for 500ms after 1.2s (needed 500ms), last traffic 500ms
    /// before its end, 120 arrivals sampled during it`; for a drain whose
    /// traffic was not sampled, `drain delay over, traffic not sampled: 0
    /// arrivals counted between its start and end`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ended)?;
        if self.ended == DrainEnd::Skipped {
            return Ok(());
        }
        if let Some(needed) = self.quiet_needed {
            write!(f, " (needed {})", Seconds(needed))?;
        } else if self.ended == DrainEnd::MaxReached && self.watched {
            // The rule's minimum evidence was not there: say so, or the
            // reader looks for traffic that kept it going.
            f.write_str(" (too little traffic before the signal to tell when it stopped)")?;
        }
        if !self.watched {
            return Ok(());
        }
        if !self.sampled {
            // Only the counts at its ends are known: "no traffic seen"
            // would read as if nothing had been served, when requests
            // begun before it may have run all through it.
            return write!(
                f,
                ", traffic not sampled: {} counted between its start and end",
                crate::fmt::Count(self.arrivals as usize, "arrival")
            );
        }
        match self.last_traffic {
            Some(d) => write!(f, ", last traffic {} before its end", Seconds(d))?,
            None if self.arrivals == 0 => write!(f, ", no traffic seen")?,
            None => {}
        }
        // Sampled every tenth of a second: the first sample of the drain
        // may hold arrivals from just before it, so "during" would not be
        // true of each of them.
        write!(
            f,
            ", {} sampled during it",
            crate::fmt::Count(self.arrivals as usize, "arrival")
        )
    }
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
    /// signal, whatever became of it then: [`after_cancel`](Self::after_cancel)
    /// says what.
    pub cancelled: Vec<WorkItem>,
    /// What became of each item of [`cancelled`](Self::cancelled), in the
    /// same order: finished anyway, answered with the clean error, cut, or
    /// aborted. [`cancelled_with_outcome`](Self::cancelled_with_outcome)
    /// gives the two together.
    pub after_cancel: Vec<AfterCancel>,
    /// Work still running at the hard deadline, which was aborted. A
    /// request answered `503` at the cancel signal whose handler ran on in
    /// the background until then is listed here too (its client got the
    /// `503`: its [`AfterCancel`] is [`Unavailable`](AfterCancel::Unavailable)).
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

/// What became of work that got the cancel signal (see
/// [`WorkReport::after_cancel`]).
///
/// Work whose tracker says nothing more (a job of your own, tracked with a
/// [`Tracker`](crate::Tracker)) is [`Finished`](Self::Finished) when its
/// guard was dropped before the hard deadline and
/// [`Aborted`](Self::Aborted) when it was not; a request of
/// [`http::Server`](crate::http::Server) or
/// [`DrainLayer`](crate::http::DrainLayer) may also be
/// [`Unavailable`](Self::Unavailable), [`Cut`](Self::Cut) or
/// [`Ended`](Self::Ended).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AfterCancel {
    /// It finished anyway before the hard deadline: a request's response
    /// was given in full (served by [`http::Server`](crate::http::Server),
    /// its last byte handed to the socket; under
    /// [`DrainLayer`](crate::http::DrainLayer), which cannot see the
    /// socket, its body's last byte given to the server).
    Finished,
    /// The shutdown ended it cleanly at a message boundary: an event stream
    /// or gRPC stream ended at the cancel signal, a WebSocket closed
    /// ([`Tracker::mark_ended`](crate::Tracker::mark_ended)).
    Ended,
    /// It had no response yet and was answered with the clean error: `503`
    /// with `Retry-After` (a gRPC call: status `UNAVAILABLE`). Its handler
    /// may have run on in the background, and been aborted at the hard
    /// deadline ([`WorkReport::aborted`] then names it too). A handler that
    /// answered the cancel signal with a `503` of its own counts here too.
    Unavailable,
    /// Its response had begun and was cut short: the body failed, or was
    /// dropped before its end (the client went away, or the connection was
    /// closed), or its connection ended before the response was on the
    /// wire. Its client saw an incomplete response.
    Cut,
    /// It was still running at the hard deadline, or when a second signal
    /// forced the exit, and was aborted.
    Aborted,
}

impl AfterCancel {
    /// The word the report uses: `finished anyway`, `ended by the
    /// shutdown`, `answered 503`, `cut`, `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            AfterCancel::Finished => "finished anyway",
            AfterCancel::Ended => "ended by the shutdown",
            AfterCancel::Unavailable => "answered 503",
            AfterCancel::Cut => "cut",
            AfterCancel::Aborted => "aborted",
        }
    }

    /// Every outcome, in the order the report lists them.
    pub const ALL: [AfterCancel; 5] = [
        AfterCancel::Finished,
        AfterCancel::Ended,
        AfterCancel::Unavailable,
        AfterCancel::Cut,
        AfterCancel::Aborted,
    ];
}

impl fmt::Display for AfterCancel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl WorkReport {
    /// Each item of [`cancelled`](Self::cancelled) with what became of it.
    pub fn cancelled_with_outcome(&self) -> impl Iterator<Item = (&WorkItem, AfterCancel)> {
        self.cancelled.iter().zip(self.after_cancel.iter().copied())
    }

    /// How many items of [`cancelled`](Self::cancelled) came to `outcome`.
    pub fn count_after_cancel(&self, outcome: AfterCancel) -> usize {
        self.after_cancel.iter().filter(|&&o| o == outcome).count()
    }
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
    /// It was still running at the hard deadline, or when a second signal
    /// forced the exit, and was aborted.
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
        let cancelled_work = self
            .work
            .cancelled_with_outcome()
            .map(|(w, then)| format!("{}: {} ({}): {then}", w.tracker, w.label, Seconds(w.age)))
            .collect::<Vec<_>>()
            .join("; ");
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
                drain = %self.drain.as_ref().map(ToString::to_string).unwrap_or_default(),
                in_flight_at_stop = self.work.in_flight_at_stop,
                finished = self.work.finished,
                cancelled = self.work.cancelled.len(),
                after_cancel = %AfterCancelCounts(&self.work),
                aborted = self.work.aborted.len(),
                ended = self.work.ended.len(),
                cancelled_work = %cancelled_work,
                aborted_work = %list(&self.work.aborted),
                ended_work = %list(&self.work.ended),
                held = %held,
                restarts,
                exporters = %exporters,
                // Only when there is one: an absent value records no field.
                upgrade = self.upgrade.as_deref(),
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
        if let Some(drain) = self.drain.as_ref().filter(|d| d.ended != DrainEnd::Skipped) {
            writeln!(f, "  drain: {drain}")?;
        }
        write!(
            f,
            "  work: {} in flight at stop, {} finished",
            self.work.in_flight_at_stop, self.work.finished,
        )?;
        if !self.work.ended.is_empty() {
            write!(f, ", {} ended by the shutdown", self.work.ended.len())?;
        }
        write!(f, ", {} cancelled", self.work.cancelled.len())?;
        if !self.work.cancelled.is_empty() {
            write!(f, " ({})", AfterCancelCounts(&self.work))?;
        }
        writeln!(f, ", {} aborted", self.work.aborted.len())?;
        let item = |f: &mut fmt::Formatter<'_>, what: &str, w: &WorkItem| {
            writeln!(
                f,
                "    {what}: {}: {} (running {})",
                w.tracker,
                w.label,
                Seconds(w.age)
            )
        };
        for w in &self.work.ended {
            item(f, "ended by the shutdown", w)?;
        }
        for (w, then) in self.work.cancelled_with_outcome() {
            item(f, &format!("cancelled, {then}"), w)?;
        }
        for w in &self.work.aborted {
            item(f, "aborted", w)?;
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
        if let Some(u) = &self.upgrade {
            writeln!(f, "  upgrade: {u}")?;
        }
        write!(f, "  exit: {}", self.status)
    }
}

/// What became of the cancelled work, counted: `1 finished anyway, 2
/// answered 503` (the outcomes that occurred, in [`AfterCancel::ALL`]'s
/// order).
struct AfterCancelCounts<'a>(&'a WorkReport);

impl fmt::Display for AfterCancelCounts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for outcome in AfterCancel::ALL {
            let n = self.0.count_after_cancel(outcome);
            if n > 0 {
                let sep = if first { "" } else { ", " };
                write!(f, "{sep}{n} {outcome}")?;
                first = false;
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed_drain(sampled: bool, arrivals: u64, last_traffic: Option<Duration>) -> DrainReport {
        DrainReport {
            ended: DrainEnd::DelayOver,
            lasted: Duration::from_secs(5),
            quiet_needed: None,
            last_traffic,
            arrivals,
            watched: true,
            sampled,
        }
    }

    #[test]
    fn a_drain_whose_traffic_was_not_sampled_says_so_rather_than_no_traffic_seen() {
        // Requests in flight all through it, none new: counted at its ends.
        let said = fixed_drain(false, 0, None).to_string();
        assert_eq!(
            said,
            "drain delay over, traffic not sampled: 0 arrivals counted between its start and end"
        );
        assert!(!said.contains("no traffic seen"), "{said}");
        // Sampled (a flight record is kept), nothing arrived at all.
        assert_eq!(
            fixed_drain(true, 0, None).to_string(),
            "drain delay over, no traffic seen, 0 arrivals sampled during it"
        );
        assert_eq!(
            fixed_drain(true, 3, Some(Duration::from_millis(200))).to_string(),
            "drain delay over, last traffic 200ms before its end, 3 arrivals sampled during it"
        );
        // One is one.
        assert_eq!(
            fixed_drain(true, 1, Some(Duration::from_millis(200))).to_string(),
            "drain delay over, last traffic 200ms before its end, 1 arrival sampled during it"
        );
        assert_eq!(
            fixed_drain(false, 1, None).to_string(),
            "drain delay over, traffic not sampled: 1 arrival counted between its start and end"
        );
    }
}
