//! `lameduck run` and the listening sockets it holds for the program: kept
//! while instances come and go, given up at a final shutdown (a client is
//! then refused once the program closes its listener, as without
//! lameduck), and the connections a close of lameduck's last copy resets
//! are counted in the log and the exit code.

mod run_support;

use std::net::TcpStream;
use std::time::Instant;

use nix::sys::signal::Signal;
use run_support::*;

/// `lameduck run --listen http=127.0.0.1:0 ARGS -- closes_listener.py
/// PROGRAM_ARGS`, once the program said `ready`: the run and the port.
fn start_closer(args: &[&str], program_args: &[&str]) -> (Running, u16) {
    let program = programs().join("closes_listener.py");
    let mut all = vec!["python3", program.to_str().unwrap()];
    all.extend_from_slice(program_args);
    let (run, port) = start_listening(args, &all);
    until_line(&run, "ready");
    (run, port)
}

/// Waits (bounded) for the program to print `line`.
#[track_caller]
fn until_line(run: &Running, line: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match run.stdout.recv_timeout(left) {
            Ok(l) if l == line => return,
            Ok(_) => {}
            Err(_) => panic!("the program never printed {line:?}; stderr:\n{}", run.log()),
        }
    }
}

/// The accept queue of the socket listening on 127.0.0.1:`port`, as
/// `/proc/net/tcp` lists it (`rx_queue` of a `LISTEN` socket); `None`
/// when nothing listens there.
fn accept_queue(port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[1] == local && f[3] == "0A")
            .then(|| u32::from_str_radix(f[4].split_once(':').unwrap().1, 16).unwrap())
    })
}

/// Waits (bounded) until `n` connections are in the queue of the socket on
/// `port`.
#[track_caller]
fn until_queued(port: u16, n: u32) {
    let deadline = Instant::now() + WAIT;
    while accept_queue(port) != Some(n) {
        assert!(Instant::now() < deadline, "queue: {:?}", accept_queue(port));
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn at_a_shutdown_the_socket_stops_listening_when_the_program_closes_its_listener() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let dir = Scratch::new("sockets-given-up");
    let fifo = dir.path("exit");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (mut run, port) = start_closer(
        &["--drain-delay", "0s"],
        &["on-term", fifo.to_str().unwrap()],
    );
    run.signal(Signal::SIGTERM);
    until_line(&run, "closed");
    // The program has closed its listener and is still finishing: a new
    // client is refused, not queued on lameduck's copy and reset at its
    // exit.
    let err = TcpStream::connect(("127.0.0.1", port))
        .map(|_| ())
        .expect_err("a connection to a socket nobody listens on any more");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // Let the program exit.
    release(&fifo);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(
        run.log().contains("giving up lameduck's copy of http"),
        "{}",
        run.log()
    );
}

#[test]
fn connections_queued_on_the_last_copy_of_a_socket_are_counted_and_the_exit_is_not_clean() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    // The program closes its listener at once: only lameduck's copy keeps
    // the socket listening (as it must, for a restart), and it queues.
    // ("ready" comes after "closed".)
    let (mut run, port) = start_closer(&["--drain-delay", "0s"], &["at-once"]);
    let _clients: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    until_queued(port, 2);
    run.signal(Signal::SIGTERM);
    let lost = run.event("lost (reset)", |_| true);
    assert_eq!(lost["lost"], 2, "{lost}");
    let report = run.event("shutdown report", |_| true);
    assert_eq!(report["status"], "component failed (1)", "{report}");
    assert_eq!(run.wait(), Some(1), "{}", run.log());
    assert_eq!(accept_queue(port), None, "the socket is closed");
}

#[test]
fn a_program_that_exits_for_good_leaves_its_queued_connections_counted() {
    if !has_python() {
        eprintln!("skipped: no python3");
        return;
    }
    let (mut run, port) = start_closer(&["--restart", "never"], &["at-once"]);
    let pid = run.event("program started", |_| true)["pid"]
        .as_i64()
        .unwrap() as i32;
    let _clients: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    until_queued(port, 2);
    // The program exits by itself (lameduck did not ask it to), for good:
    // lameduck closes the socket, the last copy, with two in its queue.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    let lost = run.event("lost (reset)", |_| true);
    assert_eq!(lost["lost"], 2, "{lost}");
    let report = run.event("shutdown report", |_| true);
    assert_eq!(report["status"], "component failed (1)", "{report}");
    assert_eq!(run.wait(), Some(1), "{}", run.log());
}

/// A Unix socket given (`--listen http=unix:PATH`) to a program that takes
/// `http` as TCP (here `lameduck demo`): the program's error says what it
/// was given and what it expected, and claims no address it binds.
#[test]
fn a_unix_socket_given_to_a_program_that_expects_tcp_is_named_for_what_it_is() {
    let dir = Scratch::new("unix-for-tcp");
    let path = dir.path("http.sock");
    let listen = format!("http=unix:{}", path.display());
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--restart",
        "never",
        "--listen",
        &listen,
        "--",
        env!("CARGO_BIN_EXE_lameduck"),
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ]);
    // The demo refuses its socket and fails: lameduck exits with its code.
    let code = run.wait();
    assert!(code.is_some_and(|c| c != 0), "{code:?}: {}", run.log());
    let log = run.log();
    assert!(
        log.contains("the inherited socket \"http\" is not a TCP socket: it is a Unix socket"),
        "{log}"
    );
    assert!(!log.contains("binding"), "{log}");
}
