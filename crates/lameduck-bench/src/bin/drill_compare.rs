//! Scenario (a): `lameduck drill` (the engine, as a library) against
//! `lameduck demo`, `baseline-axum` and `dies-on-term`, side by side.
//! Run it with `scripts/bench drill`; see docs/benchmarks.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck_bench::compare::{self, Plan};
use lameduck_bench::kind::{Binaries, ServerKind};
use lameduck_bench::results::parse_duration;

/// The drill against each kind of server, side by side.
#[derive(Debug, Parser)]
struct Args {
    /// Kinds of server to drill, repeatable [default: all]
    #[arg(long = "kind", value_enum)]
    kinds: Vec<ServerKind>,
    /// Open-loop requests per second
    #[arg(long, default_value_t = 1250)]
    rate: u32,
    /// Handler latency: the load is `GET /work?ms=N`
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
    /// How long the load runs
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    duration: Duration,
    /// When SIGTERM goes, from the start of the load
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    at: Duration,
    /// The demo's drain delay
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    drain_delay: Duration,
    /// Grace period: the demo's budget and the drill's wait for the exit
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace_period: Duration,
    /// A few seconds in all, for CI: 2 s at 200 requests/s, SIGTERM at 0.7 s
    #[arg(long)]
    smoke: bool,
    /// Where `lameduck` and the bench binaries are [default: beside this one]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Write drill-summary.json and each drill's JSON and HTML report here
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
    if args.kinds.is_empty() {
        args.kinds = ServerKind::ALL.to_vec();
    }
    if args.smoke {
        args.rate = args.rate.min(200);
        args.duration = Duration::from_secs(2);
        args.at = Duration::from_millis(700);
        args.drain_delay = Duration::from_millis(300);
    }
    let bins = Binaries::new(args.bin_dir)?;
    bins.check(&args.kinds)?;
    let plan = Plan {
        rate: args.rate,
        work_ms: args.work_ms,
        duration: args.duration,
        at: args.at,
        drain_delay: args.drain_delay,
        grace_period: args.grace_period,
    };
    println!(
        "drill side by side: GET /work?ms={} at {} requests/s (open loop, keep-alive) for {}, \
         SIGTERM at {}; lameduck demo with a {} drain delay\n",
        plan.work_ms,
        plan.rate,
        humantime::format_duration(plan.duration),
        humantime::format_duration(plan.at),
        humantime::format_duration(plan.drain_delay),
    );
    let (mut rows, mut reports) = (Vec::new(), Vec::new());
    for kind in &args.kinds {
        eprintln!("drilling {} …", kind.name());
        let (row, report) = compare::drill(*kind, &plan, &bins).await?;
        anyhow::ensure!(
            row.requests > 0 && row.ok > 0,
            "the drill of {} produced no successful request",
            kind.name()
        );
        rows.push(row);
        reports.push(report);
    }
    println!("{}", compare::table(&rows));
    for row in rows.iter().filter(|r| !r.pass) {
        println!(
            "{} failed: {}",
            row.server.name(),
            row.failed_conditions.join(", ")
        );
    }
    println!();
    println!(
        "unready/closed/exited: time after SIGTERM when readiness answered non-2xx, the listener\n\
         refused its first connect, the process exited. Requests started after the close are not\n\
         counted as failures: a load balancer that honoured readiness would not have sent them."
    );
    if let Some(dir) = &args.out {
        compare::save(dir, &plan, &rows, &reports)?;
        println!("\nreports in {}", dir.display());
    }
    Ok(())
}
