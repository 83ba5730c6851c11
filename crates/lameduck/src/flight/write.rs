//! Writing a record: cut to its size limit, to a temporary file, renamed
//! over the path so that a reader never sees half of one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{FlightRecord, Truncated};

/// The path a template names for this process: `{pid}` and `{app}`
/// replaced.
pub(super) fn resolve(template: &Path, app: &str) -> PathBuf {
    let text = template.to_string_lossy();
    if !text.contains('{') {
        return template.to_path_buf();
    }
    let app: String = app
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    PathBuf::from(
        text.replace("{pid}", &std::process::id().to_string())
            .replace("{app}", &app),
    )
}

/// The record as JSON of at most `limit` bytes: the longest lists are cut
/// (the oldest ticks and restarts, the youngest work, the idlest
/// connections) until it fits, and `truncated` says how much went.
pub(super) fn fit(mut record: FlightRecord, limit: usize) -> Vec<u8> {
    let mut bytes = to_bytes(&record);
    let mut cut = Truncated {
        limit_bytes: limit as u64,
        ..Truncated::default()
    };
    // Each round halves one list: a bounded number of rounds.
    for _ in 0..128 {
        if bytes.len() <= limit {
            return bytes;
        }
        if !cut_longest(&mut record, &mut cut) {
            break;
        }
        record.truncated = Some(cut.clone());
        bytes = to_bytes(&record);
    }
    if bytes.len() <= limit {
        return bytes;
    }
    // Still too long (long texts: errors, labels): the bare outline.
    let bare = FlightRecord {
        format: record.format,
        version: record.version,
        kind: record.kind,
        app: record.app,
        pid: record.pid,
        lameduck_version: record.lameduck_version,
        started_unix_ms: record.started_unix_ms,
        started_at: record.started_at,
        written_ms: record.written_ms,
        shutdown_ms: record.shutdown_ms,
        exit: record.exit,
        truncated: Some(cut),
        ..FlightRecord::default()
    };
    let bytes = to_bytes(&bare);
    if bytes.len() <= limit {
        bytes
    } else {
        Vec::new()
    }
}

fn to_bytes(record: &FlightRecord) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(record).expect("a record serializes");
    bytes.push(b'\n');
    bytes
}

/// Halves the list that weighs most; false when nothing is left to cut.
fn cut_longest(record: &mut FlightRecord, cut: &mut Truncated) -> bool {
    let connections: usize = record.inventories.iter().map(|i| i.connections.len()).sum();
    let work: usize = record.inventories.iter().map(|i| i.work.len()).sum();
    let series = record.traffic.listeners.len();
    let ticks = record
        .traffic
        .listeners
        .first()
        .map_or(0, |l| l.arrivals.len());
    // Rough bytes of each list.
    let weights = [
        connections * 160,
        work * 90,
        ticks * series * 16,
        record.restarts.len() * 120,
    ];
    let Some((which, &weight)) = weights.iter().enumerate().max_by_key(|(_, w)| **w) else {
        return false;
    };
    if weight == 0 {
        return false;
    }
    match which {
        0 => {
            for inv in &mut record.inventories {
                let keep = inv.connections.len() / 2;
                cut.connections += (inv.connections.len() - keep) as u64;
                inv.connections.truncate(keep);
            }
        }
        1 => {
            for inv in &mut record.inventories {
                let keep = inv.work.len() / 2;
                cut.work += (inv.work.len() - keep) as u64;
                inv.work.truncate(keep);
            }
        }
        2 => {
            let drop = ticks.div_ceil(2);
            cut.ticks += drop as u64;
            record.traffic.from_ms += drop as u64 * record.traffic.tick_ms;
            for l in &mut record.traffic.listeners {
                for series in [Some(&mut l.arrivals), Some(&mut l.connections)]
                    .into_iter()
                    .chain([l.requests.as_mut(), l.finished.as_mut()])
                    .flatten()
                {
                    series.drain(..drop.min(series.len()));
                }
            }
        }
        _ => {
            let drop = record.restarts.len().div_ceil(2);
            cut.restarts += drop as u64;
            record.restarts.drain(..drop);
        }
    }
    true
}

/// Writes `bytes` to `path` through a temporary file in the same
/// directory.
pub(super) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flight::{ConnectionRecord, Inventory, ListenerTraffic, WorkRecordItem};

    fn big() -> FlightRecord {
        let conn = ConnectionRecord {
            component: "http".into(),
            peer: "127.0.0.1:40000".into(),
            protocol: "http/1".into(),
            state: "idle".into(),
            ..ConnectionRecord::default()
        };
        let work = WorkRecordItem {
            tracker: "http".into(),
            label: "GET /slow".into(),
            age_ms: 1000,
            then: None,
        };
        FlightRecord {
            format: crate::flight::FORMAT.into(),
            version: crate::flight::VERSION,
            app: "svc".into(),
            inventories: vec![Inventory {
                at: "shutdown_timeout".into(),
                work: vec![work; 5_000],
                connections: vec![conn; 20_000],
                ..Inventory::default()
            }],
            traffic: crate::flight::TrafficRecord {
                tick_ms: 100,
                from_ms: 0,
                listeners: vec![ListenerTraffic {
                    name: "http".into(),
                    arrivals: vec![7; 3_000],
                    connections: vec![1; 3_000],
                    requests: Some(vec![7; 3_000]),
                    finished: Some(vec![7; 3_000]),
                }],
            },
            ..FlightRecord::default()
        }
    }

    #[test]
    fn a_record_over_its_limit_is_cut_to_fit_and_says_what_went() {
        let limit = 64 << 10;
        let bytes = fit(big(), limit);
        assert!(bytes.len() <= limit, "{} bytes", bytes.len());
        let record: FlightRecord = serde_json::from_slice(&bytes).unwrap();
        let cut = record.truncated.expect("says what was cut");
        assert!(
            cut.connections > 0 && cut.limit_bytes == limit as u64,
            "{cut:?}"
        );
        let kept = record.inventories[0].connections.len() as u64;
        assert_eq!(kept + cut.connections, 20_000);
        let l = &record.traffic.listeners[0];
        assert_eq!(l.arrivals.len(), l.requests.as_ref().unwrap().len());
    }

    #[test]
    fn a_record_under_its_limit_is_whole() {
        let record = FlightRecord {
            app: "svc".into(),
            ..FlightRecord::default()
        };
        let bytes = fit(record.clone(), 16 << 10);
        let back: FlightRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn the_path_names_the_process_and_the_app() {
        let path = resolve(Path::new("/tmp/{app}-{pid}.json"), "my app");
        assert_eq!(
            path,
            PathBuf::from(format!("/tmp/my_app-{}.json", std::process::id()))
        );
    }
}
