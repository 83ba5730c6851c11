//! Listeners as handed out by [`Listeners`](super::Listeners): a std socket
//! plus where it came from, which decides how it may be closed.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

#[cfg(feature = "http")]
use super::owner;

/// Where a socket came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    /// systemd socket activation: systemd keeps its own copy for good.
    Systemd,
    /// A lameduck parent, which exits once this process is ready.
    Parent,
    /// Bound by this process.
    Bound,
}

/// Whether another process may be accepting on the socket now, so that
/// closing it must leave the socket itself (its accept queue, its filters)
/// untouched.
///
/// A socket from a lameduck parent is shared until the parent has
/// committed to this process: a new process that fails during start-up, or
/// is refused, must not filter or drain the accept queue its parent still
/// serves.
#[cfg(feature = "http")]
fn is_shared(origin: Origin) -> bool {
    shared_when(origin, owner::is_committed(), owner::is_handed_off())
}

/// The rule behind [`is_shared`], with the process-wide flags as arguments.
#[cfg(feature = "http")]
fn shared_when(origin: Origin, committed: bool, handed_off: bool) -> bool {
    match origin {
        Origin::Systemd => true,
        Origin::Parent => !committed || handed_off,
        Origin::Bound => handed_off,
    }
}

/// Whether a server waits for the app to be Running before it accepts on
/// the socket: the socket came from another process (systemd, or the
/// parent of an upgrade, which answers on it until this process is
/// Running), or this process handed it over.
///
/// Unlike [`shared_when`], the parent's commit does not change the answer:
/// a commit can come before a server's first poll, and a server that
/// decided then would accept — and answer its probes 503 — while its app
/// is still Starting. Connections meanwhile wait in the kernel's queue.
#[cfg(feature = "http")]
fn waits_for_running_when(origin: Origin, committed: bool, handed_off: bool) -> bool {
    origin != Origin::Bound || shared_when(origin, committed, handed_off)
}

macro_rules! listener {
    ($(#[$doc:meta])* $name:ident, $std:ty, $tokio:ty) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            std: Option<$std>,
            #[cfg(feature = "http")]
            tokio: Option<$tokio>,
            name: Arc<str>,
            origin: Origin,
        }

        impl $name {
            pub(crate) fn new(std: $std, name: &str, origin: Origin) -> Self {
                Self {
                    std: Some(std),
                    #[cfg(feature = "http")]
                    tokio: None,
                    name: name.into(),
                    origin,
                }
            }

            /// The name it is known by (`LISTEN_FDNAMES`).
            pub fn name(&self) -> &str {
                &self.name
            }

            /// Whether it was inherited (from systemd or a parent process)
            /// rather than bound by this process.
            pub fn is_inherited(&self) -> bool {
                self.origin != Origin::Bound
            }

            /// The std listener, for a server other than
            /// [`http::Server`](crate::http): hyper, `axum::serve`, tonic.
            /// Inherited sockets keep the blocking mode they came with; call
            /// `set_nonblocking(true)` before giving one to tokio.
            pub fn into_std(self) -> $std {
                match self.std {
                    Some(s) => s,
                    #[cfg(feature = "http")]
                    None => self
                        .tokio
                        .and_then(|t| t.into_std().ok())
                        .expect("a listener holds a std or a tokio socket"),
                    #[cfg(not(feature = "http"))]
                    None => unreachable!("a listener holds its std socket"),
                }
            }

            fn fd(&self) -> BorrowedFd<'_> {
                match &self.std {
                    Some(s) => s.as_fd(),
                    #[cfg(feature = "http")]
                    None => self.tokio.as_ref().expect("a listener holds a socket").as_fd(),
                    #[cfg(not(feature = "http"))]
                    None => unreachable!("a listener holds its std socket"),
                }
            }

            #[cfg(feature = "http")]
            fn tokio(&mut self) -> io::Result<&mut $tokio> {
                if self.tokio.is_none() {
                    let std = self.std.take().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotConnected, "the listener lost its socket")
                    })?;
                    if let Err(e) = std.set_nonblocking(true) {
                        // Kept: a failure here must not cost the socket.
                        self.std = Some(std);
                        return Err(e);
                    }
                    self.tokio = Some(<$tokio>::from_std(std)?);
                }
                Ok(self.tokio.as_mut().expect("just set"))
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd()
            }
        }

        impl AsRawFd for $name {
            fn as_raw_fd(&self) -> RawFd {
                self.fd().as_raw_fd()
            }
        }

        /// Serves like the tokio listener it wraps, except at close: while
        /// another process shares the socket (systemd holds it, or an
        /// upgrade handed it over), closing drops only this process's
        /// descriptor and leaves the accept queue to the other process,
        /// instead of filtering or draining it.
        #[cfg(feature = "http")]
        impl crate::http::Listener for $name {
            type Io = <$tokio as crate::http::Listener>::Io;
            type Addr = <$tokio as crate::http::Listener>::Addr;

            /// Cancel safe. Pends while another process serves the socket
            /// (an upgrade committed to it): the shared accept queue is its.
            /// Resumes if this process takes the socket back.
            async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
                loop {
                    if owner::is_handed_off() {
                        owner::handed_off_is(false).await;
                    }
                    let listener = self.tokio()?;
                    tokio::select! {
                        accepted = crate::http::Listener::accept(listener) => return accepted,
                        () = owner::handed_off_is(true) => {}
                    }
                }
            }

            fn local_addr(&self) -> io::Result<Self::Addr> {
                match &self.tokio {
                    Some(t) => crate::http::Listener::local_addr(t),
                    None => {
                        let std = self.std.as_ref().expect("a listener holds a socket").try_clone()?;
                        std.set_nonblocking(true)?;
                        crate::http::Listener::local_addr(&<$tokio>::from_std(std)?)
                    }
                }
            }

            fn is_shared(&self) -> bool {
                is_shared(self.origin)
            }

            fn is_inherited(&self) -> bool {
                waits_for_running_when(self.origin, owner::is_committed(), owner::is_handed_off())
            }

            fn close(mut self) -> Vec<(Self::Io, Self::Addr)> {
                if is_shared(self.origin) {
                    tracing::debug!(target: "lameduck::listen", listener = %self.name, "closing a shared listener: its queue stays with the other process");
                    return Vec::new();
                }
                match self.tokio() {
                    Ok(_) => crate::http::Listener::close(self.tokio.take().expect("just set")),
                    Err(_) => Vec::new(),
                }
            }
        }
    };
}

listener!(
    /// A TCP listener from [`Listeners`](super::Listeners): inherited or
    /// bound fresh, and recorded for the next upgrade.
    ///
    /// Give it to [`http::Server::new`](crate::http::Server::new) as is (it
    /// implements the server's `Listener`), or take the std socket with
    /// [`into_std`](Self::into_std).
    TcpListener,
    std::net::TcpListener,
    tokio::net::TcpListener
);

listener!(
    /// A Unix stream listener from [`Listeners`](super::Listeners):
    /// inherited or bound fresh, and recorded for the next upgrade.
    UnixListener,
    std::os::unix::net::UnixListener,
    tokio::net::UnixListener
);

impl TcpListener {
    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// When the socket cannot tell (rare).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        // A duplicate is the one way to ask std without owning the socket.
        std::net::TcpListener::from(self.fd().try_clone_to_owned()?).local_addr()
    }
}

#[cfg(all(test, feature = "http"))]
mod tests {
    use super::*;

    #[test]
    fn a_socket_from_a_parent_is_shared_until_the_parent_committed() {
        // A new process failing during start-up must leave alone the
        // socket its parent still serves.
        assert!(shared_when(Origin::Parent, false, false));
        assert!(!shared_when(Origin::Parent, true, false));
        assert!(shared_when(Origin::Parent, true, true));
    }

    #[test]
    fn a_socket_from_a_parent_waits_for_running_before_and_after_the_commit() {
        // A server whose first poll comes after the parent's commit must
        // not answer probes while its app is Starting.
        for committed in [false, true] {
            assert!(waits_for_running_when(Origin::Parent, committed, false));
        }
        assert!(waits_for_running_when(Origin::Systemd, true, false));
        assert!(!waits_for_running_when(Origin::Bound, false, false));
        assert!(waits_for_running_when(Origin::Bound, false, true));
    }

    #[test]
    fn a_socket_this_process_bound_is_its_own_until_a_handoff() {
        assert!(!shared_when(Origin::Bound, false, false));
        assert!(shared_when(Origin::Bound, false, true));
        assert!(shared_when(Origin::Systemd, true, false));
    }
}
