//! lameduck's log goes to a stderr that can die under it: the terminal
//! closes (an ssh session dropped), the reader of the pipe exits. A line
//! that cannot be written is dropped; the shutdown goes on. A failed write
//! used to be reported on that same stderr with `eprintln!`, which panics:
//! the task that logged died, the signal handler's among them, and SIGTERM
//! no longer stopped anything.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A bound on the exit, never reached when things work.
const BOUND: Duration = Duration::from_secs(30);

/// Waits for `child` to exit, up to [`BOUND`]; kills it (and fails) if it
/// does not.
fn exit_code(child: &mut Child) -> Result<i32, String> {
    use std::os::unix::process::ExitStatusExt as _;
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status
                .code()
                .ok_or_else(|| format!("killed by signal {:?}", status.signal()));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no exit within {BOUND:?} of SIGTERM with its stderr gone");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `args` with stdout and stderr piped and waits for `ready`, given
/// each stdout line until it says so; then closes the reading end of
/// stderr.
fn start_then_lose_stderr(args: &[&str], mut ready: impl FnMut(&str) -> bool) -> Child {
    let mut child = support::lameduck()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lameduck");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    loop {
        let line = lines
            .next()
            .expect("a line before stdout ends")
            .expect("reading stdout");
        if ready(&line) {
            break;
        }
    }
    // Go on reading stdout (a closed stdout is another test).
    std::thread::spawn(move || for _ in lines {});
    drop(child.stderr.take());
    child
}

/// Whether `GET /readyz` on `admin` answers 200: the demo's signal
/// handling is in place.
fn ready(admin: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(admin) else {
        return false;
    };
    let _ = conn.write_all(b"GET /readyz HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n");
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

#[test]
fn lameduck_run_whose_stderr_is_gone_still_stops_on_sigterm() {
    let mut child = start_then_lose_stderr(
        &[
            "run",
            "--admin",
            "none",
            "--output",
            "json",
            "--drain-delay",
            "0s",
            "--",
            "sh",
            "-c",
            // The program's own stderr is not this test's: a shell may say
            // "Terminated" there, and die of SIGPIPE.
            "exec 2>/dev/null; trap 'exit 0' TERM; echo program-ready; while :; do sleep 0.05; done",
        ],
        |line| line.contains("program-ready"),
    );
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(exit_code(&mut child), Ok(0));
}

#[test]
fn lameduck_demo_whose_stderr_is_gone_still_stops_on_sigterm() {
    for output in ["human", "json"] {
        let mut child = start_then_lose_stderr(
            &[
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--output",
                output,
                "--drain-delay",
                "0s",
            ],
            |line| {
                let Some(admin) = line.strip_prefix("admin on http://") else {
                    return false;
                };
                let deadline = Instant::now() + BOUND;
                while !ready(admin) {
                    assert!(Instant::now() < deadline, "the demo never became ready");
                    std::thread::sleep(Duration::from_millis(20));
                }
                true
            },
        );
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        assert_eq!(exit_code(&mut child), Ok(0), "--output {output}");
    }
}
