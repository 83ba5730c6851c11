//! `lameduck drill`: load a server, signal it, account for every request.

mod config;
mod demo;
mod output;
mod progress;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use lameduck_drill::Drill;

use crate::duration::{more_than_zero, parse_duration};

/// Prove under load that a server shuts down and restarts without failing a request.
///
/// Loads URL, sends a signal at a chosen moment, classifies every request
/// (ok, 503 after the signal, other 5xx, refused, reset, incomplete, timeout)
/// by when it started relative to the signal and to the listener closing,
/// times the readiness flip, the listener close and the exit, and gives a
/// verdict: exit code 0 pass, 1 fail, 2 usage or setup error.
#[derive(Debug, clap::Args)]
#[command(after_help = concat!("\
Examples:
  lameduck drill --demo
  lameduck drill --demo --flight-record /tmp/demo-flight.json --html drill.html
  lameduck drill --url http://127.0.0.1:8080/ \\
      --ready-url http://127.0.0.1:8080/readyz -- ./server
  lameduck drill --url http://127.0.0.1:8080/ \\
      --pid 4242 --signal TERM --at 3s --duration 10s
  lameduck drill --url https://localhost:8443/ --cacert ca.pem --http 2 \\
      -- ./server
  lameduck drill --url http://127.0.0.1:50051/ --grpc-health -- ./grpc-server
  lameduck drill --url http://127.0.0.1:50051/ \\
      --grpc pkg.Echo/Say --grpc-message-hex 0a026869 -- ./grpc-server
  lameduck drill --url http://127.0.0.1:8080/ \\
      --signal HUP --repeat 3 --every 5s --duration 20s -- ./server
  lameduck drill --url http://127.0.0.1:8080/ \\
      --signal none --rate 500 --json - -- ./server

Exit status:
  0   the verdict passed
  1   the verdict failed: every failed condition is named in the output
  2   usage or setup error: a bad flag or value, the server did not start or
      was never ready, a host did not resolve, Ctrl+C

", crate::duration::duration_syntax!()))]
pub struct Args {
    // Boxed: the flags are many, and `main`'s command enum holds one of these.
    #[command(flatten)]
    flags: Box<Flags>,
}

/// The raw flags, before validation.
#[derive(Debug, clap::Args)]
pub struct Flags {
    /// Where the load goes (http://, or https:// with --cacert or --insecure)
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// https://: trust only the CA certificates in this PEM file; the
    /// server's certificate must name the URL's host
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    cacert: Option<PathBuf>,

    /// https://: accept any certificate for any host (a self-signed one)
    #[arg(short = 'k', long)]
    insecure: bool,

    /// Drill the built-in `lameduck demo`: spawn it on free loopback ports
    /// with a fixed 1 s drain, load it (keep-alive connections, unless
    /// --connections says otherwise), SIGTERM it at 2 s (--at) of 5 s of
    /// load (--duration; given alone, the signal comes at a third of it)
    #[arg(long, conflicts_with_all = ["url", "pid", "command"])]
    demo: bool,

    /// Attach to this running server instead of spawning `-- CMD`
    // 0 is no process: kill(0, …) would signal the drill's own group.
    #[arg(long, value_name = "PID", conflicts_with = "command",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(i32::MAX)))]
    pid: Option<u32>,

    /// Read the PID to signal from this file, afresh at every signal
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,

    /// Readiness endpoint: waited for before the load, polled during it, and
    /// required to turn non-2xx before the listener closes [default: wait for
    /// --url to answer 2xx, and do not judge readiness]
    #[arg(long, value_name = "URL")]
    ready_url: Option<String>,

    /// How long to wait for the server to become ready
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = more_than_zero(
            "would give the server no time to become ready",
            "30s"
        ),
        allow_hyphen_values = true
    )]
    ready_timeout: Duration,

    /// How often to poll the readiness URL
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "20ms",
        value_parser = more_than_zero(
            "would poll the readiness URL back to back, spinning a CPU",
            "20ms"
        ),
        allow_hyphen_values = true
    )]
    ready_interval: Duration,

    /// Closed-loop load: this many workers, each sending its next request when
    /// the last one ends [default: 8]
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    concurrency: Option<u32>,

    /// Open-loop load: this many requests per second whatever the server does
    /// (a stall shows up as latency)
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<u32>,

    /// With --rate, at most this many requests in flight
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "rate")]
    max_in_flight: u32,

    /// Reuse connections, open one per request, or alternate
    #[arg(long, value_enum, default_value_t = config::Connections::Keepalive)]
    connections: config::Connections,

    /// HTTP version of the load (over http://, 2 is cleartext with prior
    /// knowledge; over https:// the version is the one offered by ALPN)
    /// [default: 1.1; 2 with --grpc]
    #[arg(long, value_enum)]
    http: Option<config::Http>,

    /// Unary gRPC calls of this method (package.Service/Method) instead of
    /// plain requests, each a POST to /package.Service/Method on the URL's
    /// authority (the URL's path is not sent; the report names the URL
    /// called), sorted by its grpc-status; HTTP/2 only
    #[arg(long, value_name = "SERVICE/METHOD", conflicts_with_all = ["body", "body_file", "method"])]
    grpc: Option<String>,

    /// gRPC calls of grpc.health.v1.Health/Check, for SERVICE [default: the
    /// server as a whole]
    #[arg(long, value_name = "SERVICE", num_args = 0..=1, default_missing_value = "",
          conflicts_with_all = ["grpc", "body", "body_file", "method"])]
    grpc_health: Option<String>,

    /// The --grpc request message (encoded protobuf), read from a file
    /// [default: empty]
    #[arg(long, value_name = "PATH", requires = "grpc", conflicts_with_all = ["grpc_message_hex", "grpc_message_base64"])]
    grpc_message_file: Option<PathBuf>,

    /// The --grpc request message (encoded protobuf), as hex digits
    #[arg(
        long,
        value_name = "HEX",
        requires = "grpc",
        conflicts_with = "grpc_message_base64"
    )]
    grpc_message_hex: Option<String>,

    /// The --grpc request message (encoded protobuf), as standard base64
    #[arg(long, value_name = "BASE64", requires = "grpc")]
    grpc_message_base64: Option<String>,

    /// Request method
    #[arg(short = 'X', long, value_name = "METHOD")]
    method: Option<String>,

    /// Extra request header (repeatable)
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,

    /// Request body
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file")]
    body: Option<String>,

    /// Request body, read from a file
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,

    /// How long the load runs (at most 1h) [default: 10s; 5s with --demo]
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = more_than_zero(
            "would run no load",
            "10s"
        ),
        allow_hyphen_values = true
    )]
    duration: Option<Duration>,

    /// Per-request timeout, connect included
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        value_parser = more_than_zero(
            "would fail every request before it could be sent",
            "5s"
        ),
        allow_hyphen_values = true
    )]
    timeout: Duration,

    /// Signal to send (TERM, INT, HUP, QUIT, USR1, USR2, a number), or `none`
    /// for a plain load test [default: TERM when the server is known, else none]
    #[arg(long, value_name = "SIGNAL")]
    signal: Option<String>,

    /// When to send the signal, counted from the start of the load
    /// [default: a third of --duration]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    at: Option<Duration>,

    /// How many signals to send in all (each to the process serving then)
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: u32,

    /// Time between two signals, with --repeat above 1 (at least: a signal sent late
    /// on a busy machine moves the next ones, which stay this far apart)
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = more_than_zero("would send every signal at once", "1s"),
        allow_hyphen_values = true
    )]
    every: Option<Duration>,

    /// How to judge: `stop` (drain and exit) or `restart` (each signal brings
    /// in a new process, readiness stays 2xx, no request may fail)
    /// [default: restart for HUP, USR1, USR2; stop otherwise]
    #[arg(long, value_enum)]
    expect: Option<config::Expect>,

    /// How long the signalled server may take to exit
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = more_than_zero(
            "would fail every signalled server, as none exits in no time",
            "30s"
        ),
        allow_hyphen_values = true
    )]
    grace_period: Duration,

    /// Write the JSON report (schema lameduck.drill/v1) to PATH, or to stdout with `-`
    #[arg(long, value_name = "PATH|-")]
    json: Option<String>,

    /// Write the HTML report (one self-contained page) to PATH
    #[arg(long, value_name = "PATH")]
    html: Option<PathBuf>,

    /// The target's flight record (written by a lameduck-based server, e.g.
    /// `lameduck demo --flight-record PATH`; with --demo, the demo is told to
    /// write it): read once the drill is over (waiting up to 5 s for it), its
    /// phases and stuck work put on the drill's timeline in the summary, the
    /// JSON and the HTML. `{pid}` becomes the signalled process's id. A
    /// missing or invalid record is a warning, unless --require-flight-record
    #[arg(long, value_name = "PATH")]
    flight_record: Option<PathBuf>,

    /// Fail the drill (exit 1) when the --flight-record cannot be read
    #[arg(long, requires = "flight_record")]
    require_flight_record: bool,

    /// Send the spawned server's stdout and stderr to PATH [default: this stderr]
    #[arg(long, value_name = "PATH")]
    server_log: Option<PathBuf>,

    /// No progress bar, even on a terminal
    #[arg(long)]
    no_progress: bool,

    /// No human summary (the verdict is still in the exit code and the reports)
    #[arg(short, long)]
    quiet: bool,

    /// The server to spawn, after `--`
    #[arg(last = true, value_name = "CMD")]
    command: Vec<OsString>,

    /// The signal time when --at is not given, if not a third of the
    /// duration (the demo's own schedule). Kept apart from `at` so that a
    /// default is never taken for a flag the user gave.
    #[arg(skip)]
    default_at: Option<Duration>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut args = args.flags;
    if args.url.is_none() && !args.demo {
        no_target().exit();
    }
    if args.demo {
        demo::apply(&mut args)?;
    }
    let drill_config = config::build(&args)?;
    let outputs = output::Outputs::from_args(&args)?;
    let drill = Drill::new(drill_config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let bar = progress::Bar::start(drill.progress(), !args.no_progress);
        let result = tokio::select! {
            result = drill.run() => result.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the drill was abandoned")),
        };
        bar.finish().await;
        result
    })?;
    outputs.write(&report)?;
    Ok(if report.verdict.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The usage error of a drill told neither what to drill nor to drill the
/// demo: clap's own shape (and exit code 2), naming both ways, which clap's
/// "required unless present" would not.
fn no_target() -> clap::Error {
    use clap::CommandFactory;
    let mut cli = crate::Cli::command();
    cli.build();
    let drill = cli
        .find_subcommand_mut("drill")
        .expect("drill is a subcommand");
    drill.error(
        clap::error::ErrorKind::MissingRequiredArgument,
        "nothing to drill: give --url URL (the server to load), or --demo to drill \
         the built-in demo server",
    )
}
