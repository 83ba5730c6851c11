//! What the metrics know: the app's lifecycle as its events told it, the
//! HTTP servers' counts, and the scrapes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::observe::{Event, Observer};
use crate::{AppHandle, Phase, Timeline};

/// One app's metrics, shared by the app (an observer), its HTTP servers,
/// the admin listener and every [`Metrics`](super::Metrics) handle.
pub(crate) struct Hub {
    pub(super) config: Mutex<super::Config>,
    /// What `/metrics` serves: lameduck's collector, and the user's own
    /// metrics if given.
    pub(super) registry: Mutex<Registry>,
    pub(super) app: OnceLock<AppHandle>,
    pub(super) timeline: OnceLock<Timeline>,
    pub(super) life: Mutex<Life>,
    /// Each HTTP server's (or layer's) counts, by component.
    #[cfg(feature = "http")]
    pub(super) http: Mutex<Vec<(Arc<str>, Arc<crate::http::stats::HttpStats>)>>,
    pub(super) scrapes: Scrapes,
}

/// The lifecycle, as the events told it.
#[derive(Default)]
pub(super) struct Life {
    /// Every component seen starting, with its restarts.
    pub(super) restarts: BTreeMap<Arc<str>, u64>,
    pub(super) upgrades_succeeded: u64,
    pub(super) upgrades_failed: u64,
    pub(super) upgrades_abandoned: u64,
    /// How long each phase of the shutdown lasted, once it ended.
    pub(super) phase_seconds: BTreeMap<Phase, Duration>,
    /// When the phase now began.
    pub(super) phase_began: Option<Instant>,
    /// The shutdown's work, once settled: in flight at stop, finished,
    /// cancelled, aborted, ended by the shutdown, then the cancelled by
    /// what became of them (in `AfterCancel::ALL`'s order).
    pub(super) work: Option<[u64; 10]>,
}

/// Which scrapes saw final values.
#[derive(Default)]
pub(super) struct Scrapes {
    /// Scrapes begun so far.
    begun: AtomicU64,
    /// The number of scrapes begun when the values became final, plus one
    /// (zero: not final yet): a scrape whose number is at least this saw
    /// them.
    final_from: AtomicU64,
    /// A scrape that saw final values was answered.
    final_served: AtomicBool,
    served: Notify,
}

impl Scrapes {
    /// A scrape begins: its number.
    pub(super) fn begin(&self) -> u64 {
        // SeqCst with `mark_final`: a scrape either begins before the
        // mark (and does not count) or sees the final values.
        self.begun.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The scrape numbered `n` was answered.
    pub(super) fn answered(&self, n: u64) {
        let from = self.final_from.load(Ordering::SeqCst);
        if from != 0 && n >= from && !self.final_served.swap(true, Ordering::SeqCst) {
            self.served.notify_waiters();
        }
    }

    /// The values are final from now on.
    pub(super) fn mark_final(&self) {
        let begun = self.begun.load(Ordering::SeqCst);
        let _ = self
            .final_from
            .compare_exchange(0, begun + 1, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether anything has scraped the metrics yet.
    pub(super) fn any(&self) -> bool {
        self.begun.load(Ordering::SeqCst) > 0
    }

    /// Completes once a scrape that saw the final values was answered.
    pub(super) async fn final_served(&self) {
        loop {
            // Created before the check: `notify_waiters` reaches it then.
            let served = self.served.notified();
            if self.final_served.load(Ordering::SeqCst) {
                return;
            }
            served.await;
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub(super) fn new(config: super::Config, registry: Registry) -> Self {
        Self {
            config: Mutex::new(config),
            registry: Mutex::new(registry),
            app: OnceLock::new(),
            timeline: OnceLock::new(),
            life: Mutex::new(Life::default()),
            #[cfg(feature = "http")]
            http: Mutex::new(Vec::new()),
            scrapes: Scrapes::default(),
        }
    }

    pub(super) fn life(&self) -> std::sync::MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn config(&self) -> std::sync::MutexGuard<'_, super::Config> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counts of the HTTP component `name`: the same ones across its
    /// restarts, so that they only go up.
    #[cfg(feature = "http")]
    pub(crate) fn http_stats(
        &self,
        name: &str,
        app: &AppHandle,
    ) -> Arc<crate::http::stats::HttpStats> {
        let mut http = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, stats)) = http.iter().find(|(n, _)| &**n == name) {
            return stats.clone();
        }
        let stats = Arc::new(crate::http::stats::HttpStats::new(app.phase_cell()));
        http.push((name.into(), stats.clone()));
        stats
    }
}

impl Observer for Hub {
    fn on_event(&self, event: &Event<'_>) {
        match *event {
            Event::Starting { timeline, .. } => {
                let _ = self.timeline.set(timeline.clone());
                self.life().phase_began = Some(Instant::now());
                #[cfg(feature = "http")]
                if let Some(push) = self.config().push.clone() {
                    push.delete_if_asked();
                }
            }
            Event::PhaseChanged { from, .. } => {
                let mut life = self.life();
                let now = Instant::now();
                if from.is_shutting_down()
                    && let Some(began) = life.phase_began
                {
                    life.phase_seconds.insert(from, now - began);
                }
                life.phase_began = Some(now);
            }
            Event::ComponentStarted { component, .. } => {
                self.life().restarts.entry(component.into()).or_default();
            }
            Event::ComponentRestarting { component, .. } => {
                *self.life().restarts.entry(component.into()).or_default() += 1;
            }
            Event::UpgradeSucceeded { .. } | Event::UpgradedInPlace { .. } => {
                self.life().upgrades_succeeded += 1;
            }
            Event::UpgradeFailed { .. } => self.life().upgrades_failed += 1,
            Event::UpgradeAbandoned { .. } => self.life().upgrades_abandoned += 1,
            Event::WorkSettled { work } => {
                let then = crate::AfterCancel::ALL.map(|o| work.count_after_cancel(o) as u64);
                self.life().work = Some([
                    work.in_flight_at_stop as u64,
                    work.finished as u64,
                    work.cancelled.len() as u64,
                    work.aborted.len() as u64,
                    work.ended.len() as u64,
                    then[0],
                    then[1],
                    then[2],
                    then[3],
                    then[4],
                ]);
                // Every count is final: the requests' too, as every
                // connection has closed or been aborted.
                self.scrapes.mark_final();
            }
            _ => {}
        }
    }
}
