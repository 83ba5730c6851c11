//! The connection as hyper sees it: the socket, plus the decisions that
//! have to be taken at the moment hyper reads.
//!
//! hyper closes an HTTP/1 connection it believes idle without looking at
//! the socket, even when the next request already sits unread in it; that
//! request is then reset (measured: dozens per shutdown under load). So
//! lameduck never asks hyper to close an idle HTTP/1 connection. Instead,
//! at Stopping, when hyper reads for the next request on a connection with
//! nothing in flight, this wrapper looks at the socket with a non-blocking
//! peek: bytes there are read and served as usual (the response then closes
//! the connection); no bytes, and it answers end-of-file, which hyper takes
//! as the client leaving and closes cleanly.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Sleep, sleep_until};
use tokio_util::sync::WaitForCancellationFutureOwned;

use crate::http::Connection;
use crate::http::shared::{ConnState, Proto, Shared, Stage};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type Wait = Option<Pin<Box<WaitForCancellationFutureOwned>>>;

pub(super) struct Io<T> {
    inner: T,
    conn: Arc<ConnState>,
    shared: Arc<Shared>,
    /// How many bytes of the HTTP/2 preface the input has matched so far.
    preface: usize,
    /// A never-used connection's wait for its first request, at Stopping.
    grace: Option<Pin<Box<Sleep>>>,
    /// hyper was given end-of-file to close an idle connection.
    ended: bool,
    // Reads and writes of an upgraded connection may come from two tasks,
    // so each registers its own waker for the kill.
    kill_read: Wait,
    kill_write: Wait,
}

impl<T: Connection> Io<T> {
    pub(super) fn new(inner: T, conn: Arc<ConnState>, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            conn,
            shared,
            preface: 0,
            grace: None,
            ended: false,
            kill_read: None,
            kill_write: None,
        }
    }

    /// Whether hyper should see end-of-file instead of reading: at Stopping,
    /// with nothing in flight, nothing half-read and nothing waiting.
    fn should_end(&mut self, cx: &mut Context<'_>) -> bool {
        if self.shared.stage() >= Stage::Cancelled {
            return true;
        }
        if self.conn.has_unparsed() || self.inner.has_unread_input() {
            return false;
        }
        if self.conn.is_fresh() {
            // Accepted, maybe only now from the queue, and no request yet:
            // the client is likely between its connect and its write. Give
            // it a moment, counted from the accept.
            let deadline = self.conn.accepted + self.shared.first_request_grace;
            let grace = self
                .grace
                .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
            if grace.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
        true
    }

    fn saw(&mut self, bytes: &[u8]) {
        if self.conn.proto() == Proto::Unknown {
            let want = &H2_PREFACE[self.preface..];
            let n = want.len().min(bytes.len());
            if bytes[..n] != want[..n] {
                self.conn.set_proto(Proto::H1);
            } else {
                self.preface += n;
                if self.preface == H2_PREFACE.len() {
                    self.conn.set_proto(Proto::H2);
                }
            }
        }
        // Bytes read with no request in flight begin the next request.
        if self.conn.in_flight() == 0 {
            self.conn.read_some();
        }
    }

    fn killed(wait: &mut Wait, shared: &Shared, cx: &mut Context<'_>) -> bool {
        let wait = wait.get_or_insert_with(|| Box::pin(shared.kill.clone().cancelled_owned()));
        wait.as_mut().poll(cx).is_ready()
    }
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed by the server at its hard deadline",
    )
}

impl<T: Connection> AsyncRead for Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.conn.proto() {
            Proto::Upgraded => {
                if Self::killed(&mut this.kill_read, &this.shared, cx) {
                    return Poll::Ready(Err(killed_error()));
                }
            }
            Proto::H2 => {}
            Proto::H1 | Proto::Unknown => {
                if this.shared.stage() >= Stage::Stopping
                    && this.conn.in_flight() == 0
                    && this.should_end(cx)
                {
                    this.ended = true;
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            if buf.filled().len() > before {
                this.saw(&buf.filled()[before..]);
            }
        }
        read
    }
}

impl<T: Connection> AsyncWrite for Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.proto() == Proto::Upgraded
            && Self::killed(&mut this.kill_write, &this.shared, cx)
        {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.conn.proto() == Proto::Upgraded
            && Self::killed(&mut this.kill_write, &this.shared, cx)
        {
            return Poll::Ready(Err(killed_error()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ended {
            // hyper half-closes before it drops the connection; the close
            // that follows sends the same FIN, one system call fewer for
            // each of thousands of idle connections closed at once.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T> Drop for Io<T> {
    fn drop(&mut self) {
        // The upgraded connection (if it was one) is over: its tracked work
        // ends with it.
        if self.conn.proto() == Proto::Upgraded {
            self.conn.release_upgrade();
        }
    }
}
