//! In-place upgrades (`Upgrade::in_place`): the same requests, checks and
//! answers as an upgrade by a new process, but the app's own function
//! replaces what it supervises, and the app goes on running.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::InFlight;
use super::steps::answer;
use crate::app::Event;
use crate::app::driver::Driver;
use crate::upgrade::{InPlaceFn, Request, UpgradeError, UpgradeErrorKind, Upgraded};

impl Driver {
    /// Starts an in-place upgrade; the request passed every check.
    pub(in crate::app::driver) fn upgrade_in_place(&mut self, req: Request, replace: &InPlaceFn) {
        tracing::info!(target: "lameduck::upgrade", app = %self.handle.name(), via = %req.via, "upgrade in place started");
        self.publish(&crate::observe::Event::UpgradeStarted {
            timeout: self.upgrades.config.timeout,
            in_place: true,
        });
        let fut = replace();
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let result = fut.await;
            handle.send(Event::UpgradedInPlace(result));
        });
        self.upgrades.busy = Some(InFlight {
            via: req.via,
            waiters: req.reply.into_iter().collect(),
            // The function bounds itself and watches the app's shutdown.
            cancel: CancellationToken::new(),
            started: Instant::now(),
            committed: None,
        });
    }

    /// An in-place upgrade ended.
    pub(in crate::app::driver) fn on_upgraded_in_place(&mut self, result: Result<u32, String>) {
        let Some(done) = self.upgrades.busy.take() else {
            return;
        };
        let took = done.started.elapsed();
        let app = self.handle.name().to_string();
        match result {
            Ok(pid) => {
                tracing::info!(target: "lameduck::upgrade", app = %app, new_pid = pid, took_ms = took.as_millis() as u64, "upgrade in place complete");
                self.publish(&crate::observe::Event::UpgradedInPlace { pid });
                answer(done.waiters, &Ok(Upgraded { new_pid: pid, took }));
            }
            // Given up as the shutdown began: not a failure, and `replace`
            // says what it gave up (said here too, it was said twice, once
            // as an error).
            Err(why) if self.trigger.is_some() => {
                tracing::debug!(target: "lameduck::upgrade", app = %app, error = %why, took_ms = took.as_millis() as u64, "upgrade in place abandoned by the shutdown");
                self.publish(&crate::observe::Event::UpgradeAbandoned { why: &why });
                answer(
                    done.waiters,
                    &Err(UpgradeError::new(UpgradeErrorKind::Abandoned, why)),
                );
            }
            // A failure: `replace` knows which instance failed and how,
            // and logs it (`lameduck run`'s `restart failed`); said again
            // here as an error, one failure read as two.
            Err(why) => {
                tracing::debug!(target: "lameduck::upgrade", app = %app, error = %why, took_ms = took.as_millis() as u64, "upgrade in place failed");
                self.publish(&crate::observe::Event::UpgradeFailed { error: &why });
                answer(
                    done.waiters,
                    &Err(UpgradeError::new(UpgradeErrorKind::Exited, why)),
                );
            }
        }
    }
}
