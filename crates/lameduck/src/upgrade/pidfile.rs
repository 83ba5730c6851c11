//! The PID file, replaced atomically.

use std::io::{self, Write};
use std::path::Path;

/// Writes `pid` to `path` through a temporary file renamed over it, so a
/// reader sees the old pid or the new one, never a torn or empty file.
pub(crate) fn write(path: &Path, pid: u32) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{pid}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
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

/// The pid the file names, if it names one.
pub(crate) fn read(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_and_only_removed_by_its_owner() {
        let dir = std::env::temp_dir().join(format!("lameduck-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
}
