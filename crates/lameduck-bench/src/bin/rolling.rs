//! Scenario (b): rolling restarts of two instances behind real load
//! balancers (HAProxy, nginx, Caddy), under steady load, per kind of server,
//! with retries on another instance off and on.
//! Run it with `scripts/bench rolling`; see docs/benchmarks.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck_bench::balancer::{Balancer, CaddyPolicy, Retries};
use lameduck_bench::kind::{Binaries, ServerKind};
use lameduck_bench::results::{self, parse_duration};
use lameduck_bench::rolling::{self, Plan};
use serde::Serialize;

/// Rolling restarts behind HAProxy, nginx and Caddy, per kind of server.
#[derive(Debug, Parser)]
struct Args {
    /// Kinds of server, repeatable [default: lameduck and every peer]
    #[arg(long = "kind", value_enum)]
    kinds: Vec<ServerKind>,
    /// Load balancers, repeatable [default: all three]
    #[arg(long = "balancer", value_enum)]
    balancers: Vec<Balancer>,
    /// Retries on another instance, repeatable [default: off and on]
    #[arg(long = "retries", value_enum)]
    retries: Vec<Retries>,
    /// Rolling restarts per case (each restarts A, then B)
    #[arg(long, default_value_t = 5)]
    restarts: u32,
    /// Open-loop requests per second through the balancer
    #[arg(long, default_value_t = 1250)]
    rate: u32,
    /// Handler latency: the load is `GET /work?ms=N`
    #[arg(long, default_value_t = 50)]
    work_ms: u64,
    /// Steady-state run (no restarts) before each case, for the baseline latency
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    steady: Duration,
    /// Time slot of one rolling restart, at least (longer for servers that drain longer)
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    round: Duration,
    /// Load before the first restart and after the last
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    margin: Duration,
    /// lameduck's drain delay (and the `-matched` peers'): longer than a balancer takes to see it unready
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    drain_delay: Duration,
    /// How long an instance may take to exit before it is SIGKILLed
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace_period: Duration,
    /// Health-check interval (HAProxy `inter`, Caddy `health_interval`)
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
    /// Caddy's `lb_policy`. Its `round_robin` (Caddy 2.6) answers 503 "no
    /// upstreams available" now and then while one of the two instances is
    /// out and the other healthy, whatever the servers do
    #[arg(long, value_enum, default_value_t = CaddyPolicy::Random)]
    caddy_policy: CaddyPolicy,
    /// About a minute and a half, for CI: lameduck (SIGTERM and SIGHUP),
    /// axum-graceful and go-article-matched behind each balancer, retries
    /// off, one rolling restart at 200 requests/s (actix-web's and
    /// tokio-graceful-shutdown's behaviour is pinned by the crate's tests)
    #[arg(long)]
    smoke: bool,
    /// The HAProxy binary
    #[arg(long, value_name = "PATH", default_value = "haproxy")]
    haproxy_bin: PathBuf,
    /// The nginx binary
    #[arg(long, value_name = "PATH", default_value = "nginx")]
    nginx_bin: PathBuf,
    /// The Caddy binary
    #[arg(long, value_name = "PATH", default_value = "caddy")]
    caddy_bin: PathBuf,
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
            args.kinds = vec![
                ServerKind::Lameduck,
                ServerKind::LameduckSighup,
                ServerKind::Axum,
                ServerKind::GoArticleMatched,
            ];
        }
        if args.retries.is_empty() {
            args.retries = vec![Retries::Off];
        }
        args.restarts = 1;
        args.rate = args.rate.min(200);
        args.steady = Duration::from_secs(1);
        args.drain_delay = Duration::from_millis(500);
        args.round = Duration::from_secs(3);
        args.margin = Duration::from_millis(500);
    }
    if args.kinds.is_empty() {
        args.kinds = ServerKind::PEERS.to_vec();
    }
    if args.balancers.is_empty() {
        args.balancers = Balancer::ALL.to_vec();
    }
    if args.retries.is_empty() {
        args.retries = Retries::ALL.to_vec();
    }
    let bins = Binaries::new(args.bin_dir)?;
    bins.check(&args.kinds)?;
    rolling::check_cases(&args.balancers, &args.kinds)?;
    let programs = vec![
        (Balancer::Haproxy, args.haproxy_bin),
        (Balancer::Nginx, args.nginx_bin),
        (Balancer::Caddy, args.caddy_bin),
    ];
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
        caddy_policy: args.caddy_policy,
        programs,
        bins: Some(bins),
    };
    let mut versions = Vec::new();
    for balancer in &args.balancers {
        versions.push((
            balancer.name(),
            balancer.version(&plan.program(*balancer)).await?,
        ));
    }
    let names: Vec<&str> = versions.iter().map(|(_, v)| v.as_str()).collect();
    println!(
        "rolling restarts behind {}: 2 instances, {} rolling restarts (A then B, one per slot of at \
         least {}), GET /work?ms={} at {} requests/s through the balancer (open loop, keep-alive); \
         HAProxy and Caddy check GET /readyz every {} (HAProxy: fall {}); Caddy's lb_policy {}; lameduck's drain {}{}\n",
        names.join(", "),
        plan.restarts,
        humantime::format_duration(plan.round),
        plan.work_ms,
        plan.rate,
        humantime::format_duration(plan.check_interval),
        plan.check_fall,
        plan.caddy_policy.directive(),
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
    for (balancer, retries, kind) in rolling::cases(&args.balancers, &args.retries, &args.kinds) {
        eprintln!(
            "{}, retries {}, {}: {} rolling restarts …",
            balancer.name(),
            retries.name(),
            kind.name(),
            plan.restarts
        );
        let result = rolling::run_case(&plan, balancer, retries, kind).await?;
        anyhow::ensure!(
            result.requests > 0 && result.p50_us.is_some(),
            "{}, retries {}, {}: no successful request",
            balancer.name(),
            retries.name(),
            kind.name()
        );
        done.push(result);
    }
    for retries in &args.retries {
        println!("retries on another instance: {}\n", retries.name());
        println!("{}", rolling::table(&done, *retries));
    }
    println!(
        "errors: requests that failed as the client saw them (through the balancer). slow: ok responses\n\
         slower than 2 x steady p99. Latency: ok responses, from when each was due; max is the longest\n\
         stall. steady p99: the same load without restarts, just before. rolling restart: the median,\n\
         SIGTERM to A until the balancer has B back. lb retries / passed on: HAProxy's wretr / wredis,\n\
         nginx's requests tried on a second instance, over the rolling run."
    );
    if let Some(dir) = &args.out {
        #[derive(Serialize)]
        struct Summary<'a> {
            scenario: &'static str,
            balancers: Vec<(&'static str, &'a str)>,
            plan: &'a Plan,
            cases: &'a [rolling::CaseResult],
        }
        for case in &done {
            if let Some(report) = &case.report {
                let name = format!(
                    "rolling-{}-{}-{}",
                    case.balancer.name(),
                    case.retries.name(),
                    case.server.name()
                );
                results::write(dir, &format!("{name}.json"), &report.to_json())?;
                results::write(dir, &format!("{name}.html"), &report.to_html())?;
            }
        }
        results::write_json(
            dir,
            "rolling-summary.json",
            &Summary {
                scenario: "rolling",
                balancers: versions.iter().map(|(n, v)| (*n, v.as_str())).collect(),
                plan: &plan,
                cases: &done,
            },
        )?;
        println!("\nreports in {}", dir.display());
    }
    Ok(())
}
