//! The PID file, the control socket and the socket files of the Unix
//! listeners (see [`files`](crate::listen::files)) removed on every way out the
//! process can take, if they still name it: the normal end (Stopped), a
//! forced exit (a second signal), the exit watchdog, a panic that unwinds
//! through the app, and a fatal signal whose default action ends the
//! process (`SIGQUIT`, `SIGABRT`, `SIGUSR1`, …). Left behind, they name a
//! dead pid, and the next `kill -HUP $(cat pidfile)` hits a dead or
//! recycled process. Only `SIGKILL` (and a crash in a signal Rust itself
//! handles, `SIGSEGV`/`SIGBUS`) leaves them.
//!
//! A fatal signal is handled by a handler installed over the default
//! action only (never over someone else's), which removes the files with
//! async-signal-safe calls alone (`open`, `read`, `lstat`, `unlink`), then
//! restores the default action and raises the signal again, so that the
//! process ends as it would have (a core dump included). If a handler
//! installed later chains to this one (signal-hook, and so tokio's signal
//! streams, call the previous handler), the process is meant to survive:
//! this one then does nothing.
//!
//! One of the two modules of the crate with `unsafe` code (the other is
//! the fd handoff): installing a signal handler, and the handler itself.
//! Every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, Once};

use nix::libc;

/// The signals whose default action ends the process, and that nothing in
/// a Rust program handles by default (`SIGPIPE` is ignored, `SIGSEGV` and
/// `SIGBUS` are the runtime's, `SIGTERM` and `SIGINT` the app's).
const FATAL: [libc::c_int; 13] = [
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGABRT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGSYS,
];

/// One file this process owns.
#[derive(Clone, Debug)]
enum Owned {
    /// A PID file naming this process.
    PidFile { path: CString, pid: u32 },
    /// A socket file: this inode.
    Socket { path: CString, dev: u64, ino: u64 },
}

impl Owned {
    fn path(&self) -> &CString {
        match self {
            Owned::PidFile { path, .. } | Owned::Socket { path, .. } => path,
        }
    }
}

/// What the handler reads: a snapshot, replaced whole and never freed (a
/// handler may be reading the previous one; they are few and small).
struct Snapshot(Vec<Owned>);

static SNAPSHOT: AtomicPtr<Snapshot> = AtomicPtr::new(std::ptr::null_mut());
static OWNED: Mutex<Vec<Owned>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

fn c_path(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

fn update(f: impl FnOnce(&mut Vec<Owned>)) {
    // Every update is a push or a retain: a panic cannot tear it.
    let mut owned = OWNED.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut owned);
    let snapshot = Box::into_raw(Box::new(Snapshot(owned.clone())));
    // Release pairs with the handler's Acquire: it sees a whole snapshot.
    // The previous one is leaked on purpose: a handler may be reading it.
    SNAPSHOT.store(snapshot, Ordering::Release);
}

/// Records that this process wrote the PID file at `path`.
pub(crate) fn own_pid_file(path: &Path) {
    let Some(c) = c_path(path) else { return };
    update(|o| {
        o.retain(|e| e.path() != &c);
        o.push(Owned::PidFile {
            path: c,
            pid: std::process::id(),
        });
    });
    install();
}

/// Records that the socket file at `path` is this process's (as it is
/// now: its inode).
pub(crate) fn own_socket(path: &Path) {
    let (Some(c), Ok(meta)) = (c_path(path), std::fs::symlink_metadata(path)) else {
        return;
    };
    update(|o| {
        o.retain(|e| e.path() != &c);
        o.push(Owned::Socket {
            path: c,
            dev: meta.dev(),
            ino: meta.ino(),
        });
    });
    install();
}

/// Records that the socket file at `path` is this process's if it is still
/// the inode `dev`/`ino` (a listener's, recorded when it was bound).
pub(crate) fn own_socket_file(path: &Path, dev: u64, ino: u64) {
    let Some(c) = c_path(path) else { return };
    update(|o| {
        o.retain(|e| e.path() != &c);
        o.push(Owned::Socket { path: c, dev, ino });
    });
    install();
}

/// Forgets the file at `path`: another process owns it now.
pub(crate) fn disown(path: &Path) {
    let Some(c) = c_path(path) else { return };
    update(|o| o.retain(|e| e.path() != &c));
}

/// Removes every file this process still owns (those that still name it),
/// and forgets them. Safe to call from any thread, more than once.
pub(crate) fn remove_owned() {
    update(|o| {
        for e in o.drain(..) {
            remove_if_ours(&e);
        }
    });
}

/// Removes `e` if it still names this process. Async-signal-safe: no
/// allocation, no lock, only system calls.
fn remove_if_ours(e: &Owned) {
    match e {
        Owned::PidFile { path, pid } => {
            if pid_file_names(path, *pid) {
                let _ = nix::unistd::unlink(path.as_c_str());
            }
        }
        Owned::Socket { path, dev, ino } => {
            if let Ok(st) = nix::sys::stat::lstat(path.as_c_str()) {
                // dev_t and ino_t are not u64 on every platform.
                #[allow(clippy::unnecessary_cast)]
                let (d, i) = (st.st_dev as u64, st.st_ino as u64);
                if d == *dev && i == *ino {
                    let _ = nix::unistd::unlink(path.as_c_str());
                }
            }
        }
    }
}

/// Whether the file at `path` holds `pid` (and a newline). Reads at most 32
/// bytes into a stack buffer, never through a symlink.
fn pid_file_names(path: &CString, pid: u32) -> bool {
    use nix::fcntl::{OFlag, open};
    let Ok(fd) = open(
        path.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
    ) else {
        return false;
    };
    let mut buf = [0u8; 32];
    let n = nix::unistd::read(&fd, &mut buf).unwrap_or(0);
    drop(fd);
    let mut digits = [0u8; 10];
    let mut len = 0;
    let mut n_pid = pid;
    loop {
        digits[len] = b'0' + (n_pid % 10) as u8;
        len += 1;
        n_pid /= 10;
        if n_pid == 0 {
            break;
        }
    }
    let text = &buf[..n];
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.len() == len && text.iter().eq(digits[..len].iter().rev())
}

/// Installs the fatal-signal handler, once, for each signal still at its
/// default action.
fn install() {
    INSTALL.call_once(|| {
        for sig in FATAL {
            // SAFETY: a zeroed `sigaction` is a valid value to be filled
            // in; with a null `act`, sigaction only reads the current
            // disposition into it.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: as above: `current` is a valid, writable sigaction.
            if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0 {
                continue;
            }
            if current.sa_sigaction != libc::SIG_DFL {
                // Someone else's, or ignored: theirs to decide.
                continue;
            }
            // SAFETY: zeroed is a valid empty sigaction (empty mask, no
            // flags) to fill in.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = on_fatal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            // SA_RESTART: a system call interrupted by a signal that some
            // later handler chains here and survives goes on.
            act.sa_flags = libc::SA_RESTART;
            // SAFETY: `on_fatal` only makes async-signal-safe calls (see
            // it), and `act` is a fully initialised sigaction.
            unsafe {
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
    });
}

/// The handler: removes what this process owns, then ends the process the
/// way the signal would have.
extern "C" fn on_fatal(sig: libc::c_int) {
    // A handler installed after this one may call it (chaining): then that
    // handler handles the signal and the process lives on. Act only if
    // this handler is the one installed.
    // SAFETY: sigaction is async-signal-safe; `current` is a valid,
    // writable sigaction, and a null `act` only reads.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::sigaction(sig, std::ptr::null(), &mut current) } != 0
        || current.sa_sigaction != on_fatal as extern "C" fn(libc::c_int) as libc::sighandler_t
    {
        return;
    }
    let snapshot = SNAPSHOT.load(Ordering::Acquire);
    if !snapshot.is_null() {
        // SAFETY: snapshots are leaked, never freed, so the pointer stays
        // valid; nothing writes to one after it is published.
        for e in unsafe { &(*snapshot).0 } {
            remove_if_ours(e);
        }
    }
    // SAFETY: zeroed with SIG_DFL (0) is the default action; sigaction and
    // raise are async-signal-safe. The signal is blocked while this
    // handler runs: raised again, it is delivered — with the default
    // action — as this handler returns.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_is_matched_digit_for_digit() {
        let dir = crate::upgrade::scratch("leftovers");
        let path = dir.join("pid");
        let c = c_path(&path).unwrap();
        std::fs::write(&path, "1234\n").unwrap();
        assert!(pid_file_names(&c, 1234));
        assert!(!pid_file_names(&c, 123));
        assert!(!pid_file_names(&c, 12345));
        std::fs::write(&path, "0\n").unwrap();
        assert!(pid_file_names(&c, 0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
