//! The harness of the `lameduck run` process tests: start the real binary
//! around a real program, read its JSON events as they come, probe it over
//! real sockets, signal it by pid.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// The bound on every wait: generous, since a failing test waits for it.
pub const WAIT: Duration = Duration::from_secs(20);

/// One command on the control socket at `path`, its one-line answer.
pub fn control(path: &Path, command: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// The directory of the programs the tests run.
pub fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs")
}

/// A scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("lameduck-run-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `lameduck run`.
pub struct Running {
    child: Child,
    events: mpsc::Receiver<Value>,
    /// Every line it wrote on stderr, for failure messages.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub stdout: mpsc::Receiver<String>,
}

impl Running {
    /// `lameduck run --output json ARGS` (ARGS include `-- CMD …`).
    pub fn start(args: &[&str]) -> Self {
        Self::start_with(Command::new(env!("CARGO_BIN_EXE_lameduck")), args)
    }

    /// As `start`, with a terminal (a pseudo-terminal's slave side) as its
    /// standard input, as at an interactive shell; with the master side,
    /// which only the test holds.
    pub fn start_on_terminal(args: &[&str]) -> (Self, std::os::fd::OwnedFd) {
        let pty = pty();
        let cmd = Command::new(env!("CARGO_BIN_EXE_lameduck"));
        let run = Self::spawn(cmd, args, Stdio::from(pty.slave));
        (run, pty.master)
    }

    /// As `start_on_terminal`, with the terminal as lameduck's controlling
    /// one (lameduck leads a session of its own, by util-linux's `setsid
    /// --ctty`): closing the master side is the terminal's hangup. `None`
    /// without `setsid`.
    pub fn start_in_terminal_session(args: &[&str]) -> Option<(Self, std::os::fd::OwnedFd)> {
        Command::new("setsid")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())?;
        let pty = pty();
        // The spawned process is no group leader: setsid execs lameduck in
        // place, so the child's pid is lameduck's.
        let mut cmd = Command::new("setsid");
        cmd.arg("--ctty");
        let run = Self::spawn(cmd, args, Stdio::from(pty.slave));
        Some((run, pty.master))
    }

    /// As `start`, through `cmd` (a wrapper: `unshare …`).
    pub fn start_with(cmd: Command, args: &[&str]) -> Self {
        Self::spawn(cmd, args, Stdio::null())
    }

    fn spawn(mut cmd: Command, args: &[&str], stdin: Stdio) -> Self {
        if cmd.get_program() != env!("CARGO_BIN_EXE_lameduck") {
            cmd.arg(env!("CARGO_BIN_EXE_lameduck"));
        }
        // The test's own systemd socket, if it set one; never the one this
        // test runs under.
        if !cmd.get_envs().any(|(k, _)| k == "NOTIFY_SOCKET") {
            cmd.env_remove("NOTIFY_SOCKET");
        }
        let mut child = cmd
            .arg("run")
            .arg("--output")
            .arg("json")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("LISTEN_FDS")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting lameduck");
        let (tx, events) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let seen = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line.clone());
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let (otx, stdout) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = otx.send(line);
            }
        });
        Self {
            child,
            events,
            log,
            stdout,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// What it printed on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The first event from now on whose message contains `message` (and
    /// that `also` accepts).
    #[track_caller]
    pub fn event(&self, message: &str, also: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) if v["message"].as_str().is_some_and(|m| m.contains(message)) && also(&v) => {
                    return v;
                }
                Ok(_) => {}
                Err(_) => panic!(
                    "no event {message:?} within {WAIT:?}; stderr:\n{}",
                    self.log()
                ),
            }
        }
    }

    /// The admin port, from its first event.
    #[track_caller]
    pub fn admin_port(&self) -> u16 {
        let v = self.event("probes on", |_| true);
        port(v["addr"].as_str().unwrap())
    }

    /// Sends `sig` to lameduck.
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    /// Waits for the exit: its code, `None` if a signal ended it.
    #[track_caller]
    pub fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "lameduck did not exit within {WAIT:?}; stderr:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A pseudo-terminal whose master side only the test holds (not
/// inherited): its close is the terminal's.
fn pty() -> nix::pty::OpenptyResult {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    nix::fcntl::fcntl(
        &pty.master,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .expect("the master side is not inherited");
    pty
}

/// A free port on loopback (bound, then released for the program).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Opens the FIFO at `path` for writing and closes it: a program blocked
/// reading it reads its end and goes on (the open waits for the reader).
pub fn release(fifo: &Path) {
    drop(std::fs::OpenOptions::new().write(true).open(fifo).unwrap());
}

/// The port of `host:port`.
pub fn port(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// `GET path` on 127.0.0.1:port: the status and the body, or `None` when
/// the connection fails.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `GET path` until it answers `status` (bounded).
#[track_caller]
pub fn until_status(port: u16, path: &str, status: u16) {
    let deadline = Instant::now() + WAIT;
    while get(port, path).map(|(s, _)| s) != Some(status) {
        assert!(
            Instant::now() < deadline,
            "{path} on {port} never answered {status}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits (bounded) until every pid is gone.
#[track_caller]
pub fn until_gone(pids: &[i32]) {
    let deadline = Instant::now() + WAIT;
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "processes still alive: {:?}",
            pids.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `path` exists, then reads it.
#[track_caller]
pub fn until_file(path: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads a flight record once lameduck has exited.
pub fn record(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the flight record was written");
    serde_json::from_str(&text).expect("the flight record is JSON")
}

/// The work in the record's inventory taken at `at`.
#[track_caller]
pub fn inventory_work<'a>(rec: &'a Value, at: &str) -> &'a [Value] {
    let inventory = rec["inventories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["at"] == at)
        .unwrap_or_else(|| panic!("no inventory at {at}: {rec}"));
    inventory["work"].as_array().unwrap()
}

/// Waits (bounded) until the process whose pid `path` holds (as `$!`
/// writes it) runs `name`, by its `comm`, and returns its pid. A shell's
/// child started with `&` runs the shell's traps from its fork until its
/// exec: a stop signal that comes in between is caught by a trap, and lost
/// at the exec. A test that signals such a child waits for its exec first.
#[track_caller]
pub fn until_exec(path: &Path, name: &str) -> i32 {
    let pid: i32 = until_file(path).trim().parse().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == name {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never ran {name} (it runs {comm:?})"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `python3` can be run.
pub fn has_python() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
}

/// `lameduck run --listen http=127.0.0.1:0 ARGS -- naive_server.py
/// [--keep-alive]`: the run and the socket's port.
pub fn start_server(args: &[&str], keep_alive: bool) -> (Running, u16) {
    let server = programs().join("naive_server.py");
    let mut program = vec!["python3", server.to_str().unwrap()];
    if keep_alive {
        program.push("--keep-alive");
    }
    start_listening(args, &program)
}

/// `lameduck run --admin none --listen http=127.0.0.1:0 ARGS -- PROGRAM`:
/// the run and the socket's port.
pub fn start_listening(args: &[&str], program: &[&str]) -> (Running, u16) {
    let mut all = vec![
        "--admin",
        "none",
        "--listen",
        "http=127.0.0.1:0",
        "--grace-period",
        "90s",
    ];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(program);
    let run = Running::start(&all);
    let socket = run.event("socket http on", |_| true);
    let port = port(socket["addr"].as_str().unwrap());
    (run, port)
}

/// Requests, one connection each, for `spread` (the traffic before the
/// signal that the drain's rule reads: arrivals in several tenths of a
/// second), about one every 10 ms: the pace of a client, not a
/// synchronisation, and light on a machine the other tests share.
pub fn traffic_for(port: u16, spread: Duration) {
    let began = Instant::now();
    for _ in 0..100_000 {
        if began.elapsed() >= spread {
            return;
        }
        let (status, _) = get(port, "/").expect("the program answers");
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Restarts at once, and lameduck gives up after the third run within a
/// minute.
pub const FAST_RESTARTS: &[&str] = &[
    "--restart-delay",
    "1ms",
    "--restart-delay-max",
    "5ms",
    "--max-restarts",
    "2",
    "--restart-window",
    "1m",
];

/// `lameduck run --admin none ARGS -- sh -c SCRIPT`, once SCRIPT has
/// touched the file it names `{ready}` (after setting its traps, say):
/// ready by that file, and running.
pub fn start_ready_when_touched(dir: &Scratch, args: &[&str], script: &str) -> Running {
    let ready = dir.path("ready");
    let check = format!("exec:test -f {}", ready.display());
    let script = script.replace("{ready}", ready.to_str().unwrap());
    let mut all = vec![
        "--admin",
        "none",
        "--ready",
        &check,
        "--ready-interval",
        "50ms",
    ];
    all.extend_from_slice(args);
    all.extend(["--", "sh", "-c", &script]);
    let run = Running::start(&all);
    run.event("phase changed", |v| v["phase"] == "running");
    run
}

/// `lameduck run --admin none ARGS -- sh -c '…'` around a program (and a
/// child, `sleep`) that ignore SIGTERM and SIGINT, once it is running and
/// they are ignored; with the child's pid.
pub fn start_stubborn(dir: &Scratch, args: &[&str]) -> (Running, i32) {
    let pid_file = dir.path("sleep.pid");
    let script = format!(
        "trap '' TERM INT; sleep 600 & echo $! > {}; touch {{ready}}; wait",
        pid_file.display(),
    );
    let run = start_ready_when_touched(dir, args, &script);
    let sleep = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (run, sleep)
}

/// `lameduck run --admin none ARGS -- escapes.sh FILE`, once it is running,
/// with a drain of 300ms and a shutdown timeout of 1s: with the pid of the
/// child that left the program's group (`setsid`) and ignores SIGTERM
/// while its parent, the wrapper, lives.
pub fn start_escapes(dir: &Scratch, args: &[&str]) -> (Running, i32) {
    let pid_file = dir.path("escaped");
    let script = programs().join("escapes.sh");
    let ready = format!("exec:test -e {}", pid_file.display());
    let mut all = vec![
        "--admin",
        "none",
        "--ready",
        &ready,
        "--ready-interval",
        "50ms",
        "--drain-delay",
        "300ms",
        "--grace-period",
        "8s",
        "--shutdown-timeout",
        "1s",
    ];
    all.extend_from_slice(args);
    all.extend(["--", script.to_str().unwrap(), pid_file.to_str().unwrap()]);
    let run = Running::start(&all);
    run.event("phase changed", |v| v["phase"] == "running");
    let escaped = until_file(&pid_file).trim().parse().unwrap();
    assert!(alive(escaped));
    (run, escaped)
}

/// `lameduck run --admin none --ready exec:test -e DIR/NAME.$LAMEDUCK_PID
/// --ready-interval 50ms --drain-delay 0s ARGS -- sh -c SCRIPT`: each
/// instance is ready once `DIR/NAME.PID` exists, PID its own (`$$` in
/// SCRIPT); the run, and its first instance's pid.
pub fn start_ready_per_instance(
    dir: &Scratch,
    name: &str,
    args: &[&str],
    script: &str,
) -> (Running, i64) {
    let ready = format!("exec:test -e {}/{name}.$LAMEDUCK_PID", dir.0.display());
    let mut all = vec![
        "--admin",
        "none",
        "--ready",
        &ready,
        "--ready-interval",
        "50ms",
        "--drain-delay",
        "0s",
    ];
    all.extend_from_slice(args);
    all.extend(["--", "sh", "-c", script]);
    let run = Running::start(&all);
    let first = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap();
    (run, first)
}
