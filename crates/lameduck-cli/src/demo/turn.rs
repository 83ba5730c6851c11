//! Whose turn it is to accept on a listening socket that two processes
//! hold, as they do during an upgrade.
//!
//! After `SIGHUP` the old and the new process share the listening sockets
//! (`http` and `admin`), and the kernel gives each new connection to
//! whichever of them accepts first. Two rules keep the overlap from costing
//! anything:
//!
//! - **A process that inherited a socket accepts on it only once it is
//!   Running.** Until then the old process serves the whole queue. A new
//!   process that crashes, fails or never becomes ready has taken no
//!   connection with it; and when it shuts down it leaves the socket as it
//!   found it, instead of the server's usual close (which filters new
//!   handshakes and takes the queue: the old process's, here).
//! - **Once an upgrade has handed over, the old process stops accepting.**
//!   New connections go to the new process, which is ready; the old one
//!   finishes the connections it has. That includes the probes: a load
//!   balancer probing `/readyz` during the old process's drain hears the new
//!   process (200), not the old one (503), and keeps the service in
//!   rotation across a restart.
//!
//! A listener this process bound itself accepts from the start, and keeps
//! accepting while draining for any other reason: the normal shutdown.

use std::io;

use lameduck::http::Listener;
use lameduck::{AppHandle, Phase, ShutdownReason};
use tokio::sync::watch;

/// What the listeners need to know about the app.
#[derive(Clone, Copy, Debug)]
pub(super) struct Turn {
    phase: Phase,
    /// The shutdown is an upgrade's: another process serves now.
    handed_over: bool,
    /// The app was Running at some point.
    was_running: bool,
}

impl Turn {
    pub(super) fn starting() -> Self {
        Self {
            phase: Phase::Starting,
            handed_over: false,
            was_running: false,
        }
    }

    fn may_accept(self, inherited: bool) -> bool {
        match self.phase {
            Phase::Starting => !inherited,
            Phase::Running => true,
            _ if self.handed_over => false,
            _ => !inherited || self.was_running,
        }
    }
}

/// Publishes the app's [`Turn`] until it stops.
///
/// A phase the app leaves at once may be missed (a watch keeps the last
/// value): Running is missed only if the shutdown begins in the same
/// instant, and then an inherited listener leaves the socket alone, which
/// is the safe side.
pub(super) async fn follow(app: AppHandle, turns: watch::Sender<Turn>) {
    let mut phases = app.watch_phase();
    let mut was_running = false;
    loop {
        let phase = *phases.borrow_and_update();
        was_running |= phase == Phase::Running;
        let handed_over = matches!(app.shutdown_reason(), Some(ShutdownReason::Upgraded { .. }));
        turns.send_replace(Turn {
            phase,
            handed_over,
            was_running,
        });
        if phase == Phase::Stopped || phases.changed().await.is_err() {
            return;
        }
    }
}

/// A listener that accepts only on its turn; see the [module docs](self).
pub(super) struct Turned<L> {
    inner: L,
    inherited: bool,
    turns: watch::Receiver<Turn>,
}

impl<L> Turned<L> {
    pub(super) fn new(inner: L, inherited: bool, turns: watch::Receiver<Turn>) -> Self {
        Self {
            inner,
            inherited,
            turns,
        }
    }
}

impl<L: Listener> Listener for Turned<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    /// Cancel safe: waiting on a watch is, and so is the inner accept.
    async fn accept(&mut self) -> io::Result<(Self::Io, Self::Addr)> {
        let inherited = self.inherited;
        loop {
            if self
                .turns
                .wait_for(|t| t.may_accept(inherited))
                .await
                .is_err()
            {
                // The app is gone; so is any reason to accept.
                return std::future::pending().await;
            }
            tokio::select! {
                accepted = self.inner.accept() => return accepted,
                // Not our turn any more (handed over): stop taking
                // connections; the other process takes them.
                _ = self.turns.wait_for(|t| !t.may_accept(inherited)) => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }

    fn close(self) -> Vec<(Self::Io, Self::Addr)> {
        if self.inherited && !self.turns.borrow().was_running {
            // Never served: the socket, its queue and its filters belong to
            // the process that still serves it. Only our descriptor goes.
            return Vec::new();
        }
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(phase: Phase, handed_over: bool, was_running: bool) -> Turn {
        Turn {
            phase,
            handed_over,
            was_running,
        }
    }

    #[test]
    fn an_inherited_socket_waits_for_running_and_a_bound_one_does_not() {
        assert!(!turn(Phase::Starting, false, false).may_accept(true));
        assert!(turn(Phase::Starting, false, false).may_accept(false));
        assert!(turn(Phase::Running, false, true).may_accept(true));
    }

    #[test]
    fn a_handed_over_process_stops_accepting_and_a_draining_one_does_not() {
        for inherited in [true, false] {
            assert!(!turn(Phase::Draining, true, true).may_accept(inherited));
            assert!(turn(Phase::Draining, false, true).may_accept(inherited));
        }
    }

    #[test]
    fn a_new_process_that_never_ran_leaves_the_inherited_socket_alone() {
        assert!(!turn(Phase::Draining, false, false).may_accept(true));
        assert!(turn(Phase::Draining, false, false).may_accept(false));
    }
}
