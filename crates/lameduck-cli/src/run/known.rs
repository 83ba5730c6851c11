//! The program's processes that lameduck knows of: each instance's process
//! group, every descendant of it (also one that left the group with
//! `setsid` while its parent lives), and the descendants orphaned to
//! lameduck. Each is known by its pid and its start time, so a pid reused
//! since is never signalled, and by the instance it belongs to, so that
//! stopping one instance (a restart's old one, a crashed one) stops all of
//! it and nothing of another. lameduck stops them, kills them at the
//! deadline, and does not exit while one of them is alive; the guard
//! hears of each, to kill it if lameduck dies first.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::guard::Guard;
use super::instance::{self, Instance};
use super::reaper::Reaper;
use super::tree::{self, Proc, Table};

/// How often the processes are looked at while waiting for them to end.
const POLL: Duration = Duration::from_millis(20);
/// How long lameduck waits, as it exits, for what it killed to be gone:
/// `SIGKILL` cannot be ignored, so only a process stuck in the kernel
/// takes longer.
const LAST_WAIT: Duration = Duration::from_secs(2);

/// What an instance was told as it was stopped: the stop signal goes to
/// the processes that run at the stop — its group, and each outside the
/// group once — and not to one started after it, the shutdown's own work
/// (the helper a program starts with `setsid` to flush something as it
/// stops), which only the `SIGKILL` at the timeout reaches: systemd's rule
/// (`KillMode=control-group`, `systemd.kill(5)`).
#[derive(Clone, Debug, Default)]
pub struct Told {
    /// Those outside the group sent a signal to stop.
    procs: HashSet<Proc>,
    /// The stop, once it began: every process of the instance listed then
    /// (its group included), and its time in clock ticks after boot.
    stop: Option<(HashSet<Proc>, u64)>,
}

impl Told {
    /// Remembers `procs` as told (killed, say): nothing more is sent to
    /// them but `SIGKILL`.
    pub fn extend(&mut self, procs: impl IntoIterator<Item = Proc>) {
        self.procs.extend(procs);
    }

    /// Whether `p`, found now, ran at the stop without hearing of it: not
    /// listed then, but started before it (a tick earlier, the clock's
    /// grain). Before the stop, any process.
    fn ran_at_the_stop(&self, p: &Proc) -> bool {
        match &self.stop {
            None => true,
            Some((listed, at)) => !listed.contains(p) && p.start < *at,
        }
    }
}

/// The processes known: cheap to share behind the supervisor.
#[derive(Debug)]
pub struct Known {
    state: Mutex<State>,
    guard: Guard,
}

#[derive(Debug, Default)]
struct State {
    /// Each process known, with the instance (its process group) it
    /// belongs to.
    procs: HashMap<Proc, Pid>,
    /// The instances running: their process group, and when its leader
    /// started.
    instances: Vec<(Pid, u64)>,
}

impl Known {
    /// Knows of nothing yet.
    pub fn new(guard: Guard) -> Self {
        Self {
            state: Mutex::new(State::default()),
            guard,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the state whole: a panic cannot tear it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An instance started: its group is `pgid`, its program started at
    /// `not_before` (clock ticks after boot) or later.
    ///
    /// Its start time is read even if it has exited already (a zombie):
    /// the orphans it left are its own, not an older instance's. Once it
    /// is reaped, `not_before` stands in for it.
    pub fn add_instance(&self, pgid: Pid, not_before: u64) {
        let start = tree::start_of(pgid).unwrap_or(not_before);
        self.lock().instances.push((pgid, start));
    }

    /// An instance is gone.
    pub fn remove_instance(&self, pgid: Pid) {
        self.lock().instances.retain(|(g, _)| *g != pgid);
    }

    /// The processes of the instance whose group is `pgid` alive now,
    /// remembered from now on (those gone since are forgotten).
    ///
    /// Every instance's tree is looked at, so that each process is known
    /// as its instance's while its parent lives: orphaned to lameduck, it
    /// stays that instance's. An orphan never seen before belongs to the
    /// newest instance that started before it.
    pub fn look(&self, pgid: Pid) -> Vec<Proc> {
        let Some(table) = Table::read() else {
            return tree::processes(pgid, &[]);
        };
        let orphans = instance::strays(self.guard.pid());
        let mut state = self.lock();
        state.procs.retain(|p, _| {
            let alive = table.proc_of(p.pid) == Some(*p);
            if !alive {
                self.guard.forget_process(*p);
            }
            alive
        });
        let mut instances = state.instances.clone();
        if !instances.iter().any(|(g, _)| *g == pgid) {
            instances.push((pgid, table.proc_of(pgid).map_or(0, |p| p.start)));
        }
        // Below each instance's group: that instance's, for sure.
        let mut sure: HashMap<Proc, Pid> = HashMap::new();
        for (g, _) in &instances {
            for p in table.walk(Some(*g), &[]) {
                sure.insert(p, *g);
            }
        }
        let mut owners: HashMap<Proc, Pid> = HashMap::new();
        for orphan in orphans {
            if instances.iter().any(|(g, _)| *g == orphan) {
                continue;
            }
            let Some(p) = table.proc_of(orphan) else {
                continue;
            };
            let owner = sure
                .get(&p)
                .or_else(|| state.procs.get(&p))
                .copied()
                .unwrap_or_else(|| {
                    instances
                        .iter()
                        .filter(|(_, start)| *start <= p.start)
                        .max_by_key(|(_, start)| *start)
                        .map_or(pgid, |(g, _)| *g)
                });
            for d in table.walk(None, &[orphan]) {
                owners.entry(d).or_insert(owner);
            }
        }
        let mut found = Vec::new();
        for (p, g) in sure
            .iter()
            .chain(owners.iter().filter(|(p, _)| !sure.contains_key(p)))
        {
            // Seen below an instance's group, a process is that instance's,
            // whatever was guessed of it as an orphan; an orphan keeps the
            // instance it was known as.
            let owner = match state.procs.get(p) {
                Some(known) if !sure.contains_key(p) => *known,
                Some(_) => {
                    state.procs.insert(*p, *g);
                    *g
                }
                None => {
                    self.guard.watch_process(*p);
                    state.procs.insert(*p, *g);
                    *g
                }
            };
            if owner == pgid {
                found.push(*p);
            }
        }
        found.sort_unstable_by_key(|p| p.pid.as_raw());
        found
    }

    /// Whether every process known has ended.
    pub fn all_ended(&self) -> bool {
        !self.lock().procs.keys().any(|p| p.is_alive())
    }

    /// Whether every process known of the instance `pgid` has ended.
    fn ended_of(&self, pgid: Pid) -> bool {
        !self
            .lock()
            .procs
            .iter()
            .any(|(p, g)| *g == pgid && p.is_alive())
    }

    /// `SIGKILL` to every process known still alive; returns them.
    pub fn kill_all(&self) -> Vec<Proc> {
        let alive: Vec<Proc> = self
            .lock()
            .procs
            .keys()
            .copied()
            .filter(|p| p.is_alive())
            .collect();
        signal(&alive, Signal::SIGKILL);
        alive
    }

    /// `SIGKILL` to the instance whose group is `pgid`: its group, and
    /// every process of it known or found now; returns those outside the
    /// group killed (the group is killed by its signal).
    pub fn kill_instance(&self, pgid: Pid) -> Vec<Proc> {
        instance::signal_group(pgid, Signal::SIGKILL);
        let mut procs = self.look(pgid);
        procs.extend(
            self.lock()
                .procs
                .iter()
                .filter(|(p, g)| **g == pgid && !procs.contains(p))
                .map(|(p, _)| *p)
                .collect::<Vec<_>>(),
        );
        let alive: Vec<Proc> = procs.into_iter().filter(|p| p.is_alive()).collect();
        signal(&alive, Signal::SIGKILL);
        alive
    }

    /// The stop of `inst`: lists its processes, then sends `sig` to its
    /// group and to each of them outside the group; from now on `told`
    /// knows the stop (see [`Told`]). A later call (a second signal) sends
    /// `sig` to what heard the stop ([`forward`](Self::forward)). Returns
    /// the processes listed.
    pub fn begin_stop(&self, told: &mut Told, inst: &Instance, sig: Signal) -> Vec<Proc> {
        let pgid = inst.pid();
        // Listed before the group's signal: a child that left the group is
        // found through its parent while it lives, and what the signal
        // makes the program start is not listed as running at the stop.
        let found = self.look(pgid);
        let first = told.stop.is_none();
        if first {
            told.stop = Some((found.iter().copied().collect(), tree::now()));
            inst.signal(sig);
        } else {
            self.forward(told, pgid, sig);
        }
        self.tell_at(told, &found, pgid, sig, first);
        found
    }

    /// A second signal while `pgid` stops: to its group, and to each
    /// process outside the group that heard the stop signal and still
    /// runs — not to what started after the stop.
    pub fn forward(&self, told: &Told, pgid: Pid, sig: Signal) {
        instance::signal_group(pgid, sig);
        signal(&told.procs.iter().copied().collect::<Vec<_>>(), sig);
    }

    /// Sends `sig` to those of `found` (processes of the instance `pgid`)
    /// outside its group not `told` yet, and remembers them as told: a
    /// signal to the group does not reach them.
    ///
    /// A stop signal goes to each such process once, and not to one that a
    /// process told already started, or that is in the group of one (a
    /// `setsid` daemon's children): those are its own shutdown's work, as
    /// is what starts after the stop began ([`Told`]). `SIGKILL` goes to
    /// every one, as it is found.
    pub fn tell(&self, told: &mut Told, found: &[Proc], pgid: Pid, sig: Signal) {
        self.tell_at(told, found, pgid, sig, false);
    }

    /// As [`tell`](Self::tell); `at_the_stop`: `found` is the listing of
    /// the stop itself, all of which ran then.
    fn tell_at(&self, told: &mut Told, found: &[Proc], pgid: Pid, sig: Signal, at_the_stop: bool) {
        let kill = sig == Signal::SIGKILL;
        let told_pids: HashSet<i32> = if kill {
            HashSet::new()
        } else {
            told.procs.iter().map(|p| p.pid.as_raw()).collect()
        };
        // Told ones first: their `/proc` entries are not read again; the
        // others' once, for their group and their parent.
        let new: Vec<Proc> = found
            .iter()
            .copied()
            .filter(|p| {
                !told.procs.contains(p)
                    && (kill || at_the_stop || told.ran_at_the_stop(p))
                    && tree::parentage(p.pid).is_some_and(|(parent, group)| {
                        // Outside the group (the group's signal does not
                        // reach it), and not started by a process told.
                        group != pgid.as_raw()
                            && !told_pids.contains(&parent)
                            && !told_pids.contains(&group)
                    })
            })
            .collect();
        told.procs.extend(&new);
        if !new.is_empty() {
            tracing::info!(target: "lameduck::run", pid = pgid.as_raw(), strays = ?new.iter().map(|p| p.pid.as_raw()).collect::<Vec<_>>(), signal = sig.as_str(), "signalling descendants that left the program's group");
            signal(&new, sig);
        }
    }

    /// Stops a whole instance while lameduck goes on (a restart's old
    /// instance or its failed new one, what a crashed instance left
    /// behind, one that failed its liveness check, an instance that exited
    /// during the shutdown): `sig` to its group and to each of its
    /// processes outside the group not `told` already, `SIGKILL` to all of
    /// them after `grace`; waits until the program has exited and every
    /// process of the instance is gone. Returns whether `SIGKILL` was
    /// needed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: what is left is killed as lameduck exits.
    pub async fn stop(
        &self,
        inst: &mut Instance,
        sig: Signal,
        grace: Duration,
        reaper: &Reaper,
        told: &Told,
    ) -> bool {
        let pgid = inst.pid();
        let mut told = told.clone();
        self.begin_stop(&mut told, inst, sig);
        if tokio::time::timeout(grace, self.gone(inst, reaper, &mut told, sig))
            .await
            .is_ok()
        {
            return false;
        }
        let pids: Vec<i32> = self.look(pgid).iter().map(|p| p.pid.as_raw()).collect();
        tracing::warn!(target: "lameduck::run", pid = pgid.as_raw(), pids = ?pids, grace_ms = grace.as_millis() as u64, "the program's processes outlived their grace after {}: SIGKILL", sig.as_str());
        told.extend(self.kill_instance(pgid));
        self.gone(inst, reaper, &mut told, Signal::SIGKILL).await;
        true
    }

    /// Waits until the program of `inst` has exited and every process of
    /// the instance is gone; one found meanwhile outside the group hears
    /// `sig` (once).
    async fn gone(&self, inst: &mut Instance, reaper: &Reaper, told: &mut Told, sig: Signal) {
        let pgid = inst.pid();
        loop {
            let found = self.look(pgid);
            self.tell(told, &found, pgid, sig);
            if inst.ended().is_some()
                && !inst.group_alive()
                && found.is_empty()
                && self.ended_of(pgid)
            {
                return;
            }
            tokio::select! {
                _ = inst.exited(), if inst.ended().is_none() => {}
                () = reaper.reaped() => {}
                () = tokio::time::sleep(POLL) => {}
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i32, start: u64) -> Proc {
        Proc {
            pid: Pid::from_raw(pid),
            start,
        }
    }

    /// A new instance that exits at once (its orphans left outside its
    /// group) may be a zombie by the time it is registered: it was given
    /// start time 0, so its orphans counted as the older instance's, and
    /// stopping it stopped none of them.
    #[test]
    fn an_instance_that_exited_before_it_was_registered_keeps_its_start_time() {
        use std::os::unix::process::CommandExt;
        let known = Known::new(Guard::none());
        let mut child = std::process::Command::new("true")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        let zombie = |stat: &str| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        };
        while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| zombie(&s)) {
            assert!(std::time::Instant::now() < give_up, "`true` never exited");
            std::thread::sleep(Duration::from_millis(1));
        }
        let start = tree::start_of(pid).expect("a zombie's start time");
        known.add_instance(pid, 0);
        let registered = known.lock().instances.clone();
        let _ = child.wait();
        assert_eq!(registered, [(pid, start)]);
        assert!(start > 0);
    }

    #[test]
    fn what_starts_at_the_stop_or_after_it_is_not_told_and_what_ran_unseen_is() {
        let mut told = Told::default();
        assert!(told.ran_at_the_stop(&proc(7, 500)), "before the stop: all");
        let listed = proc(5, 90);
        told.stop = Some(([listed].into_iter().collect(), 100));
        // Listed at the stop: it heard then (the group's signal, or its own).
        assert!(!told.ran_at_the_stop(&listed));
        // Started a tick before the stop, and not listed: it ran unseen.
        assert!(told.ran_at_the_stop(&proc(6, 99)));
        // Started in the stop's tick, or after: the shutdown's own work.
        assert!(!told.ran_at_the_stop(&proc(8, 100)));
        assert!(!told.ran_at_the_stop(&proc(9, 101)));
    }
}
