//! The TLS handshake, in the connection's own task.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::time::{Instant, sleep_until};
use tokio_rustls::TlsAcceptor;

use super::Tls;
use super::conn::{Raw, TlsConn};
use crate::http::Connection;
use crate::http::conn::ConnState;
use crate::http::shared::{Shared, Stage};

/// Runs the server side of the handshake on `io`; `None` when it failed,
/// timed out, or the shutdown closed the connection first.
///
/// | stage | a connection still handshaking |
/// |---|---|
/// | Running, Draining | has the handshake timeout, from its accept |
/// | Stopping | also closes once `first_request_grace` has passed since its last byte (its accept, before any): a client taken from the accept queue at Stopping completes its handshake, a stalled one holds nothing up |
/// | Cancelling | closes at once |
pub(crate) async fn handshake<T: Connection>(
    io: T,
    tls: &Tls,
    state: &Arc<ConnState>,
    shared: &Shared,
) -> Option<TlsConn<T>> {
    // The configuration of the moment: a reload later changes nothing for
    // this connection.
    let accept = TlsAcceptor::from(tls.config()).accept(Raw::new(io, state.clone()));
    let mut accept = pin!(accept);
    let timeout_at = state.accepted + tls.timeout();
    let mut timer = Box::pin(sleep_until(timeout_at));
    std::future::poll_fn(|cx| {
        loop {
            let stage = shared.stage();
            if stage >= Stage::Cancelled {
                return Poll::Ready(None);
            }
            if let Poll::Ready(done) = accept.as_mut().poll(cx) {
                return Poll::Ready(match done {
                    Ok(stream) => Some(TlsConn::new(stream)),
                    Err(err) => {
                        tracing::debug!(target: "lameduck::http", error = %err, "TLS handshake failed");
                        None
                    }
                });
            }
            // A stage change rings the bell: look again.
            if state.listen(cx.waker()) {
                continue;
            }
            let deadline = if stage >= Stage::Stopping {
                timeout_at.min(state.last_read() + shared.first_request_grace)
            } else {
                timeout_at
            };
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                let why = if deadline == timeout_at {
                    "TLS handshake timed out"
                } else {
                    "TLS handshake unfinished at Stopping; closing"
                };
                tracing::debug!(target: "lameduck::http", "{why}");
                return Poll::Ready(None);
            }
        }
    })
    .await
}
