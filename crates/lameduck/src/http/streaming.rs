//! Long-lived responses at shutdown: event streams and upgraded
//! connections.

use std::time::Duration;

/// The default for [`Server::close_handshake_window`](super::Server::close_handshake_window).
pub const DEFAULT_CLOSE_HANDSHAKE_WINDOW: Duration = Duration::from_secs(2);

/// When the shutdown ends a long-lived response: an event stream
/// (`text/event-stream`) or an upgraded connection (a WebSocket).
///
/// Such a response never finishes on its own, so waiting for it makes every
/// shutdown last its whole timeout and end with exit code 3; and its client
/// reconnects by design, so the wait serves no one. By default the shutdown
/// ends it at Stopping, and reports it as *ended by the shutdown*, which is
/// not a failure:
///
/// | response | [`AtStopping`](Self::AtStopping) (default) | [`AtCancel`](Self::AtCancel) |
/// |---|---|---|
/// | event stream | ends at Stopping, at the next message boundary (a blank line), so the client sees whole events, then reconnects | served until the cancel signal (the shutdown timeout), then ends likewise |
/// | upgraded connection | hears [`Cancel::stopping`](super::Cancel::stopping) at Stopping (with [`axum`](crate::axum), a `1001 Going Away` close frame), then has the server's [close handshake window](super::Server::close_handshake_window) before the server closes it | left to its handler; closed by the server at the hard deadline |
///
/// Choose per response by putting the value in the response's extensions.
///
/// # Examples
///
/// An event stream that must run to the cancel signal:
///
/// ```
/// use http::Response;
/// use lameduck::http::StreamEnd;
///
/// let mut resp = Response::new("data: hello\n\n".to_string());
/// resp.headers_mut().insert("content-type", "text/event-stream".parse().unwrap());
/// resp.extensions_mut().insert(StreamEnd::AtCancel);
/// # let _ = resp;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamEnd {
    /// Ended by the shutdown at Stopping.
    #[default]
    AtStopping,
    /// Served until the cancel signal fires.
    AtCancel,
}
