//! WebSocket connections that say `1001 Going Away` at Stopping.

use std::future::Future;
use std::pin::Pin;

use axum::extract::FromRequestParts;
use axum::extract::ws::{self, CloseFrame, Message, close_code};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use super::MissingCancel;
use crate::http::{Cancel, CancelledFuture, StoppingFuture, StreamEnd};

/// axum's [`WebSocketUpgrade`](ws::WebSocketUpgrade), whose socket takes
/// part in the shutdown: see [`WebSocket`].
///
/// Rejects the request with `500` when it did not come through a lameduck
/// server or layer (see the [module docs](super)), and as axum's does when
/// it is not a WebSocket handshake.
#[derive(Debug)]
pub struct WebSocketUpgrade {
    inner: ws::WebSocketUpgrade,
    cancel: Cancel,
    end: StreamEnd,
}

impl WebSocketUpgrade {
    /// Completes the upgrade and runs `callback` with the socket, as
    /// axum's [`on_upgrade`](ws::WebSocketUpgrade::on_upgrade).
    #[must_use = "to set up the WebSocket connection, this response must be returned"]
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (cancel, end) = (self.cancel, self.end);
        let mut resp = self
            .inner
            .on_upgrade(move |socket| callback(WebSocket::new(socket, cancel, end)));
        resp.extensions_mut().insert(end);
        resp
    }

    /// When the shutdown ends the connection (default
    /// [`StreamEnd::AtStopping`]: `1001 Going Away` at Stopping, closed by
    /// the server after its close handshake window; see [`StreamEnd`]).
    pub fn stream_end(mut self, end: StreamEnd) -> Self {
        self.end = end;
        self
    }

    /// Adjusts axum's upgrade (protocols, message and buffer sizes).
    pub fn map(mut self, f: impl FnOnce(ws::WebSocketUpgrade) -> ws::WebSocketUpgrade) -> Self {
        self.inner = f(self.inner);
        self
    }

    /// The request's shutdown signals.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// axum's upgrade, without the going-away behaviour.
    pub fn into_inner(self) -> ws::WebSocketUpgrade {
        self.inner
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let cancel = Cancel::of(&parts.extensions).ok_or_else(|| MissingCancel.into_response())?;
        let inner = ws::WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            inner,
            cancel,
            end: StreamEnd::default(),
        })
    }
}

/// An axum [`WebSocket`](ws::WebSocket) that goes away cleanly when the
/// server shuts down.
///
/// | when | it |
/// |---|---|
/// | Stopping | sends a close frame `1001 Going Away`, so the client reconnects (to another instance) |
/// | then | [`recv`](Self::recv) yields what the client still sends until its close frame answers ours, then `None` |
/// | the server's [close handshake window](crate::http::Server::close_handshake_window) passed, still no answer | [`recv`](Self::recv) gives up: `None`, and the server closes the connection |
/// | with [`StreamEnd::AtCancel`](crate::http::StreamEnd) on the response: Cancelling, still no answer | [`recv`](Self::recv) gives up: `None` |
/// | hard deadline | the server closes the connection under it |
///
/// A loop `while let Some(Ok(msg)) = socket.recv().await` thus ends on its
/// own at Stopping, after the closing handshake.
#[derive(Debug)]
pub struct WebSocket {
    inner: ws::WebSocket,
    cancel: Cancel,
    stopping: Pin<Box<StoppingFuture>>,
    cancelled: Pin<Box<CancelledFuture>>,
    state: State,
    /// The server closes the socket at the close handshake window (the
    /// default), rather than leaving it to the handler.
    bounded: bool,
}

/// Sleeps until `at`, or for ever when there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Our close frame is sent; waiting for the client's.
    Closing,
    Closed,
}

impl WebSocket {
    fn new(inner: ws::WebSocket, cancel: Cancel, end: StreamEnd) -> Self {
        Self {
            bounded: end == StreamEnd::AtStopping,
            inner,
            stopping: Box::pin(cancel.stopping()),
            cancelled: Box::pin(cancel.cancelled()),
            cancel,
            state: State::Open,
        }
    }

    /// Receives the next message; `None` once the connection is closed,
    /// including after the server went away.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as axum's: a message is only taken when returned.
    pub async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        loop {
            match self.state {
                State::Open => {
                    tokio::select! {
                        biased;
                        msg = self.inner.recv() => {
                            if matches!(msg, None | Some(Ok(Message::Close(_)))) {
                                self.state = State::Closed;
                            }
                            return msg;
                        }
                        () = self.stopping.as_mut() => {
                            // Closing before sending means a second call
                            // does not send the frame twice.
                            self.state = State::Closing;
                            let frame = CloseFrame {
                                code: close_code::AWAY,
                                reason: "server shutting down".into(),
                            };
                            if let Err(err) = self.inner.send(Message::Close(Some(frame))).await {
                                self.state = State::Closed;
                                return Some(Err(err));
                            }
                        }
                    }
                }
                State::Closing => {
                    // The window is the server's; a response that opted out
                    // of it (`StreamEnd::AtCancel`) is closed by the server
                    // only at the hard deadline, and gives up at the cancel
                    // signal. Past the window the server closes the socket,
                    // so an error now is the end too.
                    let window = self.cancel.close_deadline().filter(|_| self.bounded);
                    tokio::select! {
                        biased;
                        msg = self.inner.recv() => match msg {
                            None | Some(Ok(Message::Close(_)) | Err(_)) => {
                                self.state = State::Closed;
                                return None;
                            }
                            other => return other,
                        },
                        () = self.cancelled.as_mut() => {
                            self.state = State::Closed;
                            return None;
                        }
                        () = sleep_until_some(window) => {
                            self.state = State::Closed;
                            return None;
                        }
                    }
                }
                State::Closed => return None,
            }
        }
    }

    /// Sends a message.
    ///
    /// # Errors
    ///
    /// axum's, including after the connection closed.
    ///
    /// # Cancel safety
    ///
    /// As axum's `send`: a message may be half-sent.
    pub async fn send(&mut self, msg: Message) -> Result<(), axum::Error> {
        self.inner.send(msg).await
    }

    /// Whether the server has said it is going away.
    pub fn is_going_away(&self) -> bool {
        self.state == State::Closing || self.cancel.is_stopping()
    }

    /// The request's shutdown signals.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// axum's socket, without the going-away behaviour.
    pub fn into_inner(self) -> ws::WebSocket {
        self.inner
    }
}
