//! The load balancers the rolling restarts run behind — HAProxy, nginx and
//! Caddy, each from Debian's packages — and what they share: the pool of
//! two instances, whether failed requests are retried on another instance,
//! and a running balancer that is started with a generated configuration on
//! loopback in a scratch directory and stopped by PID.
//!
//! They learn in different ways that an instance is leaving: HAProxy and
//! Caddy check `/readyz` actively; nginx (open source) has no active checks
//! and only notices failures passively, on live requests.

mod caddy;
mod nginx;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use tokio::process::Command;

pub use caddy::Caddy;
pub use nginx::Nginx;
pub(crate) use nginx::render as nginx_render;

use crate::haproxy::{self, Haproxy};

/// A load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balancer {
    /// HAProxy: `option httpchk GET /readyz`, checked every interval.
    Haproxy,
    /// nginx: an `upstream` with `max_fails=1 fail_timeout=1s`, keep-alive to
    /// the instances, no active checks (those are nginx Plus only).
    Nginx,
    /// Caddy: `reverse_proxy` with active health checks on `/readyz`.
    Caddy,
}

impl Balancer {
    /// Every balancer, in table order.
    pub const ALL: [Balancer; 3] = [Balancer::Haproxy, Balancer::Nginx, Balancer::Caddy];

    /// The name in tables and JSON, and the command it runs by default.
    pub fn name(self) -> &'static str {
        match self {
            Balancer::Haproxy => "haproxy",
            Balancer::Nginx => "nginx",
            Balancer::Caddy => "caddy",
        }
    }

    /// Its version, as `program` reports it (`HAProxy 2.6.12-1+deb12u2`,
    /// `nginx 1.22.1`, `Caddy v2.6.2`).
    ///
    /// # Errors
    ///
    /// When `program` cannot be run: the message says how to install it.
    pub async fn version(self, program: &Path) -> anyhow::Result<String> {
        if self == Balancer::Haproxy {
            return Haproxy::version(program).await;
        }
        let flag = if self == Balancer::Nginx {
            "-v"
        } else {
            "version"
        };
        let out = Command::new(program)
            .arg(flag)
            .output()
            .await
            .with_context(|| {
                format!(
                    "running {} {flag}: install {} (`apt-get install {}`; `scripts/bench rolling` does it)",
                    program.display(),
                    self.name(),
                    self.name()
                )
            })?;
        // nginx: "nginx version: nginx/1.22.1" on stderr; caddy: "v2.6.2 h1:…".
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text.lines().next().unwrap_or_default().trim();
        Ok(match self {
            Balancer::Nginx => line.replace("nginx version: nginx/", "nginx "),
            _ => format!("Caddy {}", line.split(' ').next().unwrap_or(line)),
        })
    }

    /// Starts `program` in front of `pool`, with its files in `dir`; returns
    /// once it accepts connections.
    ///
    /// # Errors
    ///
    /// When the configuration is refused or the balancer does not start.
    pub async fn start(self, program: &Path, pool: &Pool, dir: &Path) -> anyhow::Result<Running> {
        Ok(match self {
            Balancer::Haproxy => Running::Haproxy(Haproxy::start(program, pool, dir).await?),
            Balancer::Nginx => Running::Nginx(Nginx::start(program, pool, dir).await?),
            Balancer::Caddy => Running::Caddy(Caddy::start(program, pool, dir).await?),
        })
    }
}

/// Whether a request that failed on one instance is tried on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retries {
    /// Never on another instance. HAProxy: Debian's stock config (neither
    /// `retries` nor `option redispatch`: a refused connect is retried on the
    /// *same* server after a turn-around of min(`timeout connect`, 1 s)).
    /// nginx: `proxy_next_upstream off`. Caddy: its default (no
    /// `lb_try_duration`).
    Off,
    /// On another instance, as each one's documentation recommends for
    /// idempotent requests. HAProxy: `retries 3`, `option redispatch`,
    /// `retry-on conn-failure empty-response`. nginx: `proxy_next_upstream
    /// error timeout http_502 http_503` (its default is `error timeout`).
    /// Caddy: `lb_try_duration 5s`.
    On,
}

impl Retries {
    /// Both, in table order.
    pub const ALL: [Retries; 2] = [Retries::Off, Retries::On];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Retries::Off => "off",
            Retries::On => "on",
        }
    }
}

/// How Caddy picks the instance of a request (`lb_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaddyPolicy {
    /// `random`, Caddy's default: one of the instances its health checks
    /// hold available, at random.
    #[default]
    Random,
    /// `round_robin`: as HAProxy and nginx. Caddy 2.6 (and later, up to
    /// 2.11.4) answers 503 `no upstreams available` now and then while one of
    /// two instances is out, the other healthy: its `RoundRobinSelection`
    /// advances one counter shared by every request, once per instance it
    /// tries, so a request whose two tries are interleaved with another
    /// request's can land on the instance that is out both times.
    RoundRobin,
}

impl CaddyPolicy {
    /// The `lb_policy` of the Caddyfile.
    pub fn directive(self) -> &'static str {
        match self {
            CaddyPolicy::Random => "random",
            CaddyPolicy::RoundRobin => "round_robin",
        }
    }
}

/// One instance behind the balancer.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its name (`a`, `b`).
    pub name: String,
    /// The loopback address it serves on.
    pub host: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// The port that answers `GET /readyz`.
    pub check_port: u16,
}

/// What a balancer is configured with: a frontend on 127.0.0.1 and a pool of
/// instances.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The port clients connect to.
    pub frontend_port: u16,
    /// The instances.
    pub servers: Vec<Backend>,
    /// Whether failed requests go to another instance.
    pub retries: Retries,
    /// Time between two health checks of an instance (HAProxy's `inter`,
    /// Caddy's `health_interval`; nginx's `fail_timeout`).
    pub check_interval: Duration,
    /// Failed checks in a row that take an instance out (HAProxy's `fall`;
    /// nginx and Caddy count failures their own way).
    pub check_fall: u32,
    /// How Caddy picks an instance (HAProxy and nginx: round robin).
    pub caddy_policy: CaddyPolicy,
}

/// What a balancer counted over a run, where it counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Connects retried (HAProxy's `wretr`).
    pub retries: Option<u64>,
    /// Requests sent to another instance after a failure (HAProxy's
    /// `wredis`; nginx: requests whose `$upstream_addr` names more than one).
    pub redispatches: Option<u64>,
}

impl Counters {
    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Counters) -> Counters {
        let minus = |a: Option<u64>, b: Option<u64>| Some(a?.saturating_sub(b.unwrap_or(0)));
        Counters {
            retries: minus(self.retries, before.retries),
            redispatches: minus(self.redispatches, before.redispatches),
        }
    }
}

/// A running balancer.
#[derive(Debug)]
pub enum Running {
    /// HAProxy.
    Haproxy(Haproxy),
    /// nginx.
    Nginx(Nginx),
    /// Caddy.
    Caddy(Caddy),
}

impl Running {
    /// Waits until the balancer sends traffic to `server` again, for at most
    /// `timeout`. HAProxy says so on its stats socket; nginx and Caddy 2.6
    /// keep it to themselves, so the wait is until one of the requests
    /// flowing through reaches the instance (see each one's `wait_up`).
    /// `stopped`: whether the instance stopped listening since the balancer
    /// last had it (false at the start, and for a restart in place); nginx
    /// and Caddy, which mark an instance down only on a failed request or a
    /// failed check, cannot have taken out an instance that never did.
    ///
    /// # Errors
    ///
    /// When the time runs out or the balancer cannot be asked.
    pub async fn wait_up(
        &self,
        server: &str,
        stopped: bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        match self {
            Running::Haproxy(h) => h.wait_up(server, timeout).await,
            Running::Nginx(_) | Running::Caddy(_) if !stopped => Ok(()),
            Running::Nginx(n) => n.wait_up(server, timeout).await,
            Running::Caddy(c) => c.wait_up(server, timeout).await,
        }
    }

    /// The counters so far.
    ///
    /// # Errors
    ///
    /// When the balancer cannot be asked.
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        match self {
            Running::Haproxy(h) => {
                let stat = h.stat(haproxy::BACKEND, "BACKEND").await?;
                Ok(Counters {
                    retries: Some(stat.retries),
                    redispatches: Some(stat.redispatches),
                })
            }
            Running::Nginx(n) => Ok(Counters {
                retries: None,
                redispatches: Some(n.passed_on()?),
            }),
            Running::Caddy(_) => Ok(Counters::default()),
        }
    }

    /// Stops it by PID and reaps it.
    pub async fn stop(self) {
        match self {
            Running::Haproxy(h) => h.stop().await,
            Running::Nginx(mut n) => n.stop().await,
            Running::Caddy(c) => c.stop().await,
        }
    }
}

/// Waits until something accepts connections on `127.0.0.1:port`, while
/// `alive` says the process is still there; at most `timeout`.
pub(crate) async fn wait_listening(
    port: u16,
    timeout: Duration,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        alive()?;
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "nothing listened on 127.0.0.1:{port} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The directives of a generated configuration, one a line, without its
/// comments and blank lines (the tests of every balancer's config).
#[cfg(test)]
pub(crate) fn directives(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}
