//! The shutdown phase flags shared by every command that runs or plans a
//! shutdown (`plan`, `demo`), parsed once and applied to a [`Budget`].

use std::time::Duration;

use lameduck::{Budget, BudgetError, Timeline};

use crate::duration::parse_duration;

/// The phases of a shutdown. A flag left out keeps the library's default,
/// so the command line never disagrees with the library about them.
#[derive(Clone, Debug, clap::Args)]
pub struct PhaseFlags {
    /// Time between SIGTERM and SIGKILL: Kubernetes
    /// terminationGracePeriodSeconds, systemd TimeoutStopSec [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub grace_period: Option<Duration>,

    /// A fixed drain: stay unready but serving for exactly this long,
    /// whatever the traffic does (sets --drain-min and --drain-max both)
    // --drain-quiet is not listed: a quiet that cannot end the drain is the
    // budget's to refuse, with --drain-min = --drain-max as with this.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true,
          conflicts_with_all = ["drain_min", "drain_max"])]
    pub drain_delay: Option<Duration>,

    /// The longest drain: unready but serving while load balancers and
    /// Kubernetes endpoints stop sending traffic; what the budget reserves
    /// [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub drain_max: Option<Duration>,

    /// The shortest drain, however quiet the traffic [default: 0s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub drain_min: Option<Duration>,

    /// The drain ends once no request has arrived for this long (more at
    /// low traffic: four times the longest gap seen before the signal), at
    /// least 100ms, shorter than the longest drain [default: 1s, or half
    /// the longest drain if that is shorter]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub drain_quiet: Option<Duration>,

    /// How long in-flight work may take to finish once listeners close
    /// [default: what the other phases leave]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub shutdown_timeout: Option<Duration>,

    /// How long cancelled work may take to wind down before it is aborted
    /// [default: 3s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub hard_timeout: Option<Duration>,
}

impl PhaseFlags {
    /// `budget` with the flags given applied.
    pub fn apply(&self, mut budget: Budget) -> Budget {
        if let Some(d) = self.grace_period {
            budget = budget.grace_period(d);
        }
        if let Some(d) = self.drain_delay {
            budget = budget.drain_delay(d);
        }
        if let Some(d) = self.drain_max {
            budget = budget.drain_max(d);
        }
        if let Some(d) = self.drain_min {
            budget = budget.drain_min(d);
        }
        if let Some(d) = self.drain_quiet {
            budget = budget.drain_quiet(d);
        }
        if let Some(d) = self.shutdown_timeout {
            budget = budget.shutdown_timeout(d);
        }
        if let Some(d) = self.hard_timeout {
            budget = budget.hard_timeout(d);
        }
        budget
    }

    /// `budget` with the flags given applied, but the drain fixed at
    /// `drain` whatever the drain flags say: for a drain that cannot end on
    /// quiet traffic (`run` with no socket to watch).
    pub fn apply_with_fixed_drain(&self, budget: Budget, drain: Duration) -> Budget {
        Self {
            drain_delay: Some(drain),
            drain_max: None,
            drain_min: None,
            drain_quiet: None,
            ..self.clone()
        }
        .apply(budget)
    }
}

/// Checks `budget` like [`Budget::check`], with an error that names the
/// command-line flags (`--drain-quiet`) rather than the library's settings
/// (`drain_quiet`): the user typed the flags.
pub fn check(budget: &Budget) -> Result<Timeline, BudgetError> {
    budget.check().map_err(|err| err.with_setting_names(flag))
}

/// The flag that sets the library's `setting`: `drain_quiet` is
/// `--drain-quiet`.
fn flag(setting: &'static str) -> String {
    format!("--{}", setting.replace('_', "-"))
}
