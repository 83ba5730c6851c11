//! `SIGHUP` in `lameduck demo`: an operator's request for a zero-downtime
//! restart, unless it is the kernel's hangup of the terminal the demo runs
//! in.
//!
//! Closing a terminal sends `SIGHUP` to what runs in it. Taken as a
//! restart, that would leave a detached successor on the ports after the
//! window is gone. So at each `SIGHUP` the demo looks at its controlling
//! terminal: if it had one when it started and it is gone now (`/dev/tty`
//! cannot be opened: `ENXIO`, no controlling terminal any more, or `EIO`,
//! hung up), the terminal was closed and the demo stops as on `SIGTERM`,
//! saying so. A demo that never had a terminal (under a supervisor) takes
//! every `SIGHUP` as a restart.

use lameduck::AppHandle;
use nix::errno::Errno;
use tokio::signal::unix::{SignalKind, signal};

/// The reason the demo gives for stopping at a hangup.
pub const REASON: &str = "the terminal was closed (SIGHUP, hangup)";

/// Listens for `SIGHUP` from now on (the library is told not to, see
/// [`lameduck::upgrade::Upgrade::on_sighup`]).
///
/// # Errors
///
/// When the handler cannot be installed.
pub fn listen(app: AppHandle) -> std::io::Result<()> {
    let had_terminal = terminal_is_gone().is_some_and(|gone| !gone);
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if had_terminal && terminal_is_gone() == Some(true) {
                tracing::warn!(target: "demo", "SIGHUP and the terminal is gone: {REASON}; stopping as on SIGTERM, not restarting");
                app.shutdown(REASON);
            } else {
                tracing::info!(target: "demo", "SIGHUP: a zero-downtime restart");
                // The library logs the outcome; the future only carries it.
                drop(app.upgrade());
            }
        }
    });
    Ok(())
}

/// Whether the controlling terminal is gone: `Some(false)` when `/dev/tty`
/// opens, `Some(true)` when it cannot because there is no controlling
/// terminal or it was hung up, `None` when it cannot for another reason.
fn terminal_is_gone() -> Option<bool> {
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
