//! `lameduck run` sees the traffic on the sockets it holds (`--listen`):
//! a real Python server on the inherited socket, real clients, real
//! signals. The drain ends when the clients have stopped, and not while a
//! keep-alive client still sends or new connections still come.

mod run_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use run_support::*;
use serde_json::Value;

/// The "drain ended" event.
fn drain_ended(run: &Running) -> Value {
    run.event("drain ended", |_| true)
}

/// A client that sends until `stop`, in a thread: `send` once per round,
/// a round every 20 ms (the pace of a client, not a synchronisation).
fn client_until(stop: Arc<AtomicBool>, mut send: Box<dyn FnMut() -> bool + Send>) {
    std::thread::spawn(move || {
        for _ in 0..5_000 {
            if stop.load(Ordering::Relaxed) || !send() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// One request on a keep-alive connection, its response read whole.
fn keep_alive_request(conn: &mut TcpStream) -> bool {
    if conn
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let Ok(n) = conn.read(&mut buf) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                return true;
            }
        }
    }
}

#[test]
fn a_drain_ends_by_quiet_once_the_clients_stopped_well_before_drain_max() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    // The default quiet (1 s): while the program runs, the socket is
    // listed every other tick.
    let (mut run, port) = start_server(&["--drain-max", "60s"], false);
    // Listed every other tick, the traffic needs twice as long to be
    // enough to go by (five listings with arrivals).
    traffic_for(port, Duration::from_secs(3));
    run.signal(Signal::SIGTERM);
    run.event("drain watching the connections on http", |_| true);
    let drain = drain_ended(&run);
    let ended = drain["ended"].as_str().unwrap();
    assert!(
        ended.starts_with("quiet for"),
        "the drain ended by {ended:?}, not by quiet; stderr:\n{}",
        run.log()
    );
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

/// Runs the server, traffic before the signal, then `client` (made with
/// the port) sending through the drain: the drain must last `drain_max`,
/// with the client's traffic seen.
fn drain_while_a_client_sends(
    keep_alive: bool,
    client: impl FnOnce(u16) -> Box<dyn FnMut() -> bool + Send>,
) {
    let (mut run, port) =
        start_server(&["--drain-max", "2s", "--drain-quiet", "300ms"], keep_alive);
    traffic_for(port, Duration::from_millis(1500));
    let stop = Arc::new(AtomicBool::new(false));
    client_until(stop.clone(), client(port));
    run.signal(Signal::SIGTERM);
    let drain = drain_ended(&run);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(drain["ended"], "drain_max reached", "{}", run.log());
    // The traffic before the signal was enough to end on quiet: what held
    // the drain was the client's, seen.
    assert!(drain["quiet_needed_ms"].is_u64(), "{drain}");
    let arrivals = drain["arrivals"].as_u64().unwrap();
    assert!(arrivals >= 5, "{arrivals} arrivals seen during the drain");
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}

#[test]
fn a_keep_alive_client_that_keeps_sending_keeps_the_drain_to_drain_max() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    drain_while_a_client_sends(true, |port| {
        // One connection, opened and used before the signal.
        let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(WAIT)).unwrap();
        assert!(
            keep_alive_request(&mut conn),
            "the keep-alive request failed"
        );
        Box::new(move || keep_alive_request(&mut conn))
    });
}

#[test]
fn new_connections_during_the_drain_are_traffic() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    // A balancer that has not caught up: a new connection per request.
    drain_while_a_client_sends(false, |port| Box::new(move || get(port, "/").is_some()));
}

#[test]
fn a_program_that_binds_its_own_port_gets_a_fixed_drain_and_the_log_says_why() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let port = free_port().to_string();
    let server = programs().join("naive_server.py");
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--drain-max",
        "500ms",
        "--drain-quiet",
        "100ms",
        "--",
        "python3",
        server.to_str().unwrap(),
        &port,
    ]);
    run.event("phase changed", |v| v["phase"] == "running");
    run.signal(Signal::SIGTERM);
    run.event("drain fixed: no socket to watch", |_| true);
    assert_eq!(drain_ended(&run)["ended"], "drain delay over");
    assert_eq!(run.wait(), Some(0), "{}", run.log());
}
