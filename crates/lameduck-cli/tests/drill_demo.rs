//! `lameduck drill` against `lameduck demo`: the real binary as both, real
//! processes, real sockets on 127.0.0.1, a real SIGTERM. The demo is built on
//! the library, so the drill's verdict on it is the library's claim under
//! test: readiness turns false before the listener closes, no request that
//! started before the close fails, keep-alive clients are told to leave, and
//! the process exits 0 within its grace period.

mod support;

use std::path::{Path, PathBuf};

use lameduck_drill::report::{ConditionStatus, Report};

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lameduck-drill-demo-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

struct Run {
    code: Option<i32>,
    report: Report,
    stdout: String,
    context: String,
}

/// `lameduck drill DRILL_ARGS -- lameduck demo DEMO_ARGS` on free loopback
/// ports, loading `/work?ms=WORK_MS`, with its JSON report read back; `dir`
/// holds the report and the demo's log.
fn drill(dir: &Path, work_ms: u32, drill_args: &[&str], demo_args: &[&str]) -> Run {
    let (port, admin) = support::free_ports();
    let (json, log) = (dir.join("report.json"), dir.join("demo.log"));
    let output = support::lameduck()
        .arg("drill")
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}/work?ms={work_ms}"),
        ])
        .args(["--ready-url", &format!("http://127.0.0.1:{admin}/readyz")])
        .args(["--grace-period", "10s", "--ready-timeout", "20s"])
        .arg("--no-progress")
        .args(drill_args)
        .arg("--json")
        .arg(&json)
        .arg("--server-log")
        .arg(&log)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_lameduck"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--grace-period", "10s"])
        .args(demo_args)
        .output()
        .expect("run lameduck drill");
    let context = support::drill_context(&output, &log);
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let report =
        Report::from_json(&text).unwrap_or_else(|err| panic!("no JSON report ({err})\n{context}"));
    Run {
        code: output.status.code(),
        report,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        context,
    }
}

#[test]
fn drill_against_the_demo_passes_with_every_request_accounted_for() {
    let dir = scratch_dir("stop");
    let Run {
        code,
        report,
        context,
        ..
    } = drill(
        &dir,
        20,
        &["--concurrency", "8", "--duration", "2s", "--at", "700ms"],
        &["--drain-delay", "300ms"],
    );
    let _ = std::fs::remove_dir_all(&dir);

    // The verdict, and each condition it rests on (none skipped).
    assert_eq!(code, Some(0), "{context}");
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
        (exit.code, exit.stopped_by_cleanup.as_deref()),
        (Some(0), None),
        "{context}"
    );
}

#[test]
fn a_restart_drill_with_a_pid_file_leaves_no_pid_file_naming_a_dead_process() {
    let dir = scratch_dir("restart");
    let pid_file = dir.join("demo.pid");
    let pid_path = pid_file.to_str().unwrap();
    let run = drill(
        &dir,
        10,
        &[
            &[
                "--signal",
                "HUP",
                "--expect",
                "restart",
                "--pid-file",
                pid_path,
            ][..],
            // The old process holds on to the service for 1 s after the
            // handover: the drill ends well after, with the successor
            // alone in charge.
            &["--concurrency", "4", "--duration", "3s", "--at", "500ms"],
        ]
        .concat(),
        // The successor drains for a second at the drill's closing TERM:
        // killed then, it would leave its PID file behind.
        &["--drain-delay", "1s", "--pid-file", pid_path],
    );
    let left = std::fs::read_to_string(&pid_file).ok();
    let _ = std::fs::remove_dir_all(&dir);
    let (report, context) = (&run.report, &run.context);
    // The verdict is not the point here (it also judges readiness across
    // the handover).
    let restart = report.events.restarts.first().expect("a restart");
    assert!(restart.new_pid.is_some(), "{context}");
    // The successor, stopped at the end, drained and exited, and removed
    // the PID file that named it.
    assert_eq!(left, None, "the PID file outlived the drill\n{context}");
}

#[test]
fn a_restart_drill_that_ends_mid_handover_waits_for_it_instead_of_stopping_the_successor() {
    let dir = scratch_dir("mid-handover");
    let run = drill(
        &dir,
        10,
        // The load ends soon after the successor takes over, while the old
        // process still stands ready to take the service back (it does for
        // a second after the handover): the cleanup comes mid-handover.
        &[
            "--signal",
            "HUP",
            "--expect",
            "restart",
            "--concurrency",
            "4",
            "--at",
            "500ms",
            "--duration",
            "700ms",
        ],
        &["--drain-delay", "1s"],
    );
    let log = std::fs::read_to_string(dir.join("demo.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let (report, context) = (&run.report, &run.context);
    let restart = report.events.restarts.first().expect("a restart");
    let (old, new) = (
        restart.pid.expect("the signalled process"),
        restart.new_pid.expect("a successor"),
    );
    let exit_of = |pid: u32| {
        report
            .events
            .exits
            .iter()
            .find(|e| e.pid == pid)
            .unwrap_or_else(|| panic!("no exit of pid {pid}\n{context}"))
    };
    // The old process finished its handover and left on its own; only then
    // was the successor stopped, cleanly.
    assert_eq!(exit_of(old).stopped_by_cleanup, None, "{context}");
    assert_eq!(
        exit_of(new).stopped_by_cleanup.as_deref(),
        Some("TERM"),
        "{context}"
    );
    assert!(exit_of(old).at_us <= exit_of(new).at_us, "{context}");
    // No error the drill caused: the old process never took the service
    // back from a successor stopped before it settled.
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(run.code, Some(0), "{context}");
}

#[test]
fn a_cancel_time_503_is_counted_by_when_it_started_and_quoted_in_the_summary() {
    let dir = scratch_dir("cancel-503");
    // Work that outlasts the shutdown timeout: the demo cancels it, and
    // its handler answers 503 long after the signal, to requests that
    // started before it.
    let run = drill(
        &dir,
        60_000,
        &["--concurrency", "2", "--at", "300ms", "--duration", "1s"],
        &["--drain-delay", "0s", "--shutdown-timeout", "200ms"],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, context) = (&run.stdout, &run.context);
    let q = &run.report.requests;
    assert!(
        q.before_signal.get(lameduck_drill::Outcome::Unavailable) > 0,
        "{context}"
    );
    // The table says its columns are when each request started, and every
    // row lines up with its header, however long its label.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains(" request started "))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("failed:"))
        .collect();
    assert!(table.len() >= 2, "{stdout}");
    let width = table[0].len();
    assert!(table.iter().all(|l| l.len() == width), "{stdout}");
    assert!(
        table
            .iter()
            .any(|l| l.trim_start().starts_with("503 after the signal")),
        "{stdout}"
    );
    // And the summary quotes what the server answered: the library's words.
    let quoted = stdout
        .lines()
        .skip_while(|l| !l.starts_with("first failures"))
        .find(|l| l.trim_start().starts_with("503 after the signal"))
        .unwrap_or_else(|| panic!("no 503 quoted\n{stdout}"));
    assert!(
        quoted.ends_with("HTTP 503 (Retry-After: 1): shutting down"),
        "{quoted}"
    );
}
