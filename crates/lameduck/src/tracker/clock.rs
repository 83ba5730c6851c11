//! The start-time clock: cheap, monotonic and coarse.
//!
//! A start time is read on every `track` call, so it has to cost a few
//! nanoseconds, not the 20–30 ns a precise clock can take inside a VM. A few
//! milliseconds of resolution is plenty for "stuck for 12.3 s".

/// Nanoseconds since an arbitrary fixed point; only differences mean anything.
///
/// On Linux this is `CLOCK_MONOTONIC_COARSE`, a vDSO read of the last timer
/// tick (resolution 1–4 ms, no `rdtsc`). Elsewhere it falls back to
/// [`Instant`](std::time::Instant) measured from the first call.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[inline]
pub(super) fn now() -> u64 {
    use nix::time::{ClockId, clock_gettime};

    // The coarse clock exists on every kernel since 2.6.32, so the fallback
    // is for exotic sandboxes only; CLOCK_MONOTONIC shares its epoch, so
    // mixing the two cannot make an age negative by more than one tick.
    let ts = clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE)
        .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
        .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
    // Both fields are non-negative for a monotonic clock.
    (ts.tv_sec() as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec() as u64)
}

/// Nanoseconds since the first call in this process.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[inline]
pub(super) fn now() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;

    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(Instant::now).elapsed();
    // u64 nanoseconds last 584 years.
    elapsed.as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::now;

    #[test]
    fn never_goes_backwards() {
        let mut last = now();
        for _ in 0..10_000 {
            let t = now();
            assert!(t >= last, "clock went back from {last} to {t}");
            last = t;
        }
    }
}
