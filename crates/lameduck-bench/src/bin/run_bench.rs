//! The restarts and the costs of `lameduck run` (`scripts/bench run`; see
//! docs/benchmarks.md): zero-downtime restarts of a Python server that
//! takes its socket from `LISTEN_FDS`, under load; and what each wrapper
//! costs around the naive Python server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck_bench::kind::{Binaries, ServerKind};
use lameduck_bench::results::{self, parse_duration};
use lameduck_bench::table::Table;
use lameduck_bench::{run_cost, run_restarts};
use serde::Serialize;

/// Restarts under load, and the cost of each wrapper.
#[derive(Debug, Parser)]
struct Args {
    /// Zero-downtime restarts (`upgrade` on the control socket), one after
    /// the other
    #[arg(long, default_value_t = 20)]
    restarts: u32,
    /// Open-loop requests per second during the restarts
    #[arg(long, default_value_t = 400)]
    rate: u32,
    /// Handler latency: the load is `GET /work?ms=N`
    #[arg(long, default_value_t = 20)]
    work_ms: u64,
    /// Time between two restarts
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    gap: Duration,
    /// Starts of each kind for the median start-up time
    #[arg(long, default_value_t = 9)]
    starts: usize,
    /// How long each wrapper idles for its CPU figure
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    idle: Duration,
    /// A few seconds in all, for CI: 3 restarts, 2 starts, 1 s idle
    #[arg(long)]
    smoke: bool,
    /// Where `lameduck` is [default: beside this binary]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// Write run-summary.json here
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
        args.restarts = args.restarts.min(3);
        args.starts = 2;
        args.idle = Duration::from_secs(1);
    }
    let bins = Binaries::new(args.bin_dir.clone())?;
    bins.check(&ServerKind::INITS)?;

    let plan = run_restarts::Plan {
        restarts: args.restarts,
        rate: args.rate,
        work_ms: args.work_ms,
        gap_ms: u64::try_from(args.gap.as_millis())?,
    };
    println!(
        "restarts: {} zero-downtime restarts (`upgrade` on the control socket, {} apart) of the Python \
         server taking its socket from LISTEN_FDS, under GET /work?ms={} at {} requests/s\n",
        plan.restarts,
        humantime::format_duration(args.gap),
        plan.work_ms,
        plan.rate
    );
    let (restarts, _report) = run_restarts::measure(&plan, &bins).await?;
    let mut t = Table::new(&[
        "restarts ok",
        "<failed",
        "slowest",
        "requests",
        "ok",
        "failed",
        "<by class",
    ]);
    t.row(vec![
        restarts.restarts_ok.to_string(),
        if restarts.restarts_failed.is_empty() {
            "-".into()
        } else {
            restarts.restarts_failed.join("; ")
        },
        format!("{}ms", restarts.slowest_restart_ms),
        restarts.requests.to_string(),
        restarts.ok.to_string(),
        restarts.failed.to_string(),
        if restarts.failed_by_class.is_empty() {
            "-".into()
        } else {
            restarts.failed_by_class.clone()
        },
    ]);
    println!("{t}");
    anyhow::ensure!(
        restarts.requests > 0 && restarts.ok > 0,
        "the restarts ran without load"
    );

    println!(
        "\ncost: around the naive Python server: resident memory, CPU over {} idle, median \
         start-up of {} starts\n",
        humantime::format_duration(args.idle),
        args.starts
    );
    let costs = run_cost::measure(&ServerKind::INITS, &bins, args.starts, args.idle).await?;
    let bare = costs
        .iter()
        .find(|c| c.server == ServerKind::Python)
        .map_or(1.0, |c| c.startup_ms);
    let mut t = Table::new(&[
        "<server",
        "wrapper PSS",
        "program PSS",
        "memory ratio",
        "idle CPU",
        "start-up",
        "start-up ratio",
    ]);
    for c in &costs {
        t.row(vec![
            c.server.name().to_owned(),
            format!("{:.1} MiB", c.wrapper_rss_kib as f64 / 1024.0),
            format!("{:.1} MiB", c.program_rss_kib as f64 / 1024.0),
            format!(
                "{:.2}",
                c.wrapper_rss_kib as f64 / c.program_rss_kib.max(1) as f64
            ),
            format!("{:.2} ms/s", c.wrapper_idle_cpu_ms_per_s),
            format!("{:.1}ms", c.startup_ms),
            format!("{:.2}", c.startup_ms / bare),
        ]);
    }
    println!("{t}");
    println!(
        "\nmemory: resident memory as PSS (a page shared by several processes, as lameduck and its \
         guard share their binary, counted once); memory ratio: the wrapper's over the program's \
         (lameduck run: itself and its guard process). idle CPU: CPU time the wrapper used per second while the program idled. \
         start-up ratio: the median time to the program's first answer, over the bare program's."
    );
    if let Some(dir) = &args.out {
        #[derive(Serialize)]
        struct Summary<'a> {
            scenario: &'static str,
            restarts_plan: &'a run_restarts::Plan,
            restarts: &'a run_restarts::Outcome,
            costs: &'a [run_cost::Cost],
        }
        results::write_json(
            dir,
            "run-summary.json",
            &Summary {
                scenario: "run",
                restarts_plan: &plan,
                restarts: &restarts,
                costs: &costs,
            },
        )?;
    }
    Ok(())
}
