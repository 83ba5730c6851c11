//! sd_notify as systemd would see it: a fake `NOTIFY_SOCKET` owned by the
//! test (with `SO_PASSCRED`, so each message carries its sender's pid, as
//! systemd checks), the fixture started, upgraded and stopped, and the
//! messages checked in order.

mod support;

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use support::{FIXTURE, Scratch, Service, WAIT};

/// A fake systemd: receives datagrams with the sender's pid.
struct Systemd {
    socket: UnixDatagram,
    /// (sender pid, message) in arrival order, watchdog pings included.
    log: Vec<(u32, String)>,
}

impl Systemd {
    fn bind(dir: &Scratch) -> (Self, String) {
        let path = dir.path("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        setsockopt(&socket, sockopt::PassCred, &true).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        (
            Self {
                socket,
                log: Vec::new(),
            },
            path.to_str().unwrap().to_string(),
        )
    }

    fn recv(&mut self) -> (u32, String) {
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!(UnixCredentials);
        let msg = recvmsg::<()>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap_or_else(|e| panic!("no message from the service ({e}); so far {:#?}", self.log));
        let pid = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid() as u32),
                _ => None,
            })
            .expect("credentials");
        let n = msg.bytes;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.log.push((pid, text.clone()));
        (pid, text)
    }

    /// The next message from `pid` that is not a watchdog ping; messages
    /// from other senders in between are kept in the log.
    fn next_from(&mut self, pid: u32) -> String {
        loop {
            let (p, m) = self.recv();
            if p == pid && m != "WATCHDOG=1\n" {
                return m;
            }
        }
    }

    /// Waits for a watchdog ping from `pid`.
    fn ping_from(&mut self, pid: u32) {
        while self.recv() != (pid, "WATCHDOG=1\n".to_string()) {}
    }
}

fn monotonic_usec_now() -> u128 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32).as_micros()
}

#[test]
fn notifications_follow_start_upgrade_and_stop_in_order() {
    let dir = Scratch::new("notify");
    let (mut systemd, path) = Systemd::bind(&dir);
    let mut cmd = Command::new(FIXTURE);
    cmd.args([
        "--drain-delay",
        "100ms",
        "--upgrade-timeout",
        "20s",
        "--grace-period",
        "30s",
    ])
    .env("NOTIFY_SOCKET", &path)
    .env("WATCHDOG_USEC", "200000");
    let mut s = Service::start_with(cmd);
    let old = s.first_pid;

    assert_eq!(systemd.next_from(old), "STATUS=starting\n");
    assert_eq!(systemd.next_from(old), "READY=1\nSTATUS=running\n");
    systemd.ping_from(old);

    let before = monotonic_usec_now();
    s.signal(old, Signal::SIGHUP);
    let reloading = systemd.next_from(old);
    let after = monotonic_usec_now();
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines[0], "RELOADING=1", "{reloading}");
    let usec: u128 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .expect("MONOTONIC_USEC")
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "{before} <= {usec} <= {after}"
    );
    assert_eq!(
        &lines[2..],
        [
            "EXTEND_TIMEOUT_USEC=20000000",
            "STATUS=upgrading: starting a new process"
        ]
    );

    let new = s.wait_successor(old);
    let handoff = systemd.next_from(old);
    assert_eq!(
        handoff,
        format!("MAINPID={new}\nREADY=1\nSTATUS=upgraded: pid {new} serves; pid {old} drains\n"),
        "sent by the old process, still the main one when it is sent"
    );
    assert_eq!(s.wait_first().code(), Some(0));
    systemd.ping_from(new);

    assert_eq!(s.terminate(new), 0);
    let stopping = systemd.next_from(new);
    let lines: Vec<&str> = stopping.lines().collect();
    assert_eq!(
        lines[..2],
        ["STOPPING=1", "STATUS=draining: SIGTERM"],
        "{stopping}"
    );
    let extend: u64 = lines[2]
        .strip_prefix("EXTEND_TIMEOUT_USEC=")
        .expect("EXTEND_TIMEOUT_USEC")
        .parse()
        .unwrap();
    assert!(
        extend > 29_000_000 && extend <= 30_000_000,
        "what is left of the 30s grace period: {extend}"
    );
    for phase in ["stopping", "closing"] {
        let m = systemd.next_from(new);
        assert!(
            m.starts_with(&format!("STATUS={phase}\nEXTEND_TIMEOUT_USEC=")),
            "{m}"
        );
    }
    assert_eq!(systemd.next_from(new), "STATUS=stopped\n");

    // The new process said nothing before the old one named it the main
    // process, and the old one said nothing after.
    let handed = systemd
        .log
        .iter()
        .position(|(p, m)| *p == old && m.starts_with("MAINPID="))
        .unwrap();
    assert!(
        !systemd.log[..handed].iter().any(|(p, _)| *p == new),
        "{:#?}",
        systemd.log
    );
    assert!(
        !systemd.log[handed + 1..].iter().any(|(p, _)| *p == old),
        "{:#?}",
        systemd.log
    );
}
