//! Serving the control socket: one command per connection, one answer.
//!
//! A same-user client can open connections and send nothing. Two rules keep
//! it from holding the socket shut:
//!
//! - **The newest command gets an answer.** At most [`MAX_CONNECTIONS`] are
//!   served at once; when a new one arrives with all of them taken, the
//!   oldest that has not sent its command yet is told so and closed. Only
//!   when every connection is busy with a command (an `upgrade` waits for
//!   its outcome) is the new one answered `error busy`.
//! - **Idle connections are bounded in time**: no command within
//!   [`READ_WAIT`] and the connection is answered and closed.
//!
//! And every answer, refusals included, reaches the client: the server
//! shuts down its side after writing, then reads what the client may still
//! send (bounded) before closing, because closing a socket with unread
//! data resets it, and the client would read the reset instead of the
//! answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::AppHandle;
use crate::upgrade::{UpgradeErrorKind, Via};

/// The longest command line read.
const MAX_COMMAND: u64 = 256;
/// How long a client has to send its command.
pub(super) const READ_WAIT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub(super) const MAX_CONNECTIONS: usize = 16;
/// After the answer: how long, and how much, the client may still send
/// before the connection closes.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 64 * 1024;

/// The connections being served, oldest first.
#[derive(Default)]
struct Slots {
    next: u64,
    open: VecDeque<Slot>,
}

struct Slot {
    id: u64,
    /// Still waiting for its command: may be evicted.
    idle: bool,
    evict: CancellationToken,
}

type Shared = Arc<Mutex<Slots>>;

fn lock(slots: &Shared) -> std::sync::MutexGuard<'_, Slots> {
    // Every update is a push, a removal or a flag: a panic cannot tear it.
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a slot for a new connection, evicting the oldest idle one if all
/// are taken: `None` when every slot is busy with a command.
fn admit(slots: &Shared) -> Option<(u64, CancellationToken)> {
    let mut s = lock(slots);
    if s.open.len() >= MAX_CONNECTIONS {
        let oldest = s.open.iter().position(|slot| slot.idle)?;
        let evicted = s.open.remove(oldest).expect("a position in range");
        evicted.evict.cancel();
    }
    let id = s.next;
    s.next += 1;
    let evict = CancellationToken::new();
    s.open.push_back(Slot {
        id,
        idle: true,
        evict: evict.clone(),
    });
    Some((id, evict))
}

/// Gives the slot back when the connection ends, however it ends.
struct Admitted {
    slots: Shared,
    id: u64,
}

impl Admitted {
    fn busy(&self) {
        if let Some(slot) = lock(&self.slots).open.iter_mut().find(|s| s.id == self.id) {
            slot.idle = false;
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        lock(&self.slots).open.retain(|s| s.id != self.id);
    }
}

pub(super) async fn serve(listener: UnixListener, app: AppHandle, owner: u32) {
    let slots = Shared::default();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(err) if crate::accept::is_fatal(&err) => {
                tracing::error!(target: "lameduck::upgrade", error = %err, "the control socket cannot accept any more; not serving it");
                return;
            }
            Err(err) => {
                tracing::debug!(target: "lameduck::upgrade", error = %err, "control socket: accept failed");
                // Out of descriptors, most likely: give the process a moment
                // rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some((id, evict)) = admit(&slots) else {
            tokio::spawn(answer_and_close(
                stream,
                "error busy: every control connection is running a command\n".into(),
            ));
            continue;
        };
        let admitted = Admitted {
            slots: slots.clone(),
            id,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let answer = tokio::select! {
                answer = handle(&mut stream, &app, owner, &admitted) => answer,
                () = evict.cancelled() => {
                    "error closed: too many control connections, and this one sent no command\n".into()
                }
            };
            drop(admitted);
            answer_and_close(stream, answer).await;
        });
    }
}

/// Writes `answer`, ends this side, and reads what the client still sends
/// (bounded) before closing, so that the answer is read, not reset.
async fn answer_and_close(mut stream: UnixStream, answer: String) {
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut (&mut stream).take(LINGER_BYTES), &mut sink).await;
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Reads one command from `stream` and returns the answer line.
async fn handle(
    stream: &mut UnixStream,
    app: &AppHandle,
    owner: u32,
    admitted: &Admitted,
) -> String {
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
    let read = tokio::time::timeout(READ_WAIT, read).await;
    admitted.busy();
    match read {
        Err(_) => return format!("error no command within {}s\n", READ_WAIT.as_secs()),
        Ok(Err(err)) => return format!("error {err}\n"),
        Ok(Ok(_)) => {}
    }
    if line.last() != Some(&b'\n') {
        return format!(
            "error a command is one line of at most {} bytes, ending in a newline\n",
            MAX_COMMAND - 1
        );
    }
    match std::str::from_utf8(&line).map(str::trim) {
        Ok("upgrade") => match app.request_upgrade(Via::Control).await {
            Ok(done) => format!("ok {}\n", done.new_pid),
            Err(e) if e.kind() == UpgradeErrorKind::Busy => "busy\n".into(),
            Err(e) => format!("error {e}\n"),
        },
        Ok("status") => format!("ok {} pid {}\n", app.phase(), std::process::id()),
        // What each component reloads (an HTTPS server's certificate):
        // `ok` and their names, or the first line of what failed.
        Ok("reload") => match app.reload() {
            Ok(names) if names.is_empty() => "ok nothing to reload\n".into(),
            Ok(names) => {
                let names: Vec<&str> = names.iter().map(|n| &**n).collect();
                format!("ok reloaded {}\n", names.join(" "))
            }
            Err(e) => format!("error {}\n", e.to_string().replace('\n', " ")),
        },
        Ok(other) => {
            let shown: String = other.escape_debug().take(40).collect();
            format!("error unknown command \"{shown}\"; commands: upgrade, status, reload\n")
        }
        Err(_) => "error the command is not UTF-8\n".into(),
    }
}
