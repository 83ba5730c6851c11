//! The cancel signal a handler finds in its request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::shared::Signals;

/// The shutdown signals of the server a request arrived on, as a request
/// extension: the Rust twin of the context Go's `http.Server` gives each
/// request through `BaseContext`.
///
/// The [`Server`](super::Server) and the [`DrainLayer`](super::DrainLayer)
/// insert one into every request. With axum, take it as an extractor
/// (feature `axum`); with plain hyper or tower, read it from
/// `req.extensions()`.
///
/// | signal | fires at | a handler should |
/// |---|---|---|
/// | [`stopping`](Self::stopping) | Stopping | end long-lived exchanges (streams, upgraded connections) at a clean boundary |
/// | [`cancelled`](Self::cancelled) | Cancelling, once the shutdown timeout has passed | give up and return |
///
/// A handler that is still running when the cancel signal fires is not
/// dropped: its client gets a `503` with `Retry-After` at once, and the
/// handler runs on, in the background, until it returns or the hard deadline
/// aborts it (named in the report). So a handler can roll back a transaction
/// on the signal instead of being dropped half-way through one.
///
/// # Examples
///
/// ```
/// use lameduck::http::Cancel;
///
/// async fn report(cancel: Cancel) -> String {
///     tokio::select! {
///         rows = slow_query() => format!("{rows} rows"),
///         () = cancel.cancelled() => "shutting down; partial report".to_string(),
///     }
/// }
/// # async fn slow_query() -> usize { 3 }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
/// #     .block_on(async { assert_eq!(report(Cancel::default()).await, "3 rows") });
/// ```
#[derive(Clone, Debug)]
pub struct Cancel {
    signals: Arc<Signals>,
}

impl Cancel {
    pub(crate) fn new(signals: Arc<Signals>) -> Self {
        Self { signals }
    }

    /// The health registry of the app whose server took the request.
    #[cfg(feature = "grpc")]
    pub(crate) fn health(&self) -> Option<&crate::Health> {
        self.signals.health.as_ref()
    }

    /// Whether the cancel signal has fired.
    pub fn is_cancelled(&self) -> bool {
        self.signals.cancel.is_cancelled()
    }

    /// Whether the server has been told to stop.
    pub fn is_stopping(&self) -> bool {
        self.signals.stopping.is_cancelled() || self.is_cancelled()
    }

    /// Completes when the cancel signal fires.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing, and a new one
    /// completes at once if the signal has fired.
    pub fn cancelled(&self) -> CancelledFuture {
        CancelledFuture {
            inner: self.signals.cancel.clone().cancelled_owned(),
        }
    }

    /// Completes when the server is told to stop (or cancelled).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`cancelled`](Self::cancelled).
    pub fn stopping(&self) -> StoppingFuture {
        StoppingFuture {
            stopping: self.signals.stopping.clone().cancelled_owned(),
            cancel: self.signals.cancel.clone().cancelled_owned(),
        }
    }

    /// When an upgraded connection must have finished its close handshake
    /// (see [`Server::close_handshake_window`](super::Server::close_handshake_window)),
    /// once Stopping has begun.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn close_deadline(&self) -> Option<tokio::time::Instant> {
        self.signals.close_deadline()
    }

    /// The cancel signal as a token for spawned tasks. It is a child token:
    /// cancelling it cancels nothing else.
    pub fn token(&self) -> CancellationToken {
        self.signals.cancel.child_token()
    }
}

impl Default for Cancel {
    /// A signal that never fires, for handlers run outside a server (in unit
    /// tests, say).
    fn default() -> Self {
        Self::new(Arc::new(Signals::new(
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        )))
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Cancel::cancelled`].
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct CancelledFuture {
        #[pin]
        inner: WaitForCancellationFutureOwned,
    }
}

impl Future for CancelledFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Cancel::stopping`].
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct StoppingFuture {
        #[pin]
        stopping: WaitForCancellationFutureOwned,
        #[pin]
        cancel: WaitForCancellationFutureOwned,
    }
}

impl Future for StoppingFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // A component can be cancelled without having been stopped first
        // (the app cancels everything at the shutdown timeout).
        if this.stopping.poll(cx).is_ready() || this.cancel.poll(cx).is_ready() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
