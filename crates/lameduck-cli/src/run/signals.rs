//! The signal contract of `lameduck run`:
//!
//! | signal | does |
//! |---|---|
//! | first `SIGTERM` / `SIGINT` | the shutdown sequence (no drain for `SIGINT` from a terminal) |
//! | second | cuts the drain short (the library records it as what ended the drain): forwarded to the program at once |
//! | third and later | `SIGKILL` to the program's group; lameduck exits 128 + the third signal (143, 130), as forced |
//! | `SIGHUP` | a zero-downtime restart; the shutdown sequence when it is the hangup of the terminal lameduck started in ([`crate::terminal`]) |
//! | `--forward` ones | forwarded to every instance's group |
//!
//! A repeat of the same signal within the library's
//! [`SIGNAL_REPEAT_WINDOW`] is one delivery (GNU `timeout` signals its
//! child, then the child's group).

use lameduck::{AppHandle, SIGNAL_REPEAT_WINDOW};
use nix::sys::signal::Signal;
use std::io::{self, IsTerminal};
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use super::supervisor::{Command, Supervisor};
use crate::terminal::{HANGUP, Terminal};

/// Installs every handler (before returning, so no signal meets its default
/// action once the program runs) and spawns the tasks that act on them.
///
/// # Errors
///
/// When a handler cannot be installed.
pub fn listen(sup: Arc<Supervisor>, app: AppHandle, forward: &[Signal]) -> io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    for sig in forward {
        let mut stream = signal(SignalKind::from_raw(*sig as i32))?;
        let (sup, sig) = (sup.clone(), *sig);
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                sup.forward(sig);
            }
        });
    }
    let terminal = std::io::stdin().is_terminal();
    // Looked at before any SIGHUP can come: whether there is a terminal
    // whose closing would be a hangup.
    let controlling = Terminal::at_start();
    tokio::spawn(async move {
        let mut count = 0u32;
        let mut last: Option<(Signal, Instant)> = None;
        loop {
            let sig = tokio::select! {
                Some(()) = term.recv() => Signal::SIGTERM,
                Some(()) = int.recv() => Signal::SIGINT,
                Some(()) = hup.recv() => {
                    if !controlling.is_hung_up() {
                        tracing::info!(target: "lameduck::run", signal = "SIGHUP", "SIGHUP: a zero-downtime restart");
                        // The library logs the outcome; the future only
                        // carries it.
                        drop(app.upgrade_on_sighup());
                    } else if count == 0 {
                        // The terminal lameduck ran in was closed: nobody
                        // is left to stop it, so it stops now, as on
                        // SIGTERM, rather than run on, detached.
                        tracing::warn!(target: "lameduck::run", signal = "SIGHUP", "SIGHUP and the terminal is gone: {HANGUP}; stopping as on SIGTERM, not restarting");
                        count = 1;
                        app.shutdown(HANGUP);
                    }
                    continue;
                }
                else => return,
            };
            if last.is_some_and(|(s, at)| s == sig && at.elapsed() < SIGNAL_REPEAT_WINDOW) {
                tracing::debug!(target: "lameduck::run", signal = sig.as_str(), "the same signal again at once: one delivery");
                continue;
            }
            last = Some((sig, Instant::now()));
            count += 1;
            match count {
                1 => {
                    tracing::info!(target: "lameduck::run", signal = sig.as_str(), "shutting down");
                    app.shutdown(sig.as_str());
                    if sig == Signal::SIGINT && terminal {
                        // Ctrl+C at a terminal: nobody routes traffic here.
                        app.cut_drain(lameduck_signal(sig));
                        sup.command(Command::StopNow(sup.stop_signal));
                    }
                }
                2 => {
                    tracing::warn!(target: "lameduck::run", signal = sig.as_str(), "second signal: forwarding it to the program now");
                    // The library hears of it too: the drain ends now, and
                    // its end (the log, the report, the flight record)
                    // names this signal.
                    app.cut_drain(lameduck_signal(sig));
                    sup.command(Command::StopNow(sig));
                }
                _ => {
                    // The operator insisted: SIGKILL to every instance's
                    // group, and the exit is forced as the library's second
                    // signal forces it (its report, its flight record, 128
                    // + the signal), whatever the program makes of it.
                    tracing::warn!(target: "lameduck::run", signal = sig.as_str(), "third signal: SIGKILL to the program's group; the exit is forced");
                    sup.force();
                    app.force(lameduck_signal(sig));
                }
            }
        }
    });
    Ok(())
}

/// `SIGTERM` or `SIGINT`, as the library names them.
fn lameduck_signal(sig: Signal) -> lameduck::Signal {
    if sig == Signal::SIGINT {
        lameduck::Signal::Interrupt
    } else {
        lameduck::Signal::Terminate
    }
}
