//! gRPC through a shutdown and through a restart, seen by Python's grpcio
//! (a real client, from PyPI): unary and server-streaming calls and a
//! `grpc.health.v1` Watch under load, over h2c and over HTTPS, across a
//! real `SIGTERM` and a real `SIGHUP` upgrade. `scripts/test` installs
//! grpcio when missing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// A bound on every wait below, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(60);

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lameduck-grpc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Writes a certificate for localhost and its key; returns their paths.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

struct Demo {
    child: Child,
    addr: String,
}

impl Demo {
    fn start(dir: &Path, tls: Option<&(PathBuf, PathBuf)>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lameduck"));
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--pid-file")
            .arg(dir.join("demo.pid"))
            .args(["--drain-delay", "500ms", "--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some((cert, key)) = tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = cmd.spawn().expect("start the demo");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the demo's first line");
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|url| url.split_once("://"))
            .map(|(_, addr)| addr.to_string())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child, addr }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for this process to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the demo did not exit");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/grpc/load.py`: running, until its stdin closes.
struct Load {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Load {
    fn start(addr: &str, cacert: Option<&Path>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc/load.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script).arg(addr);
        if let Some(cacert) = cacert {
            cmd.arg("--cacert").arg(cacert);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/test installs it, with grpcio)");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let load = Self {
            child,
            stdin,
            lines,
        };
        let ready = load.lines.recv_timeout(BOUND).unwrap_or_else(|_| {
            panic!(
                "the gRPC client never got going (is grpcio installed? scripts/test installs it)"
            )
        });
        assert_eq!(ready, "ready");
        load
    }

    /// Stops the load; what it saw.
    fn finish(mut self) -> Value {
        drop(self.stdin.take());
        let json = self.lines.recv_timeout(BOUND).expect("the client's report");
        let _ = self.child.wait();
        serde_json::from_str(&json).expect("JSON")
    }
}

/// The calls of `kind` ("unary", "stream") as (start, code, detail).
fn calls<'a>(seen: &'a Value, kind: &str) -> Vec<(f64, &'a str, &'a str)> {
    seen["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c[0] == kind)
        .map(|c| {
            (
                c[1].as_f64().unwrap(),
                c[3].as_str().unwrap(),
                c[4].as_str().unwrap(),
            )
        })
        .collect()
}

/// Streaming calls end with a status the server chose: done (OK), or
/// UNAVAILABLE (no listener, or ended by the shutdown), never a stream
/// broken under the client (UNKNOWN, INTERNAL, CANCELLED, a short one).
fn assert_streams_end_with_a_status(seen: &Value) {
    for (start, code, detail) in calls(seen, "stream") {
        assert!(
            code == "OK" || code == "UNAVAILABLE",
            "a stream started at {start:.3}s ended {code} ({detail}): {seen}"
        );
    }
}

fn across_sigterm(tls: bool) {
    let dir = scratch_dir(if tls { "term-tls" } else { "term" });
    let cert = tls.then(|| certificate(&dir));
    let mut demo = Demo::start(&dir, cert.as_ref());
    let load = Load::start(&demo.addr, cert.as_ref().map(|(c, _)| c.as_path()));
    kill(demo.pid(), Signal::SIGTERM).unwrap();
    assert_eq!(demo.exit_code(), Some(0), "the demo drains and exits 0");
    let seen = load.finish();

    let closed = seen["refused"]
        .as_f64()
        .unwrap_or_else(|| panic!("the listener never closed: {seen}"));
    let before: Vec<_> = calls(&seen, "unary")
        .into_iter()
        .chain(calls(&seen, "stream"))
        .filter(|(start, _, _)| *start < closed)
        .collect();
    assert!(before.len() > 10, "too little load to judge: {seen}");
    // A connect refused is the closed listener itself (the probe sees the
    // close a few milliseconds late): a call that never reached the
    // server, which the client may retry, as the drill counts it.
    let failed: Vec<_> = before
        .iter()
        .filter(|(_, code, detail)| *code != "OK" && !detail.contains("Connection refused"))
        .collect();
    assert!(
        failed.is_empty(),
        "calls started before the listener closed failed: {failed:?}"
    );
    assert_streams_end_with_a_status(&seen);
    let not_serving = seen["watch"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w[1] == "NOT_SERVING")
        .map(|w| w[0].as_f64().unwrap())
        .unwrap_or_else(|| panic!("the watch never said NOT_SERVING: {seen}"));
    assert!(
        not_serving < closed,
        "NOT_SERVING at {not_serving:.3}s, the listener closed at {closed:.3}s"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn grpcio_across_sigterm_no_call_fails_streams_end_with_a_status_and_not_serving_comes_first() {
    across_sigterm(false);
}

#[test]
fn grpcio_over_https_across_sigterm_no_call_fails_and_not_serving_comes_first() {
    across_sigterm(true);
}

#[test]
fn grpcio_across_a_sighup_upgrade_no_call_fails() {
    let dir = scratch_dir("hup");
    let mut demo = Demo::start(&dir, None);
    let load = Load::start(&demo.addr, None);
    kill(demo.pid(), Signal::SIGHUP).unwrap();
    assert_eq!(
        demo.exit_code(),
        Some(0),
        "the old process hands over and exits 0"
    );
    let new_pid: i32 = std::fs::read_to_string(dir.join("demo.pid"))
        .expect("the PID file")
        .trim()
        .parse()
        .expect("a pid");
    assert_ne!(new_pid, demo.pid().as_raw());
    let seen = load.finish();
    // The new process is ours to end.
    let _ = kill(Pid::from_raw(new_pid), Signal::SIGKILL);

    assert!(seen["refused"].is_null(), "the port closed: {seen}");
    let all: Vec<_> = calls(&seen, "unary")
        .into_iter()
        .chain(calls(&seen, "stream"))
        .collect();
    let failed: Vec<_> = all.iter().filter(|(_, code, _)| *code != "OK").collect();
    assert!(
        failed.is_empty(),
        "calls failed across the upgrade: {failed:?}"
    );
    assert_streams_end_with_a_status(&seen);
    let _ = std::fs::remove_dir_all(&dir);
}
