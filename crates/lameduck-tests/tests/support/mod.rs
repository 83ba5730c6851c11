//! The harness for upgrade, socket-activation and systemd tests: a running
//! `upgrade-fixture` whose generations share stdout (`event: <pid> <what>`)
//! and stderr (JSON logs), a scratch directory, and cleanup of every
//! process it started or learned of through an upgrade — by pid.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Bound on any wait; a hang fails the test instead of the suite.
pub const WAIT: Duration = Duration::from_secs(60);

pub const FIXTURE: &str = env!("CARGO_BIN_EXE_upgrade-fixture");

/// A fresh scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lameduck-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
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

/// The fixture and its successors.
pub struct Service {
    pub child: Option<Child>,
    events: mpsc::Receiver<(u32, String)>,
    pub seen: Vec<(u32, String)>,
    stderr: Arc<(Mutex<String>, Condvar)>,
    stderr_done: Option<std::thread::JoinHandle<()>>,
    pub pids: BTreeSet<u32>,
    pub addr: Option<SocketAddr>,
    /// The probes' address, with `--server library`.
    pub admin: Option<SocketAddr>,
    pub first_pid: u32,
    /// Processes known to be gone (reaped here), never to be signalled.
    pub gone: BTreeSet<u32>,
}

impl Service {
    /// Spawns `cmd` (the fixture, set up by the caller) with piped output.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the fixture");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Some(rest) = line.strip_prefix("event: ") else {
                    continue;
                };
                let Some((pid, what)) = rest.split_once(' ') else {
                    continue;
                };
                let Ok(pid) = pid.parse() else { continue };
                if tx.send((pid, what.to_string())).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_done = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        sink.0
                            .lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                        sink.1.notify_all();
                    }
                }
            }
        });
        let first_pid = child.id();
        Self {
            child: Some(child),
            events,
            seen: Vec::new(),
            stderr,
            stderr_done: Some(stderr_done),
            pids: BTreeSet::from([first_pid]),
            addr: None,
            admin: None,
            first_pid,
            gone: BTreeSet::new(),
        }
    }

    /// Spawns the fixture with `args` and waits until it serves.
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(FIXTURE);
        cmd.args(args);
        Self::start_with(cmd)
    }

    /// Spawns `cmd` and waits until it serves.
    pub fn start_with(cmd: Command) -> Self {
        let mut s = Self::spawn(cmd);
        let pid = s.first_pid;
        let (_, what) = s.wait_for(|p, e| p == pid && e.starts_with("listening http "));
        s.addr = Some(what["listening http ".len()..].parse().unwrap());
        s.wait_for(|p, e| p == pid && e == "phase running");
        s.admin = s
            .seen
            .iter()
            .find_map(|(p, e)| (*p == pid).then(|| e.strip_prefix("listening admin "))?)
            .map(|a| a.parse().unwrap());
        s
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("serving")
    }

    /// Waits for an event matching `pred`, keeping every event seen (also
    /// checks the ones already seen first).
    pub fn wait_for(&mut self, mut pred: impl FnMut(u32, &str) -> bool) -> (u32, String) {
        if let Some(hit) = self.seen.iter().find(|(p, e)| pred(*p, e)) {
            return hit.clone();
        }
        loop {
            match self.events.recv_timeout(WAIT) {
                Ok((pid, e)) => {
                    self.pids.insert(pid);
                    let hit = pred(pid, &e);
                    self.seen.push((pid, e.clone()));
                    if hit {
                        return (pid, e);
                    }
                }
                Err(err) => panic!(
                    "no such event ({err}); seen {:#?}\nstderr:\n{}",
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for `pid`'s event `what`.
    pub fn wait_event(&mut self, pid: u32, what: &str) {
        self.wait_for(|p, e| p == pid && e == what);
    }

    /// Waits for a process other than `old` to reach Running; its pid.
    pub fn wait_successor(&mut self, old: u32) -> u32 {
        let known = self.pids.clone();
        self.wait_for(|p, e| p != old && !known.contains(&p) && e == "phase running")
            .0
    }

    /// Waits until `pid` reports its exit; its code.
    pub fn wait_exit(&mut self, pid: u32) -> i32 {
        let (_, e) = self.wait_for(|p, e| p == pid && e.starts_with("exit code="));
        e["exit code=".len()..].parse().unwrap()
    }

    pub fn signal(&self, pid: u32, sig: Signal) {
        kill(Pid::from_raw(pid as i32), sig).expect("signal the fixture");
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` (woken by each write).
    pub fn wait_stderr(&self, needle: &str) {
        let (lock, cv) = &*self.stderr;
        let text = cv
            .wait_timeout_while(lock.lock().unwrap(), WAIT, |t| !t.contains(needle))
            .unwrap()
            .0;
        assert!(text.contains(needle), "no {needle:?} in stderr:\n{text}");
    }

    /// Waits until stderr contains `needle` at least `n` times.
    pub fn wait_stderr_count(&self, needle: &str, n: usize) {
        let (lock, cv) = &*self.stderr;
        let text = cv
            .wait_timeout_while(lock.lock().unwrap(), WAIT, |t| {
                t.matches(needle).count() < n
            })
            .unwrap()
            .0;
        assert!(
            text.matches(needle).count() >= n,
            "not {n} times {needle:?} in stderr:\n{text}"
        );
    }

    /// The first process's real exit status.
    pub fn wait_first(&mut self) -> ExitStatus {
        self.child
            .as_mut()
            .expect("the first process")
            .wait()
            .unwrap()
    }

    /// Upgrades `current` by `SIGHUP`: waits until the next generation
    /// runs and `current` has exited 0; the new pid.
    pub fn upgrade_once(&mut self, current: u32) -> u32 {
        self.signal(current, Signal::SIGHUP);
        let next = self.wait_successor(current);
        let generation = self
            .seen
            .iter()
            .find(|(p, e)| *p == current && e.starts_with("generation "))
            .and_then(|(_, e)| e["generation ".len()..].parse::<u64>().ok())
            .unwrap_or(0);
        self.wait_event(next, &format!("generation {}", generation + 1));
        assert_eq!(
            self.wait_exit(current),
            0,
            "pid {current} exits 0 after the handover"
        );
        next
    }

    /// Sends SIGTERM to `pid` and waits for its exit event; its code.
    pub fn terminate(&mut self, pid: u32) -> i32 {
        self.signal(pid, Signal::SIGTERM);
        self.wait_exit(pid)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // Only processes this harness started, or that its fixture started
        // for it: by pid, and only those that have not reported their exit.
        let exited: BTreeSet<u32> = self
            .seen
            .iter()
            .filter(|(_, e)| e.starts_with("exit code="))
            .map(|(p, _)| *p)
            .chain(self.gone.iter().copied())
            .collect();
        for &pid in self.pids.difference(&exited) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        if let Some(t) = self.stderr_done.take() {
            drop(t);
        }
    }
}

/// One request-response on a control socket.
pub fn control(path: &Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the control socket");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

/// A fault point of the fixture (`UPGRADE_FIXTURE_HOOK`): the generation
/// stops at `point` until released (or killed there).
pub struct Hook {
    pub generation: u64,
    pub point: &'static str,
    pub fifo: PathBuf,
    /// How much longer the process takes once released (a slow start-up,
    /// simulated by the fixture).
    pub delay: Option<String>,
}

impl Hook {
    /// A hook with its FIFO in `dir`.
    pub fn new(dir: &Scratch, generation: u64, point: &'static str) -> Self {
        let fifo = dir.path(&format!("hook-{generation}-{point}"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("make a FIFO");
        Self {
            generation,
            point,
            fifo,
            delay: None,
        }
    }

    /// The process takes `delay` (humantime) more once released.
    pub fn with_delay(mut self, delay: &str) -> Self {
        self.delay = Some(delay.to_string());
        self
    }

    /// The value of `UPGRADE_FIXTURE_HOOK` for these hooks.
    pub fn env(hooks: &[&Hook]) -> String {
        hooks
            .iter()
            .map(|h| {
                let mut spec = format!("{}:{}:", h.generation, h.point);
                if let Some(d) = &h.delay {
                    spec.push_str(&format!("+{d}:"));
                }
                spec.push_str(&h.fifo.display().to_string());
                spec
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until a process of `s` stopped at this point; its pid.
    pub fn wait(&self, s: &mut Service) -> u32 {
        let what = format!("hook {}", self.point);
        s.wait_for(|_, e| e == what).0
    }

    /// Lets the process stopped at this point go on. It must be there (a
    /// FIFO without a reader refuses a non-blocking writer).
    pub fn release(&self) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&self.fifo)
            .expect("the process waits at the hook");
        f.write_all(b"x").expect("release the hook");
    }
}

use std::os::unix::fs::OpenOptionsExt as _;

/// Makes this test process the reaper of every orphan below it, so that the
/// generations of a fixture can be waited for once their parent is gone.
/// nextest runs each test in a process of its own.
pub fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

impl Service {
    /// Waits until every process of the service has exited and is reaped,
    /// within the bound; panics naming what is left.
    ///
    /// The test process must be a subreaper ([`become_subreaper`]): every
    /// generation descends from the first process, so while any of them
    /// lives, this process has a child to wait for — the first process, or
    /// an orphan reparented here. No child at all means none is left, not
    /// even a zombie.
    pub fn assert_all_gone(&mut self) {
        use nix::sys::wait::waitpid;
        // The first process is reaped below, with the others.
        drop(self.child.take());
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(waitpid(Pid::from_raw(-1), None));
            });
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(status)) => {
                    if let Some(pid) = status.pid() {
                        self.gone.insert(pid.as_raw() as u32);
                    }
                }
                Ok(Err(nix::errno::Errno::ECHILD)) => break,
                Ok(Err(nix::errno::Errno::EINTR)) => {}
                Ok(Err(e)) => panic!("waitpid: {e}"),
                Err(_) => {
                    let left: Vec<String> = self
                        .pids
                        .iter()
                        .filter_map(|p| proc_state(*p).map(|s| format!("{p}: {s}")))
                        .collect();
                    panic!("processes left after {WAIT:?}: {left:?}");
                }
            }
        }
        // Every process of the service is gone; none of the pids is ours to
        // signal any more (they may be reused).
        self.gone.extend(self.pids.iter().copied());
    }
}

/// The `State:` line of /proc/<pid>/status.
pub fn proc_state(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("State:"))
        .map(|l| l.to_string())
}

/// Children of `pid` that are zombies (exited, not reaped).
pub fn zombies_of(pid: u32) -> Vec<u32> {
    children_where(pid, |state| state == "Z")
}

/// Children of `pid`, in any state.
pub fn children_of(pid: u32) -> Vec<u32> {
    children_where(pid, |_| true)
}

fn children_where(pid: u32, want: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if state.is_some_and(&want) && ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// One request on a fresh connection: (status code, body).
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(WAIT)).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not HTTP: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string()))
}

/// What a fault case ends with: the service is whole again, served by
/// `serving` — the port answers (from it), readiness is 200, the PID file
/// names it, `status` on the control socket answers from it, and it has no
/// zombie child.
pub fn assert_whole(s: &Service, serving: u32, pid_file: &Path, ctl: &Path) {
    assert_whole_in_namespace(s, serving, serving, pid_file, ctl);
}

/// [`assert_whole`] for a service in a PID namespace of its own: it names
/// itself `serving` (its pid inside), and is `host_pid` here, where its
/// zombies are looked for (the host's `serving`, pid 1 say, is another
/// process, whose zombies are none of the service's).
pub fn assert_whole_in_namespace(
    s: &Service,
    serving: u32,
    host_pid: u32,
    pid_file: &Path,
    ctl: &Path,
) {
    let (code, body) = get(s.addr(), "/").expect("the port answers");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with(&format!("pid {serving} ")),
        "served by {serving}: {body}"
    );
    let (code, body) = get(s.admin.unwrap_or(s.addr()), "/readyz").expect("readiness answers");
    assert_eq!(code, 200, "readiness: {body}");
    assert_eq!(
        std::fs::read_to_string(pid_file).ok(),
        Some(format!("{serving}\n")),
        "the PID file names the serving process"
    );
    assert_eq!(
        control(ctl, b"status\n"),
        format!("ok running pid {serving}\n"),
        "status on the control socket"
    );
    assert_eq!(
        zombies_of(host_pid),
        Vec::<u32>::new(),
        "zombies of {serving} (pid {host_pid} here)"
    );
}

/// Asserts that none of a load's requests failed, saying what failed.
pub fn none_failed(what: &str, stats: &lameduck_tests::load::Stats) {
    assert!(
        stats.failures.is_empty(),
        "{what}: {} of {} failed: {:#?}",
        stats.failures.len(),
        stats.ok + stats.failures.len() as u64,
        stats.failures
    );
}
