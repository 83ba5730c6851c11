//! Output whose reader went away — a closed terminal (`EIO`), a pipe into
//! `head` (`EPIPE`) — loses the rest of the output and nothing else: a demo
//! in its shutdown finishes it and exits 0, and a drill still writes its
//! JSON report.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lameduck_drill::Report;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Safety bound, never reached when things work.
const BOUND: Duration = Duration::from_secs(30);

fn ready(admin: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(admin) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(BOUND));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

#[test]
fn a_demo_whose_stderr_reader_went_away_still_shuts_down_cleanly() {
    let mut child = support::lameduck()
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--drain-delay", "100ms", "--grace-period", "10s"])
        // The phase lines a person reads, all on stderr.
        .args(["--output", "human"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let _service = lines.next().expect("a first line").expect("text");
    let admin_line = lines.next().expect("a second line").expect("text");
    let admin: SocketAddr = admin_line
        .trim()
        .strip_prefix("admin on http://")
        .unwrap_or_else(|| panic!("unexpected line {admin_line:?}"))
        .parse()
        .expect("an address");
    // Nobody reads stderr any more: each phase line meets EPIPE.
    drop(child.stderr.take());
    let deadline = Instant::now() + BOUND;
    while !ready(admin) {
        assert!(Instant::now() < deadline, "the demo never became ready");
        std::thread::yield_now();
    }

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
    let deadline = Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the demo did not exit");
        std::thread::yield_now();
    };
    assert_eq!(
        status.code(),
        Some(0),
        "a clean shutdown exits 0 though its phase lines had no reader ({status})"
    );
}

#[test]
fn a_drill_whose_stdout_reader_went_away_still_writes_its_json_report() {
    let dir = std::env::temp_dir().join(format!("lameduck-closed-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let json = dir.join("report.json");
    let mut child = support::lameduck()
        .args(["drill", "--demo", "--duration", "2s", "--at", "700ms"])
        .args(["--concurrency", "2", "--no-progress"])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the drill");
    // As `lameduck drill … | head -0` would: the summary has no reader.
    drop(child.stdout.take());
    let status = child.wait().expect("wait for the drill");
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let report = Report::from_json(&text)
        .unwrap_or_else(|err| panic!("no JSON report ({err}); the drill exited {status}"));
    assert!(report.verdict.pass, "{text}");
    assert_eq!(status.code(), Some(0), "the verdict's exit code");
}
