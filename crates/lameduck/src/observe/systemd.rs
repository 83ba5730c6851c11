//! systemd's notifications (feature `systemd`): what the app's phases and
//! upgrades mean in `sd_notify` terms, as an observer. See
//! [`crate::systemd`] for the table.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{Event, Observer};
use crate::systemd::{Notifier, Notify, watchdog_interval};
use crate::{AppHandle, Phase};

pub(crate) struct Systemd {
    notifier: Arc<Notifier>,
    /// Set once another process is the service's main one: systemd
    /// refuses (and logs) messages from anyone else.
    quiet: Arc<AtomicBool>,
    pinger: Option<tokio::task::JoinHandle<()>>,
}

/// Whether this process, started by an upgrade, has not yet been named
/// the main process by its parent: systemd would refuse its messages.
fn awaiting_main() -> bool {
    #[cfg(feature = "upgrade")]
    return crate::upgrade::child::is_awaiting_main();
    #[cfg(not(feature = "upgrade"))]
    return false;
}

impl Systemd {
    /// The notifier, when `NOTIFY_SOCKET` names one. `quiet_until_running`:
    /// for a process started by an upgrade, which systemd does not accept
    /// messages from until its parent names it the main process.
    ///
    /// Must run on the runtime: it starts the watchdog pings.
    pub(crate) fn start(app: &AppHandle, quiet_until_running: bool) -> Option<Self> {
        let notifier = match Notifier::from_env() {
            Ok(Some(n)) => Arc::new(n),
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(target: "lameduck::systemd", error = %err, "NOTIFY_SOCKET is set but unusable; not notifying systemd");
                return None;
            }
        };
        let quiet = Arc::new(AtomicBool::new(quiet_until_running));
        let pinger = watchdog_interval().map(|every| {
            let (notifier, quiet, health) = (notifier.clone(), quiet.clone(), app.health().clone());
            tracing::info!(target: "lameduck::systemd", every_ms = every.as_millis() as u64, "pinging the systemd watchdog while live");
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    // Relaxed: a stale read costs one ping more or less.
                    if !quiet.load(Ordering::Relaxed) && !awaiting_main() && health.is_live() {
                        let _ = notifier.notify(&[Notify::Watchdog]);
                    }
                }
            })
        });
        let this = Self {
            notifier,
            quiet,
            pinger,
        };
        this.send(&[Notify::Status("starting")]);
        Some(this)
    }

    fn send(&self, states: &[Notify<'_>]) {
        if self.quiet.load(Ordering::Relaxed) || awaiting_main() {
            return;
        }
        if let Err(err) = self.notifier.notify(states) {
            tracing::debug!(target: "lameduck::systemd", error = %err, "cannot notify systemd");
        }
    }

    /// `left`: what remains of the grace period, once shutting down.
    fn entered(&self, phase: Phase, cause: &str, left: Option<Duration>) {
        match phase {
            // Quiet until now: started by an upgrade. The parent announces
            // this process (MAINPID, READY) once it hears it is ready,
            // which it is about to; from then on it speaks for itself.
            Phase::Running if self.quiet.swap(false, Ordering::Relaxed) => {}
            Phase::Running => self.send(&[Notify::Ready, Notify::Status("running")]),
            Phase::Draining => {
                let status = format!("draining: {cause}");
                let mut m = vec![Notify::Stopping, Notify::Status(&status)];
                m.extend(left.map(Notify::ExtendTimeout));
                self.send(&m);
            }
            _ => {
                let status = phase.to_string();
                let mut m = vec![Notify::Status(&status)];
                m.extend(
                    left.filter(|_| phase != Phase::Stopped)
                        .map(Notify::ExtendTimeout),
                );
                self.send(&m);
            }
        }
    }
}

impl Observer for Systemd {
    fn on_event(&self, event: &Event<'_>) {
        match *event {
            Event::PhaseChanged {
                to,
                cause,
                grace_left,
                ..
            } => self.entered(to, cause, grace_left),
            Event::UpgradeStarted { timeout, .. } => self.send(&[
                Notify::Reloading,
                Notify::MonotonicNow,
                Notify::ExtendTimeout(timeout),
                Notify::Status("upgrading: starting a new process"),
            ]),
            Event::UpgradeSucceeded { pid } => {
                let status = format!(
                    "upgraded: pid {pid} serves; pid {} drains",
                    std::process::id()
                );
                self.send(&[Notify::MainPid(pid), Notify::Ready, Notify::Status(&status)]);
                self.quiet.store(true, Ordering::Relaxed);
            }
            Event::UpgradedInPlace { pid } => {
                // Still the main process, and ready again.
                let status = format!("running; upgraded in place: pid {pid} serves");
                self.send(&[Notify::Ready, Notify::Status(&status)]);
            }
            Event::UpgradeFailed { error } => {
                let status = format!("running; upgrade failed: {error}");
                self.send(&[Notify::Ready, Notify::Status(&status)]);
            }
            _ => {}
        }
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        if let Some(p) = self.pinger.take() {
            p.abort();
        }
    }
}
