//! `lameduck run`: what an instance started outside its process group
//! (`setsid`) is stopped with it on the paths that stop one instance while
//! lameduck goes on — a failed liveness check, a restart's failed new
//! instance: it hears the stop signal, or is killed at the hard timeout and
//! named.

mod run_support;

use nix::sys::signal::Signal;
use run_support::*;
use serde_json::Value;

/// Writes the two children an instance starts with `setsid` (each takes
/// its pid file as `$1`): `polite.sh` writes `TERM` to `$1.heard` and
/// exits at SIGTERM; `stubborn.sh` ignores SIGTERM.
fn write_children(dir: &Scratch) {
    std::fs::write(
        dir.path("polite.sh"),
        "trap 'echo TERM > \"$1.heard\"; exit 0' TERM\n\
         echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"\n\
         while :; do sleep 0.05; done\n",
    )
    .unwrap();
    std::fs::write(
        dir.path("stubborn.sh"),
        "trap '' TERM\n\
         echo $$ > \"$1.tmp\"; mv \"$1.tmp\" \"$1\"\n\
         exec sleep 1000\n",
    )
    .unwrap();
}

/// Shell commands that start both children outside the group, each with
/// its pid file `DIR/NAME.PID` (PID the instance's), and wait (bounded)
/// until both have written it.
fn start_children(dir: &Scratch) -> String {
    format!(
        "setsid sh {d}/polite.sh {d}/polite.$$ & setsid sh {d}/stubborn.sh {d}/stubborn.$$ & \
         i=0; while {{ [ ! -e {d}/polite.$$ ] || [ ! -e {d}/stubborn.$$ ]; }} && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done",
        d = dir.0.display()
    )
}

/// The pid in `DIR/NAME.PID` (waited for, bounded).
fn child(dir: &Scratch, name: &str, instance: i64) -> i32 {
    until_file(&dir.path(&format!("{name}.{instance}")))
        .trim()
        .parse()
        .unwrap()
}

/// The pids an event lists in its `pids` field (`[12, 34]`).
fn pids(event: &Value) -> Vec<i32> {
    event["pids"]
        .as_str()
        .unwrap_or_else(|| panic!("no pids: {event}"))
        .trim_matches(['[', ']'])
        .split(',')
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

/// Once the instance `instance` has been stopped: its polite child heard
/// the stop signal and is gone, its stubborn one is gone too, killed and
/// named as lameduck killed it (`killed`, the SIGKILL's event).
#[track_caller]
fn assert_stopped(dir: &Scratch, run: &Running, instance: i64, killed: &Value) {
    let (polite, stubborn) = (
        child(dir, "polite", instance),
        child(dir, "stubborn", instance),
    );
    until_gone(&[polite, stubborn]);
    assert_eq!(
        std::fs::read_to_string(dir.path(&format!("polite.{instance}.heard"))).ok(),
        Some("TERM\n".to_string()),
        "the polite child heard the stop signal: {}",
        run.log()
    );
    assert!(
        pids(killed).contains(&stubborn),
        "the stubborn child {stubborn} is named as killed: {killed}"
    );
    assert!(
        !pids(killed).contains(&polite),
        "the polite child {polite} had stopped: {killed}"
    );
}

/// An instance that fails its liveness check is stopped whole before the
/// next one starts: the children it started with `setsid` too.
#[test]
fn an_instance_that_failed_its_liveness_check_is_stopped_with_the_children_it_left_outside_its_group()
 {
    let dir = Scratch::new("live-setsid");
    write_children(&dir);
    let marker = dir.path("started-once");
    // The first instance starts the children; the next one only serves.
    let script = format!(
        "if [ ! -e {m} ]; then touch {m}; {children}; fi; touch {d}/ready.$$; trap 'exit 0' TERM; while :; do sleep 0.05; done",
        m = marker.display(),
        d = dir.0.display(),
        children = start_children(&dir),
    );
    let live = format!("exec:test ! -e {}/sick.$LAMEDUCK_PID", dir.0.display());
    let (mut run, first) = start_ready_per_instance(
        &dir,
        "ready",
        &[
            "--live",
            &live,
            "--live-interval",
            "20ms",
            "--live-failures",
            "1",
            "--hard-timeout",
            "1s",
            "--restart-delay",
            "1ms",
        ],
        &script,
    );
    run.event("phase changed", |v| v["phase"] == "running");
    child(&dir, "stubborn", first);
    std::fs::write(dir.path(&format!("sick.{first}")), "").unwrap();
    run.event("the program failed its liveness check", |v| {
        v["pid"] == first
    });
    let killed = run.event("outlived their grace", |v| v["pid"] == first);
    run.event("program started", |_| true);
    assert_stopped(&dir, &run, first, &killed);
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

/// A restart whose new instance fails stops that instance whole — the
/// children it started with `setsid` too, orphaned to lameduck as it
/// exited — and the old instance serves on.
#[test]
fn a_restart_s_failed_new_instance_is_stopped_with_the_children_it_left_outside_its_group() {
    let dir = Scratch::new("rollback-setsid");
    write_children(&dir);
    let marker = dir.path("started-once");
    // The first instance serves; a later one starts the children, then
    // exits before it is ready.
    let script = format!(
        "if [ -e {m} ]; then {children}; exit 9; fi; touch {m} {d}/ready.$$; trap 'exit 0' TERM; while :; do sleep 0.05; done",
        m = marker.display(),
        d = dir.0.display(),
        children = start_children(&dir),
    );
    let (mut run, first) =
        start_ready_per_instance(&dir, "ready", &["--hard-timeout", "1s"], &script);
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGHUP);
    let second = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    let killed = run.event("outlived their grace", |v| v["pid"] == second);
    let failed = run.event("restart failed", |_| true);
    assert!(
        failed["reason"].as_str().unwrap().contains("exit code 9"),
        "{failed}"
    );
    assert_stopped(&dir, &run, second, &killed);
    assert!(alive(first as i32), "the old instance serves on");
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}
