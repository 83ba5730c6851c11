//! The last log lines reach the disk on every way a process ends: a
//! program logs N numbered lines through `lameduck::logging` during its
//! shutdown, and all N are in its log file after a clean exit, a deadline
//! exit, a second signal, the exit watchdog and a panic.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const FIXTURE: &str = env!("CARGO_BIN_EXE_logging-fixture");
const LINES: usize = 5_000;
/// Bound on each wait; never reached when the test passes.
const WAIT: Duration = Duration::from_secs(60);

struct Run {
    child: Child,
    said: mpsc::Receiver<String>,
    file: std::path::PathBuf,
}

impl Run {
    fn start(mode: &str) -> Self {
        let file = std::env::temp_dir().join(format!(
            "lameduck-logging-{mode}-{}.log",
            std::process::id()
        ));
        let mut child = Command::new(FIXTURE)
            .args([mode, file.to_str().unwrap(), &LINES.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, said) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, said, file }
    }

    fn wait_for(&self, what: &str) {
        let line = self
            .said
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("the fixture never said {what}"));
        assert_eq!(line, what);
    }

    fn signal(&self, sig: Signal) {
        // Started by this test; signalled by its pid.
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Sends SIGTERM once running, then waits for the lines to be logged.
    fn shut_down(&self) {
        self.wait_for("ready");
        self.signal(Signal::SIGTERM);
        self.wait_for("written");
    }

    fn exit_code(&mut self) -> i32 {
        // The fixture's own deadlines end it; the bound only catches a hang
        // (then the child is killed on drop).
        let pid = self.child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let status = nix::sys::wait::waitpid(Pid::from_raw(pid as i32), None);
            let _ = tx.send(status);
        });
        match rx.recv_timeout(WAIT).expect("the fixture never exited") {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
            other => panic!("not an exit: {other:?}"),
        }
    }

    /// The log file, checked for every numbered line.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.file).unwrap();
        let missing: Vec<usize> = (0..LINES)
            .filter(|i| !text.contains(&format!("shutdown line {i}\n")))
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {LINES} lines missing, the first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        text
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Started by this test; killed by its pid if still there (reaped by
        // `exit_code` otherwise).
        let _ = self.child.kill();
        let _ = self.child.try_wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn every_line_logged_during_a_clean_shutdown_is_on_disk_and_stopped_is_last_before_the_flush() {
    let mut run = Run::start("clean");
    run.shut_down();
    assert_eq!(run.exit_code(), 0);
    let log = run.log();
    assert!(log.contains("shutdown report"), "{log}");
    let last = log.lines().last().unwrap_or_default();
    assert!(last.contains("phase=stopped"), "{last}");
}

#[test]
fn every_line_is_on_disk_after_a_deadline_exit() {
    let mut run = Run::start("deadline");
    run.shut_down();
    assert_eq!(run.exit_code(), 3);
    let log = run.log();
    assert!(
        log.contains("aborting work still in flight") || log.contains("shutdown held up"),
        "{log}"
    );
}

#[test]
fn every_line_is_on_disk_after_a_second_signal() {
    let mut run = Run::start("second-signal");
    run.shut_down();
    // Another signal than the first: a second one at once, never taken
    // for a repeat of the first delivery.
    run.signal(Signal::SIGINT);
    assert_eq!(run.exit_code(), 130);
    let log = run.log();
    assert!(log.contains("second signal: forcing the exit"), "{log}");
}

#[test]
fn every_line_is_on_disk_after_the_exit_watchdog() {
    let mut run = Run::start("watchdog");
    run.shut_down();
    assert_eq!(run.exit_code(), 124);
    let log = run.log();
    assert!(log.contains("exit watchdog"), "{log}");
}

#[test]
fn every_line_and_the_panic_itself_are_on_disk_after_a_panic() {
    let mut run = Run::start("panic");
    run.shut_down();
    assert_eq!(run.exit_code(), 101);
    let log = run.log();
    assert!(
        log.contains("panicked: fixture panic after the lines"),
        "{log}"
    );
}
