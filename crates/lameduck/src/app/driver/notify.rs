//! The driver's messages to systemd (feature `systemd`): what the app's
//! phases and upgrades mean in `sd_notify` terms. See [`crate::systemd`]
//! for the table. Without the feature, every call does nothing.

#[cfg(not(all(unix, feature = "systemd")))]
use std::time::Duration;

#[cfg(not(all(unix, feature = "systemd")))]
use crate::{AppHandle, Phase};

#[cfg(all(unix, feature = "systemd"))]
pub(super) use imp::Systemd;

#[cfg(not(all(unix, feature = "systemd")))]
pub(super) struct Systemd;

#[cfg(not(all(unix, feature = "systemd")))]
#[allow(clippy::unused_self)]
impl Systemd {
    pub(super) fn disabled() -> Self {
        Self
    }
    pub(super) fn start(_app: &AppHandle, _quiet_until_running: bool) -> Self {
        Self
    }
    pub(super) fn entered(
        &self,
        _phase: Phase,
        _cause: &str,
        _left: Option<Duration>,
        _announce_ready: bool,
    ) {
    }
    #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
    pub(super) fn reloading(&self, _timeout: Duration) {}
    #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
    pub(super) fn upgraded(&self, _pid: u32) {}
    #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
    pub(super) fn upgrade_failed(&self, _why: &str) {}
    #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
    pub(super) fn upgraded_in_place(&self, _pid: u32) {}
}

#[cfg(all(unix, feature = "systemd"))]
mod imp {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use crate::systemd::{Notifier, Notify, watchdog_interval};
    use crate::{AppHandle, Phase};

    pub(in crate::app::driver) struct Systemd {
        inner: Option<Inner>,
    }

    struct Inner {
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
        pub(in crate::app::driver) fn disabled() -> Self {
            Self { inner: None }
        }

        /// `quiet_until_running`: for a process started by an upgrade, which
        /// systemd does not accept messages from until its parent names it
        /// the main process.
        pub(in crate::app::driver) fn start(app: &AppHandle, quiet_until_running: bool) -> Self {
            let notifier = match Notifier::from_env() {
                Ok(Some(n)) => Arc::new(n),
                Ok(None) => return Self { inner: None },
                Err(err) => {
                    tracing::warn!(target: "lameduck::systemd", error = %err, "NOTIFY_SOCKET is set but unusable; not notifying systemd");
                    return Self { inner: None };
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
                inner: Some(Inner {
                    notifier,
                    quiet,
                    pinger,
                }),
            };
            this.send(&[Notify::Status("starting")]);
            this
        }

        fn send(&self, states: &[Notify<'_>]) {
            let Some(inner) = &self.inner else { return };
            if inner.quiet.load(Ordering::Relaxed) || awaiting_main() {
                return;
            }
            if let Err(err) = inner.notifier.notify(states) {
                tracing::debug!(target: "lameduck::systemd", error = %err, "cannot notify systemd");
            }
        }

        /// `left`: what remains of the grace period, once shutting down.
        pub(in crate::app::driver) fn entered(
            &self,
            phase: Phase,
            cause: &str,
            left: Option<Duration>,
            announce_ready: bool,
        ) {
            match phase {
                Phase::Running if announce_ready => {
                    self.send(&[Notify::Ready, Notify::Status("running")])
                }
                // Started by an upgrade: the parent announces this process
                // (MAINPID, READY) once it hears it is ready, which it is
                // about to.
                Phase::Running => {
                    if let Some(inner) = &self.inner {
                        inner.quiet.store(false, Ordering::Relaxed);
                    }
                }
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

        #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
        pub(in crate::app::driver) fn reloading(&self, timeout: Duration) {
            self.send(&[
                Notify::Reloading,
                Notify::MonotonicNow,
                Notify::ExtendTimeout(timeout),
                Notify::Status("upgrading: starting a new process"),
            ]);
        }

        #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
        pub(in crate::app::driver) fn upgraded(&self, pid: u32) {
            let status = format!(
                "upgraded: pid {pid} serves; pid {} drains",
                std::process::id()
            );
            self.send(&[Notify::MainPid(pid), Notify::Ready, Notify::Status(&status)]);
            if let Some(inner) = &self.inner {
                inner.quiet.store(true, Ordering::Relaxed);
            }
        }

        /// An in-place upgrade (`Upgrade::in_place`) is done: this process
        /// is still the main one, and ready again.
        #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
        pub(in crate::app::driver) fn upgraded_in_place(&self, pid: u32) {
            let status = format!("running; upgraded in place: pid {pid} serves");
            self.send(&[Notify::Ready, Notify::Status(&status)]);
        }

        #[cfg_attr(not(feature = "upgrade"), allow(dead_code))]
        pub(in crate::app::driver) fn upgrade_failed(&self, why: &str) {
            let status = format!("running; upgrade failed: {why}");
            self.send(&[Notify::Ready, Notify::Status(&status)]);
        }
    }

    impl Drop for Systemd {
        fn drop(&mut self) {
            if let Some(p) = self.inner.as_mut().and_then(|i| i.pinger.take()) {
                p.abort();
            }
        }
    }
}
