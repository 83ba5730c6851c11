//! Scenario (f): restarts side by side — lameduck's `SIGHUP` upgrade, nginx's
//! binary upgrade and HAProxy's `-sf` reload (without and with `-x`), under
//! the same load. Run it with `scripts/bench rolling` (after the rolling
//! restarts); see docs/benchmarks.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck_bench::balancer::Balancer;
use lameduck_bench::kind::{Binaries, ServerKind};
use lameduck_bench::reload::{self, Plan, Reload};
use lameduck_bench::results::{self, parse_duration};
use serde::Serialize;

/// Reloads under load, side by side.
#[derive(Debug, Parser)]
struct Args {
    /// Reloads, repeatable [default: all four]
    #[arg(long = "reload", value_enum)]
    reloads_asked: Vec<Reload>,
    /// Reloads per row
    #[arg(long, default_value_t = 10)]
    reloads: u32,
    /// Time from one reload to the next
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    every: Duration,
    /// Open-loop requests per second
    #[arg(long, default_value_t = 1250)]
    rate: u32,
    /// Handler latency: the load is `GET /work?ms=N`
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
    /// Steady-state run (no reloads) before each row
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    steady: Duration,
    /// Load before the first reload and after the last
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    margin: Duration,
    /// The demo's drain delay (the old process serves this long after the new one is ready)
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    drain_delay: Duration,
    /// A few seconds per row, for CI: 2 reloads at 200 requests/s
    #[arg(long)]
    smoke: bool,
    /// The nginx binary
    #[arg(long, value_name = "PATH", default_value = "nginx")]
    nginx_bin: PathBuf,
    /// The HAProxy binary
    #[arg(long, value_name = "PATH", default_value = "haproxy")]
    haproxy_bin: PathBuf,
    /// Where `lameduck` and the bench binaries are [default: beside this one]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Write reload-summary.json and each run's drill report here
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
        args.reloads = 2;
        args.every = Duration::from_secs(1);
        args.rate = args.rate.min(200);
        args.steady = Duration::from_secs(1);
        args.margin = Duration::from_millis(500);
        args.drain_delay = Duration::from_millis(300);
    }
    if args.reloads_asked.is_empty() {
        args.reloads_asked = Reload::ALL.to_vec();
    }
    let bins = Binaries::new(args.bin_dir)?;
    bins.check(&[ServerKind::Lameduck, ServerKind::Axum])?;
    let nginx = Balancer::Nginx.version(&args.nginx_bin).await?;
    let haproxy = Balancer::Haproxy.version(&args.haproxy_bin).await?;
    let plan = Plan {
        reloads: args.reloads,
        every: args.every,
        rate: args.rate,
        work_ms: args.work_ms,
        steady: args.steady,
        margin: args.margin,
        drain_delay: args.drain_delay,
        nginx: args.nginx_bin,
        haproxy: args.haproxy_bin,
        bins: Some(bins),
    };
    println!(
        "reloads under load ({nginx}, {haproxy}): {} reloads, one per {}, GET /work?ms={} at {} \
         requests/s (open loop, keep-alive); lameduck demo straight, nginx and HAProxy in front of \
         one baseline-axum that is never restarted\n",
        plan.reloads,
        humantime::format_duration(plan.every),
        plan.work_ms,
        plan.rate,
    );
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    for reload in &args.reloads_asked {
        eprintln!("{}: {} reloads …", reload.name(), plan.reloads);
        let (row, report) = reload::run(&plan, *reload).await?;
        anyhow::ensure!(
            row.requests > 0 && row.p99_us.is_some(),
            "{}: no successful request",
            reload.name()
        );
        rows.push(row);
        reports.push(report);
    }
    println!("{}", reload::table(&rows));
    println!(
        "errors: requests that failed as the client saw them. p99 ratio: p99 of the reload run over\n\
         the steady run's. slowest reload: from its start until the old process was gone (lameduck:\n\
         SIGHUP until the drill saw the new process on the socket)."
    );
    if let Some(dir) = &args.out {
        #[derive(Serialize)]
        struct Summary<'a> {
            scenario: &'static str,
            nginx: &'a str,
            haproxy: &'a str,
            plan: &'a Plan,
            rows: &'a [reload::Row],
        }
        for (row, report) in rows.iter().zip(&reports) {
            let name = format!(
                "reload-{}",
                serde_json::to_value(row.reload)?.as_str().unwrap_or("x")
            );
            results::write(dir, &format!("{name}.json"), &report.to_json())?;
            results::write(dir, &format!("{name}.html"), &report.to_html())?;
        }
        results::write_json(
            dir,
            "reload-summary.json",
            &Summary {
                scenario: "reload",
                nginx: &nginx,
                haproxy: &haproxy,
                plan: &plan,
                rows: &rows,
            },
        )?;
        println!("\nreports in {}", dir.display());
    }
    Ok(())
}
