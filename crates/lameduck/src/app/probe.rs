//! Probes of the paths the app will write at its end or its start (the
//! flight record, the PID file, the control socket): done for real, once,
//! when the app is built, so that a path that would fail then fails now.
//!
//! Asking `access(2)` only checks permissions: a filesystem that takes no
//! new files (`/proc`, `/sys`), or no sockets, passes it, and the path
//! then fails after the program started. Creating a file (or binding a
//! socket) under a fresh name, and removing it, fails the same way the real
//! write would.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Creates a file under a fresh name in `dir`, and removes it.
///
/// The name is new (`create_new`): nothing already there is touched.
pub(crate) fn create_file_in(dir: &Path) -> io::Result<()> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // A leftover of an earlier process with the same pid is skipped over,
    // a few times at most.
    let mut last = None;
    for _ in 0..4 {
        let name = format!(
            ".lameduck-probe.{}.{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let probe: PathBuf = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

/// Binds a Unix socket at `at`, a fresh name the caller chose, and removes
/// it. A bind never replaces what is there (`EADDRINUSE`), so a live
/// socket at another path of the directory is never disturbed.
#[cfg(all(unix, feature = "upgrade"))]
pub(crate) fn bind_socket_at(at: &Path) -> io::Result<()> {
    let listener = std::os::unix::net::UnixListener::bind(at)?;
    drop(listener);
    let _ = std::fs::remove_file(at);
    Ok(())
}

/// Why a probe failed, in our words: the OS's own text misleads here
/// (`/proc` exists, yet creating a file in it says "No such file or
/// directory").
pub(crate) fn why(err: &io::Error) -> String {
    use io::ErrorKind as K;
    match err.kind() {
        // The directory was found just before: it is the filesystem that
        // takes no new entries.
        K::NotFound => {
            "the filesystem there takes no new files (as /proc and /sys); choose a directory on a \
             regular filesystem"
                .to_string()
        }
        K::ReadOnlyFilesystem => "the filesystem there is read-only".to_string(),
        K::PermissionDenied => "permission denied".to_string(),
        K::StorageFull => "no space left on the filesystem".to_string(),
        K::Unsupported => "the filesystem there does not support it".to_string(),
        _ => err.to_string(),
    }
}
