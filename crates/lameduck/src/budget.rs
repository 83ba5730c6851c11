//! The timing budget: one grace period split into the phases of a shutdown.

use std::fmt;
use std::time::Duration;

use crate::fmt::Seconds;
use window::WindowConflict;

mod window;

/// The shutdown timing plan, built from the one number an operator knows: the
/// time the orchestrator waits between `SIGTERM` and `SIGKILL`.
///
/// Kubernetes calls it `terminationGracePeriodSeconds` (default 30 s), systemd
/// `TimeoutStopSec`. Every phase of the shutdown must fit inside it, with a
/// safety margin, or the process is killed half-way through closing its
/// resources. [`Budget::check`] verifies that and resolves the phases into a
/// [`Timeline`].
///
/// | setting | default | what it bounds |
/// |---|---|---|
/// | `grace_period` | 30 s | the whole shutdown, from the first signal to `SIGKILL` |
/// | `drain_max` | 5 s | Draining at most: unready but still serving, while load balancers catch up |
/// | `drain_min` | 0 | Draining at least, however quiet the traffic |
/// | `drain_quiet` | 1 s, or half of `drain_max` if that is shorter (at least 100 ms) | Draining ends once no traffic arrived for this long (or longer: see below) |
/// | `shutdown_timeout` | what is left | Stopping: in-flight work finishes on its own |
/// | `hard_timeout` | 3 s | Cancelling: work that got its cancel signal winds down |
/// | close timeouts | 1 s per component with a close or exporter | Closing: each resource closes in turn, then each exporter flushes |
/// | `final_scrape_timeout` | 0 (off), unless the metrics (feature `metrics`) set it | Closing: the wait for one last scrape of `/metrics`, or the push |
/// | `log_flush` | 500 ms | the final log flush |
/// | `safety_margin` | 5 % of the grace period, at least 500 ms | slack for scheduling, never used on purpose |
///
/// # The drain window
///
/// Draining lasts between `drain_min` and `drain_max`: after `drain_min` it
/// ends as soon as the service has been **quiet** — no request started on
/// any serving listener, probes and the admin listener left out — for the
/// quiet it needs, and at `drain_max` at the latest. The quiet needed is
/// `drain_quiet`, or four times the longest gap between arrivals in the
/// 10 s before the signal if that is longer: at low traffic a pause proves
/// nothing. With too little traffic before the signal to tell (fewer than
/// five tenths of a second with an arrival), or nothing that counts traffic
/// (an app with no [`http::Server`](crate::http::Server), no
/// [`DrainLayer`](crate::http::DrainLayer) and no
/// [`AppHandle::traffic_source`](crate::AppHandle::traffic_source)),
/// Draining lasts `drain_max`. [`drain_delay`](Self::drain_delay) sets a
/// fixed drain (`drain_min` = `drain_max`), which takes no `drain_quiet`;
/// a `drain_quiet` given must be shorter than `drain_max`:
/// [`check`](Self::check) refuses either contradiction. A `drain_quiet`
/// left out is never refused: it shrinks to fit, to half of `drain_max`
/// when that is under 1 s (but not under [`MIN_DRAIN_QUIET`]), so that the
/// traffic has the first half of the window to stop and the quiet the
/// second; a drain of [`MIN_DRAIN_QUIET`] or less has no quiet that can
/// end it, and lasts `drain_max` ([`Timeline::is_adaptive`] is false). The
/// budget reserves `drain_max`. See `docs/budget.md`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use lameduck::Budget;
///
/// let timeline = Budget::new(Duration::from_secs(30))
///     .drain_delay(Duration::from_secs(5))
///     .close_timeout("db", Duration::from_secs(2))
///     .check()
///     .unwrap();
/// // 30 s - 5 s drain - 3 s hard - 2 s close - 0.5 s log flush - 1.5 s margin
/// assert_eq!(timeline.shutdown_timeout, Duration::from_secs(18));
///
/// let err = Budget::new(Duration::from_secs(10))
///     .drain_delay(Duration::from_secs(8))
///     .check()
///     .unwrap_err();
/// assert!(err.to_string().contains("grace period 10s"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Budget {
    grace_period: Duration,
    drain_min: Duration,
    drain_delay: Duration,
    /// `None`: not given, [`default_drain_quiet`] of `drain_delay`. Given,
    /// it must be able to end the drain: see [`Budget::check`].
    drain_quiet: Option<Duration>,
    shutdown_timeout: Option<Duration>,
    hard_timeout: Duration,
    closes: Vec<(String, Duration)>,
    final_scrape: Option<Duration>,
    log_flush: Duration,
    safety_margin: Option<Duration>,
}

/// The default grace period: Kubernetes' `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// The default `drain_max`: the longest drain under `SIGTERM`.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// The default `drain_quiet`: how long no traffic must arrive before the
/// drain may end, when `drain_max` is 2 s or more (see
/// [`default_drain_quiet`] for a shorter drain).
pub const DEFAULT_DRAIN_QUIET: Duration = Duration::from_secs(1);
/// The shortest `drain_quiet` of an adaptive drain: traffic is sampled every
/// 100 ms.
pub const MIN_DRAIN_QUIET: Duration = Duration::from_millis(100);
/// The `drain_quiet` of a budget that sets none, for a drain of at most
/// `drain_max`: [`DEFAULT_DRAIN_QUIET`], or half of `drain_max` if that is
/// shorter, but never under [`MIN_DRAIN_QUIET`].
///
/// A quiet as long as the drain can never end it: halving leaves the first
/// half of the window for the traffic to stop and the second for the quiet
/// to be seen. With `drain_max` at [`MIN_DRAIN_QUIET`] or less no quiet fits
/// (the result is not shorter than `drain_max`), and the drain lasts
/// `drain_max`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use lameduck::default_drain_quiet;
///
/// let ms = Duration::from_millis;
/// assert_eq!(default_drain_quiet(Duration::from_secs(5)), Duration::from_secs(1));
/// assert_eq!(default_drain_quiet(ms(500)), ms(250));
/// assert_eq!(default_drain_quiet(ms(150)), ms(100));
/// ```
pub fn default_drain_quiet(drain_max: Duration) -> Duration {
    DEFAULT_DRAIN_QUIET.min(drain_max / 2).max(MIN_DRAIN_QUIET)
}

/// The default time cancelled work gets before it is aborted.
pub const DEFAULT_HARD_TIMEOUT: Duration = Duration::from_secs(3);
/// The default close timeout of one component.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The default bound on the final log flush.
pub const DEFAULT_LOG_FLUSH: Duration = Duration::from_millis(500);
/// The smallest shutdown timeout a budget may leave.
pub const MIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(100);

impl Default for Budget {
    fn default() -> Self {
        Self::new(DEFAULT_GRACE_PERIOD)
    }
}

impl Budget {
    /// A budget for the given grace period, with every other setting at its
    /// default.
    pub fn new(grace_period: Duration) -> Self {
        Self {
            grace_period,
            drain_min: Duration::ZERO,
            drain_delay: DEFAULT_DRAIN_DELAY,
            drain_quiet: None,
            shutdown_timeout: None,
            hard_timeout: DEFAULT_HARD_TIMEOUT,
            closes: Vec::new(),
            final_scrape: None,
            log_flush: DEFAULT_LOG_FLUSH,
            safety_margin: None,
        }
    }

    /// Sets the grace period: the time between the first signal and `SIGKILL`.
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.grace_period = d;
        self
    }

    /// Sets a fixed drain: Draining lasts `d` whatever the traffic does
    /// (`drain_min` = `drain_max` = `d`; zero skips it).
    pub fn drain_delay(mut self, d: Duration) -> Self {
        self.drain_min = d;
        self.drain_delay = d;
        self
    }

    /// Sets the longest drain (default 5 s): what the budget reserves for
    /// Draining, and when it ends if the traffic never stops. See [the drain
    /// window](Self#the-drain-window).
    pub fn drain_max(mut self, d: Duration) -> Self {
        self.drain_delay = d;
        self
    }

    /// Sets the shortest drain (default 0): Draining never ends earlier,
    /// however quiet the traffic.
    pub fn drain_min(mut self, d: Duration) -> Self {
        self.drain_min = d;
        self
    }

    /// Sets how long no traffic must arrive before the drain may end
    /// (default 1 s, or half of `drain_max` if shorter: see
    /// [`default_drain_quiet`]; at least 100 ms, shorter than `drain_max`);
    /// more at low traffic, see [the drain window](Self#the-drain-window). A fixed
    /// drain has no quiet: [`check`](Self::check) refuses one given with
    /// it.
    pub fn drain_quiet(mut self, d: Duration) -> Self {
        self.drain_quiet = Some(d);
        self
    }

    /// Sets how long Stopping waits for in-flight work; by default, all the
    /// time the other phases leave.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.shutdown_timeout = Some(d);
        self
    }

    /// Sets how long cancelled work may take before it is aborted.
    pub fn hard_timeout(mut self, d: Duration) -> Self {
        self.hard_timeout = d;
        self
    }

    /// Adds (or replaces) the close timeout of one named resource.
    ///
    /// In an [`App`](crate::App), `name` is a component with a close (see
    /// [`Component::on_close`](crate::Component::on_close)), and this is the
    /// bound its close gets. Set it here or with
    /// [`Component::close_timeout`](crate::Component::close_timeout), not
    /// both: the app refuses to build with a close timeout set twice, or one
    /// that names no component with a close.
    pub fn close_timeout(mut self, name: impl Into<String>, d: Duration) -> Self {
        let name = name.into();
        match self.closes.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = d,
            None => self.closes.push((name, d)),
        }
        self
    }

    /// Sets how long Closing may wait for a last scrape of the lifecycle
    /// metrics once they are final, push included (default 0: no wait).
    ///
    /// In an [`App`](crate::App) with metrics (feature `metrics`), set it
    /// here or with the metrics' own setting, not both: the app refuses to
    /// build with it set twice, or set with no metrics to wait for.
    pub fn final_scrape_timeout(mut self, d: Duration) -> Self {
        self.final_scrape = Some(d);
        self
    }

    /// The final scrape timeout, if set.
    pub fn get_final_scrape_timeout(&self) -> Option<Duration> {
        self.final_scrape
    }

    /// Sets the bound on the final log flush.
    pub fn log_flush(mut self, d: Duration) -> Self {
        self.log_flush = d;
        self
    }

    /// Sets the safety margin left unused before `SIGKILL`.
    pub fn safety_margin(mut self, d: Duration) -> Self {
        self.safety_margin = Some(d);
        self
    }

    /// The grace period.
    pub fn get_grace_period(&self) -> Duration {
        self.grace_period
    }

    /// The longest drain, `drain_max`.
    pub fn get_drain_delay(&self) -> Duration {
        self.drain_delay
    }

    /// The shortest drain, `drain_min`.
    pub fn get_drain_min(&self) -> Duration {
        self.drain_min
    }

    /// The quiet that may end the drain, `drain_quiet` (if none was given,
    /// [`default_drain_quiet`] of `drain_max`).
    pub fn get_drain_quiet(&self) -> Duration {
        self.drain_quiet
            .unwrap_or_else(|| default_drain_quiet(self.drain_delay))
    }

    /// The close timeout set for `name`, if any.
    pub fn get_close_timeout(&self, name: &str) -> Option<Duration> {
        self.closes.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }

    /// The names that have a close timeout, in the order they were given.
    pub(crate) fn close_names(&self) -> impl Iterator<Item = &str> {
        self.closes.iter().map(|(n, _)| n.as_str())
    }

    fn margin(&self) -> Duration {
        self.safety_margin
            .unwrap_or_else(|| (self.grace_period / 20).max(Duration::from_millis(500)))
    }

    /// Checks that every phase fits inside the grace period and resolves the
    /// shutdown timeout if it was left to default.
    ///
    /// # Errors
    ///
    /// A [`BudgetError`] whose message shows the arithmetic when the phases
    /// add up to more than the grace period, or leave less than
    /// [`MIN_SHUTDOWN_TIMEOUT`] for Stopping; or one of kind
    /// [`DrainWindow`](BudgetErrorKind::DrainWindow) when the drain window
    /// contradicts itself, naming the settings that conflict: `drain_min`
    /// longer than `drain_max`; a `drain_quiet` given for a fixed drain
    /// (`drain_delay`, or `drain_min` = `drain_max`), which no quiet can
    /// end; a `drain_quiet` given that is not shorter than `drain_max`, so
    /// that the drain would reach `drain_max` first; or an adaptive
    /// drain's `drain_quiet` shorter than [`MIN_DRAIN_QUIET`].
    pub fn check(&self) -> Result<Timeline, BudgetError> {
        self.check_drain_window()?;
        let margin = self.margin();
        // Checked sums: absurd inputs (years) must give an error, not a panic.
        let too_long = || BudgetError {
            kind: BudgetErrorKind::DoesNotFit,
            conflict: None,
            message: "the phases add up to more time than can be counted".into(),
        };
        let close_total = self
            .closes
            .iter()
            .try_fold(Duration::ZERO, |acc, (_, d)| acc.checked_add(*d))
            .ok_or_else(too_long)?;
        let final_scrape = self.final_scrape.unwrap_or_default();
        let fixed = [
            self.hard_timeout,
            close_total,
            final_scrape,
            self.log_flush,
            margin,
        ]
        .into_iter()
        .try_fold(self.drain_delay, Duration::checked_add)
        .ok_or_else(too_long)?;
        let shutdown_timeout = match self.shutdown_timeout {
            Some(d) => d,
            None => self.grace_period.saturating_sub(fixed),
        };
        let timeline = Timeline {
            grace_period: self.grace_period,
            drain_min: self.drain_min,
            drain_delay: self.drain_delay,
            drain_quiet: self.get_drain_quiet(),
            shutdown_timeout,
            hard_timeout: self.hard_timeout,
            closes: self.closes.clone(),
            final_scrape_timeout: final_scrape,
            log_flush: self.log_flush,
            safety_margin: margin,
        };
        let total = fixed.checked_add(shutdown_timeout).ok_or_else(too_long)?;
        if total > self.grace_period {
            return Err(BudgetError {
                kind: BudgetErrorKind::DoesNotFit,
                conflict: None,
                message: format!(
                    "{} = {}, more than the grace period {}; shorten a phase or raise the grace period",
                    timeline.sum_terms(),
                    Seconds(total),
                    Seconds(self.grace_period)
                ),
            });
        }
        if shutdown_timeout < MIN_SHUTDOWN_TIMEOUT && self.shutdown_timeout.is_some() {
            // Given, not left over: the grace period's arithmetic did not
            // produce it, so the message must not pretend it did.
            return Err(BudgetError {
                kind: BudgetErrorKind::NoTimeToStop,
                conflict: None,
                message: format!(
                    "the shutdown timeout {} is less than the minimum {} for in-flight work to finish; raise it, or leave it unset for what the other phases leave",
                    Seconds(shutdown_timeout),
                    Seconds(MIN_SHUTDOWN_TIMEOUT)
                ),
            });
        }
        if shutdown_timeout < MIN_SHUTDOWN_TIMEOUT {
            return Err(BudgetError {
                kind: BudgetErrorKind::NoTimeToStop,
                conflict: None,
                message: format!(
                    "the grace period {} leaves {} for in-flight work to finish ({} - {}), less than the minimum {}; shorten a phase or raise the grace period",
                    Seconds(self.grace_period),
                    Seconds(shutdown_timeout),
                    Seconds(self.grace_period),
                    timeline.fixed_terms(),
                    Seconds(MIN_SHUTDOWN_TIMEOUT)
                ),
            });
        }
        Ok(timeline)
    }
}

/// A checked [`Budget`]: how long each phase of a shutdown may last.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeline {
    /// Time from the first signal to `SIGKILL`.
    pub grace_period: Duration,
    /// Draining at least (`drain_min`), however quiet the traffic.
    pub drain_min: Duration,
    /// Draining at most (`drain_max`): unready but still serving. What the
    /// budget reserves for Draining.
    pub drain_delay: Duration,
    /// The quiet that ends an adaptive drain (`drain_quiet`), at the least.
    pub drain_quiet: Duration,
    /// Stopping: in-flight work finishes on its own.
    pub shutdown_timeout: Duration,
    /// Cancelling: cancelled work winds down before it is aborted.
    pub hard_timeout: Duration,
    /// Closing: each resource's close timeout, in the order they were given.
    pub closes: Vec<(String, Duration)>,
    /// Closing: the wait for a last scrape of the metrics (and the push);
    /// zero when there is none.
    pub final_scrape_timeout: Duration,
    /// The final log flush.
    pub log_flush: Duration,
    /// Slack left before `SIGKILL`.
    pub safety_margin: Duration,
}

impl Timeline {
    /// The longest drain, `drain_max` (the field `drain_delay`).
    pub fn drain_max(&self) -> Duration {
        self.drain_delay
    }

    /// Whether the drain ends on quiet traffic: `drain_min` is shorter than
    /// `drain_max`, and so is `drain_quiet`. False for a fixed drain, and
    /// for one too short for any quiet to end it (`drain_max` at most
    /// [`MIN_DRAIN_QUIET`] with the default quiet), which lasts `drain_max`.
    pub fn is_adaptive(&self) -> bool {
        self.drain_min < self.drain_delay && self.drain_quiet < self.drain_delay
    }

    /// The close timeout of `name`, if it has one.
    pub fn close_timeout(&self, name: &str) -> Option<Duration> {
        self.closes.iter().find(|(n, _)| n == name).map(|(_, d)| *d)
    }

    /// The sum of the close timeouts.
    pub fn close_total(&self) -> Duration {
        self.closes.iter().map(|(_, d)| *d).sum()
    }

    /// Time from the first signal to the end of the log flush, at most.
    pub fn worst_case(&self) -> Duration {
        self.drain_delay
            + self.shutdown_timeout
            + self.hard_timeout
            + self.close_total()
            + self.final_scrape_timeout
            + self.log_flush
    }

    /// The phases in order, each with its maximum duration. The final
    /// scrape is listed only when it has time.
    pub fn rows(&self) -> Vec<(&'static str, Duration)> {
        let mut rows = vec![
            ("draining", self.drain_delay),
            ("stopping", self.shutdown_timeout),
            ("cancelling", self.hard_timeout),
            ("closing", self.close_total()),
        ];
        if !self.final_scrape_timeout.is_zero() {
            rows.push(("final scrape", self.final_scrape_timeout));
        }
        rows.push(("log flush", self.log_flush));
        rows.push(("safety margin", self.safety_margin));
        rows
    }

    /// `final scrape X` for the arithmetic, when there is one.
    fn final_scrape_term(&self, sep: &str) -> String {
        if self.final_scrape_timeout.is_zero() {
            String::new()
        } else {
            format!(" {sep} final scrape {}", Seconds(self.final_scrape_timeout))
        }
    }

    fn close_term(&self) -> String {
        let mut s = format!("close {}", Seconds(self.close_total()));
        if !self.closes.is_empty() {
            let parts: Vec<_> = self
                .closes
                .iter()
                .map(|(n, d)| format!("{n} {}", Seconds(*d)))
                .collect();
            s.push_str(&format!(" ({})", parts.join(", ")));
        }
        s
    }

    fn fixed_terms(&self) -> String {
        format!(
            "drain {} - hard {} - {}{} - log flush {} - margin {}",
            Seconds(self.drain_delay),
            Seconds(self.hard_timeout),
            self.close_term(),
            self.final_scrape_term("-"),
            Seconds(self.log_flush),
            Seconds(self.safety_margin)
        )
    }

    fn sum_terms(&self) -> String {
        format!(
            "drain {} + shutdown {} + hard {} + {}{} + log flush {} + margin {}",
            Seconds(self.drain_delay),
            Seconds(self.shutdown_timeout),
            Seconds(self.hard_timeout),
            self.close_term(),
            self.final_scrape_term("+"),
            Seconds(self.log_flush),
            Seconds(self.safety_margin)
        )
    }
}

impl fmt::Display for Timeline {
    /// A table: each phase, when it starts, how long it may last, when it
    /// ends at the latest (offsets from the first signal).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<15} {:>9} {:>9} {:>9}",
            "phase", "starts", "lasts", "ends by"
        )?;
        let mut at = Duration::ZERO;
        for (name, d) in self.rows() {
            writeln!(
                f,
                "{:<15} {:>9} {:>9} {:>9}",
                name,
                Seconds(at).to_string(),
                Seconds(d).to_string(),
                Seconds(at + d).to_string()
            )?;
            if name == "draining" && self.is_adaptive() {
                writeln!(
                    f,
                    "  {:<13} {:>9} {:>9}",
                    "at least",
                    "",
                    Seconds(self.drain_min).to_string()
                )?;
                writeln!(
                    f,
                    "  {:<13} {:>9} {:>9}",
                    "ends if quiet",
                    "",
                    Seconds(self.drain_quiet).to_string()
                )?;
            }
            if name == "closing" {
                for (n, d) in &self.closes {
                    writeln!(f, "  {:<13} {:>9} {:>9}", n, "", Seconds(*d).to_string())?;
                }
            }
            at += d;
        }
        write!(
            f,
            "{:<15} {:>9}",
            "SIGKILL",
            Seconds(self.grace_period).to_string()
        )
    }
}

/// A budget whose phases do not fit its grace period.
#[derive(Clone, Debug, thiserror::Error)]
#[error("invalid shutdown budget: {message}")]
pub struct BudgetError {
    kind: BudgetErrorKind,
    message: String,
    /// For a [`DrainWindow`](BudgetErrorKind::DrainWindow) error, what
    /// conflicts, to name it again.
    conflict: Option<WindowConflict>,
}

impl BudgetError {
    /// What is wrong with the budget.
    pub fn kind(&self) -> BudgetErrorKind {
        self.kind
    }

    /// The same error, its message naming each setting as `name` spells
    /// it: for a front end whose users set the budget by other names (a
    /// command line's `--drain-quiet` for `drain_quiet`).
    ///
    /// `name` gets the library's name of a setting (`drain_min`,
    /// `drain_max`, `drain_quiet`, `drain_delay`). Only the
    /// [`DrainWindow`](BudgetErrorKind::DrainWindow) messages name
    /// settings; the others are returned as they are.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use lameduck::Budget;
    ///
    /// let err = Budget::default()
    ///     .drain_quiet(Duration::from_secs(10))
    ///     .check()
    ///     .unwrap_err()
    ///     .with_setting_names(|s| format!("--{}", s.replace('_', "-")));
    /// assert!(err.to_string().contains("--drain-quiet 10s conflicts with --drain-max 5s"));
    /// ```
    pub fn with_setting_names(mut self, name: impl Fn(&'static str) -> String) -> Self {
        if let Some(conflict) = &self.conflict {
            self.message = conflict.message(&name);
        }
        self
    }
}

/// The ways a [`Budget`] can be wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BudgetErrorKind {
    /// The phases add up to more than the grace period.
    DoesNotFit,
    /// The phases leave (almost) no time for in-flight work to finish.
    NoTimeToStop,
    /// The drain window is wrong: `drain_min` longer than `drain_max`, a
    /// `drain_quiet` given that cannot end the drain (with a fixed drain,
    /// or not shorter than `drain_max`), or one too short to be seen.
    DrainWindow,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn default_budget_gives_stopping_what_is_left() {
        let t = Budget::default().check().unwrap();
        // 30 - 5 drain - 3 hard - 0.5 flush - 1.5 margin
        assert_eq!(t.shutdown_timeout, Duration::from_millis(20_000));
        assert_eq!(t.worst_case() + t.safety_margin, s(30));
    }

    #[test]
    fn explicit_phases_that_overflow_show_the_arithmetic() {
        let err = Budget::new(s(30))
            .shutdown_timeout(s(20))
            .close_timeout("db", s(2))
            .check()
            .unwrap_err();
        assert_eq!(err.kind(), BudgetErrorKind::DoesNotFit);
        assert_eq!(
            err.to_string(),
            "invalid shutdown budget: drain 5s + shutdown 20s + hard 3s + close 2s (db 2s) + log flush 500ms + margin 1.5s = 32s, more than the grace period 30s; shorten a phase or raise the grace period"
        );
    }

    #[test]
    fn a_budget_with_no_room_for_stopping_is_rejected() {
        let err = Budget::new(s(10)).drain_delay(s(6)).check().unwrap_err();
        assert_eq!(err.kind(), BudgetErrorKind::NoTimeToStop);
        assert!(err.to_string().contains("leaves 0s"), "{err}");
    }

    #[test]
    fn a_given_shutdown_timeout_under_the_minimum_is_named_not_taken_for_what_is_left() {
        for given in [Duration::from_millis(50), Duration::ZERO] {
            let err = Budget::new(s(30))
                .shutdown_timeout(given)
                .check()
                .unwrap_err();
            assert_eq!(err.kind(), BudgetErrorKind::NoTimeToStop);
            let text = err.to_string();
            assert!(
                text.contains(&format!(
                    "the shutdown timeout {} is less than the minimum 100ms",
                    Seconds(given)
                )),
                "{text}"
            );
            assert!(!text.contains("leaves"), "{text}");
        }
    }

    #[test]
    fn absurd_durations_are_an_error_not_a_panic() {
        let err = Budget::new(s(30))
            .drain_delay(Duration::MAX)
            .check()
            .unwrap_err();
        assert_eq!(err.kind(), BudgetErrorKind::DoesNotFit);
    }

    #[test]
    fn a_final_scrape_is_counted_in_the_arithmetic_and_shown() {
        let t = Budget::new(s(30))
            .final_scrape_timeout(s(2))
            .check()
            .unwrap();
        // 30 - 5 drain - 3 hard - 2 final scrape - 0.5 flush - 1.5 margin
        assert_eq!(t.shutdown_timeout, s(18));
        assert_eq!(t.worst_case() + t.safety_margin, s(30));
        assert!(
            t.to_string()
                .lines()
                .any(|l| l.starts_with("final scrape") && l.contains("2s")),
            "{t}"
        );
        let err = Budget::new(s(30))
            .shutdown_timeout(s(20))
            .final_scrape_timeout(s(2))
            .check()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("close 0s + final scrape 2s + log flush"),
            "{err}"
        );
    }

    #[test]
    fn the_default_drain_is_a_window_and_drain_delay_fixes_it() {
        let t = Budget::default().check().unwrap();
        assert!(t.is_adaptive());
        assert_eq!(
            (t.drain_min, t.drain_max(), t.drain_quiet),
            (Duration::ZERO, s(5), s(1))
        );
        let fixed = Budget::default().drain_delay(s(7)).check().unwrap();
        assert!(!fixed.is_adaptive());
        assert_eq!((fixed.drain_min, fixed.drain_max()), (s(7), s(7)));
        // The budget reserves drain_max, whatever the window.
        let window = Budget::default()
            .drain_min(s(1))
            .drain_max(s(10))
            .check()
            .unwrap();
        assert_eq!(window.shutdown_timeout, s(15));
        let table = window.to_string();
        assert!(
            table.contains("at least") && table.contains("ends if quiet"),
            "{table}"
        );
    }

    #[test]
    fn a_drain_window_upside_down_or_too_quiet_to_see_is_rejected() {
        let err = Budget::default()
            .drain_min(s(3))
            .drain_max(s(2))
            .check()
            .unwrap_err();
        assert_eq!(err.kind(), BudgetErrorKind::DrainWindow);
        assert!(
            err.to_string()
                .contains("drain_min 3s is longer than drain_max 2s"),
            "{err}"
        );
        let err = Budget::default()
            .drain_quiet(Duration::from_millis(50))
            .check()
            .unwrap_err();
        assert_eq!(err.kind(), BudgetErrorKind::DrainWindow);
        // A fixed drain has no quiet to see: the default one is not asked
        // for.
        Budget::default().drain_delay(s(2)).check().unwrap();
    }

    #[test]
    fn a_drain_quiet_that_cannot_end_the_drain_is_refused_naming_what_it_conflicts_with() {
        let ms = Duration::from_millis;
        // (budget, the settings the error names, or None when it is valid)
        let cases: Vec<(Budget, Option<&str>)> = vec![
            // A quiet given with a fixed drain, however it was made fixed.
            (
                Budget::default().drain_delay(s(5)).drain_quiet(s(1)),
                Some("drain_quiet 1s conflicts with a fixed drain of 5s"),
            ),
            (
                Budget::default().drain_quiet(s(1)).drain_delay(s(5)),
                Some("drain_quiet 1s conflicts with a fixed drain of 5s"),
            ),
            (
                Budget::default()
                    .drain_min(s(5))
                    .drain_max(s(5))
                    .drain_quiet(s(1)),
                Some("drain_quiet 1s conflicts with a fixed drain of 5s"),
            ),
            (
                Budget::default()
                    .drain_delay(Duration::ZERO)
                    .drain_quiet(s(1)),
                Some("drain_quiet 1s conflicts with a fixed drain of 0s"),
            ),
            // A quiet the drain reaches drain_max before.
            (
                Budget::default().drain_max(s(5)).drain_quiet(s(10)),
                Some("drain_quiet 10s conflicts with drain_max 5s"),
            ),
            (
                Budget::default().drain_max(s(5)).drain_quiet(s(5)),
                Some("drain_quiet 5s conflicts with drain_max 5s"),
            ),
            (
                Budget::default().drain_quiet(ms(50)),
                Some("drain_quiet 50ms is shorter than 100ms"),
            ),
            // Valid: a quiet shorter than drain_max, or none given.
            (
                Budget::default().drain_max(s(5)).drain_quiet(ms(4_900)),
                None,
            ),
            (Budget::default().drain_min(s(4)).drain_quiet(s(2)), None),
            (Budget::default().drain_min(s(5)).drain_max(s(5)), None),
            (Budget::default().drain_max(ms(500)), None),
        ];
        for (budget, expected) in cases {
            match (budget.check(), expected) {
                (Ok(_), None) => {}
                (Err(err), Some(names)) => {
                    assert_eq!(err.kind(), BudgetErrorKind::DrainWindow, "{budget:?}");
                    assert!(err.to_string().contains(names), "{budget:?}: {err}");
                }
                (result, expected) => {
                    panic!("{budget:?}: {result:?}, expected an error naming {expected:?}")
                }
            }
        }
    }

    #[test]
    fn a_default_drain_quiet_shrinks_to_fit_a_drain_max_it_could_not_end() {
        let ms = Duration::from_millis;
        // (drain_max, the quiet the checked budget holds, adaptive)
        for (max, quiet, adaptive) in [
            (s(5), s(1), true),
            (s(2), s(1), true),
            (ms(1_500), ms(750), true),
            (ms(500), ms(250), true),
            (ms(150), ms(100), true),
            (ms(100), ms(100), false),
            (Duration::ZERO, ms(100), false),
        ] {
            let budget = Budget::default().drain_max(max);
            assert_eq!(budget.get_drain_quiet(), quiet, "drain_max {max:?}");
            let t = budget.check().unwrap();
            assert_eq!(t.drain_quiet, quiet, "drain_max {max:?}");
            assert_eq!(t.is_adaptive(), adaptive, "drain_max {max:?}");
            // The rule the budget holds can apply: a quiet shorter than the
            // drain, or no quiet shown at all.
            let table = t.to_string();
            assert_eq!(table.contains("ends if quiet"), adaptive, "{table}");
            if adaptive {
                assert!(t.drain_quiet < t.drain_max(), "{t:?}");
            }
        }
        // A quiet given is the user's: refused, not shrunk.
        let err = Budget::default()
            .drain_max(ms(500))
            .drain_quiet(s(1))
            .check()
            .unwrap_err();
        assert_eq!(err.kind(), BudgetErrorKind::DrainWindow);
    }

    #[test]
    fn close_timeouts_replace_by_name() {
        let t = Budget::default()
            .close_timeout("db", s(1))
            .close_timeout("db", s(2))
            .check()
            .unwrap();
        assert_eq!(t.closes, vec![("db".to_string(), s(2))]);
    }

    #[test]
    fn table_lists_phases_with_offsets() {
        let t = Budget::default().close_timeout("db", s(1)).check().unwrap();
        let table = t.to_string();
        assert!(table.contains("stopping"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("SIGKILL") && l.ends_with("30s")),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.trim_start().starts_with("db")),
            "{table}"
        );
    }
}
