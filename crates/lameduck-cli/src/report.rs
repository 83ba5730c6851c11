//! `lameduck report FILE`: a flight record (`docs/flight-record.md`),
//! rendered for a person on the terminal: what happened, when, what ended
//! the drain, and what was stuck at each deadline; with `--html OUT`, also
//! as a page drawn by the drill's HTML renderer.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use lameduck::flight::{FlightRecord, Inventory, ListenerTraffic, millis as ms};
use lameduck_drill::report::ServerRecord;

const LONG_ABOUT: &str = "\
Render a flight record for a person.

A service built on lameduck with flight_record(PATH), `lameduck run
--flight-record PATH` or `lameduck demo --flight-record PATH` writes a JSON
record of every shutdown and upgrade:
the phases with their causes, what ended the drain, the traffic every
listener saw per 100ms, what was still in flight at Stopping and at each
deadline, the restarts, the upgrade's steps and the exit code. This prints
it as text: a summary on top, then the phases, the drain, the traffic, and
every inventory of work and connections that held the shutdown up.

With --html OUT it also writes one self-contained HTML page (inline CSS and
SVG, nothing fetched), drawn like `lameduck drill --html`: a timeline of the
phases, the inventory at each deadline and the arrivals per 100 ms by
listener (times in seconds from the signal), then the tables.

Exit status:
  0   the record was rendered
  2   the file cannot be read, or is not a flight record this lameduck knows
      (another format, or a version it does not read), or OUT cannot be
      written";

/// Render a flight record (a shutdown or an upgrade) as text, or as an HTML page.
#[derive(Debug, clap::Args)]
#[command(long_about = LONG_ABOUT)]
pub struct Args {
    /// The flight record, a JSON file
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// Also write the record as one self-contained HTML page to OUT
    #[arg(long, value_name = "OUT")]
    html: Option<PathBuf>,
}

/// Runs `lameduck report`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = lameduck::flight::read_text(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let record = FlightRecord::from_json(&text).with_context(|| args.file.display().to_string())?;
    if let Some(out) = &args.html {
        let page = ServerRecord::from_signal(&args.file.display().to_string(), &record).to_html();
        std::fs::write(out, page)
            .with_context(|| format!("cannot write the HTML page to {}", out.display()))?;
    }
    let out = Text(&record).to_string();
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        result => {
            result.context("writing the report to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An offset from the signal (or from the start when there was none).
fn at(record: &FlightRecord, v: u64) -> String {
    match record.shutdown_ms {
        Some(t0) if v >= t0 => format!("+{}", ms(v - t0)),
        Some(t0) => format!("-{}", ms(t0 - v)),
        None => ms(v),
    }
}

/// The record as text.
struct Text<'a>(&'a FlightRecord);

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        writeln!(
            f,
            "{} (pid {}): {} record, lameduck {}, started {}",
            r.app, r.pid, r.kind, r.lameduck_version, r.started_at
        )?;
        if let Some(reason) = &r.reason {
            writeln!(f, "  reason: {reason}")?;
        }
        if let Some(exit) = &r.exit {
            writeln!(f, "  ended: {}, exit {}", exit.status, exit.code)?;
        }
        writeln!(f, "  budget: {}", r.budget)?;
        writeln!(f, "\nphases (from the signal):")?;
        for p in &r.phases {
            // A phase with no end was under way when the record was
            // written: it lasted at least until then.
            let lasted = match p.end_ms {
                Some(end) => ms(end.saturating_sub(p.start_ms)),
                None => format!("≥{}", ms(r.written_ms.saturating_sub(p.start_ms))),
            };
            writeln!(
                f,
                "  {:>8}  {:<11} {:>7}  {}",
                at(r, p.start_ms),
                p.phase,
                lasted,
                p.cause
            )?;
        }
        if let Some(d) = &r.drain {
            writeln!(f, "\ndrain: {}", d.summary)?;
        }
        traffic(f, r)?;
        for inv in &r.inventories {
            inventory(f, r, inv)?;
        }
        if !r.restarts.is_empty() {
            writeln!(f, "\nrestarts:")?;
            for x in &r.restarts {
                writeln!(
                    f,
                    "  {:>8}  {} (restart {}, after {}){}",
                    at(r, x.at_ms),
                    x.component,
                    x.restarts,
                    ms(x.delay_ms),
                    x.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )?;
            }
        }
        for u in &r.upgrades {
            writeln!(
                f,
                "\nupgrade at {}: {}",
                at(r, u.start_ms),
                u.outcome.as_deref().unwrap_or("under way")
            )?;
            for s in &u.steps {
                writeln!(f, "  {:>8}  {}", at(r, s.at_ms), s.step)?;
            }
            if let Some(e) = &u.error {
                // An abandoned upgrade's reason is no error.
                let what = if u.outcome.as_deref() == Some("abandoned") {
                    "why"
                } else {
                    "error"
                };
                writeln!(f, "  {what}: {e}")?;
            }
        }
        if let Some(w) = &r.work {
            write!(
                f,
                "\nwork: {} in flight at stop, {} finished, {} cancelled",
                w.in_flight_at_stop, w.finished, w.cancelled
            )?;
            if !w.after_cancel.is_empty() {
                write!(f, " ({})", w.after_cancel_summary())?;
            }
            writeln!(f, ", {} aborted, {} ended", w.aborted, w.ended)?;
        }
        if !r.components.is_empty() {
            writeln!(f, "\ncomponents:")?;
            for c in &r.components {
                writeln!(
                    f,
                    "  {:<16} {} (close: {}, restarts {})",
                    c.name, c.ended, c.close, c.restarts
                )?;
            }
        }
        if let Some(t) = &r.truncated {
            writeln!(
                f,
                "\ncut to fit {} bytes: {} work items, {} connections, {} ticks, {} restarts left out",
                t.limit_bytes, t.work, t.connections, t.ticks, t.restarts
            )?;
        }
        Ok(())
    }
}

/// Each listener's totals, and when the last arrival was sampled.
fn traffic(f: &mut fmt::Formatter<'_>, r: &FlightRecord) -> fmt::Result {
    let t = &r.traffic;
    if t.listeners.is_empty() {
        return Ok(());
    }
    writeln!(f, "\ntraffic (totals, sampled every {}):", ms(t.tick_ms))?;
    let sum = |v: &[u64]| v.iter().sum::<u64>();
    for l in &t.listeners {
        let mut line = format!(
            "  {:<16} {} arrivals, {} connections",
            l.name,
            sum(&l.arrivals),
            sum(&l.connections)
        );
        if let Some(req) = &l.requests {
            let _ = write!(line, ", {} requests", sum(req));
        }
        if let Some(done) = &l.finished {
            let _ = write!(line, ", {} finished", sum(done));
        }
        if let (Some(req), Some(done)) = (&l.requests, &l.finished) {
            // Sampling ends with the shutdown's last tick, not with the last
            // response: the rest were still running then.
            let running = sum(req).saturating_sub(sum(done));
            if running > 0 {
                let _ = write!(
                    line,
                    ", {running} still running when sampling stopped ({})",
                    at(r, sampling_end(r, l))
                );
            }
        }
        writeln!(f, "{line}")?;
        if let Some(last) = last_arrival(r, l) {
            writeln!(f, "  {:<16} last arrival sampled at {}", "", at(r, last))?;
        }
    }
    Ok(())
}

/// When `l`'s last arrival was sampled. The drain counts arrivals by the
/// time they were sampled (each sample covers the tick before it), and so
/// does this: the drain's own time of the last sample with an arrival when
/// it is this listener's, else the end of its tick as the series places it.
fn last_arrival(r: &FlightRecord, l: &ListenerTraffic) -> Option<u64> {
    let t = &r.traffic;
    let i = l.arrivals.iter().rposition(|&n| n > 0)?;
    let placed = t.from_ms + (i as u64 + 1) * t.tick_ms;
    let latest = t
        .listeners
        .iter()
        .filter_map(|o| o.arrivals.iter().rposition(|&n| n > 0))
        .max();
    match r.drain.as_ref().and_then(|d| d.last_traffic_ms) {
        // The series places ticks a tick apart; the drain knows when the
        // sample was taken.
        Some(sampled) if latest == Some(i) => Some(sampled),
        _ => Some(placed),
    }
}

/// The end of the last tick sampled.
fn sampling_end(r: &FlightRecord, l: &ListenerTraffic) -> u64 {
    let t = &r.traffic;
    t.from_ms + l.arrivals.len() as u64 * t.tick_ms
}

fn inventory(f: &mut fmt::Formatter<'_>, r: &FlightRecord, inv: &Inventory) -> fmt::Result {
    writeln!(
        f,
        "\nin flight at {} ({}): {} work, {} connections",
        inv.at,
        at(r, inv.at_ms),
        inv.work.len(),
        inv.connections.len()
    )?;
    for w in &inv.work {
        write!(
            f,
            "  work  {:<12} {:<32} age {}",
            w.tracker,
            w.label,
            ms(w.age_ms)
        )?;
        match &w.then {
            Some(then) => writeln!(f, ", then {then}")?,
            None => writeln!(f)?,
        }
    }
    for c in &inv.connections {
        writeln!(
            f,
            "  conn  {:<12} {:<22} {:<8} {:<9} {} in flight, idle {}, age {}",
            c.component,
            c.peer,
            c.protocol,
            c.state,
            c.in_flight,
            ms(c.idle_ms),
            ms(c.age_ms)
        )?;
    }
    for h in &inv.held {
        writeln!(f, "  held  {:<12} {}", h.component, h.what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_library_prints_them() {
        assert_eq!(ms(850), "850ms");
        assert_eq!(ms(1200), "1.2s");
        assert_eq!(ms(30_000), "30s");
    }
}
