//! `lameduck demo` as a child process on free loopback ports, for the
//! tests that drive it with real clients and real signals.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// A bound on the demo's start, never reached when things work.
const START_BOUND: Duration = Duration::from_secs(20);

/// A running demo; killed when dropped.
pub struct Demo {
    pub child: Child,
    pub addr: SocketAddr,
    /// The admin listener: probes and metrics.
    pub admin: SocketAddr,
    pub pid: Pid,
}

impl Demo {
    /// Starts `lameduck demo` on 127.0.0.1:0 (both ports) with `args`, and
    /// waits for the address it prints. Its stdout is read to the end in
    /// the background (the demo must never meet a closed pipe); its stderr
    /// is `stderr`.
    pub async fn start(args: &[&str], stderr: Stdio) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lameduck"))
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawning lameduck demo");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let line = timeout(START_BOUND, stdout.next_line())
            .await
            .expect("the demo prints its address")
            .expect("reading stdout")
            .expect("a line on stdout");
        let admin_line = timeout(START_BOUND, stdout.next_line())
            .await
            .expect("the demo prints its admin address")
            .expect("reading stdout")
            .expect("a second line on stdout");
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        let admin = admin_line
            .strip_prefix("admin on http://")
            .unwrap_or_else(|| panic!("unexpected second line {admin_line:?}"))
            .parse()
            .expect("an admin address");
        let pid = Pid::from_raw(child.id().expect("running").try_into().unwrap());
        Self {
            child,
            addr,
            admin,
            pid,
        }
    }

    /// Sends `signal` to the demo.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid, signal).expect("signalling the demo");
    }
}
