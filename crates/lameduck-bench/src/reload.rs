//! Scenario (f): restarts side by side. lameduck's `SIGHUP` upgrade of
//! `lameduck demo` against the references for "a reload that loses
//! nothing": nginx's binary upgrade (`USR2`, `WINCH`, `QUIT`) and HAProxy's
//! `-sf` reload, without and with `-x` (the listening sockets passed from
//! the old process). Same open-loop load, a steady run first; what counts
//! is the errors and the p99 during the reloads over the steady p99.
//!
//! nginx and HAProxy reload themselves, not the application: here each
//! proxies to one `baseline-axum` that is never restarted, so what they lose
//! is what their own reload loses.

mod nginx;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lameduck_drill::report::Report;
use lameduck_drill::{Drill, DrillConfig, Load, ServerSpec, Signal, SignalPlan};
use nix::sys::signal::{Signal as NixSignal, killpg};
use nix::unistd::Pid;
use serde::Serialize;

use crate::balancer::{Backend, CaddyPolicy, Pool, Retries};
use crate::haproxy::Haproxy;
use crate::instance::Instance;
use crate::kind::{Binaries, DemoTiming, ServerKind};
use crate::net::free_ports;
use crate::scratch::Scratch;
use crate::table::{Table, ms, span};

/// Bound on a server's start.
const START: Duration = Duration::from_secs(30);

/// A way to restart a server in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reload {
    /// `SIGHUP` to `lameduck demo`: a new process on the same sockets, the
    /// old one drained once the new one is ready.
    Lameduck,
    /// nginx's binary upgrade: `USR2` (a new master on the inherited
    /// sockets), `WINCH` (the old workers finish and exit), `QUIT` (the old
    /// master exits).
    Nginx,
    /// `haproxy -sf OLD`: a new process binds its own sockets
    /// (`SO_REUSEPORT`), the old one stops listening and finishes.
    HaproxySf,
    /// `haproxy -x SOCKET -sf OLD`: the new process takes the old one's
    /// listening sockets over the stats socket.
    HaproxySfX,
}

impl Reload {
    /// Every reload, in table order.
    pub const ALL: [Reload; 4] = [
        Reload::Lameduck,
        Reload::Nginx,
        Reload::HaproxySf,
        Reload::HaproxySfX,
    ];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Reload::Lameduck => "lameduck SIGHUP",
            Reload::Nginx => "nginx USR2+WINCH+QUIT",
            Reload::HaproxySf => "haproxy -sf",
            Reload::HaproxySfX => "haproxy -x -sf",
        }
    }
}

/// What every row shares.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Reloads per row.
    pub reloads: u32,
    /// Time from one reload to the next.
    #[serde(with = "crate::compare::micros")]
    pub every: Duration,
    /// Open-loop requests per second.
    pub rate: u32,
    /// The handler's latency (`/work?ms=`).
    pub work_ms: u64,
    /// The steady-state run before the reloads.
    #[serde(with = "crate::compare::micros")]
    pub steady: Duration,
    /// Load before the first reload and after the last.
    #[serde(with = "crate::compare::micros")]
    pub margin: Duration,
    /// The demo's drain delay.
    #[serde(with = "crate::compare::micros")]
    pub drain_delay: Duration,
    /// The nginx binary.
    #[serde(skip)]
    pub nginx: PathBuf,
    /// The HAProxy binary.
    #[serde(skip)]
    pub haproxy: PathBuf,
    /// Where the servers' binaries are.
    #[serde(skip)]
    pub bins: Option<Binaries>,
}

impl Plan {
    fn load_duration(&self) -> Duration {
        self.margin * 2 + self.every * self.reloads
    }
}

/// What one row measured.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The reload.
    pub reload: Reload,
    /// Reloads that completed.
    pub reloads_done: u32,
    /// Requests of the reload run.
    pub requests: u64,
    /// Those that failed.
    pub errors: u64,
    /// The failures by class.
    pub errors_by_class: String,
    /// p99 of ok responses in the reload run.
    pub p99_us: Option<u64>,
    /// The slowest.
    pub max_us: Option<u64>,
    /// p99 of the steady run just before.
    pub steady_p99_us: Option<u64>,
    /// p99 ÷ steady p99.
    pub p99_ratio: Option<f64>,
    /// The longest reload: from its start until the old process was gone.
    pub slowest_reload_us: Option<u64>,
}

/// Runs one row and cleans up.
///
/// # Errors
///
/// When the row cannot be carried out.
pub async fn run(plan: &Plan, reload: Reload) -> anyhow::Result<(Row, Report)> {
    let scratch = Scratch::new(&format!("reload-{reload:?}"))?;
    let bins = plan.bins.as_ref().context("no binaries")?;
    let result = match reload {
        Reload::Lameduck => lameduck(plan, bins, &scratch).await,
        _ => proxied(plan, reload, bins, &scratch).await,
    };
    result.map_err(|err| {
        anyhow::anyhow!(
            "{}: {err:#}\n--- server log (last lines)\n{}",
            reload.name(),
            scratch.tail("server.log", 10)
        )
    })
}

/// `lameduck demo` in a process group of its own (its successors stay in
/// it), loaded and `SIGHUP`ed by the drill, which follows each new process.
async fn lameduck(
    plan: &Plan,
    bins: &Binaries,
    scratch: &Scratch,
) -> anyhow::Result<(Row, Report)> {
    let ports = ServerKind::Lameduck.ports()?;
    let timing = DemoTiming {
        drain_delay: plan.drain_delay,
        grace_period: Duration::from_secs(10),
        drain_quiet: None,
    };
    let launch = ServerKind::Lameduck.launch(bins, ports, timing);
    let log = std::fs::File::create(scratch.path().join("server.log"))?;
    let mut child = tokio::process::Command::new(&launch.program)
        .args(&launch.args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .context("starting lameduck demo")?;
    let group = Pid::from_raw(i32::try_from(child.id().context("reaped")?)?);
    let outcome = async {
        let url = format!("http://{}/work?ms={}", ports.listen_addr(), plan.work_ms);
        let mut config = load(plan, &url, plan.steady)?;
        config.ready_url = Some(format!("http://{}/readyz", ports.admin_addr()).parse()?);
        config.ready_timeout = START;
        let steady = Drill::new(config.clone())?.run().await?;
        let pid = child.id().context("lameduck demo exited")?;
        config.duration = plan.load_duration();
        config.ready_url = None;
        config.server = ServerSpec::Attach(pid);
        config.signal = Some(SignalPlan {
            repeat: plan.reloads,
            every: plan.every,
            ..SignalPlan::once(Signal::HUP, plan.margin)
        });
        config.grace_period = plan.every;
        let report = Drill::new(config)?.run().await?;
        let signals = &report.events.signals;
        let slowest = report
            .events
            .restarts
            .iter()
            .filter_map(|r| Some(r.seen_us?.saturating_sub(signals.get(r.signal)?.at_us)))
            .max();
        let done = report
            .events
            .restarts
            .iter()
            .filter(|r| r.new_pid.is_some())
            .count();
        Ok((
            row(
                Reload::Lameduck,
                &steady,
                &report,
                u32::try_from(done)?,
                slowest,
            ),
            report,
        ))
    }
    .await;
    // The group holds the demo and every successor: all started here.
    let _ = killpg(group, NixSignal::SIGKILL);
    let _ = child.wait().await;
    outcome
}

/// nginx or HAProxy in front of one `baseline-axum`, reloaded under load.
async fn proxied(
    plan: &Plan,
    reload: Reload,
    bins: &Binaries,
    scratch: &Scratch,
) -> anyhow::Result<(Row, Report)> {
    let ports = ServerKind::Axum.ports()?;
    let mut backend = Instance::new(
        ServerKind::Axum.launch(
            bins,
            ports,
            DemoTiming {
                drain_delay: Duration::ZERO,
                grace_period: Duration::ZERO,
                drain_quiet: None,
            },
        ),
        ports.admin_addr(),
        scratch.path().join("server.log"),
    );
    backend.start()?;
    backend.wait_ready(START).await?;
    let frontend = free_ports(1)?[0];
    let pool = Pool {
        frontend_port: frontend,
        servers: vec![Backend {
            name: "a".into(),
            host: ports.host,
            port: ports.listen,
            check_port: ports.admin,
        }],
        retries: Retries::Off,
        check_interval: Duration::from_millis(200),
        check_fall: 1,
        caddy_policy: CaddyPolicy::default(),
    };
    let url = format!("http://127.0.0.1:{frontend}/work?ms={}", plan.work_ms);
    let outcome = match reload {
        Reload::Nginx => {
            let mut daemon = nginx::Daemon::start(&plan.nginx, &pool, scratch.path()).await?;
            let steady = Drill::new(load(plan, &url, plan.steady)?)?.run().await?;
            let drill = Drill::new(load(plan, &url, plan.load_duration())?)?;
            let (report, times) = tokio::join!(drill.run(), async {
                let mut times = Vec::new();
                let t0 = Instant::now();
                for n in 0..plan.reloads {
                    tokio::time::sleep_until((t0 + plan.margin + plan.every * n).into()).await;
                    let start = Instant::now();
                    daemon.upgrade().await?;
                    times.push(start.elapsed());
                }
                anyhow::Ok(times)
            });
            daemon.stop().await;
            let times = times?;
            (steady, report?, times)
        }
        _ => {
            let mut haproxy = Some(Haproxy::start(&plan.haproxy, &pool, scratch.path()).await?);
            let steady = Drill::new(load(plan, &url, plan.steady)?)?.run().await?;
            let drill = Drill::new(load(plan, &url, plan.load_duration())?)?;
            let seamless = reload == Reload::HaproxySfX;
            let (report, times) = tokio::join!(drill.run(), async {
                let mut times = Vec::new();
                let t0 = Instant::now();
                for n in 0..plan.reloads {
                    tokio::time::sleep_until((t0 + plan.margin + plan.every * n).into()).await;
                    let start = Instant::now();
                    let old = haproxy.take().context("no haproxy")?;
                    haproxy = Some(old.reload(&plan.haproxy, seamless, plan.every * 5).await?);
                    times.push(start.elapsed());
                }
                anyhow::Ok(times)
            });
            if let Some(h) = haproxy.take() {
                h.stop().await;
            }
            let times = times?;
            (steady, report?, times)
        }
    };
    backend.kill().await;
    let (steady, report, times) = outcome;
    let slowest = times
        .iter()
        .max()
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    Ok((
        row(
            reload,
            &steady,
            &report,
            u32::try_from(times.len())?,
            slowest,
        ),
        report,
    ))
}

fn row(reload: Reload, steady: &Report, report: &Report, done: u32, slowest: Option<u64>) -> Row {
    let (p99, steady_p99) = (report.latency.all.p99_us, steady.latency.all.p99_us);
    Row {
        reload,
        reloads_done: done,
        requests: report.requests.sent,
        errors: report.requests.total.failed(),
        errors_by_class: report.requests.total.describe_failures(),
        p99_us: p99,
        max_us: report.latency.all.max_us,
        steady_p99_us: steady_p99,
        p99_ratio: match (p99, steady_p99) {
            (Some(p), Some(s)) if s > 0 => Some(p as f64 / s as f64),
            _ => None,
        },
        slowest_reload_us: slowest,
    }
}

fn load(plan: &Plan, url: &str, duration: Duration) -> anyhow::Result<DrillConfig> {
    let mut config = DrillConfig::new(url)?;
    config.load = Load::Rate {
        per_second: plan.rate,
        max_in_flight: 1000,
    };
    config.duration = duration;
    Ok(config)
}

/// The side-by-side table.
pub fn table(rows: &[Row]) -> Table {
    let mut t = Table::new(&[
        "<reload",
        "reloads",
        "requests",
        "errors",
        "<errors by class",
        "p99",
        "steady p99",
        "p99 ratio",
        "max",
        "slowest reload",
    ]);
    for r in rows {
        t.row(vec![
            r.reload.name().to_owned(),
            r.reloads_done.to_string(),
            r.requests.to_string(),
            r.errors.to_string(),
            if r.errors_by_class.is_empty() {
                "-".to_owned()
            } else {
                r.errors_by_class.clone()
            },
            ms(r.p99_us),
            ms(r.steady_p99_us),
            r.p99_ratio.map_or("-".to_owned(), |x| format!("{x:.2}")),
            ms(r.max_us),
            r.slowest_reload_us
                .map_or("-".to_owned(), |us| span(Duration::from_micros(us))),
        ]);
    }
    t
}
