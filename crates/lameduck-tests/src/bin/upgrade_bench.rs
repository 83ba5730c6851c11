//! Benchmark of zero-downtime upgrades: request latency during an upgrade
//! against steady state, and the time from `SIGHUP` to the new process
//! answering its first request.
//!
//! ```text
//! cargo build --release -p lameduck-tests --bins && target/release/upgrade-bench --upgrades 5
//! ```
//!
//! It starts `upgrade-fixture` (built alongside), loads it with keep-alive
//! and fresh-connection clients, measures a steady window, then upgrades it
//! `--upgrades` times. The upgrade window of a request is from the `SIGHUP`
//! to the old process's exit; latency figures are over the requests that
//! started in those windows. Failed requests are counted and must be zero.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Parser;
use lameduck_tests::load::{Config, Load};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, Parser)]
struct Args {
    /// Upgrades to run.
    #[arg(long, default_value_t = 5)]
    upgrades: u32,
    /// Steady-state window before the first upgrade.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    steady: Duration,
    /// Keep-alive clients.
    #[arg(long, default_value_t = 4)]
    keep_alive: usize,
    /// Fresh-connection clients.
    #[arg(long, default_value_t = 4)]
    fresh: usize,
    /// The fixture's drain delay.
    #[arg(long, default_value = "300ms")]
    drain_delay: String,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let fixture = std::env::current_exe()
        .unwrap()
        .with_file_name("upgrade-fixture");
    let mut child = Command::new(&fixture)
        .args(["--drain-delay", &args.drain_delay])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (build it: cargo build --release -p lameduck-tests)",
                fixture.display()
            )
        });
    let (tx, events) = mpsc::channel::<(u32, String)>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((pid, what)) = line.strip_prefix("event: ").and_then(|r| r.split_once(' '))
            {
                let _ = tx.send((pid.parse().unwrap_or(0), what.to_string()));
            }
        }
    });
    let wait = |pred: &mut dyn FnMut(u32, &str) -> bool| loop {
        let (p, e) = events
            .recv_timeout(Duration::from_secs(60))
            .expect("the fixture went quiet");
        if pred(p, &e) {
            return (p, e);
        }
    };
    let (_, listening) = wait(&mut |_, e| e.starts_with("listening http "));
    let addr = listening["listening http ".len()..].parse().unwrap();
    let mut current = child.id();
    wait(&mut |p, e| p == current && e == "phase running");

    let load = Load::start(
        addr,
        Config {
            keep_alive: args.keep_alive,
            fresh: args.fresh,
            record: true,
            ..Config::default()
        },
    );
    let steady_start = Instant::now();
    std::thread::sleep(args.steady);
    let steady_end = Instant::now();

    let mut windows = Vec::new();
    let mut to_serving = Vec::new();
    for _ in 0..args.upgrades {
        let t0 = Instant::now();
        kill(Pid::from_raw(current as i32), Signal::SIGHUP).expect("SIGHUP");
        let old = current;
        let (next, _) = wait(&mut |p, e| p != old && e == "phase running");
        assert!(
            load.wait_until(Duration::from_secs(60), |s| s.by_pid.contains_key(&next)),
            "the new process never served"
        );
        to_serving.push(t0.elapsed());
        wait(&mut |p, e| p == old && e.starts_with("exit code="));
        windows.push((t0, Instant::now()));
        current = next;
        // Let the new process settle before the next upgrade.
        std::thread::sleep(Duration::from_millis(500));
    }
    let stats = load.stop();
    let _ = kill(Pid::from_raw(current as i32), Signal::SIGTERM);
    let _ = child.wait();
    wait(&mut |p, e| p == current && e.starts_with("exit code="));

    let mut steady: Vec<Duration> = stats
        .latencies
        .iter()
        .filter(|(s, _)| *s >= steady_start && *s < steady_end)
        .map(|(_, d)| *d)
        .collect();
    let mut during: Vec<Duration> = stats
        .latencies
        .iter()
        .filter(|(s, _)| windows.iter().any(|(a, b)| s >= a && s < b))
        .map(|(_, d)| *d)
        .collect();
    steady.sort_unstable();
    during.sort_unstable();
    to_serving.sort_unstable();
    let (s50, s99) = (percentile(&steady, 0.5), percentile(&steady, 0.99));
    let (u50, u99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    let ratio = u99.as_secs_f64() / s99.as_secs_f64().max(1e-9);
    println!(
        "upgrade benchmark: {} keep-alive + {} fresh clients, {} upgrades",
        args.keep_alive, args.fresh, args.upgrades
    );
    println!(
        "  requests          {} ok, {} failed",
        stats.ok,
        stats.failures.len()
    );
    println!(
        "  steady   ({:>6} req)  p50 {:>9.3?}  p99 {:>9.3?}",
        steady.len(),
        s50,
        s99
    );
    println!(
        "  upgrade  ({:>6} req)  p50 {:>9.3?}  p99 {:>9.3?}",
        during.len(),
        u50,
        u99
    );
    println!("  p99 ratio (upgrade / steady)  {ratio:.2}  (target <= 2)");
    println!(
        "  SIGHUP -> new process serving  median {:.3?}  max {:.3?}",
        percentile(&to_serving, 0.5),
        to_serving.last().copied().unwrap_or_default()
    );
    for f in stats.failures.iter().take(10) {
        println!("  failure: {f}");
    }
    if stats.failures.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
