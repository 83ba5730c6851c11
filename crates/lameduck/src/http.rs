//! HTTP that drains right (feature `http`): a server component that goes
//! through the shutdown sequence connection by connection and request by
//! request, the probes, and a tower layer for servers of your own.
//!
//! hyper-util's and axum's own graceful shutdowns stop accepting and wait
//! for connections, with no drain window, no deadline, and no word to
//! upgraded connections; they also lose requests at the two edges of the
//! shutdown (below). [`Server`] does the whole sequence:
//!
//! | phase | HTTP/1 | HTTP/2 | upgraded (WebSocket) | event streams |
//! |---|---|---|---|---|
//! | Draining | served; responses say `Connection: close`; new connections accepted | served; GOAWAY; new connections accepted | served | served |
//! | Stopping | listener closed after taking its queue; idle connections closed; busy ones closed after the response's last byte | in-flight streams complete on the wire, then the connection closes | told to close: [`Cancel::stopping`], `1001 Going Away` with [`axum`](crate::axum); closed after the [close handshake window](Server::close_handshake_window) | end at the next message boundary |
//! | Cancelling | [`Cancel`] fires; no response yet: `503` + `Retry-After: 1` + `Connection: close`, the handler finishes in the background | [`Cancel`] fires; `503` likewise | (opted out with [`StreamEnd::AtCancel`]: WebSocket stops waiting for the client's close) | (opted out: end likewise) |
//! | hard deadline | aborted | aborted | closed under the handler | aborted |
//!
//! Every request is tracked in the component's tracker as `METHOD /path`
//! (never the query, which may carry credentials) until its response's last
//! byte is handed to the socket, so what is still running — or still being
//! written to a client that stopped reading — at a deadline is named in the
//! [`Report`](crate::Report); so is a connection that holds the shutdown up
//! with no request in flight. Event streams and upgraded connections ended
//! at Stopping are reported as ended by the shutdown, not as failures.
//!
//! # The two races
//!
//! - **A request unread in the socket buffer.** hyper closes a keep-alive
//!   connection it believes idle without looking at the socket; a request
//!   the client had already written there is reset. Here the decision is
//!   taken when hyper next reads: a non-blocking peek finds the request,
//!   which is then served (its response closes the connection).
//! - **A connection in the accept queue.** The kernel completes handshakes
//!   before the server accepts them; closing the listener resets those
//!   connections. Here the listener first stops new handshakes (on Linux,
//!   a socket filter drops new SYNs; their clients retry and find the port
//!   closed: refused, not reset), then takes every queued connection and
//!   serves it.
//!
//! With a drain delay (the drain window, during which keep-alive clients are
//! told to leave), none of either kind is lost; see `docs/http.md`.
//!
//! # Listeners
//!
//! [`Server::bind`] binds a TCP address; [`Server::from_std`] and
//! [`Server::new`] take a listener bound elsewhere (systemd socket
//! activation, a parent process); any [`Listener`] can be served, a Unix
//! socket included. With feature `tls`, [`Server::tls`] serves HTTPS with
//! a certificate that reloads without a restart (`Tls`).
#![cfg_attr(feature = "axum", doc = include_str!("http/example.md"))]

mod cancel;
pub(crate) mod conn;
mod fired;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod layer;
mod listener;
mod probes;
mod server;
pub(crate) mod shared;
mod spare;
pub(crate) mod stats;
mod streaming;
#[cfg(feature = "tls")]
mod tls;
mod traffic;

pub use cancel::{Cancel, CancelledFuture, StoppingFuture};
pub use layer::{Drain, DrainBody, DrainLayer};
pub use listener::{Connection, Listener};
pub use probes::Probes;
pub use server::{
    DEFAULT_FIRST_REQUEST_GRACE, DEFAULT_IDLE_TIMEOUT, DEFAULT_REQUEST_HEAD_TIMEOUT, ServeError,
    ServeErrorKind, Server,
};
pub use streaming::{DEFAULT_CLOSE_HANDSHAKE_WINDOW, StreamEnd};
#[cfg(feature = "tls")]
pub use tls::{DEFAULT_TLS_HANDSHAKE_TIMEOUT, Tls, TlsError, TlsErrorKind};
