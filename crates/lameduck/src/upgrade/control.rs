//! The control socket: a Unix socket, owner only, that takes one command
//! per connection (`upgrade`, `status`, `reload`) and answers one line.
//!
//! Hostile input is expected: it is read with a bounded length and a
//! bounded wait, anything unknown gets an error line, and the number of
//! connections served at once is capped without letting idle ones hold it
//! shut (see `control/serve.rs`), so garbage or a stuck client cannot stop
//! the next request.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use crate::AppHandle;

mod serve;

/// A control socket bound under a temporary name, not yet reachable at
/// its path: a new process of an upgrade binds it before it reports ready
/// (so that a path it cannot bind fails the upgrade, not the service), and
/// takes the path only after the commit.
#[derive(Debug)]
pub(crate) struct Prepared {
    listener: Option<std::os::unix::net::UnixListener>,
    tmp: PathBuf,
}

impl Prepared {
    /// Binds a socket next to `path` under a temporary name, owner only.
    pub(crate) fn bind(path: &Path) -> io::Result<Self> {
        let tmp = super::temp::path_for(path);
        // bind() creates the file and fails if anything is there: it never
        // follows a link or reuses what another user planted.
        let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
        let this = Self {
            listener: Some(listener),
            tmp,
        };
        // Restricted before it is reachable at `path`; the temporary name
        // is unpredictable, and peers are checked anyway.
        std::fs::set_permissions(&this.tmp, std::fs::Permissions::from_mode(0o600))?;
        Ok(this)
    }

    /// Moves it to `path` (replacing what is there) and serves `app` on
    /// it.
    pub(crate) fn place(mut self, path: &Path, app: AppHandle) -> io::Result<ControlSocket> {
        let listener = self.listener.take().expect("placed once");
        std::fs::rename(&self.tmp, path)?;
        let meta = std::fs::symlink_metadata(path)?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let task = tokio::spawn(serve::serve(listener, app, meta.uid()));
        tracing::info!(target: "lameduck::upgrade", path = %path.display(), "control socket listening");
        Ok(ControlSocket {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
            task,
        })
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A control socket in place, served until dropped.
#[derive(Debug)]
pub(crate) struct ControlSocket {
    path: PathBuf,
    /// Device and inode of our socket file, to tell it from a successor's.
    id: (u64, u64),
    task: tokio::task::JoinHandle<()>,
}

impl ControlSocket {
    /// Whether the file at its path is still this socket.
    pub(crate) fn is_in_place(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        // After an upgrade the path is the new process's socket: only remove
        // our own.
        if self.is_in_place() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
