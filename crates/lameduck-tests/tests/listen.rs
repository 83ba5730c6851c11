//! Sockets from elsewhere: the fixture started with listening sockets in
//! the systemd convention (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`),
//! as systemd, a supervisor or an upgrading parent would start it — and
//! every malformed variant refused with an error that names its variable.

mod support;

use std::io::{Read, Write};
use std::process::Command;

use lameduck::listen::Handoff;
use support::{FIXTURE, Scratch, Service};

#[test]
fn named_tcp_and_unix_sockets_are_taken_from_the_environment() {
    let dir = Scratch::new("activation");
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let path = dir.path("app.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut cmd = Command::new(FIXTURE);
    cmd.args(["--listen", "127.0.0.1:1", "--unix", path.to_str().unwrap()]);
    Handoff::new()
        .listener("http", &tcp)
        .unwrap()
        .listener("unix", &unix)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    let mut s = Service::start_with(cmd);
    let pid = s.first_pid;
    s.wait_event(pid, "inherited [http,unix]");
    assert_eq!(
        s.addr(),
        addr,
        "serves on the inherited socket, not on --listen"
    );

    // Both sockets serve, through the descriptors the test passed: the
    // test's own copies are still open, so it is the same socket.
    let mut t = std::net::TcpStream::connect(addr).unwrap();
    t.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    t.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with(&format!("pid {pid} gen 0\n")), "{answer}");
    let mut u = std::os::unix::net::UnixStream::connect(&path).unwrap();
    u.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    u.read_to_string(&mut answer).unwrap();
    assert!(answer.ends_with(&format!("pid {pid} gen 0\n")), "{answer}");
    assert_eq!(s.terminate(pid), 0);
}

/// Runs the fixture as `cmd` and expects it to refuse its environment:
/// exit 78, the error on stderr, the variable in the event.
fn refused(mut cmd: Command, variable: &str, message: &str) {
    let out = cmd.output().expect("run the fixture");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stdout}\n{stderr}");
    assert!(stderr.contains(message), "want {message:?} in:\n{stderr}");
    assert!(
        stdout.contains(&format!("listen-error {variable}")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("phase running"),
        "never a silent fall-back: {stdout}"
    );
}

/// The fixture, run through `sh` so that the variables `script` sets sit
/// next to a correct `LISTEN_PID` (`exec` keeps the shell's pid, which the
/// handoff wrote).
fn through_sh(script: &str, handoff: Handoff) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{script} exec \"$0\""), FIXTURE]);
    handoff.apply(&mut cmd).unwrap();
    cmd
}

fn one_listener() -> (std::net::TcpListener, Handoff) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let h = Handoff::new().listener("http", &l).unwrap();
    (l, h)
}

#[test]
fn a_listen_pid_of_another_process_is_refused() {
    let mut cmd = Command::new(FIXTURE);
    cmd.env("LISTEN_PID", "1").env("LISTEN_FDS", "1");
    refused(
        cmd,
        "LISTEN_PID",
        "LISTEN_PID: the sockets were passed to process 1, not to this one",
    );
}

#[test]
fn a_name_count_that_does_not_match_is_refused() {
    let (_l, h) = one_listener();
    refused(
        through_sh("LISTEN_FDNAMES=http:admin", h),
        "LISTEN_FDNAMES",
        "LISTEN_FDNAMES: has 2 names for 1 descriptor",
    );
}

#[test]
fn a_count_larger_than_the_descriptors_passed_is_refused() {
    let (_l, h) = one_listener();
    refused(
        through_sh("LISTEN_FDS=2 LISTEN_FDNAMES=http:admin", h),
        "LISTEN_FDS",
        // fd 4 is free at exec; by the time the variables are read the
        // runtime may own it. Either way: refused, and left alone.
        "LISTEN_FDS: fd 4 (\"admin\") is not",
    );
}

#[test]
fn non_numeric_values_are_refused() {
    let (_l, h) = one_listener();
    refused(
        through_sh("LISTEN_FDS=one", h),
        "LISTEN_FDS",
        "LISTEN_FDS: \"one\" is not a number of file descriptors",
    );
    let mut cmd = Command::new(FIXTURE);
    cmd.env("LISTEN_PID", "self").env("LISTEN_FDS", "1");
    refused(
        cmd,
        "LISTEN_PID",
        "LISTEN_PID: \"self\" is not a process id",
    );
}

#[test]
fn a_descriptor_that_is_not_a_listening_socket_is_refused() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cmd = Command::new(FIXTURE);
    Handoff::new()
        .listener("http", &udp)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    refused(
        cmd,
        "LISTEN_FDS",
        "LISTEN_FDS: fd 3 (\"http\") is a socket but not a listening one",
    );

    let file = std::fs::File::open(FIXTURE).unwrap();
    let mut cmd = Command::new(FIXTURE);
    Handoff::new()
        .listener("http", &file)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    refused(
        cmd,
        "LISTEN_FDS",
        "LISTEN_FDS: fd 3 (\"http\") is not a listening socket (not a socket at all)",
    );
}

#[test]
fn a_unix_socket_asked_for_as_tcp_is_refused() {
    let dir = Scratch::new("wrong-type");
    let unix = std::os::unix::net::UnixListener::bind(dir.path("s")).unwrap();
    let mut cmd = Command::new(FIXTURE);
    Handoff::new()
        .listener("http", &unix)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the inherited socket \"http\" is not a TCP socket"),
        "{stderr}"
    );
}

// Inherited descriptors that lie: every one is checked and claimed before
// anything is bound, or the start is refused naming the variable.

/// The private upgrade variables name fd 3, which `LISTEN_FDS` passes as a
/// listening socket: claiming it twice closed it under its listener (a
/// panic, `a listener holds a socket`). Refused instead.
#[test]
fn upgrade_variables_naming_an_inherited_listening_socket_are_refused() {
    let (_l, h) = one_listener();
    refused(
        through_sh("LAMEDUCK_UPGRADE_PID=$$ LAMEDUCK_UPGRADE_FD=3", h),
        "LAMEDUCK_UPGRADE_FD",
        "LAMEDUCK_UPGRADE_FD: fd 3 is also one of the LISTEN_FDS sockets",
    );
}

/// The private upgrade variables name fd 3, which is not the channel to a
/// parent (closed at exec; by the time the variables are read, the
/// runtime's or a socket the process bound): claiming it took the
/// process's own descriptor, both ports died, and `accept failed` was
/// logged forever. Refused instead, before anything is bound.
#[test]
fn upgrade_variables_naming_a_descriptor_that_is_not_the_channel_are_refused() {
    refused(
        through_sh(
            "LAMEDUCK_UPGRADE_PID=$$ LAMEDUCK_UPGRADE_FD=3",
            Handoff::new(),
        ),
        "LAMEDUCK_UPGRADE_FD",
        "LAMEDUCK_UPGRADE_FD: fd 3 is not",
    );
}

/// The fixture with `args`, passed `socket` under `name`.
fn fixture_with(name: &str, socket: &std::net::TcpListener, args: &[&str]) -> Command {
    let mut cmd = Command::new(FIXTURE);
    cmd.args(args);
    Handoff::new()
        .listener(name, socket)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    cmd
}

/// `systemd-socket-activate -l PORT` without `--fdname=http` passes the
/// socket as `unknown`, which the service never asks for: its connections
/// wait unserved. A warning at start names it and the names asked for.
#[test]
fn a_socket_inherited_under_a_name_nobody_asks_for_is_named_in_a_warning() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = Service::start_with(fixture_with("unknown", &l, &[]));
    s.wait_stderr(
        r#"inherited socket nobody took: \"unknown\" (fd 3); the service asked for \"http\""#,
    );
    let pid = s.first_pid;
    assert_eq!(s.terminate(pid), 0);
}

/// The same, with `Listeners::unclaimed(Unclaimed::Fail)`: the app does not
/// run, exit code 78, the same words.
#[test]
fn an_unclaimed_inherited_socket_stops_the_start_when_asked_to() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = fixture_with("unknown", &l, &["--fail-unclaimed"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(78), "{stdout}\n{stderr}");
    assert!(stderr.contains("nobody took"), "{stderr}");
    assert!(!stdout.contains("phase running"), "{stdout}");
}
