//! The shutdown phase flags shared by every command that runs or plans a
//! shutdown (`plan`, `demo`), parsed once and applied to a [`Budget`].

use std::time::Duration;

use lameduck::Budget;

/// The longest duration any flag accepts. Far beyond any real grace period,
/// and low enough that adding every phase together cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The phases of a shutdown. A flag left out keeps the library's default,
/// so the command line never disagrees with the library about them.
#[derive(Debug, clap::Args)]
pub struct PhaseFlags {
    /// Time between SIGTERM and SIGKILL: Kubernetes
    /// terminationGracePeriodSeconds, systemd TimeoutStopSec [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: Option<Duration>,

    /// How long to stay unready but serving, while load balancers and
    /// Kubernetes endpoints stop sending traffic [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub drain_delay: Option<Duration>,

    /// How long in-flight work may take to finish once listeners close
    /// [default: what the other phases leave]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,

    /// How long cancelled work may take to wind down before it is aborted
    /// [default: 3s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
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
        if let Some(d) = self.shutdown_timeout {
            budget = budget.shutdown_timeout(d);
        }
        if let Some(d) = self.hard_timeout {
            budget = budget.hard_timeout(d);
        }
        budget
    }
}

/// Parses `30s`, `1500ms`, `1m 30s`, up to [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| e.to_string())?;
    if d > MAX_DURATION {
        return Err(format!(
            "{s} is more than the longest accepted duration, 365 days"
        ));
    }
    Ok(d)
}
