//! Sending the signals, each to the process serving *now*; in a restart
//! drill, watching after each one for the new process (see `restarts`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::restarts::{Scanner, Snapshot, Window};
use crate::config::{Expectation, SignalPlan};
use crate::events::{EventLog, RestartSeen, SentSignal};
use crate::process::{Server, is_alive};
use crate::procfs;
use crate::record::{Clock, RecordSink};

/// Finds the process to signal.
#[derive(Debug)]
pub(super) struct Targets {
    server: Arc<Server>,
    pid_file: Option<PathBuf>,
    addr: SocketAddr,
    previous: Option<u32>,
    /// In a restart drill, the process the last restart brought in (or the
    /// supervisor that brought it in).
    next: Option<u32>,
}

impl Targets {
    pub(super) fn new(server: Arc<Server>, pid_file: Option<PathBuf>, addr: SocketAddr) -> Self {
        Targets {
            server,
            pid_file,
            addr,
            previous: None,
            next: None,
        }
    }

    /// The process serving now, in this order: the PID in the PID file (read
    /// afresh); for the first signal, the process spawned or attached to; in
    /// a restart drill, the new process the last signal brought in (or the
    /// supervisor that replaced its workers), while it runs; the process
    /// signalled last time, while it runs (a supervisor that restarts its
    /// workers keeps its PID); the holder of the listening socket (a server
    /// that replaced itself with a new process).
    async fn find(&mut self) -> Result<u32, String> {
        if let Some(path) = &self.pid_file {
            return read_pid_file(path)
                .map_err(|why| format!("the PID file {}: {why}", path.display()));
        }
        // A PID is used only while the drill has not seen it exit, so that a
        // recycled PID is never signalled.
        let running = |pid: u32| self.server.exit_of(pid).is_none() && is_alive(pid);
        if self.previous.is_none()
            && let Some(pid) = self.server.pid()
            && running(pid)
        {
            return Ok(pid);
        }
        if let Some(next) = self.next.take()
            && running(next)
        {
            return Ok(next);
        }
        if let Some(previous) = self.previous
            && running(previous)
        {
            return Ok(previous);
        }
        let (addr, group) = (self.addr, self.server.group());
        let holder = tokio::task::spawn_blocking(move || {
            procfs::pick_server(&procfs::listening_socket_holders(addr, group))
        })
        .await
        .ok()
        .flatten();
        holder.ok_or_else(|| format!("no running process holds a socket listening on {addr}"))
    }
}

/// The most of a PID file the drill reads: a PID is a few digits and a
/// newline. Whatever else a file holds, it is never read whole, nor
/// quoted whole in an error.
const PID_FILE_MAX: u64 = 64;

/// How much of a file that holds no PID an error quotes.
const QUOTED: usize = 24;

/// The PID in the PID file at `path`, or why there is none.
pub(super) fn read_pid_file(path: &std::path::Path) -> Result<u32, String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(PID_FILE_MAX + 1).read_to_end(&mut bytes))
        .map_err(|err| format!("cannot read it: {err}"))?;
    parse_pid(&bytes)
}

/// The process id a PID file's `bytes` hold: one number from 1 to
/// `i32::MAX` (a `pid_t`: anything above would reach `kill(2)` as a
/// negative number, a process group), blanks around it ignored. The error
/// quotes at most the start of the first line.
pub(super) fn parse_pid(bytes: &[u8]) -> Result<u32, String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.parse::<u32>() {
        Ok(0) => Err("it holds 0, which is not a process id (they start at 1)".to_owned()),
        Ok(pid) if i32::try_from(pid).is_ok() => Ok(pid),
        Ok(pid) => Err(format!("it holds {pid}, more than any process id")),
        Err(_) if text.is_empty() => Err("it is empty: it holds no process id".to_owned()),
        Err(_) => {
            let line = text.lines().next().unwrap_or_default();
            let quoted: String = line.chars().take(QUOTED).collect();
            let cut = quoted.len() < text.len() || bytes.len() as u64 > PID_FILE_MAX;
            Err(format!(
                "it holds no process id: it begins {quoted:?}{}",
                if cut { " (cut)" } else { "" }
            ))
        }
    }
}

/// Checks, before the load, that the PID file names a running process:
/// else every signal would fail, and the drill would find out only at the
/// end of the load.
pub(super) fn check_pid_file(path: &std::path::Path) -> Result<(), String> {
    let pid = read_pid_file(path)?;
    if !is_alive(pid) {
        return Err(format!("it names pid {pid}, which is not running"));
    }
    Ok(())
}

/// How long before a signal is due the drill notes what serves (reading
/// `/proc` takes a while on a busy machine; the signal must go on time).
const SNAPSHOT_LEAD: Duration = Duration::from_millis(50);

/// What the signaller needs besides the plan and the targets.
#[derive(Debug)]
pub(super) struct Signaller {
    pub(super) clock: Clock,
    pub(super) events: Arc<EventLog>,
    /// With a stop drill: the first delivered signal starts the time from
    /// which refused connects are not held against the server.
    pub(super) excuse: Option<Arc<RecordSink>>,
    /// When the load ends, and how long a server may take after a signal.
    pub(super) load_end: Instant,
    pub(super) grace_period: Duration,
}

/// Sends the plan's signals on time, logging each one. In a restart drill,
/// it watches after each signal for the new process (until the next signal;
/// after the last, until the load has ended and a new process serves, or
/// the grace period has passed) and logs what it saw.
pub(super) async fn send(plan: SignalPlan, mut targets: Targets, s: Signaller) {
    let restart = plan.expect == Expectation::Restart;
    // The process group to look in for new processes: the spawned server's,
    // or the first process's own (a successor stays in its parent's group).
    let (addr, group, pid_file) = (
        targets.addr,
        targets.server.group(),
        targets.pid_file.clone(),
    );
    let scanner_for = move |pid: u32| Scanner {
        addr,
        group: group.or_else(|| procfs::stat(pid).map(|st| st.pgrp)),
        pid_file: pid_file.clone(),
    };
    let mut scanner = targets.server.pid().filter(|_| restart).map(&scanner_for);
    let mut window: Option<Window> = None;
    // When the last signal went: the next waits at least `every` after it.
    let mut last_sent: Option<Instant> = None;
    for n in 0..plan.repeat {
        let due = spaced_due(s.clock.t0() + plan.due(n), last_sent, plan.every);
        if n > 0 && due >= s.load_end {
            // Behind schedule (a busy machine made a signal late, and the
            // next ones keep their spacing): no load is left to judge a
            // signal by.
            let at_us = s.clock.now_us();
            if restart {
                s.events.restart(RestartSeen {
                    signal: n as usize,
                    pid: None,
                    new_pid: None,
                    seen_us: None,
                    gone_pid: None,
                    until_us: at_us,
                    nothing_left: false,
                    supervisor: false,
                });
            }
            s.events.signal(SentSignal {
                at_us,
                signal: plan.signal,
                pid: None,
                error: Some(format!(
                    "not sent: the signals fell behind schedule (one went late, and the next keep --every apart) and the load ends before this one was due at {:.3}s",
                    s.clock.us(due) as f64 / 1e6
                )),
            });
            continue;
        }
        let prepare = due
            .checked_sub(SNAPSHOT_LEAD)
            .unwrap_or(due)
            .max(Instant::now());
        match (window.as_mut(), scanner.as_ref()) {
            (Some(w), Some(scanner)) => w.watch_until(prepare, scanner, s.clock).await,
            _ => tokio::time::sleep_until(prepare.into()).await,
        }
        if let (Some(w), Some(scanner)) = (window.take(), scanner.as_ref()) {
            let (seen, next) = w.close(scanner, s.clock).await;
            targets.next = next;
            s.events.restart(seen);
        }
        let mut before = match &scanner {
            Some(scanner) => Some(Snapshot::take(scanner).await),
            None => None,
        };
        tokio::time::sleep_until(due.into()).await;
        let found = targets.find().await;
        if restart && scanner.is_none() {
            // Only a PID file told where the server is: look in its group.
            scanner = found.as_ref().ok().map(|&pid| scanner_for(pid));
            if let Some(scanner) = &scanner {
                before = Some(Snapshot::take(scanner).await);
            }
        }
        let opened = match (&found, before) {
            (Ok(pid), Some(before)) => Some(Window::open(n as usize, *pid, before)),
            _ => None,
        };
        let at_us = s.clock.now_us();
        last_sent = Some(Instant::now());
        let event = match found {
            Ok(pid) => {
                let watched = targets.server.watch(pid);
                let errno = targets.server.signal(pid, plan.signal).err();
                if watched && errno == Some(nix::errno::Errno::ESRCH) {
                    targets.server.forget(pid);
                }
                let error = errno.map(|errno| format!("kill({pid}, SIG{}): {errno}", plan.signal));
                if error.is_none()
                    && let Some(sink) = &s.excuse
                {
                    sink.excuse_refused_from(at_us);
                }
                if error.is_none() {
                    window = opened;
                }
                targets.previous = Some(pid);
                SentSignal {
                    at_us,
                    signal: plan.signal,
                    pid: Some(pid),
                    error,
                }
            }
            Err(error) => SentSignal {
                at_us,
                signal: plan.signal,
                pid: None,
                error: Some(error),
            },
        };
        if restart && event.error.is_some() {
            // Not delivered: no restart to look for.
            s.events.restart(RestartSeen {
                signal: n as usize,
                pid: event.pid,
                new_pid: None,
                seen_us: None,
                gone_pid: None,
                until_us: at_us,
                nothing_left: false,
                supervisor: false,
            });
        }
        s.events.signal(event);
    }
    if let (Some(mut w), Some(scanner)) = (window, scanner.as_ref()) {
        let last =
            last_sent.unwrap_or_else(|| s.clock.t0() + plan.due(plan.repeat.saturating_sub(1)));
        let give_up = (last + s.grace_period).max(s.load_end);
        w.watch_last(s.load_end, give_up, scanner, s.clock).await;
        let (seen, _) = w.close(scanner, s.clock).await;
        s.events.restart(seen);
    }
}

/// When a signal goes: on the plan's schedule, but never sooner than
/// `every` after the previous one. A signal sent late on a busy machine
/// does not make the next ones catch up in a burst, which would signal a
/// server before its last restart had finished — and judge it for that.
fn spaced_due(scheduled: Instant, last_sent: Option<Instant>, every: Duration) -> Instant {
    match last_sent {
        Some(last) => scheduled.max(last + every),
        None => scheduled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_signal_keeps_the_next_one_every_apart_instead_of_a_burst() {
        let t0 = Instant::now();
        let every = Duration::from_secs(1);
        // On schedule: the plan's time.
        let sent = t0 + Duration::from_millis(700);
        assert_eq!(
            spaced_due(t0 + Duration::from_millis(1700), Some(sent), every),
            t0 + Duration::from_millis(1700)
        );
        // The second went 1.35 s late: the third is due a second after it,
        // not at once.
        let late = t0 + Duration::from_millis(3054);
        assert_eq!(
            spaced_due(t0 + Duration::from_millis(2700), Some(late), every),
            late + every
        );
        assert_eq!(spaced_due(t0, None, every), t0);
    }

    #[test]
    fn a_pid_file_holding_zero_or_anything_but_a_pid_is_refused_without_being_dumped() {
        assert_eq!(parse_pid(b" 4242\n"), Ok(4242));
        let says = |bytes: &[u8]| parse_pid(bytes).unwrap_err();
        assert_eq!(
            says(b"0\n"),
            "it holds 0, which is not a process id (they start at 1)"
        );
        assert!(says(b"4294967295").contains("more than any process id"));
        assert!(says(b"-1").contains("it begins \"-1\""));
        assert!(says(b"\n").contains("empty"));
        let status = format!(
            "Name:\tcat\nUmask:\t0022\n{}",
            "State:\tR (running)\n".repeat(40)
        );
        let err = says(status.as_bytes());
        assert_eq!(
            err,
            "it holds no process id: it begins \"Name:\\tcat\" (cut)"
        );
        assert!(!err.contains("Umask"), "{err}");
    }
}
