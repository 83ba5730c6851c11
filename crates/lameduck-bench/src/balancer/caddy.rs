//! Caddy in front of the pool: `reverse_proxy` to both instances (Caddy's
//! default `lb_policy random`, or `round_robin`: see [`CaddyPolicy`]), with
//! active health checks on `/readyz`, and `lb_try_duration` as the retries
//! say.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{CaddyPolicy, Pool, Retries, wait_listening};
use crate::net::free_ports;

/// Bound on Caddy's start.
const START: Duration = Duration::from_secs(10);

/// Time between two questions to the admin API.
const POLL: Duration = Duration::from_millis(10);

/// A running Caddy.
#[derive(Debug)]
pub struct Caddy {
    child: Child,
    log: PathBuf,
    /// The admin API, on 127.0.0.1.
    admin: u16,
    /// The instances by name, as the admin API writes their addresses.
    servers: Vec<(String, String)>,
}

impl Caddy {
    /// Writes the Caddyfile of `pool` to `dir`, checks it with `caddy
    /// validate` and starts `caddy run` (its data and autosaved config in
    /// `dir` too); returns once it accepts connections. It is killed if this
    /// value is dropped.
    ///
    /// # Errors
    ///
    /// When the configuration is refused or Caddy does not start.
    pub async fn start(program: &Path, pool: &Pool, dir: &Path) -> anyhow::Result<Self> {
        let file = dir.join("Caddyfile");
        let log = dir.join("caddy.log");
        let admin = free_ports(1)?[0];
        std::fs::write(&file, render(pool, admin)?)
            .with_context(|| format!("writing {}", file.display()))?;
        let command = |sub: &str| {
            let mut cmd = Command::new(program);
            cmd.arg(sub)
                .arg("--config")
                .arg(&file)
                .args(["--adapter", "caddyfile"])
                .env("XDG_CONFIG_HOME", dir)
                .env("XDG_DATA_HOME", dir)
                .stdin(Stdio::null());
            cmd
        };
        let check = command("validate")
            .output()
            .await
            .context("running caddy validate")?;
        if !check.status.success() {
            bail!(
                "caddy refused {}:\n{}",
                file.display(),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let out = std::fs::File::create(&log)?;
        let child = command("run")
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting caddy")?;
        let mut caddy = Caddy {
            child,
            log,
            admin,
            servers: pool
                .servers
                .iter()
                .map(|s| (s.name.clone(), format!("{}:{}", s.host, s.port)))
                .collect(),
        };
        wait_listening(pool.frontend_port, START, || {
            if let Some(status) = caddy.child.try_wait()? {
                bail!(
                    "caddy exited with {status}:\n{}",
                    std::fs::read_to_string(&caddy.log).unwrap_or_default()
                );
            }
            Ok(())
        })
        .await?;
        Ok(caddy)
    }

    /// Waits until Caddy has a request in flight to `server` again, for at
    /// most `timeout`; the restarted instance must be ready when this is
    /// called, and requests must be flowing.
    ///
    /// Caddy 2.6 does not say whether it holds an upstream healthy (its
    /// active checks are kept per proxy, out of the admin API's reach), but
    /// `GET /reverse_proxy/upstreams` has each upstream's requests in
    /// flight: under load, a healthy instance always has some.
    ///
    /// # Errors
    ///
    /// When `server` is not in the pool, the admin API does not answer, or
    /// the time runs out.
    pub async fn wait_up(&self, server: &str, timeout: Duration) -> anyhow::Result<()> {
        let addr = self
            .servers
            .iter()
            .find(|(name, _)| name == server)
            .map(|(_, addr)| addr.clone())
            .with_context(|| format!("no instance {server} behind caddy"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let body = admin_get(self.admin, "/reverse_proxy/upstreams").await?;
            if in_flight(&body, &addr)? > 0 {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "caddy sent no request to {server} ({addr}) within {timeout:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kills Caddy by PID and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The body of `GET path` on Caddy's admin API.
async fn admin_get(port: u16, path: &str) -> anyhow::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ask = async {
        let mut stream = TcpStream::connect(addr).await?;
        // HTTP/1.0, so that the body comes whole, never chunked.
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        anyhow::Ok(text)
    };
    let text = tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .with_context(|| format!("caddy's admin API on {addr} did not answer"))?
        .with_context(|| format!("asking caddy's admin API on {addr}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("caddy's admin API answered {text:?}"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "caddy's admin API answered {head:?}"
    );
    Ok(body.to_owned())
}

/// The requests in flight to `addr` in an answer of `GET
/// /reverse_proxy/upstreams` (zero when it is not listed).
fn in_flight(body: &str, addr: &str) -> anyhow::Result<u64> {
    #[derive(Deserialize)]
    struct Upstream {
        address: String,
        num_requests: u64,
    }
    let upstreams: Vec<Upstream> =
        serde_json::from_str(body).with_context(|| format!("caddy's upstreams: {body:?}"))?;
    Ok(upstreams
        .iter()
        .filter(|u| u.address == addr)
        .map(|u| u.num_requests)
        .sum())
}

/// The Caddyfile, with the admin API on `127.0.0.1:admin`.
///
/// # Errors
///
/// When the instances are checked on different ports other than their own:
/// Caddy checks every upstream on one port.
pub fn render(pool: &Pool, admin: u16) -> anyhow::Result<String> {
    let check_ports: Vec<u16> = pool.servers.iter().map(|s| s.check_port).collect();
    let own_port = pool.servers.iter().all(|s| s.check_port == s.port);
    if !own_port && check_ports.windows(2).any(|w| w[0] != w[1]) {
        bail!(
            "caddy checks every upstream on one port: the instances' readiness ports {check_ports:?} differ"
        );
    }
    let upstreams: Vec<String> = pool
        .servers
        .iter()
        .map(|s| format!("{}:{}", s.host, s.port))
        .collect();
    let mut cfg = format!(
        "\
# Generated by lameduck-bench (retries: {retries}); removed after the run.
{{
	admin 127.0.0.1:{admin}
	# Plain HTTP on loopback: no certificates, no redirect listener on :80.
	auto_https off
}}

http://127.0.0.1:{port} {{
	bind 127.0.0.1
	reverse_proxy {upstreams} {{
{policy}
		# Active checks, as with HAProxy: an instance that answers anything
		# but 2xx on /readyz, or does not answer within the timeout, is out
		# until a check passes again.
		health_uri /readyz
		health_interval {inter}ms
		health_timeout 1s
",
        retries = pool.retries.name(),
        port = pool.frontend_port,
        upstreams = upstreams.join(" "),
        inter = pool.check_interval.as_millis(),
        policy = match pool.caddy_policy {
            CaddyPolicy::Random => {
                "\t\t# Caddy's default: an instance at random among those available.\n\
                 \t\tlb_policy random"
            }
            CaddyPolicy::RoundRobin => {
                "\t\t# Round robin, as HAProxy and nginx. Caddy's round robin answers 503\n\
                 \t\t# \"no upstreams available\" now and then while one instance is out:\n\
                 \t\t# two tries of one request, interleaved with another request's, can\n\
                 \t\t# both land on the instance that is out.\n\
                 \t\tlb_policy round_robin"
            }
        },
    );
    if !own_port {
        let _ = writeln!(cfg, "\t\thealth_port {}", check_ports[0]);
    }
    cfg.push_str(match pool.retries {
        Retries::Off => {
            "\t\t# Caddy's default: a request whose upstream fails is not tried elsewhere.\n"
        }
        Retries::On => {
            "\t\t# A request whose connect fails is tried on another upstream, for up to 5 s\n\
             \t\t# (every 250 ms, Caddy's default interval).\n\
             \t\tlb_try_duration 5s\n"
        }
    });
    cfg.push_str("\t}\n}\n");
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::balancer::Backend;

    #[test]
    fn caddy_takes_an_instance_back_once_it_has_requests_in_flight() {
        let body = r#"[{"address":"127.0.0.2:8001","num_requests":0,"fails":1},
            {"address":"127.0.0.3:8001","num_requests":7,"fails":0}]"#;
        assert_eq!(in_flight(body, "127.0.0.2:8001").unwrap(), 0);
        assert_eq!(in_flight(body, "127.0.0.3:8001").unwrap(), 7);
        assert_eq!(in_flight("[]", "127.0.0.3:8001").unwrap(), 0);
        assert!(in_flight("not json", "127.0.0.3:8001").is_err());
    }

    fn pool(retries: Retries, check_ports: [u16; 2]) -> Pool {
        policy_pool(retries, check_ports, CaddyPolicy::default())
    }

    fn policy_pool(retries: Retries, check_ports: [u16; 2], caddy_policy: CaddyPolicy) -> Pool {
        let backend = |name: &str, last, check_port| Backend {
            name: name.into(),
            host: Ipv4Addr::new(127, 0, 0, last),
            port: 8001,
            check_port,
        };
        Pool {
            frontend_port: 8000,
            servers: vec![
                backend("a", 2, check_ports[0]),
                backend("b", 3, check_ports[1]),
            ],
            retries,
            check_interval: Duration::from_millis(200),
            check_fall: 1,
            caddy_policy,
        }
    }

    #[test]
    fn instances_are_checked_on_their_shared_readiness_port() {
        let text = render(&pool(Retries::Off, [8002, 8002]), 9000).unwrap();
        assert!(text.contains("reverse_proxy 127.0.0.2:8001 127.0.0.3:8001 {"));
        assert!(text.contains("health_port 8002"));
        assert!(text.contains("health_uri /readyz"));
        assert!(!text.contains("lb_try_duration"));
    }

    #[test]
    fn retries_on_sets_a_try_duration() {
        let text = render(&pool(Retries::On, [8001, 8001]), 9000).unwrap();
        assert!(text.contains("lb_try_duration 5s"));
        assert!(!text.contains("health_port"));
    }

    #[test]
    fn caddy_round_robin_that_can_pick_the_instance_that_is_out_twice_is_not_the_default() {
        let text = render(&pool(Retries::Off, [8001, 8001]), 9000).unwrap();
        assert!(text.contains("\t\tlb_policy random\n"), "{text}");
        assert!(!text.contains("round_robin"), "{text}");
        let policy = policy_pool(Retries::Off, [8001, 8001], CaddyPolicy::RoundRobin);
        let text = render(&policy, 9000).unwrap();
        assert!(text.contains("\t\tlb_policy round_robin\n"), "{text}");
    }

    #[test]
    fn readiness_ports_that_differ_are_refused() {
        assert!(render(&pool(Retries::Off, [8002, 8004]), 9000).is_err());
    }
}
