//! The flight record (feature `flight`): a JSON file of what one process did
//! through a shutdown — or an upgrade — written on every exit path, for an
//! operator to read afterwards with `lameduck report FILE`.
//!
//! Turn it on with [`AppBuilder::flight_record`](crate::AppBuilder::flight_record).
//! The record holds every phase (when it began and ended, and why), what
//! ended the drain, the traffic every serving listener saw per 100 ms (new
//! connections, requests started and finished) from 10 s before the signal
//! to the end, what was still in flight at Stopping and at each deadline
//! passed (every tracked item with its label and age, every connection with
//! its state), the restarts, the upgrade's steps and the exit code.
//!
//! It is written before the final log flush: at the report on a clean or a
//! late shutdown, at the report of a forced one (a second signal), and by
//! the final flush when the process ends with no report at all (the exit
//! watchdog). An upgrade that fails, or completes in place, writes one too
//! while the process goes on serving; the shutdown's record replaces it.
//! Each write goes to a temporary file renamed over the path, so a reader
//! never sees half a record, and never exceeds the size limit (1 MiB by
//! default): the longest lists are cut first, and the record says how much
//! was left out.
//!
//! The format is versioned ([`FORMAT`], [`VERSION`]) and documented field by
//! field in `docs/flight-record.md`; [`FlightRecord`] reads it back.
//!
//! # Examples
//!
//! ```no_run
//! use lameduck::App;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // One file per process: an upgrade's old and new process keep theirs.
//! let app = App::builder("orders")
//!     .flight_record("/var/lib/orders/flight-{pid}.json")
//!     .build()
//!     .unwrap();
//! let report = app.await;
//! # let _ = report;
//! # }
//! ```
//!
//! Reading one back:
//!
//! ```no_run
//! use lameduck::flight::FlightRecord;
//!
//! let text = std::fs::read_to_string("flight-4242.json").unwrap();
//! let record = FlightRecord::from_json(&text).unwrap();
//! println!("{}: {:?}", record.app, record.drain.map(|d| d.summary));
//! ```

use std::fmt;

mod recorder;
mod schema;
mod write;

pub(crate) use recorder::Recorder;
pub use schema::{
    AFTER_CANCEL_KEYS, BudgetRecord, ComponentRecord, ConnectionRecord, DrainRecord, ExitRecord,
    FlightRecord, HeldRecord, Inventory, ListenerTraffic, PhaseRecord, RestartRecord, StepRecord,
    TrafficRecord, Truncated, UpgradeRecord, WorkRecord, WorkRecordItem, millis,
};

/// The `format` of every flight record.
pub const FORMAT: &str = "lameduck.flight-record";

/// The schema version this library writes and reads.
pub const VERSION: u32 = 1;

/// The fields every record of this version has; a later writer of the same
/// version may add others, which readers default.
const REQUIRED: [&str; 7] = [
    "kind",
    "app",
    "pid",
    "started_unix_ms",
    "written_ms",
    "budget",
    "phases",
];

/// The default size limit of a record, in bytes: 1 MiB.
pub const DEFAULT_LIMIT: usize = 1 << 20;

/// The smallest size limit a record may have, in bytes: 16 KiB, room for
/// everything but the long lists.
pub const MIN_LIMIT: usize = 16 << 10;

/// The largest size limit a record may have, in bytes: 64 MiB. It is also
/// the most [`read_text`] reads: a larger file is no flight record, and
/// reading it whole (a device, a log named by mistake) would take the
/// reader's memory.
pub const MAX_LIMIT: usize = 64 << 20;

/// Reads the text of a flight record from `path`: at most [`MAX_LIMIT`]
/// bytes.
///
/// # Errors
///
/// The error of opening or reading the file; [`std::io::ErrorKind::InvalidData`]
/// when it holds more than [`MAX_LIMIT`] bytes, or is not UTF-8.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_LIMIT as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_LIMIT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB: not a flight record", MAX_LIMIT >> 20),
        ));
    }
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not UTF-8: not a flight record",
        )
    })
}

impl FlightRecord {
    /// Reads a record from its JSON text.
    ///
    /// # Errors
    ///
    /// A [`FlightRecordError`] when the text is not JSON of a flight record,
    /// or a record of another format or a version this library does not
    /// know.
    pub fn from_json(text: &str) -> Result<FlightRecord, FlightRecordError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| FlightRecordError::Json(e.to_string()))?;
        let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(FlightRecordError::Format(format.to_string()));
        }
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(VERSION)) {
            return Err(FlightRecordError::Version(version));
        }
        // Fields a writer may add later default; these every record has.
        if let Some(missing) = REQUIRED.iter().find(|k| value.get(**k).is_none()) {
            return Err(FlightRecordError::Json(format!(
                "missing field `{missing}`"
            )));
        }
        serde_json::from_value(value).map_err(|e| FlightRecordError::Json(e.to_string()))
    }

    /// The record as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a record serializes")
    }

    /// The phase named `phase`, if the app went through it.
    pub fn phase(&self, phase: &str) -> Option<&PhaseRecord> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

/// A file that is not a flight record this library can read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlightRecordError {
    /// Not JSON, or JSON of another shape: the parser's message.
    Json(String),
    /// JSON with another `format` (or none).
    Format(String),
    /// A flight record of a version this library does not read.
    Version(Option<u64>),
}

impl fmt::Display for FlightRecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlightRecordError::Json(e) => write!(f, "not a flight record: {e}"),
            FlightRecordError::Format(format) if format.is_empty() => {
                write!(f, "not a flight record: no \"format\": \"{FORMAT}\"")
            }
            FlightRecordError::Format(format) => {
                write!(
                    f,
                    "not a flight record: its format is {format:?}, not {FORMAT:?}"
                )
            }
            FlightRecordError::Version(Some(v)) => write!(
                f,
                "a flight record of version {v}, which this lameduck (reading version {VERSION}) does not know"
            ),
            FlightRecordError::Version(None) => {
                write!(f, "a flight record without a version number")
            }
        }
    }
}

impl std::error::Error for FlightRecordError {}
