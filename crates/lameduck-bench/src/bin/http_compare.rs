//! Scenario (c), `scripts/bench http`: lameduck's HTTP server against bare
//! hyper-util, and lameduck + an axum `Router` against `axum::serve`,
//! loaded by wrk (HTTP/1.1) and h2load (HTTP/2) in interleaved rounds; the
//! same over TLS against hyper-util behind tokio-rustls, and a unary gRPC
//! service under lameduck against tonic's own server; then instructions
//! per request under callgrind, and memory per idle connection (the
//! plain pairs). See `lameduck_bench::hotpath` and docs/benchmarks.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lameduck_bench::hotpath::{self, Proto, Server};
use lameduck_bench::table::Table;

/// Compare lameduck's HTTP hot path with hyper-util and axum::serve.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Where the release binaries are (http-server)
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Where to write the summary (JSON) and callgrind's files
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Rounds per pair and protocol (each round loads both servers once)
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Seconds of load per run
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Keep-alive connections of the load
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests counted under callgrind, per server and protocol (0: skip)
    #[arg(long, default_value_t = 20_000)]
    callgrind_requests: u64,
    /// Idle connections for the memory figure
    #[arg(long, default_value_t = 2_000)]
    idle_connections: usize,
    /// A few seconds in all, for CI: checks that everything runs, not what
    /// it measures
    #[arg(long)]
    smoke: bool,
    /// Only the pairs whose measured server is this kind (lameduck,
    /// lameduck-axum, lameduck-metrics, lameduck-tls, lameduck-grpc);
    /// repeatable; all when not given
    #[arg(long, value_name = "KIND")]
    pair: Vec<String>,
}

/// The pairs: (what is measured, its baseline).
const PAIRS: [(&str, &str); 3] = [
    ("lameduck", "bare"),
    ("lameduck-axum", "axum-serve"),
    // What the lifecycle metrics cost a request.
    ("lameduck-metrics", "lameduck"),
];
const PROTOS: [Proto; 2] = [Proto::H1, Proto::H2];

/// The pairs measured without the memory figure, with their protocols:
/// lameduck against a bare server that announces the same `Keep-Alive`
/// (HTTP/1.1 only: HTTP/2 has no such header), so that what the
/// announcement costs in hyper itself is on both sides; over TLS (one
/// certificate, made for the run); and gRPC.
const MORE_PAIRS: [(&str, &str, &[Proto]); 3] = [
    ("lameduck", "bare-keep-alive", &[Proto::H1]),
    ("lameduck-tls", "bare-tls", &[Proto::H1Tls, Proto::H2Tls]),
    ("lameduck-grpc", "tonic", &[Proto::GrpcUnary]),
];

fn main() -> ExitCode {
    let mut args = <Args as clap::Parser>::parse();
    if args.smoke {
        args.rounds = 1;
        args.seconds = 1;
        args.callgrind_requests = args.callgrind_requests.min(2_000);
        args.idle_connections = args.idle_connections.min(200);
    }
    lameduck_bench::exit_code(run(&args))
}

/// A self-signed certificate for 127.0.0.1, written to `dir`: the
/// `--tls-cert` and `--tls-key` arguments of every server.
fn certificate(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, made.cert.pem())?;
    std::fs::write(&key, made.key_pair.serialize_pem())?;
    Ok(vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ])
}

fn run(args: &Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    // Server on one core, load on the other, when there are two.
    let (server_cpu, load_cpu) = if cpus >= 2 {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let mut summary = serde_json::Map::new();

    let mut table = Table::new(&[
        "<pair",
        "<protocol",
        "throughput ratio min/median/max",
        "CPU per request ratio min/median/max",
        "requests/s (measured)",
    ]);
    let tls = certificate(&args.out)?;
    let chosen = |measured: &str| args.pair.is_empty() || args.pair.iter().any(|p| p == measured);
    let loaded: Vec<(&str, &str, &[Proto])> = PAIRS
        .iter()
        .map(|&(a, b)| (a, b, &PROTOS[..]))
        .chain(MORE_PAIRS)
        .filter(|(measured, ..)| chosen(measured))
        .collect();
    if let Some(unknown) = args.pair.iter().find(|p| !loaded.iter().any(|l| l.0 == *p)) {
        anyhow::bail!("--pair {unknown}: no pair measures that kind");
    }
    for &(measured, baseline, protos) in &loaded {
        let a = Server::start_with(&args.bin_dir, measured, server_cpu, &[], &tls)?;
        let b = Server::start_with(&args.bin_dir, baseline, server_cpu, &[], &tls)?;
        for &proto in protos {
            let (mut rps, mut cpu) = (Vec::new(), Vec::new());
            let mut last = 0.0;
            for round in 0..args.rounds {
                // A B, then B A: each side goes first as often.
                let order = if round % 2 == 0 { [&a, &b] } else { [&b, &a] };
                let mut runs = order.map(|s| {
                    hotpath::load(
                        s,
                        proto,
                        Duration::from_secs(args.seconds),
                        args.connections,
                        load_cpu,
                    )
                });
                if round % 2 == 1 {
                    runs.reverse();
                }
                let [ra, rb] = runs;
                let (ra, rb) = (ra?, rb?);
                rps.push(ra.rps / rb.rps);
                cpu.push(ra.cpu_per_request.as_secs_f64() / rb.cpu_per_request.as_secs_f64());
                last = ra.rps;
            }
            let (t, c) = (hotpath::spread(rps), hotpath::spread(cpu));
            table.row(vec![
                format!("{measured} / {baseline}"),
                proto.name().into(),
                format!("{:.3} / {:.3} / {:.3}", t.0, t.1, t.2),
                format!("{:.3} / {:.3} / {:.3}", c.0, c.1, c.2),
                format!("{last:.0}"),
            ]);
            summary.insert(
                format!("{measured}/{baseline} {}", proto.name()),
                serde_json::json!({
                    "throughput_ratio": {"min": t.0, "median": t.1, "max": t.2},
                    "cpu_per_request_ratio": {"min": c.0, "median": c.1, "max": c.2},
                    "rounds": args.rounds,
                }),
            );
        }
    }
    println!(
        "(c) hot path, {} rounds of {}s per pair and protocol, {} keep-alive connections; ratios are measured / baseline\n",
        args.rounds, args.seconds, args.connections
    );
    println!("{table}");

    if args.callgrind_requests > 0 {
        let mut table = Table::new(&["<pair", "<protocol", "instructions per request", "ratio"]);
        for &(measured, baseline, protos) in &loaded {
            for &proto in protos {
                let count = |kind| {
                    hotpath::instructions_per_request(
                        &args.bin_dir,
                        kind,
                        proto,
                        args.callgrind_requests,
                        &args.out,
                        &tls,
                    )
                };
                let (a, b) = (count(measured)?, count(baseline)?);
                table.row(vec![
                    format!("{measured} / {baseline}"),
                    proto.version().into(),
                    format!("{a:.0} / {b:.0}"),
                    format!("{:.3}", a / b),
                ]);
                summary.insert(
                    format!("{measured}/{baseline} {} instructions", proto.name()),
                    serde_json::json!({"measured": a, "baseline": b, "ratio": a / b}),
                );
            }
        }
        println!(
            "instructions per request under callgrind ({} requests from h2load, 64 connections; no noise)\n",
            args.callgrind_requests
        );
        println!("{table}");
    }

    let plain: Vec<_> = PAIRS.into_iter().filter(|(m, _)| chosen(m)).collect();
    if !plain.is_empty() {
        let mut table = Table::new(&[
            "<server",
            "bytes per idle connection",
            "ratio to its baseline",
        ]);
        for (measured, baseline) in plain {
            let a = hotpath::memory_per_connection(
                &Server::start(&args.bin_dir, measured, None, &[])?,
                args.idle_connections,
            )?;
            let b = hotpath::memory_per_connection(
                &Server::start(&args.bin_dir, baseline, None, &[])?,
                args.idle_connections,
            )?;
            table.row(vec![
                measured.into(),
                format!("{a:.0}"),
                format!("{:.3}", a / b),
            ]);
            table.row(vec![baseline.into(), format!("{b:.0}"), String::new()]);
            summary.insert(
                format!("{measured}/{baseline} memory per idle connection"),
                serde_json::json!({"measured": a, "baseline": b, "ratio": a / b}),
            );
        }
        println!(
            "memory per idle keep-alive connection ({} connections, resident set)\n",
            args.idle_connections
        );
        println!("{table}");
    }
    if args.smoke {
        println!("(smoke run: the figures show that each part ran, not what it costs)");
    }
    std::fs::write(
        args.out.join("http-summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(())
}
