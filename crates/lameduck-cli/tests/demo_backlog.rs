//! A burst of connections larger than the standard library's backlog (128)
//! is queued by the kernel, not dropped: no client waits for a SYN
//! retransmit, and every one is served.
//!
//! The demo is stopped (SIGSTOP) during the burst, so that nothing is
//! accepted while it lasts and the queue must hold all of it: the outcome
//! does not depend on how fast the server accepts. The kernel counts every
//! overflow (`ListenOverflows`, `ListenDrops` in `/proc/net/netstat`); the
//! count must not move.
#![cfg(target_os = "linux")]

mod support;

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use support::demo::Demo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const BURST: usize = 512;
/// Safety bound, never reached when things work.
const BOUND: Duration = Duration::from_secs(30);

/// The kernel's count of connections dropped at full accept queues.
fn overflows() -> u64 {
    let text = std::fs::read_to_string("/proc/net/netstat").unwrap();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(name, _)| matches!(*name, "ListenOverflows" | "ListenDrops"))
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_512_connects_is_queued_not_dropped() {
    let demo = Demo::start(&["--output", "json"], Stdio::null()).await;
    let addr = demo.addr;
    demo.signal(Signal::SIGSTOP);
    let before = overflows();
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        connects.spawn(async move { TcpStream::connect(addr).await });
    }
    let mut streams = Vec::with_capacity(BURST);
    while let Some(joined) = timeout(BOUND, connects.join_next())
        .await
        .expect("every connect completes while the server is stopped")
    {
        streams.push(joined.unwrap().expect("connect"));
    }
    let dropped = overflows() - before;
    demo.signal(Signal::SIGCONT);
    assert_eq!(
        dropped, 0,
        "the kernel dropped connections at a full accept queue"
    );

    let mut served = tokio::task::JoinSet::new();
    for mut stream in streams {
        served.spawn(async move {
            stream
                .write_all(b"GET / HTTP/1.1\r\nhost: demo\r\nconnection: close\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            Ok::<_, std::io::Error>(response.starts_with(b"HTTP/1.1 200"))
        });
    }
    let mut ok = 0;
    while let Some(joined) = timeout(BOUND, served.join_next()).await.expect("bound") {
        ok += usize::from(joined.unwrap().expect("a response"));
    }
    assert_eq!(ok, BURST);
}
