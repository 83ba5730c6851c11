//! The program's processes from the drain on, each tracked as a piece of
//! work labelled `pid N: COMMAND`, as old as the process (its age counts
//! from its start, not from when it was first listed): as Stopping begins and at each deadline
//! the report, the log and the flight record name the processes still
//! alive, as they name a Rust service's requests. Linux (`/proc`); elsewhere only the program itself
//! is tracked.
//!
//! The component lists them on its own task, and the app lists them too
//! as it takes each inventory, and lameduck before the `SIGKILL` of a
//! forced exit ([`Lister`]): a forced exit, or a Stopping without a drain,
//! comes on another task before the component's next look, and still
//! names them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use lameduck::{Tracker, WorkGuard};
use nix::unistd::Pid;

use super::known::Known;

/// The longest command line kept in a label, in bytes.
const MAX_LABEL: usize = 120;

/// The processes tracked, of the instance followed. Dropped, it tracks
/// nothing more.
#[derive(Debug)]
pub struct Tree {
    tracker: Tracker,
    state: Arc<Mutex<Tracked>>,
}

#[derive(Debug, Default)]
struct Tracked {
    /// The instance (its process group) whose processes are tracked; none
    /// once they are all gone.
    of: Option<Pid>,
    procs: HashMap<Proc, WorkGuard>,
    /// The exit is forced: what is tracked stays tracked (killed by the
    /// force, it is what the forced report names).
    frozen: bool,
}

/// Lists the processes of a [`Tree`]'s instance and tracks those not
/// tracked yet, from another task than the component's.
#[derive(Clone)]
pub struct Lister {
    tracker: Tracker,
    state: Weak<Mutex<Tracked>>,
    look: Arc<dyn Fn(Pid) -> Vec<Proc> + Send + Sync>,
}

impl std::fmt::Debug for Lister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lister").finish_non_exhaustive()
    }
}

impl Lister {
    /// Lists the processes and tracks the new ones; ends nothing (a process
    /// gone is the component's to end). `freeze`: the exit is forced, and
    /// from now on nothing tracked ends: the `SIGKILL` about to go to them
    /// does not make them gone from the forced report.
    pub fn list(&self, freeze: bool) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let mut tracked = lock(&state);
        if let Some(pgid) = tracked.of {
            let alive = (self.look)(pgid);
            tracked.add(&self.tracker, &alive);
        }
        tracked.frozen |= freeze;
    }
}

impl Tree {
    /// Follows the instance whose group is `pgid`; tracks nothing yet.
    pub fn new(tracker: Tracker, pgid: Pid) -> Self {
        Self {
            tracker,
            state: Arc::new(Mutex::new(Tracked {
                of: Some(pgid),
                procs: HashMap::new(),
                frozen: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        lock(&self.state)
    }

    /// Follows the instance whose group is `pgid` from now on (a restart
    /// replaced the one followed).
    pub fn follow(&self, pgid: Pid) {
        self.lock().of = Some(pgid);
    }

    /// A lister of the processes of the instance followed, for the app to
    /// call before each of its inventories ([`Context::on_inventory`]) and
    /// lameduck before the `SIGKILL` of a forced exit, so that they are
    /// named whether or not the component has looked since. It holds the
    /// tree weakly: once the tree is dropped, it does nothing.
    pub fn lister(&self, look: impl Fn(Pid) -> Vec<Proc> + Send + Sync + 'static) -> Lister {
        Lister {
            tracker: self.tracker.clone(),
            state: Arc::downgrade(&self.state),
            look: Arc::new(look),
        }
    }

    /// Lists the processes of the instance followed, and tracks them.
    pub fn look(&self, known: &Known) {
        let mut tracked = self.lock();
        if let Some(pgid) = tracked.of {
            let alive = known.look(pgid);
            tracked.update(&self.tracker, &alive);
        }
    }

    /// Tracks `alive` from now on: the processes not tracked yet start,
    /// the ones tracked and not in it end.
    pub fn update(&self, alive: &[Proc]) {
        let mut tracked = self.lock();
        if tracked.of.is_some() {
            tracked.update(&self.tracker, alive);
        }
    }

    /// Marks every process tracked now as ended by the shutdown: lameduck
    /// is about to kill it (the report would otherwise say that it
    /// finished on its own).
    pub fn killed_by_the_shutdown(&self) {
        for guard in self.lock().procs.values() {
            self.tracker.mark_ended(guard);
        }
    }

    /// Ends the tracking of every process, and follows none from now on.
    pub fn clear(&self) {
        let mut tracked = self.lock();
        tracked.of = None;
        tracked.procs.clear();
    }
}

impl Tracked {
    fn update(&mut self, tracker: &Tracker, alive: &[Proc]) {
        if !self.frozen {
            self.procs.retain(|p, _| alive.contains(p));
        }
        self.add(tracker, alive);
    }

    fn add(&mut self, tracker: &Tracker, alive: &[Proc]) {
        for p in alive {
            self.procs.entry(*p).or_insert_with(|| match p.started() {
                Some(started) => tracker.track_since(label(p.pid), started),
                None => tracker.track_with(label(p.pid)),
            });
        }
    }
}

fn lock(state: &Mutex<Tracked>) -> MutexGuard<'_, Tracked> {
    // Every update leaves the state whole: a panic cannot tear it.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process, told apart from a later one that reuses its pid by its
/// start time (clock ticks after boot, `/proc/PID/stat`'s 22nd field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc {
    /// Its pid.
    pub pid: Pid,
    /// When it started, in clock ticks after boot.
    pub start: u64,
}

impl Proc {
    /// When it started, as an [`Instant`]: now less its age, the time
    /// since its start by the boot clock, so its age counts from its start
    /// and not from when lameduck found it. `None` when its start is not
    /// known (no `/proc`), or the clocks cannot be read.
    ///
    /// The start time is in clock ticks of `CLOCK_BOOTTIME`, which counts
    /// the time the machine was suspended; an `Instant` is
    /// `CLOCK_MONOTONIC`, which does not. Subtracting the start from the
    /// boot clock's now gives the process's age, suspend included (it did
    /// exist all that time); that age is then taken from the monotonic
    /// now. The kernel rounds a start down to the tick, so the age is up to
    /// a tick long, never short; the monotonic now is read first, so the
    /// gap between the two reads lengthens it too, never shortens it.
    pub fn started(self) -> Option<Instant> {
        if self.start == 0 {
            return None;
        }
        let mono = Instant::now();
        let boot = boot_nanos()?;
        let start = u128::from(self.start) * 1_000_000_000 / u128::from(ticks_per_second());
        let age = u64::try_from(boot.saturating_sub(start)).ok()?;
        mono.checked_sub(Duration::from_nanos(age))
    }

    /// Whether this very process still runs (not a zombie, and not a later
    /// process with the same pid).
    pub fn is_alive(self) -> bool {
        stat(self.pid.as_raw()).is_some_and(|s| s.start == self.start && !s.zombie)
    }
}

/// What lameduck reads of a `/proc/PID/stat` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    ppid: i32,
    pgid: i32,
    start: u64,
    zombie: bool,
}

/// The fields of a `/proc/PID/stat` line: after the command in parentheses
/// come the state (field 3), the ppid, the process group, …, the start
/// time (field 22).
fn parse_stat(line: &str) -> Option<Stat> {
    let (_, rest) = line.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = *fields.first()?;
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        zombie: state == "Z" || state == "X",
    })
}

fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Now, in the unit of a process's start time (`/proc/PID/stat`'s 22nd
/// field): clock ticks (`_SC_CLK_TCK`) since boot, suspend included
/// (`CLOCK_BOOTTIME`), rounded down as the kernel rounds a start time. 0
/// where the clock cannot be read (a start time is never before it: no
/// process counts as started before now).
pub fn now() -> u64 {
    boot_nanos().map_or(0, |ns| {
        u64::try_from(ns * u128::from(ticks_per_second()) / 1_000_000_000).unwrap_or(u64::MAX)
    })
}

/// Clock ticks per second (`_SC_CLK_TCK`, `USER_HZ`): the unit of a start
/// time; 100 if it cannot be read. Read once.
fn ticks_per_second() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|hz| u64::try_from(hz).ok())
            .filter(|hz| *hz > 0)
            .unwrap_or(100)
    })
}

/// Nanoseconds since boot, suspend included (`CLOCK_BOOTTIME`).
fn boot_nanos() -> Option<u128> {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some(u128::try_from(t.tv_sec()).ok()? * 1_000_000_000 + u128::try_from(t.tv_nsec()).ok()?)
}

/// Every process's stat, by pid; empty without `/proc`.
fn all() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// The live processes of the process group `pgid`, and every descendant of
/// them and of `roots`, found by the parent links in `/proc`: a child that
/// left the group (`setsid`) while its parent lives is found through its
/// parent, one orphaned to lameduck through `roots` (lameduck's children).
/// Zombies are left out. Without `/proc`, `pgid` alone.
pub fn processes(pgid: Pid, roots: &[Pid]) -> Vec<Proc> {
    match Table::read() {
        Some(table) => table.walk(Some(pgid), roots),
        None => vec![Proc {
            pid: pgid,
            start: 0,
        }],
    }
}

/// Every process at one moment, with its parent link.
#[derive(Debug)]
pub struct Table {
    by_pid: HashMap<i32, Stat>,
    children: HashMap<i32, Vec<i32>>,
}

impl Table {
    /// The processes now; `None` without `/proc`.
    pub fn read() -> Option<Self> {
        let table = all();
        if table.is_empty() {
            return None;
        }
        let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
        for (pid, s) in &table {
            children.entry(s.ppid).or_default().push(*pid);
        }
        Some(Self {
            by_pid: table.into_iter().collect(),
            children,
        })
    }

    /// The process `pid`, if it is there and not a zombie.
    pub fn proc_of(&self, pid: Pid) -> Option<Proc> {
        let s = self.by_pid.get(&pid.as_raw())?;
        (!s.zombie).then_some(Proc {
            pid,
            start: s.start,
        })
    }

    /// The live members of the process group `pgid` (if any) and of
    /// `roots`, and every live descendant of them.
    pub fn walk(&self, pgid: Option<Pid>, roots: &[Pid]) -> Vec<Proc> {
        let mut todo: Vec<i32> = self
            .by_pid
            .iter()
            .filter(|(_, s)| pgid.is_some_and(|g| s.pgid == g.as_raw()))
            .map(|(pid, _)| *pid)
            .chain(roots.iter().map(|p| p.as_raw()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        while let Some(pid) = todo.pop() {
            if !seen.insert(pid) {
                continue;
            }
            let Some(s) = self.by_pid.get(&pid) else {
                continue;
            };
            if !s.zombie {
                out.push(Proc {
                    pid: Pid::from_raw(pid),
                    start: s.start,
                });
            }
            todo.extend(self.children.get(&pid).into_iter().flatten());
        }
        out.sort_unstable_by_key(|p| p.pid.as_raw());
        out
    }
}

/// The start time of `pid` (clock ticks after boot), zombie or not; `None`
/// once it is gone, and without `/proc`.
pub fn start_of(pid: Pid) -> Option<u64> {
    stat(pid.as_raw()).map(|s| s.start)
}

/// The process group of `pid`, if it runs.
pub fn group_of(pid: Pid) -> Option<i32> {
    stat(pid.as_raw()).map(|s| s.pgid)
}

/// The parent and the process group of `pid` (a process that one of a
/// set started has it as its parent, or is in its group: a `setsid`
/// daemon's children); `None` once it is gone, and without `/proc`.
pub fn parentage(pid: Pid) -> Option<(i32, i32)> {
    stat(pid.as_raw()).map(|s| (s.ppid, s.pgid))
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

/// Whether a `/proc/PID/stat` line is of a live process of group `pgid`.
fn in_group(line: &str, pgid: i32) -> Option<bool> {
    let s = parse_stat(line)?;
    Some(s.pgid == pgid && !s.zombie)
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
        let stat = "4242 (my (odd) prog) S 1 4240 4240 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        assert_eq!(in_group(stat, 4240), Some(true));
        assert_eq!(in_group(stat, 1), Some(false));
        assert_eq!(parse_stat(stat).map(|s| (s.ppid, s.start)), Some((1, 777)));
        let zombie = "4242 (prog) Z 1 4240 4240 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 777 0";
        assert_eq!(in_group(zombie, 4240), Some(false));
        assert_eq!(in_group("garbage", 1), None);
    }

    #[test]
    fn a_process_is_labelled_with_its_command_line() {
        let me = Pid::this();
        let l = label(me);
        assert!(l.starts_with(&format!("pid {me}: ")), "{l}");
        assert!(l.len() <= MAX_LABEL + 20, "{l}");
        let mine = processes(nix::unistd::getpgrp(), &[]);
        assert!(mine.iter().any(|p| p.pid == me && p.is_alive()), "{mine:?}");
    }

    #[test]
    fn now_is_in_the_unit_of_a_process_s_start_time() {
        let before = now();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let start = stat(child.id() as i32).map(|s| s.start);
        let after = now();
        let _ = child.kill();
        let _ = child.wait();
        let start = start.expect("the child's stat");
        assert!(
            before <= start && start <= after,
            "{before} <= {start} <= {after}"
        );
    }

    #[test]
    fn a_process_started_before_it_is_tracked_is_as_old_as_it_is() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let spawned = Instant::now();
        let pid = Pid::from_raw(child.id() as i32);
        let start = stat(pid.as_raw()).map(|s| s.start);
        // Its start time, in ticks after boot, as an instant: never after
        // it was running; as a tracked process, that old.
        let p = Proc {
            pid,
            start: start.expect("the child's stat"),
        };
        let started = p.started().expect("a start time");
        let tracker = Tracker::new("test");
        let tree = Tree::new(tracker.clone(), Pid::this());
        tree.update(&[p]);
        let age = tracker.snapshot()[0].age;
        let upper = started.elapsed();
        let _ = child.kill();
        let _ = child.wait();
        assert!(started <= spawned, "{started:?} > {spawned:?}");
        assert!(age >= spawned - started, "{age:?}");
        assert!(age <= upper, "{age:?} > {upper:?}");
        let unknown = Proc { pid, start: 0 };
        assert_eq!(unknown.started(), None, "no /proc: no start time");
    }

    #[test]
    fn processes_that_end_end_their_tracking() {
        let tracker = Tracker::new("test");
        let tree = Tree::new(tracker.clone(), Pid::this());
        let a = Proc {
            pid: Pid::from_raw(1),
            start: 0,
        };
        let b = Proc {
            pid: Pid::this(),
            start: 1,
        };
        tree.update(&[a, b]);
        assert_eq!(tracker.len(), 2);
        tree.update(&[b]);
        assert_eq!(tracker.len(), 1);
        tree.clear();
        assert_eq!(tracker.len(), 0);
    }
}
