//! Supervision: when a component that ended is started again.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Which endings of a component lead to a restart, as in Erlang/OTP.
///
/// | kind | restarted after a failure | restarted after a normal return |
/// |---|---|---|
/// | `Permanent` | yes | yes |
/// | `Transient` | yes | no |
/// | `Temporary` | no (the failure is logged and reported, the service goes on) | no |
///
/// A failure is an `Err` returned from the component or a panic inside it.
/// Nothing is restarted once the shutdown has begun.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after a failure.
    Transient,
    /// Never restarted.
    Temporary,
}

/// How a component is restarted: which endings, how soon, and how often
/// before the failure escalates to a shutdown of the whole service.
///
/// The default is transient, with backoff from 100 ms doubling to 5 s with
/// 20 % jitter, and at most 5 restarts within 30 s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use lameduck::{Restart, RestartPolicy};
///
/// let policy = RestartPolicy::new(Restart::Permanent)
///     .backoff(Duration::from_millis(50), Duration::from_secs(2))
///     .intensity(3, Duration::from_secs(10));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    pub(crate) restart: Restart,
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_restarts: u32,
    pub(crate) within: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::new(Restart::Transient)
    }
}

impl RestartPolicy {
    /// A policy of the given kind with the default backoff and intensity.
    pub fn new(restart: Restart) -> Self {
        Self {
            restart,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            jitter: 0.2,
            max_restarts: 5,
            within: Duration::from_secs(30),
        }
    }

    /// Never restart; a failure is reported but does not stop the service.
    pub fn temporary() -> Self {
        Self::new(Restart::Temporary)
    }

    /// Sets the exponential backoff: the first delay, doubled after each
    /// restart, up to `max`.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial = initial;
        self.max = max.max(initial);
        self
    }

    /// Sets the jitter: each delay is scaled by a random factor in
    /// `[1 - jitter, 1 + jitter]`, so that many instances do not retry in
    /// lock-step. Clamped to `[0, 1]`.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Sets the restart intensity: more than `max_restarts` restarts within
    /// `within` escalate the failure to a shutdown with exit code 1.
    pub fn intensity(mut self, max_restarts: u32, within: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.within = within;
        self
    }

    /// The restart kind.
    pub fn kind(&self) -> Restart {
        self.restart
    }

    pub(crate) fn restarts_after(&self, failed: bool) -> bool {
        match self.restart {
            Restart::Permanent => true,
            Restart::Transient => failed,
            Restart::Temporary => false,
        }
    }

    /// The delay before restart number `attempt` (1-based), jitter applied.
    pub(crate) fn delay(&self, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        if self.jitter == 0.0 {
            return base;
        }
        let factor = 1.0 + self.jitter * (rng.f64() * 2.0 - 1.0);
        base.mul_f64(factor)
    }
}

/// Which components are restarted along with a failed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Only the failed component.
    #[default]
    OneForOne,
    /// The failed component and every component that depends on it, directly
    /// or not: they are stopped first, then started again once it is ready.
    RestForOne,
}

/// The restarts of one component within the intensity window.
#[derive(Debug, Default)]
pub(crate) struct RestartWindow {
    times: VecDeque<Instant>,
}

impl RestartWindow {
    /// Records a restart at `now`; false when it exceeds the intensity.
    pub(crate) fn allow(&mut self, policy: &RestartPolicy, now: Instant) -> bool {
        while let Some(&t) = self.times.front() {
            if now.duration_since(t) > policy.within {
                self.times.pop_front();
            } else {
                break;
            }
        }
        if self.times.len() as u32 >= policy.max_restarts {
            return false;
        }
        self.times.push_back(now);
        true
    }

    /// Restarts within the window now.
    pub(crate) fn recent(&self) -> usize {
        self.times.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let p = RestartPolicy::default()
            .backoff(Duration::from_millis(100), Duration::from_millis(500))
            .jitter(0.0);
        let mut rng = fastrand::Rng::with_seed(1);
        let delays: Vec<_> = (1..=5).map(|n| p.delay(n, &mut rng).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let p = RestartPolicy::default()
            .backoff(Duration::from_secs(1), Duration::from_secs(1))
            .jitter(0.2);
        let mut rng = fastrand::Rng::with_seed(7);
        let delays: Vec<_> = (0..200).map(|_| p.delay(1, &mut rng)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(800) && *d <= Duration::from_millis(1200))
        );
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "jitter varies the delay"
        );
    }

    #[test]
    fn kinds_decide_which_endings_restart() {
        assert!(RestartPolicy::new(Restart::Permanent).restarts_after(false));
        assert!(RestartPolicy::new(Restart::Transient).restarts_after(true));
        assert!(!RestartPolicy::new(Restart::Transient).restarts_after(false));
        assert!(!RestartPolicy::new(Restart::Temporary).restarts_after(true));
    }

    #[tokio::test(start_paused = true)]
    async fn intensity_limits_restarts_within_the_window() {
        let p = RestartPolicy::default().intensity(2, Duration::from_secs(10));
        let mut w = RestartWindow::default();
        let t0 = Instant::now();
        assert!(w.allow(&p, t0));
        assert!(w.allow(&p, t0 + Duration::from_secs(1)));
        assert!(
            !w.allow(&p, t0 + Duration::from_secs(2)),
            "third within 10s"
        );
        assert!(
            w.allow(&p, t0 + Duration::from_secs(12)),
            "the first two aged out"
        );
        assert_eq!(w.recent(), 1);
    }
}
