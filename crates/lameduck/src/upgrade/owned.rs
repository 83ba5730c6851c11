//! What says which process serves: the PID file and the control socket's
//! path. One process owns them at a time.
//!
//! A process that starts on its own serves its control socket at once (so
//! that `status` answers `starting` while it starts) and writes the PID file
//! as it enters Running. A new process of an upgrade binds its control
//! socket under a temporary name before it reports ready, and takes the PID
//! file and the path only after its parent committed to it. The old process, after a rollback, checks
//! both and takes back whatever is not its own.

use std::path::{Path, PathBuf};

use super::control::{ControlSocket, Prepared};
use super::{Upgrade, fault_point, leftovers, pidfile, temp};
use crate::AppHandle;

#[derive(Debug)]
pub(crate) struct Owned {
    pid_file: Option<PathBuf>,
    control_path: Option<PathBuf>,
    prepared: Option<Prepared>,
    control: Option<ControlSocket>,
}

impl Owned {
    pub(crate) fn new(config: &Upgrade) -> Self {
        Self {
            pid_file: config.pid_file.clone(),
            control_path: config.control_socket.clone(),
            prepared: None,
            control: None,
        }
    }

    /// Binds the control socket under a temporary name (nothing is
    /// reachable at its path yet).
    ///
    /// # Errors
    ///
    /// What to say when the socket cannot be bound.
    pub(crate) fn prepare(&mut self) -> Result<(), String> {
        let Some(path) = &self.control_path else {
            return Ok(());
        };
        if self.prepared.is_none() {
            let prepared = Prepared::bind(path).map_err(|e| {
                format!(
                    "cannot bind the control socket next to {}: {e}",
                    path.display()
                )
            })?;
            self.prepared = Some(prepared);
        }
        Ok(())
    }

    /// Moves the prepared control socket to its path and serves on it.
    fn place(&mut self, app: &AppHandle) -> Result<(), String> {
        if let (Some(path), Some(prepared)) = (&self.control_path, self.prepared.take()) {
            let placed = prepared.place(path, app.clone()).map_err(|e| {
                format!(
                    "cannot take the control socket's path {}: {e}",
                    path.display()
                )
            })?;
            self.control = Some(placed);
            leftovers::own_socket(path);
        }
        Ok(())
    }

    /// (A process not started by an upgrade, as it starts.) Takes the
    /// control socket's path at once: a monitor asking `status` while the
    /// app starts hears `starting`, not "no such file". The PID file waits
    /// for Running ([`take_over`](Self::take_over)).
    ///
    /// # Errors
    ///
    /// What to say when the socket cannot be set up.
    pub(crate) fn serve_at_start(&mut self, app: &AppHandle) -> Result<(), String> {
        let Some(path) = self.control_path.clone() else {
            return Ok(());
        };
        self.prepare()?;
        // Checked at build; checked again now, the moment before the
        // rename: another instance may have started meanwhile.
        super::paths::control_free(&path, None)?;
        self.place(app)
    }

    /// Takes the PID file and the control socket's path (unless it serves
    /// it already, since its start): this process serves now.
    ///
    /// # Errors
    ///
    /// What to say when either cannot be set up.
    pub(crate) fn take_over(&mut self, app: &AppHandle) -> Result<(), String> {
        let placed = self.control.is_some();
        if !placed {
            self.prepare()?;
        }
        if let Some(path) = self.control_path.as_ref().filter(|_| !placed) {
            // Checked at build; checked again now, the moment before the
            // rename: another instance may have started meanwhile. A new
            // process of an upgrade finds its parent's socket there.
            super::paths::control_free(path, super::child::parent_pid())?;
        }
        if let Some(path) = &self.pid_file {
            fault_point("pid-file");
            pidfile::write(path, std::process::id())
                .map_err(|e| format!("cannot write the PID file {}: {e}", path.display()))?;
            leftovers::own_pid_file(path);
        }
        if placed {
            return Ok(());
        }
        if self.control_path.is_some() {
            fault_point("control-socket");
        }
        self.place(app)
    }

    /// After a rollback: makes sure the PID file names this process and
    /// the control socket's path is this process's socket, and removes what
    /// the new process `other` left half made. Returns what it found and
    /// did, one phrase each, for the log.
    pub(crate) fn reassert(&mut self, app: &AppHandle, other: u32) -> Vec<String> {
        let me = std::process::id();
        let mut said = Vec::new();
        if let Some(path) = &self.pid_file {
            if pidfile::read(path) == Some(me) {
                said.push(format!("the PID file {} names it", path.display()));
            } else {
                match pidfile::write(path, me) {
                    Ok(()) => {
                        leftovers::own_pid_file(path);
                        said.push(format!("the PID file {} named it again", path.display()))
                    }
                    Err(e) => said.push(format!(
                        "the PID file {} cannot be written: {e}",
                        path.display()
                    )),
                }
            }
            swept(&mut said, path, other);
        }
        if let Some(path) = self.control_path.clone() {
            if self
                .control
                .as_ref()
                .is_some_and(ControlSocket::is_in_place)
            {
                said.push(format!("the control socket {} is its own", path.display()));
            } else {
                // The path holds the new process's socket, or nothing: bind
                // afresh (dropping the old one removes nothing that is not
                // ours).
                self.control = None;
                self.prepared = None;
                match self.prepare().and_then(|()| self.place(app)) {
                    Ok(()) => {
                        said.push(format!("the control socket {} bound again", path.display()))
                    }
                    Err(e) => said.push(e),
                }
            }
            swept(&mut said, &path, other);
        }
        said
    }

    /// The new process `dead` died after the handover, too late to take the
    /// service back: removes the PID file if it names it, and the control
    /// socket if nothing listens on it any more.
    pub(crate) fn forget_dead(&mut self, dead: u32) {
        if let Some(path) = &self.pid_file {
            pidfile::remove_if_ours(path, dead);
        }
        if let Some(path) = &self.control_path
            && std::os::unix::net::UnixStream::connect(path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            let _ = std::fs::remove_file(path);
        }
    }

    /// At exit: removes the PID file and the control socket if they are
    /// still this process's.
    pub(crate) fn release(&mut self) {
        self.control = None;
        self.prepared = None;
        leftovers::remove_owned();
    }
}

fn swept(said: &mut Vec<String>, path: &Path, other: u32) {
    let n = temp::sweep(path, other);
    if n > 0 {
        said.push(format!(
            "removed {n} temporary file{} of pid {other} next to {}",
            if n == 1 { "" } else { "s" },
            path.display()
        ));
    }
}
