//! Telling the kernel's hangup of a terminal from an operator's `SIGHUP`.
//!
//! Closing a terminal sends `SIGHUP` to what runs in it. `lameduck demo`
//! and `lameduck run` take an operator's `SIGHUP` as a request for a
//! zero-downtime restart; taken as a restart, a closed terminal's would
//! leave a detached successor running after the window is gone. So at each
//! `SIGHUP` they look at their controlling terminal: if they had one when
//! they started and it is gone now (`/dev/tty` cannot be opened: `ENXIO`,
//! no controlling terminal any more, or `EIO`, hung up), the terminal was
//! closed, and they stop instead. One that never had a terminal (under a
//! supervisor) takes every `SIGHUP` as a restart.

use nix::errno::Errno;

/// The reason given for stopping at a hangup.
pub const HANGUP: &str = "the terminal was closed (SIGHUP, hangup)";

/// Whether the process had a controlling terminal as it started.
#[derive(Clone, Copy, Debug)]
pub struct Terminal {
    had: bool,
}

impl Terminal {
    /// Looks at the controlling terminal now: call it at start, before any
    /// `SIGHUP` can come.
    pub fn at_start() -> Self {
        Self {
            had: is_gone() == Some(false),
        }
    }

    /// Whether a `SIGHUP` that came now is the kernel's hangup: there was a
    /// controlling terminal at start, and it is gone.
    pub fn is_hung_up(&self) -> bool {
        self.had && is_gone() == Some(true)
    }
}

/// Whether the controlling terminal is gone: `Some(false)` when `/dev/tty`
/// opens, `Some(true)` when it cannot because there is no controlling
/// terminal or it was hung up, `None` when it cannot for another reason.
fn is_gone() -> Option<bool> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    {
        Ok(_) => Some(false),
        Err(err) => match err.raw_os_error().map(Errno::from_raw) {
            Some(Errno::ENXIO | Errno::EIO) => Some(true),
            _ => None,
        },
    }
}
