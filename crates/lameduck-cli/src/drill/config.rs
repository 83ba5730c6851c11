//! From raw flags to a validated drill configuration.

use std::time::Duration;

use anyhow::{Context as _, bail};
use lameduck_drill::{
    ConnectionMode, DrillConfig, Expectation, GrpcCall, HttpVersion, Load, ServerSpec, SignalPlan,
    Trust,
};

use super::Flags as Args;

/// How long the load runs when `--duration` is not given (and not `--demo`).
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// `--connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Connections {
    /// Reuse connections
    Keepalive,
    /// A new connection per request
    Fresh,
    /// Every other request fresh
    Mixed,
}

/// `--http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Http {
    /// HTTP/1.1
    #[value(name = "1.1", alias = "1")]
    V1,
    /// HTTP/2 with prior knowledge (h2c)
    #[value(name = "2")]
    V2,
}

/// `--expect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// Drain and exit 0 within the grace period; nothing that started before
    /// the listener closed may fail
    Stop,
    /// Restart without a gap: each signal brings in a new process, readiness
    /// stays 2xx, no request may fail
    Restart,
}

/// Checks the flags and builds the drill's configuration.
pub fn build(args: &Args) -> anyhow::Result<DrillConfig> {
    let url = args.url.as_deref().context("--url is required")?;
    let mut config = DrillConfig::new(url)?;
    if let Some(ready) = &args.ready_url {
        config.ready_url = Some(
            ready
                .parse()
                .with_context(|| format!("--ready-url {ready:?} is not a URL"))?,
        );
    }
    config.tls = match (&args.cacert, args.insecure) {
        (Some(path), _) => Trust::CaFile(path.clone()),
        (None, true) => Trust::Insecure,
        (None, false) => Trust::Unset,
    };
    config.ready_timeout = args.ready_timeout;
    config.ready_interval = args.ready_interval;
    config.load = match (args.concurrency, args.rate) {
        (_, Some(per_second)) => Load::Rate {
            per_second,
            max_in_flight: args.max_in_flight,
        },
        (Some(n), None) => Load::Concurrency(n),
        (None, None) => Load::Concurrency(8),
    };
    config.connections = match args.connections {
        Connections::Keepalive => ConnectionMode::Keepalive,
        Connections::Fresh => ConnectionMode::Fresh,
        Connections::Mixed => ConnectionMode::Mixed,
    };
    config.grpc = grpc_call(args)?;
    config.http = match (args.http, config.grpc.is_some()) {
        (Some(Http::V1), _) | (None, false) => HttpVersion::Http1,
        (Some(Http::V2), _) | (None, true) => HttpVersion::Http2,
    };
    if let Some(method) = &args.method {
        config.request.method = method
            .parse()
            .with_context(|| format!("--method {method:?} is not an HTTP method"))?;
    }
    for header in &args.headers {
        config.request.add_header_line(header)?;
    }
    if let Some(body) = &args.body {
        config.request.body = body.clone().into();
    }
    if let Some(path) = &args.body_file {
        let body = std::fs::read(path)
            .with_context(|| format!("cannot read --body-file {}", path.display()))?;
        config.request.body = body.into();
    }
    config.duration = args.duration.unwrap_or(DEFAULT_DURATION);
    config.timeout = args.timeout;
    config.grace_period = args.grace_period;
    config.pid_file = args.pid_file.clone();
    config.flight_record = args.flight_record.clone();
    config.flight_record_required = args.require_flight_record;
    config.server = match (&args.pid, args.command.split_first()) {
        (Some(pid), _) => ServerSpec::Attach(*pid),
        (None, Some((program, rest))) => ServerSpec::Spawn {
            program: program.clone(),
            args: rest.to_vec(),
            log: args.server_log.clone(),
        },
        (None, None) => ServerSpec::Unknown,
    };
    config.signal = signal_plan(args, &config)?;
    config.validate()?;
    Ok(config)
}

/// `--grpc` with its message, or `--grpc-health`.
fn grpc_call(args: &Args) -> anyhow::Result<Option<GrpcCall>> {
    if let Some(service) = &args.grpc_health {
        return Ok(Some(GrpcCall::health_check(service)));
    }
    let Some(method) = &args.grpc else {
        return Ok(None);
    };
    let message = if let Some(path) = &args.grpc_message_file {
        std::fs::read(path)
            .with_context(|| format!("cannot read --grpc-message-file {}", path.display()))?
    } else if let Some(hex) = &args.grpc_message_hex {
        decode_hex(hex).with_context(|| format!("--grpc-message-hex {hex:?}"))?
    } else if let Some(text) = &args.grpc_message_base64 {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .with_context(|| format!("--grpc-message-base64 {text:?} is not base64"))?
    } else {
        Vec::new()
    };
    Ok(Some(GrpcCall::new(method, message)?))
}

/// Hex digits (either case, whitespace between bytes allowed) to bytes.
fn decode_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("an odd number of hex digits");
    }
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).unwrap_or("?");
            u8::from_str_radix(text, 16).with_context(|| format!("{text:?} is not a hex byte"))
        })
        .collect()
}

fn signal_plan(args: &Args, config: &DrillConfig) -> anyhow::Result<Option<SignalPlan>> {
    let server_known = !matches!(config.server, ServerSpec::Unknown) || config.pid_file.is_some();
    let name = match args.signal.as_deref() {
        Some(name) => name,
        None if server_known => "TERM",
        None => "none",
    };
    if name.eq_ignore_ascii_case("none") {
        if args.at.is_some() || args.every.is_some() || args.repeat != 1 || args.expect.is_some() {
            bail!("--at, --every, --repeat and --expect need a --signal");
        }
        return Ok(None);
    }
    let signal = crate::signal::parse(name, &["TERM", "HUP", "INT", "QUIT", "USR1", "USR2"], true)
        .map_err(|err| anyhow::anyhow!("--signal {name}: {err}"))?;
    let at = args.at.or(args.default_at).unwrap_or(config.duration / 3);
    let mut plan = SignalPlan::once(signal, at);
    plan.repeat = args.repeat;
    plan.every = args.every.unwrap_or(Duration::ZERO);
    if let Some(expect) = args.expect {
        plan.expect = match expect {
            Expect::Stop => Expectation::Stop,
            Expect::Restart => Expectation::Restart,
        };
    }
    // The server the drill started, signalled itself (no PID file naming
    // a process something else restarts): once stopped, nothing is left
    // for the next signal, and the drill could only fail.
    if plan.repeat > 1
        && plan.expect == Expectation::Stop
        && matches!(config.server, ServerSpec::Spawn { .. })
        && config.pid_file.is_none()
    {
        bail!(
            "--repeat {}: {} is expected to stop the server the drill starts, and after the \
             first nothing is left to signal; for a restart drill give --signal HUP (or \
             --expect restart), or drop --repeat",
            plan.repeat,
            signal
        );
    }
    Ok(Some(plan))
}
