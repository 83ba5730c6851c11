//! Scenario (b): rolling restarts of two instances behind a real HAProxy,
//! under steady load, per kind of server and HAProxy configuration.
//! Run it with `scripts/bench rolling`; see docs/benchmarks.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck_bench::haproxy::{Haproxy, Retries};
use lameduck_bench::kind::{Binaries, ServerKind};
use lameduck_bench::results::{self, parse_duration};
use lameduck_bench::rolling::{self, Plan};
use serde::Serialize;

/// Rolling restarts behind HAProxy, per kind of server.
#[derive(Debug, Parser)]
struct Args {
    /// Kinds of server, repeatable [default: all]
    #[arg(long = "kind", value_enum)]
    kinds: Vec<ServerKind>,
    /// HAProxy configurations, repeatable [default: both]
    #[arg(long = "haproxy", value_enum)]
    retries: Vec<Retries>,
    /// Rolling restarts per case (each restarts A, then B)
    #[arg(long, default_value_t = 10)]
    restarts: u32,
    /// Open-loop requests per second through HAProxy
    #[arg(long, default_value_t = 1250)]
    rate: u32,
    /// Handler latency: the load is `GET /work?ms=N`
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
    /// Steady-state run (no restarts) before each case, for the baseline latency
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    steady: Duration,
    /// Time slot of one rolling restart
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    round: Duration,
    /// Load before the first restart and after the last
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    margin: Duration,
    /// The demo's drain delay: longer than HAProxy takes to see it unready
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    drain_delay: Duration,
    /// How long an instance may take to exit before it is SIGKILLed
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace_period: Duration,
    /// HAProxy's health-check interval (`inter`)
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    check_interval: Duration,
    /// HAProxy's `fall`: failed health checks in a row that take a server
    /// out
    #[arg(long, default_value_t = 1)]
    check_fall: u32,
    /// An adaptive drain for lameduck demo: `--drain-max` the drain delay,
    /// ending once no request arrived for this long [default: a fixed
    /// drain delay]
    #[arg(long, value_parser = parse_duration)]
    drain_quiet: Option<Duration>,
    /// A few seconds per case, for CI: lameduck with stock HAProxy, one
    /// rolling restart at 200 requests/s
    #[arg(long)]
    smoke: bool,
    /// The HAProxy binary
    #[arg(long, value_name = "PATH", default_value = "haproxy")]
    haproxy_bin: PathBuf,
    /// Where `lameduck` and the bench binaries are [default: beside this one]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Write rolling-summary.json and each rolling run's drill report here
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    lameduck_bench::exit_code(run(Args::parse()))
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    lameduck_bench::interruptible(scenario(args)).await
}

async fn scenario(mut args: Args) -> anyhow::Result<()> {
    if args.smoke {
        if args.kinds.is_empty() {
            args.kinds = vec![ServerKind::Lameduck];
        }
        if args.retries.is_empty() {
            args.retries = vec![Retries::Stock];
        }
        args.restarts = 1;
        args.rate = args.rate.min(200);
        args.steady = Duration::from_secs(1);
        args.drain_delay = Duration::from_millis(500);
        args.round = Duration::from_secs(3);
        args.margin = Duration::from_millis(500);
    }
    if args.kinds.is_empty() {
        args.kinds = ServerKind::ALL.to_vec();
    }
    if args.retries.is_empty() {
        args.retries = Retries::ALL.to_vec();
    }
    let bins = Binaries::new(args.bin_dir)?;
    bins.check(&args.kinds)?;
    let version = Haproxy::version(&args.haproxy_bin).await?;
    let plan = Plan {
        restarts: args.restarts,
        rate: args.rate,
        work_ms: args.work_ms,
        steady: args.steady,
        margin: args.margin,
        round: args.round,
        drain_delay: args.drain_delay,
        grace_period: args.grace_period,
        check_interval: args.check_interval,
        check_fall: args.check_fall,
        drain_quiet: args.drain_quiet,
        haproxy: args.haproxy_bin,
        bins: Some(bins),
    };
    println!(
        "rolling restarts behind {version}: 2 instances, {} rolling restarts (A then B, one per {}), \
         GET /work?ms={} at {} requests/s through HAProxy (open loop, keep-alive); \
         health checks GET /readyz every {}, fall {}, rise 2; lameduck demo drain {}{}\n",
        plan.restarts,
        humantime::format_duration(plan.round),
        plan.work_ms,
        plan.rate,
        humantime::format_duration(plan.check_interval),
        plan.check_fall,
        humantime::format_duration(plan.drain_delay),
        match plan.drain_quiet {
            Some(q) => format!(
                " at most, ending after {} quiet",
                humantime::format_duration(q)
            ),
            None => " fixed".into(),
        },
    );
    let mut done = Vec::new();
    for (retries, kind) in rolling::cases(&args.kinds, &args.retries) {
        eprintln!(
            "haproxy {}, {}: {} rolling restarts …",
            retries.name(),
            kind.name(),
            plan.restarts
        );
        let result = rolling::run_case(&plan, retries, kind).await?;
        anyhow::ensure!(
            result.requests > 0 && result.p50_us.is_some(),
            "haproxy {}, {}: no successful request",
            retries.name(),
            kind.name()
        );
        done.push(result);
    }
    println!("{}", rolling::table(&done));
    println!(
        "errors: requests that failed as the client saw them (through HAProxy). Latency: ok responses,\n\
         from when each was due. steady p99: the same load without restarts, just before.\n\
         lb retries / redispatched: HAProxy's wretr / wredis during the rolling run."
    );
    if let Some(dir) = &args.out {
        #[derive(Serialize)]
        struct Summary<'a> {
            scenario: &'static str,
            haproxy: &'a str,
            plan: &'a Plan,
            cases: &'a [rolling::CaseResult],
        }
        for case in &done {
            if let Some(report) = &case.report {
                let name = format!("rolling-{}-{}", case.retries.name(), case.server.name());
                results::write(dir, &format!("{name}.json"), &report.to_json())?;
                results::write(dir, &format!("{name}.html"), &report.to_html())?;
            }
        }
        results::write_json(
            dir,
            "rolling-summary.json",
            &Summary {
                scenario: "rolling",
                haproxy: &version,
                plan: &plan,
                cases: &done,
            },
        )?;
        println!("\nreports in {}", dir.display());
    }
    Ok(())
}
