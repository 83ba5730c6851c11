//! Stopping an instance as the shutdown's work: the stop signal, every
//! process of it waited for up to the shutdown timeout, `SIGKILL` to what
//! is left at the cancel signal. The processes are tracked as work in
//! flight, so the inventory at Stopping and at the deadline names them, and
//! a kill is the shutdown's passed deadline (`deadline exceeded (3)`).
//!
//! Two ways in: the program lameduck stops ([`stop`]), and what a program
//! that ended by itself left running ([`leftovers`]): a process lameduck
//! has to kill is a passed deadline either way, whoever ended first. A
//! program that crashed may yet be started again: its leftovers are the
//! shutdown's work only if the restart policy gives up (the last crash);
//! if it decides to restart, they are stopped first, `SIGKILL` at the hard
//! timeout.

use std::sync::Arc;

use lameduck::{BoxError, Context};
use nix::sys::signal::Signal;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::instance::Instance;
use super::known::Told;
use super::program::{Commands, lost, say_end};
use super::supervisor::{Command, Supervisor};
use super::tree::{Proc, Tree};

/// How often the processes still alive are listed while the program stops.
const TREE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Stopping: the stop signal, the shutdown timeout, `SIGKILL` at the
/// cancel signal.
pub(super) async fn stop(
    sup: &Supervisor,
    ctx: &Context,
    mut cur: Instance,
    (mut stopping_with, mut told): (Option<Signal>, Told),
    tree: Tree,
    commands: &mut Commands,
) -> Result<(), BoxError> {
    let pgid = cur.pid();
    let pid = pgid.as_raw();
    // A second signal that cut the drain short may be here before it was
    // read: it is the one the program gets.
    while let Ok(cmd) = commands.try_recv() {
        match cmd {
            Command::StopNow(sig) => {
                if stopping_with.is_none() {
                    tracing::info!(target: "lameduck::run", pid, signal = sig.as_str(), "stopping the program now, without waiting out the drain");
                    sup.known.begin_stop(&mut told, &cur, sig);
                    stopping_with = Some(sig);
                }
            }
            Command::Restart(reply) => refuse(reply),
        }
    }
    // Before the stop signal: the sockets stop listening when the program
    // closes its own copies, as they would without lameduck.
    sup.launch.sockets.give_up(false);
    let sig = match stopping_with {
        Some(sig) => sig,
        None => {
            tracing::info!(target: "lameduck::run", pid, signal = sup.stop_signal.as_str(), "stopping the program");
            sup.known.begin_stop(&mut told, &cur, sup.stop_signal);
            sup.stop_signal
        }
    };
    let found = sup.known.look(pgid);
    tree.update(&found);
    // From here the report names each of them that is still alive.
    tracing::info!(target: "lameduck::run", pid, processes = found.len(), "waiting for the program's processes to exit");
    let sent = wait_out(sup, ctx, &mut cur, tree, (told, sig), commands, None).await;
    if let Some(ended) = cur.ended() {
        say_end(ctx, ended, &sent);
    }
    sup.forget(cur.pid());
    lost(sup)
}

/// The program `cur` ended by itself and left processes running (`left`,
/// found now, and its group): they are the shutdown's to wait for, as the
/// program's processes are at a `SIGTERM`. They are tracked at once (the
/// inventory at Stopping names them), hear the stop signal now, and are
/// waited for in the background — the component returns, so that a
/// program gone for good starts the shutdown without a drain, and the
/// restart policy decides on a crash — up to the shutdown timeout;
/// `SIGKILL` then.
///
/// `crashed`: the program ended for a restart policy that may start it
/// again. If the policy does (before a shutdown begins), they are the
/// restart's: `SIGKILL` once the hard timeout has passed since now, and
/// the next run starts the program only once they are gone (it waits for
/// [`Supervisor::leftovers`], taken here before the run returns).
pub(super) fn leftovers(
    sup: &Arc<Supervisor>,
    ctx: &Context,
    cur: Instance,
    (tree, left): (Tree, &[Proc]),
    mut told: Told,
    crashed: bool,
) {
    // Taken now, not in the task: the next run may be under way before
    // the task first runs.
    let gate = crashed
        .then(|| sup.leftovers.clone().try_lock_owned().ok())
        .flatten();
    let restart = crashed.then(|| {
        let mut decided = sup.restarts.clone();
        // Decisions from now on only.
        decided.borrow_and_update();
        Restart {
            decided,
            is_decided: false,
            deadline: Instant::now() + sup.hard_timeout,
        }
    });
    tree.update(left);
    sup.known.begin_stop(&mut told, &cur, sup.stop_signal);
    let (sup, ctx) = (sup.clone(), ctx.clone());
    tokio::spawn(async move {
        let mut cur = cur;
        // The component has returned (or returns now): the commands are
        // this task's, a second signal forwarded to what is left.
        let mut commands = sup.commands.lock().await;
        wait_out(
            &sup,
            &ctx,
            &mut cur,
            tree,
            (told, sup.stop_signal),
            &mut commands,
            restart,
        )
        .await;
        sup.forget(cur.pid());
        drop(gate);
    });
}

/// What a crashed run left, while the restart policy may start the
/// program again.
struct Restart {
    /// Changes when the policy decides to restart.
    decided: watch::Receiver<u32>,
    is_decided: bool,
    /// The crash, plus the hard timeout.
    deadline: Instant,
}

/// Waits until the program of `cur` has exited and every process of it
/// is gone, each tracked in `tree` while it lives; those found outside the
/// group hear `sig` once (`told`). At the cancel signal (the shutdown
/// timeout passed) `SIGKILL` goes to all of them, marked ended by the
/// shutdown; with `restart`, once the restart is decided (and no shutdown
/// began), at its deadline. Returns the signals sent to stop them.
async fn wait_out(
    sup: &Supervisor,
    ctx: &Context,
    cur: &mut Instance,
    tree: Tree,
    (mut told, sig): (Told, Signal),
    commands: &mut Commands,
    mut restart: Option<Restart>,
) -> Vec<Signal> {
    let pgid = cur.pid();
    let pid = pgid.as_raw();
    let mut sent = vec![sig];
    let what = if cur.ended().is_some() {
        "what the program left running"
    } else {
        "the program"
    };
    let mut killed = false;
    // Every descendant is waited for: the program, its group, and every
    // process of it lameduck knows of (by pid and start time). Every
    // descendant hears the stop signal: the group's, and those that left
    // it (`setsid`), each once, as it is found.
    loop {
        let found = sup.known.look(pgid);
        tree.update(&found);
        sup.known.tell(
            &mut told,
            &found,
            pgid,
            if killed { Signal::SIGKILL } else { sent[0] },
        );
        if cur.ended().is_some() && found.is_empty() && sup.known.all_ended() {
            break;
        }
        // Once the restart is decided: its SIGKILL.
        let due = restart
            .as_ref()
            .filter(|r| r.is_decided)
            .map(|r| r.deadline);
        tokio::select! {
            // Said as it happens, not once its processes are gone too.
            ended = cur.exited(), if cur.ended().is_none() => {
                tracing::info!(target: "lameduck::run", pid, "the program exited: {ended}");
            }
            () = sup.reaper.reaped() => {}
            () = ctx.on_cancelled(), if !killed => {
                tracing::warn!(target: "lameduck::run", pid, "{what} did not stop within the shutdown timeout: SIGKILL to its group and its descendants");
                tree.update(&sup.known.look(pgid));
                tree.killed_by_the_shutdown();
                // From now on, one found late (orphaned by this kill, say)
                // is killed as it is found.
                told.extend(sup.known.kill_instance(pgid));
                told.extend(sup.known.kill_all());
                // lameduck's own kill: the exit code is the report's
                // (3, deadline exceeded), not 128 + SIGKILL.
                sent.push(Signal::SIGKILL);
                killed = true;
            }
            Ok(()) = decided(&mut restart), if !killed => {
                if let Some(r) = restart.as_mut() {
                    r.is_decided = true;
                }
            }
            () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if !killed && due.is_some() => {
                if ctx.is_draining() {
                    // A shutdown began meanwhile: the program is not
                    // started again, and they are its work.
                    restart = None;
                } else {
                    let pids: Vec<i32> = sup.known.look(pgid).iter().map(|p| p.pid.as_raw()).collect();
                    tracing::warn!(target: "lameduck::run", pid, pids = ?pids, hard_timeout_ms = sup.hard_timeout.as_millis() as u64, "what the crashed program left running did not stop within the hard timeout: SIGKILL before it is started again");
                    told.extend(sup.known.kill_instance(pgid));
                    sent.push(Signal::SIGKILL);
                    killed = true;
                }
            }
            () = tokio::time::sleep(TREE_POLL) => {}
            Some(cmd) = commands.recv() => match cmd {
                // A second signal after the drain: forwarded at once.
                Command::StopNow(sig) => {
                    tracing::info!(target: "lameduck::run", pid, signal = sig.as_str(), "forwarding the signal to the program");
                    sup.known.forward(&told, pgid, sig);
                    sent.push(sig);
                }
                Command::Restart(reply) => match &restart {
                    Some(_) => {
                        let _ = reply.send(Err("the program is down after a crash; it is started again once what it left running is gone".into()));
                    }
                    None => refuse(reply),
                },
            },
        }
    }
    tree.clear();
    sent
}

/// Completes when the restart policy decides to restart (once).
async fn decided(restart: &mut Option<Restart>) -> Result<(), watch::error::RecvError> {
    match restart {
        Some(r) if !r.is_decided => r.decided.changed().await,
        _ => std::future::pending().await,
    }
}

/// A restart asked for once the program is being stopped.
fn refuse(reply: oneshot::Sender<Result<u32, String>>) {
    let _ = reply.send(Err("lameduck is shutting down".into()));
}
