//! The cancel signal a handler finds while it handles a request.

use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::shared::Signals;

/// The shutdown signals of the server a request arrived on: the Rust twin of
/// the context Go's `http.Server` gives each request through `BaseContext`.
///
/// The [`Server`](super::Server) and the [`DrainLayer`](super::DrainLayer)
/// run every request's service call and response future in a scope where
/// [`Cancel::current`] gives it. With axum, take it as an extractor
/// (feature `axum`); with plain hyper, tower or tonic, call
/// [`Cancel::current`] in the handler. A scope costs no allocation, where
/// a request extension would cost three per request.
///
/// The scope belongs to the handler's own task: a task the handler spawns
/// (or a service that moves the request to another task, as tower's
/// `Buffer` does) is outside it. Take the `Cancel` first and move it in,
/// or give the spawned task [`token`](Self::token).
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

thread_local! {
    /// The signals of the request whose service call or response future
    /// this thread is running (see [`enter`]); null outside one.
    static CURRENT: Cell<*const Signals> = const { Cell::new(std::ptr::null()) };
}

/// Makes `signals` the [`Cancel::current`] of this thread until the guard
/// is dropped: around an inner service's `call`, and around each poll of
/// its response future.
///
/// A thread-local set around each call and poll, rather than tokio's
/// `task_local!`: that scope owns its value and so needs the future wrapped
/// in its own, while the response future already holds the signals. A
/// guard rather than a closure, so that the request is not moved once more.
/// The thread-local holds a pointer to the signals the guard borrows: a
/// scope takes no reference count, and only [`Cancel::current`] takes one.
/// Any earlier value is put back on drop, also when the call panics, so
/// that scopes nest (a server inside a handler).
#[inline]
pub(crate) fn enter(signals: &Arc<Signals>) -> Entered<'_> {
    let prev = CURRENT.with(|c| c.replace(Arc::as_ptr(signals)));
    Entered {
        prev,
        _signals: PhantomData,
    }
}

/// The guard of [`enter`]: it holds the value it replaced, and borrows the
/// signals it put in place, which so outlive the scope. Not `Send` (a raw
/// pointer): it is dropped on the thread that made it, and the crate drops
/// every one where it was made, innermost first.
pub(crate) struct Entered<'a> {
    prev: *const Signals,
    _signals: PhantomData<&'a Arc<Signals>>,
}

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        // `try_with`: a thread that is being torn down has no value.
        let _ = CURRENT.try_with(|c| c.set(self.prev));
    }
}

pin_project_lite::pin_project! {
    /// A handler's future, moved off its request (cancelled, finishing in
    /// the background), still in its request's scope.
    pub(crate) struct Scoped<F> {
        signals: Arc<Signals>,
        #[pin]
        fut: F,
    }
}

impl<F> Scoped<F> {
    pub(crate) fn new(signals: Arc<Signals>, fut: F) -> Self {
        Self { signals, fut }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _current = enter(this.signals);
        this.fut.poll(cx)
    }
}

impl Cancel {
    pub(crate) fn new(signals: Arc<Signals>) -> Self {
        Self { signals }
    }

    /// The signals of the request being handled: inside the service call
    /// and the response future of a request that lameduck's
    /// [`Server`](super::Server) or [`DrainLayer`](super::DrainLayer) took.
    ///
    /// `None` elsewhere: outside a request, or in a task the handler
    /// spawned (see the type's docs).
    ///
    /// # Examples
    ///
    /// A tower service of your own, served by lameduck:
    ///
    /// ```
    /// use lameduck::http::Cancel;
    ///
    /// async fn handle<B>(_req: http::Request<B>) -> String {
    ///     match Cancel::current() {
    ///         Some(cancel) if cancel.is_stopping() => "last one\n".into(),
    ///         _ => "hello\n".into(),
    ///     }
    /// }
    /// # assert!(Cancel::current().is_none());
    /// # let _ = handle::<()>;
    /// ```
    // The one `unsafe` block of this module: a reference count taken from
    // the scope's pointer (see `enter`).
    #[allow(unsafe_code)]
    pub fn current() -> Option<Cancel> {
        let signals = CURRENT.with(Cell::get);
        if signals.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer was put there by `enter`, from an
        // `Arc<Signals>` that its guard borrows; the guard is still alive
        // (it puts the value it replaced back when dropped, and guards are
        // dropped innermost first on the thread that made them), so the
        // `Arc` holds a strong count for the pointer. One more is taken for
        // the `Arc` made here.
        Some(Cancel::new(unsafe {
            Arc::increment_strong_count(signals);
            Arc::from_raw(signals)
        }))
    }

    /// [`current`](Self::current), or else one a test put in the request's
    /// extensions (`Cancel::default()`, say).
    #[cfg(feature = "axum")]
    pub(crate) fn of(extensions: &http::Extensions) -> Option<Cancel> {
        Self::current().or_else(|| extensions.get::<Cancel>().cloned())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_util::sync::CancellationToken;

    use super::{Cancel, Signals, enter};

    fn signals() -> Arc<Signals> {
        let token = CancellationToken::new;
        Arc::new(Signals::new(token(), token(), token()))
    }

    /// The scope holds a pointer, not a count: what `current` gives must
    /// take its own, and outlive the scope it came from.
    #[test]
    fn a_cancel_taken_in_a_scope_holds_its_own_count_and_nested_scopes_restore_the_outer() {
        assert!(Cancel::current().is_none());
        let outer = signals();
        let inner = signals();
        let taken = {
            let _outer = enter(&outer);
            let from_inner = {
                let _inner = enter(&inner);
                Cancel::current().expect("inside the inner scope")
            };
            assert!(Arc::ptr_eq(&from_inner.signals, &inner));
            let from_outer = Cancel::current().expect("back in the outer scope");
            assert!(Arc::ptr_eq(&from_outer.signals, &outer));
            drop(from_outer);
            from_inner
        };
        assert!(Cancel::current().is_none());
        assert_eq!(Arc::strong_count(&inner), 2);
        assert_eq!(Arc::strong_count(&outer), 1);
        // The scope's own `Arc` gone, the one taken still works.
        drop(inner);
        assert!(!taken.is_cancelled());
        taken.signals.cancel.cancel();
        assert!(taken.is_cancelled());
    }

    #[test]
    fn a_panic_in_a_scope_puts_the_outer_value_back() {
        let outer = signals();
        let _outer = enter(&outer);
        let inner = signals();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _inner = enter(&inner);
            panic!("in the handler");
        }));
        assert!(caught.is_err());
        let now = Cancel::current().expect("the outer scope");
        assert!(Arc::ptr_eq(&now.signals, &outer));
    }
}
