//! The human summary of a report, for a terminal or a CI log.

mod outcomes;
mod server;

use std::fmt::{self, Write as _};

use crate::human;
use crate::report::{ConditionStatus, LatencyStats, Notices, Report};

/// A report's plain-text summary; see [`Report::summary`].
#[derive(Debug, Clone, Copy)]
pub struct Summary<'a> {
    report: &'a Report,
}

impl Report {
    /// The summary a person reads: what was done, the counts by outcome and
    /// window, latency by phase, the events in order, and the verdict with
    /// every condition.
    pub fn summary(&self) -> Summary<'_> {
        Summary { report: self }
    }
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        writeln!(f, "lameduck drill: {}", describe_load(r))?;
        let q = &r.requests;
        write!(
            f,
            "\nrequests: {} sent, {} accounted for",
            q.sent, q.accounted
        )?;
        if q.retried > 0 {
            write!(
                f,
                " ({} sent again on a new connection, unprocessed)",
                q.retried
            )?;
        }
        writeln!(f)?;
        outcomes::table(f, r)?;
        outcomes::failed_line(f, r)?;
        outcomes::first_failures(f, r)?;
        writeln!(
            f,
            "\nlatency of ok responses  {:>9} {:>9} {:>9} {:>9} {:>7}",
            "p50", "p90", "p99", "max", "count"
        )?;
        if r.config.signal.is_some() {
            latency_row(f, "before signal", &r.latency.before_signal)?;
            latency_row(f, "during", &r.latency.during)?;
            latency_row(f, "after exit", &r.latency.after_exit)?;
        } else {
            // A plain load test has no signal to be before.
            latency_row(f, "all requests", &r.latency.all)?;
        }
        writeln!(f, "\nevents")?;
        for (at, text) in events(r) {
            writeln!(f, "  {:>9}  {text}", human::at(at))?;
        }
        if let Some(server) = &r.server {
            crate::summary::server::block(f, server)?;
        }
        writeln!(f)?;
        let verdict = if r.verdict.pass { "PASS" } else { "FAIL" };
        writeln!(f, "verdict: {verdict} ({})", expect_name(r))?;
        for c in &r.verdict.conditions {
            let mark = match c.status {
                ConditionStatus::Pass => "ok  ",
                ConditionStatus::Fail => "FAIL",
                ConditionStatus::Skipped => "skip",
            };
            writeln!(f, "  {mark} {}: {}", c.name, c.detail)?;
        }
        Ok(())
    }
}

fn expect_name(r: &Report) -> &'static str {
    match r.verdict.expect {
        crate::Expectation::Stop => "stop: no request before the listener closed may fail",
        crate::Expectation::Restart => "restart: no request may fail",
        crate::Expectation::Load => "load test: no request may fail",
    }
}

fn describe_load(r: &Report) -> String {
    let c = &r.config;
    let load = match (c.concurrency, c.rate) {
        (Some(n), _) => format!("{n} workers"),
        (_, Some(rate)) => format!("{rate} req/s"),
        _ => String::new(),
    };
    let connections = match c.connections {
        crate::ConnectionMode::Keepalive => "keep-alive",
        crate::ConnectionMode::Fresh => "fresh connections",
        crate::ConnectionMode::Mixed => "mixed connections",
    };
    let call = match &c.grpc {
        Some(_) => "gRPC POST".to_owned(),
        None => c.method.clone(),
    };
    let mut text = format!(
        "{call} {} — {load}, {connections}, HTTP/{}, {}",
        c.url,
        c.http,
        human::duration(c.duration_us)
    );
    if let (Some(signal), Some(at)) = (&c.signal, c.at_us) {
        let _ = write!(text, ", SIG{signal} at {}", human::at(at));
        if c.repeat > 1 {
            let every = c.every_us.unwrap_or_default();
            let _ = write!(text, " ×{} every {}", c.repeat, human::duration(every));
        }
    }
    text
}

fn latency_row(f: &mut fmt::Formatter<'_>, label: &str, s: &LatencyStats) -> fmt::Result {
    let cell = |v: Option<u64>| v.map_or("-".to_owned(), human::duration);
    writeln!(
        f,
        "  {label:<22} {:>9} {:>9} {:>9} {:>9} {:>7}",
        cell(s.p50_us),
        cell(s.p90_us),
        cell(s.p99_us),
        cell(s.max_us),
        s.count
    )
}

/// The report's events in time order, as text. An event of one process
/// (its exit) is timed from the last signal that process got; any other
/// from the last signal before it.
pub(crate) fn events(r: &Report) -> Vec<(u64, String)> {
    let e = &r.events;
    let mut list = Vec::new();
    let offset = |at: u64, from: Option<u64>| match from {
        Some(sent) if at >= sent => format!(" (+{})", human::duration(at - sent)),
        _ => String::new(),
    };
    let since = |at: u64| offset(at, e.signal_before(at, None).map(|(_, s)| s.at_us));
    let since_own = |at: u64, pid: u32| match e.signal_before(at, Some(pid)) {
        Some((_, s)) => offset(at, Some(s.at_us)),
        None => since(at),
    };
    let restart = r.verdict.expect == crate::Expectation::Restart;
    list.push((0, "load started".to_owned()));
    for (n, s) in e.signals.iter().enumerate() {
        // With several signals, each is numbered, as the verdict names them.
        let name = match e.signals.len() {
            1 => format!("SIG{}", s.signal),
            _ => format!("SIG{} {}", s.signal, n + 1),
        };
        let text = match (&s.error, s.pid) {
            (None, Some(pid)) => format!("{name} sent to pid {pid}"),
            (Some(error), _) => format!("{name} not sent: {error}"),
            (None, None) => format!("{name} sent"),
        };
        list.push((s.at_us, text));
    }
    let notice = |list: &mut Vec<(u64, String)>, n: &Notices, what: &str| {
        if let Some(at) = n.first_after_signal_us {
            list.push((
                at,
                format!(
                    "first {what} after the signal{} ({} in all)",
                    since(at),
                    n.after_signal
                ),
            ));
        }
    };
    notice(
        &mut list,
        &r.keepalive.connection_close,
        "`Connection: close`",
    );
    notice(&mut list, &r.keepalive.goaway, "GOAWAY");
    if restart {
        for dip in crate::verdict::restart::readiness_dips(e) {
            let until = dip.to_us.map_or(" and never 2xx again".to_owned(), |to| {
                format!(" until {}", human::at(to))
            });
            list.push((
                dip.from_us,
                format!("readiness {}{}{until}", dip.what, since(dip.from_us)),
            ));
        }
        for x in &e.restarts {
            if let (Some(new), Some(at)) = (x.new_pid, x.seen_us) {
                let old = x.pid.map_or(String::new(), |pid| format!(" to pid {pid}"));
                let signal = e.signals.get(x.signal);
                let name = signal.map_or("signal", |s| s.signal.as_str());
                list.push((
                    at,
                    format!(
                        "pid {new} holds the listening socket: the new process after {name} {}{old}{}",
                        x.signal + 1,
                        offset(at, signal.map(|s| s.at_us))
                    ),
                ));
            }
        }
    } else if let Some(at) = e.readiness_flip_us {
        list.push((at, format!("readiness answered non-2xx{}", since(at))));
    }
    if let Some(at) = e.listener_closed_us {
        list.push((
            at,
            format!("listener closed (first refused connect){}", since(at)),
        ));
    }
    for x in &e.exits {
        let how = match (x.code, x.signal) {
            (Some(code), _) => format!("with code {code}"),
            (None, Some(sig)) => match crate::Signal::from_number(sig) {
                Some(sig) => format!("on SIG{sig}"),
                None => format!("on signal {sig}"),
            },
            (None, None) => "(exit code unknown)".to_owned(),
        };
        let text = if let Some(sig) = &x.stopped_by_cleanup {
            // A KILL means the process outlived --grace-period (after the
            // drill's signal, or the cleanup's TERM): its own shutdown was
            // cut, which a verdict about the requests does not say.
            let forced = if sig == "KILL" {
                format!(
                    " (not gone within --grace-period, {:.1}s: its shutdown was cut; give --grace-period more than the server's shutdown takes)",
                    r.config.grace_period_us as f64 / 1e6
                )
            } else {
                String::new()
            };
            format!(
                "pid {} stopped by the drill's cleanup with SIG{sig}: exited {how}{forced}",
                x.pid
            )
        } else {
            format!("pid {} exited {how}{}", x.pid, since_own(x.at_us, x.pid))
        };
        list.push((x.at_us, text));
    }
    list.push((e.load_end_us, "load ended".to_owned()));
    if let Some(server) = r.server.as_ref().filter(|s| s.is_read()) {
        server::events(server, &mut list);
    }
    list.sort_by_key(|(at, _)| *at);
    list
}
