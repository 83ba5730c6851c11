//! `lameduck run`: crash supervision, readiness by systemd's protocol,
//! sockets held by lameduck, zero-downtime restarts, zombies.

mod run_support;

use std::io::Write;
use std::process::Command;

use nix::sys::signal::Signal;
use run_support::*;

#[test]
fn a_crashing_program_is_restarted_then_lameduck_gives_up_with_its_code() {
    let dir = Scratch::new("crash");
    let runs = dir.path("runs");
    let script = format!("echo run >>{}; exit 3", runs.display());
    let args = [
        &["--admin", "none", "--restart", "on-failure"][..],
        FAST_RESTARTS,
        &["--", "sh", "-c", &script],
    ]
    .concat();
    let mut run = Running::start(&args);
    assert_eq!(run.wait(), Some(3), "{}", run.log());
    let count = std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(count, 3, "the first run and two restarts; {}", run.log());
    assert!(
        run.log().contains("restart intensity exceeded"),
        "{}",
        run.log()
    );
}

/// A liveness check is counted from the moment the program is ready: one
/// that never passes (the program is up but broken) restarts it each time,
/// until the restart intensity gives up — not once, then never again.
#[test]
fn a_program_that_never_passes_its_liveness_check_is_restarted_each_time_until_lameduck_gives_up() {
    let dir = Scratch::new("live-never");
    let runs = dir.path("runs");
    let script = format!("echo run >>{}; exec sleep 60", runs.display());
    let args = [
        &["--admin", "none", "--live", "exec:exit 1"][..],
        &["--live-interval", "20ms", "--live-failures", "2"],
        FAST_RESTARTS,
        &["--", "sh", "-c", &script],
    ]
    .concat();
    let mut run = Running::start(&args);
    let code = run.wait();
    assert_ne!(code, Some(0), "{}", run.log());
    // Counted by lameduck's log: an instance may fail its check (every
    // 20 ms) before its shell gets to write to the runs file.
    let started = run.log().matches("program started").count();
    assert_eq!(started, 3, "the first run and two restarts; {}", run.log());
    let wrote = std::fs::read_to_string(&runs).unwrap_or_default();
    assert!(wrote.lines().count() <= 3, "{wrote}");
    assert_eq!(
        run.log()
            .matches("the program failed its liveness check")
            .count(),
        3,
        "{}",
        run.log()
    );
    assert!(
        run.log().contains("restart intensity exceeded"),
        "{}",
        run.log()
    );
}

#[test]
fn a_stop_while_the_program_waits_for_its_restart_exits_as_the_report_says() {
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--drain-delay",
        "0s",
        "--restart",
        "on-failure",
        "--restart-delay",
        "10m",
        "--restart-delay-max",
        "10m",
        "--",
        "sh",
        "-c",
        "exit 1",
    ]);
    // The program crashed and is down for ten minutes: stop lameduck now.
    run.event("component restarting in", |_| true);
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    let report = run.event("shutdown report", |_| true);
    assert_eq!(report["exit_code"], 0, "{report}");
}

#[test]
fn a_program_that_exits_cleanly_is_not_restarted_on_failure_only() {
    let mut run = Running::start(&["--admin", "none", "--", "sh", "-c", "exit 0"]);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!run.log().contains("component restarting"), "{}", run.log());
}

/// `lameduck run --admin ADMIN --ready notify -- notify_ready.py FIFO`:
/// the program sends `READY=1` once the FIFO (in `dir`) is written to.
fn start_notify_ready(dir: &Scratch, admin: &str) -> (Running, std::path::PathBuf) {
    let fifo = dir.path("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let program = programs().join("notify_ready.py");
    let run = Running::start(&[
        "--admin",
        admin,
        "--ready",
        "notify",
        "--drain-delay",
        "0s",
        "--",
        "python3",
        program.to_str().unwrap(),
        fifo.to_str().unwrap(),
    ]);
    (run, fifo)
}

#[test]
fn readiness_comes_from_ready_1_on_the_notify_socket() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = Scratch::new("notify");
    let (mut run, fifo) = start_notify_ready(&dir, "127.0.0.1:0");
    let admin = run.admin_port();
    run.event("program started", |_| true);
    // Not ready until it says so: it waits for the FIFO.
    let (status, body) = get(admin, "/readyz?verbose").unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(get(admin, "/startupz").unwrap().0, 503);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    run.event("program notified READY=1", |_| true);
    until_status(admin, "/readyz", 200);
    assert!(
        run.log().contains("\"status\":\"serving\""),
        "STATUS= is heard; {}",
        run.log()
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

/// What the notify socket hears is logged with the sender's pid as a
/// number, as every other pid: it read `"pid":"Some(3409)"`.
#[test]
fn notify_messages_are_logged_with_the_sender_s_pid_as_a_number() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = Scratch::new("notify-pid");
    let (mut run, fifo) = start_notify_ready(&dir, "none");
    let started = run.event("program started", |_| true)["pid"].as_i64();
    release(&fifo);
    let status = run.event("program status", |_| true);
    assert_eq!(status["pid"].as_i64(), started, "{}", run.log());
    let ready = run.event("program notified READY=1", |_| true);
    assert_eq!(ready["pid"].as_i64(), started, "{}", run.log());
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

#[test]
fn a_program_takes_its_socket_from_lameduck_and_sighup_restarts_it_without_refusing_a_connection() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let server = programs().join("naive_server.py");
    let mut run = Running::start(&[
        "--admin",
        "127.0.0.1:0",
        "--listen",
        "http=127.0.0.1:0",
        "--drain-delay",
        "0s",
        "--grace-period",
        "10s",
        "--",
        "python3",
        server.to_str().unwrap(),
        "--graceful",
    ]);
    let port = port(
        run.event("socket http on", |_| true)["addr"]
            .as_str()
            .unwrap(),
    );
    let first = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    // Without a check, ready once started; the socket accepts from the
    // start (its queue is lameduck's), so the first GET waits its turn.
    let (status, body) = get(port, "/").expect("served on lameduck's socket");
    assert_eq!((status, body.trim()), (200, first.to_string().as_str()));

    run.signal(Signal::SIGHUP);
    // The operator's SIGHUP is named as what asked, not an API of the
    // library's.
    run.event("upgrade in place started", |v| v["via"] == "SIGHUP");
    let second = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    assert_ne!(first, second);
    run.event("restart complete", |v| v["old_pid"] == first);
    assert!(!alive(first as i32), "the old instance is gone");
    let (status, body) = get(port, "/").expect("the socket outlives the restart");
    assert_eq!((status, body.trim()), (200, second.to_string().as_str()));

    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

/// A run whose first instance serves (and says so with a file of its own)
/// and whose every later one exits 9 at once, sent `SIGHUP`: the run, its
/// first instance's pid, and the `restart failed` event.
fn a_failing_restart(dir: &Scratch) -> (Running, i64, serde_json::Value) {
    let marker = dir.path("started-once");
    let script = format!(
        "if [ -e {m} ]; then exit 9; fi; touch {m} {d}/ready.$$; trap 'exit 0' TERM; while :; do sleep 0.05; done",
        m = marker.display(),
        d = dir.0.display()
    );
    // The check names the instance it checks.
    let (run, first) = start_ready_per_instance(dir, "ready", &[], &script);
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGHUP);
    let failed = run.event("restart failed", |_| true);
    (run, first, failed)
}

#[test]
fn a_restart_whose_new_instance_fails_keeps_the_old_one_serving() {
    let (mut run, first, failed) = a_failing_restart(&Scratch::new("rollback"));
    assert!(
        failed["reason"].as_str().unwrap().contains("exit code 9"),
        "{failed}"
    );
    assert!(alive(first as i32), "the old instance serves on");
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

/// A restart whose new instance fails is one failure, logged once, with
/// what `lameduck run` knows of it (`restart failed`, the reason), where the
/// library said it a second time (`upgrade in place failed`).
#[test]
fn a_failed_restart_is_logged_once() {
    let (mut run, _, failed) = a_failing_restart(&Scratch::new("failed-once"));
    assert_eq!(failed["level"], "ERROR", "{failed}");
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    let log = run.log();
    let told: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("exited before it was ready"))
        .collect();
    assert_eq!(told.len(), 1, "{log}");
    assert!(!log.contains("upgrade in place failed"), "{log}");
}

/// A shutdown that begins while a restart's new instance is not ready yet
/// abandons the restart: said once, as what it is, and not also as an
/// error (`upgrade in place failed`, `lameduck began shutting down`).
#[test]
fn a_restart_abandoned_by_the_shutdown_is_logged_once_and_not_as_an_error() {
    let dir = Scratch::new("abandoned-once");
    let marker = dir.path("started-once");
    // The first instance is ready (a file of its own says so); no later one
    // ever is.
    let script = format!(
        "if [ ! -e {m} ]; then touch {m} {d}/ready.$$; fi; trap 'exit 0' TERM; while :; do sleep 0.05; done",
        m = marker.display(),
        d = dir.0.display()
    );
    let (mut run, _) = start_ready_per_instance(&dir, "ready", &[], &script);
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGHUP);
    run.event("restart: starting a new instance", |_| true);
    run.signal(Signal::SIGTERM);
    run.event("restart abandoned by the shutdown", |_| true);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    let log = run.log();
    assert_eq!(log.matches("abandoned by the shutdown").count(), 1, "{log}");
    assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
}

#[test]
fn zombies_are_reaped_as_pid_1_of_a_pid_namespace() {
    let probe = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot make a PID namespace here (unshare needs CAP_SYS_ADMIN)");
        return;
    }
    let mut wrapper = Command::new("unshare");
    wrapper.args(["--pid", "--fork", "--mount-proc"]);
    let script = programs().join("zombies.sh");
    let mut run = Running::start_with(
        wrapper,
        &[
            "--admin",
            "none",
            "--restart",
            "never",
            "--",
            script.to_str().unwrap(),
        ],
    );
    // The script exits 0 once no zombie is left in the namespace.
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

/// `lameduck run --control-socket SOCKET -- PROGRAM…`, without a drain.
fn with_control_socket(socket: &std::path::Path, program: &[&str]) -> Running {
    let mut args = vec![
        "--admin",
        "none",
        "--drain-delay",
        "0s",
        "--control-socket",
        socket.to_str().unwrap(),
        "--",
    ];
    args.extend_from_slice(program);
    Running::start(&args)
}

#[test]
fn upgrade_on_the_control_socket_restarts_the_program_and_answers_with_its_pid() {
    let dir = Scratch::new("control");
    let socket = dir.path("control.sock");
    let mut run = with_control_socket(
        &socket,
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 0.05; done",
        ],
    );
    // Bound as lameduck starts, before the program is.
    run.event("control socket listening", |_| true);
    let first = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    run.event("phase changed", |v| v["phase"] == "running");
    let answer = control(&socket, "upgrade");
    let second = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    assert_eq!(answer, format!("ok {second}\n"), "{}", run.log());
    // Answered once the old instance is gone, not before.
    assert!(!alive(first as i32));
    assert!(control(&socket, "status").starts_with("ok running"));
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

#[test]
fn reload_on_the_control_socket_is_an_error_that_points_to_a_restart_not_an_ok() {
    let dir = Scratch::new("control-reload");
    let socket = dir.path("control.sock");
    let mut run = with_control_socket(&socket, &["sleep", "600"]);
    run.event("control socket listening", |_| true);
    run.event("phase changed", |v| v["phase"] == "running");
    let answer = control(&socket, "reload");
    assert!(answer.starts_with("error "), "{answer}");
    assert!(
        answer.contains("lameduck run has nothing to reload") && answer.contains("upgrade"),
        "{answer}"
    );
    let unknown = control(&socket, "frobnicate");
    assert!(
        unknown.starts_with("error unknown command") && unknown.contains("upgrade, status"),
        "{unknown}"
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

#[test]
fn sockets_passed_to_lameduck_are_passed_on_to_the_program_under_their_names() {
    use lameduck::listen::Handoff;
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lameduck"));
    cmd.args([
        "run",
        "--output",
        "json",
        "--admin",
        "none",
        "--restart",
        "never",
        "--",
    ])
    .args([
        "sh",
        "-c",
        "echo \"$LISTEN_FDS $LISTEN_FDNAMES $([ \"$LISTEN_PID\" = $$ ] && echo mine)\"",
    ])
    .env_remove("RUST_LOG")
    .stdin(std::process::Stdio::null());
    Handoff::new()
        .listener("web", &web)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    let out = cmd.output().unwrap();
    drop(cmd);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 web mine");
}

#[test]
fn systemd_hears_ready_reloading_and_stopping_from_lameduck_not_from_the_program() {
    let dir = Scratch::new("systemd");
    let path = dir.path("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    systemd.set_read_timeout(Some(WAIT)).unwrap();
    let heard = || {
        let mut buf = [0u8; 4096];
        let n = systemd
            .recv(&mut buf)
            .expect("a notification within the bound");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let until = |what: &str| {
        for _ in 0..50 {
            if heard().lines().any(|l| l == what) {
                return;
            }
        }
        panic!("systemd never heard {what}");
    };
    let mut wrapper = Command::new(env!("CARGO_BIN_EXE_lameduck"));
    wrapper.env("NOTIFY_SOCKET", &path);
    let mut run = Running::start_with(
        wrapper,
        &[
            "--admin",
            "none",
            "--drain-delay",
            "0s",
            "--",
            "sh",
            "-c",
            "echo \"[$NOTIFY_SOCKET]\"; trap 'exit 0' TERM; while :; do sleep 0.05; done",
        ],
    );
    assert_eq!(
        run.stdout.recv_timeout(WAIT).unwrap(),
        "[]",
        "the program does not get lameduck's NOTIFY_SOCKET"
    );
    until("READY=1");
    run.signal(Signal::SIGHUP);
    until("RELOADING=1");
    until("READY=1");
    run.event("upgrade in place complete", |_| true);
    run.signal(Signal::SIGTERM);
    until("STOPPING=1");
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

#[test]
fn the_lifecycle_metrics_of_the_supervised_program_are_served_on_the_admin_port() {
    let dir = Scratch::new("metrics");
    let mark = dir.path("crashed-once");
    // Crashes on its first run, then stays up.
    let script = format!(
        "if [ -e {m} ]; then exec sleep 60; else touch {m}; exit 1; fi",
        m = mark.display()
    );
    let mut run = Running::start(&[
        "--admin",
        "127.0.0.1:0",
        "--restart",
        "on-failure",
        "--restart-delay",
        "1ms",
        "--restart-delay-max",
        "5ms",
        "--drain-delay",
        "0s",
        "--grace-period",
        "20s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let admin = run.admin_port();
    // The restart, as the log says it, then the metrics.
    run.event("component restarting in", |_| true);
    run.event("component ready", |e| e["attempt"] == 1);
    let (status, body) = get(admin, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200, "{body}");
    for line in [
        "lameduck_phase{phase=\"running\"} 1",
        "lameduck_component_restarts_total{component=\"program\"} 1",
        "lameduck_budget_seconds{deadline=\"grace_period\"} 20",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(line)),
            "no {line:?} in:\n{body}"
        );
    }
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

/// A program that binds its own port (no `--listen`): the new instance of a
/// restart cannot bind it, while a check on the port is answered by the
/// old one. The restart must not be said complete, nor answered `ok PID`,
/// for a new instance that had died by then.
#[test]
fn a_restart_whose_new_instance_died_is_not_answered_ok_even_if_its_check_passed() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = Scratch::new("own-port");
    for fifo in ["new", "old"] {
        nix::unistd::mkfifo(&dir.path(fifo), nix::sys::stat::Mode::S_IRWXU).unwrap();
    }
    let socket = dir.path("control.sock");
    let port = free_port().to_string();
    let check = format!("tcp:127.0.0.1:{port}");
    let program = programs().join("own_port.py");
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--ready",
        &check,
        "--ready-interval",
        "50ms",
        "--grace-period",
        "90s",
        "--control-socket",
        socket.to_str().unwrap(),
        "--",
        "python3",
        program.to_str().unwrap(),
        &port,
        dir.0.to_str().unwrap(),
    ]);
    run.event("control socket listening", |_| true);
    run.event("phase changed", |v| v["phase"] == "running");
    let asked = {
        let socket = socket.clone();
        std::thread::spawn(move || control(&socket, "upgrade"))
    };
    // The check passed on the old instance's port.
    run.event("stopping the old one", |_| true);
    // The new instance, which could not bind, ends first …
    release(&dir.path("new"));
    run.event("the program exited", |_| true);
    // … then the old one.
    release(&dir.path("old"));
    let answer = asked.join().unwrap();
    assert!(answer.starts_with("error"), "{answer}\n{}", run.log());
    assert!(!run.log().contains("restart complete"), "{}", run.log());
    run.signal(Signal::SIGTERM);
    run.wait();
}

/// `sh -c SCRIPT` for an instance that starts a child in a session of its
/// own (`setsid`, so out of the instance's process group), a `sleep` that
/// does not ignore SIGTERM, which writes its pid to `DIR/escaped.PID` (PID
/// the instance's); then `THEN`.
fn leaves_a_child(dir: &Scratch, then: &str) -> String {
    format!(
        "setsid sh -c 'echo $$ >\"$0.tmp\"; mv \"$0.tmp\" \"$0\"; exec sleep 1000' {d}/escaped.$$ & {then}",
        d = dir.0.display()
    )
}

/// The pid the child of instance `pid` wrote (waited for, bounded).
fn child_of(dir: &Scratch, pid: i64) -> i32 {
    until_file(&dir.path(&format!("escaped.{pid}")))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_zero_downtime_restart_stops_the_old_instance_s_child_that_left_its_group() {
    let dir = Scratch::new("restart-setsid");
    let script = leaves_a_child(&dir, "wait");
    let (mut run, first) =
        start_ready_per_instance(&dir, "escaped", &["--shutdown-timeout", "5s"], &script);
    run.event("phase changed", |v| v["phase"] == "running");
    let old_child = child_of(&dir, first);
    run.signal(Signal::SIGHUP);
    let second = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    run.event("restart complete", |v| v["old_pid"] == first);
    // The old instance is all of it: its child outside the group too.
    assert!(
        !alive(old_child),
        "the old instance's child outlived the restart: {}",
        run.log()
    );
    let new_child = child_of(&dir, second);
    assert!(
        alive(new_child),
        "the new instance's child was stopped with the old one: {}",
        run.log()
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!alive(new_child));
}

#[test]
fn a_crash_restart_stops_what_the_crashed_instance_left_outside_its_group() {
    let dir = Scratch::new("crash-setsid");
    let marker = dir.path("crashed-once");
    // The first instance crashes once its child is there; the next serves.
    let crash = format!(
        "i=0; while [ ! -e {d}/escaped.$$ ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; touch {m}; exit 1",
        d = dir.0.display(),
        m = marker.display()
    );
    let script = format!(
        "if [ -e {m} ]; then {serve}; else {crash}; fi",
        m = marker.display(),
        serve = leaves_a_child(&dir, "wait"),
        crash = leaves_a_child(&dir, &crash),
    );
    let (mut run, first) =
        start_ready_per_instance(&dir, "escaped", &["--restart-delay", "1ms"], &script);
    let crashed_child = child_of(&dir, first);
    let second = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    // Stopped before the next instance started: it serves no more.
    assert!(
        !alive(crashed_child),
        "the crashed instance's child outlived its restart: {}",
        run.log()
    );
    let new_child = child_of(&dir, second);
    assert!(alive(new_child), "{}", run.log());
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!alive(new_child));
}

/// A crashed instance leaves a process that ignores the stop signal, and
/// the restart policy starts the program again: the process is killed once
/// the hard timeout has passed since the crash, before the next instance
/// starts (the restart's rule, decided by the library once the crashed run
/// returned), not left for a shutdown that never comes.
#[test]
fn a_crash_restart_kills_a_stubborn_leftover_at_the_hard_timeout_before_starting_again() {
    let dir = Scratch::new("crash-stubborn");
    let marker = dir.path("crashed-once");
    let left_file = dir.path("left.pid");
    let script = format!(
        "if [ -e {m} ]; then touch {d}/ready.$$; trap 'exit 0' TERM; while :; do sleep 0.05; done; fi; \
         setsid sh -c \"trap '' TERM; echo \\$\\$ > {l}.tmp; mv {l}.tmp {l}; exec sleep 303\" & \
         i=0; while [ ! -e {l} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; touch {m}; exit 1",
        m = marker.display(),
        d = dir.0.display(),
        l = left_file.display(),
    );
    let (mut run, _) = start_ready_per_instance(
        &dir,
        "ready",
        &["--restart-delay", "1ms", "--hard-timeout", "300ms"],
        &script,
    );
    let left: i32 = until_file(&left_file).trim().parse().unwrap();
    run.event("did not stop within the hard timeout", |v| {
        v["level"] == "WARN"
    });
    run.event("program started", |_| true);
    assert!(
        !alive(left),
        "the crashed instance's leftover outlived its restart: {}",
        run.log()
    );
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}
