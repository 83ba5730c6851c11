//! The `program` component: one run of it supervises one instance of the
//! program from its start to its end, through the app's phases, and
//! replaces it on a zero-downtime restart. The library restarts the
//! component (so the program) after a crash, by its restart policy.
//!
//! Each run says how its program ended ([`Context::set_program_exit`])
//! unless lameduck stopped it: the library makes that the report's status
//! when the run is the last, so the report, the flight record and
//! lameduck's exit code give one number.

use std::sync::Arc;

use lameduck::{BoxError, Context, ProgramExit};
use nix::sys::signal::Signal;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::checks::State;
use super::instance::{self, Instance};
use super::reaper::Ended;
use super::supervisor::{Command, Supervisor};
use super::tree::{self, Tree};

/// How often the processes still alive are listed while the program stops.
const TREE_POLL: std::time::Duration = std::time::Duration::from_millis(20);
/// How often they are listed during the drain, when they are only named
/// (in the inventory at Stopping), not waited for.
const DRAIN_TREE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// One restart at a time, from the start of the new instance to the end of
/// the old one.
static RESTARTS: Semaphore = Semaphore::const_new(1);

type Check = Option<watch::Receiver<State>>;
type Commands = mpsc::UnboundedReceiver<Command>;

/// One run of the component.
pub async fn run(sup: Arc<Supervisor>, ctx: Context) -> Result<(), BoxError> {
    let mut commands = sup.commands.lock().await;
    // Requests made while the program was down are stale.
    while let Ok(cmd) = commands.try_recv() {
        if let Command::Restart(reply) = cmd {
            let _ = reply.send(Err(
                "the program was not running; it is starting again now".into()
            ));
        }
    }
    ctx.healthy();
    let mut cur = match sup.start() {
        Ok(inst) => inst,
        Err(err) => {
            tracing::error!(target: "lameduck::run", exit_code = err.code, "{}", err.message);
            let why = err.message.clone();
            ctx.set_program_exit(ProgramExit::NotStarted(err.code));
            ctx.app()
                .shutdown(format!("the program cannot be started: {why}"));
            ctx.on_stopping().await;
            sup.launch.sockets.give_up(true);
            return Ok(());
        }
    };
    let mut ready = sup.readiness(&cur);
    // Liveness is checked from the moment the program is ready (as a
    // Kubernetes liveness probe waits for the startup probe): a program
    // still starting is not dead.
    let mut live = None;
    if ready.is_none() {
        ctx.ready();
        live = sup.liveness(&cur);
    }
    let mut stopping_with: Option<Signal> = None;
    // From the drain on, the program's processes are its work in flight:
    // the inventory taken as Stopping begins names them.
    let mut tree: Option<Tree> = None;
    loop {
        tokio::select! {
            biased;
            ended = cur.exited() => {
                drop(tree.take());
                return exited(&sup, &ctx, cur, ended, stopping_with).await;
            }
            () = ctx.on_stopping() => {
                return stop(&sup, &ctx, cur, stopping_with, tree, &mut commands).await;
            }
            () = ctx.on_draining(), if tree.is_none() => {
                let mut processes = Tree::new(ctx.tracker().clone());
                processes.update(&alive(&sup, cur.pid()));
                tree = Some(processes);
            }
            () = tokio::time::sleep(DRAIN_TREE_POLL), if tree.is_some() => {
                if let Some(processes) = tree.as_mut() {
                    processes.update(&alive(&sup, cur.pid()));
                }
            }
            Some(cmd) = commands.recv() => match cmd {
                Command::StopNow(sig) => {
                    // The shutdown was asked for first: wait until the app
                    // has begun it, so that the exit is not taken for a crash.
                    ctx.on_draining().await;
                    tracing::info!(target: "lameduck::run", pid = cur.pid().as_raw(), signal = sig.as_str(), "stopping the program now, without waiting out the drain");
                    sup.launch.sockets.give_up(false);
                    cur.signal(sig);
                    stopping_with = Some(sig);
                }
                Command::Restart(reply) => {
                    restart(&sup, &ctx, &mut cur, &mut ready, &mut live, reply).await;
                }
            },
            state = changed(&mut ready) => match state {
                State::Passing => {
                    ctx.ready();
                    if live.is_none() {
                        live = sup.liveness(&cur);
                    }
                }
                State::Starting(_) => {}
                State::Failing(why) => {
                    tracing::warn!(target: "lameduck::run", pid = cur.pid().as_raw(), reason = %why, "the program is not ready");
                    ctx.unready(why);
                }
            },
            state = changed(&mut live) => {
                if let State::Failing(why) = state {
                    return unhealthy(&sup, &ctx, cur, &why).await;
                }
            }
        }
    }
}

/// The next state of a check; pends forever without one.
async fn changed(check: &mut Check) -> State {
    match check {
        Some(rx) => match rx.changed().await {
            Ok(()) => rx.borrow_and_update().clone(),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The program ended on its own (or on a stop lameduck sent before the
/// drain ended).
async fn exited(
    sup: &Supervisor,
    ctx: &Context,
    mut cur: Instance,
    ended: Ended,
    stopping_with: Option<Signal>,
) -> Result<(), BoxError> {
    say_end(ctx, ended, stopping_with.as_slice());
    let pid = cur.pid().as_raw();
    if stopping_with.is_some() || ctx.is_draining() {
        tracing::info!(target: "lameduck::run", pid, "the program exited: {ended}");
    } else if ended.is_success() {
        tracing::info!(target: "lameduck::run", pid, "the program exited: {ended}");
    } else {
        tracing::warn!(target: "lameduck::run", pid, "the program exited: {ended}");
        ctx.unready(format!("the program exited: {ended}"));
    }
    // Its children, left behind, go with it.
    if cur.group_alive() {
        tracing::info!(target: "lameduck::run", pid, "stopping what the program left running in its process group");
        cur.stop(sup.stop_signal, sup.hard_timeout, &sup.reaper)
            .await;
    }
    sup.forget(cur.pid());
    let shutting_down = stopping_with.is_some() || ctx.is_draining();
    if shutting_down {
        // Nobody accepts any more: connections are refused from now on.
        sup.launch.sockets.give_up(true);
        return lost(sup);
    }
    let failed = !ended.is_success();
    if !sup.restarts_after(failed) {
        // lameduck exits, the program is not started again: what the
        // sockets queued from now on would be reset at the exit.
        sup.launch.sockets.give_up(true);
        if let Some(why) = sup.launch.sockets.lost_said() {
            // A failure, not a restart: the shutdown is under way before
            // the component says so.
            ctx.app().shutdown(format!("the program exited: {ended}"));
            ctx.on_draining().await;
            return Err(why.into());
        }
    }
    if failed {
        Err(ended.to_string().into())
    } else {
        Ok(())
    }
}

/// The component's end in a shutdown: a failure when connections were lost
/// with the sockets, so that the report does not say clean.
fn lost(sup: &Supervisor) -> Result<(), BoxError> {
    match sup.launch.sockets.lost_said() {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Stopping: the stop signal, the shutdown timeout, `SIGKILL` at the
/// cancel signal.
async fn stop(
    sup: &Supervisor,
    ctx: &Context,
    mut cur: Instance,
    mut stopping_with: Option<Signal>,
    tree: Option<Tree>,
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
                    cur.signal(sig);
                    stopping_with = Some(sig);
                }
            }
            Command::Restart(reply) => refuse(reply),
        }
    }
    // Before the stop signal: the sockets stop listening when the program
    // closes its own copies, as they would without lameduck.
    sup.launch.sockets.give_up(false);
    // The signals lameduck sent this instance to stop it.
    let mut sent = Vec::with_capacity(2);
    match stopping_with {
        Some(sig) => sent.push(sig),
        None => {
            tracing::info!(target: "lameduck::run", pid, signal = sup.stop_signal.as_str(), "stopping the program");
            cur.signal(sup.stop_signal);
            sent.push(sup.stop_signal);
        }
    }
    let alive = || alive(sup, pgid);
    let mut tree = tree.unwrap_or_else(|| Tree::new(ctx.tracker().clone()));
    tree.update(&alive());
    {
        // Every descendant is waited for: the group, then those that left it
        // and were orphaned to lameduck.
        let everything = async {
            cur.gone(&sup.reaper).await;
            let strays = instance::strays(sup.guard.pid());
            if !strays.is_empty() {
                tracing::info!(target: "lameduck::run", pid, strays = ?strays.iter().map(|p| p.as_raw()).collect::<Vec<_>>(), "waiting for descendants that left the program's group");
                instance::signal_each(&strays, sup.stop_signal);
                instance::all_gone(&strays, &sup.reaper).await;
            }
        };
        let mut everything = std::pin::pin!(everything);
        let mut killed = false;
        loop {
            tokio::select! {
                () = &mut everything => break,
                () = ctx.on_cancelled(), if !killed => {
                    tracing::warn!(target: "lameduck::run", pid, "the program did not stop within the shutdown timeout: SIGKILL to its group and its descendants");
                    tree.update(&alive());
                    tree.killed_by_the_shutdown();
                    instance::signal_group(pgid, Signal::SIGKILL);
                    instance::signal_each(&instance::strays(sup.guard.pid()), Signal::SIGKILL);
                    // lameduck's own kill: the exit code is the report's
                    // (3, deadline exceeded), not 128 + SIGKILL.
                    sent.push(Signal::SIGKILL);
                    killed = true;
                }
                () = tokio::time::sleep(TREE_POLL) => tree.update(&alive()),
                Some(cmd) = commands.recv() => match cmd {
                    // A second signal after the drain: forwarded at once.
                    Command::StopNow(sig) => {
                        tracing::info!(target: "lameduck::run", pid, signal = sig.as_str(), "forwarding the signal to the program");
                        instance::signal_group(pgid, sig);
                        sent.push(sig);
                    }
                    Command::Restart(reply) => refuse(reply),
                },
            }
        }
    }
    tree.clear();
    if let Some(ended) = cur.ended() {
        tracing::info!(target: "lameduck::run", pid, "the program exited: {ended}");
        say_end(ctx, ended, &sent);
    }
    sup.forget(cur.pid());
    lost(sup)
}

/// A restart asked for once the program is being stopped.
fn refuse(reply: oneshot::Sender<Result<u32, String>>) {
    let _ = reply.send(Err("lameduck is shutting down".into()));
}

/// Says how the program ended, for lameduck's exit code, unless it ended as
/// lameduck stopped it with one of `sent`: killed by one of them, exiting
/// with 128 + its number (the JVM, shells) or with 0. That is a clean stop,
/// whose code is the report's: 0, or 3 when a deadline passed, or 1 when
/// the restart policy gave up (a liveness check that kept failing).
fn say_end(ctx: &Context, ended: Ended, sent: &[Signal]) {
    let stopped =
        !sent.is_empty() && (ended.is_success() || sent.iter().any(|&sig| ended.is_stop_by(sig)));
    if !stopped {
        ctx.set_program_exit(ended.program_exit());
    }
}

/// The program's processes still alive, each work in flight named at the
/// deadlines: its group, and the descendants that left it.
fn alive(sup: &Supervisor, pgid: nix::unistd::Pid) -> Vec<nix::unistd::Pid> {
    let mut pids = tree::group(pgid);
    pids.extend(instance::strays(sup.guard.pid()));
    pids.sort_unstable_by_key(|p| p.as_raw());
    pids.dedup();
    pids
}

/// The liveness check failed: the program is stopped, and restarted by the
/// restart policy.
async fn unhealthy(
    sup: &Supervisor,
    ctx: &Context,
    mut cur: Instance,
    why: &str,
) -> Result<(), BoxError> {
    let pid = cur.pid().as_raw();
    tracing::error!(target: "lameduck::run", pid, reason = %why, "the program failed its liveness check: stopping it");
    ctx.unhealthy(format!("liveness check failed: {why}"));
    ctx.unready(format!("liveness check failed: {why}"));
    let killed = cur
        .stop(sup.stop_signal, sup.hard_timeout, &sup.reaper)
        .await;
    if let Some(ended) = cur.ended() {
        let sent = [sup.stop_signal, Signal::SIGKILL];
        say_end(ctx, ended, &sent[..if killed { 2 } else { 1 }]);
    }
    sup.forget(cur.pid());
    Err(format!("liveness check failed: {why}").into())
}

/// A zero-downtime restart: a new instance with the same sockets; once it
/// is ready it replaces `cur`, and the old one is stopped (in the
/// background, tracked). On failure the new one is stopped and `cur` goes
/// on serving.
async fn restart(
    sup: &Arc<Supervisor>,
    ctx: &Context,
    cur: &mut Instance,
    ready: &mut Check,
    live: &mut Check,
    reply: oneshot::Sender<Result<u32, String>>,
) {
    let Ok(permit) = RESTARTS.try_acquire() else {
        let _ = reply.send(Err("busy: a restart is under way".into()));
        return;
    };
    if ctx.is_draining() {
        let _ = reply.send(Err("lameduck is shutting down".into()));
        return;
    }
    tracing::info!(target: "lameduck::run", old_pid = cur.pid().as_raw(), "restart: starting a new instance of the program");
    let fail = |why: String, reply: oneshot::Sender<Result<u32, String>>| {
        tracing::error!(target: "lameduck::run", reason = %why, "restart failed; the running instance goes on serving");
        let _ = reply.send(Err(why));
    };
    let mut new = match sup.start() {
        Ok(inst) => inst,
        Err(err) => return fail(err.message, reply),
    };
    let new_pid = new.pid().as_raw();
    let mut new_ready = sup.readiness(&new);
    if new_ready.is_none() {
        tracing::warn!(target: "lameduck::run", new_pid, "no --ready check: the new instance counts as ready as soon as it started, and the old one is stopped at once");
    }
    let outcome = tokio::select! {
        // A check answered on a port both instances could serve may pass
        // while the new one fails (a program that binds its own port):
        // passing counts only while the new instance runs.
        () = passing(&mut new_ready) => if tree::leads(new.pid()) {
            Ok(())
        } else {
            Err(format!("the new instance (pid {new_pid}) exited as its check passed"))
        },
        ended = new.exited() => Err(format!("the new instance (pid {new_pid}) exited before it was ready: {ended}")),
        () = tokio::time::sleep(sup.restart_timeout) => Err(format!(
            "the new instance (pid {new_pid}) was not ready within {}",
            humantime::format_duration(sup.restart_timeout)
        )),
        ended = cur.exited() => Err(format!("the running instance exited during the restart: {ended}")),
        () = ctx.on_draining() => Err("lameduck began shutting down".into()),
    };
    if let Err(why) = outcome {
        new.stop(sup.stop_signal, sup.hard_timeout, &sup.reaper)
            .await;
        sup.forget(new.pid());
        return fail(why, reply);
    }
    let mut old = std::mem::replace(cur, new);
    *ready = new_ready;
    *live = sup.liveness(cur);
    ctx.ready();
    let old_pid = old.pid().as_raw();
    tracing::info!(target: "lameduck::run", new_pid, old_pid, "restart: the new instance is ready; stopping the old one");
    let work = ctx.tracker().track("replaced instance");
    let sup = sup.clone();
    let permit: tokio::sync::SemaphorePermit<'static> = permit;
    tokio::spawn(async move {
        let _permit = permit;
        let _work = work;
        old.stop(sup.stop_signal, sup.shutdown_timeout, &sup.reaper)
            .await;
        let ended = old.ended();
        sup.forget(old.pid());
        let ended = ended.map_or_else(String::new, |e| e.to_string());
        // Its check passed, but that says nothing of now: a check answered
        // by the old instance (a port the program binds itself) passes for
        // a new one that then failed.
        if !tree::leads(nix::unistd::Pid::from_raw(new_pid)) {
            let why = format!(
                "the new instance (pid {new_pid}) exited after its check passed; the old one (pid {old_pid}) is stopped: nothing serves until the program is started again"
            );
            tracing::error!(target: "lameduck::run", new_pid, old_pid, ended = %ended, reason = %why, "restart failed");
            let _ = reply.send(Err(why));
            return;
        }
        tracing::info!(target: "lameduck::run", new_pid, old_pid, ended = %ended, "restart complete");
        let _ = reply.send(Ok(new_pid as u32));
    });
}

/// Completes once the check passes (at once without a check).
async fn passing(check: &mut Check) {
    let Some(rx) = check else { return };
    if rx.wait_for(State::is_passing).await.is_err() {
        std::future::pending::<()>().await;
    }
}
