//! Servers that misbehave on purpose, to show that the drill catches each
//! fault (feature `testing`).
//!
//! Every [`Mode`] serves `/readyz` (200, or 503 once draining), `/status/N`
//! (status N at once), and every other path with 200 and a 16-byte body sent
//! in two halves, `delay` apart (so that a process dying mid-response cuts a
//! body short). They differ in
//! what they do on `SIGTERM`:
//!
//! | mode | on SIGTERM | the drill should say |
//! |---|---|---|
//! | `graceful` | readiness 503, keep serving (`Connection: close`, GOAWAY) for `drain`, close the listener, finish in-flight requests, exit 0 | pass |
//! | `exit-at-once` | exit 0 at once | requests failed before the listener closed |
//! | `ignore-term` | nothing | did not exit within the grace period |
//! | `close-first` | close the listener, *then* turn readiness 503 after `drain`, exit 0 | readiness did not flip before the listener closed |
//! | `reset-keepalive` | readiness 503, reset every open connection, serve new ones for `drain`, exit 0 | requests reset after the signal |
//!
//! On `SIGHUP` a server dies (`hup=die`, the default: no handler), reloads
//! in place and starts no new process (`hup=reload`), or restarts without a
//! gap (`hup=handoff`): it starts a copy of itself on the same listening
//! socket, waits until the copy is ready, then drains like `graceful` and
//! exits 0. `hup=handoff-unready` restarts the same way but first turns its
//! readiness 503 until a probe has seen it (a readiness dip). With
//! `hup=workers` the process is a supervisor that keeps its PID: it holds
//! the listening socket, serves through one worker process, and on `SIGHUP`
//! starts a new worker and retires the old one (which stops accepting at
//! once, asks its clients to close, finishes what it has, and exits; its
//! readiness stays 200, since the service is not leaving).
//!
//! A server is described by a spec such as
//! `mode=graceful,port=8080,delay_ms=20,drain_ms=300,hup=handoff` and run by
//! [`run`], which blocks and returns the exit code.

mod handoff;
mod server;
mod supervisor;

use std::str::FromStr;
use std::time::Duration;

/// How a test server reacts to `SIGTERM`; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Drains properly.
    Graceful,
    /// Exits with 0 the moment it gets `SIGTERM`.
    ExitAtOnce,
    /// Ignores `SIGTERM`.
    IgnoreTerm,
    /// Closes its listener before it turns unready.
    CloseFirst,
    /// Resets its keep-alive connections instead of asking them to close.
    ResetKeepalive,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "graceful" => Mode::Graceful,
            "exit-at-once" => Mode::ExitAtOnce,
            "ignore-term" => Mode::IgnoreTerm,
            "close-first" => Mode::CloseFirst,
            "reset-keepalive" => Mode::ResetKeepalive,
            other => return Err(format!("unknown test server mode {other:?}")),
        })
    }
}

/// What a test server does on `SIGHUP`; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hup {
    /// No handler: the signal kills it.
    Die,
    /// Logs it and goes on: no new process.
    Reload,
    /// Hands its listening socket to a new copy of itself, drains, exits 0.
    Handoff,
    /// As `Handoff`, but readiness answers 503 from the signal until a
    /// readiness probe has heard it.
    HandoffUnready,
    /// A supervisor that replaces its worker process and keeps its PID.
    Workers,
}

impl FromStr for Hup {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "die" => Hup::Die,
            "reload" => Hup::Reload,
            "handoff" => Hup::Handoff,
            "handoff-unready" => Hup::HandoffUnready,
            "workers" => Hup::Workers,
            other => return Err(format!("unknown SIGHUP behaviour {other:?}")),
        })
    }
}

/// A test server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetConfig {
    /// What it does on `SIGTERM`.
    pub mode: Mode,
    /// The port to listen on, on 127.0.0.1 (0 for any; the address is
    /// printed on stderr).
    pub port: u16,
    /// How long a response takes, half before the headers and half between
    /// the two halves of the body.
    pub delay: Duration,
    /// How long the draining (or the misbehaviour) lasts.
    pub drain: Duration,
    /// What it does on `SIGHUP`.
    pub hup: Hup,
}

impl TargetConfig {
    /// A server in `mode` on `port`, 20 ms per response, 300 ms of draining.
    pub fn new(mode: Mode, port: u16) -> Self {
        TargetConfig {
            mode,
            port,
            delay: Duration::from_millis(20),
            drain: Duration::from_millis(300),
            hup: Hup::Die,
        }
    }

    /// Parses `mode=NAME,port=N,delay_ms=N,drain_ms=N,hup=die|reload|handoff|handoff-unready|workers`
    /// (only `mode` required).
    ///
    /// # Errors
    ///
    /// On an unknown key, mode or number.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut config = TargetConfig::new(Mode::Graceful, 0);
        let mut mode = None;
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}={value:?} is not a number"))
            };
            match key {
                "mode" => mode = Some(value.parse()?),
                "port" => {
                    config.port =
                        u16::try_from(number()?).map_err(|_| format!("port {value} too large"))?
                }
                "delay_ms" => config.delay = Duration::from_millis(number()?),
                "drain_ms" => config.drain = Duration::from_millis(number()?),
                "hup" => config.hup = value.parse()?,
                other => return Err(format!("unknown key {other:?}")),
            }
        }
        config.mode = mode.ok_or("the spec needs mode=…")?;
        Ok(config)
    }
}

/// Runs the server until its mode says to exit; returns the exit code.
///
/// # Panics
///
/// When the runtime cannot be built or the port cannot be bound.
pub fn run(config: TargetConfig) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if config.hup == Hup::Workers && !supervisor::is_worker() {
        return runtime.block_on(supervisor::supervise(config));
    }
    runtime.block_on(server::serve(config, None))
}

/// Starts the server on a thread of its own, in this process, and returns
/// the address it listens on (with port 0, a free port). It runs until the
/// process ends; signals reach it as they reach the whole process, so use
/// [`run`] in a child process to test signals.
///
/// # Panics
///
/// When the thread or the runtime cannot be started or the port cannot be
/// bound.
pub fn start(config: TargetConfig) -> std::net::SocketAddr {
    let (bound, addr) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lameduck-drill test server".into())
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(server::serve(config, Some(bound)))
        })
        .expect("a thread for the test server");
    addr.recv().expect("the test server binds its port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let config =
            TargetConfig::parse("mode=close-first,port=8080,delay_ms=5,drain_ms=100").unwrap();
        assert_eq!(config.mode, Mode::CloseFirst);
        assert_eq!(config.port, 8080);
        assert_eq!(config.delay, Duration::from_millis(5));
        assert_eq!(config.drain, Duration::from_millis(100));
        assert!(TargetConfig::parse("port=1").is_err());
        assert!(TargetConfig::parse("mode=polite").is_err());
    }
}
