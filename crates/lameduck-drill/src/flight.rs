//! Reading the target's flight record once the drill is over, and placing
//! it on the drill's clock.
//!
//! The clocks are aligned by wall-clock time on this host: the record says
//! when the server's `run()` began (`started_unix_ms`), the drill noted the
//! wall clock when its load started, and both count on from there with
//! monotonic clocks. A server instant `t_ms` falls at `(started_unix_ms +
//! t_ms) × 1000 − load_start_unix_us` on the drill's timeline; the error is
//! the record's millisecond rounding plus any step of the wall clock between
//! the two readings.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lameduck::flight::FlightRecord;

use crate::report::ServerRecord;

/// How long the drill waits, once it is over, for the record to appear and
/// be complete: the server writes it just before it exits.
pub const FLIGHT_RECORD_WAIT: Duration = Duration::from_secs(5);

/// How often the file is looked at meanwhile.
const POLL: Duration = Duration::from_millis(50);

/// `template` with `{pid}` replaced by the signalled process's id.
pub(crate) fn path_for(template: &Path, pid: Option<u32>) -> String {
    let text = template.to_string_lossy();
    match pid {
        Some(pid) => text.replace("{pid}", &pid.to_string()),
        None => text.into_owned(),
    }
}

/// Microseconds since the Unix epoch, signed (a clock set before 1970 gives
/// a negative value rather than a panic).
pub(crate) fn unix_us(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Reads the record at `path`, waiting at most `wait` for one written after
/// the load started (at `load_start_unix_us`): a missing, unreadable or
/// older file is looked at again until then. What could not be used is said
/// in [`ServerRecord::error`].
pub(crate) async fn read(path: &str, load_start_unix_us: i64, wait: Duration) -> ServerRecord {
    let deadline = Instant::now() + wait;
    let mut poll = tokio::time::interval(POLL);
    loop {
        poll.tick().await;
        let error = match read_once(path, load_start_unix_us) {
            Ok(record) => return record,
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            return ServerRecord::unusable(path, error);
        }
    }
}

fn read_once(path: &str, load_start_unix_us: i64) -> Result<ServerRecord, String> {
    let text =
        lameduck::flight::read_text(std::path::Path::new(path)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no file: the target wrote no flight record there".to_owned()
            }
            _ => format!("cannot read it: {e}"),
        })?;
    let record = FlightRecord::from_json(&text).map_err(|e| format!("not a flight record: {e}"))?;
    let started_us = i64::try_from(record.started_unix_ms)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    let written_us = started_us.saturating_add(
        i64::try_from(record.written_ms)
            .unwrap_or(0)
            .saturating_mul(1000),
    );
    if written_us < load_start_unix_us {
        return Err(format!(
            "it was written {:.1}s before this drill's load started: an older record",
            (load_start_unix_us - written_us) as f64 / 1e6
        ));
    }
    Ok(ServerRecord::from_flight_record(
        path,
        &record,
        started_us - load_start_unix_us,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_in_the_path_is_the_signalled_process() {
        assert_eq!(
            path_for(Path::new("/tmp/flight-{pid}.json"), Some(42)),
            "/tmp/flight-42.json"
        );
        assert_eq!(
            path_for(Path::new("/tmp/flight.json"), Some(42)),
            "/tmp/flight.json"
        );
    }

    #[test]
    fn a_record_is_placed_by_its_wall_clock_start() {
        let dir =
            std::env::temp_dir().join(format!("lameduck-drill-flight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("record.json");
        let checked_in = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../lameduck-cli/tests/data/flight-record.json"
        );
        std::fs::copy(checked_in, &path).unwrap();
        let path = path.to_string_lossy().into_owned();
        // The load started 2 s after the server's run(): its signal at
        // 2487 ms of the record falls at 487 ms of the drill.
        let start = 1_795_999_462_119_000 + 2_000_000;
        let record = read_once(&path, start).unwrap();
        assert_eq!(record.origin_us, -2_000_000);
        assert_eq!(record.shutdown_us, Some(487_000));
        let stopping = &record.inventories[0];
        assert_eq!(
            (stopping.at.as_str(), stopping.at_us),
            ("stopping", 2_101_000)
        );
        // A record written before the load started is an older one.
        let error = read_once(&path, start + 10_000_000).unwrap_err();
        assert!(error.contains("older record"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
