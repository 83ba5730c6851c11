//! Where connections come from: a [`Listener`] hands out [`Connection`]s,
//! and at Stopping gives back what the kernel had already queued.

use std::fmt;
use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

/// A source of connections for a [`Server`](super::Server): a TCP listener, a
/// Unix socket listener, or a socket handed in from elsewhere (systemd socket
/// activation, a parent process).
///
/// Implemented for [`tokio::net::TcpListener`] and (on Unix)
/// [`tokio::net::UnixListener`]. Implement it to serve from anything else.
///
/// # The accept queue at Stopping
///
/// The kernel completes TCP handshakes on its own and queues the
/// connections until the server accepts them. A client whose connection sits
/// in that queue has already sent its request, as far as it knows; closing
/// the listener then resets the connection and fails the request.
/// [`close`](Self::close) exists so that does not happen: it stops new
/// connections from arriving and hands back every queued one, which the
/// server then serves like any other.
pub trait Listener: Send + 'static {
    /// A connection.
    type Io: Connection;
    /// The address of a peer, or of the listener.
    type Addr: fmt::Debug + Send + Sync + 'static;

    /// Waits for the next connection.
    ///
    /// # Errors
    ///
    /// The error of the underlying accept. The server logs it and goes on:
    /// after an error about one connection at once, after running out of
    /// file descriptors after a short pause.
    ///
    /// # Cancel safety
    ///
    /// Must be cancel safe: the server drops the future when it stops
    /// accepting, and a connection must not be lost when it does.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, Self::Addr)>> + Send;

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// When the socket cannot tell (rare).
    fn local_addr(&self) -> io::Result<Self::Addr>;

    /// Whether another process may be accepting on the same socket now (one
    /// that took it over in an upgrade, or systemd). A server then leaves
    /// the socket to it: the admin listener stops answering probes once the
    /// shutdown begins, so that a load balancer sees only the successor's
    /// readiness. The default is false.
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether the socket came from another process that answers on it
    /// until this app is Running (the parent of an upgrade, systemd): a
    /// server then accepts on it only once the app is Running, and
    /// connections wait in the kernel's queue meanwhile. Unlike
    /// [`is_shared`](Self::is_shared), the answer does not change when the
    /// other process hands the socket over, which may happen before the
    /// server's first poll. The default is [`is_shared`](Self::is_shared).
    fn is_inherited(&self) -> bool {
        self.is_shared()
    }

    /// Stops listening and returns the connections already queued, without
    /// waiting for any.
    ///
    /// The default returns none: the listener is dropped and whatever was
    /// queued is reset by the kernel.
    fn close(self) -> Vec<(Self::Io, Self::Addr)>
    where
        Self: Sized,
    {
        Vec::new()
    }
}

/// A connection the server can serve: a byte stream, plus a look at the
/// bytes the peer has sent that nobody has read yet.
///
/// Implemented for [`tokio::net::TcpStream`] and (on Unix)
/// [`tokio::net::UnixStream`].
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether the peer has sent bytes that are waiting to be read. Must not
    /// block, read or consume.
    ///
    /// The server asks before it closes an idle connection at Stopping: a
    /// request that sits unread in the socket buffer is served rather than
    /// reset. The default says `false`, which closes the connection anyway.
    fn has_unread_input(&self) -> bool {
        false
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        // Responses are written whole; Nagle's algorithm would only hold
        // back the last segment of each until the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        Ok((stream, addr))
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::TcpListener::local_addr(self)
    }

    fn close(self) -> Vec<(Self::Io, Self::Addr)> {
        if handed_off() {
            // A new process serves this very socket now (a zero-downtime
            // restart): the queue is its, and a filter would stop its
            // connections too. Only this process's descriptor goes.
            return Vec::new();
        }
        refuse_new_connections(&self);
        let Ok(std) = self.into_std() else {
            return Vec::new();
        };
        drain_queue(
            || std.accept(),
            |(s, addr)| {
                s.set_nonblocking(true)?;
                let _ = s.set_nodelay(true);
                Ok((tokio::net::TcpStream::from_std(s)?, addr))
            },
        )
    }
}

impl Connection for tokio::net::TcpStream {
    fn has_unread_input(&self) -> bool {
        peek_ready(socket2::SockRef::from(self))
    }
}

#[cfg(unix)]
impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        tokio::net::UnixListener::accept(self).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        tokio::net::UnixListener::local_addr(self)
    }

    fn close(self) -> Vec<(Self::Io, Self::Addr)> {
        let Ok(std) = self.into_std() else {
            return Vec::new();
        };
        drain_queue(
            || std.accept().map(|(s, _)| s),
            |s| {
                s.set_nonblocking(true)?;
                let s = tokio::net::UnixStream::from_std(s)?;
                let peer = s.peer_addr()?;
                Ok((s, peer))
            },
        )
    }
}

#[cfg(unix)]
impl Connection for tokio::net::UnixStream {
    fn has_unread_input(&self) -> bool {
        peek_ready(socket2::SockRef::from(self))
    }
}

/// Whether an upgrade has handed the listening sockets to a new process.
fn handed_off() -> bool {
    #[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
    {
        crate::listen::registry::is_handed_off()
    }
    #[cfg(not(all(unix, any(feature = "systemd", feature = "upgrade"))))]
    {
        false
    }
}

/// More than any accept queue holds (Linux caps the backlog at
/// `net.core.somaxconn`, 4096 by default); a bound so that a flood cannot
/// keep the loop going.
const MAX_QUEUED: usize = 65_536;

/// Accepts without waiting until the queue is empty.
fn drain_queue<S, T>(
    mut accept: impl FnMut() -> io::Result<S>,
    mut register: impl FnMut(S) -> io::Result<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for _ in 0..MAX_QUEUED {
        match accept() {
            Ok(s) => match register(s) {
                Ok(t) => out.push(t),
                Err(err) => {
                    tracing::debug!(target: "lameduck::http", error = %err, "dropping a queued connection")
                }
            },
            // The queue is empty: the std listener is non-blocking, as tokio
            // left it.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            // A connection that was reset while queued, or a signal.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                ) => {}
            Err(err) => {
                tracing::debug!(target: "lameduck::http", error = %err, "accept failed while emptying the queue");
                break;
            }
        }
    }
    out
}

/// Whether a non-blocking peek finds at least one byte.
fn peek_ready(sock: socket2::SockRef<'_>) -> bool {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    // The socket is non-blocking (tokio set it so): no data is WouldBlock,
    // a closed peer is Ok(0); neither is input to serve.
    matches!(sock.peek(&mut buf), Ok(n) if n > 0)
}

/// Makes the kernel drop new connection attempts (bare SYNs) on `listener`
/// while handshakes already under way still complete into the queue.
///
/// Without it, a connection could complete between the last accept and the
/// close, and be reset. A dropped SYN is retransmitted by the client after
/// about a second and then meets a closed port: refused, which a client
/// knows it may retry, instead of reset, which it cannot tell from a failed
/// request.
///
/// The filter belongs to the socket, not to this process's descriptor: a
/// listener shared with another process must not be closed this way. After
/// an upgrade has handed the sockets over (feature `upgrade`), `close` skips
/// it; for a socket shared by other means (systemd socket activation into a
/// plain listener, a handoff of the user's own), the server must be told:
/// [`Server::shared_listener`](super::Server::shared_listener).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn refuse_new_connections(listener: &tokio::net::TcpListener) {
    use socket2::SockFilter;

    // Classic BPF, run on the TCP header: drop a segment whose flags have
    // SYN set and ACK clear, keep everything else whole.
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const ALU_AND_K: u16 = 0x54; // BPF_ALU | BPF_AND | BPF_K
    const JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const TCP_FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    const ACK: u32 = 0x10;
    let program = [
        SockFilter::new(LD_B_ABS, 0, 0, TCP_FLAGS),
        SockFilter::new(ALU_AND_K, 0, 0, SYN | ACK),
        SockFilter::new(JMP_JEQ_K, 0, 1, SYN),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ];
    if let Err(err) = socket2::SockRef::from(listener).attach_filter(&program) {
        tracing::debug!(target: "lameduck::http", error = %err, "cannot filter new connections; closing the listener without it");
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn refuse_new_connections(_listener: &tokio::net::TcpListener) {}
