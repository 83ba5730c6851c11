//! The socket files of the Unix listeners lameduck created: removed when the
//! process that serves them exits for good, left alone when it hands them
//! over.
//!
//! A file is this lineage's when a process bound it
//! ([`Listeners::unix`](super::Listeners::unix) bound fresh), or inherited
//! it from a lameduck parent that said so ([`FILES_VAR`]); never when
//! systemd passed the socket (the file is the socket unit's). Such a file
//! is removed at exit — through the same mechanism as the PID file, on
//! every way out ([`leftovers`](crate::upgrade::leftovers)) — only while
//! this process serves the sockets: not while a new process it committed
//! to serves them, nor after the handover, and in a new process only once
//! its parent committed to it. A file replaced since (another inode at
//! the path) is never removed.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Mutex;

use super::owner;
use crate::upgrade::leftovers;

/// The lameduck-private variable an upgrade passes to the new process: the
/// names (`:`-separated, as `LISTEN_FDNAMES`) of the Unix listeners whose
/// socket files the old process created or inherited as its own.
pub(crate) const FILES_VAR: &str = "LAMEDUCK_UPGRADE_SOCKET_FILES";

#[derive(Debug)]
struct File {
    name: String,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Inherited from a parent: this process's only once the parent has
    /// committed to it.
    inherited: bool,
}

static FILES: Mutex<Vec<File>> = Mutex::new(Vec::new());

fn lock() -> std::sync::MutexGuard<'static, Vec<File>> {
    // Every update is a single push: a panic cannot tear it.
    FILES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records the socket file of a listener this process just bound at `path`.
pub(crate) fn bound(name: &str, path: &std::path::Path) {
    record(name, path, false);
}

/// Records the socket file of `socket`, inherited as `name` from a lameduck
/// parent, if the parent named it in [`FILES_VAR`].
pub(crate) fn inherited(name: &str, socket: impl AsFd) {
    let named = std::env::var(FILES_VAR).is_ok_and(|v| v.split(':').any(|n| n == name));
    if !named {
        return;
    }
    let Ok(addr) = nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(
        std::os::fd::AsRawFd::as_raw_fd(&socket.as_fd()),
    ) else {
        return;
    };
    if let Some(path) = addr.path() {
        record(name, path, true);
    }
}

fn record(name: &str, path: &std::path::Path, inherited: bool) {
    // Removed at exit from wherever the process stands then.
    let Ok(path) = std::path::absolute(path) else {
        return;
    };
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    lock().push(File {
        name: name.to_string(),
        path,
        dev: meta.dev(),
        ino: meta.ino(),
        inherited,
    });
    sync();
}

/// The names to pass in [`FILES_VAR`].
pub(crate) fn names() -> String {
    let files = lock();
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    names.join(":")
}

/// Makes the files this process's to remove at exit, or not, as it stands
/// now: only while it serves the sockets (and, for inherited ones, once
/// its parent committed to it). Called at each change.
pub(crate) fn sync() {
    let serving = owner::now() == owner::Handoff::Own;
    let committed = owner::is_committed();
    for f in lock().iter() {
        if serving && (!f.inherited || committed) {
            leftovers::own_socket_file(&f.path, f.dev, f.ino);
        } else {
            leftovers::disown(&f.path);
        }
    }
}
