//! The admin listener: the probes, answered to the very end of the
//! server's run — except across an upgrade's handover, where they must be
//! the new process's.
//!
//! A load balancer that probes `/readyz` on a socket two processes share
//! must hear one process or the other, and 200 from either: never the old
//! process's 503 while the new one serves. So, on a socket shared with
//! another process:
//!
//! - a new process (the socket came from its parent, or from systemd)
//!   accepts only once its app is Running: before that its readiness is
//!   false, and the old process answers;
//! - the old process, the moment it hands the sockets over (an upgrade's
//!   commit), stops accepting, and ends its probe connections: every answer
//!   from then on carries `Connection: close` (HTTP/2: GOAWAY), so probers
//!   reconnect, to the new process, while the old one still answers 200.
//!   When the handover is final, a connection still open is closed when
//!   hyper next reads — unless a request already waits in the socket,
//!   which is answered first, still 200 — and the old process drains (its
//!   readiness turns false) only once none is left. If the old process
//!   takes the sockets back, it accepts again.
//!
//! Idle connections are not closed at the commit itself: a prober that
//! writes its next probe just as the connection closes would see it fail.
//! Probers that probe more often than the settle time
//! ([`Upgrade::settle`](crate::upgrade::Upgrade::settle), by default the
//! drain delay) are all gone by then.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{HeaderValue, Request, Version, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Phase;
use crate::http::{Connection, Listener, Probes};

/// The pause after an accept error that is not about one connection
/// (typically `EMFILE`): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What the admin listener needs from the server.
pub(crate) struct AdminContext {
    pub(crate) probes: Probes,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) draining: CancellationToken,
    pub(crate) phases: watch::Receiver<Phase>,
}

/// Serves the probes on `listener` until dropped.
///
/// # Errors
///
/// When accepting fails for good (the socket is closed or is not a
/// listening socket any more): the server fails with it.
pub(super) async fn serve<A: Listener>(listener: A, cx: AdminContext) -> io::Result<()> {
    let AdminContext {
        probes,
        builder,
        draining,
        mut phases,
    } = cx;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(target: "lameduck::http", addr = ?addr, "probes listening");
    }
    // Connections follow this.
    let (leave, _) = watch::channel(handoff::leave());
    let mut listener = Some(listener);
    let mut watch_draining = true;
    let mut tasks = JoinSet::new();
    // A socket another process may be serving: its probes answer until this
    // app is Running.
    let mut wait_running = listener.as_ref().is_some_and(Listener::is_inherited);
    loop {
        let Some(accepting) = listener.as_mut() else {
            // Not accepting any more: finish the probe connections open.
            if tasks.join_next().await.is_none() {
                std::future::pending::<()>().await;
            }
            continue;
        };
        let now = *leave.borrow();
        tokio::select! {
            biased;
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            next = handoff::changed_from(now) => {
                if next == Leave::Answering {
                    tracing::info!(target: "lameduck::http", "probes left to the process that took over the admin socket; probe connections are told to close");
                }
                leave.send_replace(next);
            }
            () = draining.cancelled(), if watch_draining => {
                watch_draining = false;
                if accepting.is_shared() {
                    // A successor took the socket over (an upgrade): its
                    // probes are the ones a load balancer must see.
                    tracing::info!(target: "lameduck::http", "probes left to the process that took over the admin socket");
                    listener = None;
                }
            }
            running = async { phases.wait_for(|p| *p >= Phase::Running).await.is_ok() }, if wait_running => {
                wait_running = false;
                if !running {
                    // The app is gone.
                    listener = None;
                }
            }
            accepted = accepting.accept(), if !wait_running => match accepted {
                Ok((io, _)) => {
                    let counted = handoff::Counted::open();
                    let conn = drive(io, probes.clone(), builder.clone(), leave.subscribe());
                    tasks.spawn(async move {
                        // Held (and so counted) until the connection ends.
                        let _counted = counted;
                        conn.await;
                    });
                }
                Err(err) if crate::accept::is_per_connection(&err) => {}
                Err(err) if crate::accept::is_fatal(&err) => {
                    tracing::error!(target: "lameduck::http", error = %err, "the admin listener cannot accept any more");
                    return Err(err);
                }
                Err(err) => {
                    tracing::warn!(target: "lameduck::http", error = %err, "admin accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// How a probe connection ends, once another process serves the sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Leave {
    /// Serve it.
    Stay,
    /// Every answer says `Connection: close` (HTTP/2: GOAWAY).
    Answering,
    /// As `Answering`, and an idle connection is closed too: the handover
    /// is final; this process drains once none is left.
    Now,
}

/// The process-wide handover state (features `systemd`, `upgrade`), as
/// the admin listener needs it; without them, nothing is ever handed over.
mod handoff {
    use super::Leave;

    #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
    use crate::listen::owner::{self, Handoff};

    #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
    fn leave_for(h: Handoff) -> Leave {
        match h {
            Handoff::Own => Leave::Stay,
            Handoff::Committed => Leave::Answering,
            Handoff::Leaving => Leave::Now,
        }
    }

    /// How probe connections end now.
    pub(super) fn leave() -> Leave {
        #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
        return leave_for(owner::now());
        #[cfg(not(all(unix, any(feature = "systemd", feature = "upgrade"))))]
        return Leave::Stay;
    }

    /// Completes once probe connections must end otherwise than `now`.
    pub(super) async fn changed_from(now: Leave) -> Leave {
        #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
        loop {
            let current = owner::now();
            let next = leave_for(current);
            if next != now {
                return next;
            }
            owner::changed_from(current).await;
        }
        #[cfg(not(all(unix, any(feature = "systemd", feature = "upgrade"))))]
        {
            let _ = now;
            std::future::pending().await
        }
    }

    /// A probe connection, counted for the process-wide wait before an
    /// old process drains.
    pub(super) struct Counted {
        #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
        _counted: owner::ProbeConnection,
    }

    impl Counted {
        pub(super) fn open() -> Self {
            Self {
                #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
                _counted: owner::ProbeConnection::open(),
            }
        }
    }
}

/// One probe connection: served until it closes, or — once `leave` says so
/// — ended without cutting a request short.
async fn drive<I: Connection>(
    io: I,
    probes: Probes,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut leave: watch::Receiver<Leave>,
) {
    let state = Arc::new(State::default());
    let io = TokioIo::new(AdminIo {
        inner: io,
        state: state.clone(),
    });
    let service = TowerToHyperService::new(Closing {
        probes,
        state: state.clone(),
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut goaway = false;
    let mut now = Leave::Stay;
    loop {
        tokio::select! {
            biased;
            done = conn.as_mut() => {
                if let Err(err) = done {
                    tracing::debug!(target: "lameduck::http", error = %err, "admin connection ended with an error");
                }
                return;
            }
            changed = leave.wait_for(|l| *l > now), if now != Leave::Now => {
                let Ok(l) = changed.map(|l| *l) else {
                    // The listener is gone: so is the server's run.
                    return;
                };
                now = l;
                state.leave(now);
            }
            () = state.h2_seen.notified(), if now != Leave::Stay && !goaway => {}
        }
        if state.closing.load(Ordering::Acquire) && state.h2.load(Ordering::Acquire) && !goaway {
            // HTTP/2 has no `Connection: close`: GOAWAY, and the streams in
            // flight complete.
            conn.as_mut().graceful_shutdown();
            goaway = true;
        }
    }
}

/// What a probe connection's IO and service share.
#[derive(Default)]
struct State {
    /// The process handed the sockets over: answers close the connection.
    closing: AtomicBool,
    /// The process drains: an idle connection ends too.
    end_idle: AtomicBool,
    /// Bytes of a request were read and not answered yet.
    mid_request: AtomicBool,
    /// The connection speaks HTTP/2.
    h2: AtomicBool,
    h2_seen: Notify,
    /// hyper's pending read, woken so that it sees `closing`.
    reader: Mutex<Option<Waker>>,
}

impl State {
    fn leave(&self, how: Leave) {
        self.closing.store(how != Leave::Stay, Ordering::Release);
        if how != Leave::Now {
            return;
        }
        self.end_idle.store(true, Ordering::Release);
        // A poisoned lock still holds a waker or nothing: use it.
        let waker = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// The socket as hyper sees it: end-of-file instead of a wait for the next
/// request, once an idle connection must end and nothing waits to be read.
struct AdminIo<T> {
    inner: T,
    state: Arc<State>,
}

impl<T: Connection> AsyncRead for AdminIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let state = &self.state;
        if state.end_idle.load(Ordering::Acquire)
            && !state.mid_request.load(Ordering::Acquire)
            && !self.inner.has_unread_input()
        {
            // hyper takes this as the client leaving, and closes cleanly.
            return Poll::Ready(Ok(()));
        }
        *state.reader.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.mid_request.store(true, Ordering::Release);
        }
        polled
    }
}

impl<T: Connection> AsyncWrite for AdminIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The probes, plus `Connection: close` on every answer once the
/// connection is closing.
#[derive(Clone)]
struct Closing {
    probes: Probes,
    state: Arc<State>,
}

impl<B> tower_service::Service<Request<B>> for Closing {
    type Response = <Probes as tower_service::Service<Request<B>>>::Response;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::<Request<B>>::poll_ready(&mut self.probes, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let h2 = req.version() == Version::HTTP_2;
        let answered = tower_service::Service::call(&mut self.probes, req);
        let state = &self.state;
        // The request is read: what comes next is a new one.
        state.mid_request.store(false, Ordering::Release);
        if h2 && !state.h2.swap(true, Ordering::AcqRel) {
            state.h2_seen.notify_one();
        }
        if h2 || !state.closing.load(Ordering::Acquire) {
            return answered;
        }
        let Ok(mut resp) = answered.into_inner();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        std::future::ready(Ok(resp))
    }
}
