//! The PID file's and the control socket's paths, checked before the app
//! starts: a path that cannot be used stops the start with a message that
//! says why (a [`BuildError`](crate::BuildError), exit code 78), instead
//! of a log line and a service that runs without what the operator asked
//! for.
//!
//! And what is at the control socket's path, which is never taken from
//! someone else: a file that is not a socket, or a socket a live process
//! listens on, is refused (`Listeners::unix` does the same); a socket
//! nobody listens on any more is left over from a process that is gone,
//! and is replaced.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::temp;
use crate::app::probe;

/// Checks both paths, if set.
pub(crate) fn check(pid_file: Option<&Path>, control: Option<&Path>) -> Result<(), String> {
    if let Some(path) = pid_file {
        writable_dir(path, "--pid-file / Upgrade::pid_file")?;
        if path.is_dir() {
            return Err(format!("the PID file {} is a directory", path.display()));
        }
        pid_free(path, super::child::parent_pid())?;
    }
    if let Some(path) = control {
        let what = "--control-socket / Upgrade::control_socket";
        writable_dir(path, what)?;
        for p in [path.to_path_buf(), temp::path_for(path)] {
            if std::os::unix::net::SocketAddr::from_pathname(&p).is_err() {
                return Err(format!(
                    "the control socket {} ({what}): the path is too long for a Unix socket \
                     ({} bytes with the temporary name it is bound under; at most {} bytes); \
                     choose a shorter path",
                    path.display(),
                    p.as_os_str().len(),
                    max_socket_path()
                ));
            }
        }
        control_free(path, super::child::parent_pid())?;
        bindable(path, what)?;
    }
    Ok(())
}

/// The longest path a Unix socket can be bound at, in bytes (for the
/// message; `SocketAddr::from_pathname` decides).
fn max_socket_path() -> usize {
    // `sun_path` is what follows the family, less its terminating NUL.
    std::mem::size_of::<nix::libc::sockaddr_un>()
        - std::mem::size_of::<nix::libc::sa_family_t>()
        - 1
}

/// The directory `path` goes in must exist, be a directory, and take new
/// files.
fn writable_dir(path: &Path, what: &str) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{} ({what}): the directory {} does not exist",
                path.display(),
                dir.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "{} ({what}): cannot look at {}: {e}",
                path.display(),
                dir.display()
            ));
        }
        Ok(m) if !m.is_dir() => {
            return Err(format!(
                "{} ({what}): {} is not a directory",
                path.display(),
                dir.display()
            ));
        }
        Ok(_) => {}
    }
    // For real: permissions alone pass a filesystem that takes no new
    // files (/proc, /sys).
    probe::create_file_in(dir).map_err(|e| {
        format!(
            "{} ({what}): cannot create files in {}: {}",
            path.display(),
            dir.display(),
            probe::why(&e)
        )
    })
}

/// A Unix socket can be bound in the control socket's directory: bound
/// (and removed) under the temporary name the real one is first bound
/// under, fresh, so that nothing there, a live socket least of all, is
/// disturbed.
fn bindable(path: &Path, what: &str) -> Result<(), String> {
    let at = temp::path_for(path);
    probe::bind_socket_at(&at).map_err(|e| {
        format!(
            "{} ({what}): cannot bind a Unix socket in {}: {}",
            path.display(),
            at.parent().unwrap_or(Path::new(".")).display(),
            probe::why(&e)
        )
    })
}

/// Whether the control socket's path may be taken: nothing there, a socket
/// nobody listens on, or — for a process started by an upgrade — the
/// parent's socket, which the parent hands over at the commit.
/// A PID file that names a running process, other than this one's parent
/// (an upgrade's old process, which hands it over), belongs to another
/// instance: taking it over would leave that one without it, and remove it
/// at this one's exit while the other still serves. One that names a
/// process that is gone, or no process, is replaced.
pub(crate) fn pid_free(path: &Path, parent: Option<u32>) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    let own = i32::try_from(std::process::id()).ok();
    if pid <= 0 || Some(pid) == own || parent.and_then(|p| i32::try_from(p).ok()) == Some(pid) {
        return Ok(());
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => Err(format!(
            "the PID file {}: it names a running process (pid {pid}; another instance?); \
             stop it, or choose another path (if that process is not an instance, remove the file)",
            path.display()
        )),
        Err(_) => Ok(()),
    }
}

pub(crate) fn control_free(path: &Path, parent: Option<u32>) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(format!(
            "the control socket {} is a directory",
            path.display()
        ));
    }
    if !ft.is_socket() {
        return Err(format!(
            "the control socket {}: a file that is not a socket is in the way; \
             remove it, or choose another path",
            path.display()
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(stream) => {
            // The peer of a connection to a listening socket is the process
            // that listens.
            let owner =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                    .ok()
                    .and_then(|c| u32::try_from(c.pid()).ok());
            if owner.is_some() && owner == parent {
                return Ok(());
            }
            Err(format!(
                "the control socket {}: a running process{} listens there (another \
                 instance?); stop it, or choose another path",
                path.display(),
                owner.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ))
        }
        // Left by a process that is gone: replaced.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!(
            "the control socket {}: a socket is there that cannot be checked ({e}); \
             remove it, or choose another path",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_paths_are_refused_saying_why() {
        let dir = crate::upgrade::scratch("paths-refused");
        let missing = dir.join("nope/app.pid");
        let e = check(Some(&missing), None).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = check(Some(&dir), None).unwrap_err();
        assert!(e.contains("is a directory"), "{e}");
        let long = dir.join("c".repeat(120));
        let e = check(None, Some(&long)).unwrap_err();
        assert!(e.contains("too long for a Unix socket"), "{e}");
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let e = check(None, Some(&file.join("ctl"))).unwrap_err();
        assert!(e.contains("is not a directory"), "{e}");
        let e = check(None, Some(&file)).unwrap_err();
        assert!(e.contains("not a socket is in the way"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x", "left alone");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_live_socket_is_refused_and_a_stale_one_is_not() {
        let dir = crate::upgrade::scratch("paths-sockets");
        let path = dir.join("ctl");
        let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let e = control_free(&path, None).unwrap_err();
        assert!(e.contains("a running process"), "{e}");
        assert!(
            control_free(&path, Some(std::process::id())).is_ok(),
            "the parent's own socket, handed over at the commit"
        );
        drop(live);
        assert!(control_free(&path, None).is_ok(), "stale: replaced");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
