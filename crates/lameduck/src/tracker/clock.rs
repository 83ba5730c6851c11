//! Start times: a process-wide coarse "now" that a ticker thread refreshes.
//!
//! A start time is taken on every `track`, whose whole budget is about two
//! atomic RMWs. Reading any clock costs more than that: measured on a 2-core
//! KVM guest, `Instant::now()` is ~25 ns and even Linux's
//! `CLOCK_MONOTONIC_COARSE` (via vDSO) ~10 ns. So `track` reads a relaxed
//! `AtomicU64` instead, which a background thread sets to the current time
//! every [`TICK`]: the same 4 ms resolution as the kernel's coarse clock, for
//! the cost of one load. A start time is at most one tick early, never late,
//! so ages are never negative and at most one tick too long.
//!
//! The thread ("lameduck-clock") starts with the first tracker and parks,
//! without a timeout, while no tracker exists. It is the only thread this
//! crate starts on its own. If it cannot be spawned, `track` reads the clock
//! itself.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How often the ticker refreshes [`NOW`].
const TICK: Duration = Duration::from_millis(4);

/// `NOW` value that tells `track` to read the clock itself.
const NO_TICKER: u64 = u64::MAX;

/// Nanoseconds since [`epoch`] as of the last tick.
static NOW: AtomicU64 = AtomicU64::new(0);
/// Trackers alive; the ticker parks while this is zero.
static TRACKERS: AtomicUsize = AtomicUsize::new(0);
static TICKER: OnceLock<Option<Thread>> = OnceLock::new();

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide epoch, read from the clock.
pub(super) fn precise_now() -> u64 {
    // u64 nanoseconds last 584 years.
    epoch().elapsed().as_nanos() as u64
}

/// The start time for new work: the last tick, or the clock if no ticker.
#[inline]
pub(super) fn start_time() -> u64 {
    // Relaxed: the value is only a timestamp; nothing is published with it.
    match NOW.load(Ordering::Relaxed) {
        NO_TICKER => precise_now(),
        now => now,
    }
}

/// Now, to within one tick (never later than the true time), as
/// nanoseconds since the process-wide epoch: the cost of a load while a
/// tracker exists, of the clock otherwise.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
#[inline]
pub(crate) fn coarse_nanos() -> u64 {
    start_time()
}

/// The instant `nanos` after the process-wide epoch.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn instant_at(nanos: u64) -> Instant {
    epoch() + Duration::from_nanos(nanos)
}

/// A tracker was created: make sure the ticker runs.
pub(super) fn hold() {
    let ticker = TICKER.get_or_init(spawn_ticker);
    // Fresh now, not a tick from before the ticker was parked. `fetch_max`
    // keeps NOW monotonic against a concurrent tick, and NO_TICKER, the
    // largest value, sticks.
    NOW.fetch_max(precise_now(), Ordering::Relaxed);
    if TRACKERS.fetch_add(1, Ordering::SeqCst) == 0 {
        if let Some(ticker) = ticker {
            // If the ticker is about to park, the token makes park return.
            ticker.unpark();
        }
    }
}

/// A tracker was dropped.
pub(super) fn release() {
    TRACKERS.fetch_sub(1, Ordering::SeqCst);
}

fn spawn_ticker() -> Option<Thread> {
    let spawned = thread::Builder::new()
        .name("lameduck-clock".into())
        .spawn(|| {
            loop {
                NOW.fetch_max(precise_now(), Ordering::Relaxed);
                if TRACKERS.load(Ordering::SeqCst) == 0 {
                    // `hold` unparks after raising the count, so a tracker
                    // created after the load above cannot be missed.
                    thread::park();
                } else {
                    // Spurious wake-ups only refresh NOW early.
                    thread::park_timeout(TICK);
                }
            }
        });
    match spawned {
        Ok(handle) => Some(handle.thread().clone()),
        Err(_) => {
            NOW.store(NO_TICKER, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_never_run_ahead_of_the_clock() {
        hold();
        for _ in 0..10_000 {
            let start = start_time();
            assert!(start <= precise_now());
        }
        release();
    }

    #[test]
    fn a_new_tracker_sees_a_fresh_time() {
        let before = precise_now();
        hold();
        assert!(start_time() >= before);
        release();
    }
}
