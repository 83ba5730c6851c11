//! The flight recorder: an observer of the app's events that builds the
//! record as they come, and writes it at the report — or, from the final
//! flush, when the process ends without one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::schema::*;
use super::write;
use crate::app::finish::Finish;
use crate::observe::{Event, Observer};
use crate::report::{CloseOutcome, Deadline, DrainEnd, Ending};
use crate::{AppHandle, ExitStatus, Phase, WorkItem};

/// How long the driver waits for a record to reach the disk; past it, the
/// write goes on in the background (a stuck disk must not hold the
/// shutdown).
const WRITE_BOUND: Duration = Duration::from_millis(250);

pub(crate) struct Recorder {
    path: PathBuf,
    limit: usize,
    state: Mutex<State>,
    /// The app's end, for the exit code when no report came out.
    finish: OnceLock<Weak<Finish>>,
}

#[derive(Default)]
struct State {
    app: Option<AppHandle>,
    started: Option<Instant>,
    record: FlightRecord,
    /// Why each component's last run failed, for its restart.
    failures: HashMap<String, String>,
    /// The shutdown's record is out: the final flush has nothing to do.
    written: bool,
}

impl Recorder {
    pub(crate) fn new(path: PathBuf, limit: usize) -> Self {
        Self {
            path,
            limit,
            state: Mutex::new(State::default()),
            finish: OnceLock::new(),
        }
    }

    pub(crate) fn attach(&self, finish: &Arc<Finish>) {
        let _ = self.finish.set(Arc::downgrade(finish));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The final flush: writes the record if the report never came (the
    /// exit watchdog, a forced exit with the runtime blocked).
    pub(crate) fn on_exit(&self) {
        let mut state = self.lock();
        if state.written || state.app.is_none() {
            return;
        }
        let code = self
            .finish
            .get()
            .and_then(Weak::upgrade)
            .and_then(|f| f.exiting())
            .unwrap_or(ExitStatus::WatchdogExpired.code());
        let work = state.app.as_ref().map(AppHandle::work).unwrap_or_default();
        state.inventory("exit", &work, &[]);
        state.record.exit = Some(ExitRecord {
            status: "exit without a report".into(),
            code,
        });
        state.written = true;
        self.write(&mut state, "shutdown", false);
    }

    /// Writes the record as it stands; waits at most [`WRITE_BOUND`] for
    /// it, unless `inline` (the final flush, bounded by its caller).
    fn write(&self, state: &mut State, kind: &str, bounded: bool) {
        let Some(app) = state.app.clone() else {
            return;
        };
        state.record.kind = kind.into();
        state.record.written_ms = state.ms(Instant::now());
        state.record.traffic = traffic(&app, state.started);
        let record = state.record.clone();
        let path = write::resolve(&self.path, app.name());
        let limit = self.limit;
        let job = move || {
            let bytes = write::fit(record, limit);
            let result = write::write(&path, &bytes);
            (path, bytes.len(), result)
        };
        let report = |(path, bytes, result): (PathBuf, usize, std::io::Result<()>)| match result {
            Ok(()) => {
                tracing::info!(target: "lameduck", app = %app.name(), path = %path.display(), bytes, "flight record written")
            }
            Err(err) => {
                tracing::warn!(target: "lameduck", app = %app.name(), path = %path.display(), error = %err, "cannot write the flight record")
            }
        };
        if !bounded {
            report(job());
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("lameduck-flight".into())
            .spawn(move || {
                let _ = tx.send(job());
            });
        match spawned.map(|_| rx.recv_timeout(WRITE_BOUND)) {
            Ok(Ok(done)) => report(done),
            Ok(Err(_)) => {
                tracing::warn!(target: "lameduck", app = %app.name(), "the flight record is still being written; going on without waiting")
            }
            Err(err) => {
                tracing::warn!(target: "lameduck", app = %app.name(), error = %err, "cannot write the flight record")
            }
        }
    }
}

impl State {
    fn ms(&self, at: Instant) -> u64 {
        self.started
            .map_or(0, |s| at.saturating_duration_since(s).as_millis() as u64)
    }

    fn now(&self) -> u64 {
        self.ms(Instant::now())
    }

    /// What is in flight now: `work` as given, every open connection.
    /// The work settled: the counts, and what became of each piece in
    /// the inventory at the shutdown timeout.
    fn settle(&mut self, work: &crate::WorkReport) {
        let mut after_cancel = std::collections::BTreeMap::new();
        let mut then: Vec<(String, &str, u64, &str)> = Vec::new();
        for (w, outcome) in work.cancelled_with_outcome() {
            *after_cancel
                .entry(after_cancel_key(outcome).to_owned())
                .or_insert(0) += 1;
            then.push((
                w.tracker.to_string(),
                &w.label,
                w.age.as_millis() as u64,
                outcome.as_str(),
            ));
        }
        let at_timeout = self
            .record
            .inventories
            .iter_mut()
            .filter(|inv| inv.at == "shutdown_timeout");
        for item in at_timeout.flat_map(|inv| inv.work.iter_mut()) {
            // The inventory took the same items, ages and all.
            let found = then.iter().position(|(tracker, label, age_ms, _)| {
                *tracker == item.tracker && *label == item.label && *age_ms == item.age_ms
            });
            if let Some(i) = found {
                item.then = Some(then.swap_remove(i).3.to_owned());
            }
        }
        self.record.work = Some(WorkRecord {
            in_flight_at_stop: work.in_flight_at_stop as u64,
            finished: work.finished as u64,
            cancelled: work.cancelled.len() as u64,
            after_cancel,
            aborted: work.aborted.len() as u64,
            ended: work.ended.len() as u64,
        });
    }

    fn inventory(&mut self, at: &str, work: &[WorkItem], held: &[(String, String)]) {
        let at_ms = self.now();
        let mut work: Vec<WorkRecordItem> = work
            .iter()
            .map(|w| WorkRecordItem {
                tracker: w.tracker.to_string(),
                label: w.label.clone(),
                age_ms: w.age.as_millis() as u64,
                then: None,
            })
            .collect();
        work.sort_by_key(|w| std::cmp::Reverse(w.age_ms));
        let mut connections: Vec<ConnectionRecord> = self
            .app
            .as_ref()
            .map(AppHandle::connections)
            .unwrap_or_default()
            .into_iter()
            .map(|(component, c)| ConnectionRecord {
                component: component.to_string(),
                peer: c.peer,
                protocol: c.protocol.into(),
                state: c.state.into(),
                in_flight: c.in_flight as u64,
                idle_ms: c.idle.as_millis() as u64,
                age_ms: c.age.as_millis() as u64,
            })
            .collect();
        // Busy ones first, the oldest first: what a cut keeps.
        connections.sort_by(|a, b| {
            let idle = |c: &ConnectionRecord| matches!(c.state.as_str(), "idle" | "new");
            idle(a).cmp(&idle(b)).then(b.age_ms.cmp(&a.age_ms))
        });
        self.record.inventories.push(Inventory {
            at: at.into(),
            at_ms,
            work,
            connections,
            held: held
                .iter()
                .map(|(component, what)| HeldRecord {
                    component: component.clone(),
                    what: what.clone(),
                })
                .collect(),
        });
    }

    fn upgrade_step(&mut self, step: String) {
        let at_ms = self.now();
        if let Some(u) = self.record.upgrades.last_mut() {
            u.steps.push(StepRecord { at_ms, step });
        }
    }
}

impl Observer for Recorder {
    fn on_event(&self, event: &Event<'_>) {
        let mut state = self.lock();
        match *event {
            Event::Starting { app, timeline, .. } => {
                let now = Instant::now();
                state.app = Some(app.clone());
                state.started = Some(now);
                let wall = SystemTime::now();
                let r = &mut state.record;
                r.format = super::FORMAT.into();
                r.version = super::VERSION;
                r.app = app.name().into();
                r.pid = std::process::id();
                r.lameduck_version = env!("CARGO_PKG_VERSION").into();
                r.started_unix_ms = wall
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                r.started_at = humantime::format_rfc3339_millis(wall).to_string();
                let ms = |d: Duration| d.as_millis() as u64;
                r.budget = BudgetRecord {
                    grace_period_ms: ms(timeline.grace_period),
                    drain_min_ms: ms(timeline.drain_min),
                    drain_max_ms: ms(timeline.drain_max()),
                    drain_quiet_ms: ms(timeline.drain_quiet),
                    shutdown_timeout_ms: ms(timeline.shutdown_timeout),
                    hard_timeout_ms: ms(timeline.hard_timeout),
                    log_flush_ms: ms(timeline.log_flush),
                };
                r.phases.push(PhaseRecord {
                    phase: Phase::Starting.as_str().into(),
                    start_ms: 0,
                    end_ms: None,
                    cause: "run".into(),
                });
            }
            Event::PhaseChanged { to, cause, .. } => {
                let now = state.now();
                if let Some(last) = state.record.phases.last_mut() {
                    last.end_ms.get_or_insert(now);
                }
                state.record.phases.push(PhaseRecord {
                    phase: to.as_str().into(),
                    start_ms: now,
                    end_ms: None,
                    cause: cause.into(),
                });
                if to == Phase::Draining {
                    state.record.shutdown_ms.get_or_insert(now);
                    state.record.reason = state
                        .app
                        .as_ref()
                        .and_then(AppHandle::shutdown_reason)
                        .map(|r| r.to_string());
                }
                if to == Phase::Stopping {
                    // The list the report's `in_flight_at_stop` counts.
                    let work = state
                        .app
                        .as_ref()
                        .map(AppHandle::work_at_stop)
                        .unwrap_or_default();
                    state.inventory("stopping", &work, &[]);
                }
            }
            Event::ComponentExited {
                component,
                error: Some(error),
                ..
            } => {
                state.failures.insert(component.into(), error.into());
            }
            Event::ComponentRestarting {
                component,
                restarts,
                delay,
            } => {
                let at_ms = state.now();
                let error = state.failures.remove(component);
                state.record.restarts.push(RestartRecord {
                    component: component.into(),
                    at_ms,
                    restarts,
                    delay_ms: delay.as_millis() as u64,
                    error,
                });
            }
            Event::DrainEnded { drain } => {
                let end_ms = state.now();
                let last = state
                    .app
                    .as_ref()
                    .and_then(|a| a.traffic().with_log(|log| log.last_arrival()));
                let last_traffic_ms = last.map(|at| state.ms(at));
                state.record.drain = Some(DrainRecord {
                    ended: match drain.ended {
                        DrainEnd::Skipped => "skipped",
                        DrainEnd::DelayOver => "delay",
                        DrainEnd::Quiet { .. } => "quiet",
                        DrainEnd::MaxReached => "drain_max",
                        DrainEnd::NothingLeft => "nothing_left",
                        _ => "signal",
                    }
                    .into(),
                    summary: drain.to_string(),
                    start_ms: end_ms.saturating_sub(drain.lasted.as_millis() as u64),
                    end_ms,
                    quiet_needed_ms: drain.quiet_needed.map(|d| d.as_millis() as u64),
                    last_traffic_ms,
                    arrivals: drain.arrivals,
                });
            }
            Event::DeadlinePassed {
                deadline,
                work,
                held,
            } => {
                let held: Vec<(String, String)> = held
                    .iter()
                    .map(|h| (h.component.to_string(), h.what.clone()))
                    .collect();
                let at = match deadline {
                    Deadline::ShutdownTimeout => "shutdown_timeout",
                    _ => "hard_deadline",
                };
                state.inventory(at, work, &held);
            }
            Event::WorkSettled { work } => {
                state.settle(work);
            }
            Event::UpgradeStarted { timeout, in_place } => {
                let start_ms = state.now();
                let step = if in_place {
                    format!(
                        "started in place: replacing what the app supervises may take {} at most",
                        crate::fmt::Seconds(timeout)
                    )
                } else {
                    format!(
                        "started: the new process has {} to become ready",
                        crate::fmt::Seconds(timeout)
                    )
                };
                state.record.upgrades.push(UpgradeRecord {
                    start_ms,
                    steps: vec![StepRecord {
                        at_ms: start_ms,
                        step,
                    }],
                    ..UpgradeRecord::default()
                });
            }
            Event::UpgradeStep { step } => state.upgrade_step(step.into()),
            Event::UpgradeSucceeded { pid } => {
                state.upgrade_step(format!("succeeded: process {pid} serves; this one drains"));
                if let Some(u) = state.record.upgrades.last_mut() {
                    u.outcome = Some("succeeded".into());
                    u.new_pid = Some(pid);
                }
            }
            Event::UpgradedInPlace { pid } => {
                state.upgrade_step(format!("succeeded in place: process {pid} serves"));
                if let Some(u) = state.record.upgrades.last_mut() {
                    u.outcome = Some("in_place".into());
                    u.new_pid = Some(pid);
                }
                self.write(&mut state, "upgrade", true);
            }
            Event::UpgradeFailed { error } => {
                state.upgrade_step(format!("failed: {error}"));
                if let Some(u) = state.record.upgrades.last_mut() {
                    u.outcome = Some("failed".into());
                    u.error = Some(error.into());
                }
                if state.record.shutdown_ms.is_none() {
                    self.write(&mut state, "upgrade", true);
                }
            }
            Event::UpgradeAbandoned { why } => {
                state.upgrade_step(format!("abandoned: {why}"));
                if let Some(u) = state.record.upgrades.last_mut() {
                    u.outcome = Some("abandoned".into());
                    u.error = Some(why.into());
                }
                if state.record.shutdown_ms.is_none() {
                    self.write(&mut state, "upgrade", true);
                }
            }
            Event::Report(report) => {
                if let ExitStatus::Forced(_) = report.status {
                    state.inventory("forced", &report.work.aborted, &[]);
                }
                state.record.reason = report.reason.as_ref().map(|r| r.to_string());
                state.record.components = report
                    .components
                    .iter()
                    .map(|c| ComponentRecord {
                        name: c.name.to_string(),
                        restarts: c.restarts,
                        ended: match &c.ended {
                            Ending::Finished => "finished".into(),
                            Ending::Failed(e) => format!("failed: {e}"),
                            Ending::Aborted => "aborted".into(),
                            Ending::NeverStarted => "never started".into(),
                        },
                        close: match &c.close {
                            CloseOutcome::None => "none".into(),
                            CloseOutcome::Closed(d) => {
                                format!("closed in {}", crate::fmt::Seconds(*d))
                            }
                            CloseOutcome::Failed(e) => format!("failed: {e}"),
                            CloseOutcome::TimedOut(d) => {
                                format!("timed out after {}", crate::fmt::Seconds(*d))
                            }
                        },
                    })
                    .collect();
                state.record.exit = Some(ExitRecord {
                    status: report.status.to_string(),
                    code: report.status.code(),
                });
                // The report comes once Closing's closes are done (or at a
                // forced exit): the phase under way ends here; only the log
                // flush, outside the record, is left.
                let now = state.now();
                if let Some(last) = state.record.phases.last_mut() {
                    last.end_ms.get_or_insert(now);
                }
                // One last sample of the traffic, so that the record counts
                // the requests that ended since the last tick (an event
                // stream ended at Stopping, in a shutdown shorter than a
                // tick) as finished rather than still running.
                if let Some(app) = &state.app
                    && app.traffic().has_sources()
                {
                    app.traffic().sample(Instant::now());
                }
                state.written = true;
                self.write(&mut state, "shutdown", true);
            }
            _ => {}
        }
    }
}

/// The flight record's key for `outcome`.
fn after_cancel_key(outcome: crate::AfterCancel) -> &'static str {
    let at = crate::AfterCancel::ALL
        .iter()
        .position(|o| *o == outcome)
        .expect("every outcome is in ALL");
    AFTER_CANCEL_KEYS[at].0
}

/// The traffic log as the record gives it: one series per listener.
fn traffic(app: &AppHandle, started: Option<Instant>) -> TrafficRecord {
    app.traffic().with_log(|log| {
        let tick = crate::TRAFFIC_TICK;
        let ticks: Vec<_> = log.ticks().collect();
        let from = ticks
            .first()
            .map(|t| t.at.checked_sub(tick).unwrap_or(t.at));
        let from_ms = match (from, started) {
            (Some(from), Some(s)) => from.saturating_duration_since(s).as_millis() as u64,
            _ => 0,
        };
        let listeners = log
            .listeners()
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut l = ListenerTraffic {
                    name: name.to_string(),
                    ..ListenerTraffic::default()
                };
                let mut requests = Vec::with_capacity(ticks.len());
                let mut finished = Vec::with_capacity(ticks.len());
                let (sees_requests, sees_finished) = log.sees(i);
                for t in &ticks {
                    let d = t
                        .seen
                        .iter()
                        .find(|(l, _)| *l == i)
                        .map(|(_, d)| *d)
                        .unwrap_or_default();
                    l.arrivals.push(d.arrivals);
                    l.connections.push(d.connections);
                    requests.push(d.requests.unwrap_or(0));
                    finished.push(d.finished.unwrap_or(0));
                }
                l.requests = sees_requests.then_some(requests);
                l.finished = sees_finished.then_some(finished);
                l
            })
            .collect();
        TrafficRecord {
            tick_ms: tick.as_millis() as u64,
            from_ms,
            listeners,
        }
    })
}
