//! What an accept error means: about one connection (the next accept is
//! fine), or about the listening socket itself (every later accept fails
//! the same way). Shared by the HTTP server's listeners and the control
//! socket.

use std::io;

/// Errors about one connection, which the next accept does not repeat.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Errors that every later accept repeats: the descriptor is closed, or is
/// not (or no longer) a listening socket. Retrying would log the same
/// error forever while nothing is served.
pub(crate) fn is_fatal(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        use nix::errno::Errno;
        matches!(
            err.raw_os_error().map(Errno::from_raw),
            Some(Errno::EBADF | Errno::ENOTSOCK | Errno::EINVAL | Errno::EOPNOTSUPP)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}
