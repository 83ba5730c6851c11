//! Restart by handing the listening socket to a new process, as tableflip,
//! Envoy's hot restart and lameduck's own upgrade do: the new process serves
//! from the same accept queue, so no connection is refused or reset, and the
//! old one drains and exits.
//!
//! The successor is this program again, with the same arguments and
//! environment, the listening socket as its stdin (the one fd a child gets
//! without `unsafe`), and a pipe as its stdout on which it says when it is
//! ready.

use std::io;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

/// Set in a successor's environment: its stdin is the listening socket.
const LISTENER_ENV: &str = "LAMEDUCK_DRILL_TARGET_LISTENER";
/// The line a successor prints on stdout once it accepts connections.
const READY_LINE: &str = "lameduck-drill target: ready";
/// How long the old process waits for its successor.
const SUCCESSOR_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening socket: inherited from the process this one replaces, or
/// bound on 127.0.0.1:`port`. The flag says whether it was inherited.
pub(super) async fn listener(port: u16) -> io::Result<(TcpListener, bool)> {
    if std::env::var_os(LISTENER_ENV).is_some() {
        let socket = std::net::TcpListener::from(io::stdin().as_fd().try_clone_to_owned()?);
        socket.set_nonblocking(true)?;
        return Ok((TcpListener::from_std(socket)?, true));
    }
    Ok((TcpListener::bind(("127.0.0.1", port)).await?, false))
}

/// Tells the process that started this one that it is ready.
pub(super) fn announce_ready() {
    use std::io::Write as _;
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{READY_LINE}");
    let _ = stdout.flush();
}

/// Starts a successor on `listener`, with `env` added to its environment,
/// and waits until it is ready.
///
/// # Errors
///
/// When it cannot be started, or does not say it is ready in time.
pub(super) async fn start_successor(
    listener: &TcpListener,
    env: &[(&str, &str)],
) -> io::Result<u32> {
    let socket = listener.as_fd().try_clone_to_owned()?;
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .envs(env.iter().copied())
        .env(LISTENER_ENV, "stdin")
        .stdin(Stdio::from(socket))
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await? {
            // A test harness may have printed on the same line first.
            if line.ends_with(READY_LINE) {
                return Ok(());
            }
        }
        Err(io::Error::other("the successor exited before it was ready"))
    };
    tokio::time::timeout(SUCCESSOR_TIMEOUT, ready)
        .await
        .map_err(|_| io::Error::other("the successor was not ready in time"))??;
    // Keep reading, so that the successor never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(pid)
}
