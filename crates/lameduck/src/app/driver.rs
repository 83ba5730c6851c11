//! The driver: one task that owns every component's state and walks the
//! phases. Components and handles talk to it through events; it alone
//! decides, so there are no races between a restart and a shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::builder::{DrainPolicy, Exporter, FinalScrapeFn, Parts};
use super::finish::Finish;
use super::signals::Listener;
use super::watchdog::Watchdog;
use super::{AppHandle, Event};
use crate::component::BoxError;
use crate::observe::{Event as Observed, Observers};
use crate::report::{Deadline, DrainReport, Ending, ExporterReport, PhaseTiming, WorkReport};
use crate::{ExitStatus, Phase, Report, ShutdownReason, Signal, Strategy, Timeline, WorkItem};

mod closing;
mod drain;
mod holdups;
mod report;
mod slot;
mod supervise;
#[cfg(all(unix, feature = "upgrade"))]
mod upgrading;

use slot::{Slot, State};

type TaskOutput = (usize, u32, Result<(), BoxError>);

/// What one turn of the event loop did.
enum Step {
    Handled,
    Deadline,
    Forced(Signal),
}

pub(crate) struct Driver {
    handle: AppHandle,
    events: mpsc::UnboundedReceiver<Event>,
    slots: Vec<Slot>,
    order: Vec<usize>,
    timeline: Timeline,
    strategy: Strategy,
    sigterm: DrainPolicy,
    sigint: DrainPolicy,
    handle_signals: bool,
    exit_watchdog: bool,
    exit_on_force: bool,
    /// The flushes and the report's status, shared with the signal thread
    /// and the exit watchdog.
    finish: Arc<Finish>,
    tasks: JoinSet<TaskOutput>,
    task_ids: HashMap<tokio::task::Id, (usize, u32)>,
    draining: CancellationToken,
    cancel: CancellationToken,
    /// The signal thread, while `run()` runs (`handle_signals`).
    signals: Option<Listener>,
    /// Where to tell the signal thread that the forced report is out.
    force_reply: Option<std::sync::mpsc::Sender<()>>,
    /// The signal that cut the drain short: a first signal that joined a
    /// shutdown begun otherwise, whose drain policy skips the drain delay,
    /// or one a program that takes its signals said cuts it
    /// ([`AppHandle::cut_drain`]).
    cut_drain: Option<Signal>,
    rng: fastrand::Rng,
    phase_started: Instant,
    phases: Vec<PhaseTiming>,
    trigger: Option<(ShutdownReason, bool)>,
    shutdown_at: Option<Instant>,
    status: ExitStatus,
    /// How Draining went, once it ended.
    drain: Option<DrainReport>,
    /// Whether the traffic is sampled: for an adaptive drain, or a flight
    /// record.
    sample_traffic: bool,
    watching: HashSet<usize>,
    work: WorkReport,
    /// Where lifecycle events go: the log, systemd, metrics, the user's.
    observers: Observers,
    /// The metrics' last scrape (or push), at Closing.
    final_scrape: Option<FinalScrapeFn>,
    /// The exporters still to flush, and those flushed.
    exporters: Vec<Exporter>,
    exported: Vec<ExporterReport>,
    #[cfg(all(unix, feature = "upgrade"))]
    upgrades: upgrading::Upgrades,
}

impl Driver {
    pub(crate) fn new(
        handle: AppHandle,
        parts: Parts,
        events: mpsc::UnboundedReceiver<Event>,
    ) -> Self {
        let slots = parts
            .components
            .into_iter()
            .map(|c| Slot::new(c, &handle))
            .collect::<Vec<_>>();
        let finish = Finish::new(
            handle.name().into(),
            parts.flushes,
            parts.timeline.log_flush,
        );
        #[cfg(feature = "flight")]
        if let Some(recorder) = &parts.recorder {
            recorder.attach(&finish);
        }
        let mut driver = Self {
            observers: Observers::new(handle.name().into(), parts.observers),
            final_scrape: parts.final_scrape,
            exporters: parts.exporters,
            exported: Vec::new(),
            handle,
            events,
            slots,
            order: parts.order,
            timeline: parts.timeline,
            strategy: parts.strategy,
            sigterm: parts.sigterm,
            sigint: parts.sigint,
            handle_signals: parts.handle_signals,
            exit_watchdog: parts.exit_watchdog,
            exit_on_force: parts.exit_on_force,
            finish,
            tasks: JoinSet::new(),
            task_ids: HashMap::new(),
            draining: CancellationToken::new(),
            cancel: CancellationToken::new(),
            signals: None,
            force_reply: None,
            cut_drain: None,
            rng: fastrand::Rng::new(),
            phase_started: Instant::now(),
            phases: Vec::new(),
            trigger: None,
            shutdown_at: None,
            status: ExitStatus::Clean,
            drain: None,
            sample_traffic: parts.sample_traffic,
            watching: HashSet::new(),
            work: WorkReport::default(),
            #[cfg(all(unix, feature = "upgrade"))]
            upgrades: upgrading::Upgrades::new(parts.upgrade),
        };
        driver.link_dependencies();
        driver
    }

    fn link_dependencies(&mut self) {
        let names: HashMap<Arc<str>, usize> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        for i in 0..self.slots.len() {
            let deps: Vec<usize> = self.slots[i].dep_names.iter().map(|n| names[n]).collect();
            for &d in &deps {
                self.slots[d].dependents.push(i);
            }
            self.slots[i].deps = deps;
        }
    }

    pub(crate) async fn run(mut self) -> Report {
        if self.handle_signals {
            match Listener::start(self.handle.clone(), self.finish.clone(), self.exit_on_force) {
                Ok(s) => self.signals = Some(s),
                Err(err) => {
                    tracing::warn!(target: "lameduck", app = %self.handle.name(), error = %err, "cannot listen for signals")
                }
            }
        }
        self.observe_systemd();
        if self.sample_traffic {
            let task = tokio::spawn(crate::traffic::Traffic::run(self.handle.clone()));
            self.handle.keep_until_stopped(task.abort_handle());
        }
        #[cfg(all(unix, feature = "upgrade"))]
        self.upgrades_start();
        self.phase_started = Instant::now();
        self.publish(&Observed::Starting {
            app: &self.handle,
            timeline: &self.timeline,
            components: self.slots.len(),
        });
        self.start_waiting();
        self.check_started();
        while self.trigger.is_none() {
            if let Step::Forced(sig) = self.step(None).await {
                // Unreachable before a trigger (the signal thread sends the
                // first signal before a second), but harmless to honour.
                return self.forced(sig).await;
            }
        }
        self.shut_down().await
    }

    /// Waits for one thing to happen and handles it.
    async fn step(&mut self, deadline: Option<Instant>) -> Step {
        let next_restart = self.slots.iter().filter_map(Slot::restart_due).min();
        if self.trigger.is_some() {
            self.watch_trackers();
        }
        tokio::select! {
            biased;
            Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                let (index, attempt, result) = match joined {
                    Ok((id, (index, attempt, result))) => {
                        self.task_ids.remove(&id);
                        (index, attempt, result.map_err(|e| e.to_string()))
                    }
                    Err(err) => {
                        let Some((index, attempt)) = self.task_ids.remove(&err.id()) else {
                            return Step::Handled;
                        };
                        let why = if err.is_panic() {
                            format!("panicked: {}", panic_message(err.into_panic()))
                        } else {
                            "aborted".to_string()
                        };
                        (index, attempt, Err(why))
                    }
                };
                self.on_exit(index, attempt, result);
            }
            Some(event) = self.events.recv() => {
                if let Some(sig) = self.on_event(event) {
                    return Step::Forced(sig);
                }
            }
            () = sleep_until(next_restart.unwrap_or_else(Instant::now)), if next_restart.is_some() => {
                let now = Instant::now();
                for slot in &mut self.slots {
                    if slot.restart_due().is_some_and(|due| due <= now) {
                        slot.state = State::Waiting;
                    }
                }
                self.start_waiting();
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => return Step::Deadline,
        }
        Step::Handled
    }

    /// Handles one event; a second signal is returned, for the caller to
    /// force the exit.
    fn on_event(&mut self, event: Event) -> Option<Signal> {
        match event {
            Event::Ready { index, attempt } => {
                let slot = &mut self.slots[index];
                if slot.state != State::Running || slot.attempt != attempt + 1 {
                    return None;
                }
                slot.ready = true;
                self.handle.health().set_started(&slot.name);
                let component = slot.name.clone();
                self.publish(&Observed::ComponentReady {
                    component: &component,
                    attempt,
                });
                self.start_waiting();
                self.check_started();
            }
            Event::Shutdown(reason) => self.trigger(reason),
            Event::Signal(sig) => self.on_signal(sig),
            Event::CutDrain(sig) => self.on_cut_drain(sig),
            Event::Force { signal, logged } => {
                self.force_reply = logged;
                return Some(signal);
            }
            Event::TrackerIdle(i) => {
                self.watching.remove(&i);
            }
            // The drain looks at the traffic again.
            Event::TrafficSampled => {}
            #[cfg(all(unix, feature = "upgrade"))]
            Event::Upgrade(request) => self.on_upgrade_request(request),
            #[cfg(all(unix, feature = "upgrade"))]
            Event::UpgradeStep(step) => self.on_upgrade_step(step),
            #[cfg(all(unix, feature = "upgrade"))]
            Event::UpgradedInPlace(result) => self.on_upgraded_in_place(result),
        }
        None
    }

    /// The first signal: it triggers the shutdown, or — when a shutdown
    /// began for another reason (`shutdown()`, an upgrade's handover, a
    /// failed component) — it joins that one. The operator asked for a
    /// graceful stop, which is under way: nothing is cut, and only a signal
    /// after this one forces the exit. A signal whose drain policy skips
    /// the drain delay (`SIGINT` from a terminal, by default) ends a drain
    /// delay still running.
    fn on_signal(&mut self, sig: Signal) {
        let Some((reason, _)) = &self.trigger else {
            self.trigger(ShutdownReason::Signal(sig));
            return;
        };
        let cut = self.handle.phase() <= Phase::Draining && !policy_drains(self.policy(sig));
        tracing::info!(target: "lameduck", app = %self.handle.name(), signal = %sig, reason = %reason, cuts_drain = cut, "{sig} during a shutdown already under way: it goes on; a second signal forces the exit");
        if cut {
            self.cut_drain.get_or_insert(sig);
        }
    }

    /// A signal that the program (taking its signals itself) says cuts the
    /// drain short: the drain ends now, and its end names the signal.
    fn on_cut_drain(&mut self, sig: Signal) {
        if self.trigger.is_none() || self.handle.phase() > Phase::Draining {
            return;
        }
        tracing::info!(target: "lameduck", app = %self.handle.name(), signal = %sig, "{sig}: the drain is cut short");
        self.cut_drain.get_or_insert(sig);
    }

    fn policy(&self, sig: Signal) -> DrainPolicy {
        match sig {
            Signal::Terminate => self.sigterm,
            Signal::Interrupt => self.sigint,
        }
    }

    fn trigger(&mut self, reason: ShutdownReason) {
        if self.trigger.is_some() {
            return;
        }
        let was_running = self.handle.phase() == Phase::Running;
        let drain = was_running
            && match &reason {
                ShutdownReason::Signal(sig) => policy_drains(self.policy(*sig)),
                ShutdownReason::Completed => false,
                _ => true,
            };
        self.handle.set_reason(reason.clone());
        self.shutdown_at = Some(Instant::now());
        self.trigger = Some((reason, drain));
    }

    fn enter(&mut self, phase: Phase, cause: &str) {
        let now = Instant::now();
        let from = self.handle.phase();
        self.phases.push(PhaseTiming {
            phase: from,
            duration: now - self.phase_started,
        });
        self.phase_started = now;
        // Before the phase is observable: whoever sees Running finds the
        // control socket bound and the PID file written.
        #[cfg(all(unix, feature = "upgrade"))]
        self.upgrades_entered(from, phase, cause);
        self.handle.set_phase(phase);
        self.publish(&Observed::PhaseChanged {
            from,
            to: phase,
            cause,
            since_shutdown: self.shutdown_at.map_or_else(Default::default, |t| now - t),
            grace_left: self
                .shutdown_at
                .map(|t| self.timeline.grace_period.saturating_sub(now - t)),
        });
    }

    /// Hands `event` to every observer: the log, systemd, metrics, the
    /// user's.
    fn publish(&self, event: &Observed<'_>) {
        self.observers.publish(event);
    }

    /// systemd hears the lifecycle too, when `NOTIFY_SOCKET` names it
    /// (feature `systemd`).
    fn observe_systemd(&mut self) {
        #[cfg(all(unix, feature = "systemd"))]
        {
            // A process started by an upgrade stays quiet until its parent
            // names it the main process.
            #[cfg(feature = "upgrade")]
            let quiet = crate::upgrade::child::is_pending();
            #[cfg(not(feature = "upgrade"))]
            let quiet = false;
            if let Some(systemd) = crate::observe::systemd::Systemd::start(&self.handle, quiet) {
                self.observers.push(Arc::new(systemd));
            }
        }
    }

    fn trackers(&self) -> Vec<crate::Tracker> {
        self.handle.trackers()
    }

    fn snapshot(&self) -> Vec<(usize, WorkItem)> {
        // Work a component learns of by looking (a child's processes) is
        // brought up to date first: the inventory is of this moment.
        self.handle.before_inventory();
        self.trackers()
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.snapshot().into_iter().map(move |w| (i, w)))
            .collect()
    }

    /// Spawns a watcher for each busy tracker, so that the loop wakes when it
    /// goes idle.
    fn watch_trackers(&mut self) {
        for (i, tracker) in self.trackers().into_iter().enumerate() {
            if tracker.is_empty() || !self.watching.insert(i) {
                continue;
            }
            let handle = self.handle.clone();
            tokio::spawn(async move {
                tracker.wait_idle().await;
                handle.send(Event::TrackerIdle(i));
            });
        }
    }

    fn all_done(&self) -> bool {
        self.tasks.is_empty() && self.trackers().iter().all(|t| t.is_empty())
    }

    /// Fires the stop signal of every component whose dependents have all
    /// finished, their tracked work included.
    fn fire_stops(&mut self) {
        loop {
            let mut fired = false;
            for i in 0..self.slots.len() {
                let slot = &self.slots[i];
                if slot.stop.is_cancelled() {
                    continue;
                }
                let dependents_done = slot.dependents.iter().all(|&d| {
                    self.slots[d].state != State::Running
                        && self.slots[d].tracker.is_empty()
                        && self.slots[d].stop.is_cancelled()
                });
                if dependents_done {
                    tracing::debug!(target: "lameduck", app = %self.handle.name(), component = %slot.name, "stop signal sent");
                    slot.stop.cancel();
                    fired = true;
                }
            }
            if !fired {
                return;
            }
        }
    }

    async fn shut_down(mut self) -> Report {
        let (reason, drain) = self
            .trigger
            .clone()
            .expect("shut_down runs after a trigger");
        let watchdog = self.exit_watchdog.then(|| {
            let t = &self.timeline;
            Watchdog::arm(
                self.finish.clone(),
                t.worst_case() + t.safety_margin / 2,
                t.log_flush.min(t.safety_margin / 4),
            )
        });
        let cause = reason.to_string();
        for slot in &mut self.slots {
            if matches!(slot.state, State::Waiting | State::Backoff(_)) {
                slot.state = State::Done;
                slot.ended.get_or_insert(Ending::NeverStarted);
            }
        }

        // Draining: unready at once, still serving.
        self.enter(Phase::Draining, &cause);
        self.handle.traffic().keep_from_now();
        self.draining.cancel();
        let drained = if drain && !self.timeline.drain_delay.is_zero() {
            self.publish(&Observed::DrainStarted {
                max: self.timeline.drain_max(),
            });
            match self.drain().await {
                Ok(drained) => drained,
                Err(sig) => return self.forced(sig).await,
            }
        } else {
            self.no_drain()
        };
        self.publish(&Observed::DrainEnded { drain: &drained });
        let ended = drained.ended.to_string();
        self.drain = Some(drained);

        // Stopping: components stop in reverse dependency order. What is
        // in flight is counted once, before the phase is observed: the
        // flight record's inventory at stopping is the same list.
        let at_stop = self.snapshot();
        self.work.in_flight_at_stop = at_stop.len();
        self.handle
            .set_work_at_stop(at_stop.iter().map(|(_, w)| w.clone()).collect());
        self.enter(Phase::Stopping, &ended);
        self.fire_stops();
        let deadline = Instant::now() + self.timeline.shutdown_timeout;
        let mut finished_in_time = true;
        while !self.all_done() {
            match self.step(Some(deadline)).await {
                Step::Deadline => {
                    finished_in_time = false;
                    break;
                }
                Step::Forced(sig) => return self.forced(sig).await,
                Step::Handled => self.fire_stops(),
            }
        }

        // Cancelling: what is left gets its cancel signal.
        let mut at_cancel = Vec::new();
        if !finished_in_time {
            self.enter(Phase::Cancelling, "shutdown timeout passed");
            self.status = self.status.worst(ExitStatus::DeadlineExceeded);
            at_cancel = self.snapshot();
            let held = self.record_holdups(Deadline::ShutdownTimeout);
            let work: Vec<WorkItem> = at_cancel.iter().map(|(_, w)| w.clone()).collect();
            self.publish(&Observed::DeadlinePassed {
                deadline: Deadline::ShutdownTimeout,
                work: &work,
                held: &self.work.held[held..],
            });
            self.cancel.cancel();
            // The stop signals keep their order: a dependency is told to
            // stop once its dependents have returned and their work is done
            // (or aborted at the hard deadline), so the work being cancelled
            // can still use it — a handler rolls back through the pool it
            // borrowed from.
            let deadline = Instant::now() + self.timeline.hard_timeout;
            while !self.all_done() {
                match self.step(Some(deadline)).await {
                    Step::Deadline => break,
                    Step::Forced(sig) => return self.forced(sig).await,
                    Step::Handled => self.fire_stops(),
                }
            }
            if !self.all_done() {
                self.abort_remaining();
            }
        }
        self.settle_work(&at_stop, at_cancel);
        self.publish(&Observed::WorkSettled { work: &self.work });

        // Closing: resources in reverse dependency order, then the flushes.
        self.enter(Phase::Closing, "every component stopped");
        if let Err(sig) = self.close_all().await {
            return self.forced(sig).await;
        }
        // How an upgrade's new process ended belongs in the report.
        #[cfg(all(unix, feature = "upgrade"))]
        if let Err(sig) = self.upgrades_finish().await {
            return self.forced(sig).await;
        }
        let report = self.report(self.handle.phase());
        self.publish(&Observed::Report(&report));
        self.finish.set_report(report.status);
        // The last line before the flush: nothing logged after it may be
        // lost with a non-blocking writer's buffer.
        self.enter(Phase::Stopped, "closed");
        self.handle.release_kept();
        self.flush().await;
        if let Some(w) = watchdog {
            w.keep_armed();
        }
        report
    }

    /// Aborts every component still running and names the work still in
    /// flight.
    fn abort_remaining(&mut self) {
        let held = self.record_holdups(Deadline::Hard);
        self.work.aborted = self.snapshot().into_iter().map(|(_, w)| w).collect();
        self.publish(&Observed::DeadlinePassed {
            deadline: Deadline::Hard,
            work: &self.work.aborted,
            held: &self.work.held[held..],
        });
        for (_, (i, _)) in self.task_ids.drain() {
            let slot = &mut self.slots[i];
            slot.state = State::Done;
            slot.ended = Some(Ending::Aborted);
            tracing::error!(target: "lameduck", app = %self.handle.name(), component = %slot.name, "aborting component still running at the hard deadline");
        }
        self.tasks.abort_all();
        // Aborted tasks stuck in blocking code never finish; waiting for
        // them would hang the shutdown, so let them go. The exit watchdog
        // covers a runtime that cannot drop them.
        self.tasks.detach_all();
        self.status = self.status.worst(ExitStatus::DeadlineExceeded);
    }

    /// The second signal: abort what is left and log the report. The signal
    /// thread logged the decision; with `exit_on_force` it runs the flushes
    /// and exits the process once told the report is out.
    async fn forced(mut self, sig: Signal) -> Report {
        self.status = ExitStatus::Forced(sig);
        let left = self.snapshot();
        self.work.aborted = left.into_iter().map(|(_, w)| w).collect();
        // What still runs is aborted below: the report says so, not that
        // it never started.
        for &(i, _) in self.task_ids.values() {
            self.slots[i].ended = Some(Ending::Aborted);
        }
        let report = self.report(self.handle.phase());
        // Observers are told before the abort tears the components down, so
        // that what they take of the moment (the flight record's inventory
        // of open connections) is the moment of the decision, as the work
        // snapshot is; told after, they raced the connections' teardown.
        self.publish(&Observed::Report(&report));
        self.tasks.abort_all();
        self.tasks.detach_all();
        self.finish.set_report(report.status);
        if let Some(reply) = self.force_reply.take() {
            let _ = reply.send(());
            // The signal thread ends the process; returning would race it
            // to the exit with whatever `main` makes of the report.
            return std::future::pending().await;
        }
        self.enter(Phase::Stopped, "forced");
        self.handle.release_kept();
        self.flush().await;
        report
    }
}

fn policy_drains(policy: DrainPolicy) -> bool {
    use std::io::IsTerminal;
    match policy {
        DrainPolicy::Always => true,
        DrainPolicy::Never => false,
        DrainPolicy::UnlessTerminal => !std::io::stdin().is_terminal(),
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string payload".to_string()
    }
}
