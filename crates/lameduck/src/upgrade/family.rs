//! What a new process started: the processes below it, so that the old
//! process, when it stops a new process that will not serve, leaves none
//! of them behind.
//!
//! The new process stays in the old one's process group on purpose (see
//! [`spawn`](super::spawn)): whatever signals that group — a terminal's
//! Ctrl+C, `lameduck run`, the drill, `kill -- -PGID` — must reach the
//! process that serves after an upgrade. So the old process cannot signal
//! a group of the new process's own; it finds the new process's family
//! instead, in `/proc` (Linux; elsewhere the family is empty):
//!
//! - its descendants, while it is not reaped (its pid is still its own);
//! - every process that carries its mark in its environment: the variables
//!   the old process gave it (`LAMEDUCK_UPGRADE_PARENT=<old pid>`,
//!   `LAMEDUCK_UPGRADE_PID=<new pid>`), which everything it starts inherits.
//!   This finds what left the tree: the orphans of a wrapper script that
//!   exited, a daemon that double-forked.
//!
//! Each member is known by its pid and start time, so a pid reused since is
//! never signalled.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::child::PARENT_PID_VAR;
use crate::listen::UPGRADE_PID_VAR;

/// How often a stop looks whether the family is gone.
const POLL: Duration = Duration::from_millis(20);

/// A process of the family: its pid and its start time (clock ticks since
/// boot), which tell it from a later process with the same pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    pid: u32,
    start: u64,
}

/// The processes a new process started.
#[derive(Debug, Default)]
pub(crate) struct Family {
    new_pid: u32,
    members: Vec<Member>,
}

impl Family {
    /// The family of `new_pid` now. `reaped`: the new process has been
    /// waited for, so its pid may name a stranger: only its mark counts.
    pub(crate) fn of(new_pid: u32, reaped: bool) -> Self {
        let mut family = Self {
            new_pid,
            members: Vec::new(),
        };
        family.grow(if reaped { None } else { Some(new_pid) });
        family
    }

    /// How many of the family are alive.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Sends `SIGTERM` to each member.
    pub(crate) fn terminate(&mut self) {
        self.signal(Signal::SIGTERM);
    }

    /// Waits until the family is gone, up to `deadline`; then kills
    /// (`SIGKILL`) what is left, and what it started meanwhile. Returns how
    /// many were killed.
    pub(crate) async fn finish(&mut self, deadline: Instant) -> usize {
        self.wait_gone(deadline).await;
        // Started after the first look, by a member that is still there.
        self.grow(None);
        let killed = self.members.len();
        self.signal(Signal::SIGKILL);
        self.wait_gone(Instant::now() + Duration::from_secs(1))
            .await;
        killed
    }

    /// Adds every process of the family not known yet: the descendants of
    /// `root` and of the members, and the processes with the mark.
    fn grow(&mut self, root: Option<u32>) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let mark = (
            format!("{PARENT_PID_VAR}={}", std::process::id()),
            format!("{UPGRADE_PID_VAR}={}", self.new_pid),
        );
        let mut all: Vec<(Member, u32)> = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != self.new_pid)
            .filter_map(|pid| stat(pid).map(|(ppid, start)| (Member { pid, start }, ppid)))
            .collect();
        let marked: Vec<Member> = all
            .iter()
            .filter(|(m, _)| is_marked(m.pid, &mark))
            .map(|(m, _)| *m)
            .collect();
        self.add(marked);
        // Descendants: a parent's pid before its children's is not
        // guaranteed (pids wrap), so repeat until nothing is added.
        loop {
            let known = |pid: u32| root == Some(pid) || self.members.iter().any(|m| m.pid == pid);
            let (found, rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, pp)| known(*pp));
            all = rest;
            if found.is_empty() {
                break;
            }
            self.add(found.into_iter().map(|(m, _)| m).collect());
        }
    }

    fn add(&mut self, found: Vec<Member>) {
        for m in found {
            if !self.members.contains(&m) {
                self.members.push(m);
            }
        }
    }

    fn signal(&mut self, signal: Signal) {
        self.members.retain(|m| is_alive(*m));
        for m in &self.members {
            if let Ok(raw) = i32::try_from(m.pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
            }
        }
    }

    /// Waits until no member is alive (a zombie is not), or `deadline`.
    async fn wait_gone(&mut self, deadline: Instant) {
        loop {
            self.members.retain(|m| is_alive(*m));
            let now = Instant::now();
            if self.members.is_empty() || now >= deadline {
                return;
            }
            tokio::time::sleep(POLL.min(deadline - now)).await;
        }
    }
}

/// Whether `m` still runs: its pid names the same process, not a zombie.
fn is_alive(m: Member) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{}/stat", m.pid)) else {
        return false;
    };
    fields(&text).is_some_and(|f| f.state != "Z" && f.start == m.start)
}

/// The parent and start time of a live (not zombie) process.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f = fields(&text)?;
    (f.state != "Z").then_some((f.ppid, f.start))
}

struct Fields<'a> {
    state: &'a str,
    ppid: u32,
    start: u64,
}

/// The fields of a `/proc/PID/stat` line that matter here. The command, in
/// parentheses, may hold spaces: the fields are counted after its `)`.
/// State is field 3, the parent field 4, the start time field 22.
fn fields(stat: &str) -> Option<Fields<'_>> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Fields {
        state: f.first()?,
        ppid: f.get(1)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
    })
}

/// Whether the environment `pid` started with holds both variables of the
/// mark. Another user's processes cannot be read (nor signalled): no.
fn is_marked(pid: u32, (parent, new): &(String, String)) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut has = (false, false);
    for var in env.split(|b| *b == 0) {
        has.0 |= var == parent.as_bytes();
        has.1 |= var == new.as_bytes();
    }
    has == (true, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_a_command_with_spaces_and_parentheses() {
        let line = "42 (a (b) c) S 7 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let f = fields(line).unwrap();
        assert_eq!((f.state, f.ppid, f.start), ("S", 7, 12345));
    }

    #[test]
    fn a_child_of_this_process_is_in_the_family_of_this_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .spawn()
            .unwrap();
        let family = Family::of(std::process::id(), false);
        let found = family.members.iter().any(|m| m.pid == child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "{family:?}");
    }
}
