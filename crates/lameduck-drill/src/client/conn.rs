//! Connections and the keep-alive pool.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::dial::Dialer;
use crate::events::EventLog;
use crate::record::Clock;

type Body = Full<Bytes>;

/// One client connection (a clone of the shared one, for HTTP/2).
#[derive(Debug)]
pub(crate) struct Conn {
    sender: Sender,
    state: Arc<ConnState>,
    /// A clone of the pool's shared HTTP/2 connection: others may be using it.
    shared: bool,
}

#[derive(Debug)]
enum Sender {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

#[derive(Debug, Default)]
struct ConnState {
    /// Set before the drill drops its last handle, so that the connection
    /// task can tell a close of ours from the server's GOAWAY.
    closed_by_us: AtomicBool,
}

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: hyper::Error,
    /// The request never left the drill (the connection was closed first).
    pub(crate) unsent: bool,
}

impl Conn {
    pub(crate) async fn send(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let unsent = |error| SendError {
            error,
            unsent: true,
        };
        let sent = |mut err: hyper::client::conn::TrySendError<Request<Body>>| SendError {
            unsent: err.take_message().is_some(),
            error: err.into_error(),
        };
        match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await.map_err(unsent)?;
                sender.try_send_request(request).await.map_err(sent)
            }
            Sender::H2(sender) => {
                sender.ready().await.map_err(unsent)?;
                sender.try_send_request(request).await.map_err(sent)
            }
        }
    }

    fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(sender) => sender.is_closed(),
            Sender::H2(sender) => sender.is_closed(),
        }
    }

    /// Marks the connection as closed by the drill (when it is this handle's
    /// to close) and drops it.
    pub(crate) fn close_by_us(self) {
        if !self.shared {
            self.state.closed_by_us.store(true, Ordering::Relaxed);
        }
    }
}

/// Opens connections and keeps the idle keep-alive ones.
#[derive(Debug)]
pub(crate) struct Pool {
    dialer: Dialer,
    http2: bool,
    clock: Clock,
    events: Arc<EventLog>,
    closed: AtomicBool,
    /// Idle HTTP/1.1 connections, most recently used last.
    idle: Mutex<Vec<Conn>>,
    /// The HTTP/2 connection all keep-alive requests share; replaced when it
    /// closes. An async lock, so that one connect serves everyone waiting.
    shared: tokio::sync::Mutex<Option<(http2::SendRequest<Body>, Arc<ConnState>)>>,
}

impl Pool {
    pub(crate) fn new(dialer: Dialer, http2: bool, clock: Clock, events: Arc<EventLog>) -> Self {
        Pool {
            dialer,
            http2,
            clock,
            events,
            closed: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
            shared: tokio::sync::Mutex::new(None),
        }
    }

    /// A connection for one request, and whether it was reused.
    pub(crate) async fn checkout(&self, fresh: bool) -> io::Result<(Conn, bool)> {
        if fresh {
            return Ok((self.connect(false).await?, false));
        }
        if self.http2 {
            let mut shared = self.shared.lock().await;
            if let Some((sender, state)) = shared.as_ref()
                && !sender.is_closed()
            {
                let conn = Conn {
                    sender: Sender::H2(sender.clone()),
                    state: Arc::clone(state),
                    shared: true,
                };
                return Ok((conn, true));
            }
            let conn = self.connect(true).await?;
            if let Sender::H2(sender) = &conn.sender {
                *shared = Some((sender.clone(), Arc::clone(&conn.state)));
            }
            return Ok((
                Conn {
                    shared: true,
                    ..conn
                },
                false,
            ));
        }
        loop {
            let found = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match found {
                Some(conn) if conn.is_closed() => conn.close_by_us(),
                Some(conn) => return Ok((conn, true)),
                None => return Ok((self.connect(true).await?, false)),
            }
        }
    }

    /// Gives back a connection whose response was read to the end and did not
    /// ask to close.
    pub(crate) fn checkin(&self, conn: Conn) {
        if conn.shared {
            return;
        }
        if self.closed.load(Ordering::Relaxed) {
            conn.close_by_us();
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }

    /// Forgets the shared HTTP/2 connection `conn` is a clone of, when it
    /// still is the shared one: it handed a request back unsent, so it is
    /// closing, though its handle may not say so yet (hyper marks it closed
    /// only when its task has ended, which over TLS takes the close's
    /// round trips).
    pub(crate) async fn discard(&self, conn: &Conn) {
        if !conn.shared {
            return;
        }
        let mut shared = self.shared.lock().await;
        if shared
            .as_ref()
            .is_some_and(|(_, state)| Arc::ptr_eq(state, &conn.state))
        {
            *shared = None;
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        for conn in self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            conn.close_by_us();
        }
        if let Ok(mut shared) = self.shared.try_lock()
            && let Some((_, state)) = shared.take()
        {
            state.closed_by_us.store(true, Ordering::Relaxed);
        }
    }

    /// Opens a connection; only a keep-alive one reports the server's GOAWAY
    /// as a drain notice (a fresh one is done after one request anyway).
    async fn connect(&self, keepalive: bool) -> io::Result<Conn> {
        let io = TokioIo::new(self.dialer.dial().await?);
        let state = Arc::new(ConnState::default());
        let sender = if self.http2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(io::Error::other)?;
            let state = Arc::clone(&state);
            let (clock, events) = (self.clock, Arc::clone(&self.events));
            tokio::spawn(async move {
                // hyper ends an HTTP/2 client connection with `Ok` when the
                // server sent GOAWAY(NO_ERROR) (or when the drill dropped it),
                // and with an error when the socket closed without one.
                if conn.await.is_ok() && keepalive && !state.closed_by_us.load(Ordering::Relaxed) {
                    events.goaway(clock.now_us());
                }
            });
            Sender::H2(sender)
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(io::Error::other)?;
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        Ok(Conn {
            sender,
            state,
            shared: false,
        })
    }
}
