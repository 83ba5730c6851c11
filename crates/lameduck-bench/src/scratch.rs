//! A scratch directory for one run's configs, sockets and logs, removed when
//! the run is over.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

/// A directory under the system temp dir, removed on drop (unless
/// `LAMEDUCK_BENCH_KEEP` is set, for looking at the logs of a failed run).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `lameduck-bench-<pid>-<n>-<label>`.
    ///
    /// # Errors
    ///
    /// When the directory cannot be created.
    pub fn new(label: &str) -> anyhow::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "lameduck-bench-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last `lines` lines of a log file in it, for error messages.
    pub fn tail(&self, file: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.path.join(file)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("LAMEDUCK_BENCH_KEEP").is_some() {
            eprintln!("kept {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
