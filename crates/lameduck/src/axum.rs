//! axum integration (feature `axum`): the [`Cancel`] extractor and
//! WebSocket connections that go away cleanly.
//!
//! Serve an axum `Router` with [`http::Server`](crate::http::Server) (or
//! wrap it in [`DrainLayer`](crate::http::DrainLayer)); then handlers can
//! take:
//!
//! | extractor | gives |
//! |---|---|
//! | [`Cancel`] | the request's shutdown signals |
//! | [`WebSocketUpgrade`] | axum's, whose socket sends `1001 Going Away` at Stopping |
//!
//! Both take the request's [`Cancel`] from [`Cancel::current`] (or, for
//! a handler tested on its own, from the request's extensions), and reject
//! the request with `500` when there is none, that is, when the router is
//! not served by lameduck: a
//! WebSocket that would silently ignore the shutdown is a bug to find
//! early, not in production.
//!
//! # Examples
//!
//! ```
//! use axum::{Router, routing::get};
//! use lameduck::axum::{WebSocket, WebSocketUpgrade};
//! use lameduck::http::Cancel;
//!
//! async fn slow(cancel: Cancel) -> &'static str {
//!     tokio::select! {
//!         () = tokio::time::sleep(std::time::Duration::from_secs(5)) => "done",
//!         () = cancel.cancelled() => "cancelled",
//!     }
//! }
//!
//! async fn echo(ws: WebSocketUpgrade) -> axum::response::Response {
//!     ws.on_upgrade(|mut socket: WebSocket| async move {
//!         // `recv` ends (None) once the server has said 1001 Going Away and
//!         // the client has answered.
//!         while let Some(Ok(msg)) = socket.recv().await {
//!             if socket.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! let app: Router = Router::new().route("/slow", get(slow)).route("/ws", get(echo));
//! # let _ = app;
//! ```

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::http::Cancel;

mod websocket;

pub use websocket::{WebSocket, WebSocketUpgrade};

impl<S: Send + Sync> FromRequestParts<S> for Cancel {
    type Rejection = MissingCancel;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, MissingCancel> {
        Cancel::of(&parts.extensions).ok_or(MissingCancel)
    }
}

/// The rejection of a lameduck extractor on a request that no lameduck
/// server or layer has seen: `500`.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct MissingCancel;

impl IntoResponse for MissingCancel {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "lameduck::http::Cancel is missing: serve the router with lameduck::http::Server or wrap it in DrainLayer\n",
        )
            .into_response()
    }
}
