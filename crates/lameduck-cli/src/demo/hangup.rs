//! `SIGHUP` in `lameduck demo`: an operator's request for a zero-downtime
//! restart, unless it is the kernel's hangup of the terminal the demo runs
//! in (told apart in [`crate::terminal`]): the terminal was closed, and the
//! demo stops as on `SIGTERM`, saying so.

use lameduck::AppHandle;
use tokio::signal::unix::{SignalKind, signal};

use crate::terminal::Terminal;

/// The reason the demo gives for stopping at a hangup.
pub const REASON: &str = crate::terminal::HANGUP;

/// Listens for `SIGHUP` from now on (the library is told not to, see
/// [`lameduck::upgrade::Upgrade::on_sighup`]).
///
/// # Errors
///
/// When the handler cannot be installed.
pub fn listen(app: AppHandle) -> std::io::Result<()> {
    let terminal = Terminal::at_start();
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if terminal.is_hung_up() {
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
