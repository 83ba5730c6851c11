//! `lameduck run`'s exit code, its report's and its flight record's are one
//! number, with the reason, in every case its exit code tells apart: the
//! program's own end, a crash loop given up, a stop by lameduck's signal, a
//! passed deadline, a program that cannot start. (The third signal, 143,
//! is pinned in `run_flight_record.rs`.)

mod run_support;

use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use run_support::*;
use serde_json::Value;

/// How a run ended, as each of its witnesses says it.
struct Ended {
    /// lameduck's exit code.
    code: Option<i32>,
    /// The report's log line: `exit_code` and `status`.
    logged: (i64, String),
    /// The flight record's `exit`: `code` and `status`.
    recorded: (i64, String),
    /// `lameduck report PATH`'s text.
    rendered: String,
}

impl Ended {
    /// Asserts that every witness gives `code`, and that the statuses say
    /// `reason`.
    #[track_caller]
    fn says(&self, code: i32, reason: &str, log: &str) {
        assert_eq!(self.code, Some(code), "{log}");
        assert_eq!(self.logged.0, i64::from(code), "the report's line: {log}");
        assert_eq!(self.recorded.0, i64::from(code), "the record: {log}");
        assert!(self.logged.1.contains(reason), "{:?}", self.logged);
        assert_eq!(self.recorded.1, self.logged.1, "the record's status");
        assert!(
            self.rendered.contains(&format!("exit {code}")),
            "{}",
            self.rendered
        );
    }
}

/// Waits for `run` to exit, then reads its report's line and its flight
/// record at `path`.
#[track_caller]
fn ended(run: &mut Running, path: &Path) -> Ended {
    let code = run.wait();
    let report = run.event("shutdown report", |_| true);
    let text = std::fs::read_to_string(path).expect("the flight record was written");
    let record: Value = serde_json::from_str(&text).expect("the flight record is JSON");
    let rendered = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .arg("report")
        .arg(path)
        .output()
        .expect("running lameduck report");
    Ended {
        code,
        logged: (
            report["exit_code"].as_i64().unwrap(),
            report["status"].as_str().unwrap().to_string(),
        ),
        recorded: (
            record["exit"]["code"].as_i64().unwrap(),
            record["exit"]["status"].as_str().unwrap().to_string(),
        ),
        rendered: String::from_utf8_lossy(&rendered.stdout).into_owned(),
    }
}

/// `lameduck run --admin none --flight-record PATH ARGS -- PROGRAM…` run
/// to its end: checks that every witness gives `code` and says `reason`,
/// and returns the run, for its log.
#[track_caller]
fn runs_to_its_end(
    name: &str,
    args: &[&str],
    program: &[&str],
    code: i32,
    reason: &str,
) -> Running {
    let dir = Scratch::new(name);
    let path = dir.path("record.json");
    let mut all = vec!["--admin", "none", "--flight-record", path.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(program);
    let mut run = Running::start(&all);
    ended(&mut run, &path).says(code, reason, &run.log());
    run
}

#[test]
fn a_program_that_exits_3_by_itself_is_recorded_and_reported_as_exiting_3() {
    let never = ["--restart", "never"];
    runs_to_its_end(
        "exit-own",
        &never,
        &["sh", "-c", "exit 3"],
        3,
        "program exited with 3",
    );
}

#[test]
fn a_program_killed_by_a_signal_lameduck_did_not_send_is_recorded_with_128_plus_it() {
    let never = ["--restart", "never"];
    let killed = ["sh", "-c", "kill -USR1 $$"];
    runs_to_its_end(
        "exit-killed",
        &never,
        &killed,
        128 + 10,
        "program killed by signal 10",
    );
}

#[test]
fn a_crash_loop_given_up_records_the_code_lameduck_exits_with() {
    let args = [&["--restart", "on-failure"][..], FAST_RESTARTS].concat();
    let crash = ["sh", "-c", "exit 3"];
    let run = runs_to_its_end("exit-gave-up", &args, &crash, 3, "program exited with 3");
    assert!(
        run.log().contains("restart intensity exceeded"),
        "{}",
        run.log()
    );
}

/// `--restart always` gives up on a program that exits 0 each time: a
/// failure, 1, not the program's 0.
#[test]
fn a_crash_loop_of_clean_exits_given_up_is_recorded_as_a_component_failure() {
    let args = [&["--restart", "always"][..], FAST_RESTARTS].concat();
    let clean = ["sh", "-c", "exit 0"];
    runs_to_its_end("exit-always", &args, &clean, 1, "component failed");
}

#[test]
fn a_program_that_cannot_be_started_is_recorded_with_the_shell_s_code() {
    let missing = ["no-such-program-lameduck-test"];
    runs_to_its_end("exit-not-found", &[], &missing, 127, "program not started");
}

/// `lameduck run --flight-record PATH … -- sh -c SCRIPT`, once SCRIPT has
/// touched `{ready}` (after setting its traps) and, where SCRIPT writes a
/// child's pid to `{child}`, once that child runs `sleep`, stopped by
/// `SIGTERM`, with a short shutdown: checks that every witness gives `code`
/// and says `reason`; returns the run, for its log.
#[track_caller]
fn stopped_says(name: &str, script: &str, code: i32, reason: &str) -> Running {
    let dir = Scratch::new(name);
    let path = dir.path("record.json");
    let args = [
        "--flight-record",
        path.to_str().unwrap(),
        "--drain-max",
        "0s",
        "--shutdown-timeout",
        "1s",
        "--hard-timeout",
        "500ms",
    ];
    let child = dir.path("child");
    let mut run = start_ready_when_touched(
        &dir,
        &args,
        &script.replace("{child}", child.to_str().unwrap()),
    );
    if script.contains("{child}") {
        until_exec(&child, "sleep");
    }
    run.signal(Signal::SIGTERM);
    ended(&mut run, &path).says(code, reason, &run.log());
    run
}

#[test]
fn a_program_stopped_by_lameduck_s_signal_that_exits_0_is_a_clean_stop() {
    let script = "trap 'exit 0' TERM; sleep 600 & echo $! > {child}; touch {ready}; wait";
    stopped_says("exit-stop-clean", script, 0, "clean");
}

/// A program that fails on the stop signal gives its own code, and the
/// report says so, where it said `clean (0)`.
#[test]
fn a_program_that_exits_5_on_lameduck_s_stop_signal_is_recorded_as_exiting_5() {
    let script = "trap 'exit 5' TERM; sleep 600 & echo $! > {child}; touch {ready}; wait";
    stopped_says("exit-stop-5", script, 5, "program exited with 5");
}

/// The program exits 0 on the stop signal, but a child of it ignores the
/// signal and is killed at the shutdown timeout: 3, as the report says,
/// where lameduck exited 0.
#[test]
fn a_clean_exit_that_leaves_a_child_killed_at_the_deadline_is_recorded_and_exits_3() {
    let script = "trap 'exit 0' TERM; sh -c \"trap '' TERM; touch {ready}; exec sleep 600\" & wait";
    stopped_says("exit-straggler", script, 3, "deadline exceeded");
}

/// The program exits on the stop signal, but only after its child that
/// ignores it has been killed at the shutdown timeout did the log say so:
/// the program's exit is logged as it happens, before the kill.
#[test]
fn the_program_s_exit_is_logged_when_it_exits_not_when_its_group_is_killed() {
    let script = "trap 'exit 0' TERM; sh -c \"trap '' TERM; touch {ready}; exec sleep 600\" & wait";
    let log = stopped_says("exit-logged-at-once", script, 3, "deadline exceeded").log();
    let exited = log.find("the program exited: exit code 0");
    let killed = log.find("did not stop within the shutdown timeout");
    assert!(
        exited.is_some() && killed.is_some() && exited < killed,
        "{log}"
    );
}

/// `lameduck run … -- sh -c SCRIPT` where SCRIPT starts a process that
/// leaves the program's group (`setsid`) and, with `ignore` set, ignores
/// `SIGTERM`, then exits by itself with `code` once that process is in
/// place (it says so through a FIFO, with its pid): the run to its end, and
/// that process's pid. With `--restart never`, or `restart` instead.
#[track_caller]
fn leaves_a_process(name: &str, ignore: bool, code: i32) -> (Ended, Running, i32) {
    leaves_a_process_with(name, ignore, code, &["--restart", "never"])
}

#[track_caller]
fn leaves_a_process_with(
    name: &str,
    ignore: bool,
    code: i32,
    restart: &[&str],
) -> (Ended, Running, i32) {
    let dir = Scratch::new(name);
    let path = dir.path("record.json");
    let fifo = dir.path("placed");
    let pid_file = dir.path("left.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let trap = if ignore { "trap '' TERM; " } else { "" };
    // The program exits once that process is `sleep 302` (it wrote its pid
    // before its exec): the name lameduck finds for it is that one.
    let script = format!(
        "setsid sh -c \"{trap}echo \\$\\$ > {fifo}; exec sleep 302\" & read left < {fifo}; \
         i=0; while [ \"$(cat /proc/$left/comm 2>/dev/null)\" != sleep ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; \
         echo $left > {pid_file}; exit {code}",
        fifo = fifo.display(),
        pid_file = pid_file.display(),
    );
    let args = [
        &["--admin", "none"][..],
        restart,
        &["--flight-record", path.to_str().unwrap()],
        &["--shutdown-timeout", "1s", "--hard-timeout", "500ms"],
        &["--", "sh", "-c", &script],
    ]
    .concat();
    let mut run = Running::start(&args);
    let said = ended(&mut run, &path);
    let left = until_file(&pid_file).trim().parse().unwrap();
    (said, run, left)
}

/// The program exits 0 by itself and leaves a process that ignores the
/// stop signal: lameduck has to kill it, which is the shutdown's passed
/// deadline — 3, the process named in the report and the flight record —
/// where lameduck killed it unreported and exited 0.
#[test]
fn a_process_killed_after_the_program_exited_by_itself_is_reported_and_exits_3() {
    let (said, run, left) = leaves_a_process("exit-own-left-killed", true, 0);
    said.says(3, "deadline exceeded", &run.log());
    let named = format!("pid {left}: sleep 302");
    let report = run.log();
    assert!(report.contains(&named), "{report}");
    assert!(
        said.rendered.contains(&named) && said.rendered.contains("ended by the shutdown"),
        "{}",
        said.rendered
    );
    assert!(!alive(left), "the process left running was killed");
}

/// The program crashes for the last time (lameduck gives up restarting it)
/// and leaves a process that ignores the stop signal: it is the shutdown's
/// to wait for, as on every other way a program ends for good — the
/// shutdown timeout, the process named in the report and the flight record
/// as ended by the shutdown — where lameduck killed it unreported after
/// the hard timeout, with only a warning. The program's own code stands
/// (it outranks a passed deadline).
#[test]
fn what_the_last_crash_before_giving_up_left_running_is_the_shutdown_s_work() {
    let restart = [
        "--restart",
        "on-failure",
        "--max-restarts",
        "0",
        "--drain-delay",
        "0s",
    ];
    let (said, run, left) = leaves_a_process_with("crash-last-left-killed", true, 4, &restart);
    said.says(4, "program exited with 4", &run.log());
    let log = run.log();
    assert!(log.contains("giving up"), "{log}");
    let named = format!("pid {left}: sleep 302");
    assert!(log.contains(&named), "the report names it: {log}");
    assert!(
        said.rendered.contains(&named) && said.rendered.contains("ended by the shutdown"),
        "{}",
        said.rendered
    );
    assert!(
        log.contains("did not stop within the shutdown timeout"),
        "{log}"
    );
    assert!(!log.contains("outlived their grace"), "{log}");
    assert!(!alive(left), "the process left running was killed");
}

/// What a program that exits by itself leaves running, and what stops on
/// the stop signal, costs it nothing: the program's own code stands.
#[test]
fn a_process_that_stops_after_the_program_exited_by_itself_keeps_the_program_s_code() {
    let (said, run, left) = leaves_a_process("exit-own-left-stops", false, 4);
    said.says(4, "program exited with 4", &run.log());
    assert!(!alive(left), "the process left running was stopped");
}

/// The program exits 0 by itself during the drain and leaves a process
/// that ignores the stop signal: the shutdown waits for it as for the
/// program and kills it at its timeout — 3, the process named — where
/// lameduck killed it after the hard timeout and said `program exited with
/// 0 (0)`.
#[test]
fn a_process_killed_after_the_program_exited_during_the_drain_is_reported_and_exits_3() {
    let dir = Scratch::new("exit-drain-left-killed");
    let path = dir.path("record.json");
    let go = dir.path("go");
    let pid_file = dir.path("left.pid");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Ready once that process is `sleep 302` (it writes its pid before its
    // exec): the name lameduck finds for it as the drain begins is that one.
    let script = format!(
        "setsid sh -c \"trap '' TERM; echo \\$\\$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 302\" & \
         i=0; while [ \"$(cat /proc/$(cat {pid_file} 2>/dev/null)/comm 2>/dev/null)\" != sleep ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done; \
         touch {{ready}}; read go < {go}; exit 0",
        go = go.display(),
        pid_file = pid_file.display(),
    );
    let args = [
        "--flight-record",
        path.to_str().unwrap(),
        "--drain-max",
        "2s",
        "--shutdown-timeout",
        "1s",
        "--hard-timeout",
        "500ms",
    ];
    let mut run = start_ready_when_touched(&dir, &args, &script);
    let left: i32 = until_file(&pid_file).trim().parse().unwrap();
    run.signal(Signal::SIGTERM);
    run.event("phase changed", |v| v["phase"] == "draining");
    release(&go);
    let said = ended(&mut run, &path);
    said.says(3, "deadline exceeded", &run.log());
    assert!(
        said.rendered.contains(&format!("pid {left}: sleep 302")),
        "{}",
        said.rendered
    );
    assert!(!alive(left), "the process left running was killed");
}
