//! nginx (open source) in front of the pool: an `upstream` with
//! `max_fails`/`fail_timeout`, keep-alive connections to the instances, and
//! `proxy_next_upstream` as the retries say. It has no active health checks,
//! so it learns that an instance left only when a request to it fails.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::{Pool, Retries, wait_listening};

/// Bound on nginx's start and stop.
const START_STOP: Duration = Duration::from_secs(10);

/// Time between two reads of the access log.
const POLL: Duration = Duration::from_millis(20);

/// Whether an access-log line (`log_format upstreams`) is of a request that
/// `addr` answered with 200, on the first try or passed on to it.
fn answered_by(line: &str, addr: &str) -> bool {
    let mut fields = line.split('|');
    let (Some(addrs), Some(statuses)) = (fields.next(), fields.next()) else {
        return false;
    };
    addrs
        .split(", ")
        .zip(statuses.split(", "))
        .any(|(a, status)| a == addr && status == "200")
}

/// A running nginx: the master process (in the foreground, `daemon off`)
/// and its workers.
#[derive(Debug)]
pub struct Nginx {
    child: Option<Child>,
    access_log: PathBuf,
    error_log: PathBuf,
    /// The instances by name, as the access log writes their addresses.
    servers: Vec<(String, SocketAddr)>,
}

impl Nginx {
    /// Writes the configuration of `pool` to `dir`, checks it with
    /// `nginx -t` and starts nginx; returns once it accepts connections.
    ///
    /// # Errors
    ///
    /// When the configuration is refused or nginx does not start.
    pub async fn start(program: &Path, pool: &Pool, dir: &Path) -> anyhow::Result<Self> {
        let conf = dir.join("nginx.conf");
        let error_log = dir.join("nginx-error.log");
        let access_log = dir.join("nginx-access.log");
        std::fs::write(&conf, render(pool, dir, false))
            .with_context(|| format!("writing {}", conf.display()))?;
        let args = |check: bool| {
            let mut args: Vec<std::ffi::OsString> = vec!["-p".into(), dir.into(), "-e".into()];
            args.push(error_log.clone().into());
            args.extend(["-c".into(), conf.clone().into()]);
            if check {
                args.push("-t".into());
            }
            args
        };
        let check = Command::new(program)
            .args(args(true))
            .output()
            .await
            .context("running nginx -t")?;
        if !check.status.success() {
            bail!(
                "nginx refused {}:\n{}",
                conf.display(),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let out = std::fs::File::create(dir.join("nginx.out"))?;
        let child = Command::new(program)
            .args(args(false))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting nginx")?;
        let mut nginx = Nginx {
            child: Some(child),
            access_log,
            error_log,
            servers: pool
                .servers
                .iter()
                .map(|s| (s.name.clone(), SocketAddr::from((s.host, s.port))))
                .collect(),
        };
        let started = wait_listening(pool.frontend_port, START_STOP, || nginx.alive()).await;
        if let Err(err) = started {
            let log = std::fs::read_to_string(&nginx.error_log).unwrap_or_default();
            nginx.stop().await;
            bail!("{err:#}\n{log}");
        }
        Ok(nginx)
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        let child = self.child.as_mut().context("nginx was stopped")?;
        if let Some(status) = child.try_wait()? {
            bail!(
                "nginx exited with {status}:\n{}",
                std::fs::read_to_string(&self.error_log).unwrap_or_default()
            );
        }
        Ok(())
    }

    /// Waits until nginx has sent a request to `server` again and had it
    /// answered 200, for at most `timeout`; the restarted instance must be
    /// ready when this is called, and requests must be flowing.
    ///
    /// nginx cannot be asked whether it would send to an instance: a failed
    /// one is skipped for `fail_timeout`, counted on nginx's clock in whole
    /// seconds, so for up to twice that. Only its access log shows when it
    /// has taken the instance back.
    ///
    /// # Errors
    ///
    /// When `server` is not in the pool, the log cannot be read, or the
    /// time runs out.
    pub async fn wait_up(&self, server: &str, timeout: Duration) -> anyhow::Result<()> {
        let addr = self
            .servers
            .iter()
            .find(|(name, _)| name == server)
            .map(|(_, addr)| addr.to_string())
            .with_context(|| format!("no instance {server} behind nginx"))?;
        // Lines written before now are of requests the old process answered.
        let from = self.log_len()?;
        let deadline = Instant::now() + timeout;
        loop {
            let text = std::fs::read(&self.access_log)
                .with_context(|| format!("reading {}", self.access_log.display()))?;
            let new = text.get(from..).unwrap_or_default();
            if String::from_utf8_lossy(new)
                .lines()
                .any(|line| answered_by(line, &addr))
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "nginx sent no request to {server} ({addr}) within {timeout:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn log_len(&self) -> anyhow::Result<usize> {
        let meta = std::fs::metadata(&self.access_log)
            .with_context(|| format!("reading {}", self.access_log.display()))?;
        Ok(usize::try_from(meta.len()).unwrap_or(usize::MAX))
    }

    /// Requests passed on to another instance so far: access-log lines whose
    /// `$upstream_addr` names more than one.
    ///
    /// # Errors
    ///
    /// When the access log cannot be read.
    pub fn passed_on(&self) -> anyhow::Result<u64> {
        let text = std::fs::read_to_string(&self.access_log)
            .with_context(|| format!("reading {}", self.access_log.display()))?;
        Ok(text.lines().filter(|l| l.contains(',')).count() as u64)
    }

    /// Stops nginx: SIGTERM to the master (which stops its workers), SIGKILL
    /// if it is not gone within 10 s; then reaps it.
    pub async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_master(child).await;
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM, never SIGKILL, so that the master takes its workers with it
    /// (a killed master leaves them serving); tokio reaps it.
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id)
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
}

/// SIGTERM to an nginx master, then SIGKILL after 10 s; reaps it.
pub(crate) async fn stop_master(mut child: Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if tokio::time::timeout(START_STOP, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// The configuration text; its files (pid, logs, temp paths) are in `dir`.
/// `daemon`: nginx forks into the background, as it must for a binary
/// upgrade (in the foreground it ignores `USR2` while its parent lives);
/// otherwise it stays the bench's child.
pub fn render(pool: &Pool, dir: &Path, daemon: bool) -> String {
    let fail_timeout = pool.check_interval.max(Duration::from_secs(1)).as_secs();
    let mut cfg = format!(
        "\
# Generated by lameduck-bench (retries: {retries}); removed after the run.
# Debian's stock /etc/nginx/nginx.conf, less what the bench does not use
# (the system service's user, sites, gzip, TLS), plus what is explained here.

daemon {daemon};
worker_processes auto;
pid {dir}/nginx.pid;

events {{
    # Debian's 768 is below what a stalled second of this load holds open
    # (client and instance connections); the bench measures the instances,
    # not this limit.
    worker_connections 4096;
}}

http {{
    # $upstream_addr lists every instance a request was tried on: a comma
    # marks one passed on to the next (the bench counts those).
    log_format upstreams '$upstream_addr|$upstream_status|$status';
    access_log {dir}/nginx-access.log upstreams;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream instances {{
        # The workers share what they learn of the instances (without a
        # zone each worker has to fail on a stopped instance by itself).
        zone instances 64k;
        # max_fails=1: one failed request takes an instance out (nginx's
        # default); fail_timeout={fail_timeout}s: for that long, then it is
        # tried again (the default 10 s would keep a restarted instance out
        # while the other one restarts, leaving none).
",
        retries = pool.retries.name(),
        dir = dir.display(),
        daemon = if daemon { "on" } else { "off" },
    );
    for server in &pool.servers {
        let _ = writeln!(
            cfg,
            "        server {}:{} max_fails=1 fail_timeout={fail_timeout}s;",
            server.host, server.port
        );
    }
    let _ = write!(
        cfg,
        "        # Keep-alive to the instances, as production setups have it.
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://instances;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
{next}        }}
    }}
}}
",
        port = pool.frontend_port,
        next = match pool.retries {
            Retries::Off =>
                "            # A failed request is never passed on to the other instance.
            proxy_next_upstream off;
",
            Retries::On =>
                "            # A request that failed before any of its answer was sent to the
            # client is passed on to the other instance (GET is idempotent).
            proxy_next_upstream error timeout http_502 http_503;
",
        },
    );
    cfg
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::balancer::directives;
    use crate::balancer::{Backend, CaddyPolicy};

    fn pool(retries: Retries) -> Pool {
        Pool {
            frontend_port: 8000,
            servers: vec![Backend {
                name: "a".into(),
                host: Ipv4Addr::new(127, 0, 0, 2),
                port: 8001,
                check_port: 8002,
            }],
            retries,
            check_interval: Duration::from_millis(200),
            check_fall: 1,
            caddy_policy: CaddyPolicy::default(),
        }
    }

    #[test]
    fn retries_off_never_passes_a_request_on() {
        let lines = directives(&render(&pool(Retries::Off), Path::new("/tmp/x"), false));
        assert!(lines.contains(&"proxy_next_upstream off;".to_owned()));
        assert!(lines.contains(&"daemon off;".to_owned()));
        assert!(lines.contains(&"listen 127.0.0.1:8000;".to_owned()));
        assert!(lines.contains(&"server 127.0.0.2:8001 max_fails=1 fail_timeout=1s;".to_owned()));
    }

    #[test]
    fn nginx_takes_an_instance_back_only_once_it_answered() {
        let addr = "127.0.0.2:8001";
        assert!(answered_by("127.0.0.2:8001|200|200", addr));
        assert!(answered_by(
            "127.0.0.3:8001, 127.0.0.2:8001|502, 200|200",
            addr
        ));
        assert!(!answered_by(
            "127.0.0.2:8001, 127.0.0.3:8001|502, 200|200",
            addr
        ));
        assert!(!answered_by("127.0.0.3:8001|200|200", addr));
        assert!(!answered_by("127.0.0.2:80011|200|200", addr));
        assert!(!answered_by("garbage", addr));
        let cfg = render(&pool(Retries::Off), Path::new("/tmp/x"), false);
        assert!(directives(&cfg).contains(&"zone instances 64k;".to_owned()));
    }

    #[test]
    fn retries_on_passes_errors_and_502s_on() {
        let lines = directives(&render(&pool(Retries::On), Path::new("/tmp/x"), true));
        assert!(lines.contains(&"proxy_next_upstream error timeout http_502 http_503;".to_owned()));
        assert!(lines.contains(&"keepalive 32;".to_owned()));
        assert!(lines.contains(&"daemon on;".to_owned()));
    }
}
