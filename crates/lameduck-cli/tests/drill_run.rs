//! `lameduck drill` of a program under `lameduck run`: the real binary as
//! both, a real Python server, a real SIGHUP. `lameduck run` starts each
//! instance of its program in a process group of its own, so the drill must
//! find the new instance among the descendants of the server it spawned,
//! not only in that server's group.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use lameduck_drill::report::{ConditionStatus, Report};

fn has_python() -> bool {
    Command::new("python3")
        .args(["-c", "pass"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn restart_drill_of_a_program_under_lameduck_run_sees_each_new_instance() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = std::env::temp_dir().join(format!("lameduck-drill-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    let (json, log) = (dir.join("report.json"), dir.join("server.log"));
    let server = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/programs/naive_server.py");
    let lameduck = env!("CARGO_BIN_EXE_lameduck");
    let output = Command::new(lameduck)
        .arg("drill")
        .args(["--url", &format!("http://127.0.0.1:{port}/")])
        .args(["--signal", "HUP", "--expect", "restart"])
        .args(["--duration", "3s", "--at", "1s", "--grace-period", "10s"])
        .args([
            "--ready-timeout",
            "20s",
            "--no-progress",
            "--concurrency",
            "4",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--server-log")
        .arg(&log)
        .args(["--", lameduck, "run", "--admin", "none"])
        .args(["--listen", &format!("http=127.0.0.1:{port}")])
        .args(["--drain-delay", "0s", "--grace-period", "10s"])
        .args(["--", "python3"])
        .arg(&server)
        .args(["--graceful", "--keep-alive"])
        .output()
        .expect("run lameduck drill");
    let context = format!(
        "exit code {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let report =
        Report::from_json(&text).unwrap_or_else(|err| panic!("no report ({err})\n{context}"));
    let condition = report
        .verdict
        .conditions
        .iter()
        .find(|c| c.name == "new_process_after_each_signal")
        .unwrap_or_else(|| panic!("no new_process_after_each_signal\n{context}"));
    assert_eq!(condition.status, ConditionStatus::Pass, "{context}");
    assert_eq!(output.status.code(), Some(0), "{context}");
    // `lameduck run` replaced its program, not itself: the cleanup stops
    // it with TERM, its graceful shutdown, not with KILL once the grace
    // period has passed.
    let supervisor = report.events.signals[0]
        .pid
        .expect("the signal was delivered");
    let exit = report
        .events
        .exits
        .iter()
        .find(|e| e.pid == supervisor)
        .unwrap_or_else(|| panic!("no exit of lameduck run (pid {supervisor})\n{context}"));
    assert_eq!(
        exit.stopped_by_cleanup.as_deref(),
        Some("TERM"),
        "{context}"
    );
    assert_eq!((exit.code, exit.signal), (Some(0), None), "{context}");
    let _ = std::fs::remove_dir_all(&dir);
}
