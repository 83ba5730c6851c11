//! The listen backlog of every socket lameduck binds.

/// The smallest listen backlog lameduck binds with.
pub const MIN_LISTEN_BACKLOG: u32 = 1024;

/// The listen backlog lameduck binds with unless told otherwise: the larger
/// of [`MIN_LISTEN_BACKLOG`] (1024) and the system's own limit
/// (`/proc/sys/net/core/somaxconn` on Linux, which the kernel clamps every
/// backlog to; 4096 by default since Linux 5.4).
///
/// The backlog bounds the connections the kernel has completed but the
/// server has not accepted yet. A burst larger than it overflows the queue:
/// the kernel drops the extra SYNs, and each of those clients waits for its
/// SYN retransmit, a second or more. The standard library binds with 128,
/// too few for a burst of reconnects after a deploy.
///
/// Used by [`http::Server::bind`](crate::http::Server::bind), the admin
/// listener, and [`Listeners`](crate::listen::Listeners) (features
/// `systemd`, `upgrade`); each can be given another.
pub fn default_listen_backlog() -> u32 {
    system_limit().map_or(MIN_LISTEN_BACKLOG, |limit| limit.max(MIN_LISTEN_BACKLOG))
}

fn system_limit() -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()?
            .trim()
            .parse()
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// A backlog as `listen(2)` takes it: the kernel clamps larger values.
#[cfg_attr(
    not(any(
        feature = "http",
        all(unix, any(feature = "systemd", feature = "upgrade"))
    )),
    allow(dead_code)
)]
pub(crate) fn as_c_int(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}

/// Sets the backlog of a socket already listening (bound by the standard
/// library, with 128): on Linux and the BSDs a second `listen(2)` only
/// changes the backlog.
#[cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]
pub(crate) fn relisten(socket: &impl std::os::fd::AsFd, backlog: u32) -> std::io::Result<()> {
    use nix::sys::socket::{Backlog, listen};

    let backlog = match Backlog::new(as_c_int(backlog)) {
        Ok(backlog) => backlog,
        // Above the constant SOMAXCONN: ask for the system's limit.
        #[cfg(any(target_os = "linux", target_os = "freebsd"))]
        Err(_) => Backlog::MAXALLOWABLE,
        #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
        Err(_) => Backlog::MAXCONN,
    };
    listen(socket, backlog).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_at_least_1024_and_at_least_the_system_limit() {
        let backlog = default_listen_backlog();
        assert!(backlog >= MIN_LISTEN_BACKLOG);
        if let Some(limit) = system_limit() {
            assert!(backlog >= limit);
        }
    }
}
