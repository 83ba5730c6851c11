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
    pub first_pid: u32,
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
            first_pid,
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

    /// The first process's real exit status.
    pub fn wait_first(&mut self) -> ExitStatus {
        self.child
            .as_mut()
            .expect("the first process")
            .wait()
            .unwrap()
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
