//! Listening for shutdown signals (and, with the `upgrade` feature, for
//! `SIGHUP`, which asks for an upgrade).

use tokio::sync::mpsc;

use crate::Signal;

/// Receives `SIGTERM` and `SIGINT` (Ctrl+C on Windows) for as long as it
/// lives. Every signal is delivered, so the driver can tell the first (start
/// the shutdown) from the second (force the exit).
pub(crate) struct Signals {
    rx: Option<mpsc::UnboundedReceiver<Signal>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Signals {
    /// Listens for real signals.
    ///
    /// The handlers are installed before this returns, so a signal that
    /// arrives right after is not lost to the default action.
    pub(crate) fn listen() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = imp::spawn(tx)?;
        Ok(Self {
            rx: Some(rx),
            task: Some(task),
        })
    }

    /// Never yields a signal.
    pub(crate) fn none() -> Self {
        Self {
            rx: None,
            task: None,
        }
    }

    /// The next signal; pends forever when not listening.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal is only taken from the channel when returned.
    pub(crate) async fn recv(&mut self) -> Signal {
        match &mut self.rx {
            Some(rx) => match rx.recv().await {
                Some(sig) => sig,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Turns every `SIGHUP` into an upgrade request (feature `upgrade`). From
/// the moment this returns, `SIGHUP` no longer kills the process (its
/// default action).
#[cfg(all(unix, feature = "upgrade"))]
pub(crate) fn hangups(app: crate::AppHandle) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            app.send(super::Event::Upgrade(crate::upgrade::Request {
                via: crate::upgrade::Via::Signal,
                reply: None,
            }));
        }
    }))
}

#[cfg(unix)]
mod imp {
    use tokio::signal::unix::{SignalKind, signal};
    use tokio::sync::mpsc;

    use crate::Signal;

    pub(super) fn spawn(
        tx: mpsc::UnboundedSender<Signal>,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    Some(()) = term.recv() => Signal::Terminate,
                    Some(()) = int.recv() => Signal::Interrupt,
                    else => return,
                };
                if tx.send(sig).is_err() {
                    return;
                }
            }
        }))
    }
}

#[cfg(windows)]
mod imp {
    use tokio::signal::windows;
    use tokio::sync::mpsc;

    use crate::Signal;

    pub(super) fn spawn(
        tx: mpsc::UnboundedSender<Signal>,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let mut c = windows::ctrl_c()?;
        let mut close = windows::ctrl_close()?;
        let mut shutdown = windows::ctrl_shutdown()?;
        Ok(tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    Some(()) = c.recv() => Signal::Interrupt,
                    Some(()) = close.recv() => Signal::Terminate,
                    Some(()) = shutdown.recv() => Signal::Terminate,
                    else => return,
                };
                if tx.send(sig).is_err() {
                    return;
                }
            }
        }))
    }
}
