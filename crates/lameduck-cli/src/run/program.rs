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
use tokio::sync::{mpsc, watch};

use super::checks::State;
use super::instance::Instance;
use super::known::Told;
use super::reaper::Ended;
use super::supervisor::{Command, Supervisor};
use super::tree::Tree;

/// How often they are listed during the drain, when they are only named
/// (in the inventory at Stopping), not waited for.
const DRAIN_TREE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The answer to `reload` on the control socket.
const NOTHING_TO_RELOAD: &str =
    "lameduck run has nothing to reload; SIGHUP or `upgrade` restarts the program";

pub(super) type Check = Option<watch::Receiver<State>>;
pub(super) type Commands = mpsc::UnboundedReceiver<Command>;

/// One run of the component.
pub async fn run(sup: Arc<Supervisor>, ctx: Context) -> Result<(), BoxError> {
    // The control socket's `reload` is for a program that reads its
    // configuration again; lameduck run restarts the program instead, and
    // an `ok` would look like a reload done.
    ctx.on_reload(|| Err(NOTHING_TO_RELOAD.into()));
    // After a crash: once what the crashed instance left running is gone
    // (`stop::leftovers`).
    drop(sup.leftovers.lock().await);
    let mut commands = sup.commands.lock().await;
    if ctx.is_draining() {
        // The shutdown began while it waited: nothing to start.
        return Ok(());
    }
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
    // the inventory taken as Stopping begins names them. The app lists
    // them too as it takes an inventory, before this task has looked.
    let tree = Tree::new(ctx.tracker().clone(), cur.pid());
    let looks = Arc::downgrade(&sup);
    let lister = tree.lister(move |pgid| {
        looks
            .upgrade()
            .map_or_else(Vec::new, |sup| sup.known.look(pgid))
    });
    let (draining, inventory) = (ctx.draining_token(), lister.clone());
    ctx.on_inventory(move || {
        if draining.is_cancelled() {
            inventory.list(false);
        }
    });
    sup.list_before_force(lister);
    let mut tracking = false;
    // The processes told to stop, and when the stop began: each hears the
    // stop signal once, and what starts after it none.
    let mut told = Told::default();
    loop {
        tokio::select! {
            biased;
            ended = cur.exited() => {
                return exited(&sup, &ctx, cur, ended, (stopping_with, told), tree).await;
            }
            () = ctx.on_stopping() => {
                return super::stop::stop(&sup, &ctx, cur, (stopping_with, told), tree, &mut commands).await;
            }
            () = ctx.on_draining(), if !tracking => {
                tree.look(&sup.known);
                tracking = true;
            }
            () = tokio::time::sleep(DRAIN_TREE_POLL), if tracking => tree.look(&sup.known),
            Some(cmd) = commands.recv() => match cmd {
                Command::StopNow(sig) => {
                    // The shutdown was asked for first: wait until the app
                    // has begun it, so that the exit is not taken for a crash.
                    ctx.on_draining().await;
                    tracing::info!(target: "lameduck::run", pid = cur.pid().as_raw(), signal = sig.as_str(), "stopping the program now, without waiting out the drain");
                    sup.launch.sockets.give_up(false);
                    sup.known.begin_stop(&mut told, &cur, sig);
                    stopping_with = Some(sig);
                }
                Command::Restart(reply) => {
                    super::restart::restart(&sup, &ctx, &mut cur, &mut ready, &mut live, reply).await;
                    tree.follow(cur.pid());
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
/// drain ended). `tree`: its processes, tracked from the drain on.
async fn exited(
    sup: &Arc<Supervisor>,
    ctx: &Context,
    cur: Instance,
    ended: Ended,
    (stopping_with, told): (Option<Signal>, Told),
    tree: Tree,
) -> Result<(), BoxError> {
    say_end(ctx, ended, stopping_with.as_slice());
    let pid = cur.pid().as_raw();
    let shutting_down = stopping_with.is_some() || ctx.is_draining();
    if shutting_down || ended.is_success() {
        tracing::info!(target: "lameduck::run", pid, "the program exited: {ended}");
    } else {
        tracing::warn!(target: "lameduck::run", pid, "the program exited: {ended}");
        ctx.unready(format!("the program exited: {ended}"));
    }
    let failed = !ended.is_success();
    // What it left running goes with it — its group and every process of
    // it outside the group (a daemon it started with `setsid`).
    let left = sup.known.look(cur.pid());
    if cur.group_alive() || !left.is_empty() {
        tracing::info!(target: "lameduck::run", pid, pids = ?left.iter().map(|p| p.pid.as_raw()).collect::<Vec<_>>(), "stopping what the program left running");
        // The program's last run, or maybe its last (the restart policy
        // decides once this run returns): the shutdown waits for them,
        // names them, and kills them at its deadline, as at a SIGTERM.
        // Restarted, they are stopped before it starts again.
        let crashed = !shutting_down && sup.restarts_after(failed);
        super::stop::leftovers(sup, ctx, cur, (tree, &left), told, crashed);
    } else {
        tree.clear();
        sup.forget(cur.pid());
    }
    if shutting_down {
        // Nobody accepts any more: connections are refused from now on.
        sup.launch.sockets.give_up(true);
        return lost(sup);
    }
    if let Some(lost) = for_good(sup, ctx, failed, format!("the program exited: {ended}")).await {
        return Err(lost);
    }
    if failed {
        Err(ended.to_string().into())
    } else {
        Ok(())
    }
}

/// The program ended by itself (`failed` or not); when it is not to be
/// started again, lameduck gives up the sockets at once (what they queued
/// from now on would be reset at its exit), and connections lost with them
/// are returned as the component's error, the shutdown (for `reason`)
/// under way first, so that the error is a failure and not a restart.
async fn for_good(
    sup: &Supervisor,
    ctx: &Context,
    failed: bool,
    reason: String,
) -> Option<BoxError> {
    if sup.restarts_after(failed) {
        return None;
    }
    sup.launch.sockets.give_up(true);
    let why = sup.launch.sockets.lost_said()?;
    ctx.app().shutdown(reason);
    ctx.on_draining().await;
    Some(why.into())
}

/// The component's end in a shutdown: a failure when connections were lost
/// with the sockets, so that the report does not say clean.
pub(super) fn lost(sup: &Supervisor) -> Result<(), BoxError> {
    match sup.launch.sockets.lost_said() {
        Some(why) => Err(why.into()),
        None => Ok(()),
    }
}

/// Says how the program ended, for lameduck's exit code, unless it ended as
/// lameduck stopped it with one of `sent`: killed by one of them, exiting
/// with 128 + its number (the JVM, shells) or with 0. That is a clean stop,
/// whose code is the report's: 0, or 3 when a deadline passed, or 1 when
/// the restart policy gave up (a liveness check that kept failing).
pub(super) fn say_end(ctx: &Context, ended: Ended, sent: &[Signal]) {
    let stopped =
        !sent.is_empty() && (ended.is_success() || sent.iter().any(|&sig| ended.is_stop_by(sig)));
    if !stopped {
        ctx.set_program_exit(ended.program_exit());
    }
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
    let killed = sup
        .known
        .stop(
            &mut cur,
            sup.stop_signal,
            sup.hard_timeout,
            &sup.reaper,
            &Told::default(),
        )
        .await;
    if let Some(ended) = cur.ended() {
        let sent = [sup.stop_signal, Signal::SIGKILL];
        say_end(ctx, ended, &sent[..if killed { 2 } else { 1 }]);
    }
    sup.forget(cur.pid());
    let failed = format!("liveness check failed: {why}");
    if let Some(lost) = for_good(sup, ctx, true, failed.clone()).await {
        return Err(lost);
    }
    Err(failed.into())
}
