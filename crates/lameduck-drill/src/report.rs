//! The drill's report: what was done, what happened, and the verdict. Its
//! JSON form is the stable schema `lameduck.drill/v1` (documented field by
//! field in `docs/drill.md`).
//!
//! Every instant is an integer number of microseconds since the load started
//! (`*_us`), every duration an integer number of microseconds, so the JSON
//! round-trips exactly and needs no float parsing.

mod server;

use serde::{Deserialize, Serialize};

pub use server::{
    ServerDrain, ServerInventory, ServerPhase, ServerRecord, ServerRestart, ServerStep,
    ServerTraffic, ServerUpgrade,
};

use crate::outcome::Outcome;
use crate::{ConnectionMode, Expectation};

/// The schema name and version written in every report.
pub const SCHEMA: &str = "lameduck.drill/v1";

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The version of the drill that wrote it.
    pub lameduck_version: String,
    /// Wall-clock start of the load, RFC 3339, UTC.
    pub started_at: String,
    /// The drill as configured.
    pub config: ReportConfig,
    /// Signals, probes and exits.
    pub events: Events,
    /// Every request, counted by outcome and window.
    pub requests: Requests,
    /// Latency of `ok` responses by phase.
    pub latency: Latency,
    /// Whether keep-alive clients were told to leave.
    pub keepalive: KeepAlive,
    /// Requests per time bucket, for the timeline.
    pub timeline: Timeline,
    /// The first failures, with their error text.
    pub failures: Failures,
    /// Pass or fail, and why.
    pub verdict: Verdict,
    /// With a flight record asked for, the server's own account on the
    /// drill's timeline, or why it could not be read; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerRecord>,
}

/// The configuration the drill ran with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportConfig {
    /// The URL the load requests: with gRPC, the method's path on the
    /// given URL's authority (the given URL's path is not sent).
    pub url: String,
    /// The readiness URL polled during the drill, if one was given.
    pub ready_url: Option<String>,
    /// The request method.
    pub method: String,
    /// In a drill of unary gRPC calls, the method called
    /// (`package.Service/Method`); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<String>,
    /// `"1.1"` or `"2"`.
    pub http: String,
    /// How requests used connections.
    pub connections: ConnectionMode,
    /// Closed-loop workers (`null` with a rate).
    pub concurrency: Option<u32>,
    /// Open-loop requests per second (`null` with concurrency).
    pub rate: Option<u32>,
    /// How long the load ran.
    pub duration_us: u64,
    /// The per-request timeout.
    pub timeout_us: u64,
    /// The signal sent, `null` for a plain load test.
    pub signal: Option<String>,
    /// When the first signal was due.
    pub at_us: Option<u64>,
    /// How many signals in all.
    pub repeat: u32,
    /// Time between signals.
    pub every_us: Option<u64>,
    /// What the verdict expected: `stop`, `restart` or `load`.
    pub expect: Expectation,
    /// The grace period for the exit.
    pub grace_period_us: u64,
    /// The server: `spawn` (with `command`), `attach` (with `pid`) or `none`.
    pub server: ServerInfo,
}

/// The server the drill ran against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `spawn`, `attach` or `none`.
    pub kind: String,
    /// The command, when spawned.
    pub command: Vec<String>,
    /// The PID spawned or attached to.
    pub pid: Option<u32>,
}

/// What happened besides requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// When the load stopped starting requests.
    pub load_end_us: u64,
    /// When the drill finished observing (after waiting for the exit).
    pub end_us: u64,
    /// Each signal sent or attempted.
    pub signals: Vec<SignalEvent>,
    /// Each change seen by the readiness poller (only with a readiness URL).
    pub readiness: Vec<ReadinessChange>,
    /// When readiness was first seen answering non-2xx after the first signal.
    pub readiness_flip_us: Option<u64>,
    /// When the first connect after the first signal was refused (with no
    /// signal: the first refused connect).
    pub listener_closed_us: Option<u64>,
    /// Bare TCP connects tried to time the listener closing.
    pub connect_probes: u64,
    /// Processes seen to exit.
    pub exits: Vec<ExitEvent>,
    /// In a restart drill, what followed each signal (empty otherwise).
    #[serde(default)]
    pub restarts: Vec<RestartEvent>,
}

impl Events {
    /// The last delivered signal at or before `at_us` (to `pid`, if given),
    /// with its index in [`Events::signals`].
    pub(crate) fn signal_before(
        &self,
        at_us: u64,
        pid: Option<u32>,
    ) -> Option<(usize, &SignalEvent)> {
        self.signals.iter().enumerate().rfind(|(_, s)| {
            s.error.is_none() && s.at_us <= at_us && pid.is_none_or(|pid| s.pid == Some(pid))
        })
    }
}

/// In a restart drill, the new process that served after one signal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartEvent {
    /// The signal, as its index in [`Events::signals`].
    pub signal: usize,
    /// The process the signal went to (`null` when it was not delivered).
    pub pid: Option<u32>,
    /// The new process that held the listening socket at `until_us`
    /// (`null`: the restart was not seen).
    pub new_pid: Option<u32>,
    /// When that process was first seen holding it.
    pub seen_us: Option<u64>,
    /// A new process that held it for a while but no longer did at
    /// `until_us` (a successor that died, or was rolled back).
    pub gone_pid: Option<u32>,
    /// Until when the drill looked: just before the next signal, the end of
    /// the drill, or the moment nothing was left to look for.
    pub until_us: u64,
    /// No new process came, and none could come any more: the signalled
    /// process had exited, no process of its group was left to start
    /// another, and no `--pid-file` could name one started elsewhere. After
    /// the last signal the drill stops looking as soon as it sees this,
    /// rather than waiting out the grace period. `false` in reports
    /// written before the field existed.
    #[serde(default)]
    pub nothing_left: bool,
}

/// A signal the drill sent, or failed to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalEvent {
    /// When.
    pub at_us: u64,
    /// Which (`"TERM"`).
    pub signal: String,
    /// To which process, if one was found.
    pub pid: Option<u32>,
    /// Why it could not be sent.
    pub error: Option<String>,
}

/// A change of readiness seen by the poller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessChange {
    /// When the probe that saw it answered.
    pub at_us: u64,
    /// Whether the probe answered 2xx.
    pub ready: bool,
    /// The status, when there was an HTTP answer.
    pub status: Option<u16>,
    /// The failure class, when there was none.
    pub error: Option<Outcome>,
}

/// A process that exited while the drill watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitEvent {
    /// Which process.
    pub pid: u32,
    /// When its exit was seen.
    pub at_us: u64,
    /// The exit code (only for a process the drill spawned).
    pub code: Option<i32>,
    /// The signal that ended it (only for a process the drill spawned).
    pub signal: Option<i32>,
    /// The signal (`TERM` or `KILL`) with which the drill's cleanup, after
    /// the load, stopped it: `null` when it exited before the cleanup (on
    /// the drill's signal or on its own). `TERM` is a clean stop by the
    /// cleanup, `KILL` one it had to force.
    pub stopped_by_cleanup: Option<String>,
}

/// Request counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    /// Requests the load generator started.
    pub sent: u64,
    /// Requests with a record: always equal to `sent` unless the drill has a bug.
    pub accounted: u64,
    /// Requests sent a second time on a new connection because the server had
    /// provably not processed them.
    pub retried: u64,
    /// All requests by outcome.
    pub total: OutcomeCounts,
    /// Requests that started before the first signal.
    pub before_signal: OutcomeCounts,
    /// Requests that started after the first signal and before the listener closed.
    pub after_signal: OutcomeCounts,
    /// Requests that started after the listener closed.
    pub after_listener_close: OutcomeCounts,
    /// Failed requests that started before the listener closed (all failed
    /// requests if it never closed).
    pub failed_before_listener_close: u64,
    /// `ok` responses to requests that started after the last signalled
    /// process exited (`null` if none exited).
    pub ok_after_exit: Option<u64>,
    /// Failed requests the verdict holds against the server: in a stop
    /// drill, those that started before the listener closed; otherwise all.
    #[serde(default)]
    pub failed: u64,
    /// Failed requests the verdict does not hold against the server, by
    /// class: in a stop drill, those that started after the listener closed
    /// (nearly always `refused`: a load balancer that honoured readiness
    /// would not have sent them). All zero in other drills.
    #[serde(default)]
    pub not_counted: OutcomeCounts,
}

/// A count per outcome class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// 2xx.
    pub ok: u64,
    /// 503 (gRPC `UNAVAILABLE`) after the first signal.
    pub unavailable: u64,
    /// Other 5xx.
    pub server_error: u64,
    /// 1xx, 3xx, 4xx.
    pub other_status: u64,
    /// Connect refused.
    pub refused: u64,
    /// Connection reset.
    pub reset: u64,
    /// Response cut short.
    pub incomplete: u64,
    /// No response in time.
    pub timeout: u64,
    /// Anything else.
    pub error: u64,
}

impl OutcomeCounts {
    /// The count for one class.
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Ok => self.ok,
            Outcome::Unavailable => self.unavailable,
            Outcome::ServerError => self.server_error,
            Outcome::OtherStatus => self.other_status,
            Outcome::Refused => self.refused,
            Outcome::Reset => self.reset,
            Outcome::Incomplete => self.incomplete,
            Outcome::Timeout => self.timeout,
            Outcome::Error => self.error,
        }
    }

    /// Counts one request.
    pub fn add(&mut self, outcome: Outcome) {
        *self.get_mut(outcome) += 1;
    }

    fn get_mut(&mut self, outcome: Outcome) -> &mut u64 {
        match outcome {
            Outcome::Ok => &mut self.ok,
            Outcome::Unavailable => &mut self.unavailable,
            Outcome::ServerError => &mut self.server_error,
            Outcome::OtherStatus => &mut self.other_status,
            Outcome::Refused => &mut self.refused,
            Outcome::Reset => &mut self.reset,
            Outcome::Incomplete => &mut self.incomplete,
            Outcome::Timeout => &mut self.timeout,
            Outcome::Error => &mut self.error,
        }
    }

    /// The sum of two counts.
    pub fn plus(&self, other: &OutcomeCounts) -> OutcomeCounts {
        let mut sum = *self;
        for outcome in Outcome::ALL {
            let slot = sum.get_mut(outcome);
            *slot += other.get(outcome);
        }
        sum
    }

    /// All requests counted.
    pub fn total(&self) -> u64 {
        Outcome::ALL.iter().map(|&o| self.get(o)).sum()
    }

    /// Requests that did not end `ok`.
    pub fn failed(&self) -> u64 {
        self.total() - self.ok
    }

    /// The failure classes with a non-zero count, as `2 reset, 1 incomplete`.
    pub fn describe_failures(&self) -> String {
        self.describe_failures_for(false)
    }

    /// [`describe_failures`](Self::describe_failures), with the classes
    /// named as gRPC statuses when `grpc` (see [`Outcome::label_for`]).
    pub fn describe_failures_for(&self, grpc: bool) -> String {
        let parts: Vec<String> = Outcome::ALL
            .iter()
            .filter(|o| o.is_failure() && self.get(**o) > 0)
            .map(|o| format!("{} {}", self.get(*o), o.label_for(grpc)))
            .collect();
        parts.join(", ")
    }
}

/// Latency of `ok` responses, from when each request was due to when its
/// body was read, by when the request started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Every `ok` response.
    pub all: LatencyStats,
    /// Started before the first signal.
    pub before_signal: LatencyStats,
    /// Started between the first signal and the signalled process's exit
    /// (or the end, if it did not exit).
    pub during: LatencyStats,
    /// Started after the signalled process exited.
    pub after_exit: LatencyStats,
    /// The `ok` responses slower than the configured threshold
    /// ([`DrillConfig::slow_threshold`](crate::DrillConfig::slow_threshold));
    /// absent when none was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow: Option<SlowCount>,
}

/// How many `ok` responses took longer than a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlowCount {
    /// The threshold, from when a request was due to when its body was read.
    pub threshold_us: u64,
    /// `ok` responses strictly slower than it.
    pub count: u64,
}

/// Nearest-rank percentiles; `null` when there were no samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: Option<u64>,
    /// 90th percentile.
    pub p90_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
    /// Maximum.
    pub max_us: Option<u64>,
}

/// Drain notices seen by keep-alive clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAlive {
    /// HTTP/1.1 responses on keep-alive connections with `Connection: close`.
    pub connection_close: Notices,
    /// HTTP/2 keep-alive connections closed by the server with GOAWAY.
    pub goaway: Notices,
}

/// Counts of one kind of drain notice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notices {
    /// Seen before the first signal.
    pub before_signal: u64,
    /// Seen after it.
    pub after_signal: u64,
    /// The first one after it.
    pub first_after_signal_us: Option<u64>,
}

/// Requests by the time bucket they started in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// The width of a bucket.
    pub bucket_us: u64,
    /// Consecutive buckets from 0.
    pub buckets: Vec<Bucket>,
}

/// One time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// The bucket's start.
    pub start_us: u64,
    /// Requests that started in it, by outcome.
    pub outcomes: OutcomeCounts,
    /// p99 latency of its `ok` responses.
    pub p99_us: Option<u64>,
    /// The failures among `outcomes` that the verdict does not hold against
    /// the server (see [`Requests::not_counted`]).
    #[serde(default)]
    pub not_counted: OutcomeCounts,
}

/// Failed requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// How many failed.
    pub total: u64,
    /// The first ones of each kind with their error text (at most 20 per
    /// outcome class), in the order they ended.
    pub samples: Vec<FailureSample>,
}

/// One failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureSample {
    /// When it started.
    pub start_us: u64,
    /// When it ended.
    pub end_us: u64,
    /// Its class.
    pub outcome: Outcome,
    /// The error.
    pub detail: String,
    /// Whether the verdict holds it against the server (see
    /// [`Requests::not_counted`]).
    #[serde(default = "counted_by_default")]
    pub counted: bool,
}

/// Reports written before `counted` existed held every failure against the
/// server.
fn counted_by_default() -> bool {
    true
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether every condition passed (skipped ones do not count).
    pub pass: bool,
    /// What was expected.
    pub expect: Expectation,
    /// Each condition checked.
    pub conditions: Vec<Condition>,
}

/// One condition of the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// A stable name (`no_failures_before_listener_close`, …).
    pub name: String,
    /// Pass, fail or skipped.
    pub status: ConditionStatus,
    /// What was seen, in words.
    pub detail: String,
}

/// The status of one condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionStatus {
    /// Held.
    Pass,
    /// Did not hold.
    Fail,
    /// Could not be checked (the detail says why).
    Skipped,
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// Reads a report back from JSON.
    ///
    /// # Errors
    ///
    /// When the text is not a report, or declares another schema than
    /// [`SCHEMA`].
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        let report: Report = serde_json::from_str(text)?;
        if report.schema != SCHEMA {
            return Err(<serde_json::Error as serde::de::Error>::custom(format!(
                "schema {:?}, expected {SCHEMA:?}",
                report.schema
            )));
        }
        Ok(report)
    }

    /// The conditions that failed.
    pub fn failed_conditions(&self) -> impl Iterator<Item = &Condition> {
        self.verdict
            .conditions
            .iter()
            .filter(|c| c.status == ConditionStatus::Fail)
    }
}
