//! Sending the signals, each to the process serving *now*.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::SignalPlan;
use crate::events::{EventLog, SentSignal};
use crate::process::{Server, is_alive};
use crate::procfs;
use crate::record::{Clock, RecordSink};

/// Finds the process to signal.
#[derive(Debug)]
pub(super) struct Targets {
    server: Arc<Server>,
    pid_file: Option<PathBuf>,
    addr: SocketAddr,
    previous: Option<u32>,
}

impl Targets {
    pub(super) fn new(server: Arc<Server>, pid_file: Option<PathBuf>, addr: SocketAddr) -> Self {
        Targets {
            server,
            pid_file,
            addr,
            previous: None,
        }
    }

    /// The process serving now, in this order: the PID in the PID file (read
    /// afresh); for the first signal, the process spawned or attached to; the
    /// process signalled last time, while it runs (a supervisor that restarts
    /// its workers keeps its PID); the holder of the listening socket (a
    /// server that replaced itself with a new process).
    async fn find(&mut self) -> Result<u32, String> {
        if let Some(path) = &self.pid_file {
            let text = std::fs::read_to_string(path)
                .map_err(|err| format!("cannot read the PID file {}: {err}", path.display()))?;
            return text.trim().parse().map_err(|_| {
                format!(
                    "the PID file {} holds {:?}, not a PID",
                    path.display(),
                    text.trim()
                )
            });
        }
        // A PID is used only while the drill has not seen it exit, so that a
        // recycled PID is never signalled.
        let running = |pid: u32| self.server.exit_of(pid).is_none() && is_alive(pid);
        if self.previous.is_none()
            && let Some(pid) = self.server.pid()
            && running(pid)
        {
            return Ok(pid);
        }
        if let Some(previous) = self.previous
            && running(previous)
        {
            return Ok(previous);
        }
        let (addr, group) = (self.addr, self.server.group());
        let holder = tokio::task::spawn_blocking(move || {
            procfs::pick_server(&procfs::listening_socket_holders(addr, group))
        })
        .await
        .ok()
        .flatten();
        holder.ok_or_else(|| format!("no running process holds a socket listening on {addr}"))
    }
}

/// Sends the plan's signals on time, logging each one. With `excuse`, the
/// first delivered signal starts the time from which refused connects are
/// not held against the server (a stop drill).
pub(super) async fn send(
    plan: SignalPlan,
    mut targets: Targets,
    clock: Clock,
    events: Arc<EventLog>,
    excuse: Option<Arc<RecordSink>>,
) {
    for n in 0..plan.repeat {
        tokio::time::sleep_until((clock.t0() + plan.due(n)).into()).await;
        let found = targets.find().await;
        let at_us = clock.now_us();
        let event = match found {
            Ok(pid) => {
                targets.server.watch(pid);
                let error = targets
                    .server
                    .signal(pid, plan.signal)
                    .err()
                    .map(|errno| format!("kill({pid}, SIG{}): {errno}", plan.signal));
                if error.is_none()
                    && let Some(sink) = &excuse
                {
                    sink.excuse_refused_from(at_us);
                }
                targets.previous = Some(pid);
                SentSignal {
                    at_us,
                    signal: plan.signal,
                    pid: Some(pid),
                    error,
                }
            }
            Err(error) => SentSignal {
                at_us,
                signal: plan.signal,
                pid: None,
                error: Some(error),
            },
        };
        events.signal(event);
    }
}
