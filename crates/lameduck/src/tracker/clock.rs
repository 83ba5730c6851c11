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
//! without a timeout, while no tracker exists — and also while trackers
//! exist but nobody has read the time for [`IDLE_TICKS`] ticks (an idle
//! service): the first read after that takes the clock itself, once, and
//! wakes the thread. So an idle process costs no wake-ups, and a busy one
//! one relaxed load more per read. It is the only thread this crate starts
//! on its own. If it cannot be spawned, `track` reads the clock itself.
//!
//! A start given as an `Instant` (`track_since`) is taken as it is
//! ([`time_of`]), also one before the first tracker: times count from well
//! before it ([`BEFORE`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How often the ticker refreshes [`NOW`].
const TICK: Duration = Duration::from_millis(4);

/// `NOW` value that tells `track` to read the clock itself.
const NO_TICKER: u64 = u64::MAX;

/// Ticks in a row without a read after which the ticker sleeps until the
/// next read (20 ms): a service busy enough for the ticker to matter reads
/// far more often; an idle one's occasional reads (the HTTP server's
/// timeout sweep, a probe) each cost it a few ticks, not a steady 250 a
/// second.
const IDLE_TICKS: u32 = 5;

/// What the clock reads at [`epoch`]: times are nanoseconds since
/// `epoch - BEFORE` (2^62 ns, 146 years), so that a start before the epoch
/// — the first tracker's creation — given to `track_since` (a process that
/// started earlier) has a time too. That leaves 438 years after it.
const BEFORE: u64 = 1 << 62;

/// The clock ([`precise_now`]) as of the last tick.
static NOW: AtomicU64 = AtomicU64::new(0);
/// Trackers alive; the ticker parks while this is zero.
static TRACKERS: AtomicUsize = AtomicUsize::new(0);
static TICKER: OnceLock<Option<Thread>> = OnceLock::new();
/// Set by a read, cleared by each tick: whether anyone read since.
static READ: AtomicBool = AtomicBool::new(true);
/// The ticker sleeps until a read wakes it: `NOW` may be old.
static ASLEEP: AtomicBool = AtomicBool::new(false);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide epoch, plus [`BEFORE`], read from
/// the clock.
pub(super) fn precise_now() -> u64 {
    // u64 nanoseconds last 584 years: 438 after the epoch.
    BEFORE + epoch().elapsed().as_nanos() as u64
}

/// `at` as a time of this clock: exact, except that an instant more than
/// 146 years before the epoch counts as that limit.
pub(super) fn time_of(at: Instant) -> u64 {
    let epoch = epoch();
    match at.checked_duration_since(epoch) {
        Some(after) => BEFORE.saturating_add(u64::try_from(after.as_nanos()).unwrap_or(u64::MAX)),
        None => BEFORE
            .saturating_sub(u64::try_from(epoch.duration_since(at).as_nanos()).unwrap_or(u64::MAX)),
    }
}

/// The start time for new work: the last tick, or the clock if no ticker.
#[inline]
pub(super) fn start_time() -> u64 {
    // Relaxed: the value is only a timestamp; nothing is published with it.
    match NOW.load(Ordering::Relaxed) {
        NO_TICKER => precise_now(),
        // The first read since the last tick: it may find the ticker asleep.
        _ if !READ.load(Ordering::Relaxed) => first_read(),
        now => now,
    }
}

/// The first read since the last tick says so, and if the ticker sleeps,
/// takes the time itself and wakes it.
#[cold]
fn first_read() -> u64 {
    // SeqCst pairs with the ticker's ASLEEP store and READ load: either the
    // ticker sees this read before it sleeps, or this read sees it asleep.
    READ.store(true, Ordering::SeqCst);
    if ASLEEP.load(Ordering::SeqCst) {
        let now = precise_now();
        NOW.fetch_max(now, Ordering::Relaxed);
        if let Some(Some(ticker)) = TICKER.get() {
            ticker.unpark();
        }
        return now;
    }
    NOW.load(Ordering::Relaxed)
}

/// Now, to within one tick (never later than the true time), as a time of
/// this clock (nanoseconds; only differences and [`instant_at`] mean
/// anything): the cost of a load while a tracker exists, of the clock
/// otherwise.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
#[inline]
pub(crate) fn coarse_nanos() -> u64 {
    start_time()
}

/// The instant of the time `nanos` of this clock.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn instant_at(nanos: u64) -> Instant {
    let epoch = epoch();
    match nanos.checked_sub(BEFORE) {
        Some(after) => epoch + Duration::from_nanos(after),
        // Not a time `coarse_nanos` gives; as early as `Instant` reaches.
        None => epoch
            .checked_sub(Duration::from_nanos(BEFORE - nanos))
            .unwrap_or(epoch),
    }
}

/// A tracker was created: make sure the ticker runs.
pub(super) fn hold() {
    let ticker = TICKER.get_or_init(spawn_ticker);
    // Fresh now, not a tick from before the ticker was parked. `fetch_max`
    // keeps NOW monotonic against a concurrent tick, and NO_TICKER, the
    // largest value, sticks.
    NOW.fetch_max(precise_now(), Ordering::Relaxed);
    if TRACKERS.fetch_add(1, Ordering::SeqCst) == 0
        && let Some(ticker) = ticker
    {
        // If the ticker is about to park, the token makes park return.
        ticker.unpark();
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
            let mut unread = 0;
            loop {
                NOW.fetch_max(precise_now(), Ordering::Relaxed);
                if TRACKERS.load(Ordering::SeqCst) == 0 {
                    // `hold` unparks after raising the count, so a tracker
                    // created after the load above cannot be missed.
                    thread::park();
                    continue;
                }
                if READ.swap(false, Ordering::SeqCst) {
                    unread = 0;
                } else {
                    unread += 1;
                }
                if unread >= IDLE_TICKS {
                    ASLEEP.store(true, Ordering::SeqCst);
                    // A read between the swap above and the store is seen
                    // here; one after the store sees ASLEEP and unparks.
                    if !READ.load(Ordering::SeqCst) {
                        thread::park();
                    }
                    ASLEEP.store(false, Ordering::SeqCst);
                    unread = 0;
                    continue;
                }
                // Spurious wake-ups only refresh NOW early.
                thread::park_timeout(TICK);
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
    fn a_read_after_the_ticker_went_to_sleep_is_fresh() {
        hold();
        start_time();
        // Nothing reads: the ticker goes to sleep after IDLE_TICKS ticks.
        // (Each test runs in a process of its own under nextest; a reader
        // in another test of the same process would keep it awake.)
        let give_up = Instant::now() + Duration::from_secs(30);
        while !ASLEEP.load(Ordering::SeqCst) {
            assert!(Instant::now() < give_up, "the ticker never went to sleep");
            thread::yield_now();
        }
        let before = precise_now();
        assert!(
            NOW.load(Ordering::Relaxed) < before,
            "NOW is old while asleep"
        );
        assert!(start_time() >= before, "the first read takes the clock");
        // ... and wakes the ticker, which ticks again.
        let woken = precise_now();
        while NOW.load(Ordering::Relaxed) < woken {
            assert!(Instant::now() < give_up, "the ticker was not woken");
            thread::yield_now();
        }
        release();
    }

    #[test]
    fn an_instant_before_the_epoch_keeps_its_distance_from_it() {
        let epoch = epoch();
        let hour = Duration::from_secs(3600);
        // `Instant` may not reach an hour before the process started.
        if let Some(earlier) = epoch.checked_sub(hour) {
            assert_eq!(time_of(earlier), BEFORE - 3_600_000_000_000);
            assert_eq!(instant_at(time_of(earlier)), earlier);
        }
        let later = epoch + hour;
        assert_eq!(time_of(later), BEFORE + 3_600_000_000_000);
        assert_eq!(instant_at(time_of(later)), later);
        assert_eq!(time_of(epoch), BEFORE);
        let now = Instant::now();
        let then = precise_now();
        assert!(time_of(now) <= then, "the clock and `time_of` agree");
    }

    #[test]
    fn a_new_tracker_sees_a_fresh_time() {
        let before = precise_now();
        hold();
        assert!(start_time() >= before);
        release();
    }
}
