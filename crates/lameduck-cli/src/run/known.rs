//! The program's processes that lameduck knows of, from the drain on: its
//! process group, every descendant of it (also one that left the group
//! with `setsid` while its parent lives), and the descendants orphaned to
//! lameduck. Each is known by its pid and its start time, so a pid reused
//! since is never signalled. lameduck stops them, kills them at the
//! deadline, and does not exit while one of them is alive; the guard
//! hears of each, to kill it if lameduck dies first.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::guard::Guard;
use super::instance;
use super::reaper::Reaper;
use super::tree::{self, Proc};

/// How often the processes are looked at while waiting for them to end.
const POLL: Duration = Duration::from_millis(20);
/// How long lameduck waits, as it exits, for what it killed to be gone:
/// `SIGKILL` cannot be ignored, so only a process stuck in the kernel
/// takes longer.
const LAST_WAIT: Duration = Duration::from_secs(2);

/// The processes known: cheap to share behind the supervisor.
#[derive(Debug)]
pub struct Known {
    procs: Mutex<HashSet<Proc>>,
    guard: Guard,
}

impl Known {
    /// Knows of nothing yet.
    pub fn new(guard: Guard) -> Self {
        Self {
            procs: Mutex::new(HashSet::new()),
            guard,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<Proc>> {
        // Every update is a single insert or remove: a panic cannot tear it.
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The processes of the instance whose group is `pgid` alive now,
    /// remembered from now on (those gone since are forgotten).
    pub fn look(&self, pgid: Pid) -> Vec<Proc> {
        let orphans = instance::strays(self.guard.pid());
        let found = tree::processes(pgid, &orphans);
        let mut known = self.lock();
        known.retain(|p| {
            let alive = p.is_alive();
            if !alive {
                self.guard.forget_process(*p);
            }
            alive
        });
        for p in &found {
            if known.insert(*p) {
                self.guard.watch_process(*p);
            }
        }
        found
    }

    /// Whether every process known has ended.
    pub fn all_ended(&self) -> bool {
        !self.lock().iter().any(|p| p.is_alive())
    }

    /// `SIGKILL` to every process known still alive; returns them.
    pub fn kill_all(&self) -> Vec<Proc> {
        let alive: Vec<Proc> = self
            .lock()
            .iter()
            .copied()
            .filter(|p| p.is_alive())
            .collect();
        signal(&alive, Signal::SIGKILL);
        alive
    }

    /// Stops the processes of the instance whose group is `pgid` that
    /// left the group (the group is the instance's to stop): `sig` to
    /// each not `told` already, `SIGKILL` to every one left after `grace`;
    /// waits until every process of the instance is gone.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: what is left is killed as lameduck exits.
    pub async fn stop_outside(
        &self,
        pgid: Pid,
        sig: Signal,
        grace: Duration,
        reaper: &Reaper,
        told: &HashSet<Proc>,
    ) {
        let left = outside(&self.look(pgid), pgid);
        if left.is_empty() {
            return;
        }
        let pids: Vec<i32> = left.iter().map(|p| p.pid.as_raw()).collect();
        let untold: Vec<Proc> = left.into_iter().filter(|p| !told.contains(p)).collect();
        if !untold.is_empty() {
            tracing::info!(target: "lameduck::run", pid = pgid.as_raw(), strays = ?untold.iter().map(|p| p.pid.as_raw()).collect::<Vec<_>>(), signal = sig.as_str(), "signalling descendants that left the program's group");
            signal(&untold, sig);
        }
        let gone = async {
            while !self.look(pgid).is_empty() || !self.all_ended() {
                tokio::select! {
                    () = reaper.reaped() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        };
        if tokio::time::timeout(grace, gone).await.is_err() {
            tracing::warn!(target: "lameduck::run", pid = pgid.as_raw(), strays = ?pids, grace_ms = grace.as_millis() as u64, "descendants that left the program's group outlived their grace: SIGKILL");
            self.kill_all();
            signal(&self.look(pgid), Signal::SIGKILL);
        }
    }

    /// As lameduck exits: `SIGKILL` to every process known still alive
    /// (the hard deadline passed, or the program's component ended without
    /// waiting for them), then waits until they are gone, within
    /// [`LAST_WAIT`].
    pub async fn end(&self, reaper: &Reaper) {
        let killed = self.kill_all();
        if killed.is_empty() {
            return;
        }
        let pids: Vec<i32> = killed.iter().map(|p| p.pid.as_raw()).collect();
        tracing::warn!(target: "lameduck::run", pids = ?pids, "the program's processes still alive as lameduck exits: SIGKILL");
        let waited = tokio::time::timeout(LAST_WAIT, async {
            while killed.iter().any(|p| p.is_alive()) {
                tokio::select! {
                    () = reaper.reaped() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        });
        if waited.await.is_err() {
            tracing::error!(target: "lameduck::run", pids = ?pids, "processes killed with SIGKILL are still there (stuck in the kernel?)");
        }
    }
}

/// Sends `sig` to each of `procs` that is still the process known (a pid
/// reused since is left alone).
pub fn signal(procs: &[Proc], sig: Signal) {
    for p in procs {
        if p.is_alive() {
            let _ = kill(p.pid, sig);
        }
    }
}

/// Those of `procs` outside the process group `pgid`: they do not hear a
/// signal sent to the group.
pub fn outside(procs: &[Proc], pgid: Pid) -> Vec<Proc> {
    procs
        .iter()
        .copied()
        .filter(|p| tree::group_of(p.pid).is_some_and(|g| g != pgid.as_raw()))
        .collect()
}
