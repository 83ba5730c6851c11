//! The server's own account of a shutdown, from its flight record
//! (`docs/flight-record.md`), re-timed onto another clock: the drill's
//! (microseconds since the load started) when a drill read it, or the
//! record's signal when `lameduck report` renders it alone.
//!
//! Every instant here is a signed number of microseconds on that clock
//! (`*_us`): the server starts before the load, so its first phases are
//! negative. Durations and ages keep the record's whole milliseconds
//! (`*_ms`).

use lameduck::flight::{
    BudgetRecord, ComponentRecord, ConnectionRecord, ExitRecord, FlightRecord, HeldRecord,
    ListenerTraffic, Truncated, WorkRecord, WorkRecordItem,
};
use serde::{Deserialize, Serialize};

/// A flight record placed on a timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerRecord {
    /// The file read.
    pub path: String,
    /// Why no record could be used (missing, not a flight record, older than
    /// the drill); `null` when it was read. Every other field is then empty.
    pub error: Option<String>,
    /// `shutdown`, or `upgrade` (written while the process went on serving).
    pub kind: String,
    /// The app's name.
    pub app: String,
    /// The process that wrote it.
    pub pid: u32,
    /// The version of lameduck that wrote it.
    pub lameduck_version: String,
    /// When the server's `run()` began, RFC 3339, UTC.
    pub started_at: String,
    /// Why it shut down.
    pub reason: Option<String>,
    /// Where the record's own clock (the server's `run()`) starts on this
    /// timeline.
    pub origin_us: i64,
    /// When the shutdown was triggered.
    pub shutdown_us: Option<i64>,
    /// When the record was written.
    pub written_us: i64,
    /// The budget it ran to, in milliseconds.
    pub budget: BudgetRecord,
    /// Each phase entered, in order.
    pub phases: Vec<ServerPhase>,
    /// How Draining went.
    pub drain: Option<ServerDrain>,
    /// What the serving listeners saw.
    pub traffic: ServerTraffic,
    /// What was still in flight at Stopping and at each deadline.
    pub inventories: Vec<ServerInventory>,
    /// Every restart of a component.
    pub restarts: Vec<ServerRestart>,
    /// Every upgrade, with its steps.
    pub upgrades: Vec<ServerUpgrade>,
    /// Each component's fate.
    pub components: Vec<ComponentRecord>,
    /// The shutdown's work, once settled.
    pub work: Option<WorkRecord>,
    /// How the process ends.
    pub exit: Option<ExitRecord>,
    /// What the record left out to keep under its size limit.
    pub truncated: Option<Truncated>,
}

/// One phase of the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerPhase {
    /// `starting`, `running`, `draining`, `stopping`, `cancelling`,
    /// `closing` or `stopped`.
    pub phase: String,
    /// When it began.
    pub start_us: i64,
    /// When it ended; `null` for the phase the record was written in.
    pub end_us: Option<i64>,
    /// Why it began.
    pub cause: String,
}

/// How the server's drain went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerDrain {
    /// What ended it: `quiet`, `drain_max`, `delay`, `nothing_left`,
    /// `signal` or `skipped`.
    pub ended: String,
    /// The same in words, as the server logged it.
    pub summary: String,
    /// When it began.
    pub start_us: i64,
    /// When it ended.
    pub end_us: i64,
    /// When the server last saw traffic.
    pub last_traffic_us: Option<i64>,
}

/// The server's traffic, one value per tick and listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerTraffic {
    /// When the first tick begins.
    pub from_us: i64,
    /// The tick, in milliseconds (100).
    pub tick_ms: u64,
    /// One series per listener, as in the record.
    pub listeners: Vec<ListenerTraffic>,
}

/// What was in flight at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerInventory {
    /// `stopping`, `shutdown_timeout`, `hard_deadline`, `forced` or `exit`.
    pub at: String,
    /// When.
    pub at_us: i64,
    /// Every tracked item: `tracker`, `label`, `age_ms`.
    pub work: Vec<WorkRecordItem>,
    /// Every open connection, with its state.
    pub connections: Vec<ConnectionRecord>,
    /// What else held the shutdown up.
    pub held: Vec<HeldRecord>,
}

/// A component's restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerRestart {
    /// The component.
    pub component: String,
    /// When its run ended.
    pub at_us: i64,
    /// Restarts so far, this one included.
    pub restarts: u32,
    /// The backoff before it starts again, in milliseconds.
    pub delay_ms: u64,
    /// Why its run ended, if it failed.
    pub error: Option<String>,
}

/// One upgrade and its steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerUpgrade {
    /// When it began.
    pub start_us: i64,
    /// Its steps, in order.
    pub steps: Vec<ServerStep>,
    /// `succeeded`, `in_place`, `failed` or `abandoned`; `null` while
    /// under way.
    pub outcome: Option<String>,
    /// The process that serves after it.
    pub new_pid: Option<u32>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One step of an upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerStep {
    /// When.
    pub at_us: i64,
    /// What happened.
    pub step: String,
}

impl ServerRecord {
    /// `record`, with its instants placed on a clock where the record's own
    /// zero (the server's `run()`) falls at `origin_us`.
    pub fn from_flight_record(path: &str, record: &FlightRecord, origin_us: i64) -> Self {
        let at =
            |ms: u64| origin_us.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX / 1000) * 1000);
        ServerRecord {
            path: path.to_owned(),
            error: None,
            kind: record.kind.clone(),
            app: record.app.clone(),
            pid: record.pid,
            lameduck_version: record.lameduck_version.clone(),
            started_at: record.started_at.clone(),
            reason: record.reason.clone(),
            origin_us,
            shutdown_us: record.shutdown_ms.map(at),
            written_us: at(record.written_ms),
            budget: record.budget.clone(),
            phases: record
                .phases
                .iter()
                .map(|p| ServerPhase {
                    phase: p.phase.clone(),
                    start_us: at(p.start_ms),
                    end_us: p.end_ms.map(at),
                    cause: p.cause.clone(),
                })
                .collect(),
            drain: record.drain.as_ref().map(|d| ServerDrain {
                ended: d.ended.clone(),
                summary: d.summary.clone(),
                start_us: at(d.start_ms),
                end_us: at(d.end_ms),
                last_traffic_us: d.last_traffic_ms.map(at),
            }),
            traffic: ServerTraffic {
                from_us: at(record.traffic.from_ms),
                tick_ms: record.traffic.tick_ms,
                listeners: record.traffic.listeners.clone(),
            },
            inventories: record
                .inventories
                .iter()
                .map(|i| ServerInventory {
                    at: i.at.clone(),
                    at_us: at(i.at_ms),
                    work: i.work.clone(),
                    connections: i.connections.clone(),
                    held: i.held.clone(),
                })
                .collect(),
            restarts: record
                .restarts
                .iter()
                .map(|r| ServerRestart {
                    component: r.component.clone(),
                    at_us: at(r.at_ms),
                    restarts: r.restarts,
                    delay_ms: r.delay_ms,
                    error: r.error.clone(),
                })
                .collect(),
            upgrades: record
                .upgrades
                .iter()
                .map(|u| ServerUpgrade {
                    start_us: at(u.start_ms),
                    steps: u
                        .steps
                        .iter()
                        .map(|s| ServerStep {
                            at_us: at(s.at_ms),
                            step: s.step.clone(),
                        })
                        .collect(),
                    outcome: u.outcome.clone(),
                    new_pid: u.new_pid,
                    error: u.error.clone(),
                })
                .collect(),
            components: record.components.clone(),
            work: record.work.clone(),
            exit: record.exit.clone(),
            truncated: record.truncated.clone(),
        }
    }

    /// `record` on its own clock, shifted so that its signal (or, in an
    /// upgrade record, its first upgrade) is at zero: what `lameduck report`
    /// shows.
    pub fn from_signal(path: &str, record: &FlightRecord) -> Self {
        let zero_ms = record
            .shutdown_ms
            .or_else(|| record.upgrades.first().map(|u| u.start_ms))
            .unwrap_or(0);
        let origin_us = -i64::try_from(zero_ms).unwrap_or(0).saturating_mul(1000);
        ServerRecord::from_flight_record(path, record, origin_us)
    }

    /// A record that could not be used, and why.
    pub fn unusable(path: &str, error: String) -> Self {
        ServerRecord {
            path: path.to_owned(),
            error: Some(error),
            ..ServerRecord::default()
        }
    }

    /// Whether a record was read.
    pub fn is_read(&self) -> bool {
        self.error.is_none()
    }

    /// The settled work in one line, `4 in flight at stop: 3 finished, 0
    /// cancelled, 0 aborted, 1 ended`, saying why the inventory at
    /// stopping lists another number, when it does; `None` without the
    /// work (a record written before the shutdown settled).
    ///
    /// The server counts once, and its inventory at stopping is the list it
    /// counted: the two differ when the record left items out of its
    /// inventories to stay under its size limit. A record from an earlier
    /// lameduck took them a moment apart (the inventory as the server
    /// entered Stopping, the count just after), so a request that started
    /// or finished in between is in one and not the other.
    pub fn work_summary(&self) -> Option<String> {
        let w = self.work.as_ref()?;
        let then = match w.after_cancel_summary() {
            s if s.is_empty() => s,
            s => format!(" ({s})"),
        };
        let mut line = format!(
            "{} in flight at stop: {} finished, {} cancelled{then}, {} aborted, {} ended",
            w.in_flight_at_stop, w.finished, w.cancelled, w.aborted, w.ended
        );
        let listed = self
            .inventories
            .iter()
            .find(|i| i.at == "stopping")
            .map(|i| i.work.len() as u64);
        if let Some(listed) = listed.filter(|&n| n != w.in_flight_at_stop) {
            let cut = self.truncated.as_ref().map_or(0, |t| t.work);
            line.push_str(&format!(
                " (counted as Stopping began, just after the inventory at stopping listed {listed}"
            ));
            if cut > 0 {
                line.push_str(&format!(
                    "; the record left {cut} work items out of its inventories to stay under its size limit)"
                ));
            } else if w.in_flight_at_stop > listed {
                let n = w.in_flight_at_stop - listed;
                line.push_str(&format!(": {n} started in between)"));
            } else {
                let n = listed - w.in_flight_at_stop;
                line.push_str(&format!(": {n} finished in between)"));
            }
        }
        Some(line)
    }

    /// The earliest and latest instants the record holds.
    pub(crate) fn span_us(&self) -> (i64, i64) {
        let mut first = self.phases.first().map_or(0, |p| p.start_us);
        if !self.traffic.listeners.is_empty() {
            first = first.min(self.traffic.from_us);
        }
        let last = self
            .phases
            .iter()
            .filter_map(|p| p.end_us)
            .chain([self.written_us])
            .max()
            .unwrap_or(self.written_us);
        (first, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record whose inventory at stopping lists `listed` work items and
    /// whose settled work counts `counted` in flight at stop.
    fn record(listed: usize, counted: u64) -> ServerRecord {
        let mut item = WorkRecordItem::default();
        item.tracker = "http".into();
        item.label = "GET /work".into();
        // The flight record's types are non-exhaustive: built field by field.
        let mut work = WorkRecord::default();
        work.in_flight_at_stop = counted;
        work.finished = counted;
        ServerRecord {
            inventories: vec![ServerInventory {
                at: "stopping".into(),
                work: vec![item; listed],
                ..ServerInventory::default()
            }],
            work: Some(work),
            ..ServerRecord::default()
        }
    }

    #[test]
    fn in_flight_at_stop_and_the_stopping_inventory_agree_or_say_why_they_differ() {
        assert_eq!(
            record(3, 3).work_summary().as_deref(),
            Some("3 in flight at stop: 3 finished, 0 cancelled, 0 aborted, 0 ended")
        );
        assert_eq!(
            record(3, 4).work_summary().as_deref(),
            Some(
                "4 in flight at stop: 4 finished, 0 cancelled, 0 aborted, 0 ended (counted as \
                 Stopping began, just after the inventory at stopping listed 3: 1 started in \
                 between)"
            )
        );
        let fewer = record(3, 2).work_summary().unwrap();
        assert!(
            fewer.ends_with("listed 3: 1 finished in between)"),
            "{fewer}"
        );
        let mut cut = record(2, 4);
        let mut truncated = Truncated::default();
        truncated.work = 2;
        cut.truncated = Some(truncated);
        let cut = cut.work_summary().unwrap();
        assert!(
            cut.ends_with(
                "listed 2; the record left 2 work items out of its inventories to stay under its \
                 size limit)"
            ),
            "{cut}"
        );
        assert_eq!(ServerRecord::default().work_summary(), None);
    }
}
