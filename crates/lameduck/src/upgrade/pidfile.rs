//! The PID file, replaced atomically.
//!
//! The directory may be writable by others (`/tmp`, a shared `/run`): the
//! temporary file is created under an unpredictable name, exclusively
//! (`O_EXCL`: never an existing file, never through a symlink), and renamed
//! over the PID file; reading it never follows a symlink either.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::temp;

/// How many unpredictable names to try before giving up (a name taken is
/// someone else's file, or a collision of 8 random characters).
const ATTEMPTS: usize = 8;

/// Writes `pid` to `path` through a temporary file renamed over it, so a
/// reader sees the old pid or the new one, never a torn or empty file.
pub(crate) fn write(path: &Path, pid: u32) -> io::Result<()> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match write_via(path, &temp::path_for(path), pid) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            done => return done,
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name left")))
}

fn write_via(path: &Path, tmp: &Path, pid: u32) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(tmp)?;
    let result = (|| {
        writeln!(f, "{pid}")?;
        f.sync_all()?;
        std::fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// Removes `path` if it still names `pid`: after an upgrade it names the
/// new process, and must stay.
pub(crate) fn remove_if_ours(path: &Path, pid: u32) {
    if read(path) == Some(pid) {
        let _ = std::fs::remove_file(path);
    }
}

/// The pid the file names, if it is a regular file that names one.
pub(crate) fn read(path: &Path) -> Option<u32> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_and_only_removed_by_its_owner() {
        let dir = crate::upgrade::scratch("pidfile-owner");
        let path = dir.join("app.pid");
        write(&path, 10).unwrap();
        write(&path, 11).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "11\n");
        remove_if_ours(&path, 10);
        assert!(path.exists(), "not ours: kept");
        remove_if_ours(&path, 11);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "no temporary file left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_temporary_name_planted_as_a_symlink_is_not_followed() {
        let dir = crate::upgrade::scratch("pidfile-symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let tmp = dir.join("planted");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        let err = write_via(&dir.join("app.pid"), &tmp, 42).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!dir.join("app.pid").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pid_file_that_is_a_symlink_is_not_read_through() {
        let dir = crate::upgrade::scratch("pidfile-read");
        let target = dir.join("elsewhere");
        std::fs::write(&target, "42\n").unwrap();
        let path = dir.join("app.pid");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert_eq!(read(&path), None);
        remove_if_ours(&path, 42);
        assert!(target.exists(), "a link is not ours to remove through");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
