//! The program's processes from the drain on, each tracked as a piece of
//! work labelled `pid N: COMMAND`: as Stopping begins and at each deadline
//! the report, the log and the flight record name the processes still
//! alive, as they name a Rust service's requests. Linux (`/proc`); elsewhere only the program itself
//! is tracked.

use std::collections::HashMap;

use lameduck::{Tracker, WorkGuard};
use nix::unistd::Pid;

/// The longest command line kept in a label, in bytes.
const MAX_LABEL: usize = 120;

/// The processes tracked, by pid.
#[derive(Debug)]
pub struct Tree {
    tracker: Tracker,
    tracked: HashMap<i32, WorkGuard>,
}

impl Tree {
    /// Tracks nothing yet.
    pub fn new(tracker: Tracker) -> Self {
        Self {
            tracker,
            tracked: HashMap::new(),
        }
    }

    /// Tracks `alive` from now on: the processes not tracked yet start,
    /// the ones tracked and not in it end.
    pub fn update(&mut self, alive: &[Pid]) {
        self.tracked
            .retain(|pid, _| alive.iter().any(|p| p.as_raw() == *pid));
        for pid in alive {
            self.tracked
                .entry(pid.as_raw())
                .or_insert_with(|| self.tracker.track_with(label(*pid)));
        }
    }

    /// Marks every process tracked now as ended by the shutdown: lameduck
    /// is about to kill it (the report would otherwise say that it
    /// finished on its own).
    pub fn killed_by_the_shutdown(&self) {
        for guard in self.tracked.values() {
            self.tracker.mark_ended(guard);
        }
    }

    /// Ends the tracking of every process.
    pub fn clear(&mut self) {
        self.tracked.clear();
    }
}

/// The processes of the process group `pgid` (zombies left out).
pub fn group(pgid: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![pgid];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| in_group(&stat, pgid.as_raw()))
                .unwrap_or(false)
        })
        .map(Pid::from_raw)
        .collect()
}

/// Whether the leader of the process group `pgid` (an instance of the
/// program) still runs: not a zombie, not gone, and still that group's
/// leader (a pid reused since would lead another group).
pub fn leads(pgid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pgid}/stat")) {
        Ok(stat) => in_group(&stat, pgid.as_raw()).unwrap_or(false),
        // No /proc: whether the pid is there at all.
        Err(_) => nix::sys::signal::kill(pgid, None).is_ok(),
    }
}

/// Whether a `/proc/PID/stat` line is of a live process of group `pgid`:
/// after the command in parentheses come the state and the ppid, then the
/// process group.
fn in_group(stat: &str, pgid: i32) -> Option<bool> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let group: i32 = fields.nth(1)?.parse().ok()?;
    Some(group == pgid && state != "Z" && state != "X")
}

/// `pid N: COMMAND LINE`, cut at [`MAX_LABEL`] bytes.
fn label(pid: Pid) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut command = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if command.len() > MAX_LABEL {
        let mut cut = MAX_LABEL;
        while !command.is_char_boundary(cut) {
            cut -= 1;
        }
        command.truncate(cut);
        command.push('…');
    }
    if command.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid}: {command}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_group_and_leaves_zombies_out() {
        let stat = "4242 (my (odd) prog) S 1 4240 4240 0 -1 4194560";
        assert_eq!(in_group(stat, 4240), Some(true));
        assert_eq!(in_group(stat, 1), Some(false));
        let zombie = "4242 (prog) Z 1 4240 4240 0";
        assert_eq!(in_group(zombie, 4240), Some(false));
        assert_eq!(in_group("garbage", 1), None);
    }

    #[test]
    fn a_process_is_labelled_with_its_command_line() {
        let me = Pid::this();
        let l = label(me);
        assert!(l.starts_with(&format!("pid {me}: ")), "{l}");
        assert!(l.len() <= MAX_LABEL + 20, "{l}");
        assert!(group(nix::unistd::getpgrp()).contains(&me));
    }

    #[test]
    fn processes_that_end_end_their_tracking() {
        let tracker = Tracker::new("test");
        let mut tree = Tree::new(tracker.clone());
        let (a, b) = (Pid::from_raw(1), Pid::this());
        tree.update(&[a, b]);
        assert_eq!(tracker.len(), 2);
        tree.update(&[b]);
        assert_eq!(tracker.len(), 1);
        tree.clear();
        assert_eq!(tracker.len(), 0);
    }
}
