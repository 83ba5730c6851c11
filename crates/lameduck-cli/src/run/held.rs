//! The listening sockets lameduck holds for the program, and when it lets
//! them go.
//!
//! While lameduck holds its copy, a socket listens whatever the program
//! does: the kernel completes handshakes and queues the connections, so
//! they wait through a restart or a crash instead of being refused. At a
//! final shutdown that copy is a trap: once the program has closed its own
//! listener, the kernel still queues connections nobody will accept, and
//! they are reset when lameduck exits. So lameduck gives its copies up as
//! it sends the stop signal (or the program ends during the shutdown): the
//! socket then stops listening when the program closes its copy, exactly as
//! without lameduck, and a client is refused — a clean, retryable error —
//! instead of queued and reset.
//!
//! When lameduck's copy was the last one (the program had closed its own,
//! or was gone), closing it resets the connections in its accept queue:
//! those are counted (the queue's length just before the close, from
//! `run/sock_diag.rs`) and said, and the `program` component fails with
//! them, so the report does not say clean.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};

/// Connections lost with a socket: queued, never accepted, reset as its
/// last copy closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lost {
    /// The socket's name.
    pub name: String,
    /// How many connections were in its accept queue (at least).
    pub queued: u32,
}

/// The sockets, until given up.
#[derive(Debug)]
pub struct Held {
    sockets: Mutex<Option<Vec<(String, OwnedFd)>>>,
    /// The names of those systemd gave lameduck: systemd keeps a copy,
    /// and its queue for the next activation.
    given: Vec<String>,
    lost: Mutex<Vec<Lost>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single assignment or push: a panic cannot tear it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Held {
    /// Holds `sockets`, in `LISTEN_FDS` order; `given` names those that
    /// systemd gave lameduck.
    pub fn new(sockets: Vec<(String, OwnedFd)>, given: Vec<String>) -> Self {
        Self {
            sockets: Mutex::new(Some(sockets)),
            given,
            lost: Mutex::new(Vec::new()),
        }
    }

    /// Calls `f` with the sockets; `None` once they were given up.
    pub fn with<R>(&self, f: impl FnOnce(&[(String, OwnedFd)]) -> R) -> Option<R> {
        lock(&self.sockets).as_deref().map(f)
    }

    /// Closes lameduck's copies (once; later calls do nothing). A socket
    /// whose last copy this was is gone: the connections in its queue were
    /// reset, and are counted and logged. `program_gone`: the program
    /// ended for good (no instance will accept again), so whatever is
    /// queued is lost even if a copy is still open somewhere — but in a
    /// socket systemd gave, whose copy systemd keeps for the next
    /// activation.
    pub fn give_up(&self, program_gone: bool) {
        let Some(sockets) = lock(&self.sockets).take() else {
            return;
        };
        if sockets.is_empty() {
            return;
        }
        let names: Vec<&str> = sockets.iter().map(|(n, _)| n.as_str()).collect();
        tracing::info!(target: "lameduck::run", sockets = ?names, "giving up lameduck's copy of {}: each stops listening once the program closes its own", names.join(", "));
        for (name, fd) in sockets {
            let gone = program_gone && !self.given.contains(&name);
            if let Some(queued) = close(fd, gone) {
                tracing::warn!(target: "lameduck::run", socket = %name, lost = queued, "{queued} connection{} queued on {name} lost (reset): nobody accepted {}, and lameduck closed the last copy of the socket", plural(queued), if queued == 1 { "it" } else { "them" });
                lock(&self.lost).push(Lost { name, queued });
            }
        }
    }

    /// The connections lost so far, by socket.
    pub fn lost(&self) -> Vec<Lost> {
        lock(&self.lost).clone()
    }

    /// What was lost, in a sentence (`3 connections queued on http were
    /// lost (reset)…`); `None` when nothing was.
    pub fn lost_said(&self) -> Option<String> {
        let lost = self.lost();
        if lost.is_empty() {
            return None;
        }
        let total: u32 = lost.iter().map(|l| l.queued).sum();
        let on: Vec<&str> = lost.iter().map(|l| l.name.as_str()).collect();
        Some(format!(
            "{total} connection{} queued on {} {} lost (reset): the program had stopped accepting, and the socket closed with {} in its queue",
            plural(total),
            on.join(", "),
            if total == 1 { "was" } else { "were" },
            if total == 1 { "it" } else { "them" },
        ))
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Closes `fd`; when it was the last copy of a TCP listening socket with
/// connections in its queue, how many. With `program_gone` every copy left
/// counts as closed: none will accept (the library's upgrade registry keeps
/// a duplicate of each socket until the shutdown begins, dropped then).
#[cfg(target_os = "linux")]
fn close(fd: OwnedFd, program_gone: bool) -> Option<u32> {
    let addr: std::net::SocketAddr = super::traffic::tcp_addr(&fd)?;
    let inode = nix::sys::stat::fstat(&fd).ok()?.st_ino;
    let mut dumper = super::sock_diag::Dumper::open().ok()?;
    let queued = dumper.accept_queue(addr, inode).ok().flatten();
    drop(fd);
    // Still listed: another copy keeps it listening (the program's, while
    // it runs).
    let gone = program_gone || dumper.accept_queue(addr, inode).ok()?.is_none();
    queued.filter(|&n| gone && n > 0)
}

#[cfg(not(target_os = "linux"))]
fn close(fd: OwnedFd, _: bool) -> Option<u32> {
    drop(fd);
    None
}
