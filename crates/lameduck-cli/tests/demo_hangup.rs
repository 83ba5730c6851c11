//! `lameduck demo` in a real pseudo-terminal: closing the terminal (the
//! kernel's hangup, `SIGHUP`) stops it as `SIGTERM` would, leaving nothing
//! on the ports; an operator's `SIGHUP` while the terminal is open still
//! restarts it with zero downtime.

mod support;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A bound on what must happen, never reached when things work.
const BOUND: Duration = Duration::from_secs(20);

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("lameduck-hangup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The demo, the leader of a session whose controlling terminal is a
/// pseudo-terminal the test holds the master side of.
struct InTerminal {
    child: Child,
    master: Option<OwnedFd>,
    pid_file: PathBuf,
    /// Lines of stderr (JSON logs) of every generation, which share it.
    stderr: support::LogLines,
}

impl InTerminal {
    /// `None` without util-linux's `setsid`, which makes the terminal the
    /// demo's controlling one (`--ctty`).
    fn start(dir: &Path) -> Option<Self> {
        let has_setsid = Command::new("setsid")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_setsid {
            return None;
        }
        let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
        // Only the test holds the master side: its close is the terminal's.
        nix::fcntl::fcntl(
            &pty.master,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .expect("the master side is not inherited");
        let pid_file = dir.join("demo.pid");
        // The spawned process is no group leader: setsid execs the demo in
        // place, so the child's pid is the demo's.
        let mut child = Command::new("setsid")
            .arg("--ctty")
            .arg(env!("CARGO_BIN_EXE_lameduck"))
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--drain-delay", "100ms", "--grace-period", "10s"])
            .args(["--output", "json"])
            .arg("--pid-file")
            .arg(&pid_file)
            .env_remove("RUST_LOG")
            .stdin(Stdio::from(pty.slave))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the demo");
        let stdout = child.stdout.take().expect("piped");
        // Kept read, so that no generation blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut { stdout }, &mut std::io::sink()));
        let stderr = support::LogLines::follow(child.stderr.take().expect("piped"));
        let demo = Self {
            child,
            master: Some(pty.master),
            pid_file,
            stderr,
        };
        demo.wait_for_log("\"phase\":\"running\"");
        Some(demo)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_for_log(&self, needle: &str) -> String {
        self.stderr.wait_for(needle, BOUND)
    }

    /// Waits (bounded) for the demo to exit; its exit code.
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the demo") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the demo did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process the PID file names, if it exists.
    fn serving(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for InTerminal {
    fn drop(&mut self) {
        // Whatever still serves was started by this test.
        if let Some(pid) = self.serving() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
}

#[test]
fn closing_the_demo_s_terminal_stops_it_and_leaves_no_successor_on_the_ports() {
    let dir = Scratch::new("closed");
    let Some(mut demo) = InTerminal::start(&dir.0) else {
        eprintln!("skipped: no setsid");
        return;
    };
    assert_eq!(demo.serving(), Some(demo.pid()));
    // The terminal closes: the kernel hangs up its other side and sends
    // SIGHUP to the demo, the session's leader.
    drop(demo.master.take());
    let said = demo.wait_for_log("the terminal was closed");
    assert!(said.contains("stopping as on SIGTERM"), "{said}");
    demo.wait_for_log("\"phase\":\"draining\"");
    assert_eq!(demo.wait(), Some(0));
    // No successor took the ports: the PID file went with the demo.
    assert_eq!(demo.serving(), None, "a successor serves");
}

#[test]
fn a_sighup_with_the_terminal_still_open_restarts_the_demo() {
    let dir = Scratch::new("open");
    let Some(mut demo) = InTerminal::start(&dir.0) else {
        eprintln!("skipped: no setsid");
        return;
    };
    let old = demo.pid();
    kill(Pid::from_raw(old), Signal::SIGHUP).expect("signalling the demo");
    demo.wait_for_log("SIGHUP: a zero-downtime restart");
    demo.wait_for_log("upgrade complete");
    // The old process hands over and exits 0; the new one serves.
    assert_eq!(demo.wait(), Some(0));
    let new = demo.serving().expect("the PID file names the new process");
    assert_ne!(new, old);
    assert!(alive(new), "the new process serves");
    kill(Pid::from_raw(new), Signal::SIGTERM).expect("stopping the new process");
    let deadline = Instant::now() + BOUND;
    while alive(new) {
        assert!(Instant::now() < deadline, "the new process did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
}
