//! `lameduck run`: the shutdown sequence around real programs — a naive
//! Python server, shell scripts that fork — with real signals.

mod run_support;

use nix::sys::signal::Signal;
use run_support::*;

/// `lameduck run ARGS -- forks.sh`, once it is running: the grandchildren
/// the script forked, by pid.
fn start_forks(dir: &Scratch, args: &[&str]) -> (Running, Vec<i32>) {
    let pids = dir.path("pids");
    let script = programs().join("forks.sh");
    let ready = format!("exec:test -f {}.ready", pids.display());
    let mut all = vec!["--admin", "none", "--ready", &ready];
    all.extend_from_slice(args);
    all.extend(["--", script.to_str().unwrap(), pids.to_str().unwrap()]);
    let run = Running::start(&all);
    run.event("phase changed", |v| v["phase"] == "running");
    let grandchildren = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    (run, grandchildren)
}

/// `lameduck run --ready exec:test -e PID_FILE --drain-delay DRAIN -- sh -c
/// SCRIPT`, once it is running: with the pid that SCRIPT's child, one that
/// left the program's group, wrote to PID_FILE.
fn start_escaping(pid_file: &std::path::Path, drain: &str, script: &str) -> (Running, i32) {
    let ready = format!("exec:test -e {}", pid_file.display());
    let run = Running::start(&[
        "--admin",
        "none",
        "--ready",
        &ready,
        "--drain-delay",
        drain,
        "--",
        "sh",
        "-c",
        script,
    ]);
    run.event("phase changed", |v| v["phase"] == "running");
    let escaped: i32 = until_file(pid_file).trim().parse().unwrap();
    assert!(alive(escaped));
    (run, escaped)
}

#[test]
fn a_naive_server_keeps_serving_while_unready_and_a_second_signal_stops_it_at_once() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let port = free_port().to_string();
    let ready = format!("http://127.0.0.1:{port}/");
    let server = programs().join("naive_server.py");
    let mut run = Running::start(&[
        "--admin",
        "127.0.0.1:0",
        "--ready",
        &ready,
        // A drain far longer than the test: only the second signal ends it.
        "--grace-period",
        "10m",
        "--drain-delay",
        "5m",
        "--",
        "python3",
        server.to_str().unwrap(),
        &port,
    ]);
    let admin = run.admin_port();
    let port: u16 = port.parse().unwrap();
    until_status(admin, "/readyz", 200);
    let pid = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap() as i32;

    run.signal(Signal::SIGTERM);
    run.event("phase changed", |v| v["phase"] == "draining");
    // Unready at once, while the program, unaware, still serves.
    assert_eq!(get(admin, "/readyz").unwrap().0, 503);
    assert_eq!(get(admin, "/livez").unwrap().0, 200, "live while draining");
    let (status, body) = get(port, "/").expect("the program still serves while draining");
    assert_eq!((status, body.trim()), (200, pid.to_string().as_str()));

    // SIGINT, not SIGTERM again: a repeat of one signal within 300 ms is
    // one delivery (GNU timeout sends it twice).
    run.signal(Signal::SIGINT);
    run.event("second signal", |_| true);
    // Killed by the signal lameduck forwarded: a stop it asked for.
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!alive(pid));
}

#[test]
fn a_script_that_forks_is_waited_for_to_its_last_grandchild_and_the_stubborn_ones_killed() {
    let dir = Scratch::new("forks");
    let (mut run, grandchildren) = start_forks(
        &dir,
        &[
            "--grace-period",
            "4s",
            "--drain-delay",
            "0s",
            "--hard-timeout",
            "1s",
        ],
    );
    assert_eq!(grandchildren.len(), 3, "{grandchildren:?}");
    assert!(grandchildren.iter().all(|p| alive(*p)));

    run.signal(Signal::SIGTERM);
    // One of them ignores SIGTERM: only SIGKILL at the shutdown timeout ends it.
    run.event("did not stop within the shutdown timeout", |_| true);
    let code = run.wait();
    for p in &grandchildren {
        assert!(
            !alive(*p),
            "grandchild {p} outlived lameduck; {}",
            run.log()
        );
    }
    // The stop needed SIGKILL at the deadline: graceful but timed out.
    assert_eq!(code, Some(3), "{}", run.log());
}

#[test]
fn the_program_s_exit_code_is_lameduck_s() {
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--restart",
        "never",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(run.wait(), Some(7), "{}", run.log());
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--restart",
        "never",
        "--",
        "sh",
        "-c",
        "kill -USR1 $$",
    ]);
    assert_eq!(run.wait(), Some(128 + 10), "{}", run.log());
}

#[test]
fn forwarded_signals_reach_the_program() {
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--restart",
        "never",
        "--",
        "sh",
        "-c",
        "trap 'exit 42' USR1; echo waiting; while :; do sleep 0.05; done",
    ]);
    // Its stdout passes through unchanged.
    assert_eq!(run.stdout.recv_timeout(WAIT).unwrap(), "waiting");
    run.signal(Signal::SIGUSR1);
    assert_eq!(run.wait(), Some(42), "{}", run.log());
}

#[test]
fn a_sigkilled_lameduck_leaves_nothing_running() {
    let dir = Scratch::new("sigkill");
    let (mut run, mut all) = start_forks(&dir, &[]);
    run.signal(Signal::SIGKILL);
    assert_eq!(run.wait(), None);
    all.retain(|p| *p > 1);
    // The guard, left behind, kills the program's group.
    until_gone(&all);
}

#[test]
fn a_descendant_that_left_the_program_s_group_is_waited_for_too() {
    let dir = Scratch::new("setsid");
    let pid_file = dir.path("escaped");
    // A daemon-style child: its own session, so not in the program's group.
    let script = format!(
        "setsid sh -c 'echo $$ >{f}.tmp; mv {f}.tmp {f}; exec sleep 1000' & trap 'exit 0' TERM; while :; do sleep 0.05; done",
        f = pid_file.display()
    );
    let (mut run, escaped) = start_escaping(&pid_file, "0s", &script);
    run.signal(Signal::SIGTERM);
    run.event("descendants that left the program's group", |_| true);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!alive(escaped), "the escaped descendant outlived lameduck");
}

#[test]
fn a_stubborn_descendant_that_left_the_group_while_its_parent_lives_is_killed_before_lameduck_exits()
 {
    let dir = Scratch::new("escapes");
    let (mut run, escaped) = start_escapes(&dir, &[]);
    run.signal(Signal::SIGTERM);
    // Killed with its group at the shutdown timeout: 3, deadline exceeded.
    assert_eq!(run.wait(), Some(3), "{}", run.log());
    assert!(
        !alive(escaped),
        "the escaped descendant outlived lameduck: {}",
        run.log()
    );
}

#[test]
fn a_sigkilled_lameduck_leaves_no_descendant_that_left_the_group_running() {
    let dir = Scratch::new("escapes-sigkill");
    let (mut run, escaped) = start_escapes(&dir, &[]);
    run.signal(Signal::SIGKILL);
    assert_eq!(run.wait(), None);
    // The guard, left behind, kills it with the program's group.
    until_gone(&[escaped]);
}

#[test]
fn a_third_signal_forces_the_exit_with_128_plus_that_signal_not_the_sigkill_it_sent() {
    let dir = Scratch::new("third-signal");
    let (mut run, sleep) = start_stubborn(&dir, &["--drain-max", "60s", "--grace-period", "90s"]);
    run.signal(Signal::SIGTERM);
    run.event("phase changed", |v| v["phase"] == "draining");
    run.signal(Signal::SIGINT);
    run.event("second signal", |_| true);
    // A different signal from the second: not taken for its repeat.
    run.signal(Signal::SIGTERM);
    run.event("third signal", |_| true);
    assert_eq!(run.wait(), Some(128 + 15), "{}", run.log());
    until_gone(&[sleep]);
}

/// Ctrl+C at a terminal skips the drain: the library hears it as what cut
/// the drain short (it went on, and ended as "nothing left to drain" once
/// the program had exited on the stop signal lameduck sent at once).
#[test]
fn ctrl_c_at_a_terminal_is_what_cut_the_drain_short() {
    let (mut run, _terminal) = Running::start_on_terminal(&[
        "--admin",
        "none",
        // A drain far longer than the test: only the signal ends it.
        "--grace-period",
        "10m",
        "--drain-delay",
        "5m",
        "--",
        "sleep",
        "600",
    ]);
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGINT);
    let ended = run.event("drain ended", |_| true);
    assert!(
        ended["message"]
            .as_str()
            .unwrap()
            .contains("drain cut short by SIGINT"),
        "{ended}"
    );
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

#[test]
fn closing_the_terminal_stops_the_program_instead_of_restarting_it() {
    let Some((mut run, master)) = Running::start_in_terminal_session(&[
        "--admin",
        "none",
        "--drain-delay",
        "0s",
        "--",
        "sleep",
        "600",
    ]) else {
        eprintln!("skipped: no util-linux setsid");
        return;
    };
    run.event("phase changed", |v| v["phase"] == "running");
    // An operator's SIGHUP, the terminal open: a restart.
    run.signal(Signal::SIGHUP);
    let second = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap() as i32;
    run.event("restart complete", |_| true);
    // The terminal closes: the kernel's SIGHUP stops lameduck, its program
    // with it.
    drop(master);
    run.event("the terminal is gone", |_| true);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!alive(second), "the program outlived lameduck");
    let log = run.log();
    assert_eq!(
        log.matches("program started").count(),
        2,
        "no restart at the hangup: {log}"
    );
}

#[test]
fn a_descendant_that_left_the_group_hears_the_stop_signal_when_the_program_exits_during_the_drain()
{
    let dir = Scratch::new("escapes-exit");
    let (pid_file, marker, fifo) = (dir.path("escaped"), dir.path("stopped"), dir.path("fifo"));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    // A daemon-style child that says it heard SIGTERM; the program exits by
    // itself, during the drain, once the test opens the FIFO.
    let script = format!(
        "setsid sh -c 'trap \"echo stopped >{m}; exit 0\" TERM; echo $$ >{f}.tmp; mv {f}.tmp {f}; while :; do sleep 0.05; done' & read _ <{fifo}; exit 0",
        m = marker.display(),
        f = pid_file.display(),
        fifo = fifo.display(),
    );
    let (mut run, escaped) = start_escaping(&pid_file, "10s", &script);
    run.signal(Signal::SIGTERM);
    run.event("phase changed", |v| v["phase"] == "draining");
    release(&fifo);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!alive(escaped), "the escaped descendant outlived lameduck");
    assert_eq!(
        std::fs::read_to_string(&marker).ok().as_deref(),
        Some("stopped\n"),
        "it was stopped by the stop signal, not killed: {}",
        run.log()
    );
}

/// A daemon that left the program's group (`setsid`) hears the stop signal
/// once: the children it starts to shut down are its own shutdown's work,
/// not new strays to stop (each got SIGTERM as it was found, which killed
/// every step of the daemon's graceful shutdown while the report said
/// clean).
#[test]
fn a_daemon_that_left_the_group_hears_the_stop_signal_once_and_its_shutdown_s_children_none() {
    let dir = Scratch::new("daemon-steps");
    let (ready, steps) = (dir.path("ready"), dir.path("steps"));
    let daemon = dir.path("daemon.sh");
    std::fs::write(
        &daemon,
        format!(
            "stop=0\ntrap 'stop=1' TERM\ntouch {ready}\n\
             while [ $stop = 0 ]; do sleep 0.05; done\n\
             for i in 1 2 3; do\n\
               if sleep 0.2; then echo \"$i ok\" >> {steps}; else echo \"$i killed\" >> {steps}; fi\n\
             done\n",
            ready = ready.display(),
            steps = steps.display(),
        ),
    )
    .unwrap();
    let program = format!("setsid sh {} & exec sleep 30", daemon.display());
    let mut run = start_ready_when_touched(
        &dir,
        &[
            "--drain-delay",
            "0s",
            "--grace-period",
            "20s",
            "--shutdown-timeout",
            "10s",
        ],
        &program,
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    let said = std::fs::read_to_string(&steps).unwrap_or_default();
    assert_eq!(said, "1 ok\n2 ok\n3 ok\n", "{}", run.log());
}

/// `lameduck run` around a program that, on SIGTERM, starts a helper with
/// `setsid` (to flush something, say) and exits once it runs; the helper
/// writes to `told` each signal it hears (TERM, INT) and outlives a
/// shutdown timeout of 1s. With the helper's script and its pid file.
fn start_with_a_helper_at_the_stop(dir: &Scratch) -> (Running, std::path::PathBuf) {
    let (helper, pid_file, told, fifo) = (
        dir.path("helper.sh"),
        dir.path("helper.pid"),
        dir.path("told"),
        dir.path("fifo"),
    );
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::write(
        &helper,
        format!(
            "trap 'echo TERM >> {told}' TERM\n\
             trap 'echo INT >> {told}' INT\n\
             echo $$ > {pid}.tmp; mv {pid}.tmp {pid}\n\
             echo ready > {fifo}\n\
             sleep 600 & wait; wait; wait\n",
            told = told.display(),
            pid = pid_file.display(),
            fifo = fifo.display(),
        ),
    )
    .unwrap();
    // `setsid -f`, not `&`: a background job of a shell ignores SIGINT.
    let program = format!(
        "trap 'setsid -f sh {helper}; read _ <{fifo}; exit 0' TERM; touch {{ready}}; sleep 600 & wait",
        helper = helper.display(),
        fifo = fifo.display(),
    );
    let run = start_ready_when_touched(
        dir,
        &[
            "--drain-delay",
            "0s",
            "--grace-period",
            "10s",
            "--shutdown-timeout",
            "1s",
        ],
        &program,
    );
    (run, pid_file)
}

/// Once lameduck has exited: the helper ran its course (killed at the
/// shutdown timeout, named then) and heard no signal but that SIGKILL.
fn assert_the_helper_heard_only_the_sigkill(dir: &Scratch, mut run: Running) {
    // Killed by lameduck at the shutdown timeout: a passed deadline (a
    // helper that a stop signal killed at once would have made it 0).
    assert_eq!(run.wait(), Some(3), "{}", run.log());
    // Written before the helper tells the program it runs, so before
    // lameduck's exit — unless a stop signal killed it first.
    let pid: i32 = std::fs::read_to_string(dir.path("helper.pid"))
        .unwrap_or_else(|_| panic!("the helper never ran its course: {}", run.log()))
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "the helper outlived lameduck");
    // Named (as `setsid -f sh …` if lameduck first saw it before the exec).
    let named = format!("pid {pid}: ");
    assert!(
        run.log()
            .lines()
            .any(|l| l.contains("cancelling work still in flight")
                && l.contains(&named)
                && l.contains("helper.sh")),
        "the helper is named at the deadline: {}",
        run.log()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("told")).ok(),
        None,
        "the helper heard a signal to stop: {}",
        run.log()
    );
}

/// What the program starts after the stop signal is its shutdown's own
/// work, as systemd has it (`KillMode=control-group`): a helper it starts
/// with `setsid` as it stops (to flush something) hears no stop signal —
/// it got one, found as a new process outside the group — and only the
/// SIGKILL at the shutdown timeout, which still reaches it.
#[test]
fn a_helper_the_program_starts_with_setsid_as_it_stops_hears_no_stop_signal() {
    let dir = Scratch::new("stop-helper");
    let (run, _) = start_with_a_helper_at_the_stop(&dir);
    run.signal(Signal::SIGTERM);
    assert_the_helper_heard_only_the_sigkill(&dir, run);
}

/// A second signal goes where the stop signal went, not to what started
/// after it: the helper started as the program stopped does not hear it
/// (every process outside the group that lameduck could list was sent it).
#[test]
fn a_second_signal_does_not_reach_a_helper_started_after_the_stop() {
    let dir = Scratch::new("stop-helper-second");
    let (run, pid_file) = start_with_a_helper_at_the_stop(&dir);
    run.signal(Signal::SIGTERM);
    until_file(&pid_file);
    run.signal(Signal::SIGINT);
    run.event("second signal", |_| true);
    assert_the_helper_heard_only_the_sigkill(&dir, run);
}
