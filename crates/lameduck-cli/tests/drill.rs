//! `lameduck drill` against servers that misbehave on purpose: the real
//! binary, real processes, real sockets on 127.0.0.1.
//!
//! The servers are `lameduck_drill::testing` servers run by *this* test
//! binary: the drill spawns `<this binary> --exact target_server --ignored`
//! with the server's spec in `LAMEDUCK_DRILL_TEST_TARGET`, and the ignored
//! `target_server` test below becomes the server process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use lameduck_drill::report::{ConditionStatus, Report};

const TARGET_ENV: &str = "LAMEDUCK_DRILL_TEST_TARGET";

/// Not a test: the body of the test servers (see the module docs).
#[test]
#[ignore = "the server process the other tests spawn"]
fn target_server() {
    let Ok(spec) = std::env::var(TARGET_ENV) else {
        return;
    };
    let config = lameduck_drill::testing::TargetConfig::parse(&spec).expect("a valid server spec");
    std::process::exit(lameduck_drill::testing::run(config));
}

// ----- harness -----

/// A port that was free a moment ago. The drill needs the URL before it
/// starts the server, so the test picks the port.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("a local address").port()
}

/// A fresh directory for one drill's files.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lameduck-drill-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// The command line that makes this test binary a test server.
fn server_command() -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary's path");
    vec![
        exe.to_string_lossy().into_owned(),
        "--exact".into(),
        "target_server".into(),
        "--ignored".into(),
        "--nocapture".into(),
        "--test-threads=1".into(),
    ]
}

struct Run {
    output: Output,
    report: Option<Report>,
    json: String,
    dir: PathBuf,
}

impl Run {
    fn code(&self) -> i32 {
        self.output
            .status
            .code()
            .expect("the drill exits with a code")
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn report(&self) -> &Report {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON report\n{}", self.context()))
    }

    fn condition(&self, name: &str) -> ConditionStatus {
        self.report()
            .verdict
            .conditions
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no condition {name}\n{}", self.context()))
            .status
    }

    /// Everything a person needs when an assertion fails.
    fn context(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        format!(
            "exit code {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{log}",
            self.output.status.code(),
            self.stdout(),
            self.stderr()
        )
    }

    /// The invariants every drill keeps, whatever the server did.
    fn assert_accounting(&self) {
        let r = self.report();
        let q = &r.requests;
        assert_eq!(q.sent, q.accounted, "{}", self.context());
        assert_eq!(q.total.total(), q.sent, "{}", self.context());
        let windows = q
            .before_signal
            .plus(&q.after_signal)
            .plus(&q.after_listener_close);
        assert_eq!(windows, q.total, "{}", self.context());
        let timeline: u64 = r.timeline.buckets.iter().map(|b| b.outcomes.total()).sum();
        assert_eq!(timeline, q.sent, "{}", self.context());
        assert_eq!(r.failures.total, q.total.failed(), "{}", self.context());
        assert!(q.sent > 0, "{}", self.context());
    }
}

/// Runs `lameduck drill` against a test server in `mode`, with a short
/// drill: 1.5 s of load (unless `extra` says otherwise), SIGTERM at 0.5 s,
/// a 1 s grace period.
fn drill(mode: &str, extra: &[&str]) -> Run {
    let port = free_port();
    let dir = scratch_dir();
    let json = dir.join("report.json");
    let url = format!("http://127.0.0.1:{port}/");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lameduck"));
    command
        .arg("drill")
        .args(["--url", &url])
        .args(["--ready-url", &format!("{url}readyz")])
        .args(["--ready-timeout", "20s"])
        .arg("--no-progress")
        .arg("--json")
        .arg(&json)
        .arg("--server-log")
        .arg(dir.join("server.log"))
        .args(extra);
    if !extra.contains(&"--duration") {
        command.args(["--duration", "1500ms"]);
    }
    if !extra.contains(&"--grace-period") {
        command.args(["--grace-period", "1s"]);
    }
    if !extra.contains(&"--rate") {
        command.args(["--concurrency", "8"]);
    }
    if !extra.contains(&"--at") && !extra.contains(&"--signal") {
        command.args(["--at", "500ms"]);
    }
    command
        .arg("--")
        .args(server_command())
        .env(TARGET_ENV, format!("mode={mode},port={port}"));
    run(command, &json, dir)
}

fn run(mut command: Command, json: &Path, dir: PathBuf) -> Run {
    let output = command.output().expect("run lameduck drill");
    let text = std::fs::read_to_string(json).unwrap_or_default();
    let report = Report::from_json(&text).ok();
    Run {
        output,
        report,
        json: text,
        dir,
    }
}

// ----- a server that drains properly -----

#[test]
fn graceful_server_passes_with_every_request_accounted_for() {
    let run = drill("graceful", &[]);
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    assert!(r.verdict.pass);
    assert_eq!(
        r.requests.failed_before_listener_close,
        0,
        "{}",
        run.context()
    );
    assert!(
        r.requests.before_signal.ok > 0 && r.requests.after_signal.ok > 0,
        "{}",
        run.context()
    );
    let (flip, close) = (r.events.readiness_flip_us, r.events.listener_closed_us);
    assert!(
        flip.is_some() && close.is_some() && flip < close,
        "{}",
        run.context()
    );
    let exit = &r.events.exits[0];
    assert_eq!(
        (exit.code, exit.stopped_by_cleanup.as_deref()),
        (Some(0), None),
        "{}",
        run.context()
    );
    assert!(
        r.keepalive.connection_close.after_signal > 0,
        "{}",
        run.context()
    );
    assert_eq!(
        r.keepalive.connection_close.before_signal,
        0,
        "{}",
        run.context()
    );
    assert!(run.stdout().contains("verdict: PASS"), "{}", run.context());
}

#[test]
fn passing_stop_drill_reports_refused_after_close_apart_from_failures() {
    let dir = scratch_dir();
    let html = dir.join("report.html");
    let run = drill(
        "graceful",
        &["--html", html.to_str().expect("a UTF-8 path")],
    );
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    let q = &r.requests;
    // The load went on after the server exited: those connects were
    // refused, and they are not failures of the server.
    assert!(q.not_counted.refused > 0, "{}", run.context());
    assert_eq!(q.failed, 0, "{}", run.context());
    assert_eq!(
        q.failed + q.not_counted.total(),
        q.total.failed(),
        "{}",
        run.context()
    );
    assert!(
        r.failures.samples.iter().all(|s| !s.counted),
        "{}",
        run.context()
    );
    let line = format!(
        "failed: 0 · not counted, started after the listener closed: {}",
        q.not_counted.describe_failures()
    );
    assert!(run.stdout().contains(&line), "{line:?}\n{}", run.context());
    let page = std::fs::read_to_string(&html).expect("the HTML report was written");
    for marker in [
        "class=\"after-close\"",
        "after the listener closed: not counted",
        "after listener close (not counted)",
        "None: no request failed that the verdict holds against the server",
        "Not counted: started after the listener closed",
    ] {
        assert!(page.contains(marker), "the page lacks {marker:?}");
    }
}

#[test]
fn graceful_server_passes_over_http2_and_sends_goaway() {
    let run = drill("graceful", &["--http", "2"]);
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    assert!(r.keepalive.goaway.after_signal > 0, "{}", run.context());
    assert_eq!(r.keepalive.goaway.before_signal, 0, "{}", run.context());
    assert_eq!(r.config.http, "2");
}

#[test]
fn graceful_server_passes_with_an_open_loop_rate_on_mixed_connections() {
    let run = drill("graceful", &["--rate", "200", "--connections", "mixed"]);
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    // 200/s for 1.5 s: the schedule is open-loop, so exactly 300 requests.
    assert_eq!(r.requests.sent, 300, "{}", run.context());
    assert_eq!(r.config.rate, Some(200));
}

// ----- servers that misbehave -----

#[test]
fn server_that_exits_at_once_fails_on_the_requests_it_cut() {
    let run = drill("exit-at-once", &[]);
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    assert_eq!(
        run.condition("no_failures_before_listener_close"),
        ConditionStatus::Fail
    );
    assert_eq!(run.condition("exit_code_zero"), ConditionStatus::Pass);
    assert_eq!(
        run.condition("exited_within_grace_period"),
        ConditionStatus::Pass
    );
    // Eight workers had requests in flight when the process died: each was
    // cut (reset or incomplete), counted once, before the listener closed.
    let before = r.requests.before_signal.plus(&r.requests.after_signal);
    assert!(before.incomplete + before.reset >= 1, "{}", run.context());
    assert_eq!(
        r.requests.failed_before_listener_close,
        before.failed(),
        "{}",
        run.context()
    );
    assert!(
        r.requests.after_listener_close.refused > 0,
        "{}",
        run.context()
    );
    assert!(
        run.stdout()
            .contains("FAIL no_failures_before_listener_close"),
        "{}",
        run.context()
    );
}

#[test]
fn server_that_ignores_sigterm_fails_on_the_grace_period_and_is_killed() {
    let run = drill("ignore-term", &[]);
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    assert_eq!(
        run.condition("exited_within_grace_period"),
        ConditionStatus::Fail
    );
    assert_eq!(
        run.condition("readiness_flipped_before_listener_close"),
        ConditionStatus::Fail
    );
    assert_eq!(
        run.condition("no_failures_before_listener_close"),
        ConditionStatus::Pass
    );
    assert_eq!(r.requests.total.failed(), 0, "{}", run.context());
    assert_eq!(r.events.listener_closed_us, None, "{}", run.context());
    let exit = &r.events.exits[0];
    // A stop drill's cleanup does not ask again: it kills.
    assert_eq!(
        exit.stopped_by_cleanup.as_deref(),
        Some("KILL"),
        "{}",
        run.context()
    );
    assert_eq!(exit.signal, Some(9), "{}", run.context());
    assert!(
        run.stdout().contains(&format!(
            "pid {} stopped by the drill's cleanup with SIGKILL: exited on SIGKILL (not gone within --grace-period",
            exit.pid
        )) && run.stdout().contains("its shutdown was cut"),
        "{}",
        run.context()
    );
}

#[test]
fn server_that_closes_its_listener_before_turning_unready_fails_on_readiness() {
    let run = drill("close-first", &[]);
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    assert_eq!(
        run.condition("readiness_flipped_before_listener_close"),
        ConditionStatus::Fail
    );
    assert_eq!(
        run.condition("no_failures_before_listener_close"),
        ConditionStatus::Pass
    );
    assert_eq!(run.condition("exit_code_zero"), ConditionStatus::Pass);
    let r = run.report();
    let close = r.events.listener_closed_us.expect("the listener closed");
    assert!(
        r.events.readiness_flip_us.is_none_or(|flip| flip > close),
        "{}",
        run.context()
    );
}

#[test]
fn server_that_resets_keepalive_connections_fails_with_resets() {
    let run = drill("reset-keepalive", &[]);
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    assert_eq!(
        run.condition("no_failures_before_listener_close"),
        ConditionStatus::Fail
    );
    assert_eq!(
        run.condition("readiness_flipped_before_listener_close"),
        ConditionStatus::Pass
    );
    assert_eq!(run.condition("exit_code_zero"), ConditionStatus::Pass);
    // The requests in flight at the signal started before it; the reset hit
    // them. A reset that lands while a response is being read shows as an
    // incomplete response, so those count too; nothing else may fail.
    let reset = r.requests.before_signal.reset + r.requests.after_signal.reset;
    let incomplete = r.requests.before_signal.incomplete + r.requests.after_signal.incomplete;
    assert!(reset > 0, "{}", run.context());
    assert_eq!(
        r.requests.failed_before_listener_close,
        reset + incomplete,
        "{}",
        run.context()
    );
    // It never asked keep-alive clients to leave while draining (hyper adds
    // `Connection: close` only to the last responses, at the stop).
    let first_close = r.keepalive.connection_close.first_after_signal_us;
    let listener_closed = r.events.listener_closed_us.expect("the listener closed");
    assert!(
        first_close.is_none_or(|at| at >= listener_closed),
        "{}",
        run.context()
    );
}

// ----- restarts -----

#[test]
fn restart_by_socket_handoff_passes_and_each_signal_reaches_the_process_serving_then() {
    let run = drill(
        "graceful,hup=handoff",
        &[
            "--signal", "HUP", "--at", "400ms", "--repeat", "2", "--every", "600ms",
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    assert_eq!(r.verdict.expect, lameduck_drill::Expectation::Restart);
    assert_eq!(r.requests.total.failed(), 0, "{}", run.context());
    let pids: Vec<Option<u32>> = r.events.signals.iter().map(|s| s.pid).collect();
    assert_eq!(pids.len(), 2, "{}", run.context());
    assert!(
        pids[0].is_some() && pids[1].is_some() && pids[0] != pids[1],
        "{}",
        run.context()
    );
    // The first process handed over and exited 0, and the service went on.
    let first = r
        .events
        .exits
        .iter()
        .find(|e| Some(e.pid) == pids[0])
        .expect("the old process exited");
    assert_eq!(first.code, Some(0), "{}", run.context());
    assert!(
        r.requests.ok_after_exit.is_some_and(|ok| ok > 0),
        "{}",
        run.context()
    );
    assert_eq!(
        run.condition("served_after_old_process_exit"),
        ConditionStatus::Pass
    );
}

#[test]
fn restart_of_a_server_that_dies_on_sighup_fails() {
    let run = drill("graceful", &["--signal", "HUP", "--at", "500ms"]);
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    assert_eq!(run.condition("no_failures"), ConditionStatus::Fail);
    assert_eq!(
        run.condition("served_after_old_process_exit"),
        ConditionStatus::Fail
    );
    let r = run.report();
    assert_eq!(r.events.exits[0].signal, Some(1), "{}", run.context());
    assert!(r.requests.total.refused > 0, "{}", run.context());
}

#[test]
fn restart_drill_stops_looking_for_a_new_process_once_the_server_and_its_group_are_gone() {
    // The server dies at the signal and leaves nothing behind that could
    // start a successor: the drill must not wait out the grace period for
    // one, and must say why it stopped looking.
    let grace_us: u64 = 120_000_000;
    let run = drill(
        "graceful,hup=die",
        &["--signal", "HUP", "--at", "500ms", "--grace-period", "120s"],
    );
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    let sent = &r.events.signals[0];
    let pid = sent.pid.expect("delivered");
    assert_eq!(sent.error, None, "{}", run.context());
    let exit = r
        .events
        .exits
        .iter()
        .find(|e| e.pid == pid)
        .unwrap_or_else(|| panic!("no exit of pid {pid}\n{}", run.context()));
    let restart = &r.events.restarts[0];
    assert_eq!(restart.new_pid, None, "{}", run.context());
    assert!(restart.nothing_left, "{}", run.context());
    // Stopped looking once the server was gone, not at the grace period.
    assert!(restart.until_us >= exit.at_us, "{}", run.context());
    assert!(
        restart.until_us < sent.at_us + grace_us,
        "{}",
        run.context()
    );
    assert!(r.events.end_us < sent.at_us + grace_us, "{}", run.context());
    assert!(
        run.stdout().contains(&format!(
            "pid {pid} had exited and nothing was left of its process group to start another, \
             so the drill stopped looking"
        )),
        "{}",
        run.context()
    );
}

#[test]
fn stop_drill_with_a_signal_that_found_no_process_says_so_and_lists_no_exit_for_it() {
    // A PID file that named a running process when the drill checked it,
    // before the load, and names a process that is gone at the signal (a
    // supervisor elsewhere rewrote it): the signal cannot be delivered. The
    // drill says why, judges nothing as if it had waited for a shutdown,
    // and does not invent an exit for a process that was never there.
    let mut gone = Command::new("true").spawn().expect("run true");
    let gone_pid = gone.id();
    gone.wait().expect("reap true");
    let dir = scratch_dir();
    // A FIFO: each read of the drill is one write of this test, so the
    // first (the check) is told a running process, this one, and every
    // later one (the signal) the process that is gone.
    let pid_file = dir.join("rewritten.pid");
    nix::unistd::mkfifo(&pid_file, nix::sys::stat::Mode::S_IRWXU).expect("make the FIFO");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (path, done) = (pid_file.clone(), done.clone());
        std::thread::spawn(move || {
            let mut pid = std::process::id();
            // Bounded: the drill reads the file a few times at most.
            for _ in 0..100 {
                let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(&path) else {
                    return;
                };
                if done.load(Ordering::SeqCst) {
                    return;
                }
                let _ = std::io::Write::write_all(&mut fifo, format!("{pid}\n").as_bytes());
                drop(fifo);
                pid = gone_pid;
                // Until that reader has read to the end and closed it: a
                // writer that opened before would add to what it reads. A
                // writer's open without waiting fails (ENXIO) once no
                // reader is left.
                let bound = std::time::Instant::now() + std::time::Duration::from_secs(20);
                while std::time::Instant::now() < bound && {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
                        .open(&path)
                        .is_ok()
                } {
                    std::thread::yield_now();
                }
            }
        })
    };
    let run = drill(
        "graceful",
        &["--pid-file", pid_file.to_str().expect("a UTF-8 path")],
    );
    // The writer waits for a reader: this one, which tells it to stop.
    done.store(true, Ordering::SeqCst);
    let _ = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&pid_file)
    };
    writer.join().expect("the FIFO writer");
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    let error = r.events.signals[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("kill({gone_pid}, SIGTERM)")) && error.contains("ESRCH"),
        "{}",
        run.context()
    );
    assert_eq!(run.condition("signals_delivered"), ConditionStatus::Fail);
    assert!(
        r.events.exits.iter().all(|e| e.pid != gone_pid),
        "{}",
        run.context()
    );
    assert!(
        !run.stdout().contains(&format!("pid {gone_pid} exited")),
        "{}",
        run.context()
    );
}

#[test]
fn repeated_signals_go_to_a_supervisor_that_keeps_its_pid() {
    let run = drill(
        "graceful,hup=workers",
        &[
            "--signal", "HUP", "--at", "300ms", "--repeat", "3", "--every", "300ms",
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.context());
    let r = run.report();
    let pids: Vec<Option<u32>> = r.events.signals.iter().map(|s| s.pid).collect();
    assert_eq!(pids.len(), 3);
    assert!(
        pids.iter().all(|p| p.is_some() && *p == pids[0]),
        "{}",
        run.context()
    );
    // Each signal brought in a new worker, none of them the supervisor.
    let new: Vec<Option<u32>> = r.events.restarts.iter().map(|x| x.new_pid).collect();
    assert_eq!(new.len(), 3, "{}", run.context());
    assert!(
        new.iter().all(|p| p.is_some() && *p != pids[0]),
        "{}",
        run.context()
    );
    assert!(new[0] != new[1] && new[1] != new[2], "{}", run.context());
    assert_eq!(
        run.condition("new_process_after_each_signal"),
        ConditionStatus::Pass
    );
    assert_eq!(
        run.condition("served_after_old_process_exit"),
        ConditionStatus::Skipped
    );
}

/// Reads back an offset as the summary prints it (`850µs`, `12.3ms`,
/// `1.52s`), in microseconds.
fn offset_us(text: &str) -> u64 {
    let (number, scale) = if let Some(n) = text.strip_suffix("µs") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1e3)
    } else {
        (text.strip_suffix('s').expect("a unit"), 1e6)
    };
    (number.parse::<f64>().expect("a number") * scale) as u64
}

#[test]
fn restart_drill_signals_the_new_process_while_the_old_one_still_drains() {
    // docs/drill.md's CI example in small: the old process drains longer
    // than the time between two signals, so it still runs when the second
    // one is due. That signal belongs to the process that took over.
    let run = drill(
        "graceful,hup=handoff,drain_ms=1500",
        &[
            "--signal",
            "HUP",
            "--at",
            "300ms",
            "--repeat",
            "2",
            "--every",
            "1s",
            "--duration",
            "3500ms",
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    let pids: Vec<u32> = r
        .events
        .signals
        .iter()
        .map(|s| s.pid.expect("delivered"))
        .collect();
    assert_eq!(pids.len(), 2, "{}", run.context());
    assert_ne!(pids[0], pids[1], "{}", run.context());
    let restarts = &r.events.restarts;
    assert_eq!(restarts.len(), 2, "{}", run.context());
    assert_eq!(restarts[0].new_pid, Some(pids[1]), "{}", run.context());
    assert!(
        restarts[1].new_pid.is_some_and(|p| !pids.contains(&p)),
        "{}",
        run.context()
    );
    assert_eq!(
        run.condition("new_process_after_each_signal"),
        ConditionStatus::Pass
    );
    assert_eq!(
        run.condition("readiness_stayed_ready"),
        ConditionStatus::Pass
    );
    // The second process's exit is timed from the signal it got, not from
    // the first one.
    let exit = r
        .events
        .exits
        .iter()
        .find(|e| e.pid == pids[1] && e.stopped_by_cleanup.is_none())
        .unwrap_or_else(|| panic!("pid {} exited during the drill\n{}", pids[1], run.context()));
    let stdout = run.stdout();
    let prefix = format!("pid {} exited (exit code unknown) (+", pids[1]);
    let printed = stdout
        .lines()
        .find_map(|l| l.split_once(&prefix))
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no line {prefix:?}\n{}", run.context()));
    let (own, first) = (r.events.signals[1].at_us, r.events.signals[0].at_us);
    let printed = offset_us(printed);
    // Printed with three significant figures: within 1% of the right one.
    let from_own = exit.at_us - own;
    assert!(
        printed.abs_diff(from_own) <= from_own / 100,
        "printed +{printed}µs, {from_own}µs after its own signal, {}µs after the first\n{}",
        exit.at_us - first,
        run.context()
    );
}

#[test]
fn restart_drill_fails_when_a_signal_brings_in_no_new_process() {
    // A server that "reloads" in place: it goes on serving, nothing fails,
    // and nothing restarted either.
    let run = drill("graceful,hup=reload", &["--signal", "HUP", "--at", "500ms"]);
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    assert_eq!(run.condition("no_failures"), ConditionStatus::Pass);
    assert_eq!(
        run.condition("new_process_after_each_signal"),
        ConditionStatus::Fail
    );
    let pid = run.report().events.signals[0].pid.expect("delivered");
    assert!(
        run.stdout().contains(&format!(
            "FAIL new_process_after_each_signal: 1 of 1 HUP signals brought in no new process: \
             HUP 1 to pid {pid}"
        )),
        "{}",
        run.context()
    );
    assert_eq!(run.report().events.restarts[0].new_pid, None);
}

#[test]
fn restart_drill_fails_on_a_readiness_dip_and_says_when() {
    let run = drill(
        "graceful,hup=handoff-unready",
        &["--signal", "HUP", "--at", "500ms"],
    );
    assert_eq!(run.code(), 1, "{}", run.context());
    run.assert_accounting();
    assert_eq!(
        run.condition("new_process_after_each_signal"),
        ConditionStatus::Pass
    );
    assert_eq!(run.condition("no_failures"), ConditionStatus::Pass);
    assert_eq!(
        run.condition("readiness_stayed_ready"),
        ConditionStatus::Fail
    );
    let detail = &run
        .report()
        .verdict
        .conditions
        .iter()
        .find(|c| c.name == "readiness_stayed_ready")
        .expect("the condition")
        .detail;
    assert!(
        detail.contains("answered 503 from") && detail.contains("after HUP 1)"),
        "{detail}"
    );
}

// ----- other targets and modes -----

#[test]
fn plain_load_test_without_a_signal_passes_and_its_cleanup_stops_the_server_cleanly_with_term() {
    let run = drill("graceful", &["--signal", "none"]);
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    let r = run.report();
    assert!(r.events.signals.is_empty());
    assert_eq!(r.requests.total.failed(), 0, "{}", run.context());
    assert_eq!(r.requests.before_signal, r.requests.total);
    // The graceful server exits 0 on the cleanup's TERM: stopped, not killed.
    let exit = r.events.exits.first().expect("the server's exit");
    assert_eq!(
        (exit.code, exit.stopped_by_cleanup.as_deref()),
        (Some(0), Some("TERM")),
        "{}",
        run.context()
    );
    let said = format!(
        "pid {} stopped by the drill's cleanup with SIGTERM: exited with code 0",
        exit.pid
    );
    assert!(run.stdout().contains(&said), "{}", run.context());
    // Without a signal, the latency row is of every request, and says so.
    let stdout = run.stdout();
    assert!(
        stdout.contains("\n  all requests ") && !stdout.contains("before signal"),
        "{}",
        run.context()
    );
    assert!(
        run.json.contains("\"stopped_by_cleanup\": \"TERM\"")
            && !run.json.contains("killed_by_drill"),
        "{}",
        run.json
    );
}

#[test]
fn attaching_by_pid_signals_a_server_the_drill_did_not_start() {
    let port = free_port();
    let mut server = Command::new(&server_command()[0])
        .args(&server_command()[1..])
        .env(TARGET_ENV, format!("mode=graceful,port={port}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start a test server");
    let dir = scratch_dir();
    let json = dir.join("report.json");
    let url = format!("http://127.0.0.1:{port}/");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lameduck"));
    command
        .args([
            "drill",
            "--url",
            &url,
            "--ready-url",
            &format!("{url}readyz"),
        ])
        .args([
            "--duration",
            "1500ms",
            "--at",
            "500ms",
            "--grace-period",
            "1s",
            "--no-progress",
        ])
        .arg("--pid")
        .arg(server.id().to_string())
        .arg("--json")
        .arg(&json);
    let run = run(command, &json, dir);
    let status = server.wait().expect("the server exits");
    assert_eq!(run.code(), 0, "{}", run.context());
    run.assert_accounting();
    assert_eq!(status.code(), Some(0));
    assert_eq!(run.report().config.server.kind, "attach");
    // Not the drill's child: it sees the exit but not the code.
    assert_eq!(run.condition("exit_code_zero"), ConditionStatus::Skipped);
    assert_eq!(
        run.condition("exited_within_grace_period"),
        ConditionStatus::Pass
    );
}

// ----- usage and setup errors -----

#[test]
fn usage_errors_exit_with_2_and_say_why() {
    let lameduck = env!("CARGO_BIN_EXE_lameduck");
    let cases: [(&[&str], &str); 8] = [
        (
            &["drill", "--url", "https://127.0.0.1:1/"],
            "needs --cacert FILE (the CA that signed the server's certificate) or --insecure",
        ),
        // Not taken for "no port" and sent to port 80.
        (
            &["drill", "--url", "http://127.0.0.1:99999/", "--pid", "1"],
            "--url http://127.0.0.1:99999/: port 99999 is out of range: a port is 0 to 65535",
        ),
        (
            &[
                "drill",
                "--url",
                "http://127.0.0.1:1/",
                "--ready-url",
                "http://127.0.0.1:99999/readyz",
                "--pid",
                "1",
            ],
            "--ready-url http://127.0.0.1:99999/readyz: port 99999 is out of range",
        ),
        (
            &["drill", "--url", "http://127.0.0.1:1/", "--signal", "TERM"],
            "a signal needs a server",
        ),
        (
            &[
                "drill",
                "--url",
                "http://127.0.0.1:1/",
                "--signal",
                "BOGUS",
                "--pid",
                "1",
            ],
            "unknown signal",
        ),
        (
            &[
                "drill",
                "--url",
                "http://127.0.0.1:1/",
                "--signal",
                "0",
                "--pid",
                "1",
            ],
            // A number that names no signal is not told to give a number.
            "--signal 0: 0 is not a signal (kill -0 only checks that a process exists); \
             expected a signal name, e.g. TERM, HUP, INT, QUIT, USR1, USR2, or none\n",
        ),
        (
            &[
                "drill",
                "--url",
                "http://127.0.0.1:1/",
                "--duration",
                "2s",
                "--at",
                "3s",
                "--pid",
                "1",
            ],
            "lengthen --duration",
        ),
        (
            &[
                "drill",
                "--url",
                "http://127.0.0.1:1/",
                "--every",
                "1s",
                "--pid",
                "1",
            ],
            "--every needs --repeat above 1",
        ),
    ];
    for (args, message) in cases {
        let output = Command::new(lameduck)
            .args(args)
            .output()
            .expect("run lameduck");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

#[test]
fn every_zero_is_refused_for_its_value_not_as_a_missing_every() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args([
            "drill",
            "--demo",
            "--repeat",
            "2",
            "--every",
            "0s",
            "--duration",
            "2s",
        ])
        .output()
        .expect("run lameduck");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'--every <DURATION>': 0s would send every signal at once"),
        "{stderr}"
    );
    assert!(!stderr.contains("needs --every"), "{stderr}");
}

#[test]
fn a_drill_with_nothing_to_drill_names_both_url_and_demo() {
    for args in [&["drill"][..], &["drill", "--", "./server"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
            .args(args)
            .output()
            .expect("run lameduck");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: nothing to drill: give --url URL")
                && stderr.contains("or --demo to drill the built-in demo server")
                && stderr.contains("Usage: lameduck drill"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn a_server_that_exits_before_it_is_ready_is_a_setup_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args([
            "drill",
            "--url",
            &format!("http://127.0.0.1:{}/", free_port()),
            "--no-progress",
        ])
        .args(["--", "sh", "-c", "exit 3"])
        .output()
        .expect("run lameduck");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("exited (code 3) before it was ready"),
        "{stderr}"
    );
}

#[test]
fn a_server_that_never_answers_is_a_setup_error_after_the_ready_timeout() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args([
            "drill",
            "--url",
            &format!("http://127.0.0.1:{}/", free_port()),
            "--no-progress",
        ])
        .args(["--ready-timeout", "300ms", "--", "sleep", "30"])
        .output()
        .expect("run lameduck");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not ready within 300ms"), "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
}

// ----- reports -----

#[test]
fn json_report_round_trips_and_declares_its_schema() {
    let run = drill("reset-keepalive", &["--http", "2"]);
    let report = run.report();
    assert_eq!(report.schema, lameduck_drill::report::SCHEMA);
    let again = Report::from_json(&report.to_json()).expect("the JSON reads back");
    assert_eq!(&again, report);
    assert_eq!(again.to_json(), run.json.trim_end());
    let value: serde_json::Value = serde_json::from_str(&run.json).expect("valid JSON");
    for key in [
        "config",
        "events",
        "requests",
        "latency",
        "keepalive",
        "timeline",
        "failures",
        "verdict",
    ] {
        assert!(value.get(key).is_some(), "missing {key}");
    }
}

#[test]
fn json_report_goes_to_stdout_with_a_dash_and_the_summary_to_stderr() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/");
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args([
            "drill",
            "--url",
            &url,
            "--duration",
            "300ms",
            "--signal",
            "none",
            "--json",
            "-",
        ])
        .args(["--no-progress", "--"])
        .args(server_command())
        .env(TARGET_ENV, format!("mode=graceful,port={port}"))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run lameduck");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = Report::from_json(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not a report ({e}): {stdout}"));
    assert!(report.verdict.pass);
    assert!(String::from_utf8_lossy(&output.stderr).contains("verdict: PASS"));
}

#[test]
fn html_report_is_self_contained_and_renders_in_chromium() {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "this test needs Debian's chromium at /usr/bin/chromium: `.ci/run` installs it \
         (apt-get install -y chromium)"
    );
    let dir = scratch_dir();
    let html = dir.join("report.html");
    let run = drill(
        "exit-at-once",
        &["--html", html.to_str().expect("a UTF-8 path")],
    );
    assert_eq!(run.code(), 1, "{}", run.context());
    let page = std::fs::read_to_string(&html).expect("the HTML report was written");
    assert!(page.starts_with("<!DOCTYPE html>"));
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(
            !page.contains(external),
            "the page refers to something outside it: {external}"
        );
    }
    for marker in [
        "SIGTERM",
        "listener closed",
        "exit ",
        "FAIL",
        "no_failures_before_listener_close",
    ] {
        assert!(page.contains(marker), "the page lacks {marker:?}");
    }

    let png = dir.join("report.png");
    let profile = dir.join("chromium-profile");
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
        ])
        .args([
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1100,1400")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    let image = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "chromium wrote no screenshot ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // A blank 1100×1400 page compresses to a few kilobytes; the report's
    // charts and tables do not.
    assert!(
        image.len() > 30_000,
        "the screenshot is suspiciously small: {} bytes",
        image.len()
    );
}

// ----- the built-in demo, as the README runs it -----

#[test]
fn drill_demo_passes_against_the_built_in_demo() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args([
            "drill",
            "--demo",
            "--duration",
            "3s",
            "--at",
            "1s",
            "--no-progress",
            "--json",
            "-",
        ])
        .output()
        .expect("run lameduck drill --demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report = Report::from_json(&stdout).expect("the JSON report on stdout");
    assert!(report.verdict.pass);
    assert_eq!(report.requests.sent, report.requests.accounted);
    assert!(report.requests.sent > 0);
    assert!(
        report.events.listener_closed_us.is_some(),
        "the demo closed its listener"
    );
    // The demo printed its phases for a person (stderr is not a terminal
    // here, but --demo asks for the human output).
    assert!(stderr.contains("draining"), "{stderr}");
}

/// `lameduck drill --demo EXTRA --no-progress --json -`: the exit code, the
/// JSON report and stderr.
fn drill_demo(extra: &[&str]) -> (Option<i32>, Option<Report>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args(["drill", "--demo", "--no-progress", "--json", "-"])
        .args(extra)
        .output()
        .expect("run lameduck drill --demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (
        output.status.code(),
        Report::from_json(&stdout).ok(),
        stderr,
    )
}

#[test]
fn drill_demo_given_only_a_duration_signals_at_a_third_of_it() {
    let (code, report, stderr) = drill_demo(&["--duration", "2s"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = report.expect("the JSON report on stdout");
    assert!(report.verdict.pass, "{stderr}");
    assert!(
        report.events.listener_closed_us.is_some(),
        "the demo was signalled: {stderr}"
    );
}

#[test]
fn drill_demo_gives_the_count_in_flight_at_stop_and_the_stopping_inventory_as_one_list() {
    // The flight record holds two counts of what was in flight at
    // Stopping: its inventory, and the settled work's count. They are one
    // list, counted once (the record is far under its size limit here).
    // The summary and the HTML give the count next to the inventory, and
    // would say why the two differ.
    let dir = scratch_dir();
    let (record, log, html) = (
        dir.join("flight.json"),
        dir.join("demo.log"),
        dir.join("drill.html"),
    );
    let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
    let (code, report, stderr) = drill_demo(&[
        "--duration",
        "3s",
        "--at",
        "1s",
        "--flight-record",
        &path(&record),
        "--server-log",
        &path(&log),
        "--html",
        &path(&html),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = report.expect("the JSON report on stdout");
    let server = report.server.as_ref().expect("the flight record was read");
    let listed = server
        .inventories
        .iter()
        .find(|i| i.at == "stopping")
        .unwrap_or_else(|| panic!("no inventory at stopping: {stderr}"))
        .work
        .len() as u64;
    let counted = server
        .work
        .as_ref()
        .unwrap_or_else(|| panic!("no settled work: {stderr}"))
        .in_flight_at_stop;
    assert!(
        stderr.contains(&format!("in flight at stopping: {listed} work")),
        "{stderr}"
    );
    let line = stderr
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with("work: "))
        .unwrap_or_else(|| panic!("the summary gives no work at stop: {stderr}"));
    assert!(
        line.starts_with(&format!("work: {counted} in flight at stop: ")),
        "{line}\n{stderr}"
    );
    assert_eq!(listed, counted, "{line}\n{stderr}");
    assert!(
        !line.contains("just after the inventory at stopping listed"),
        "{line}\n{stderr}"
    );
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    let said = line.trim_start_matches("work: ");
    assert!(page.contains(&format!("<p>{said}.</p>")), "{line}");
}

#[test]
fn drill_demo_with_signal_none_is_a_plain_load_test() {
    let (code, report, stderr) = drill_demo(&["--signal", "none", "--duration", "2s"]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = report.expect("the JSON report on stdout");
    assert!(report.verdict.pass, "{stderr}");
    assert!(report.requests.sent > 0, "{stderr}");
    assert!(report.events.listener_closed_us.is_none(), "{stderr}");
}

#[test]
fn output_paths_that_cannot_be_written_are_usage_errors_before_anything_runs() {
    let dir = scratch_dir();
    let marker = dir.join("server-started");
    let missing = dir.join("no-such-dir").join("x");
    let missing = missing.to_str().expect("a UTF-8 path");
    let a_dir = dir.to_str().expect("a UTF-8 path");
    let cases: [(&[&str], String); 3] = [
        (
            &["--json", missing],
            format!("--json {missing}: cannot write the file"),
        ),
        (&["--html", a_dir], format!("--html {a_dir} is a directory")),
        (
            &["--server-log", missing],
            format!("--server-log {missing}: cannot write the file"),
        ),
    ];
    for (flags, message) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
            .args(["drill", "--url", "http://127.0.0.1:1/", "--no-progress"])
            .args(flags)
            .arg("--")
            .args(["sh", "-c", "touch \"$0\"; exec sleep 30"])
            .arg(&marker)
            .output()
            .expect("run lameduck drill");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.starts_with("lameduck: error: ") && stderr.contains(&message),
            "{flags:?}: {stderr}"
        );
        assert!(!marker.exists(), "{flags:?}: the server was started");
    }
}

#[test]
fn restart_drill_cleanup_names_the_process_it_signalled_and_records_its_exit() {
    // One SIGHUP: the old process drains for longer than the load has left,
    // so it may still be draining when the cleanup begins; the new one
    // serves to the end. The cleanup signals the new one, never the one
    // leaving on its own, and the report has both exits.
    let run = drill(
        "graceful,hup=handoff,drain_ms=1300",
        &["--signal", "HUP", "--at", "300ms", "--duration", "1500ms"],
    );
    run.assert_accounting();
    let r = run.report();
    let old = r.events.signals[0].pid.expect("delivered");
    let new = r.events.restarts[0]
        .new_pid
        .unwrap_or_else(|| panic!("a new process took over\n{}", run.context()));
    let exit_of = |pid: u32| {
        r.events
            .exits
            .iter()
            .find(|e| e.pid == pid)
            .unwrap_or_else(|| panic!("no exit recorded for pid {pid}\n{}", run.context()))
    };
    assert_eq!(
        exit_of(old).stopped_by_cleanup,
        None,
        "the replaced process exits on its own\n{}",
        run.context()
    );
    assert!(
        exit_of(new).stopped_by_cleanup.is_some(),
        "the cleanup stopped the new process\n{}",
        run.context()
    );
    let stdout = run.stdout();
    assert!(
        stdout.contains(&format!("pid {new} stopped by the drill's cleanup")),
        "{}",
        run.context()
    );
    assert!(
        !stdout.contains(&format!("pid {old} stopped by the drill's cleanup")),
        "{}",
        run.context()
    );
}

/// A stop signal sent again and again to the server the drill starts can
/// only fail after the first (nothing is left to signal): refused before
/// anything runs, pointing at a restart drill.
#[test]
fn repeating_a_stop_signal_at_a_server_the_drill_starts_is_refused_before_anything_runs() {
    let output = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args(["drill", "--demo", "--repeat", "3", "--every", "1s"])
        .output()
        .expect("run lameduck");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--repeat 3: TERM is expected to stop the server the drill starts"),
        "{stderr}"
    );
    assert!(stderr.contains("--signal HUP"), "{stderr}");
    assert!(
        !stderr.contains("listening on"),
        "the demo was started: {stderr}"
    );
}
