//! The guard: a small process (`lameduck` itself, in a hidden mode) that
//! outlives lameduck only to kill the program's process groups if lameduck
//! dies without stopping them — `SIGKILL`, an abort, the OOM killer.
//!
//! `PR_SET_PDEATHSIG` would reach only the program's first process, not its
//! children; the guard reaches every process group lameduck started, every
//! descendant of them (also one that left the group with `setsid`), and
//! every process lameduck told it of. It reads lines on its standard
//! input, a pipe from lameduck: `+PGID` for a group to guard, `-PGID` for
//! one that is gone, `p+PID:START` and `p-PID:START` for a single process
//! (by its pid and start time), `done` when lameduck exits having stopped
//! them all. End of input without `done` means lameduck died: the guard
//! sends `SIGKILL` to every one of them, and exits.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::tree::{self, Proc};

/// The hidden subcommand that runs the guard.
pub const SUBCOMMAND: &str = "run-guard";

/// lameduck's end of the pipe; without one (the guard could not start),
/// every call does nothing.
#[derive(Clone, Debug)]
pub struct Guard {
    pipe: Option<Arc<Mutex<ChildStdin>>>,
    pid: Option<u32>,
}

impl Guard {
    /// Starts the guard.
    pub fn start() -> Self {
        // The running binary, even if the file on disk was replaced since.
        let exe = if cfg!(target_os = "linux") {
            std::path::PathBuf::from("/proc/self/exe")
        } else {
            match std::env::current_exe() {
                Ok(p) => p,
                Err(_) => return Self::none(),
            }
        };
        let spawned = Command::new(exe)
            .arg(SUBCOMMAND)
            .arg(std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            // Its own group: a Ctrl+C on the terminal is not for it.
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                let pipe = child.stdin.take().map(|p| Arc::new(Mutex::new(p)));
                let pid = Some(child.id());
                // It is reaped by the reaper like any child.
                drop(child);
                Self { pipe, pid }
            }
            Err(err) => {
                tracing::warn!(target: "lameduck::run", error = %err, "cannot start the guard process: if lameduck is killed with SIGKILL, the program's processes outlive it");
                Self::none()
            }
        }
    }

    /// A guard that guards nothing.
    pub fn none() -> Self {
        Self {
            pipe: None,
            pid: None,
        }
    }

    /// The guard's pid: a child of lameduck that is not the program's.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    fn send(&self, line: &str) {
        if let Some(pipe) = &self.pipe {
            let mut pipe = pipe.lock().unwrap_or_else(|e| e.into_inner());
            // A few bytes into a pipe the guard keeps reading: this does not
            // block. A guard that is gone cannot be told.
            let _ = pipe.write_all(line.as_bytes());
        }
    }

    /// Guards the group `pgid`.
    pub fn watch(&self, pgid: Pid) {
        self.send(&format!("+{pgid}\n"));
    }

    /// The group `pgid` is gone.
    pub fn forget(&self, pgid: Pid) {
        self.send(&format!("-{pgid}\n"));
    }

    /// Guards the process `p` (one that may have left the groups).
    pub fn watch_process(&self, p: Proc) {
        self.send(&format!("p+{}:{}\n", p.pid, p.start));
    }

    /// The process `p` is gone.
    pub fn forget_process(&self, p: Proc) {
        self.send(&format!("p-{}:{}\n", p.pid, p.start));
    }

    /// lameduck exits with every group stopped: the guard exits too.
    pub fn done(&self) {
        self.send("done\n");
    }
}

/// The guard's own `main`: returns its exit code.
pub fn main(parent: &str) -> u8 {
    // Signals meant for lameduck's terminal or service are not for the
    // guard: held pending, never delivered, so it outlives lameduck.
    let mut held = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        held.add(sig);
    }
    let _ = held.thread_block();
    let mut groups = BTreeSet::new();
    let mut procs = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "done" {
            return 0;
        }
        if let Some((add, p)) = process_line(line) {
            if add {
                procs.insert((p.pid.as_raw(), p.start));
            } else {
                procs.remove(&(p.pid.as_raw(), p.start));
            }
            continue;
        }
        let (add, num) = match line.split_at_checked(1) {
            Some(("+", n)) => (true, n),
            Some(("-", n)) => (false, n),
            _ => continue,
        };
        if let Ok(pgid) = num.parse::<i32>()
            && pgid > 1
        {
            if add {
                groups.insert(pgid);
            } else {
                groups.remove(&pgid);
            }
        }
    }
    // Every victim is listed before any is killed: a parent killed first
    // would orphan its children, and the link to them would be lost.
    let mut victims: Vec<Proc> = procs
        .iter()
        .map(|&(pid, start)| Proc {
            pid: Pid::from_raw(pid),
            start,
        })
        .collect();
    for pgid in &groups {
        victims.extend(tree::processes(Pid::from_raw(*pgid), &[]));
    }
    for pgid in &groups {
        if nix::sys::signal::killpg(Pid::from_raw(*pgid), Signal::SIGKILL).is_ok() {
            say!("lameduck: guard: lameduck (pid {parent}) is gone; killed process group {pgid}");
        }
    }
    for p in victims {
        let in_a_group = tree::group_of(p.pid).is_some_and(|g| groups.contains(&g));
        if p.pid.as_raw() > 1
            && !in_a_group
            && p.is_alive()
            && nix::sys::signal::kill(p.pid, Signal::SIGKILL).is_ok()
        {
            say!(
                "lameduck: guard: lameduck (pid {parent}) is gone; killed pid {}",
                p.pid
            );
        }
    }
    0
}

/// `p+PID:START` (add) or `p-PID:START` (remove).
fn process_line(line: &str) -> Option<(bool, Proc)> {
    let rest = line.strip_prefix('p')?;
    let (add, rest) = match rest.split_at_checked(1)? {
        ("+", r) => (true, r),
        ("-", r) => (false, r),
        _ => return None,
    };
    let (pid, start) = rest.split_once(':')?;
    Some((
        add,
        Proc {
            pid: Pid::from_raw(pid.parse().ok()?),
            start: start.parse().ok()?,
        },
    ))
}
