//! The lifecycle of a real process: the fixture program, real signals, real
//! exit codes. One harness, one scenario per test.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// A running fixture whose stdout events arrive on a channel.
struct Fixture {
    child: Child,
    events: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Bound on any wait for output; a hang fails the test instead of the suite.
const WAIT: Duration = Duration::from_secs(60);

impl Fixture {
    fn spawn(args: &[&str]) -> Self {
        Self::spawn_with_stdin(args, Stdio::null())
    }

    fn spawn_with_stdin(args: &[&str], stdin: Stdio) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifecycle-fixture"));
        cmd.args(args).stdin(stdin);
        Self::start(cmd)
    }

    /// The signals fixture, in a process group of its own (so that a test
    /// can signal the group, as GNU `timeout` does), its stdin a pipe that
    /// the test holds open (or `stdin`).
    fn signals(args: &[&str]) -> Self {
        Self::signals_with_stdin(args, Stdio::piped())
    }

    fn signals_with_stdin(args: &[&str], stdin: Stdio) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_signals-fixture"));
        cmd.args(args).stdin(stdin).process_group(0);
        Self::start(cmd)
    }

    /// Spawns `cmd` with stdout and stderr piped.
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the fixture");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(event) = line.strip_prefix("event: ")
                    && tx.send(event.to_string()).is_err()
                {
                    return;
                }
            }
        });
        Self {
            child,
            events,
            seen: Vec::new(),
        }
    }

    /// Waits for the event `want`, keeping every event seen.
    fn wait_for(&mut self, want: &str) {
        loop {
            match self.events.recv_timeout(WAIT) {
                Ok(e) => {
                    let hit = e == want;
                    self.seen.push(e);
                    if hit {
                        return;
                    }
                }
                Err(err) => panic!("no {want:?} ({err}); seen {:#?}", self.seen),
            }
        }
    }

    /// Waits for an event that starts with `prefix`; the rest of it.
    fn wait_prefix(&mut self, prefix: &str) -> String {
        loop {
            match self.events.recv_timeout(WAIT) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if let Some(rest) = e.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
                Err(err) => panic!("no {prefix:?}... ({err}); seen {:#?}", self.seen),
            }
        }
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).expect("signal the fixture");
    }

    /// Sends `sig` to the fixture and then to its process group, back to
    /// back, as GNU `timeout` does: two deliveries within a millisecond.
    fn signal_process_and_group(&self, sig: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, sig).expect("signal the fixture");
        killpg(pid, sig).expect("signal the fixture's group");
    }

    /// Waits for the exit; returns the code, every event, and stderr.
    fn finish(mut self) -> (i32, Vec<String>, String) {
        let mut stderr = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = self.child.wait().unwrap();
        while let Ok(e) = self.events.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(e);
        }
        (
            status.code().expect("exited, not killed"),
            std::mem::take(&mut self.seen),
            stderr,
        )
    }
}

/// How long the report says Draining lasted.
fn drained(events: &[String]) -> Duration {
    let text = events
        .iter()
        .find_map(|e| e.strip_prefix("report   draining"))
        .unwrap_or_else(|| panic!("no draining line in {events:#?}"))
        .trim();
    humantime::parse_duration(text).unwrap()
}

impl Drop for Fixture {
    /// A test that fails half-way leaves no fixture behind: it is killed by
    /// its PID (after `finish`, it has already been reaped and this does
    /// nothing).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn position(events: &[String], e: &str) -> usize {
    events
        .iter()
        .position(|x| x == e)
        .unwrap_or_else(|| panic!("no {e:?} in {events:#?}"))
}

#[test]
fn sigterm_drains_stops_in_reverse_dependency_order_and_exits_0() {
    let mut f = Fixture::spawn(&[]);
    f.wait_for("phase running");
    f.signal(Signal::SIGTERM);
    let (code, events, _) = f.finish();
    assert_eq!(code, 0, "{events:#?}");
    let order = [
        "start db",
        "start cache",
        "start http",
        "phase draining",
        "stop http",
        "stop cache",
        "stop db",
        "close http",
        "close cache",
        "close db",
    ];
    let at: Vec<usize> = order.iter().map(|e| position(&events, e)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{events:#?}");
    assert!(
        events.iter().any(|e| e.contains("shut down (SIGTERM)")),
        "{events:#?}"
    );
}

#[test]
fn sigint_without_a_terminal_drains_like_sigterm() {
    let mut f = Fixture::spawn(&["--drain-delay", "300ms"]);
    f.wait_for("phase running");
    f.signal(Signal::SIGINT);
    let (code, events, _) = f.finish();
    assert_eq!(code, 0);
    // The drain delay was waited, not skipped: at least 300ms.
    let drained = drained(&events);
    assert!(drained >= Duration::from_millis(300), "{drained:?}");
}

#[test]
fn sigint_with_a_terminal_on_stdin_skips_the_drain_delay() {
    // A person pressed Ctrl+C: no load balancer to wait for. The drain delay
    // is 25 s; the shutdown must not wait it.
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let mut f = Fixture::spawn_with_stdin(
        &["--grace-period", "60s", "--drain-delay", "25s"],
        Stdio::from(pty.slave),
    );
    f.wait_for("phase running");
    f.signal(Signal::SIGINT);
    let (code, events, _) = f.finish();
    drop(pty.master);
    assert_eq!(code, 0, "{events:#?}");
    let drained = drained(&events);
    assert!(
        drained < Duration::from_secs(25),
        "the drain delay was waited: {drained:?}"
    );
}

#[test]
fn sigterm_with_a_terminal_on_stdin_still_drains() {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let mut f = Fixture::spawn_with_stdin(&["--drain-delay", "300ms"], Stdio::from(pty.slave));
    f.wait_for("phase running");
    f.signal(Signal::SIGTERM);
    let (code, events, _) = f.finish();
    drop(pty.master);
    assert_eq!(code, 0, "{events:#?}");
    let drained = drained(&events);
    assert!(drained >= Duration::from_millis(300), "{drained:?}");
}

/// A fixture held in Stopping by a component that never finishes. Stopping
/// begins a drain delay (400 ms) after the first signal, longer than
/// `SIGNAL_REPEAT_WINDOW`: a signal sent once it began is a second signal,
/// never a copy of the first.
fn held_in_stopping(first: Signal) -> Fixture {
    let mut f = Fixture::spawn(&["--hang", "--grace-period", "60s", "--drain-delay", "400ms"]);
    f.wait_for("phase running");
    f.signal(first);
    f.wait_for("phase stopping");
    f
}

#[test]
fn a_second_sigterm_forces_the_exit_with_143() {
    let f = held_in_stopping(Signal::SIGTERM);
    f.signal(Signal::SIGTERM);
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 143, "{events:#?}");
    assert!(
        !events.iter().any(|e| e == "close db"),
        "nothing closes gracefully after the force: {events:#?}"
    );
    assert!(
        stderr.contains("second signal: forcing the exit"),
        "{stderr}"
    );
    // The report logged before the exit names what was cut.
    assert!(stderr.contains("GET /forever"), "{stderr}");
}

#[test]
fn a_second_sigint_forces_the_exit_with_130() {
    let f = held_in_stopping(Signal::SIGINT);
    f.signal(Signal::SIGINT);
    let (code, _, _) = f.finish();
    assert_eq!(code, 130);
}

#[test]
fn a_hung_component_is_aborted_at_the_hard_deadline_and_named_with_exit_3() {
    let mut f = Fixture::spawn(&[
        "--hang",
        "--drain-delay",
        "0s",
        "--shutdown-timeout",
        "300ms",
        "--hard-timeout",
        "300ms",
    ]);
    f.wait_for("phase running");
    f.signal(Signal::SIGTERM);
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 3, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("report     aborted: stuck: GET /forever (running")),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "report   component stuck: aborted"),
        "{events:#?}"
    );
    assert!(
        stderr.contains("aborting work still in flight at the hard deadline"),
        "{stderr}"
    );
    assert!(stderr.contains("GET /forever"), "{stderr}");
    // Resources were still closed, in order.
    assert!(position(&events, "close cache") < position(&events, "close db"));
}

#[test]
fn a_panicking_component_is_restarted_then_escalates_with_exit_1() {
    let mut f = Fixture::spawn(&["--panics", "10", "--max-restarts", "2"]);
    f.wait_for("start flaky 2");
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 1, "{events:#?}");
    assert!(
        !events.iter().any(|e| e == "start flaky 3"),
        "no restart past the limit: {events:#?}"
    );
    assert!(stderr.contains("restart intensity exceeded"), "{stderr}");
    assert!(
        events
            .iter()
            .any(|e| e.contains("component flaky failed: panicked: flaky failure 2")),
        "{events:#?}"
    );
}

#[test]
fn a_component_that_recovers_within_the_limit_keeps_the_service_up() {
    let mut f = Fixture::spawn(&["--panics", "2", "--max-restarts", "3"]);
    f.wait_for("start flaky 2");
    f.signal(Signal::SIGTERM);
    let (code, events, _) = f.finish();
    assert_eq!(code, 0, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e.contains("component flaky: finished, 2 restarts")),
        "{events:#?}"
    );
}

#[test]
fn an_invalid_budget_is_rejected_at_start_with_the_arithmetic_and_exit_78() {
    let f = Fixture::spawn(&["--grace-period", "5s", "--drain-delay", "5s"]);
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 78);
    assert!(events.is_empty(), "nothing started: {events:#?}");
    assert!(stderr.contains("grace period 5s"), "{stderr}");
    assert!(stderr.contains("drain 5s"), "{stderr}");
}

#[test]
fn a_dependency_cycle_is_rejected_naming_the_cycle() {
    let f = Fixture::spawn(&["--cycle"]);
    let (code, _, stderr) = f.finish();
    assert_eq!(code, 78);
    assert!(
        stderr.contains("dependency cycle: db -> http -> cache -> db"),
        "{stderr}"
    );
}

#[test]
fn the_exit_watchdog_ends_a_process_whose_runtime_cannot_drop_with_the_reports_code() {
    // The blocker parks a runtime thread forever once told to stop. The
    // other threads finish the shutdown and log the report (exit 3: the
    // blocker was aborted), but the runtime can never drop, so only the
    // watchdog can end the process — with the code the report gave.
    let mut f = Fixture::spawn(&[
        "--block",
        "--grace-period",
        "2s",
        "--drain-delay",
        "0s",
        "--shutdown-timeout",
        "200ms",
        "--hard-timeout",
        "200ms",
    ]);
    f.wait_for("phase running");
    f.signal(Signal::SIGTERM);
    let (code, events, stderr) = f.finish();
    assert!(
        events
            .iter()
            .any(|e| e == "report   exit: deadline exceeded (3)"),
        "{events:#?}"
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("exit watchdog: the shutdown ended (deadline exceeded (3))"),
        "{stderr}"
    );
}

#[test]
fn the_exit_watchdog_ends_a_shutdown_stuck_before_its_report_with_124() {
    // On a current-thread runtime the blocker holds the only thread: the
    // shutdown never gets to its report, and the watchdog says so.
    let mut f = Fixture::signals(&[
        "--current-thread",
        "--block",
        "--grace-period",
        "2s",
        "--hard-timeout",
        "200ms",
    ]);
    f.wait_for("phase running");
    f.signal(Signal::SIGTERM);
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 124, "{events:#?}\n{stderr}");
    assert!(
        !events.iter().any(|e| e.starts_with("report")),
        "{events:#?}"
    );
    assert!(
        stderr.contains("exit watchdog: the shutdown overran its budget"),
        "{stderr}"
    );
}

#[test]
fn a_second_sigterm_ends_a_process_whose_runtime_hangs_on_a_stdin_read() {
    // The stdin component's read stays pending on tokio's blocking pool:
    // the shutdown is clean, but dropping the runtime waits for the read.
    // The drain delay outlasts the repeat window, so the second SIGTERM
    // (sent once the report is out) is not taken for a copy of the first;
    // the grace period keeps the watchdog far away.
    let mut f = Fixture::signals(&[
        "--read-stdin",
        "--drain-delay",
        "500ms",
        "--grace-period",
        "20s",
    ]);
    let stdin = f.child.stdin.take();
    f.wait_for("phase running");
    f.signal(Signal::SIGTERM);
    f.wait_for("report   exit: clean (0)");
    f.signal(Signal::SIGTERM);
    let (code, events, stderr) = f.finish();
    drop(stdin);
    assert_eq!(code, 143, "{events:#?}\n{stderr}");
    assert!(
        stderr.contains("SIGTERM after the shutdown report (clean (0))"),
        "the exit must come from the second signal: {stderr}"
    );
    assert!(!stderr.contains("exit watchdog"), "{stderr}");
}

#[test]
fn a_second_sigterm_ends_a_current_thread_runtime_that_a_component_blocks() {
    // Once stopping, the blocker parks the runtime's only thread: the
    // driver never runs again, so only the signal thread can act.
    let mut f = Fixture::signals(&[
        "--current-thread",
        "--block",
        "--drain-delay",
        "500ms",
        "--grace-period",
        "20s",
    ]);
    f.wait_for("phase running");
    f.signal(Signal::SIGTERM);
    f.wait_for("blocking");
    f.signal(Signal::SIGTERM);
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 143, "{events:#?}\n{stderr}");
    assert!(
        stderr.contains("second signal: forcing the exit"),
        "{stderr}"
    );
    assert!(stderr.contains("the runtime did not answer"), "{stderr}");
    assert!(!stderr.contains("exit watchdog"), "{stderr}");
}

#[test]
fn the_same_signal_delivered_twice_at_once_is_one_signal_and_drains() {
    let mut f = Fixture::signals(&["--drain-delay", "300ms"]);
    f.wait_for("phase running");
    f.signal_process_and_group(Signal::SIGTERM);
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 0, "{events:#?}\n{stderr}");
    assert!(
        events.iter().any(|e| e == "report   exit: clean (0)"),
        "{events:#?}"
    );
    let drained = drained(&events);
    assert!(drained >= Duration::from_millis(300), "{drained:?}");
}

#[test]
fn a_sigterm_during_a_drain_begun_by_shutdown_lets_requests_in_flight_finish() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let mut f = Fixture::signals(&["--http", "--drain-delay", "500ms"]);
    let addr = f.wait_prefix("listening ");
    f.wait_for("phase running");
    // An upload in flight: its head and half its body.
    let mut upload = TcpStream::connect(&addr).unwrap();
    upload.set_read_timeout(Some(WAIT)).unwrap();
    upload
        .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        .unwrap();
    f.wait_for("request /upload started");
    // The app begins to drain for a reason of its own.
    let answer = get(&addr, "/shutdown");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    f.wait_for("phase draining");
    // The operator's SIGTERM arrives during that drain: it must neither
    // force the exit nor cut the upload.
    f.signal(Signal::SIGTERM);
    f.wait_for("phase stopping");
    upload.write_all(b"67890").unwrap();
    let mut response = String::new();
    upload.read_to_string(&mut response).unwrap();
    assert!(response.ends_with("got 10 bytes"), "{response}");
    let (code, events, stderr) = f.finish();
    assert_eq!(code, 0, "{events:#?}\n{stderr}");
    assert!(
        events.iter().any(
            |e| e.starts_with("report signals-fixture: shut down (requested: asked over HTTP)")
        ),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e == "report   exit: clean (0)"),
        "{events:#?}"
    );
    assert!(
        stderr.contains("SIGTERM during a shutdown already under way"),
        "{stderr}"
    );
}

/// `GET path` on a fresh connection; the answer.
fn get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_sigint_from_a_terminal_during_a_drain_begun_by_shutdown_ends_the_drain_delay() {
    // Ctrl+C by a person skips the drain delay; joining a drain that began
    // otherwise, it ends the delay instead of forcing the exit.
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    let mut f = Fixture::signals_with_stdin(
        &["--http", "--grace-period", "60s", "--drain-delay", "25s"],
        Stdio::from(pty.slave),
    );
    let addr = f.wait_prefix("listening ");
    f.wait_for("phase running");
    assert!(get(&addr, "/shutdown").starts_with("HTTP/1.1 200"));
    f.wait_for("phase draining");
    f.signal(Signal::SIGINT);
    let (code, events, stderr) = f.finish();
    drop(pty.master);
    assert_eq!(code, 0, "{events:#?}\n{stderr}");
    let drained = drained(&events);
    assert!(
        drained < Duration::from_secs(25),
        "the drain delay was waited: {drained:?}"
    );
    assert!(stderr.contains("drain cut short by SIGINT"), "{stderr}");
}
