//! `lameduck run --flight-record`: a record of each shutdown, on a clean
//! stop and when signals cut it short, with the traffic seen on the
//! sockets lameduck holds and the program's processes still alive at each
//! deadline; `lameduck report` renders it.

mod run_support;

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use run_support::*;
use serde_json::Value;

/// The labels of the work in the record's inventory taken at `at`.
fn work_labels<'a>(rec: &'a Value, at: &str) -> Vec<&'a str> {
    inventory_work(rec, at)
        .iter()
        .map(|w| w["label"].as_str().unwrap())
        .collect()
}

/// `lameduck report PATH`: its exit code and its text.
fn report(path: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .arg("report")
        .arg(path)
        .output()
        .expect("running lameduck report");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_clean_stop_records_the_quiet_drain_and_the_traffic_by_socket() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = Scratch::new("flight-clean");
    let path = dir.path("record.json");
    let (mut run, port) = start_server(
        &[
            "--drain-max",
            "60s",
            "--drain-quiet",
            "300ms",
            "--flight-record",
            path.to_str().unwrap(),
        ],
        false,
    );
    traffic_for(port, Duration::from_millis(1500));
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    let rec = record(&path);
    assert_eq!(rec["app"], "lameduck-run");
    assert_eq!(rec["drain"]["ended"], "quiet", "{}", rec["drain"]);
    let summary = rec["drain"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("quiet for"), "{summary}");
    let http = rec["traffic"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "http")
        .unwrap_or_else(|| panic!("no traffic for http: {}", rec["traffic"]));
    let connections: u64 = http["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(connections > 0, "{http}");
    assert_eq!(rec["exit"]["code"], 0, "{}", rec["exit"]);
    let (code, text) = report(&path);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("quiet for"), "{text}");
}

/// `lameduck run --flight-record PATH ARGS` around a stubborn program.
fn start_stubborn(dir: &Scratch, path: &Path, args: &[&str]) -> Running {
    let mut all = vec!["--flight-record", path.to_str().unwrap()];
    all.extend_from_slice(args);
    run_support::start_stubborn(dir, &all).0
}

#[test]
fn a_second_signal_and_a_passed_deadline_are_recorded_with_the_processes_still_alive() {
    let dir = Scratch::new("flight-deadline");
    let path = dir.path("record.json");
    let mut run = start_stubborn(
        &dir,
        &path,
        &[
            "--drain-max",
            "300ms",
            "--shutdown-timeout",
            "1s",
            "--hard-timeout",
            "500ms",
        ],
    );
    run.signal(Signal::SIGTERM);
    run.event("phase changed", |v| v["phase"] == "draining");
    // The second signal is forwarded, and ignored.
    run.signal(Signal::SIGINT);
    run.event("second signal", |_| true);
    // Killed by lameduck at the shutdown timeout: 3, deadline exceeded, as
    // documented (not 128 + SIGKILL, which is for a kill lameduck did not
    // send).
    assert_eq!(run.wait(), Some(3), "{}", run.log());
    let rec = record(&path);
    let labels = work_labels(&rec, "shutdown_timeout");
    assert!(
        labels.iter().any(|l| l.contains("sleep 600")),
        "the processes still alive at the deadline: {labels:?}"
    );
    assert!(labels.iter().any(|l| l.contains("sh -c")), "{labels:?}");
    let (code, text) = report(&path);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("sleep 600"), "{text}");
}

/// A program that ignores the stop signal is SIGKILLed by lameduck at the
/// shutdown timeout: lameduck exits 3 (deadline exceeded), as its help and
/// docs/run.md say — 128 + SIGKILL is for a kill lameduck did not send.
#[test]
fn a_program_killed_by_lameduck_at_the_shutdown_timeout_makes_run_exit_3() {
    let dir = Scratch::new("flight-killed");
    let path = dir.path("record.json");
    let mut run = start_stubborn(
        &dir,
        &path,
        &[
            "--drain-max",
            "0s",
            "--shutdown-timeout",
            "1s",
            "--hard-timeout",
            "500ms",
        ],
    );
    run.signal(Signal::SIGTERM);
    run.event("did not stop within the shutdown timeout", |_| true);
    assert_eq!(run.wait(), Some(3), "{}", run.log());
    let rec = record(&path);
    assert_eq!(rec["exit"]["code"], 3);
    // Killed by lameduck at the cancel signal: ended by the shutdown, not
    // "finished anyway".
    let ends = &rec["work"]["after_cancel"];
    assert!(ends["ended"].as_u64().unwrap_or(0) >= 1, "{rec}");
    assert!(ends.get("finished").is_none(), "{rec}");
}

/// `lameduck run` takes its signals itself: the second one, which cuts the
/// drain short and is forwarded to the program, is what ended the drain in
/// the log, the report and the record — not "nothing left to drain", nor a
/// drain that went on — and the phases go on to Stopping, where the third
/// forces the exit, still leaving a record.
#[test]
fn a_second_signal_is_what_ended_the_drain_and_a_third_still_leaves_a_record() {
    let dir = Scratch::new("flight-forced");
    let path = dir.path("record.json");
    let mut run = start_stubborn(
        &dir,
        &path,
        &["--drain-max", "60s", "--grace-period", "90s"],
    );
    run.signal(Signal::SIGTERM);
    run.event("phase changed", |v| v["phase"] == "draining");
    run.signal(Signal::SIGINT);
    run.event("second signal", |_| true);
    let ended = run.event("drain ended", |_| true);
    let cut = "drain cut short by SIGINT";
    assert!(ended["message"].as_str().unwrap().contains(cut), "{ended}");
    // The program ignores it: lameduck waits in Stopping, where the third
    // signal finds it, once its processes are tracked (the program's
    // component takes them a task's hop after the phase).
    run.event("phase changed", |v| v["phase"] == "stopping");
    run.event("waiting for the program's processes to exit", |v| {
        v["processes"].as_u64() > Some(0)
    });
    run.signal(Signal::SIGTERM);
    let logged = run.event("shutdown report", |_| true);
    assert!(logged["drain"].as_str().unwrap().contains(cut), "{logged}");
    assert_eq!(run.wait(), Some(143), "{}", run.log());
    let rec = record(&path);
    assert!(rec["reason"].as_str().unwrap().contains("SIGTERM"), "{rec}");
    assert_eq!(rec["drain"]["ended"], "signal", "{}", rec["drain"]);
    assert!(
        rec["drain"]["summary"].as_str().unwrap().contains("SIGINT"),
        "{}",
        rec["drain"]
    );
    let phases: Vec<&str> = rec["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"stopping"), "{phases:?}");
    // The record says what the process did: a forced exit, 128 + SIGTERM,
    // naming the processes the SIGKILL was for.
    assert_eq!(rec["exit"]["code"], 143, "{}", rec["exit"]);
    assert_eq!(
        rec["exit"]["status"], "forced by SIGTERM (143)",
        "{}",
        rec["exit"]
    );
    let labels = work_labels(&rec, "forced");
    assert!(labels.iter().any(|l| l.contains("sleep 600")), "{labels:?}");
    let (code, text) = report(&path);
    assert_eq!(code, Some(0), "{text}");
}

/// Without a drain, Stopping begins on the app's task before the program's
/// component has looked at the program's processes, and a third signal
/// can force the exit before it looks: the inventories named none of them
/// (the component tracked them a task's hop later). The app lists them as
/// it takes each inventory; the signals come back to back here, each once
/// lameduck took the one before, nothing waiting for the component.
#[test]
fn a_stop_without_a_drain_and_a_forced_exit_at_once_still_name_the_program_s_processes() {
    let dir = Scratch::new("flight-forced-at-once");
    let path = dir.path("record.json");
    let mut run = start_stubborn(
        &dir,
        &path,
        &["--drain-delay", "0s", "--grace-period", "90s"],
    );
    run.signal(Signal::SIGTERM);
    run.event("shutting down", |_| true);
    run.signal(Signal::SIGINT);
    run.event("second signal", |_| true);
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(143), "{}", run.log());
    let rec = record(&path);
    assert_eq!(
        rec["exit"]["status"], "forced by SIGTERM (143)",
        "{}",
        rec["exit"]
    );
    for at in ["stopping", "forced"] {
        let labels = work_labels(&rec, at);
        assert!(
            labels.iter().any(|l| l.contains("sleep 600")),
            "the inventory at {at}: {labels:?}"
        );
        assert!(
            labels.iter().any(|l| l.contains("sh -c")),
            "the inventory at {at}: {labels:?}"
        );
    }
}

#[test]
fn a_zero_downtime_restart_writes_an_upgrade_record_and_the_shutdown_keeps_its_steps() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = Scratch::new("flight-restart");
    let path = dir.path("record.json");
    let (mut run, port) = start_server(&["--flight-record", path.to_str().unwrap()], false);
    assert_eq!(get(port, "/").map(|(s, _)| s), Some(200));
    run.signal(Signal::SIGHUP);
    run.event("restart complete", |_| true);
    let text = until_file(&path);
    let rec: Value = serde_json::from_str(&text).expect("the upgrade record is JSON");
    assert_eq!(rec["kind"], "upgrade", "{rec}");
    assert_eq!(rec["upgrades"][0]["outcome"], "in_place", "{rec}");
    // run restarts its program in place: no new process of run has a time
    // to become ready, and the record must not say one has.
    let first = rec["upgrades"][0]["steps"][0]["step"]
        .as_str()
        .unwrap_or_default();
    assert!(
        first.starts_with("started in place") && !first.contains("to become ready"),
        "{first}"
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    let rec = record(&path);
    assert_eq!(rec["kind"], "shutdown", "{rec}");
    assert_eq!(rec["upgrades"].as_array().map(Vec::len), Some(1), "{rec}");
}

/// The record of `lameduck run -- sleep 600` (no socket, no admin port, a
/// drain of 300ms) stopped by SIGTERM, which must exit 0.
fn record_of_a_stopped_sleep(dir: &Scratch) -> std::path::PathBuf {
    let path = dir.path("record.json");
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--drain-max",
        "300ms",
        "--flight-record",
        path.to_str().unwrap(),
        "--",
        "sleep",
        "600",
    ]);
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    path
}

#[test]
fn the_inventory_at_stopping_names_the_program_s_processes_and_every_phase_ends() {
    let dir = Scratch::new("flight-stopping");
    let path = record_of_a_stopped_sleep(&dir);
    let rec = record(&path);
    let labels = work_labels(&rec, "stopping");
    assert!(
        labels.iter().any(|l| l.contains("sleep 600")),
        "the program was alive as Stopping began: {labels:?}"
    );
    assert_eq!(rec["work"]["in_flight_at_stop"], labels.len(), "{rec}");
    let phases = rec["phases"].as_array().unwrap();
    assert_eq!(phases.last().unwrap()["phase"], "closing", "{rec}");
    assert!(
        phases.iter().all(|p| p["end_ms"].is_u64()),
        "every phase has an end: {phases:?}"
    );
    let (code, text) = report(&path);
    assert_eq!(code, Some(0), "{text}");
    let closing = text
        .lines()
        .find(|l| l.contains(" closing "))
        .unwrap_or_else(|| panic!("no closing row: {text}"));
    assert!(
        !closing.contains(" - ") && !closing.contains('≥'),
        "closing has its duration: {closing}"
    );
    assert!(
        text.contains("in flight at stopping") && text.contains("pid "),
        "{text}"
    );
}

#[test]
fn the_inventory_at_stopping_names_a_descendant_that_left_the_group_while_its_parent_lives() {
    let dir = Scratch::new("flight-escapes");
    let path = dir.path("record.json");
    let (mut run, escaped) = start_escapes(&dir, &["--flight-record", path.to_str().unwrap()]);
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(3), "{}", run.log());
    let rec = record(&path);
    let named = format!("pid {escaped}: sleep 1000");
    for at in ["stopping", "shutdown_timeout"] {
        let labels = work_labels(&rec, at);
        assert!(
            labels.iter().any(|l| *l == named),
            "{named:?} is in the inventory at {at}: {labels:?}"
        );
    }
}

#[test]
fn the_html_page_of_a_run_without_sockets_says_its_drain_was_fixed_and_no_arrivals_were_counted() {
    let dir = Scratch::new("flight-html-no-sockets");
    let path = record_of_a_stopped_sleep(&dir);

    let html = dir.path("record.html");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .arg("report")
        .arg(&path)
        .arg("--html")
        .arg(&html)
        .output()
        .expect("running lameduck report --html");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let budget = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("budget: "))
        .unwrap_or_else(|| panic!("no budget line: {text}"));
    // With nothing to watch, the drain lasts what it may: fixed, and both
    // views say it in the same words.
    assert!(budget.contains("drain 300ms (fixed)"), "{budget}");
    let page = std::fs::read_to_string(&html).expect("the page was written");
    assert!(
        page.contains(&format!("Budget: {budget}.")),
        "the page's budget differs from the text's ({budget}):\n{page}"
    );
    // No socket of lameduck's, so no arrivals were counted: the page says
    // so rather than drawing an empty chart.
    assert!(
        page.contains("no listening socket of the server's own: no arrivals were counted"),
        "{page}"
    );
}

/// A shutdown that begins while a restart stops its old instance abandons
/// the restart: the log says so (the new instance ended with the
/// shutdown, not by a failure of its own), and the old instance, killed
/// as it ignored the stop signal, ended by the shutdown in the report and
/// the flight record: it did not finish.
#[test]
fn a_restart_abandoned_by_the_shutdown_says_so_and_its_killed_instance_did_not_finish() {
    let dir = Scratch::new("flight-restart-abandoned");
    let path = dir.path("record.json");
    let marker = dir.path("first");
    // The first instance ignores the stop signal; the next one stops on it.
    let script = format!(
        "if [ -e {m} ]; then trap 'exit 0' TERM; else touch {m}; trap '' TERM; fi; touch {d}/ready.$$; while :; do sleep 0.05; done",
        m = marker.display(),
        d = dir.0.display()
    );
    let (mut run, _) = start_ready_per_instance(
        &dir,
        "ready",
        &[
            "--shutdown-timeout",
            "5s",
            "--flight-record",
            path.to_str().unwrap(),
        ],
        &script,
    );
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGHUP);
    run.event("stopping the old one", |_| true);
    run.signal(Signal::SIGTERM);
    run.event("restart abandoned by the shutdown", |_| true);
    let code = run.wait();
    let log = run.log();
    assert!(!log.contains("restart failed"), "{log}");
    let rec = record(&path);
    // Nor a failed upgrade in the record (nor in the metrics, which count
    // the same event).
    assert_eq!(rec["upgrades"][0]["outcome"], "abandoned", "{rec}");
    assert_eq!(
        code,
        rec["exit"]["code"].as_i64().map(|c| c as i32),
        "{rec}"
    );
    let at_stop = work_labels(&rec, "stopping");
    assert!(at_stop.contains(&"replaced instance"), "{rec}");
    // Killed by the restart at its grace or by the shutdown at its
    // timeout, whichever came first: ended by the shutdown either way.
    // What finished is the new instance's processes, which stop on the
    // stop signal.
    let work = &rec["work"];
    let new_ones = at_stop.iter().filter(|l| l.starts_with("pid ")).count();
    assert_eq!(work["finished"], new_ones, "{rec}");
    assert!(work["after_cancel"].get("finished").is_none(), "{rec}");
    let ended =
        work["ended"].as_u64().unwrap_or(0) + work["after_cancel"]["ended"].as_u64().unwrap_or(0);
    assert_eq!(ended, 1, "{rec}");
}
