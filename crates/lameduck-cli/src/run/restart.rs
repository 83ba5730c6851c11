//! A zero-downtime restart of the program, by the running `program`
//! component: a new instance with the same sockets, ready by its check,
//! then the old one stopped — and a restart is said complete only for a
//! new instance that still runs.

use std::sync::Arc;

use lameduck::Context;
use tokio::sync::{Semaphore, oneshot};

use super::checks::State;
use super::instance::Instance;
use super::known::Told;
use super::program::Check;
use super::supervisor::Supervisor;
use super::tree;

/// One restart at a time, from the start of the new instance to the end of
/// the old one.
static RESTARTS: Semaphore = Semaphore::const_new(1);

/// A zero-downtime restart: a new instance with the same sockets; once it
/// is ready it replaces `cur`, and the old one is stopped (in the
/// background, tracked). On failure the new one is stopped and `cur` goes
/// on serving.
pub(super) async fn restart(
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
    // Each process of the running instance is known as its own before a
    // second instance exists: the old instance stopped later is all of it.
    sup.known.look(cur.pid());
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
        sup.known
            .stop(
                &mut new,
                sup.stop_signal,
                sup.hard_timeout,
                &sup.reaper,
                &Told::default(),
            )
            .await;
        sup.forget(new.pid());
        if ctx.is_draining() {
            // Not a failure of the program's: the shutdown stops the
            // running instance too.
            tracing::info!(target: "lameduck::run", new_pid, reason = %why, "restart abandoned by the shutdown; the new instance is stopped");
            let _ = reply.send(Err(why));
            return;
        }
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
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let killed = sup
            .known
            .stop(
                &mut old,
                sup.stop_signal,
                sup.shutdown_timeout,
                &sup.reaper,
                &Told::default(),
            )
            .await;
        // Killed — at its own grace, or by the shutdown's at its timeout —
        // it did not finish: the report and the flight record say it
        // ended by the shutdown, as for every process lameduck kills.
        if ctx.is_draining() && (killed || ctx.is_cancelled()) {
            ctx.tracker().mark_ended(&work);
        }
        drop(work);
        let ended = old.ended();
        sup.forget(old.pid());
        let ended = ended.map_or_else(String::new, |e| e.to_string());
        // Its check passed, but that says nothing of now: a check answered
        // by the old instance (a port the program binds itself) passes for
        // a new one that then failed.
        if !tree::leads(nix::unistd::Pid::from_raw(new_pid)) {
            if ctx.is_draining() {
                let why = format!(
                    "lameduck began shutting down during the restart: the old instance (pid {old_pid}) is stopped, and the new one (pid {new_pid}) ended with the shutdown"
                );
                tracing::info!(target: "lameduck::run", new_pid, old_pid, ended = %ended, reason = %why, "restart abandoned by the shutdown");
                let _ = reply.send(Err(why));
                return;
            }
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
