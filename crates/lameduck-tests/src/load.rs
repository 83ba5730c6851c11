//! A small HTTP/1.1 load generator over real sockets: clients that keep
//! their connection alive (reconnecting when told `Connection: close`) and
//! clients that open a fresh connection per request. Every request is
//! classified; nothing is retried, so a refused connection or a reset is a
//! failure, as a user would see it.
//!
//! Bounded: each client stops after `max_requests`, and every request has a
//! timeout, so a hung server fails a test instead of hanging it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The load's shape.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Clients that reuse their connection.
    pub keep_alive: usize,
    /// Clients that connect afresh for every request.
    pub fresh: usize,
    /// Requests per client at most.
    pub max_requests: u64,
    /// Per request.
    pub timeout: Duration,
    /// Keep each request's start and latency (for benchmarks).
    pub record: bool,
    /// `Some(path)`: probe `path` (`/readyz`) instead of the fixture's
    /// `/`: any `200` is ok (counted under pid 0), anything else a failure.
    /// Keep-alive probers look for a connection the server closed while
    /// it was idle before reusing it, as a client's connection pool does.
    pub probe: Option<&'static str>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            keep_alive: 4,
            fresh: 4,
            max_requests: 1_000_000,
            timeout: Duration::from_secs(10),
            record: false,
            probe: None,
        }
    }
}

/// What happened so far.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Requests answered 200 with a well-formed body.
    pub ok: u64,
    /// Each failed request: what went wrong.
    pub failures: Vec<String>,
    /// Answered requests per serving pid.
    pub by_pid: BTreeMap<u32, u64>,
    /// The pid that answered last.
    pub last_pid: Option<u32>,
    /// Connections opened for answered requests.
    pub connections: u64,
    /// (start, latency) of each answered request, when recording.
    pub latencies: Vec<(Instant, Duration)>,
}

struct Shared {
    stats: Mutex<Stats>,
    changed: Condvar,
    stop: AtomicBool,
}

/// A running load; stop it with [`Load::stop`].
pub struct Load {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts loading `addr` on a runtime of its own.
    pub fn start(addr: SocketAddr, config: Config) -> Self {
        let shared = Arc::new(Shared {
            stats: Mutex::new(Stats::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for i in 0..config.keep_alive + config.fresh {
                    let fresh = i >= config.keep_alive;
                    tasks.push(tokio::spawn(client(addr, fresh, config, s.clone())));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// A copy of the stats now.
    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the stats, at most `limit`; whether it
    /// did.
    pub fn wait_until(&self, limit: Duration, mut pred: impl FnMut(&Stats) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut stats = self.shared.stats.lock().unwrap();
        loop {
            if pred(&stats) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            stats = self
                .shared
                .changed
                .wait_timeout(stats, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Stops every client after its request in flight; the final stats.
    pub fn stop(mut self) -> Stats {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

async fn client(addr: SocketAddr, fresh: bool, config: Config, shared: Arc<Shared>) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    for _ in 0..config.max_requests {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let start = Instant::now();
        let outcome = tokio::time::timeout(
            config.timeout,
            request(addr, fresh, config.probe, &mut conn),
        )
        .await;
        let took = start.elapsed();
        let mut stats = shared.stats.lock().unwrap();
        match outcome {
            Ok(Ok((pid, connected))) => {
                stats.ok += 1;
                stats.connections += u64::from(connected);
                *stats.by_pid.entry(pid).or_default() += 1;
                stats.last_pid = Some(pid);
                if config.record {
                    stats.latencies.push((start, took));
                }
            }
            Ok(Err(why)) => {
                conn = None;
                stats.failures.push(format!(
                    "{} client: {why}",
                    if fresh { "fresh" } else { "keep-alive" }
                ));
            }
            Err(_) => {
                conn = None;
                stats.failures.push(format!(
                    "{} client: no answer within {:?}",
                    if fresh { "fresh" } else { "keep-alive" },
                    config.timeout
                ));
            }
        }
        drop(stats);
        shared.changed.notify_all();
    }
}

/// One request; the pid in the answer (0 for a probe), and whether it
/// opened a connection.
async fn request(
    addr: SocketAddr,
    fresh: bool,
    probe: Option<&str>,
    conn: &mut Option<BufReader<TcpStream>>,
) -> Result<(u32, bool), String> {
    if probe.is_some() && conn.as_ref().is_some_and(|c| closed_by_peer(c.get_ref())) {
        *conn = None;
    }
    let connected = conn.is_none();
    if connected {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = s.set_nodelay(true);
        *conn = Some(BufReader::new(s));
    }
    let c = conn.as_mut().expect("just set");
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: test\r\n{}\r\n",
        probe.unwrap_or("/"),
        if fresh { "Connection: close\r\n" } else { "" }
    );
    let req = req.as_bytes();
    let reused = !fresh;
    c.get_mut().write_all(req).await.map_err(|e| {
        format!(
            "write{}: {e}",
            if reused {
                " (kept-alive connection)"
            } else {
                ""
            }
        )
    })?;
    let mut status = String::new();
    let n = c
        .read_line(&mut status)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed before the response".into());
    }
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("status {}", status.trim()));
    }
    let mut len = None;
    let mut close = false;
    loop {
        let mut line = String::new();
        let n = c
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read headers: {e}"))?;
        if n == 0 {
            return Err("connection closed in the headers".into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if lower == "connection: close" {
            close = true;
        }
    }
    let len = len.ok_or("no content-length")?;
    let mut body = vec![0u8; len];
    c.read_exact(&mut body)
        .await
        .map_err(|e| format!("read body: {e}"))?;
    if fresh || close {
        *conn = None;
    }
    if probe.is_some() {
        return Ok((0, connected));
    }
    let body = String::from_utf8_lossy(&body);
    body.strip_prefix("pid ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .map(|pid| (pid, connected))
        .ok_or_else(|| format!("unexpected body {body:?}"))
}

/// Whether the server closed this idle connection: it is readable at once
/// with nothing (end-of-file) or with an error.
fn closed_by_peer(s: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match s.try_read(&mut byte) {
        Ok(0) => true,
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}
