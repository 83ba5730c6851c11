//! A TLS connection as the server's IO wrapper sees it: plaintext, plus an
//! honest answer to "is there input nobody has read yet".
//!
//! Over TLS a request can wait in three places: still in the socket (a
//! peek finds it), in rustls as decrypted plaintext that hyper has not
//! taken yet, or in rustls as part of a record whose rest is still on its
//! way. The first two are input waiting ([`Connection::has_unread_input`]);
//! the third is a request arriving, told to the connection's state as such
//! (its last byte's time included), so that at Stopping it gets the same
//! grace from its last byte as a part-sent request head, and a client that
//! stalls mid-record is bounded by the request-head timeout.
//!
//! Writes need nothing of the kind: rustls's `flush` hands every encrypted
//! byte to the socket before it returns, so "flushed" means on the wire
//! here as it does on a plain socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;

use crate::http::Connection;
use crate::http::conn::ConnState;

/// A server-side TLS stream over a connection.
pub(crate) struct TlsConn<T> {
    stream: TlsStream<Raw<T>>,
}

impl<T: Connection> TlsConn<T> {
    pub(super) fn new(mut stream: TlsStream<Raw<T>>) -> Self {
        // From here on a part-received record is (part of) a request.
        stream.get_mut().0.serving = true;
        Self { stream }
    }
}

impl<T: Connection> Connection for TlsConn<T> {
    fn has_unread_input(&self) -> bool {
        let (raw, tls) = self.stream.get_ref();
        // rustls stops wanting to read once it holds plaintext nobody took
        // (or the peer's close_notify, which the next read returns as the
        // end of the stream: reading it is as cheap as closing).
        !tls.wants_read() || raw.inner.has_unread_input()
    }
}

impl<T: Connection> AsyncRead for TlsConn<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<T: Connection> AsyncWrite for TlsConn<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Sends `close_notify`, hands it to the socket, then half-closes it.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The socket under rustls: follows the TLS records coming in, so that a
/// record received in part is known.
pub(crate) struct Raw<T> {
    pub(super) inner: T,
    conn: Arc<ConnState>,
    records: Records,
    /// The handshake is over: a record received in part is a request
    /// arriving.
    serving: bool,
}

impl<T> Raw<T> {
    pub(super) fn new(inner: T, conn: Arc<ConnState>) -> Self {
        Self {
            inner,
            conn,
            records: Records::default(),
            serving: false,
        }
    }
}

impl<T: Connection> AsyncRead for Raw<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = crate::tracker::coarse_nanos();
            this.conn.touched(now);
            this.records.feed(&buf.filled()[before..]);
            if this.serving && this.records.is_partial() && !this.conn.is_handling() {
                this.conn.read_some(now);
            }
        }
        read
    }
}

impl<T: Connection> AsyncWrite for Raw<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Splits the bytes a client sends into TLS records (RFC 8446, section
/// 5.1: a five-byte header whose last two bytes are the length), payloads
/// skipped.
#[derive(Debug, Default)]
struct Records {
    /// Header bytes seen of the record now arriving.
    have: u8,
    /// The length's high byte, once seen.
    high: u8,
    /// Payload bytes still to come.
    skip: usize,
}

impl Records {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.have == 0
                && let Some((&[.., high, low], rest)) = bytes.split_first_chunk::<5>()
            {
                // A whole header at hand (nearly always): read at once.
                self.skip = usize::from(u16::from_be_bytes([high, low]));
                bytes = rest;
                continue;
            }
            let b = bytes[0];
            bytes = &bytes[1..];
            self.have += 1;
            match self.have {
                4 => self.high = b,
                5 => {
                    self.have = 0;
                    self.skip = usize::from(u16::from_be_bytes([self.high, b]));
                }
                _ => {}
            }
        }
    }

    /// Whether a record has begun and not ended.
    fn is_partial(&self) -> bool {
        self.have > 0 || self.skip > 0
    }
}

#[cfg(test)]
mod tests {
    use super::Records;

    #[test]
    fn a_record_is_partial_until_its_last_byte_whatever_the_split() {
        let mut wire = vec![23, 3, 3, 0, 4, 1, 2, 3, 4];
        wire.extend([23, 3, 3, 1, 0]);
        wire.extend(std::iter::repeat_n(9, 256));
        for chunk in 1..wire.len() {
            let mut records = Records::default();
            let mut seen = 0;
            for piece in wire.chunks(chunk) {
                records.feed(piece);
                seen += piece.len();
                let at_end = seen == 9 || seen == wire.len();
                assert_eq!(
                    records.is_partial(),
                    !at_end,
                    "split every {chunk}, after {seen} bytes"
                );
            }
        }
    }
}
