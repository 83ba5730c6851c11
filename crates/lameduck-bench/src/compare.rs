//! Scenario (a): the drill against each kind of server, side by side. Same
//! load, same signal at the same moment; no load balancer, so what counts
//! is what failed *before the listener closed* (after that, a balancer that
//! honoured readiness would have sent nothing).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lameduck_drill::report::Report;
use lameduck_drill::{Drill, DrillConfig, Load, ServerSpec, Signal, SignalPlan};
use serde::Serialize;

use crate::kind::{Binaries, DemoTiming, ServerKind};
use crate::results;
use crate::scratch::Scratch;
use crate::table::{Table, ms};

/// One drill, the same for every kind.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Open-loop requests per second.
    pub rate: u32,
    /// The handler's latency (`/work?ms=`).
    pub work_ms: u64,
    /// How long the load runs.
    #[serde(with = "micros")]
    pub duration: Duration,
    /// When SIGTERM goes.
    #[serde(with = "micros")]
    pub at: Duration,
    /// The demo's drain delay.
    #[serde(with = "micros")]
    pub drain_delay: Duration,
    /// The grace period (the demo's budget, and the drill's wait for the exit).
    #[serde(with = "micros")]
    pub grace_period: Duration,
}

/// What one kind did, in the numbers of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The kind of server.
    pub server: ServerKind,
    /// Whether the drill's verdict passed.
    pub pass: bool,
    /// The conditions that failed.
    pub failed_conditions: Vec<String>,
    /// Requests sent.
    pub requests: u64,
    /// Requests answered 2xx.
    pub ok: u64,
    /// Failures among requests started before the listener closed.
    pub failed_before_close: u64,
    /// Those failures by class (`8 incomplete`).
    pub failed_before_close_by_class: String,
    /// Requests that started after the listener closed and failed (refused):
    /// not held against the server.
    pub not_counted_after_close: u64,
    /// Readiness turned non-2xx, after the signal.
    pub unready_after_us: Option<u64>,
    /// The listener closed, after the signal.
    pub closed_after_us: Option<u64>,
    /// The process exited, after the signal.
    pub exited_after_us: Option<u64>,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// p99 of ok responses before the signal.
    pub p99_before_us: Option<u64>,
    /// Slowest ok response between the signal and the exit.
    pub max_during_us: Option<u64>,
}

impl Row {
    fn from_report(server: ServerKind, report: &Report) -> Row {
        let q = &report.requests;
        let before_close = q.before_signal.plus(&q.after_signal);
        let signal = report.events.signals.first().map(|s| s.at_us);
        let after = |t: Option<u64>| Some(t?.saturating_sub(signal?));
        let exit = report.events.exits.first();
        Row {
            server,
            pass: report.verdict.pass,
            failed_conditions: report.failed_conditions().map(|c| c.name.clone()).collect(),
            requests: q.sent,
            ok: q.total.ok,
            failed_before_close: q.failed_before_listener_close,
            failed_before_close_by_class: before_close.describe_failures(),
            not_counted_after_close: q.not_counted.total(),
            unready_after_us: after(report.events.readiness_flip_us),
            closed_after_us: after(report.events.listener_closed_us),
            exited_after_us: after(exit.map(|e| e.at_us)),
            exit_code: exit.and_then(|e| e.code),
            p99_before_us: report.latency.before_signal.p99_us,
            max_during_us: report.latency.during.max_us,
        }
    }
}

/// Drills `kind` once. The drill starts the server itself (and kills what
/// is left of it at the end).
///
/// # Errors
///
/// When the drill cannot be carried out (the server never got ready…).
pub async fn drill(
    kind: ServerKind,
    plan: &Plan,
    bins: &Binaries,
) -> anyhow::Result<(Row, Report)> {
    let scratch = Scratch::new(kind.name())?;
    let ports = kind.ports()?;
    let timing = DemoTiming {
        drain_delay: plan.drain_delay,
        drain_quiet: None,
        grace_period: plan.grace_period,
    };
    let launch = kind.launch(bins, ports, timing);
    let mut config = DrillConfig::new(&format!(
        "http://127.0.0.1:{}/work?ms={}",
        ports.listen, plan.work_ms
    ))?;
    config.ready_url = Some(format!("http://127.0.0.1:{}/readyz", ports.admin).parse()?);
    config.load = Load::Rate {
        per_second: plan.rate,
        max_in_flight: 1000,
    };
    config.duration = plan.duration;
    config.signal = Some(SignalPlan::once(Signal::TERM, plan.at));
    config.grace_period = plan.grace_period;
    let log: PathBuf = scratch.path().join("server.log");
    config.server = ServerSpec::Spawn {
        program: launch.program.into(),
        args: launch.args.into_iter().map(OsString::from).collect(),
        log: Some(log),
    };
    let report = Drill::new(config)?.run().await.map_err(|err| {
        anyhow::anyhow!(
            "drilling {}: {err}\n--- server log (last lines)\n{}",
            kind.name(),
            scratch.tail("server.log", 20)
        )
    })?;
    Ok((Row::from_report(kind, &report), report))
}

/// The side-by-side table.
pub fn table(rows: &[Row]) -> Table {
    let mut t = Table::new(&[
        "<server",
        "<verdict",
        "requests",
        "ok",
        "<failed before close",
        "after close (not counted)",
        "unready",
        "closed",
        "exited",
        "code",
        "p99 before",
        "max during",
    ]);
    for r in rows {
        let failed = if r.failed_before_close == 0 {
            "0".to_owned()
        } else {
            format!(
                "{} ({})",
                r.failed_before_close, r.failed_before_close_by_class
            )
        };
        t.row(vec![
            r.server.name().to_owned(),
            if r.pass { "PASS" } else { "FAIL" }.to_owned(),
            r.requests.to_string(),
            r.ok.to_string(),
            failed,
            r.not_counted_after_close.to_string(),
            plus(r.unready_after_us),
            plus(r.closed_after_us),
            plus(r.exited_after_us),
            r.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            ms(r.p99_before_us),
            ms(r.max_during_us),
        ]);
    }
    t
}

fn plus(us: Option<u64>) -> String {
    match us {
        Some(us) => format!("+{}", ms(Some(us))),
        None => "never".to_owned(),
    }
}

/// Saves every drill's JSON and HTML report beside the summary.
///
/// # Errors
///
/// When a file cannot be written.
pub fn save(
    dir: &std::path::Path,
    plan: &Plan,
    rows: &[Row],
    reports: &[Report],
) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Summary<'a> {
        scenario: &'static str,
        plan: &'a Plan,
        rows: &'a [Row],
    }
    for (row, report) in rows.iter().zip(reports) {
        results::write(
            dir,
            &format!("drill-{}.json", row.server.name()),
            &report.to_json(),
        )?;
        results::write(
            dir,
            &format!("drill-{}.html", row.server.name()),
            &report.to_html(),
        )?;
    }
    results::write_json(
        dir,
        "drill-summary.json",
        &Summary {
            scenario: "drill",
            plan,
            rows,
        },
    )
}

/// Durations as integer microseconds, like the drill's own reports.
pub(crate) mod micros {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

/// An optional duration as whole microseconds, `null` when absent.
pub(crate) mod micros_opt {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::micros::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}
