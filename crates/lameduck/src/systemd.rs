//! systemd integration: the `sd_notify` protocol and the service watchdog.
//!
//! An [`App`](crate::App) built with the `systemd` feature talks to systemd
//! on its own when `NOTIFY_SOCKET` is set (a `Type=notify` or
//! `Type=notify-reload` unit); nothing needs to be called. What it sends:
//!
//! | when | message |
//! |---|---|
//! | start | `STATUS=starting` |
//! | Running | `READY=1`, `STATUS=running` |
//! | upgrade begins (feature `upgrade`) | `RELOADING=1`, `MONOTONIC_USEC=…`, `EXTEND_TIMEOUT_USEC=` the upgrade timeout, `STATUS=upgrading` |
//! | new process ready | `MAINPID=` its pid, `READY=1`, `STATUS=…`; the old process says nothing more |
//! | upgrade failed | `READY=1`, `STATUS=running; upgrade failed: …` |
//! | Draining | `STOPPING=1`, `STATUS=draining: <cause>`, `EXTEND_TIMEOUT_USEC=` what is left of the grace period |
//! | each later phase | `STATUS=<phase>`, `EXTEND_TIMEOUT_USEC=` what is left |
//! | every `WATCHDOG_USEC / 2` while live | `WATCHDOG=1` |
//!
//! The watchdog pings come from a task on the app's runtime, and only while
//! the liveness probe passes: a stalled runtime or a component that reports
//! itself broken ([`Context::unhealthy`](crate::Context::unhealthy)) misses
//! pings, and systemd restarts the service (`WatchdogSec=`).
//!
//! [`Notifier`] is public for services that want to send more (their own
//! `STATUS=`, say). [`NotifySocket`] is the other side, systemd's: a
//! supervisor serves it to the programs it starts (`lameduck run --ready
//! notify`).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

mod notify_socket;

pub use notify_socket::{MAX_NOTIFICATION, Notification, NotifySocket};

/// One `sd_notify` assignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notify<'a> {
    /// `READY=1`: start-up (or a reload) is complete.
    Ready,
    /// `RELOADING=1`: a reload (here, an upgrade) begins. Send with
    /// [`Notify::MonotonicNow`], as `Type=notify-reload` requires.
    Reloading,
    /// `STOPPING=1`: the shutdown has begun.
    Stopping,
    /// `STATUS=…`: a one-line status for `systemctl status` (newlines are
    /// replaced by spaces).
    Status(&'a str),
    /// `MAINPID=…`: the service's main process is now this one.
    MainPid(u32),
    /// `WATCHDOG=1`: a keep-alive ping.
    Watchdog,
    /// `EXTEND_TIMEOUT_USEC=…`: the current start, reload or stop will take
    /// up to this much longer.
    ExtendTimeout(Duration),
    /// `MONOTONIC_USEC=…`: now, on `CLOCK_MONOTONIC`.
    MonotonicNow,
}

impl Notify<'_> {
    fn write(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = match self {
            Notify::Ready => writeln!(out, "READY=1"),
            Notify::Reloading => writeln!(out, "RELOADING=1"),
            Notify::Stopping => writeln!(out, "STOPPING=1"),
            Notify::Status(s) => writeln!(out, "STATUS={}", s.replace(['\n', '\r'], " ")),
            Notify::MainPid(pid) => writeln!(out, "MAINPID={pid}"),
            Notify::Watchdog => writeln!(out, "WATCHDOG=1"),
            Notify::ExtendTimeout(d) => writeln!(out, "EXTEND_TIMEOUT_USEC={}", d.as_micros()),
            Notify::MonotonicNow => writeln!(out, "MONOTONIC_USEC={}", monotonic_usec()),
        };
    }
}

/// The message for `states`: one `NAME=value` per line, as `sd_notify`
/// sends them in a single datagram (so systemd applies them together).
pub fn message(states: &[Notify<'_>]) -> String {
    let mut out = String::new();
    for s in states {
        s.write(&mut out);
    }
    out
}

fn monotonic_usec() -> u128 {
    use nix::time::{ClockId, clock_gettime};
    match clock_gettime(ClockId::CLOCK_MONOTONIC) {
        Ok(t) => Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32).as_micros(),
        Err(_) => 0,
    }
}

/// A client of systemd's notification socket (`NOTIFY_SOCKET`).
///
/// Sending never blocks: the socket is non-blocking, and a message systemd
/// has no room for is dropped with an error rather than stalling the
/// caller.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`; `None` when it is unset (the service
    /// does not run under a notify-type unit).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) if !path.is_empty() => Self::connect(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for the socket at `path`: a file path, or `@name` for a
    /// Linux abstract socket.
    ///
    /// # Errors
    ///
    /// When a datagram socket cannot be made, or `path` is an abstract name
    /// on a system without them.
    pub fn connect(path: impl AsRef<OsStr>) -> io::Result<Self> {
        let path = path.as_ref();
        let addr = address(path)?;
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket, addr })
    }

    /// Sends `states` in one datagram.
    ///
    /// # Errors
    ///
    /// When the datagram cannot be sent (systemd gone, its queue full).
    pub fn notify(&self, states: &[Notify<'_>]) -> io::Result<()> {
        let msg = message(states);
        self.socket
            .send_to_addr(msg.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

fn address(path: &OsStr) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            return SocketAddr::from_abstract_name(name);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "NOTIFY_SOCKET: abstract sockets need Linux",
            ));
        }
    }
    SocketAddr::from_pathname(path)
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as
/// `sd_watchdog_enabled(3)` advises; `None` when the watchdog is off or
/// meant for another process (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_assignment_per_line() {
        let m = message(&[
            Notify::Ready,
            Notify::Status("running\nfine"),
            Notify::MainPid(42),
        ]);
        assert_eq!(m, "READY=1\nSTATUS=running fine\nMAINPID=42\n");
        assert_eq!(
            message(&[Notify::ExtendTimeout(Duration::from_millis(1500))]),
            "EXTEND_TIMEOUT_USEC=1500000\n"
        );
    }

    #[test]
    fn monotonic_time_is_sent_in_microseconds() {
        let m = message(&[Notify::Reloading, Notify::MonotonicNow]);
        let usec: u128 = m
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(usec > 0);
    }

    #[test]
    fn a_notifier_delivers_to_a_datagram_socket() {
        let dir = std::env::temp_dir().join(format!("lameduck-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        Notifier::connect(&path)
            .unwrap()
            .notify(&[Notify::Stopping])
            .unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
