//! Every listener lameduck binds has one backlog: the larger of 1024 and
//! the system's `net.core.somaxconn` (the standard library binds with 128,
//! which a burst of reconnects overflows). Read back with `ss`, as an
//! operator would.
#![cfg(all(unix, feature = "http", feature = "upgrade"))]

use std::process::Command;

use lameduck::default_listen_backlog;
use lameduck::http::{Probes, Server};
use lameduck::listen::Listeners;

/// The backlog `ss` reports for the listening socket at `local`
/// (`127.0.0.1:PORT` or a Unix socket path): its Send-Q column.
fn backlog_of(local: &str, unix: bool) -> u32 {
    let output = Command::new("ss")
        .args(if unix { ["-lxnH"] } else { ["-ltnH"] })
        .output()
        .expect("`ss` (Debian package iproute2) must be installed to read listen backlogs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // TCP: State Recv-Q Send-Q Local Peer; Unix: Netid State Recv-Q
        // Send-Q Local Port Peer Port.
        let (send_q, addr) = if unix {
            (cols.get(3), cols.get(4))
        } else {
            (cols.get(2), cols.get(3))
        };
        if addr == Some(&local) {
            return send_q.unwrap().parse().unwrap();
        }
    }
    panic!("{local} not listed by ss:\n{text}");
}

#[tokio::test]
async fn every_kind_of_listener_gets_the_same_backlog_of_at_least_1024() {
    let want = default_listen_backlog();
    assert!(want >= 1024);

    let server = Server::bind("127.0.0.1:0", Probes::new(lameduck::Health::new()))
        .unwrap()
        .admin("127.0.0.1:0")
        .unwrap();
    let main = server.local_addr().unwrap().to_string();
    let admin = server.admin_addr().unwrap().to_string();
    assert_eq!(backlog_of(&main, false), want, "Server::bind");
    assert_eq!(backlog_of(&admin, false), want, "Server::admin");

    let mut listeners = Listeners::none();
    let tcp = listeners.tcp("http", "127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap().to_string();
    assert_eq!(backlog_of(&addr, false), want, "Listeners::tcp");

    let dir = std::env::temp_dir().join(format!("lameduck-backlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let unix = listeners.unix("admin", &path).unwrap();
    assert_eq!(
        backlog_of(path.to_str().unwrap(), true),
        want,
        "Listeners::unix"
    );
    drop(unix);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_backlog_can_be_chosen() {
    let server =
        Server::bind_with_backlog("127.0.0.1:0", 77, Probes::new(lameduck::Health::new())).unwrap();
    assert_eq!(
        backlog_of(&server.local_addr().unwrap().to_string(), false),
        77
    );
    let mut listeners = Listeners::none().with_backlog(99);
    let tcp = listeners.tcp("http", "127.0.0.1:0").unwrap();
    assert_eq!(
        backlog_of(&tcp.local_addr().unwrap().to_string(), false),
        99
    );
}
