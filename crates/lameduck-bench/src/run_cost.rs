//! `scripts/bench run`: what a wrapper costs around the naive Python server —
//! resident memory, CPU while idle, and the start-up time it adds — for
//! tini, dumb-init, catatonit and `lameduck run`, in one run.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;

use crate::kind::{Binaries, DemoTiming, ServerKind};
use crate::net::{free_ports, get_status};

/// What one kind costs.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// The kind.
    pub server: ServerKind,
    /// Resident memory (PSS) of the wrapper's processes (lameduck: itself
    /// and its guard), KiB; 0 for the bare program.
    pub wrapper_rss_kib: u64,
    /// Resident memory (PSS) of the program, KiB.
    pub program_rss_kib: u64,
    /// CPU the wrapper used while the program idled, milliseconds per
    /// second.
    pub wrapper_idle_cpu_ms_per_s: f64,
    /// Median time from the start to the first answer of the program.
    pub startup_ms: f64,
}

/// Measures every kind in `kinds`: `runs` starts each for the start-up time,
/// then one instance idle for `idle`.
///
/// # Errors
///
/// When an instance does not start.
pub async fn measure(
    kinds: &[ServerKind],
    bins: &Binaries,
    runs: usize,
    idle: Duration,
) -> anyhow::Result<Vec<Cost>> {
    let mut out = Vec::new();
    for kind in kinds {
        let mut startups = Vec::new();
        for _ in 0..runs {
            let (pid, took) = start(*kind, bins).await?;
            stop(pid);
            startups.push(took.as_secs_f64() * 1000.0);
        }
        startups.sort_by(f64::total_cmp);
        let (pid, _) = start(*kind, bins).await?;
        let wrapper: Vec<u32> = if *kind == ServerKind::Python {
            Vec::new()
        } else {
            let mut w = vec![pid];
            // lameduck's guard is part of its cost.
            w.extend(
                children(pid)
                    .into_iter()
                    .filter(|c| cmdline(*c).contains("run-guard")),
            );
            w
        };
        let program = if *kind == ServerKind::Python {
            pid
        } else {
            *children(pid)
                .iter()
                .find(|c| cmdline(**c).contains("naive_server.py"))
                .context("the program is not a child of its wrapper")?
        };
        let before: u64 = wrapper.iter().map(|p| cpu_ticks(*p)).sum();
        tokio::time::sleep(idle).await;
        let after: u64 = wrapper.iter().map(|p| cpu_ticks(*p)).sum();
        let ticks = ticks_per_second();
        out.push(Cost {
            server: *kind,
            wrapper_rss_kib: wrapper.iter().map(|p| rss_kib(*p)).sum(),
            program_rss_kib: rss_kib(program),
            wrapper_idle_cpu_ms_per_s: (after - before) as f64 * 1000.0
                / ticks
                / idle.as_secs_f64(),
            startup_ms: startups[startups.len() / 2],
        });
        stop(pid);
    }
    Ok(out)
}

/// Starts one instance in a group of its own; returns its pid and the time
/// until the program answered.
async fn start(kind: ServerKind, bins: &Binaries) -> anyhow::Result<(u32, Duration)> {
    let ports = free_ports(2)?;
    let ports = crate::kind::Ports {
        host: std::net::Ipv4Addr::LOCALHOST,
        listen: ports[0],
        admin: ports[1],
    };
    let timing = DemoTiming {
        drain_delay: Duration::ZERO,
        drain_quiet: None,
        grace_period: Duration::from_secs(5),
    };
    let launch = kind.launch(bins, ports, timing);
    let started = Instant::now();
    let child = Command::new(&launch.program)
        .args(&launch.args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", kind.name()))?;
    let pid = child.id();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports.listen));
    loop {
        if get_status(addr, "/").await == Some(200) {
            return Ok((pid, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(10) {
            stop(pid);
            bail!("{} did not answer within 10s", kind.name());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// SIGKILLs the instance's whole tree and reaps its leader: its group, and
/// the group of every descendant. A wrapper may start the program in a
/// session of its own (dumb-init does; `lameduck run` gives each instance a
/// group), which a kill of the wrapper's group alone would leave running.
fn stop(pid: u32) {
    let leader = Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
    // Listed before anything is killed: an orphan's parent becomes 1.
    let mut tree = vec![pid];
    let mut next = 0;
    // Bounded: a benchmark's instance has a handful of processes.
    while next < tree.len() && tree.len() < 256 {
        let found = descendants_of(tree[next]);
        tree.extend(found);
        next += 1;
    }
    for p in &tree {
        let p = Pid::from_raw(i32::try_from(*p).unwrap_or(i32::MAX));
        if let Ok(group) = nix::unistd::getpgid(Some(p)) {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
    }
    let _ = killpg(leader, Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(leader, None);
}

/// The children of every thread of `pid` (a child started from another
/// thread is listed under that thread).
fn descendants_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .flat_map(|task| {
            std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .replace('\0', " ")
}

/// The proportional set size: resident memory, with each page shared
/// between processes (lameduck and its guard run one binary) counted once
/// in all.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// utime + stime, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    let get = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}
