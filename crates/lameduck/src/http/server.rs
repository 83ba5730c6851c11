//! The HTTP server component.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use super::{DEFAULT_CLOSE_HANDSHAKE_WINDOW, Listener};
use crate::component::BoxFuture;
use crate::{BoxError, Component};

mod admin;
mod connection;
mod error;
mod late;
mod run;
mod service;
mod stream;
mod wire;

pub use error::{ServeError, ServeErrorKind};

/// The default for [`Server::first_request_grace`].
pub const DEFAULT_FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// The default for [`Server::idle_timeout`]: 620 s, longer than the idle
/// timeouts of the common load balancers in front of a server (AWS ALB
/// 60 s, nginx 75 s, Azure 4 min, Google Cloud 600 s), so that the
/// balancer, which knows when it will reuse a connection, is the one that
/// closes it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(620);

/// The default for [`Server::request_head_timeout`], hyper's own.
pub const DEFAULT_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves a [`tower_service::Service`] — an axum `Router`, a `tower`
/// stack, a `hyper` service adapted to tower — as a component that goes
/// through the whole shutdown sequence, connection by connection and request
/// by request. HTTP/1.1 and HTTP/2 (prior knowledge, h2c) on one port, with
/// upgrades (WebSocket).
///
/// | phase | the listener | connections | requests |
/// |---|---|---|---|
/// | Running | accepts | served | tracked (method and path), [`Cancel::current`](super::Cancel::current) in their handlers |
/// | Draining | still accepts | HTTP/2 gets GOAWAY | HTTP/1 responses carry `Connection: close` |
/// | Stopping | takes what the kernel has queued, then closes | idle ones close at once (a request already in the socket buffer is served first), stalled ones after [`first_request_grace`](Self::first_request_grace); busy ones after their response's last byte; upgraded ones hear [`Cancel::stopping`](super::Cancel::stopping) and close after the [close handshake window](Self::close_handshake_window) | served; event streams end at a message boundary |
/// | Cancelling | | idle ones close | [`Cancel`](super::Cancel) fires; no response yet: `503` + `Retry-After` now, handler finishes in the background |
/// | hard deadline | | aborted, upgraded ones too | aborted, each named in the report |
///
/// Its run returns once every connection has closed and every request and
/// upgraded connection has finished. A connection that holds it up past a
/// deadline is named in the [`Report`](crate::Report) (peer, state, age).
///
/// # Timeouts while running
///
/// HTTP/1 request heads have [`request_head_timeout`](Self::request_head_timeout)
/// (30 s from their first byte); idle keep-alive connections
/// [`idle_timeout`](Self::idle_timeout) (620 s, announced as
/// `Keep-Alive: timeout=N`, in whole seconds, from 2 s up). hyper's own header read timeout is off. See the [module docs](super) for a
/// complete example and `docs/http.md` for the reasoning.
///
/// # Probes
///
/// [`admin`](Self::admin) serves `/livez`, `/readyz` and `/startupz` (see
/// [`Probes`](super::Probes)) on a second listener, bound to loopback unless you say
/// otherwise; [`probes_on_main`](Self::probes_on_main) answers them on the
/// main listener, ahead of the service. The admin listener serves until the
/// component's run ends, so probes answer through the whole shutdown —
/// except across an upgrade's handover (feature `upgrade`, a listener from
/// [`Listeners`](crate::listen::Listeners)): the new process answers only
/// once it runs, and the old one, once it has committed, accepts no probe
/// and tells its probe connections to close, so that a load balancer
/// hears 200 from one or the other (see `docs/restarts.md`).
///
/// # Examples
///
/// ```no_run
/// use lameduck::{App, http::Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let router = lameduck::http::Probes::new(lameduck::Health::new());
/// let http = Server::bind("0.0.0.0:8080", router)?
///     .admin("127.0.0.1:8081")?
///     .name("api");
/// let report = App::builder("svc").component(http).build()?.await;
/// # let _ = report; Ok(())
/// # }
/// ```
pub struct Server<S, L = tokio::net::TcpListener> {
    name: Arc<str>,
    listener: L,
    service: S,
    admin: Option<Admin>,
    probes_on_main: bool,
    builder: auto::Builder<TokioExecutor>,
    first_request_grace: Duration,
    close_window: Duration,
    idle_timeout: Option<Duration>,
    head_timeout: Option<Duration>,
    shared_listener: bool,
    tls: TlsOption,
}

/// What a connection's handshake needs: nothing without TLS.
#[cfg(feature = "tls")]
pub(super) type TlsOption = Option<super::Tls>;
#[cfg(not(feature = "tls"))]
pub(super) type TlsOption = Option<NoTls>;

/// Never made: the server without TLS.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(super) enum NoTls {}

type AdminFn = Box<dyn FnOnce(admin::AdminContext) -> BoxFuture<io::Result<()>> + Send>;

struct Admin {
    addr: Option<SocketAddr>,
    serve: AdminFn,
}

impl<S> Server<S> {
    /// Binds a TCP listener on `addr` (with `SO_REUSEADDR` and the
    /// [default listen backlog](crate::default_listen_backlog)) and serves
    /// `service` on it.
    ///
    /// # Errors
    ///
    /// When the address does not resolve or cannot be bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the listener registers with its reactor).
    pub fn bind(addr: impl ToSocketAddrs, service: S) -> io::Result<Self> {
        Self::bind_with_backlog(addr, crate::default_listen_backlog(), service)
    }

    /// [`bind`](Self::bind), with a listen backlog of `backlog`
    /// connections (clamped by the kernel to `net.core.somaxconn`).
    ///
    /// # Errors
    ///
    /// As [`bind`](Self::bind).
    ///
    /// # Panics
    ///
    /// As [`bind`](Self::bind).
    pub fn bind_with_backlog(
        addr: impl ToSocketAddrs,
        backlog: u32,
        service: S,
    ) -> io::Result<Self> {
        Ok(Self::new(bind(addr, backlog)?, service))
    }

    /// Serves `service` on an already bound listener from the standard
    /// library — one inherited from systemd or a parent process, say.
    ///
    /// If another process keeps the socket open (systemd always does with
    /// socket activation), also call
    /// [`shared_listener(true)`](Self::shared_listener), or take the socket
    /// through [`Listeners`](crate::listen::Listeners) instead; otherwise
    /// the close at Stopping would stop the other process's connections
    /// too.
    ///
    /// # Errors
    ///
    /// When the listener cannot be made non-blocking.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn from_std(listener: std::net::TcpListener, service: S) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self::new(
            tokio::net::TcpListener::from_std(listener)?,
            service,
        ))
    }
}

impl<S, L: Listener> Server<S, L> {
    /// Serves `service` on `listener`.
    pub fn new(listener: L, service: S) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's HTTP/1 header read timeout runs from the moment it waits
        // for a request head, so it also closes idle keep-alive connections
        // (every 30 s, unannounced, racing pooled clients). The server keeps
        // its own two instead: `request_head_timeout` from a request's
        // first byte, `idle_timeout` between requests. The timer lets hyper
        // send HTTP/2 keep-alive pings when asked to.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        builder.http2().timer(TokioTimer::new());
        Self {
            name: "http".into(),
            listener,
            service,
            admin: None,
            probes_on_main: false,
            builder,
            first_request_grace: DEFAULT_FIRST_REQUEST_GRACE,
            close_window: DEFAULT_CLOSE_HANDSHAKE_WINDOW,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            head_timeout: Some(DEFAULT_REQUEST_HEAD_TIMEOUT),
            shared_listener: false,
            tls: None,
        }
    }

    /// Sets the component's name (default `http`), as it appears in logs,
    /// the report and dependencies.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The address the main listener is bound to.
    ///
    /// # Errors
    ///
    /// When the socket cannot tell.
    pub fn local_addr(&self) -> io::Result<L::Addr> {
        self.listener.local_addr()
    }

    /// Serves the probes on a TCP listener bound to `addr`. Keep it on
    /// loopback unless the probes must be reached from outside (a kubelet
    /// probes the pod's IP: bind `0.0.0.0:PORT` then, or use
    /// [`probes_on_main`](Self::probes_on_main)).
    ///
    /// # Errors
    ///
    /// When the address does not resolve or cannot be bound.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn admin(self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        let listener = bind(addr, crate::default_listen_backlog())?;
        let addr = listener.local_addr().ok();
        let mut server = self.admin_listener(listener);
        if let Some(admin) = &mut server.admin {
            admin.addr = addr;
        }
        Ok(server)
    }

    /// Serves the probes on `listener` (a Unix socket, say).
    pub fn admin_listener<A: Listener>(mut self, listener: A) -> Self {
        self.admin = Some(Admin {
            addr: None,
            serve: Box::new(move |cx| Box::pin(admin::serve(listener, cx))),
        });
        self
    }

    /// The address of the admin listener, when [`admin`](Self::admin) bound
    /// one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.addr)
    }

    /// Answers `/livez`, `/readyz` and `/startupz` on the main listener,
    /// ahead of the service.
    pub fn probes_on_main(mut self) -> Self {
        self.probes_on_main = true;
        self
    }

    /// Serves HTTP/1 only.
    pub fn http1_only(mut self) -> Self {
        self.builder = self.builder.http1_only();
        self
    }

    /// Serves HTTP/2 only (prior knowledge).
    pub fn http2_only(mut self) -> Self {
        self.builder = self.builder.http2_only();
        self
    }

    /// Tunes hyper: header limits, HTTP/2 windows and stream limits,
    /// timeouts.
    pub fn configure(mut self, f: impl FnOnce(&mut auto::Builder<TokioExecutor>)) -> Self {
        f(&mut self.builder);
        self
    }

    /// How long, once Stopping has begun, a connection with no request in
    /// flight may still deliver one (default 500 ms): counted from its
    /// accept for a connection that has not sent a request yet, and from
    /// its last byte for one part-way through a request head.
    ///
    /// A connection taken from the accept queue at Stopping usually belongs
    /// to a client between its `connect` and its `write`; closing it would
    /// fail a request the client believes sent. A connection opened long
    /// ago and never used (a browser's preconnect) closes at once. A
    /// client that sent part of a request head and then nothing (a stalled
    /// or hostile one) is closed once it has been silent this long, so it
    /// cannot hold the shutdown up to its timeout.
    pub fn first_request_grace(mut self, grace: Duration) -> Self {
        self.first_request_grace = grace;
        self
    }

    /// How long an HTTP/1 keep-alive connection may wait for its next
    /// request, counted from the end of its last response (or from its
    /// accept, before any); `None` keeps idle connections open for as long
    /// as their clients do. Default [`DEFAULT_IDLE_TIMEOUT`], 620 s.
    ///
    /// Every keep-alive response announces it as `Keep-Alive: timeout=N`
    /// (RFC 2068, section 19.7.1.1; MDN "Keep-Alive"), with `N` one second
    /// less than the timeout, rounded down to whole seconds (the header has
    /// no finer unit), so that a pool that heeds the header retires the
    /// connection before the server closes it. A timeout under 2 s leaves
    /// no whole second and is not announced at all: `timeout=0` would be no
    /// promise a pool can keep (Node's agent reads it as "never reuse",
    /// others as "no limit"); configure such a pool to retire connections
    /// sooner than the timeout. The close itself never discards a request
    /// already in the socket: one that arrived is read and served first
    /// (its response then closes the connection).
    ///
    /// HTTP/2 connections are not closed for idleness; use hyper's
    /// keep-alive pings through [`configure`](Self::configure) to find dead
    /// peers.
    ///
    /// # Panics
    ///
    /// If `timeout` is `Some(Duration::ZERO)`: whether zero means "close
    /// at once" or "never close" differs from server to server, so it means
    /// neither here. Say `None` to keep idle connections open.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into();
        assert!(
            timeout != Some(Duration::ZERO),
            "an idle timeout of 0s: say None to keep idle connections open, or give a duration"
        );
        self.idle_timeout = timeout;
        self
    }

    /// How long an HTTP/1 request head may take to arrive, counted from its
    /// first byte; the connection is closed when it takes longer (a
    /// slow-loris client). `None` turns it off. Default
    /// [`DEFAULT_REQUEST_HEAD_TIMEOUT`], 30 s.
    ///
    /// It replaces hyper's `header_read_timeout`, which also counts the
    /// wait between requests (so it closed idle keep-alive connections);
    /// do not turn that one back on with [`configure`](Self::configure).
    pub fn request_head_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.head_timeout = timeout.into();
        self
    }

    /// How long an upgraded connection (a WebSocket) has, from Stopping, to
    /// finish its close handshake before the server closes it (default
    /// 2 s, [`DEFAULT_CLOSE_HANDSHAKE_WINDOW`]).
    ///
    /// At Stopping the connection's handler hears
    /// [`Cancel::stopping`](super::Cancel::stopping) (with
    /// [`axum`](crate::axum)'s WebSocket, the server sends `1001 Going
    /// Away`); a client that answers within the window closes cleanly, one
    /// that does not is closed under it. Either way the connection is
    /// reported as ended by the shutdown, not as a failure. A response can
    /// opt out with [`StreamEnd::AtCancel`](super::StreamEnd).
    pub fn close_handshake_window(mut self, window: Duration) -> Self {
        self.close_window = window;
        self
    }

    /// Serves HTTPS with `tls`: its certificate, reloadable while the
    /// server runs (see [`Tls`](super::Tls)), and ALPN to choose between
    /// HTTP/2 and HTTP/1.1. The probes on the [admin](Self::admin)
    /// listener stay plain HTTP.
    ///
    /// The server also reloads `tls` when the app is asked to
    /// ([`AppHandle::reload`](crate::AppHandle::reload)).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: super::Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Says that another process holds the main listening socket too, so
    /// that Stopping must leave the socket itself alone (default `false`).
    ///
    /// **Set it when you hand the server a socket that outlives this
    /// process's use of it**: a plain [`tokio::net::TcpListener`] made from
    /// a systemd socket-activated descriptor (systemd keeps its copy, to
    /// start the service again), or one you passed to another process
    /// yourself. At Stopping the server normally stops new handshakes on
    /// the socket (on Linux, a socket filter that drops new SYNs) and takes
    /// every connection already queued, so that none is reset. Both act on
    /// the socket, not on this process's descriptor: on a shared socket the
    /// filter would go on dropping the other process's new connections after
    /// this one exits, and the queue is the other process's to serve. With
    /// `shared_listener(true)` the server only closes its own descriptor.
    ///
    /// Not needed for listeners from [`Listeners`](crate::listen::Listeners)
    /// (features `systemd`, `upgrade`): they know where they came from and
    /// close accordingly. The server cannot tell for a plain descriptor:
    /// `LISTEN_FDS` is often unset by the code that took the sockets, and
    /// descriptor numbers are reused.
    pub fn shared_listener(mut self, shared: bool) -> Self {
        self.shared_listener = shared;
        self
    }

    /// The component, named as set with [`name`](Self::name).
    pub fn into_component<B>(self) -> Component
    where
        S: tower_service::Service<Request<Incoming>, Response = Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: From<Bytes> + Send,
        B::Error: Into<BoxError>,
    {
        let name = self.name.clone();
        let mut parts = Some(self);
        Component::new(name, move |ctx| {
            let server = parts.take();
            async move {
                let Some(server) = server else {
                    return Err(ServeError::new(ServeErrorKind::ListenerGone).into());
                };
                run::serve(server, ctx).await
            }
        })
    }
}

impl<S, L, B> From<Server<S, L>> for Component
where
    L: Listener,
    S: tower_service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: From<Bytes> + Send,
    B::Error: Into<BoxError>,
{
    fn from(server: Server<S, L>) -> Component {
        server.into_component()
    }
}

impl<S, L> fmt::Debug for Server<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("admin", &self.admin.as_ref().map(|a| a.addr))
            .field("probes_on_main", &self.probes_on_main)
            .field("first_request_grace", &self.first_request_grace)
            .field("close_handshake_window", &self.close_window)
            .field("idle_timeout", &self.idle_timeout)
            .field("request_head_timeout", &self.head_timeout)
            .field("shared_listener", &self.shared_listener)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The bounds on a service the server runs, spelled once.
pub(crate) trait ServiceBound<B>:
    tower_service::Service<
        Request<Incoming>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S, B> ServiceBound<B> for S where
    S: tower_service::Service<
            Request<Incoming>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The bounds on a response body the server sends, spelled once.
pub(crate) trait ResBody:
    http_body::Body<Data: From<Bytes> + Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResBody for B where
    B: http_body::Body<Data: From<Bytes> + Send, Error: Into<BoxError>> + Send + 'static
{
}

fn bind(addr: impl ToSocketAddrs, backlog: u32) -> io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match bind_one(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // On Unix, lets a restarted server bind while old connections linger in
    // TIME_WAIT; on Windows the same option would allow port stealing.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(crate::backlog::as_c_int(backlog))?;
    tokio::net::TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Server;
    use crate::http::Probes;
    use crate::{App, Budget, Health, Phase};

    /// A bound on each wait below, never reached when the test passes.
    const BOUND: Duration = Duration::from_secs(10);

    #[tokio::test]
    #[should_panic(expected = "an idle timeout of 0s")]
    async fn an_idle_timeout_of_zero_is_refused_as_ambiguous() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Server::from_std(std, Probes::new(Health::new())).unwrap();
        let _ = server.idle_timeout(Duration::ZERO);
    }

    /// systemd socket activation, or a handoff of the user's own: another
    /// process (here, the duplicate descriptor it would hold) keeps the
    /// socket after this server stops. It must still get new connections:
    /// no filter left behind, the queue left to it.
    #[tokio::test]
    async fn a_shared_listener_still_takes_connections_for_its_other_holder_after_stopping() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std.local_addr().unwrap();
        let other = std.try_clone().unwrap();
        let server = Server::from_std(std, Probes::new(Health::new()))
            .unwrap()
            .shared_listener(true);
        let app = App::builder("shared")
            .handle_signals(false)
            .exit_watchdog(false)
            .budget(Budget::new(Duration::from_secs(60)).drain_delay(Duration::ZERO))
            .component(server)
            .build()
            .unwrap();
        let handle = app.handle();
        let run = tokio::spawn(app.run());
        tokio::time::timeout(BOUND, handle.reached(Phase::Running))
            .await
            .expect("running");
        handle.shutdown("test");
        let report = tokio::time::timeout(BOUND, run)
            .await
            .expect("stopped")
            .unwrap();
        assert_eq!(report.status(), crate::ExitStatus::Clean, "{report}");

        // A SYN filter would drop this handshake (the client retries for
        // minutes); a drained queue would not matter, a filter does.
        let client = tokio::time::timeout(BOUND, tokio::net::TcpStream::connect(addr))
            .await
            .expect("the handshake completes: nothing filters the shared socket")
            .expect("the other holder's socket still listens");
        other.set_nonblocking(true).unwrap();
        let other = tokio::net::TcpListener::from_std(other).unwrap();
        let (_, peer) = tokio::time::timeout(BOUND, other.accept())
            .await
            .expect("the other holder accepts it")
            .unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
    }

    /// A listener whose socket is gone: every accept fails the same way.
    struct Closed;

    impl crate::http::Listener for Closed {
        type Io = tokio::net::TcpStream;
        type Addr = std::net::SocketAddr;

        async fn accept(&mut self) -> std::io::Result<(Self::Io, Self::Addr)> {
            Err(std::io::Error::from_raw_os_error(nix::libc::EBADF))
        }

        fn local_addr(&self) -> std::io::Result<Self::Addr> {
            Err(std::io::Error::other("no socket"))
        }
    }

    /// An accept loop that sees `EBADF` fails its component, instead of
    /// logging `accept failed` forever while nothing is served.
    #[tokio::test]
    async fn an_accept_loop_that_sees_ebadf_fails_its_component() {
        use crate::{Component, ExitStatus, RestartPolicy};
        let server = Server::new(Closed, Probes::new(Health::new()));
        let app = App::builder("closed")
            .handle_signals(false)
            .exit_watchdog(false)
            .budget(Budget::new(Duration::from_secs(60)).drain_delay(Duration::ZERO))
            .component(
                Component::from(server).restart(RestartPolicy::default().intensity(0, BOUND)),
            )
            .build()
            .unwrap();
        let report = tokio::time::timeout(BOUND, app.run())
            .await
            .expect("the app stops on its own");
        assert_eq!(report.status(), ExitStatus::ComponentFailed, "{report}");
        assert!(
            report.to_string().contains("cannot accept any more"),
            "{report}"
        );
    }
}
