//! `lameduck demo` under load, stopped with a real SIGTERM: it exits 0 and
//! no request that started before the listener closed fails.
//!
//! Clients of two kinds hit a trivial route as fast as the machine allows:
//! keep-alive ones (reconnecting whenever the server says
//! `Connection: close`) and fresh-connection ones (a new connection per
//! request, the bursty arrivals that race the listener's close). A request
//! has started once its connection is established; a refused connect means
//! the listener had closed, which ends that client. The shutdown is repeated
//! several times to give both races (a request unread in a socket buffer, a
//! connection still in the accept queue) their chances.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::Notify;
use tokio::time::timeout;

const ROUNDS: usize = 4;
const KEEP_ALIVE_CLIENTS: usize = 8;
const FRESH_CLIENTS: usize = 8;
/// Requests served before the signal, so that it lands mid-load.
const WARM_UP: usize = 300;
/// Safety bounds, never reached when things work: no test hangs.
const BOUND: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    told_to_close: AtomicUsize,
    refused: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_0_and_fails_no_request_started_before_the_listener_closed() {
    for round in 0..ROUNDS {
        let tally = Arc::new(Tally::default());
        let mut child = Command::new(env!("CARGO_BIN_EXE_lameduck"))
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args([
                "--drain-delay",
                "200ms",
                "--grace-period",
                "10s",
                "--output",
                "json",
            ])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning lameduck demo");
        let (addr, _stdout) = listening_addr(&mut child).await;

        let warm = Arc::new(Notify::new());
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..KEEP_ALIVE_CLIENTS {
            clients.spawn(client(addr, true, tally.clone(), warm.clone()));
        }
        for _ in 0..FRESH_CLIENTS {
            clients.spawn(client(addr, false, tally.clone(), warm.clone()));
        }
        timeout(BOUND, warm.notified())
            .await
            .expect("warm-up bound");

        let pid = Pid::from_raw(child.id().expect("running").try_into().unwrap());
        kill(pid, Signal::SIGTERM).expect("SIGTERM");
        let status = timeout(BOUND, child.wait())
            .await
            .expect("exit bound")
            .unwrap();
        timeout(BOUND, async {
            while clients.join_next().await.is_some() {}
        })
        .await
        .expect("clients bound");

        let failures = tally.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "round {round}: {} requests failed after they started, e.g. {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: exit status {status}"
        );
        assert!(tally.ok.load(Ordering::Relaxed) >= WARM_UP, "round {round}");
        assert!(
            tally.told_to_close.load(Ordering::Relaxed) > 0,
            "round {round}: no keep-alive client was told Connection: close while draining"
        );
        assert!(
            tally.refused.load(Ordering::Relaxed) > 0,
            "round {round}: the listener never closed under load"
        );
    }
}

/// Reads the `listening on http://ADDR` line the demo prints first. The
/// reader is returned to be kept open: the demo must not meet a closed pipe.
async fn listening_addr(
    child: &mut tokio::process::Child,
) -> (
    SocketAddr,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = timeout(BOUND, lines.next_line())
        .await
        .expect("the demo prints its address")
        .unwrap()
        .expect("a line on stdout");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (addr.parse().unwrap(), lines)
}

/// Sends requests until the listener refuses a connection (or the bound).
async fn client(addr: SocketAddr, keep_alive: bool, tally: Arc<Tally>, warm: Arc<Notify>) {
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut conn: Option<BufReader<TcpStream>> = None;
    while tokio::time::Instant::now() < deadline {
        let mut stream = match conn.take() {
            Some(stream) => stream,
            None => match TcpStream::connect(addr).await {
                Ok(stream) => BufReader::new(stream),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(err) => {
                    tally.fail(format!("connect: {err}"));
                    return;
                }
            },
        };
        // From here the request has started: it must get its answer.
        match timeout(Duration::from_secs(5), exchange(&mut stream, keep_alive)).await {
            Ok(Ok(server_closes)) => {
                if tally.ok.fetch_add(1, Ordering::Relaxed) + 1 == WARM_UP {
                    warm.notify_one();
                }
                if keep_alive && server_closes {
                    tally.told_to_close.fetch_add(1, Ordering::Relaxed);
                }
                if keep_alive && !server_closes {
                    conn = Some(stream);
                }
            }
            Ok(Err(err)) => tally.fail(format!(
                "{}: {err}",
                if keep_alive { "keep-alive" } else { "fresh" }
            )),
            Err(_) => tally.fail("no answer within 5s".into()),
        }
    }
}

/// One request and its response; whether the server will close the
/// connection after it.
async fn exchange(stream: &mut BufReader<TcpStream>, keep_alive: bool) -> std::io::Result<bool> {
    let request: &[u8] = if keep_alive {
        b"GET / HTTP/1.1\r\nhost: demo\r\n\r\n"
    } else {
        b"GET / HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n"
    };
    stream.get_mut().write_all(request).await?;
    let mut status = String::new();
    if stream.read_line(&mut status).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before a response",
        ));
    }
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!(
            "status {}",
            status.trim_end()
        )));
    }
    let (mut length, mut close) = (None, false);
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        }
        if line == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0; length.ok_or_else(|| std::io::Error::other("no content-length"))?];
    stream.read_exact(&mut body).await?;
    Ok(close)
}
