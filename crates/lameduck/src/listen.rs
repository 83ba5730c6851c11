//! Listening sockets from elsewhere: systemd socket activation, a parent
//! lameduck process (an upgrade), or a fresh bind — in that order.
//!
//! A service asks for each listener by name, with the address to bind when
//! nothing is inherited:
//!
//! ```no_run
//! use lameduck::listen::Listeners;
//!
//! # fn main() -> Result<(), lameduck::listen::ListenError> {
//! let mut listeners = Listeners::from_env()?;
//! let http = listeners.tcp("http", "127.0.0.1:8080")?;
//! let admin = listeners.tcp("admin", "127.0.0.1:9090")?;
//! // give `http` to lameduck::http::Server::new, or `http.into_std()` to any server
//! # Ok(()) }
//! ```
//!
//! # The convention
//!
//! It is systemd's (`sd_listen_fds(3)`), so sockets can come from a
//! `.socket` unit, from an upgrading lameduck process, from a supervisor,
//! or from `systemd-socket-activate` while developing:
//!
//! | variable | holds |
//! |---|---|
//! | `LISTEN_FDS` | how many sockets were passed; they are descriptors 3, 4, … |
//! | `LISTEN_PID` | the pid they were passed to: this process, or they are not ours |
//! | `LISTEN_FDNAMES` | their names, `:`-separated (systemd's `FileDescriptorName=`); `unknown` when unset |
//!
//! Bad input is an error that names the variable, never a silent rebind: a
//! `LISTEN_PID` of another process, a count that is not a number or does
//! not match the names, a descriptor that is not open or not a listening
//! stream socket, an upgrade channel (`LAMEDUCK_UPGRADE_FD`, feature
//! `upgrade`) that is not a socket pair to the parent. Such an error
//! belongs in the start-up failure of the service; see
//! [`ListenError::variable`]. An inherited socket the service never asks
//! for is named in a warning when the app is about to run, or refuses the
//! start ([`Listeners::unclaimed`]).
//!
//! # Why by name, and why through here
//!
//! Names make the mapping explicit when a service has several listeners
//! (`http`, `admin`), and survive reordering. Every listener handed out —
//! inherited or bound — is recorded for the next upgrade (feature
//! `upgrade`), which passes them all to the new process under the same
//! names. A socket the service binds by other means is not passed on, and
//! the new process will find its address in use.
//!
//! Take the inherited sockets early, before starting threads that might
//! open files: the numbers 3, 4, … are claimed as this process's own.

use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};

mod env;
mod error;
#[cfg(feature = "upgrade")]
pub(crate) mod files;
mod handoff;
pub(crate) mod owner;
pub(crate) mod registry;
mod socket;
mod unclaimed;

pub use error::{ListenError, ListenErrorKind};
pub use handoff::Handoff;
#[cfg(feature = "upgrade")]
pub(crate) use handoff::{claim as claim_fd, inspect as inspect_fd};
use socket::Origin;
pub use socket::{TcpListener, UnixListener};
pub use unclaimed::Unclaimed;
pub(crate) use unclaimed::check as check_unclaimed;

#[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
/// The lameduck-private variable holding the descriptor of the upgrade
/// channel to the parent.
pub(crate) const UPGRADE_FD_VAR: &str = "LAMEDUCK_UPGRADE_FD";
/// The lameduck-private variable holding the pid the upgrade channel is for
/// (set as `LISTEN_PID` is: it must be this process's).
pub(crate) const UPGRADE_PID_VAR: &str = "LAMEDUCK_UPGRADE_PID";

/// Set by the first [`Listeners::from_env`]: descriptor numbers are claimed
/// once per process.
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The inherited listening sockets not yet taken, and the way to bind the
/// rest. See the [module docs](self).
#[derive(Debug)]
pub struct Listeners {
    inherited: Vec<(String, OwnedFd)>,
    origin: Origin,
    /// The listen backlog of sockets bound fresh.
    backlog: u32,
}

/// What kind of socket a descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Ip,
    Unix,
    Other,
}

impl Family {
    /// What a socket of this family is, for an error.
    fn described(self) -> &'static str {
        match self {
            Family::Ip => "a TCP socket",
            Family::Unix => "a Unix socket",
            Family::Other => "neither a TCP nor a Unix socket",
        }
    }
}

impl Listeners {
    /// Takes the sockets passed in the environment (none when `LISTEN_FDS`
    /// is unset), checked to be listening stream sockets.
    ///
    /// # Errors
    ///
    /// [`ListenErrorKind::Environment`] for a malformed, inconsistent or
    /// foreign environment (an unusable upgrade channel included, feature
    /// `upgrade`: `LAMEDUCK_UPGRADE_FD` naming a descriptor that is not a
    /// socket pair to the parent), [`ListenErrorKind::NotListening`] for a
    /// descriptor that is not a listening stream socket — each naming the
    /// variable — and [`ListenErrorKind::AlreadyTaken`] on a second call
    /// that would claim the same descriptors again.
    pub fn from_env() -> Result<Self, ListenError> {
        // The upgrade channel first: it is an inherited descriptor too, and
        // every one of them is checked and claimed before anything is
        // bound (a socket bound now could take a number the channel's
        // variable names).
        #[cfg(feature = "upgrade")]
        {
            crate::upgrade::child::init();
            if let Some(why) = crate::upgrade::child::init_error() {
                return Err(ListenError::env(UPGRADE_FD_VAR, why));
            }
        }
        let slots = env::parse(&env::Vars::from_env(), std::process::id())?;
        let from_parent =
            std::env::var(UPGRADE_PID_VAR).is_ok_and(|p| p == std::process::id().to_string());
        let origin = if from_parent {
            Origin::Parent
        } else {
            Origin::Systemd
        };
        if slots.is_empty() {
            return Ok(Self::none_with(origin));
        }
        if CLAIMED.swap(true, Ordering::AcqRel) {
            return Err(ListenError::new(
                ListenErrorKind::AlreadyTaken,
                "the inherited sockets were already taken by an earlier Listeners::from_env".into(),
                None,
            ));
        }
        // Check every descriptor before owning any: on an error nothing is
        // closed, in case a number is not ours after all.
        for slot in &slots {
            let what = format!("LISTEN_FDS: fd {} ({:?})", slot.fd, slot.name);
            handoff::inspect(slot.fd, |fd| check_listening(fd, &what)).map_err(|e| {
                ListenError::new(
                    ListenErrorKind::NotListening,
                    format!("{what} is not open"),
                    Some(e),
                )
            })??;
        }
        unclaimed::inherited(
            &slots
                .iter()
                .map(|s| (s.name.clone(), s.fd))
                .collect::<Vec<_>>(),
        );
        let mut inherited = Vec::with_capacity(slots.len());
        for slot in slots {
            let fd = handoff::claim(slot.fd).map_err(|e| {
                ListenError::new(
                    ListenErrorKind::NotListening,
                    format!(
                        "LISTEN_FDS: fd {} ({:?}) cannot be taken",
                        slot.fd, slot.name
                    ),
                    Some(e),
                )
            })?;
            #[cfg(feature = "upgrade")]
            registry::register(&slot.name, &fd)
                .map_err(|e| io_error("cannot record an inherited socket", e))?;
            inherited.push((slot.name, fd));
        }
        tracing::info!(
            target: "lameduck::listen",
            sockets = %inherited.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(","),
            from = if from_parent { "parent" } else { "systemd" },
            "inherited listening sockets"
        );
        Ok(Self {
            inherited,
            origin,
            backlog: crate::default_listen_backlog(),
        })
    }

    /// No inherited sockets: every listener is bound fresh.
    pub fn none() -> Self {
        Self::none_with(Origin::Bound)
    }

    fn none_with(origin: Origin) -> Self {
        Self {
            inherited: Vec::new(),
            origin,
            backlog: crate::default_listen_backlog(),
        }
    }

    /// What the app does about inherited sockets nobody took by the time it
    /// is about to run (default [`Unclaimed::Warn`]: a warning that names
    /// them and the names asked for; [`Unclaimed::Fail`]: the app does not
    /// run, exit code 78).
    pub fn unclaimed(self, policy: Unclaimed) -> Self {
        unclaimed::set_policy(policy);
        self
    }

    /// The listen backlog of the sockets [`tcp`](Self::tcp) and
    /// [`unix`](Self::unix) bind fresh (default
    /// [`default_listen_backlog`](crate::default_listen_backlog): the
    /// larger of 1024 and `net.core.somaxconn`). Inherited sockets keep
    /// the backlog they were made with.
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// The names of the inherited sockets not yet taken.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inherited.iter().map(|(n, _)| n.as_str())
    }

    /// How many inherited sockets are not yet taken.
    pub fn len(&self) -> usize {
        self.inherited.len()
    }

    /// Whether every inherited socket was taken (or none was passed).
    pub fn is_empty(&self) -> bool {
        self.inherited.is_empty()
    }

    /// Takes the inherited TCP socket named `name` (the first, if several
    /// have the name); `None` if none has it.
    ///
    /// # Errors
    ///
    /// [`ListenErrorKind::WrongType`] when the socket with that name is not
    /// a TCP socket.
    pub fn take_tcp(&mut self, name: &str) -> Result<Option<TcpListener>, ListenError> {
        Ok(self
            .take(name, Family::Ip, "TCP")?
            .map(|fd| TcpListener::new(fd.into(), name, self.origin)))
    }

    /// Takes the inherited Unix stream socket named `name`; `None` if none
    /// has it.
    ///
    /// # Errors
    ///
    /// [`ListenErrorKind::WrongType`] when the socket with that name is not
    /// a Unix socket.
    pub fn take_unix(&mut self, name: &str) -> Result<Option<UnixListener>, ListenError> {
        let Some(fd) = self.take(name, Family::Unix, "Unix")? else {
            return Ok(None);
        };
        #[cfg(feature = "upgrade")]
        if self.origin == Origin::Parent {
            files::inherited(name, &fd);
        }
        Ok(Some(UnixListener::new(fd.into(), name, self.origin)))
    }

    /// The inherited TCP socket named `name`, or else a fresh one bound to
    /// `addr` (with `SO_REUSEADDR`, as std does on Unix).
    ///
    /// # Errors
    ///
    /// As [`take_tcp`](Self::take_tcp), and [`ListenErrorKind::Bind`] when
    /// the bind fails.
    pub fn tcp(
        &mut self,
        name: &str,
        addr: impl ToSocketAddrs,
    ) -> Result<TcpListener, ListenError> {
        if let Some(l) = self.take_tcp(name)? {
            return Ok(l);
        }
        let bind_error = |e: io::Error| {
            let hint = (e.kind() == io::ErrorKind::AddrInUse)
                .then(|| unclaimed::hint_for(name))
                .flatten()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            ListenError::new(
                ListenErrorKind::Bind,
                format!("cannot bind the {name:?} listener{hint}"),
                Some(e),
            )
        };
        let std = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        crate::backlog::relisten(&std, self.backlog).map_err(bind_error)?;
        record(name, &std)?;
        Ok(TcpListener::new(std, name, Origin::Bound))
    }

    /// The inherited Unix socket named `name`, or else a fresh one bound at
    /// `path`. A socket file left at `path` by a process that is gone (a
    /// connect is refused) is replaced; one that a live process listens on
    /// is an error.
    ///
    /// The socket file bound here is removed when the app exits for good
    /// (feature `upgrade`; on every way out the PID file is removed on, a
    /// forced exit and fatal signals included, not `SIGKILL`), if it is
    /// still the same file. Not when an upgrade handed the socket over: the
    /// new process serves it, and removes it at its own final exit. Never
    /// when systemd passed the socket: the file is the socket unit's.
    ///
    /// # Errors
    ///
    /// As [`take_unix`](Self::take_unix), and [`ListenErrorKind::Bind`] when
    /// the bind fails or the path is in use.
    pub fn unix(
        &mut self,
        name: &str,
        path: impl AsRef<Path>,
    ) -> Result<UnixListener, ListenError> {
        if let Some(l) = self.take_unix(name)? {
            return Ok(l);
        }
        let path = path.as_ref();
        let bind_error = |e| {
            ListenError::new(
                ListenErrorKind::Bind,
                format!("cannot bind the {name:?} listener at {}", path.display()),
                Some(e),
            )
        };
        remove_stale_socket(path).map_err(bind_error)?;
        let std = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
        crate::backlog::relisten(&std, self.backlog).map_err(bind_error)?;
        record(name, &std)?;
        #[cfg(feature = "upgrade")]
        files::bound(name, path);
        Ok(UnixListener::new(std, name, Origin::Bound))
    }

    fn take(
        &mut self,
        name: &str,
        want: Family,
        what: &str,
    ) -> Result<Option<OwnedFd>, ListenError> {
        unclaimed::asked(name);
        let Some(i) = self.inherited.iter().position(|(n, _)| n == name) else {
            return Ok(None);
        };
        let found = family(&self.inherited[i].1);
        if found != want {
            return Err(ListenError::new(
                ListenErrorKind::WrongType,
                format!(
                    "the inherited socket {name:?} is not a {what} socket: it is {} (passed under that name in LISTEN_FDNAMES)",
                    found.described()
                ),
                None,
            ));
        }
        let fd = self.inherited.remove(i).1;
        unclaimed::taken(fd.as_raw_fd());
        Ok(Some(fd))
    }
}

/// The descriptor numbers `LISTEN_FDS` passes to this process (an empty
/// range when it passes none, or the variables are not this process's).
#[cfg(feature = "upgrade")]
pub(crate) fn inherited_range() -> std::ops::RangeInclusive<std::os::fd::RawFd> {
    let n = env::parse(&env::Vars::from_env(), std::process::id())
        .map(|slots| slots.len())
        .unwrap_or(0);
    // At most `MAX_FDS`: no overflow.
    env::FIRST_FD..=env::FIRST_FD + n as std::os::fd::RawFd - 1
}

fn record(name: &str, socket: &impl std::os::fd::AsFd) -> Result<(), ListenError> {
    #[cfg(feature = "upgrade")]
    registry::register(name, socket)
        .map_err(|e| io_error("cannot record a listening socket", e))?;
    let _ = (name, socket);
    Ok(())
}

#[cfg(feature = "upgrade")]
fn io_error(what: &str, e: io::Error) -> ListenError {
    ListenError::new(ListenErrorKind::Io, what.to_string(), Some(e))
}

fn check_listening(fd: std::os::fd::BorrowedFd<'_>, what: &str) -> Result<(), ListenError> {
    let not = |why: &str, e: Option<io::Error>| {
        ListenError::new(ListenErrorKind::NotListening, format!("{what} {why}"), e)
    };
    match getsockopt(&fd, sockopt::AcceptConn) {
        Ok(true) => {}
        Ok(false) => return Err(not("is a socket but not a listening one", None)),
        Err(nix::errno::Errno::ENOTSOCK) => {
            return Err(not("is not a listening socket (not a socket at all)", None));
        }
        Err(e) => return Err(not("cannot be checked", Some(e.into()))),
    }
    match getsockopt(&fd, sockopt::SockType) {
        Ok(SockType::Stream) => Ok(()),
        Ok(other) => Err(not(
            &format!("is a {other:?} socket, not a stream one"),
            None,
        )),
        Err(e) => Err(not("cannot be checked", Some(e.into()))),
    }
}

fn family(fd: &OwnedFd) -> Family {
    match getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .ok()
        .and_then(|a| a.family())
    {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => Family::Ip,
        Some(AddressFamily::Unix) => Family::Unix,
        _ => Family::Other,
    }
}

/// Removes a socket file nobody listens on any more.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "a running process listens there",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}
