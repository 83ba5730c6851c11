//! In a restart drill, what follows each signal: the new process that takes
//! over the listening socket.
//!
//! A restart is seen when, at the end of the signal's window (the next
//! signal, or the end of the drill), a process holds the listening socket
//! that did not hold it when the signal went — or, with `--pid-file`, the
//! file names a live process other than the one signalled. Both a server
//! that replaces itself (the old process hands its socket to a new one and
//! drains) and a supervisor that keeps its PID and replaces its workers are
//! seen this way. Which of the two it is decides where the next signal goes:
//! a process whose children held the socket when it got its signal is a
//! supervisor, and keeps getting the signals; otherwise the next one goes
//! to the new process, not to the old one that still drains.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::events::RestartSeen;
use crate::process::is_alive;
use crate::procfs;
use crate::record::Clock;

/// How often a window looks for the new process.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Where the drill looks for the processes that hold the listening socket.
#[derive(Debug, Clone)]
pub(super) struct Scanner {
    pub(super) addr: SocketAddr,
    /// The process group to look in, with its members' descendants (a
    /// supervisor may start each instance in a group of its own): the
    /// spawned server's, or the first signalled process's (a successor
    /// stays in its parent's group).
    pub(super) group: Option<i32>,
    pub(super) pid_file: Option<PathBuf>,
}

impl Scanner {
    /// The processes that hold the listening socket now.
    async fn holders(&self) -> HashSet<u32> {
        let (addr, group) = (self.addr, self.group);
        tokio::task::spawn_blocking(move || procfs::listening_socket_holders(addr, group))
            .await
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    /// Whether no new process can come any more after a signal to `pid`: it
    /// is gone, nothing is left of the group to start another, and no PID
    /// file could name one started elsewhere.
    async fn nothing_left_after(&self, pid: u32) -> bool {
        let (Some(group), None) = (self.group, &self.pid_file) else {
            return false;
        };
        tokio::task::spawn_blocking(move || {
            !is_alive(pid) && procfs::group_members(group).is_empty()
        })
        .await
        .unwrap_or(false)
    }

    /// The live process the PID file names, if any.
    fn pid_file_pid(&self) -> Option<u32> {
        super::signals::read_pid_file(self.pid_file.as_ref()?)
            .ok()
            .filter(|&pid| is_alive(pid))
    }
}

/// One delivered signal, from just before it went until the next one.
#[derive(Debug)]
pub(super) struct Window {
    signal: usize,
    pid: u32,
    /// What held the socket (or was named by the PID file) before the signal.
    before: HashSet<u32>,
    /// Whether the signalled process had children holding the socket.
    supervisor: bool,
    /// New processes, with when each was first seen.
    first_seen: HashMap<u32, u64>,
}

/// What served just before a signal: the processes that hold the listening
/// socket, and the one the PID file names.
#[derive(Debug)]
pub(super) struct Snapshot(HashSet<u32>);

impl Snapshot {
    /// Takes it. Reading `/proc` takes a while on a busy machine, so the
    /// signaller takes it shortly before the signal is due.
    pub(super) async fn take(scanner: &Scanner) -> Snapshot {
        let mut before = scanner.holders().await;
        before.extend(scanner.pid_file_pid());
        Snapshot(before)
    }
}

impl Window {
    /// Opens the window of signal number `signal`, about to go to `pid`:
    /// later processes are new against `before`.
    pub(super) fn open(signal: usize, pid: u32, before: Snapshot) -> Window {
        let Snapshot(mut before) = before;
        before.insert(pid);
        let supervisor = before
            .iter()
            .any(|&other| other != pid && procfs::descends_from(other, pid));
        Window {
            signal,
            pid,
            before,
            supervisor,
            first_seen: HashMap::new(),
        }
    }

    /// The new processes serving now, noting when each was first seen.
    async fn look(&mut self, scanner: &Scanner, clock: Clock) -> HashSet<u32> {
        let mut now = scanner.holders().await;
        now.extend(scanner.pid_file_pid());
        now.retain(|pid| !self.before.contains(pid));
        let at = clock.now_us();
        for &pid in &now {
            self.first_seen.entry(pid).or_insert(at);
        }
        now
    }

    /// Looks until `deadline` (just before the next signal).
    pub(super) async fn watch_until(&mut self, deadline: Instant, scanner: &Scanner, clock: Clock) {
        while Instant::now() < deadline {
            self.look(scanner, clock).await;
            let next = (Instant::now() + LOOK_EVERY).min(deadline);
            tokio::time::sleep_until(next.into()).await;
        }
    }

    /// After the last signal: looks until the load has ended and a new
    /// process serves, until nothing is left that could bring one in (the
    /// signalled process and its whole group are gone), or until `give_up`.
    pub(super) async fn watch_last(
        &mut self,
        load_end: Instant,
        give_up: Instant,
        scanner: &Scanner,
        clock: Clock,
    ) {
        loop {
            let serving = !self.look(scanner, clock).await.is_empty();
            if !serving && scanner.nothing_left_after(self.pid).await {
                return;
            }
            let now = Instant::now();
            if (serving && now >= load_end) || now >= give_up {
                return;
            }
            tokio::time::sleep_until((now + LOOK_EVERY).min(give_up).into()).await;
        }
    }

    /// What the window saw, judged now; and where the next signal goes
    /// (`None`: wherever the usual rules say).
    pub(super) async fn close(
        mut self,
        scanner: &Scanner,
        clock: Clock,
    ) -> (RestartSeen, Option<u32>) {
        let serving: Vec<u32> = self.look(scanner, clock).await.into_iter().collect();
        let until_us = clock.now_us();
        let new_pid = procfs::pick_server(&serving).or_else(|| serving.first().copied());
        let nothing_left = new_pid.is_none() && scanner.nothing_left_after(self.pid).await;
        let gone_pid = self
            .first_seen
            .keys()
            .copied()
            .filter(|pid| !serving.contains(pid))
            .min_by_key(|pid| self.first_seen[pid]);
        let seen = RestartSeen {
            signal: self.signal,
            pid: Some(self.pid),
            new_pid,
            seen_us: new_pid.map(|pid| self.first_seen[&pid]),
            gone_pid,
            until_us,
            nothing_left,
            supervisor: self.supervisor,
        };
        let next = if self.supervisor && is_alive(self.pid) {
            Some(self.pid)
        } else {
            new_pid
        };
        (seen, next)
    }
}
