//! The last metrics are not lost, shown with Debian's real Prometheus and
//! Pushgateway (`scripts/test` installs them), started here on loopback:
//! under load, SIGTERM the demo, then ask Prometheus (or the Pushgateway)
//! what it has. With the final scrape, the last sample of the requests
//! counter equals the responses the clients received; without it, the
//! requests answered after the last regular scrape are missing.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A bound on each wait, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lameduck-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `lameduck demo` with `args`; its HTTP and admin addresses.
async fn demo(args: &[&str]) -> (Child, SocketAddr, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--output",
            "json",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async |prefix: &str| -> SocketAddr {
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("the demo says where it listens")
            .unwrap()
            .expect("a line");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line:?}"))
            .parse()
            .unwrap()
    };
    let (a, b) = (
        next("listening on http://").await,
        next("admin on http://").await,
    );
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, a, b)
}

/// One GET; the status and body, or `None` when the server is gone.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", "test")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Clients that send requests back to back until the demo stops
/// answering; the responses they received.
fn load(
    addr: SocketAddr,
    clients: usize,
) -> (
    Arc<AtomicU64>,
    Arc<AtomicBool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = (0..clients)
        .map(|_| {
            let (received, stop) = (received.clone(), stop.clone());
            tokio::spawn(async move {
                // Bounded: the demo stops answering within its budget.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match get(addr, "/work?ms=5").await {
                        Some((200, _)) => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(_) => {}
                        None => return,
                    }
                }
            })
        })
        .collect();
    (received, stop, tasks)
}

/// Waits, polling at most every 200 ms, until `check` says yes.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let waited = tokio::time::timeout(BOUND, async {
        loop {
            tick.tick().await;
            if check().await {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "never: {what}");
}

/// Debian's Prometheus on a free loopback port, scraping `target` every
/// second; stopped (by its pid) and its storage removed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Prometheus {
    async fn start(target: SocketAddr, tag: &str) -> Self {
        let dir = scratch(tag);
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: demo\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("Debian's prometheus (scripts/test installs it)");
        let me = Self { child, addr, dir };
        until("Prometheus is ready", || async {
            matches!(get(me.addr, "/-/ready").await, Some((200, _)))
        })
        .await;
        me
    }

    /// The value of an instant query with one result.
    async fn query(&self, q: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode(q));
        let (_, body) = get(self.addr, &path).await?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Loads the demo, waits until Prometheus has its metrics, SIGTERMs it
/// under load, and returns (responses received, last sample in Prometheus).
async fn shut_down_under_load_while_scraped(final_scrape: &str) -> (u64, f64) {
    let (mut child, addr, admin) =
        demo(&["--drain-delay", "2s", "--final-scrape", final_scrape]).await;
    let prometheus = Prometheus::start(admin, &format!("prometheus-{final_scrape}")).await;
    let (received, stop, clients) = load(addr, 4);
    until("Prometheus scraped the demo", || async {
        prometheus.query("up{job=\"demo\"}").await == Some(1.0)
    })
    .await;
    let pid = Pid::from_raw(child.id().unwrap() as i32);
    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(BOUND, child.wait())
        .await
        .expect("the demo exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let received = received.load(Ordering::Relaxed);
    // The last sample, wherever it fell: staleness markers are skipped.
    let q =
        "sum(last_over_time(lameduck_http_requests_total{job=\"demo\",outcome=\"answered\"}[10m]))";
    let last = prometheus
        .query(q)
        .await
        .expect("Prometheus has the counter");
    (received, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_final_scrape_prometheus_has_every_request_the_clients_received() {
    let (received, last) = shut_down_under_load_while_scraped("5s").await;
    assert!(received > 0);
    assert_eq!(
        last, received as f64,
        "received {received}, Prometheus's last sample {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_final_scrape_prometheus_misses_the_requests_after_its_last_scrape() {
    let (received, last) = shut_down_under_load_while_scraped("0s").await;
    assert!(
        last < received as f64,
        "the gap the final scrape closes: received {received}, Prometheus's last sample {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_scraper_the_final_values_reach_the_pushgateway() {
    let gw: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let dir = scratch("pushgateway");
    let mut pushgateway = Command::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address={gw}"))
        .arg(format!("--persistence.file={}", dir.join("p").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("Debian's prometheus-pushgateway (scripts/test installs it)");
    until("the Pushgateway is ready", || async {
        matches!(get(gw, "/-/ready").await, Some((200, _)))
    })
    .await;
    let url = format!("http://{gw}");
    let (mut child, addr, _) = demo(&[
        "--drain-delay",
        "1s",
        "--pushgateway",
        &url,
        "--push-instance",
        "test",
    ])
    .await;
    let (received, stop, clients) = load(addr, 2);
    until("requests are answered", || async {
        received.load(Ordering::Relaxed) > 50
    })
    .await;
    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(BOUND, child.wait())
        .await
        .expect("the demo exits")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let (_, text) = get(gw, "/metrics").await.expect("the Pushgateway answers");
    let pushed: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("lameduck_http_requests_total{")
                && l.contains("outcome=\"answered\"")
                && l.contains("job=\"demo\"")
                && l.contains("instance=\"test\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let received = received.load(Ordering::Relaxed);
    assert_eq!(
        pushed, received as f64,
        "received {received}; pushed:\n{text}"
    );
    let _ = pushgateway.start_kill();
    let _ = pushgateway.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}
