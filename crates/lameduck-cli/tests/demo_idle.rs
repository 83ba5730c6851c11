//! Idle keep-alive connections while nothing shuts down: the server closes
//! one only after its idle timeout, announces the timeout to clients
//! (`Keep-Alive: timeout=N`, one second less), and a pool that heeds the
//! header never sends a request into a closing connection. With the timeout
//! off, idle connections stay open.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use support::demo::Demo;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

/// Safety bound, never reached when things work.
const BOUND: Duration = Duration::from_secs(20);

async fn demo(idle_timeout: &str) -> (Demo, SocketAddr) {
    let demo = Demo::start(
        &["--idle-timeout", idle_timeout, "--output", "json"],
        Stdio::null(),
    )
    .await;
    let addr = demo.addr;
    (demo, addr)
}

/// One request on `stream`; the response's status line and its
/// `Keep-Alive` header, if any.
async fn get(stream: &mut BufReader<TcpStream>) -> std::io::Result<(String, Option<String>)> {
    stream
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nhost: demo\r\n\r\n")
        .await?;
    let mut status = String::new();
    if stream.read_line(&mut status).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let (mut length, mut keep_alive) = (0, None);
    loop {
        let mut line = String::new();
        stream.read_line(&mut line).await?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if let Some(v) = line.strip_prefix("keep-alive:") {
            keep_alive = Some(v.trim().to_string());
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok((status.trim_end().to_string(), keep_alive))
}

/// Waits (bounded) until the server closes `conn`, idle: cleanly, not
/// with a reset, and with nothing more sent.
async fn closed_cleanly(conn: &mut BufReader<TcpStream>) {
    let mut rest = Vec::new();
    timeout(BOUND, conn.read_to_end(&mut rest))
        .await
        .expect("the server closes an idle connection")
        .expect("a clean close, not a reset");
    assert!(rest.is_empty());
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(addr).await.expect("connect"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_heeds_keep_alive_loses_no_request_to_the_idle_timeout() {
    const CONNECTIONS: usize = 200;
    let (_demo, addr) = demo("2s").await;
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CONNECTIONS {
        clients.spawn(async move {
            let mut conn = connect(addr).await;
            let (status, keep_alive) = get(&mut conn).await.expect("the first request");
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            // The idle timeout, 2 s, less one second.
            assert_eq!(keep_alive.as_deref(), Some("timeout=1"));
            let announced = Duration::from_secs(1);
            let idle_from = Instant::now();
            // Reuse at a moment around the announced timeout: before it on
            // the pooled connection, after it on a new one, as a pool that
            // heeds the header does.
            let wait = Duration::from_millis(500 + (i as u64 * 997) % 1000);
            sleep(wait).await;
            if idle_from.elapsed() < announced {
                let (status, _) = get(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("reused after {wait:?}: {e}"));
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                false
            } else {
                let mut fresh = connect(addr).await;
                let (status, _) = get(&mut fresh)
                    .await
                    .expect("a request on a new connection");
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                // The retired connection: the server closes it, cleanly.
                closed_cleanly(&mut conn).await;
                true
            }
        });
    }
    let mut retired = 0;
    while let Some(joined) = timeout(BOUND, clients.join_next()).await.expect("bound") {
        retired += usize::from(joined.expect("a client failed"));
    }
    assert!(retired > 0 && retired < CONNECTIONS, "{retired} retired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_idle_timeout_off_idle_connections_stay_open() {
    let (_demo, addr) = demo("off").await;
    let mut conns = Vec::new();
    for _ in 0..20 {
        let mut conn = connect(addr).await;
        let (status, keep_alive) = get(&mut conn).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(keep_alive, None, "nothing to announce");
        conns.push(conn);
    }
    // Longer than the timeout of the other test; nothing may close them.
    sleep(Duration::from_secs(3)).await;
    for conn in &mut conns {
        let (status, _) = get(conn).await.expect("still open");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_under_two_seconds_is_not_announced_as_zero() {
    for idle in ["500ms", "1999ms"] {
        let (_demo, addr) = demo(idle).await;
        let mut conn = connect(addr).await;
        let (status, keep_alive) = get(&mut conn).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        // No whole second fits before the close: nothing is promised.
        assert_eq!(keep_alive, None, "--idle-timeout {idle}");
        // And the timeout still closes the idle connection, cleanly.
        closed_cleanly(&mut conn).await;
    }
}

#[test]
fn an_idle_timeout_of_zero_is_refused_and_off_is_named() {
    let out = support::run(&["demo", "--idle-timeout", "0s"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("0s") && out.stderr.contains("`off`"),
        "{}",
        out.stderr
    );
}
