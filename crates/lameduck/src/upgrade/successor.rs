//! The old process's hold on a new process it committed to: a task that
//! watches it until it exits, and tells the driver what became of it.
//!
//! ```text
//! commit ──▶ "running" ──▶ settled (after the settle time) ──▶ … exit
//!    │            │  └ "draining" │
//!    └── dies ────┴── dies ───────┴── dies: said, whenever it happens
//! ```
//!
//! Told to stop, the task says `abort`, then waits for the exit within the
//! driver's bound, and kills only a process that outlives it.
//!
//! Until it has settled, the old process can take the service back; the
//! driver decides what a death means at the moment it hears of it.

use std::time::Duration;

use tokio::sync::mpsc;

use super::spawn::{Candidate, describe, stop};
use super::{Step, protocol};
use crate::AppHandle;
use crate::app::Event;

/// What the driver can ask of the task.
#[derive(Debug)]
pub(crate) enum Command {
    /// Tell the new process the handover is final.
    MakeMain,
    /// Tell the new process the old one takes the service back (it shuts
    /// down on that word), wait for it to exit, and kill it (`SIGKILL`) if
    /// it has not within the bound.
    Stop(Duration),
}

/// The driver's end: commands to the task that holds the new process.
#[derive(Debug)]
pub(crate) struct Successor {
    pub(crate) pid: u32,
    commands: mpsc::UnboundedSender<Command>,
}

impl Successor {
    /// Sends `command`; a task that is gone (the process exited and was
    /// reaped) needs none.
    pub(crate) fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

/// Commits to `candidate` (the caller wrote the word) and watches it:
/// `Step::Running` once it has taken over, within `take_over`;
/// `Step::Settled` once it has run for `settle` more; `Step::Died`
/// whenever it exits, is stopped, or fails to take over in time.
pub(crate) fn watch(
    candidate: Box<Candidate>,
    app: AppHandle,
    take_over: Duration,
    settle: Duration,
) -> Successor {
    let (tx, commands) = mpsc::unbounded_channel();
    let pid = candidate.pid;
    tokio::spawn(run(candidate, app, commands, take_over, settle));
    Successor { pid, commands: tx }
}

async fn run(
    mut c: Box<Candidate>,
    app: AppHandle,
    mut commands: mpsc::UnboundedReceiver<Command>,
    take_over: Duration,
    settle: Duration,
) {
    let pid = c.pid;
    let step = |s: Step| app.send(Event::UpgradeStep(s));

    // The new process takes the PID file and the control socket, enters
    // Running and says so.
    let said = tokio::select! {
        line = c.read_line() => Some(line),
        () = tokio::time::sleep(take_over) => None,
        Some(Command::Stop(bound)) = commands.recv() => return step(c.take_back(bound).await),
    };
    match said {
        Some(Ok(line)) if line == protocol::RUNNING.strip_suffix(b"\n").unwrap_or_default() => {
            step(Step::Running(pid));
        }
        Some(Ok(line)) => {
            stop(&mut c.child, pid).await;
            let line = String::from_utf8_lossy(&line).into_owned();
            return step(Step::Died(
                pid,
                format!("sent {line:?} instead of taking over; stopped it"),
            ));
        }
        Some(Err(_)) => return step(Step::Died(pid, ended(&mut c).await)),
        None => {
            stop(&mut c.child, pid).await;
            return step(Step::Died(
                pid,
                format!("did not take over within {take_over:?} of the commit; stopped it"),
            ));
        }
    }

    // Settling: a death now is one the old process can still undo.
    let mut settled = false;
    let mut timer = std::pin::pin!(tokio::time::sleep(settle));
    loop {
        tokio::select! {
            line = c.read_line() => match line {
                // It began shutting down; its exit comes later.
                Ok(l) if l == protocol::DRAINING.strip_suffix(b"\n").unwrap_or_default() => {
                    step(Step::Draining(pid));
                }
                // Anything else from the new process is the end of the
                // channel.
                _ => return step(Step::Died(pid, ended(&mut c).await)),
            },
            () = &mut timer, if !settled => {
                settled = true;
                step(Step::Settled(pid));
            }
            command = commands.recv() => match command {
                Some(Command::MakeMain) => c.make_main(),
                Some(Command::Stop(bound)) => return step(c.take_back(bound).await),
                // The driver is gone: this process is exiting.
                None => return,
            },
        }
    }
}

/// How a process whose channel ended went: its exit status, once it has
/// been reaped.
async fn ended(c: &mut Candidate) -> String {
    // The channel ends when the process exits; its status follows at once.
    // A live process that closed its end is stopped.
    match tokio::time::timeout(Duration::from_secs(1), c.child.wait()).await {
        Ok(Ok(status)) => format!("exited: {}", describe(status)),
        _ => {
            stop(&mut c.child, c.pid).await;
            "closed the channel; stopped it".into()
        }
    }
}
