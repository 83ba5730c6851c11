//! Readiness and liveness checks of one instance: run every interval, each
//! bounded by its timeout, turned into a state by their thresholds.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::flags::Probe;
use super::instance::signal_group;
use super::reaper::Reaper;

/// Until a check first passes, it runs at least this often: a program
/// that starts in 300 ms is ready in about 300 ms, whatever the interval.
const STARTING_INTERVAL: Duration = Duration::from_millis(100);

/// A check and its timing.
#[derive(Clone, Debug)]
pub struct CheckSpec {
    /// What it asks.
    pub probe: Probe,
    /// How often it runs.
    pub interval: Duration,
    /// How long one run may take.
    pub timeout: Duration,
    /// Consecutive failures, once passing, that make it fail.
    pub failures: u32,
    /// Consecutive successes that make it pass.
    pub successes: u32,
    /// Whether it can fail before it ever passed: a liveness check, which
    /// runs only once the program is ready. A readiness check cannot: a
    /// program is not ready until it has passed once.
    pub fails_before_passing: bool,
}

/// Where a check stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// It has not passed yet; the last failure, if any.
    Starting(Option<String>),
    /// It passes.
    Passing,
    /// It passed, then failed `failures` times in a row: why.
    Failing(String),
}

impl State {
    /// Whether it passes.
    pub fn is_passing(&self) -> bool {
        *self == State::Passing
    }
}

/// What one run of a check concluded.
type Outcome = Result<(), String>;

/// Counts consecutive outcomes into a [`State`].
#[derive(Debug)]
struct Thresholds {
    failures: u32,
    successes: u32,
    fails_before_passing: bool,
    ok_streak: u32,
    failed_streak: u32,
    state: State,
}

impl Thresholds {
    fn new(spec: &CheckSpec) -> Self {
        Self {
            failures: spec.failures,
            successes: spec.successes,
            fails_before_passing: spec.fails_before_passing,
            ok_streak: 0,
            failed_streak: 0,
            state: State::Starting(None),
        }
    }

    fn record(&mut self, outcome: Outcome) -> &State {
        match outcome {
            Ok(()) => {
                self.failed_streak = 0;
                self.ok_streak += 1;
                if self.ok_streak >= self.successes {
                    self.state = State::Passing;
                }
            }
            Err(why) => {
                self.ok_streak = 0;
                self.failed_streak += 1;
                self.state = match &self.state {
                    State::Starting(_)
                        if self.fails_before_passing && self.failed_streak >= self.failures =>
                    {
                        State::Failing(why)
                    }
                    State::Starting(_) => State::Starting(Some(why)),
                    State::Passing if self.failed_streak < self.failures => State::Passing,
                    _ => State::Failing(why),
                };
            }
        }
        &self.state
    }
}

/// Runs `spec` against the instance `pid` until the receiver is dropped.
/// `notify`, for a `notify` check: what the program said (true for
/// `READY=1`, false for `STOPPING=1` or `RELOADING=1`).
pub fn watch(
    spec: CheckSpec,
    pid: Pid,
    reaper: Reaper,
    mut notify: Option<watch::Receiver<Option<bool>>>,
) -> watch::Receiver<State> {
    let (tx, rx) = watch::channel(State::Starting(None));
    tokio::spawn(async move {
        let mut t = Thresholds::new(&spec);
        loop {
            let outcome = match (&spec.probe, notify.as_mut()) {
                (Probe::Notify, Some(said)) => {
                    let state = match *said.borrow_and_update() {
                        None => State::Starting(None),
                        Some(true) => State::Passing,
                        Some(false) => {
                            State::Failing("the program said STOPPING=1 or RELOADING=1".into())
                        }
                    };
                    tx.send_replace(state);
                    tokio::select! {
                        changed = said.changed() => if changed.is_err() { return },
                        () = tx.closed() => return,
                    }
                    continue;
                }
                (probe, _) => {
                    tokio::select! {
                        r = tokio::time::timeout(spec.timeout, run(probe, pid, &reaper)) => {
                            r.unwrap_or_else(|_| Err(format!("no answer within {}", humantime::format_duration(spec.timeout))))
                        }
                        () = tx.closed() => return,
                    }
                }
            };
            let state = t.record(outcome).clone();
            tx.send_if_modified(|s| {
                let changed = *s != state;
                *s = state.clone();
                changed
            });
            let every = match state {
                // Waiting for a program to start: asked often, so that it
                // is ready as soon as it is. A liveness check is asked at
                // its own interval from the start: it starts once the
                // program is ready.
                State::Starting(_) if !spec.fails_before_passing => {
                    spec.interval.min(STARTING_INTERVAL)
                }
                _ => spec.interval,
            };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = tx.closed() => return,
            }
        }
    });
    rx
}

async fn run(probe: &Probe, pid: Pid, reaper: &Reaper) -> Outcome {
    match probe {
        Probe::Http { authority, path } => http(authority, path).await,
        Probe::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str())
            .await
            .map(drop)
            .map_err(|e| format!("connect to {addr}: {e}")),
        Probe::Exec(cmd) => exec(cmd, pid, reaper).await,
        Probe::Notify => Err("no notify socket".into()),
    }
}

/// `GET path` with HTTP/1.1 and `Connection: close`; 200–399 passes.
async fn http(authority: &str, path: &str) -> Outcome {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("connect to {authority}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: lameduck-run\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET http://{authority}{path}: {e}"))?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    // Only the status line matters; it is within the first few bytes.
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET http://{authority}{path}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("GET http://{authority}{path}: not an HTTP answer"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET http://{authority}{path} answered {status}"))
    }
}

/// `sh -c cmd`, in a process group of its own (killed whole on a timeout),
/// with `LAMEDUCK_PID` naming the instance it checks.
async fn exec(cmd: &str, pid: Pid, reaper: &Reaper) -> Outcome {
    let child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("LAMEDUCK_PID", pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh: {e}"))?;
    let check = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
    drop(child);
    let rx = reaper.wait(check);
    // Killed whole if this future is dropped (the timeout).
    let _kill = KillOnDrop(check);
    match rx.await {
        Ok(ended) if ended.is_success() => Ok(()),
        Ok(ended) => Err(format!("`{cmd}` failed: {ended}")),
        Err(_) => Err(format!("`{cmd}`: its status was lost")),
    }
}

struct KillOnDrop(Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if super::instance::group_alive(self.0) {
            signal_group(self.0, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(failures: u32, successes: u32) -> CheckSpec {
        CheckSpec {
            probe: Probe::Notify,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            failures,
            successes,
            fails_before_passing: false,
        }
    }

    #[test]
    fn a_liveness_check_that_never_passes_fails_after_its_failures() {
        // Started once the program is ready: a check that fails from the
        // start is a dead program, not one still starting.
        let mut t = Thresholds::new(&CheckSpec {
            fails_before_passing: true,
            ..spec(2, 1)
        });
        assert_eq!(
            t.record(Err("no".into())),
            &State::Starting(Some("no".into()))
        );
        assert_eq!(t.record(Err("no".into())), &State::Failing("no".into()));
        // A readiness check never fails before it passed.
        let mut r = Thresholds::new(&spec(2, 1));
        for _ in 0..5 {
            assert!(matches!(r.record(Err("no".into())), State::Starting(_)));
        }
    }

    #[test]
    fn a_check_passes_after_its_successes_and_fails_after_its_failures() {
        let mut t = Thresholds::new(&spec(2, 2));
        assert_eq!(
            t.record(Err("no".into())),
            &State::Starting(Some("no".into()))
        );
        assert_eq!(t.record(Ok(())), &State::Starting(Some("no".into())));
        assert_eq!(t.record(Ok(())), &State::Passing);
        assert_eq!(t.record(Err("blip".into())), &State::Passing);
        assert_eq!(t.record(Ok(())), &State::Passing);
        assert_eq!(t.record(Err("a".into())), &State::Passing);
        assert_eq!(t.record(Err("b".into())), &State::Failing("b".into()));
        assert_eq!(t.record(Ok(())), &State::Failing("b".into()));
        assert_eq!(t.record(Ok(())), &State::Passing);
    }
}
