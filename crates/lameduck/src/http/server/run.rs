//! A server's run: accept until Stopping, take the accept queue, then wait
//! for every connection, request and upgraded connection to finish.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

use super::admin::AdminContext;
use super::{ResBody, Server, ServiceBound, connection};
use crate::accept::{is_fatal, is_per_connection};
use crate::http::shared::{Orphans, Shared, Signals, Stage};
use crate::http::{Listener, Probes};
use crate::{BoxError, Context, Phase};

/// The pause after an accept error that is not about one connection
/// (typically `EMFILE`): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(super) async fn serve<S, L, B>(server: Server<S, L>, ctx: Context) -> Result<(), BoxError>
where
    L: Listener,
    S: ServiceBound<B>,
    B: ResBody,
{
    let Server {
        name: _,
        mut listener,
        service,
        admin,
        probes_on_main,
        builder,
        first_request_grace,
        close_window,
        idle_timeout,
        head_timeout,
        shared_listener,
        tls,
    } = server;
    #[cfg(feature = "tls")]
    if let Some(tls) = tls.as_ref().filter(|t| t.has_files()) {
        let tls = tls.clone();
        ctx.on_reload(move || tls.reload().map_err(Into::into));
    }
    let signals = Arc::new(Signals::from_context(&ctx).with_close_window(close_window));
    let _follower = AbortOnDropHandle::new(tokio::spawn(signals.clone().follow()));
    let (orphans, mut adopted) = mpsc::unbounded_channel();
    let health = ctx.app().health().clone();
    let shared = Arc::new(Shared {
        probes: probes_on_main.then(|| Probes::new(health.clone())),
        first_request_grace,
        idle_timeout: idle_timeout.map(|t| (t, keep_alive_header(t))),
        head_timeout,
        stats: crate::http::stats::for_component(&ctx),
        ..Shared::new(signals, ctx.tracker().clone(), Orphans::Server(orphans))
    });
    // Returning or being aborted at the hard deadline closes the upgraded
    // connections still open: they live in their handlers' tasks, which
    // aborting this future does not reach.
    let _kill = KillOnDrop(shared.clone());
    if let Some(stats) = &shared.stats {
        stats.watch_connections(Arc::downgrade(&shared));
    }
    crate::http::traffic::watch(&ctx, &shared);
    ctx.list_connections({
        let shared = Arc::downgrade(&shared);
        move || shared.upgrade().map(|s| s.inventory()).unwrap_or_default()
    });
    ctx.describe_holdups({
        let shared = Arc::downgrade(&shared);
        move || {
            shared
                .upgrade()
                .map(|s| s.describe_open())
                .unwrap_or_default()
        }
    });
    let _watcher = AbortOnDropHandle::new(tokio::spawn(shared.clone().watch_connections()));
    let builder = Arc::new(builder);
    let mut admin: Pin<Box<dyn Future<Output = io::Result<()>> + Send>> = match admin {
        Some(admin) => {
            // Served until the app's run ends, not this component's: the
            // probes answer through Closing, and so does `/metrics`, for
            // the final scrape.
            let task = tokio::spawn((admin.serve)(AdminContext {
                probes: Probes::for_admin(ctx.app()),
                builder: builder.clone(),
                draining: ctx.draining_token(),
                phases: ctx.app().watch_phase(),
            }));
            ctx.app().keep_until_stopped(task.abort_handle());
            Box::pin(async move {
                match task.await {
                    Ok(ended) => ended,
                    // Aborted at the end of the app's run: nothing more to
                    // serve, and nothing to poll again.
                    Err(_) => std::future::pending().await,
                }
            })
        }
        None => Box::pin(std::future::pending()),
    };
    // Connections and orphaned handlers: dropping the set (when the run is
    // aborted) aborts them all.
    let mut tasks = JoinSet::new();
    let mut stages = shared.signals.subscribe();
    match listener.local_addr() {
        Ok(addr) => {
            tracing::info!(target: "lameduck::http", component = %ctx.name(), addr = ?addr, "listening")
        }
        Err(err) => {
            tracing::info!(target: "lameduck::http", component = %ctx.name(), error = %err, "listening (address unknown)")
        }
    }
    ctx.ready();
    // Another process may be serving this socket now (the parent of an
    // upgrade, or systemd holding the queue): accept only once the whole app
    // is Running, so that a process failing during start-up takes no
    // connection with it; the other process serves the queue meanwhile. An
    // app that never reaches Running never accepts.
    let mut wait_running = listener.is_inherited();
    let mut phases = ctx.app().watch_phase();
    let mut running = std::pin::pin!(async move {
        let _ = phases.wait_for(|p| *p == Phase::Running).await;
    });

    while shared.stage() < Stage::Stopping {
        tokio::select! {
            biased;
            changed = stages.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            Some(orphan) = adopted.recv() => {
                tasks.spawn(orphan);
            }
            () = &mut running, if wait_running => wait_running = false,
            accepted = listener.accept(), if !wait_running => match accepted {
                Ok((io, peer)) => {
                    tasks.spawn(connection::drive(io, Box::new(peer), tls.clone(), service.clone(), shared.clone(), builder.clone()));
                }
                Err(err) if is_per_connection(&err) => {}
                // The socket is gone (closed under the server, or not a
                // listening socket): every accept would fail the same way,
                // forever, while nothing is served. The server fails, and
                // its restart policy or the app's shutdown takes over.
                Err(err) if is_fatal(&err) => {
                    tracing::error!(target: "lameduck::http", component = %ctx.name(), error = %err, "the listener cannot accept any more");
                    return Err(format!("the listener cannot accept any more: {err}").into());
                }
                Err(err) => {
                    tracing::warn!(target: "lameduck::http", component = %ctx.name(), error = %err, "accept failed; pausing");
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        _ = stages.changed() => {}
                    }
                }
            },
            admin = &mut admin => return admin_failed(admin),
        }
    }

    // Stopping: what the kernel already accepted is served, not reset —
    // unless another process holds the socket too (`shared_listener`): then
    // its queue, and any filter on it, are that process's business, and
    // only this process's descriptor goes.
    let queued = if shared_listener {
        drop(listener);
        Vec::new()
    } else {
        listener.close()
    };
    tracing::info!(target: "lameduck::http", component = %ctx.name(), queued = queued.len(), open = tasks.len(), "stopped accepting");
    for (io, peer) in queued {
        tasks.spawn(connection::drive(
            io,
            Box::new(peer),
            tls.clone(),
            service.clone(),
            shared.clone(),
            builder.clone(),
        ));
    }
    drop(service);

    loop {
        // Thousands of idle connections close at once at Stopping: reap
        // them in a tight loop, not one select round each.
        while tasks.try_join_next().is_some() {}
        while let Ok(orphan) = adopted.try_recv() {
            tasks.spawn(orphan);
        }
        if tasks.is_empty() {
            if shared.tracker.is_empty() {
                break;
            }
            // Only upgraded connections are left: they end with their IO.
            tokio::select! {
                biased;
                Some(orphan) = adopted.recv() => {
                    tasks.spawn(orphan);
                }
                () = shared.tracker.wait_idle() => {}
                admin = &mut admin => return admin_failed(admin),
            }
        } else {
            tokio::select! {
                biased;
                Some(orphan) = adopted.recv() => {
                    tasks.spawn(orphan);
                }
                Some(_) = tasks.join_next() => {}
                admin = &mut admin => return admin_failed(admin),
            }
        }
    }
    tracing::info!(target: "lameduck::http", component = %ctx.name(), "every connection closed");
    Ok(())
}

/// The `Keep-Alive` header that announces `idle`: one second less, rounded
/// down, so that a client acting on it retires the connection first. None
/// under 2 s, where that leaves no whole second: `timeout=0` is no promise
/// a pool can keep (Node's agent reads it as "never reuse", others as "no
/// limit").
///
/// The default's is a static value: a clone of it, one per response,
/// copies two words, where a clone of a value built at run time takes a
/// reference count (and its drop gives it back).
fn keep_alive_header(idle: Duration) -> Option<http::HeaderValue> {
    if idle == super::DEFAULT_IDLE_TIMEOUT {
        return Some(http::HeaderValue::from_static(DEFAULT_KEEP_ALIVE));
    }
    let secs = idle.saturating_sub(Duration::from_secs(1)).as_secs();
    (secs > 0).then(|| {
        http::HeaderValue::from_str(&format!("timeout={secs}"))
            .expect("digits make a valid header value")
    })
}

/// [`keep_alive_header`] of [`DEFAULT_IDLE_TIMEOUT`](super::DEFAULT_IDLE_TIMEOUT).
const DEFAULT_KEEP_ALIVE: &str = "timeout=619";

/// The admin listener's run ended, which it does only when it cannot
/// accept any more: the server fails with it.
fn admin_failed(ended: io::Result<()>) -> Result<(), BoxError> {
    let err = ended
        .err()
        .unwrap_or_else(|| io::Error::other("the admin listener stopped"));
    Err(format!("the admin listener failed: {err}").into())
}

/// Kills the server's upgraded connections when dropped.
struct KillOnDrop(Arc<Shared>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{DEFAULT_KEEP_ALIVE, keep_alive_header};
    use crate::http::server::DEFAULT_IDLE_TIMEOUT;

    #[test]
    fn the_default_keep_alive_announcement_is_the_one_its_timeout_makes() {
        // One second past the default, the value is built as any other's.
        let next = keep_alive_header(DEFAULT_IDLE_TIMEOUT + Duration::from_secs(1)).unwrap();
        assert_eq!(next, "timeout=620");
        let default = keep_alive_header(DEFAULT_IDLE_TIMEOUT).unwrap();
        let secs = DEFAULT_IDLE_TIMEOUT.as_secs() - 1;
        assert_eq!(default, format!("timeout={secs}").as_str());
        assert_eq!(default, DEFAULT_KEEP_ALIVE);
    }
}
