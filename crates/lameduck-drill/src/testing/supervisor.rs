//! `hup=workers`: a supervisor that keeps its PID, as nginx's master and
//! gunicorn's arbiter do. It holds the listening socket but never accepts on
//! it: its one worker process (a copy of this program, started as by the
//! handoff) serves. On `SIGHUP` it starts a new worker, waits until it is
//! ready, then retires the old one with `SIGTERM`; a worker stops accepting
//! at once when told to retire, finishes what it has and exits.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::{TargetConfig, handoff};
use crate::process::is_alive;

/// Set in a worker's environment.
const ROLE_ENV: &str = "LAMEDUCK_DRILL_TARGET_ROLE";
/// How long the supervisor waits for its last worker when it stops.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Whether this process is a supervisor's worker.
pub(super) fn is_worker() -> bool {
    std::env::var_os(ROLE_ENV).is_some_and(|role| role == "worker")
}

/// Runs the supervisor until `SIGTERM`; returns the exit code.
pub(super) async fn supervise(config: TargetConfig) -> i32 {
    let listener = TcpListener::bind(("127.0.0.1", config.port))
        .await
        .expect("bind the test supervisor");
    eprintln!(
        "test supervisor (pid {}) listening on {}",
        std::process::id(),
        listener.local_addr().expect("a bound address")
    );
    let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("a SIGHUP handler");
    let mut worker = start_worker(&listener)
        .await
        .expect("the first worker starts");
    loop {
        tokio::select! {
            _ = hup.recv() => match start_worker(&listener).await {
                Ok(new) => {
                    eprintln!("test supervisor: worker {new} replaces worker {worker}");
                    retire(worker);
                    worker = new;
                }
                Err(err) => eprintln!("test supervisor: no new worker, the old one serves on: {err}"),
            },
            _ = term.recv() => {
                retire(worker);
                let deadline = Instant::now() + STOP_WAIT;
                while is_alive(worker) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return 0;
            }
        }
    }
}

async fn start_worker(listener: &TcpListener) -> std::io::Result<u32> {
    handoff::start_successor(listener, &[(ROLE_ENV, "worker")]).await
}

fn retire(worker: u32) {
    if let Ok(pid) = i32::try_from(worker) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}
