//! Temporary names next to a file that is replaced atomically (a
//! temporary renamed over it): the PID file, the control socket.
//!
//! `.lameduck.<pid>.<random>` in the same directory: the pid tells whose
//! a leftover is (an upgrade's new process killed between binding and
//! renaming leaves one, which the old process then removes), and the
//! random part makes the name unpredictable, so another user who can
//! write the directory cannot plant something there in advance.

use std::path::{Path, PathBuf};

const PREFIX: &str = ".lameduck.";

/// A fresh temporary name for `path`, in its directory.
pub(crate) fn path_for(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(8)
        .collect();
    dir.join(format!("{PREFIX}{}.{suffix}", std::process::id()))
}

/// Removes the temporaries that process `pid` left in `path`'s directory
/// (it was killed between creating one and renaming it). Returns how many.
pub(crate) fn sweep(path: &Path, pid: u32) -> usize {
    let dir = path.parent().unwrap_or(Path::new("."));
    let theirs = format!("{PREFIX}{pid}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&theirs))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unpredictable_and_leftovers_are_swept_by_pid() {
        let dir = crate::upgrade::scratch("temp");
        let target = dir.join("app.pid");
        let (a, b) = (path_for(&target), path_for(&target));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(dir.as_path()));
        std::fs::write(&a, "x").unwrap();
        std::fs::write(dir.join(".lameduck.1.keepme"), "x").unwrap();
        assert_eq!(sweep(&target, std::process::id()), 1);
        assert!(!a.exists());
        assert!(dir.join(".lameduck.1.keepme").exists(), "another pid's");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
