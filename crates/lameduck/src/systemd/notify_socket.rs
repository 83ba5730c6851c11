//! The receiving side of `sd_notify`: a socket that programs this process
//! starts send `READY=1`, `STOPPING=1`, `STATUS=…` to, as they would to
//! systemd.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// The longest datagram taken. Longer ones are dropped whole: a message cut
/// in two could read as a different one.
pub const MAX_NOTIFICATION: usize = 4096;

/// A datagram socket that speaks systemd's side of the `sd_notify`
/// protocol, for supervising programs that were written for systemd.
///
/// Bind one, give its [`path`](Self::path) to a child as `NOTIFY_SOCKET`,
/// and read what the child says with [`recv`](Self::recv): any program that
/// uses `sd_notify(3)`, `systemd-notify`, Python's `sdnotify`, Go's
/// `daemon.SdNotify` or [`Notifier`](super::Notifier) talks to it
/// unchanged. Each [`Notification`] carries the sender's pid (on Linux, from
/// the kernel: `SO_PASSCRED`), so a supervisor of several processes can
/// tell whose `READY=1` it is.
///
/// Input is untrusted: a datagram longer than [`MAX_NOTIFICATION`] is
/// dropped whole, and lines that are not `NAME=value` are dropped and
/// counted in [`Notification::rejected`]; neither is an error. Descriptors
/// sent along (`FDSTORE=1`) are closed by the kernel, not kept.
///
/// The socket file is created with the process's umask and removed when
/// the value is dropped; bind it in a directory only the service can write.
///
/// # Examples
///
/// ```no_run
/// use lameduck::systemd::NotifySocket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let socket = NotifySocket::bind("/run/my-supervisor/notify.sock")?;
/// let mut child = std::process::Command::new("./my-server")
///     .env("NOTIFY_SOCKET", socket.path())
///     .spawn()?;
/// loop {
///     let n = socket.recv().await?;
///     if n.is_ready() {
///         println!("pid {:?} is ready", n.pid);
///         break;
///     }
/// }
/// # let _ = child.kill(); Ok(()) }
/// ```
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

/// One datagram received on a [`NotifySocket`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Notification {
    /// The sender's pid, when the kernel says (Linux).
    pub pid: Option<u32>,
    /// The `NAME=value` assignments, in order.
    pub fields: Vec<(String, String)>,
    /// Lines dropped as malformed (no `=`, an empty or lower-case name, not
    /// UTF-8), or 1 for a datagram dropped whole (too long).
    pub rejected: usize,
}

impl Notification {
    /// The value of the last assignment of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `READY=1`.
    pub fn is_ready(&self) -> bool {
        self.get("READY") == Some("1")
    }

    /// `STOPPING=1`.
    pub fn is_stopping(&self) -> bool {
        self.get("STOPPING") == Some("1")
    }

    /// `RELOADING=1`.
    pub fn is_reloading(&self) -> bool {
        self.get("RELOADING") == Some("1")
    }

    /// `WATCHDOG=1`.
    pub fn is_watchdog(&self) -> bool {
        self.get("WATCHDOG") == Some("1")
    }

    /// `STATUS=…`.
    pub fn status(&self) -> Option<&str> {
        self.get("STATUS")
    }

    /// Parses a datagram's text.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut n = Notification::default();
        for line in bytes.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            let parsed = std::str::from_utf8(line).ok().and_then(|l| {
                let (name, value) = l.split_once('=')?;
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                valid.then(|| (name.to_string(), value.to_string()))
            });
            match parsed {
                Some(field) => n.fields.push(field),
                None => n.rejected += 1,
            }
        }
        n
    }
}

impl NotifySocket {
    /// Binds a datagram socket at `path` (which must not exist).
    ///
    /// # Errors
    ///
    /// When the socket cannot be made or bound (the path exists, its
    /// directory is missing or not writable), or, on Linux, credentials
    /// cannot be asked for.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let socket = UnixDatagram::bind(path)?;
        let this = Self {
            socket,
            path: path.to_path_buf(),
        };
        #[cfg(any(target_os = "linux", target_os = "android"))]
        nix::sys::socket::setsockopt(&this.socket, nix::sys::socket::sockopt::PassCred, &true)?;
        Ok(this)
    }

    /// Where it is bound: the value for a child's `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next notification.
    ///
    /// # Errors
    ///
    /// When reading the socket fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a datagram is only taken when it is returned.
    pub async fn recv(&self) -> io::Result<Notification> {
        loop {
            let got = self
                .socket
                .async_io(Interest::READABLE, || receive(&self.socket))
                .await?;
            if let Some(n) = got {
                return Ok(n);
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One `recvmsg`: `None` for a datagram dropped whole (too long).
fn receive(socket: &UnixDatagram) -> io::Result<Option<Notification>> {
    use nix::sys::socket::{MsgFlags, recvmsg};

    let mut buf = [0u8; MAX_NOTIFICATION];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let mut cmsg: Vec<u8> = Vec::new();
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )?;
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        tracing::debug!(target: "lameduck::systemd", "notify socket: dropped a datagram longer than {MAX_NOTIFICATION} bytes");
        return Ok(None);
    }
    let len = msg.bytes;
    let mut pid = None;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let nix::sys::socket::ControlMessageOwned::ScmCredentials(cred) = c {
                pid = u32::try_from(cred.pid()).ok();
            }
        }
    }
    let mut n = Notification::parse(&buf[..len]);
    n.pid = pid;
    Ok(Some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_parsed_and_garbage_is_counted() {
        let n = Notification::parse(
            b"READY=1\nSTATUS=up and=running\n\nnonsense\nlower=1\n=x\n\xff=1\n",
        );
        assert!(n.is_ready());
        assert_eq!(n.status(), Some("up and=running"));
        assert_eq!(n.rejected, 4);
        assert!(!n.is_stopping());
    }

    #[test]
    fn the_last_assignment_of_a_name_wins() {
        let n = Notification::parse(b"STATUS=a\nSTATUS=b");
        assert_eq!(n.status(), Some("b"));
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lameduck-notify-socket-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("notify.sock")
    }

    #[tokio::test]
    async fn a_notifier_is_heard_with_its_pid() {
        let path = temp_path("pid");
        let socket = NotifySocket::bind(&path).unwrap();
        super::super::Notifier::connect(&path)
            .unwrap()
            .notify(&[
                super::super::Notify::Ready,
                super::super::Notify::Status("up"),
            ])
            .unwrap();
        let n = socket.recv().await.unwrap();
        assert!(n.is_ready());
        assert_eq!(n.status(), Some("up"));
        #[cfg(target_os = "linux")]
        assert_eq!(n.pid, Some(std::process::id()));
        drop(socket);
        assert!(!path.exists(), "the socket file is removed on drop");
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn an_oversized_datagram_is_dropped_and_the_next_one_read() {
        let path = temp_path("oversized");
        let socket = NotifySocket::bind(&path).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let big = vec![b'A'; MAX_NOTIFICATION + 10];
        client.send_to(&big, &path).unwrap();
        client.send_to(b"STOPPING=1\n", &path).unwrap();
        let n = socket.recv().await.unwrap();
        assert!(n.is_stopping(), "{n:?}");
        assert_eq!(n.rejected, 0);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
