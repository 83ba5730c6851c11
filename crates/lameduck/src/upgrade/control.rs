//! The control socket: a Unix socket, owner only, that takes one command
//! per connection (`upgrade`, `status`) and answers one line.
//!
//! Hostile input is expected: it is read with a bounded length and a
//! bounded wait, anything unknown gets an error line, and the number of
//! connections served at once is capped, so garbage or a stuck client
//! cannot stop the next request.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::{UpgradeErrorKind, Via};
use crate::AppHandle;

/// The longest command line read.
const MAX_COMMAND: u64 = 256;
/// How long a client has to send its command.
const READ_WAIT: Duration = Duration::from_secs(10);
/// Connections served at once; more are answered `error busy` and closed.
const MAX_CONNECTIONS: usize = 16;

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
        let task = tokio::spawn(serve(listener, app, meta.uid()));
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

async fn serve(listener: UnixListener, app: AppHandle, owner: u32) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let mut stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(err) => {
                tracing::debug!(target: "lameduck::upgrade", error = %err, "control socket: accept failed");
                // Out of descriptors, most likely: give the process a moment
                // rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"error busy: too many control connections\n")
                    .await;
            });
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let answer = handle(&mut stream, &app, owner).await;
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Reads one command from `stream` and returns the answer line.
async fn handle(stream: &mut UnixStream, app: &AppHandle, owner: u32) -> String {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == owner || cred.uid() == 0 => {}
        Ok(cred) => {
            tracing::warn!(target: "lameduck::upgrade", uid = cred.uid(), "control socket: refused a peer of another user");
            return "error permission denied\n".into();
        }
        Err(err) => return format!("error cannot check the peer: {err}\n"),
    }
    let mut line = Vec::new();
    let read = async {
        let mut r = BufReader::new(&mut *stream).take(MAX_COMMAND);
        r.read_until(b'\n', &mut line).await
    };
    match tokio::time::timeout(READ_WAIT, read).await {
        Err(_) => return "error no command within 10s\n".into(),
        Ok(Err(err)) => return format!("error {err}\n"),
        Ok(Ok(_)) => {}
    }
    if line.last() != Some(&b'\n') {
        return "error a command is one line of at most 255 bytes, ending in a newline\n".into();
    }
    match std::str::from_utf8(&line).map(str::trim) {
        Ok("upgrade") => match app.request_upgrade(Via::Control).await {
            Ok(done) => format!("ok {}\n", done.new_pid),
            Err(e) if e.kind() == UpgradeErrorKind::Busy => "busy\n".into(),
            Err(e) => format!("error {e}\n"),
        },
        Ok("status") => format!("ok {} pid {}\n", app.phase(), std::process::id()),
        Ok(other) => {
            let shown: String = other.escape_debug().take(40).collect();
            format!("error unknown command \"{shown}\"; commands: upgrade, status\n")
        }
        Err(_) => "error the command is not UTF-8\n".into(),
    }
}
