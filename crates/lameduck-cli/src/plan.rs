//! `lameduck plan`: the shutdown budget as a table, a Kubernetes pod spec or
//! JSON.
//!
//! The flags (`Args`) are parsed by clap into typed values; `Config`
//! turns them into a [`Budget`] and the Kubernetes settings, and the budget's
//! own check decides whether the phases fit. All the arithmetic lives in
//! `lameduck::budget`: this file only gathers the numbers and prints them.

mod json;
mod k8s;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use lameduck::{Budget, Timeline};

use crate::duration::parse_duration;
use crate::phases::PhaseFlags;

/// Exit code when the phases do not fit the grace period (the arithmetic is
/// printed on stderr): the library's for a configuration it refuses, 78.
/// Bad flags exit with 2, like every other usage error.
const EXIT_DOES_NOT_FIT: lameduck::ExitStatus = lameduck::ExitStatus::InvalidConfig;

const LONG_ABOUT: &str = concat!(
    "\
Print the shutdown timing budget for a grace period.

The grace period is the one number the orchestrator gives a process to stop:
the time between SIGTERM and SIGKILL (Kubernetes terminationGracePeriodSeconds,
default 30s; systemd TimeoutStopSec). lameduck splits it into phases, in order:

  draining       unready but still serving while load balancers and endpoints
                 catch up: from --drain-min (0s) to --drain-max (5s), ending
                 once no request arrived for --drain-quiet (1s, or half of
                 --drain-max if shorter; more at low traffic); --drain-delay
                 fixes it                                  (--drain-max)
  stopping       listeners closed; in-flight work finishes  (--shutdown-timeout)
  cancelling     work that got its cancel signal winds down    (--hard-timeout)
  closing        each resource closes in turn, with its own timeout   (--close)
  final scrape   a last scrape of the metrics, or the push     (--final-scrape)
  log flush      the final log flush                              (--log-flush)
  safety margin  slack for scheduling, never used on purpose         (--margin)

Stopping gets whatever the other phases leave, unless --shutdown-timeout sets
it. The plan is invalid when the phases add up to more than the grace period,
or leave Stopping less than 100ms, or the drain window contradicts itself
(--drain-min above --drain-max; --drain-quiet under 100ms, not shorter than
--drain-max, or given with a fixed drain: --drain-delay, or --drain-min equal
to --drain-max): then what is wrong is printed on stderr, naming the settings
that conflict, and the exit code is 78, as when a service built on the library
refuses the same budget at start-up.

With --format k8s, the matching pod spec fragment: terminationGracePeriodSeconds
(the grace period, rounded up to whole seconds), startup, readiness and liveness
probes on --admin-port, and a preStop sleep only with --drain-in prestop. Every
number carries a comment that says where it comes from. A preStop sleep is
fixed: with --drain-in prestop the drain lasts --drain-max, in every format.

",
    crate::duration::duration_syntax!()
);

const AFTER_LONG_HELP: &str = "\
Examples:

  lameduck plan --grace-period 30s --close db=2s --close kafka=3s
      the budget as a table

  lameduck plan --grace-period 30s --drain-max 10s --drain-quiet 2s
      an adaptive drain of up to 10s that ends after 2s without a request

  lameduck plan --grace-period 45s --drain-delay 10s --format k8s
      the pod spec fragment: terminationGracePeriodSeconds, probes on the
      admin port, and no preStop hook (lameduck drains by itself)

  lameduck plan --grace-period 30s --drain-in prestop --format k8s
      for a program that exits at once on SIGTERM: a preStop sleep holds the
      drain delay instead

Exit status:
  0   the phases fit: the plan is on stdout
  2   bad flags or values (an unparsable or negative duration, --close
      without '=', --drain-delay with --drain-max or --drain-min,
      --drain-min or --drain-quiet with --drain-in prestop)
  78  the phases do not fit the grace period, or the drain window
      contradicts itself: what is wrong is on stderr";

/// Print the shutdown timing budget: a table, a Kubernetes pod spec or JSON.
#[derive(Debug, clap::Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    #[command(flatten)]
    phases: PhaseFlags,

    /// The close timeout of one resource (a pool, a producer, a telemetry
    /// exporter); repeat for each, in closing order. A library app counts
    /// 1s for each component with a close whose timeout it sets nowhere:
    /// list those here too [default: none]
    #[arg(long = "close", value_name = "NAME=DURATION", value_parser = parse_close)]
    closes: Vec<(String, Duration)>,

    /// How long Closing waits for a last scrape of the lifecycle metrics
    /// (and a push), once the shutdown's counts are final [default: 0s, no
    /// wait]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    final_scrape: Option<Duration>,

    /// Bound on the final log flush [default: 500ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    log_flush: Option<Duration>,

    /// Slack left unused before SIGKILL [default: 5% of the grace period, at
    /// least 500ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    margin: Option<Duration>,

    /// What to print
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = Format::Table)]
    format: Format,

    /// Where the drain delay is spent when Kubernetes stops the pod (for
    /// --format k8s and json)
    #[arg(long, value_name = "WHERE", value_enum, default_value_t = DrainIn::App)]
    drain_in: DrainIn,

    /// Port of the admin listener that serves /livez, /readyz and /startupz:
    /// the Kubernetes probes call it
    #[arg(long, value_name = "PORT", default_value_t = 8081,
          value_parser = clap::value_parser!(u16).range(1..))]
    admin_port: u16,
}

/// The output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The phases with their offsets from the first signal.
    Table,
    /// A Kubernetes pod spec fragment (YAML).
    K8s,
    /// The budget for machines, durations in seconds as floats.
    Json,
}

/// Where the drain delay is spent when Kubernetes stops the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DrainIn {
    /// The program is built on the lameduck library, which drains after
    /// SIGTERM by itself: no preStop hook.
    App,
    /// The program exits at once on SIGTERM: a preStop sleep holds the drain
    /// delay, and SIGTERM comes after it.
    Prestop,
}

/// The validated flags: a budget to check and how to print it.
#[derive(Debug)]
struct Config {
    budget: Budget,
    format: Format,
    drain_in: DrainIn,
    admin_port: u16,
}

impl Config {
    fn new(args: Args) -> anyhow::Result<Self> {
        let mut budget = args.phases.apply(Budget::default());
        if let Some(d) = args.log_flush {
            budget = budget.log_flush(d);
        }
        if let Some(d) = args.final_scrape {
            budget = budget.final_scrape_timeout(d);
        }
        if let Some(d) = args.margin {
            budget = budget.safety_margin(d);
        }
        if args.drain_in == DrainIn::Prestop {
            // A preStop sleep is fixed: it cannot end once traffic is quiet.
            let window = [
                ("--drain-min", args.phases.drain_min),
                ("--drain-quiet", args.phases.drain_quiet),
            ];
            if let Some((flag, _)) = window.iter().find(|(_, d)| d.is_some()) {
                anyhow::bail!(
                    "{flag} does not apply with --drain-in prestop: the drain is a preStop \
                     sleep, which cannot end early; set its length with --drain-max or \
                     --drain-delay"
                );
            }
        }
        for (i, (name, d)) in args.closes.iter().enumerate() {
            // The library replaces a close timeout by name; on the command
            // line a repeated name is more likely a typo than a wish.
            if args.closes[..i].iter().any(|(n, _)| n == name) {
                anyhow::bail!("--close {name} is given more than once");
            }
            budget = budget.close_timeout(name.as_str(), *d);
        }
        Ok(Self {
            budget,
            format: args.format,
            drain_in: args.drain_in,
            admin_port: args.admin_port,
        })
    }
}

/// Runs `lameduck plan`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::new(args)?;
    let mut checked = crate::phases::check(&config.budget);
    if let (DrainIn::Prestop, Ok(timeline)) = (config.drain_in, &checked)
        && timeline.is_adaptive()
    {
        // The preStop sleep lasts drain_max whatever the traffic does.
        checked = crate::phases::check(&config.budget.clone().drain_delay(timeline.drain_max()));
    }
    let timeline = match checked {
        Ok(timeline) => timeline,
        Err(err) => {
            say!("lameduck: error: {err:#}");
            return Ok(EXIT_DOES_NOT_FIT.into());
        }
    };
    let out = render(&config, &timeline)?;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // `lameduck plan | head` is not an error: the reader had enough.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        result => {
            result.context("writing the plan to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn render(config: &Config, timeline: &Timeline) -> anyhow::Result<String> {
    let pod = k8s::PodSettings::new(timeline, config.drain_in, config.admin_port);
    Ok(match config.format {
        Format::Table => format!("{timeline}\n"),
        Format::K8s => k8s::PodSpec {
            timeline,
            pod: &pod,
        }
        .to_string(),
        Format::Json => json::render(timeline, &pod)?,
    })
}

fn parse_close(s: &str) -> Result<(String, Duration), String> {
    let (name, d) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=DURATION, like db=2s, not {s:?}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("the resource name before '=' is empty in {s:?}"));
    }
    let d = parse_duration(d).map_err(|e| format!("bad duration for {name}: {e}"))?;
    Ok((name.to_string(), d))
}

/// Formats a duration in seconds the way the budget does: `5s`, `1.5s`.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_close("db=2s"),
            Ok(("db".to_string(), Duration::from_secs(2)))
        );
        assert_eq!(
            parse_close(" kafka = 1500ms"),
            Ok(("kafka".to_string(), Duration::from_millis(1500)))
        );
        assert!(parse_close("db").unwrap_err().contains("NAME=DURATION"));
        assert!(parse_close("=2s").unwrap_err().contains("name"));
        assert!(
            parse_close("db=2x")
                .unwrap_err()
                .starts_with("bad duration for db")
        );
    }

    #[test]
    fn secs_matches_the_budget_format() {
        assert_eq!(secs(Duration::from_secs(30)), "30s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(secs(Duration::ZERO), "0s");
    }
}
