//! The peers of the rolling restarts, as real processes on real sockets:
//! each serves the bench's routes, and does at SIGTERM what its
//! documentation says (and docs/benchmarks.md reports).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use lameduck_bench::net::get_status;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Bound on every wait for observable state.
const BOUND: Duration = Duration::from_secs(20);
/// Time between two looks at it.
const POLL: Duration = Duration::from_millis(20);

/// A peer started on a free port, killed by PID when dropped.
struct Peer {
    child: Child,
    addr: SocketAddr,
}

impl Peer {
    fn start(program: &str, extra: &[&str]) -> Peer {
        let mut child = Command::new(program)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the peer starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout is piped"))
            .read_line(&mut line)
            .expect("the peer announces its address");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("announced {line:?}"))
            .parse()
            .expect("a socket address");
        Peer { child, addr }
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("a pid");
        kill(Pid::from_raw(pid), signal).expect("the peer can be signalled");
    }

    async fn status(&self, path: &str) -> Option<u16> {
        get_status(self.addr, path).await
    }

    /// Waits until `done` holds of the peer, at most [`BOUND`].
    async fn wait_until<F: Future<Output = bool>>(&self, what: &str, mut done: impl FnMut() -> F) {
        let deadline = Instant::now() + BOUND;
        while !done().await {
            assert!(Instant::now() < deadline, "{what}: not within {BOUND:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().expect("the peer can be waited for") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the peer did not exit within {BOUND:?}"
            );
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const DRAINLESS: [&str; 2] = [
    env!("CARGO_BIN_EXE_actix-graceful"),
    env!("CARGO_BIN_EXE_graceful-shutdown-axum"),
];

#[tokio::test]
async fn every_peer_serves_work_and_says_it_is_ready() {
    for program in DRAINLESS
        .into_iter()
        .chain([env!("CARGO_BIN_EXE_axum-article")])
    {
        let peer = Peer::start(program, &[]);
        assert_eq!(peer.status("/work?ms=1").await, Some(200), "{program}");
        assert_eq!(peer.status("/readyz").await, Some(200), "{program}");
    }
}

#[tokio::test]
async fn peers_without_a_drain_stop_listening_at_sigterm_and_exit_0() {
    for program in DRAINLESS {
        let mut peer = Peer::start(program, &[]);
        assert_eq!(peer.status("/readyz").await, Some(200), "{program}");
        peer.signal(Signal::SIGTERM);
        let addr = peer.addr;
        peer.wait_until("the listener closes", || async move {
            tokio::net::TcpStream::connect(addr).await.is_err()
        })
        .await;
        let status = peer.wait_exit();
        assert!(status.success(), "{program} exited with {status}");
    }
}

#[tokio::test]
async fn article_peer_turns_unready_at_sigterm_and_serves_through_its_drain() {
    // A drain far longer than the test: what is checked happens inside it.
    let peer = Peer::start(
        env!("CARGO_BIN_EXE_axum-article"),
        &["--drain-delay", "10m"],
    );
    assert_eq!(peer.status("/readyz").await, Some(200));
    peer.signal(Signal::SIGTERM);
    peer.wait_until("/readyz answers 503", || async {
        peer.status("/readyz").await == Some(503)
    })
    .await;
    assert_eq!(peer.status("/work?ms=1").await, Some(200));
}
