//! The flight record's schema, version 1: every field is documented in
//! `docs/flight-record.md`. Times are whole milliseconds since the app's
//! `run()` began (`*_ms`), unless they say otherwise. Fields may be added in
//! later versions of the same `version`; none is renamed or removed.

use serde::{Deserialize, Serialize};

/// A flight record: what one process did through one shutdown (or one
/// upgrade), written by [`AppBuilder::flight_record`](crate::AppBuilder::flight_record).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FlightRecord {
    /// Always [`FORMAT`](super::FORMAT).
    pub format: String,
    /// The schema version, [`VERSION`](super::VERSION).
    pub version: u32,
    /// Why the record was written: `shutdown`, or `upgrade` for one written
    /// when an upgrade failed or completed in place while the process goes
    /// on serving.
    pub kind: String,
    /// The app's name.
    pub app: String,
    /// The process.
    pub pid: u32,
    /// The version of lameduck that wrote it.
    pub lameduck_version: String,
    /// When `run()` began, as milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The same, in RFC 3339 (UTC).
    pub started_at: String,
    /// When the record was written.
    pub written_ms: u64,
    /// When the shutdown was triggered; `None` in an upgrade record.
    pub shutdown_ms: Option<u64>,
    /// Why the app shut down.
    pub reason: Option<String>,
    /// The checked budget.
    pub budget: BudgetRecord,
    /// Each phase entered, in order.
    pub phases: Vec<PhaseRecord>,
    /// How Draining went, once it ended.
    pub drain: Option<DrainRecord>,
    /// What the serving listeners saw, every 100 ms.
    pub traffic: TrafficRecord,
    /// What was still in flight at each moment that asks: Stopping, each
    /// deadline passed, a forced exit.
    pub inventories: Vec<Inventory>,
    /// Every restart of a component, in order.
    pub restarts: Vec<RestartRecord>,
    /// Every upgrade this process began (or took part in), in order.
    pub upgrades: Vec<UpgradeRecord>,
    /// Each component's fate, once the report is out.
    pub components: Vec<ComponentRecord>,
    /// The shutdown's work, once settled.
    pub work: Option<WorkRecord>,
    /// How the process ends; `None` in an upgrade record.
    pub exit: Option<ExitRecord>,
    /// What was left out to keep the record under its size limit.
    pub truncated: Option<Truncated>,
}

/// The budget the shutdown ran to, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct BudgetRecord {
    /// From the first signal to `SIGKILL`.
    pub grace_period_ms: u64,
    /// Draining at least.
    pub drain_min_ms: u64,
    /// Draining at most: what the budget reserves.
    pub drain_max_ms: u64,
    /// The quiet that ends an adaptive drain, at the least.
    pub drain_quiet_ms: u64,
    /// Stopping at most.
    pub shutdown_timeout_ms: u64,
    /// Cancelling at most.
    pub hard_timeout_ms: u64,
    /// The log flush at most.
    pub log_flush_ms: u64,
}

/// A record's whole milliseconds as its readers print them: `0ms`,
/// `850ms`, `1.2s`, `30s` (seconds to a tenth from one second on).
pub fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", (ms as f64 / 100.0).round() / 10.0)
    }
}

/// The budget in one line, as `lameduck report` and its HTML page give
/// it: `grace 30s, drain 5s (fixed), shutdown 22s, hard 3s, log flush 1s`,
/// or, for a drain that ends once traffic is quiet, `drain 1s..5s (quiet
/// 500ms)`.
impl std::fmt::Display for BudgetRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = millis;
        write!(f, "grace {}, ", ms(self.grace_period_ms))?;
        if self.drain_min_ms == self.drain_max_ms {
            write!(f, "drain {} (fixed)", ms(self.drain_max_ms))?;
        } else {
            write!(
                f,
                "drain {}..{} (quiet {})",
                ms(self.drain_min_ms),
                ms(self.drain_max_ms),
                ms(self.drain_quiet_ms)
            )?;
        }
        write!(
            f,
            ", shutdown {}, hard {}, log flush {}",
            ms(self.shutdown_timeout_ms),
            ms(self.hard_timeout_ms),
            ms(self.log_flush_ms)
        )
    }
}

/// One phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PhaseRecord {
    /// `starting`, `running`, `draining`, `stopping`, `cancelling`,
    /// `closing` or `stopped`.
    pub phase: String,
    /// When it began.
    pub start_ms: u64,
    /// When it ended; the phase under way when the report came ends at the
    /// report. `None` only for the phase an upgrade record, or a record
    /// written at an exit without a report, was written in.
    pub end_ms: Option<u64>,
    /// Why it began.
    pub cause: String,
}

/// How Draining went.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct DrainRecord {
    /// What ended it: `quiet`, `drain_max`, `delay`, `nothing_left`,
    /// `signal` or `skipped`.
    pub ended: String,
    /// The same in words, as the log says it (`quiet for 500ms after
    /// 1.2s`).
    pub summary: String,
    /// When it began.
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: u64,
    /// The quiet it needed to end early; `None` for a fixed drain or too
    /// little traffic before the signal.
    pub quiet_needed_ms: Option<u64>,
    /// When the last traffic was seen (possibly before the drain).
    pub last_traffic_ms: Option<u64>,
    /// Arrivals sampled during it, every listener together.
    pub arrivals: u64,
}

/// Every listener's traffic, one value per tick.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct TrafficRecord {
    /// The tick: 100.
    pub tick_ms: u64,
    /// When the first tick begins; tick `i` covers `[from_ms + i × tick_ms,
    /// from_ms + (i + 1) × tick_ms)`.
    pub from_ms: u64,
    /// One series per listener.
    pub listeners: Vec<ListenerTraffic>,
}

/// One listener's traffic: counts per tick, all series the same length.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ListenerTraffic {
    /// The listener (a server's component name, or a `--listen` name).
    pub name: String,
    /// Arrivals: what the adaptive drain watches.
    pub arrivals: Vec<u64>,
    /// New connections accepted.
    pub connections: Vec<u64>,
    /// Requests started (probes left out); `None` when the listener cannot
    /// see requests.
    pub requests: Option<Vec<u64>>,
    /// Requests finished, when the listener can tell.
    pub finished: Option<Vec<u64>>,
}

/// What was in flight at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Inventory {
    /// The moment: `stopping`, `shutdown_timeout`, `hard_deadline`,
    /// `forced` or `exit` (the process ends without a report).
    pub at: String,
    /// When.
    pub at_ms: u64,
    /// Every tracked piece of work, oldest first.
    pub work: Vec<WorkRecordItem>,
    /// Every open connection, busy ones first.
    pub connections: Vec<ConnectionRecord>,
    /// What else held the shutdown up (at a deadline).
    pub held: Vec<HeldRecord>,
}

/// One tracked piece of work.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WorkRecordItem {
    /// Its tracker (usually its component).
    pub tracker: String,
    /// Its label (`GET /report`).
    pub label: String,
    /// How long it had been running.
    pub age_ms: u64,
    /// In the inventory at the shutdown timeout: what became of it after
    /// the cancel signal, in the report's words (`finished anyway`,
    /// `ended by the shutdown`, `answered 503`, `cut`, `aborted`; see
    /// `AfterCancel`). Absent elsewhere, and when the run ended before the
    /// work settled (a forced exit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
}

/// One open connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ConnectionRecord {
    /// The component serving it.
    pub component: String,
    /// Who is at the other end.
    pub peer: String,
    /// `http/1`, `http/2`, `upgraded` or `unknown`.
    pub protocol: String,
    /// `new` (no request yet), `idle`, `reading` (a request head part-way),
    /// `handling` (requests with the service), `writing` (responses not all
    /// on the wire), `stream` (HTTP/2 response streams open) or `upgraded`.
    pub state: String,
    /// Requests on it not over yet.
    pub in_flight: u64,
    /// Since its last byte was read.
    pub idle_ms: u64,
    /// Since it was accepted.
    pub age_ms: u64,
}

/// Something else that held the shutdown up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HeldRecord {
    /// The component.
    pub component: String,
    /// What, as the component says it.
    pub what: String,
}

/// A component's restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RestartRecord {
    /// The component.
    pub component: String,
    /// When its run ended.
    pub at_ms: u64,
    /// Restarts so far, this one included.
    pub restarts: u32,
    /// The backoff before it starts again.
    pub delay_ms: u64,
    /// Why its run ended, if it failed.
    pub error: Option<String>,
}

/// One upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct UpgradeRecord {
    /// When it began.
    pub start_ms: u64,
    /// Its steps, in order.
    pub steps: Vec<StepRecord>,
    /// `succeeded`, `in_place`, `failed` or `abandoned` (given up as
    /// the app began shutting down); `None` while under way.
    pub outcome: Option<String>,
    /// The process that serves after it, when it succeeded.
    pub new_pid: Option<u32>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One step of an upgrade.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StepRecord {
    /// When.
    pub at_ms: u64,
    /// What happened.
    pub step: String,
}

/// A component's fate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ComponentRecord {
    /// Its name.
    pub name: String,
    /// Its restarts.
    pub restarts: u32,
    /// How its last run ended: `finished`, `failed: …`, `aborted`,
    /// `never started`.
    pub ended: String,
    /// How its close went: `none`, `closed in …`, `failed: …`, `timed out
    /// after …`.
    pub close: String,
}

/// The shutdown's work.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct WorkRecord {
    /// In flight when Stopping began.
    pub in_flight_at_stop: u64,
    /// Of those, finished on their own.
    pub finished: u64,
    /// Got the cancel signal at the shutdown timeout.
    pub cancelled: u64,
    /// Of those, how many came to each end, by key: `finished` (finished
    /// anyway, a response given in full), `ended` (ended by the shutdown at
    /// a message boundary), `unavailable` (answered `503`), `cut` (a
    /// response cut short), `aborted` (still running at the hard deadline).
    /// Keys with no work are left out.
    pub after_cancel: std::collections::BTreeMap<String, u64>,
    /// Aborted at the hard deadline or a forced exit.
    pub aborted: u64,
    /// Ended on purpose by the shutdown (event streams, WebSockets).
    pub ended: u64,
}

/// The keys of [`WorkRecord::after_cancel`], each with the report's words
/// for it, in the report's order (that of `AfterCancel::ALL`).
pub const AFTER_CANCEL_KEYS: [(&str, &str); 5] = [
    ("finished", "finished anyway"),
    ("ended", "ended by the shutdown"),
    ("unavailable", "answered 503"),
    ("cut", "cut"),
    ("aborted", "aborted"),
];

impl WorkRecord {
    /// [`after_cancel`](Self::after_cancel) in the report's words and
    /// order: `1 finished anyway, 2 answered 503`. Keys this version does
    /// not know (a newer record's) come last, as they are; empty when the
    /// map is.
    pub fn after_cancel_summary(&self) -> String {
        let rank = |key: &str| {
            AFTER_CANCEL_KEYS
                .iter()
                .position(|(k, _)| *k == key)
                .unwrap_or(usize::MAX)
        };
        let mut keys: Vec<&String> = self.after_cancel.keys().collect();
        keys.sort_by_key(|k| rank(k));
        keys.into_iter()
            .map(|key| {
                let words = AFTER_CANCEL_KEYS
                    .iter()
                    .find(|(k, _)| k == key)
                    .map_or(key.as_str(), |(_, words)| words);
                format!("{} {words}", self.after_cancel[key])
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How the process ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ExitRecord {
    /// As the report says it (`clean`, `deadline exceeded`, `forced by
    /// SIGTERM`, …), or `exit without a report`.
    pub status: String,
    /// The exit code.
    pub code: u8,
}

/// How much was left out to keep the record under its size limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Truncated {
    /// The limit, in bytes.
    pub limit_bytes: u64,
    /// Work items left out of the inventories.
    pub work: u64,
    /// Connections left out of the inventories.
    pub connections: u64,
    /// Ticks of traffic left out (the oldest first).
    pub ticks: u64,
    /// Restarts left out (the oldest first).
    pub restarts: u64,
}
