//! `lameduck demo` restarts with zero downtime: real binaries, real
//! sockets on 127.0.0.1, real `SIGHUP`s. The drill sends them under load
//! and counts every request; a broken binary on disk must leave the old
//! process serving.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use lameduck_drill::report::{ConditionStatus, Report};

/// A bound on every wait below, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(30);

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lameduck-demo-restart-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

#[test]
fn ten_sighups_under_load_restart_the_demo_without_failing_a_request() {
    let (port, admin) = support::free_ports();
    let dir = scratch_dir("drill");
    let json = dir.join("report.json");
    let log = dir.join("demo.log");
    let pid_file = dir.join("demo.pid");
    let url = format!("http://127.0.0.1:{port}/work?ms=5");
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let output = support::lameduck()
        .arg("drill")
        .args(["--url", &url, "--ready-url", &ready])
        .args(["--concurrency", "8", "--connections", "mixed"])
        .args(["--signal", "HUP", "--expect", "restart"])
        // Each successor must be seen serving before the next signal: a
        // second between signals leaves a debug build room on a busy machine.
        .args(["--repeat", "10", "--at", "700ms", "--every", "1s"])
        // The load outlasts the last old process's exit by seconds even
        // when a busy machine slows the handover, so that requests started
        // after it are there to check.
        .args(["--duration", "14s", "--grace-period", "15s"])
        .args(["--ready-timeout", "20s", "--no-progress"])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--json")
        .arg(&json)
        .arg("--server-log")
        .arg(&log)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_lameduck"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .arg("--pid-file")
        .arg(&pid_file)
        .args(["--drain-delay", "100ms", "--grace-period", "10s"])
        .args(["--output", "json"])
        .output()
        .expect("run lameduck drill");
    let context = support::drill_context(&output, &log);
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let report =
        Report::from_json(&text).unwrap_or_else(|err| panic!("no JSON report ({err})\n{context}"));

    assert_eq!(output.status.code(), Some(0), "{context}");
    assert!(report.verdict.pass, "{context}");
    let total = &report.requests.total;
    assert_eq!(total.failed(), 0, "{context}");
    assert!(total.ok > 0, "{context}");
    assert_eq!(
        total.ok,
        total.total(),
        "every request answered 200\n{context}"
    );

    // Every signal reached the process serving at the time, and each of
    // them was a new one: ten restarts, not one process signalled ten times.
    let signals = &report.events.signals;
    assert_eq!(signals.len(), 10, "{context}");
    for s in signals {
        assert_eq!(s.error, None, "{context}");
    }
    let pids: HashSet<u32> = signals.iter().filter_map(|s| s.pid).collect();
    assert_eq!(
        pids.len(),
        10,
        "ten different processes: {pids:?}\n{context}"
    );
    // Requests went on succeeding after an old process had exited: the new
    // one served them.
    let after_exit = report
        .verdict
        .conditions
        .iter()
        .find(|c| c.name == "served_after_old_process_exit")
        .unwrap_or_else(|| panic!("no served_after_old_process_exit condition\n{context}"));
    assert_eq!(after_exit.status, ConditionStatus::Pass, "{context}");
}

/// The demo, started through a symlink in a scratch directory: an upgrade
/// runs whatever the symlink points to then, as a deployment that switches
/// `current -> releases/vN` would. The test points it at a broken build,
/// never touching the shared binary.
struct Demo {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    /// Lines of stderr (JSON logs) of every generation, which share it;
    /// disconnects when the last of them exits.
    stderr: support::LogLines,
}

impl Demo {
    fn start(dir: &Path) -> Self {
        let link = dir.join("lameduck");
        point(&link, Path::new(env!("CARGO_BIN_EXE_lameduck")));
        // Started by the symlink's path, as support::lameduck() would start
        // the binary itself: that path is what an upgrade runs again.
        let mut child = std::process::Command::new(&link)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--control-socket")
            .arg(dir.join("control.sock"))
            .arg("--pid-file")
            .arg(dir.join("demo.pid"))
            .args(["--drain-delay", "100ms", "--grace-period", "10s"])
            .args(["--output", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the demo");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the demo's first line");
        let addr = first
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .expect("an address");
        // Keep reading stdout, so that no generation blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let stderr = support::LogLines::follow(child.stderr.take().expect("piped"));
        let demo = Self {
            child,
            dir: dir.to_path_buf(),
            addr,
            stderr,
        };
        demo.wait_for_log("\"phase\":\"running\"");
        demo
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_for_log(&self, needle: &str) -> String {
        self.stderr.wait_for(needle, BOUND)
    }

    /// Sends one command to the control socket; returns the answer line.
    fn control(&self, command: &str) -> String {
        let mut socket = UnixStream::connect(self.dir.join("control.sock"))
            .expect("connect to the control socket");
        socket.set_read_timeout(Some(BOUND)).unwrap();
        socket.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(socket)
            .read_line(&mut answer)
            .expect("an answer");
        answer.trim().to_string()
    }
}

/// Points the symlink `link` at `target`, atomically (a new link renamed
/// over the old one): the process running from it is never left without a
/// program to start.
fn point(link: &Path, target: &Path) {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).expect("create a symlink");
    std::fs::rename(&tmp, link).expect("switch the symlink");
}

/// One request on a fresh connection: the status line, or the error.
fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(BOUND)).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let status = response.lines().next().unwrap_or_default().to_string();
    if status.starts_with("HTTP/1.1 200") {
        Ok(status)
    } else {
        Err(format!("response {response:?}"))
    }
}

/// Requests one after another on fresh connections until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                // Bounded: a stop that never comes ends the loop anyway.
                for _ in 0..1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match get(addr, "/work?ms=1") {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.push(e),
                    }
                }
                failures
            })
        };
        Self { stop, ok, thread }
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failures = self.thread.join().expect("the load thread");
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[test]
fn a_restart_into_a_broken_binary_keeps_the_old_process_serving() {
    let dir = scratch_dir("rollback");
    let mut demo = Demo::start(&dir);
    let old = demo.child.id();
    let load = Load::start(demo.addr);

    // A broken build on disk: it exits at once, as a binary that cannot
    // load its configuration would.
    let broken = dir.join("broken");
    std::fs::write(&broken, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    point(&dir.join("lameduck"), &broken);
    let answer = demo.control("upgrade");
    assert!(answer.starts_with("error"), "{answer}");
    let logged = demo.wait_for_log("upgrade failed");
    assert!(logged.contains("this process goes on serving"), "{logged}");

    // The old process still serves, still runs, still owns the PID file.
    assert_eq!(demo.control("status"), format!("ok running pid {old}"));
    let pid = std::fs::read_to_string(dir.join("demo.pid")).expect("the PID file");
    assert_eq!(pid.trim(), old.to_string());
    get(demo.addr, "/").expect("the old process serves");
    assert_eq!(
        demo.child.try_wait().expect("try_wait"),
        None,
        "the old process runs"
    );

    // The fixed build: the same socket, a new process, nothing lost.
    point(
        &dir.join("lameduck"),
        Path::new(env!("CARGO_BIN_EXE_lameduck")),
    );
    let answer = demo.control("upgrade");
    let new: u32 = answer
        .strip_prefix("ok ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {answer:?}"));
    assert_ne!(new, old);
    // Written by the old process about the new one: `pid` is the writer's,
    // the new process is `new_pid` (a second `pid` key filed the line under
    // the new process).
    let started = demo.wait_for_log("new process started");
    assert_eq!(started.matches("\"pid\":").count(), 1, "{started}");
    assert!(started.contains(&format!("\"pid\":{old}")), "{started}");
    assert!(started.contains(&format!("\"new_pid\":{new}")), "{started}");
    let status = demo.child.wait().expect("the old process exits");
    assert_eq!(
        status.code(),
        Some(0),
        "the old process drained and exited 0"
    );
    get(demo.addr, "/").expect("the new process serves");
    assert_eq!(demo.control("status"), format!("ok running pid {new}"));
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} failed: {failures:?}",
        failures.len(),
        ok as usize + failures.len()
    );
    assert!(ok > 0);

    // The new process came from ours: stop it by its pid, and wait for the
    // shared stderr to close (every generation has exited).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(new).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal the new process");
    let mut seen = 0usize;
    loop {
        match demo.stderr.0.recv_timeout(BOUND) {
            Ok(_) if seen < 100_000 => seen += 1,
            Ok(_) => panic!("the new process logs without end"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the new process did not exit"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the operator asked for and the demo cannot set up stops the start,
/// saying what is wrong, with the configuration exit code (78) — instead
/// of a log line and a demo that runs without it.
#[test]
fn an_unusable_pid_file_or_control_socket_stops_the_demo_with_78() {
    let dir = scratch_dir("unusable");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let long = dir.join("c".repeat(120));
    // Another instance's control socket, live.
    let live = dir.join("live.sock");
    let _listening = std::os::unix::net::UnixListener::bind(&live).unwrap();
    // Another instance's PID file: it names a running process (this one).
    let taken = dir.join("taken.pid");
    std::fs::write(&taken, format!("{}\n", std::process::id())).unwrap();
    let cases: [(&str, PathBuf, &str); 7] = [
        ("--pid-file", dir.join("missing/demo.pid"), "does not exist"),
        ("--pid-file", dir.clone(), "is a directory"),
        ("--pid-file", taken.clone(), "names a running process"),
        (
            "--control-socket",
            dir.join("missing/ctl"),
            "does not exist",
        ),
        ("--control-socket", long, "too long for a Unix socket"),
        (
            "--control-socket",
            file.clone(),
            "a file that is not a socket",
        ),
        ("--control-socket", live.clone(), "a running process"),
    ];
    for (flag, path, says) in cases {
        let (code, stderr) = demo_that_should_not_start(&[flag.as_ref(), path.as_os_str()]);
        assert_eq!(code, Some(78), "{flag} {path:?}: {stderr}");
        assert!(
            stderr.contains("invalid configuration") && stderr.contains(says),
            "{flag} {path:?}: {stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x", "left alone");
    assert_eq!(
        std::fs::read_to_string(&taken).unwrap(),
        format!("{}\n", std::process::id()),
        "another instance's PID file is left alone"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&live).is_ok(),
        "the live socket is left alone"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the demo with `args`, which should stop it before it serves: its
/// exit code and stderr. One that is still running after a minute (the
/// bad input was taken) is killed, and the test fails.
fn demo_that_should_not_start(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = support::lameduck()
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the demo");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status.code(), stderr)
}
