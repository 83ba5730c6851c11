//! What the demo shows: phase lines for a person on a terminal, JSON log
//! lines for a log collector.

use std::io::IsTerminal;
use std::time::Duration;

use lameduck::{AppHandle, Phase, ShutdownReason, Timeline};
use tokio::time::Instant;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Output {
    /// Human phase lines on a terminal, JSON logs otherwise.
    Auto,
    /// Phase lines for a person.
    Human,
    /// JSON log lines on stderr.
    Json,
}

impl Output {
    pub(super) fn is_human(self) -> bool {
        match self {
            Output::Auto => std::io::stderr().is_terminal(),
            Output::Human => true,
            Output::Json => false,
        }
    }
}

/// Human: warnings and errors, and the steps of an upgrade; the phase lines
/// say the rest, and the report of a forced exit (see [`ForcedReport`]).
/// JSON: every event at info and above, each line with the `pid`.
/// `RUST_LOG` overrides either.
pub(super) fn init_logging(human: bool) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(if human {
            "warn,lameduck::upgrade=info"
        } else {
            "info"
        })
    });
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if human {
        // A line that cannot be written is dropped (see `run/output.rs`).
        let lines = tracing_subscriber::fmt::layer()
            .compact()
            .without_time()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .log_internal_errors(false)
            .with_filter(filter);
        let _ = tracing_subscriber::registry()
            .with(lines)
            .with(ForcedReport)
            .try_init();
        return;
    }
    // Each line names its process: during a restart two processes log.
    let json = tracing_subscriber::fmt::format()
        .json()
        .flatten_event(true)
        .with_current_span(false);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(super::pid_json::WithPid::new(json))
        .try_init();
}

/// The report of a forced exit, for a person. A second signal ends the
/// process from the signal thread, right after the library logs its
/// `shutdown report` event (target `lameduck::report`): the demo never gets
/// to print the report itself, as it does after every other shutdown. This
/// layer sees that event whatever the filter of the lines above lets
/// through, and says it when its status is `forced`.
struct ForcedReport;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ForcedReport {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "lameduck::report" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if !fields.get("status").starts_with("forced") {
            return;
        }
        say!("{}", fields.forced_report(std::process::id()));
    }
}

/// An event's fields, as text.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The lines of a forced exit's report: what happened, and the work it
    /// left behind.
    fn forced_report(&self, pid: u32) -> String {
        let mut out = format!(
            "[pid {pid}] {}: shut down ({}) in {}ms: {}\n  phases: {}\n  work: {} in flight at stop, {} finished, {} cancelled, {} aborted",
            self.get("app"),
            self.get("reason"),
            self.get("shutdown_ms"),
            self.get("status"),
            self.get("phases"),
            self.get("in_flight_at_stop"),
            self.get("finished"),
            self.get("cancelled"),
            self.get("aborted"),
        );
        for (name, says) in [
            ("cancelled_work", "cancelled"),
            ("aborted_work", "aborted"),
            ("held", "held up"),
        ] {
            let value = self.get(name);
            if !value.is_empty() {
                out.push_str(&format!("\n  {says}: {value}"));
            }
        }
        out
    }
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name(), value.to_string()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

/// Prints a line per phase as it begins, and while work is in flight a
/// line a second saying how much. Each line starts with the pid: after
/// `SIGHUP` the old and the new process share the terminal, and each prints
/// its own phases.
pub(super) async fn phases(handle: AppHandle, timeline: Timeline) {
    let pid = std::process::id();
    let mut phases = handle.watch_phase();
    let mut since: Option<Instant> = None;
    let mut last = Phase::Starting;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let phase = *phases.borrow_and_update();
        if phase != last {
            last = phase;
            if phase.is_shutting_down() && since.is_none() {
                since = Some(Instant::now());
            }
            let at = since.map_or(format!("[pid {pid}] "), |t| {
                format!("[pid {pid}] [{:>7.3}s] ", t.elapsed().as_secs_f64())
            });
            let busy = in_flight(&handle);
            let line = match phase {
                Phase::Running => match lameduck::upgrade::parent_pid() {
                    Some(parent) => format!(
                        "running: ready, serving the sockets of pid {parent}, which drains once this one has settled; SIGHUP restarts again after that, SIGTERM or Ctrl+C stops"
                    ),
                    None => "running: ready; SIGHUP restarts with zero downtime, SIGTERM or Ctrl+C stops".to_string(),
                },
                Phase::Draining if matches!(handle.shutdown_reason(), Some(ShutdownReason::Upgraded { .. })) => {
                    let why = handle.shutdown_reason().map_or(String::new(), |r| r.to_string());
                    format!(
                        "{why}: draining for up to {} — new connections and the probes go to the new process; this one finishes what it has, keep-alive clients are told to reconnect; {busy}",
                        secs(timeline.drain_delay)
                    )
                }
                Phase::Draining => {
                    let why = handle
                        .shutdown_reason()
                        .map_or("shutdown".into(), |r| r.to_string());
                    format!(
                        "{why}: draining for up to {} — /readyz answers 503, everything still serves, clients are told to go elsewhere; {busy}",
                        secs(timeline.drain_delay)
                    )
                }
                Phase::Stopping => format!(
                    "stopping — listener closed, idle connections closed, event streams ended, WebSockets told 1001; waiting up to {} for {busy}",
                    secs(timeline.shutdown_timeout)
                ),
                Phase::Cancelling => format!(
                    "cancelling — shutdown timeout passed: handlers get the cancel signal, waiting requests get 503; {busy}; aborted in {}",
                    secs(timeline.hard_timeout)
                ),
                Phase::Closing if timeline.final_scrape_timeout.is_zero() => {
                    "closing — every component stopped; db closes last".to_string()
                }
                Phase::Closing => format!(
                    "closing — every component stopped; db closes last; /metrics waits up to {} for a final scrape of the final counts",
                    secs(timeline.final_scrape_timeout)
                ),
                Phase::Stopped => {
                    say!("{at}stopped");
                    return;
                }
                other => other.to_string(),
            };
            say!("{at}{line}");
        }
        tokio::select! {
            changed = phases.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticker.tick(), if matches!(last, Phase::Stopping | Phase::Cancelling) => {
                let busy = in_flight(&handle);
                if let Some(t) = since {
                    say!("[pid {pid}] [{:>7.3}s]   still {busy}", t.elapsed().as_secs_f64());
                }
            }
        }
    }
}

/// What the shutdown waits for, from the app's trackers: requests
/// (responses still being written, event streams and WebSockets included)
/// and the worker's jobs.
fn in_flight(handle: &AppHandle) -> String {
    let work = handle.work();
    let (r, j) = (
        work.iter().filter(|w| &*w.tracker == "http").count(),
        work.iter().filter(|w| &*w.tracker == "worker").count(),
    );
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} and {} in flight",
        plural(r, "request", "requests"),
        plural(j, "job", "jobs")
    )
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64()).replace(".000s", "s")
}
