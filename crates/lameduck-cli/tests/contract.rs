//! What the command promises at its edges, whatever the subcommand: a bad
//! value says what is wrong with it, one exit-code table (the library's),
//! and JSON log lines that name their process.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{lameduck, run};

#[test]
fn a_budget_that_does_not_fit_exits_78_in_plan_and_demo_as_in_the_library() {
    let plan = run(&["plan", "--grace-period", "5s"]);
    plan.assert_code(78);
    assert!(plan.stderr.contains("grace period 5s"), "{}", plan.stderr);

    let demo = run(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--grace-period",
        "5s",
    ]);
    demo.assert_code(78);
    assert!(
        demo.stderr.contains("invalid shutdown budget") && demo.stderr.contains("grace period 5s"),
        "{}",
        demo.stderr
    );
}

#[test]
fn a_drain_window_error_names_the_flags_typed_in_plan_run_and_demo() {
    let window = ["--drain-max", "2s", "--drain-quiet", "3s"];
    let addrs = ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"];
    let run_argv = [&["run"][..], &window, &["--", "true"]].concat();
    let demo_argv = [&["demo"][..], &addrs, &window].concat();
    let plan_argv = [&["plan"][..], &window].concat();
    for argv in [plan_argv, run_argv, demo_argv] {
        let out = run(&argv);
        out.assert_code(78);
        assert!(
            out.stderr
                .contains("--drain-quiet 3s conflicts with --drain-max 2s"),
            "{argv:?}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("drain_quiet") && !out.stderr.contains("drain_max"),
            "{argv:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_negative_duration_exits_2_saying_it_is_negative() {
    for argv in [
        ["demo", "--drain-delay", "-1s"],
        ["plan", "--grace-period", "-30s"],
        ["drill", "--duration", "-1s"],
    ] {
        let out = run(&argv);
        out.assert_code(2);
        assert!(
            out.stderr.contains(&format!(
                "invalid value '{}' for '{} <DURATION>': a duration cannot be negative",
                argv[2], argv[1]
            )),
            "{argv:?}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("unexpected argument"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn demo_json_log_lines_carry_the_pid() {
    let mut child = lameduck()
        .args([
            "demo",
            "--output",
            "json",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--drain-delay",
            "0s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the demo");
    let pid = child.id();
    // Signalled once Running (its phase line on stderr): before `run()`
    // began, SIGTERM would still have its default action.
    let mut stderr = String::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("the demo ended before Running: {stderr}");
        }
        stderr.push_str(&line);
        if line.contains(r#""phase":"running""#) {
            break;
        }
    }
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    reader.read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "shutdown report"),
        "{stderr}"
    );
    for line in &lines {
        assert_eq!(line["pid"], pid, "{line}");
    }
}
