//! The socket file of a Unix listener: removed when the service that
//! created it exits for good, kept while an upgrade hands it over (the new
//! process serves it, and removes it at its own exit), and never removed
//! when systemd passed the socket (the file is the socket unit's).

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use lameduck::listen::Handoff;
use support::{FIXTURE, Scratch, Service};

/// One request over the Unix socket at `path`: the answer's body.
fn get(path: &Path) -> String {
    let mut u = std::os::unix::net::UnixStream::connect(path).expect("connect");
    u.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    u.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_unix_socket_file_is_removed_when_the_service_exits() {
    let dir = Scratch::new("socket-file-exit");
    let path = dir.path("app.sock");
    let mut s = Service::start(&["--unix", path.to_str().unwrap()]);
    let pid = s.first_pid;
    s.wait_event(pid, &format!("listening unix {}", path.display()));
    assert!(get(&path).ends_with(&format!("pid {pid} gen 0\n")));
    assert_eq!(s.terminate(pid), 0);
    assert_eq!(s.wait_first().code(), Some(0));
    assert!(!path.exists(), "the socket file is left after the exit");
}

#[test]
fn a_unix_socket_file_handed_over_in_an_upgrade_stays_until_the_last_process_exits() {
    let dir = Scratch::new("socket-file-upgrade");
    let path = dir.path("app.sock");
    let mut s = Service::start(&["--unix", path.to_str().unwrap()]);
    let old = s.first_pid;
    s.wait_event(old, &format!("listening unix {}", path.display()));

    // The old process has exited 0 once this returns.
    let new = s.upgrade_once(old);
    assert!(
        path.exists(),
        "the old process removed the file it handed over"
    );
    assert!(get(&path).ends_with(&format!("pid {new} gen 1\n")));

    // And the new process, which inherited it, removes it at its exit.
    assert_eq!(s.terminate(new), 0);
    assert!(
        !path.exists(),
        "the socket file is left after the last exit"
    );
}

#[test]
fn a_unix_socket_file_from_systemd_is_left_alone() {
    let dir = Scratch::new("socket-file-systemd");
    let path = dir.path("app.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut cmd = Command::new(FIXTURE);
    cmd.args(["--unix", path.to_str().unwrap()]);
    Handoff::new()
        .listener("unix", &unix)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    let mut s = Service::start_with(cmd);
    let pid = s.first_pid;
    s.wait_event(pid, "inherited [unix]");
    assert_eq!(s.terminate(pid), 0);
    assert_eq!(s.wait_first().code(), Some(0));
    assert!(path.exists(), "the file of systemd's socket was removed");
}
