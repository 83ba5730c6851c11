//! `lameduck drill` against `lameduck demo`: the real binary as both, real
//! processes, real sockets on 127.0.0.1, a real SIGTERM. The demo is built on
//! the library, so the drill's verdict on it is the library's claim under
//! test: readiness turns false before the listener closes, no request that
//! started before the close fails, keep-alive clients are told to leave, and
//! the process exits 0 within its grace period.

mod support;

use std::path::PathBuf;

use lameduck_drill::report::{ConditionStatus, Report};

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lameduck-drill-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

#[test]
fn drill_against_the_demo_passes_with_every_request_accounted_for() {
    let (port, admin) = support::free_ports();
    let dir = scratch_dir();
    let json = dir.join("report.json");
    let log = dir.join("demo.log");
    let url = format!("http://127.0.0.1:{port}/work?ms=20");
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let output = support::lameduck()
        .arg("drill")
        .args(["--url", &url, "--ready-url", &ready])
        .args(["--concurrency", "8", "--duration", "2s", "--at", "700ms"])
        .args(["--grace-period", "10s", "--ready-timeout", "20s"])
        .arg("--no-progress")
        .arg("--json")
        .arg(&json)
        .arg("--server-log")
        .arg(&log)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_lameduck"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--drain-delay", "300ms", "--grace-period", "10s"])
        .output()
        .expect("run lameduck drill");
    let context = support::drill_context(&output, &log);
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let report =
        Report::from_json(&text).unwrap_or_else(|err| panic!("no JSON report ({err})\n{context}"));

    // The verdict, and each condition it rests on (none skipped).
    assert_eq!(output.status.code(), Some(0), "{context}");
    assert!(report.verdict.pass, "{context}");
    for name in [
        "accounting",
        "signals_delivered",
        "no_failures_before_listener_close",
        "readiness_flipped_before_listener_close",
        "exited_within_grace_period",
        "exit_code_zero",
    ] {
        let condition = report
            .verdict
            .conditions
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no condition {name}\n{context}"));
        assert_eq!(condition.status, ConditionStatus::Pass, "{name}\n{context}");
    }

    // The counts add up: every request sent has one record, counted once by
    // class, once by window and once in the timeline.
    let q = &report.requests;
    assert!(q.sent > 0, "{context}");
    assert_eq!(q.sent, q.accounted, "{context}");
    assert_eq!(q.total.total(), q.sent, "{context}");
    let windows = q
        .before_signal
        .plus(&q.after_signal)
        .plus(&q.after_listener_close);
    assert_eq!(windows, q.total, "{context}");
    let timeline: u64 = report
        .timeline
        .buckets
        .iter()
        .map(|b| b.outcomes.total())
        .sum();
    assert_eq!(timeline, q.sent, "{context}");
    assert_eq!(report.failures.total, q.total.failed(), "{context}");
    assert_eq!(q.failed_before_listener_close, 0, "{context}");

    // It served before the signal and through the drain delay, told
    // keep-alive clients to leave only after the signal, then closed and
    // exited 0 on its own.
    assert!(q.before_signal.ok > 0, "{context}");
    assert!(q.after_signal.ok > 0, "{context}");
    assert!(
        report.keepalive.connection_close.after_signal > 0,
        "{context}"
    );
    assert_eq!(
        report.keepalive.connection_close.before_signal, 0,
        "{context}"
    );
    let (flip, close) = (
        report.events.readiness_flip_us,
        report.events.listener_closed_us,
    );
    assert!(
        flip.is_some() && close.is_some() && flip < close,
        "{context}"
    );
    let exit = report.events.exits.first().expect("the demo's exit");
    assert_eq!(
        (exit.code, exit.killed_by_drill),
        (Some(0), false),
        "{context}"
    );
}
