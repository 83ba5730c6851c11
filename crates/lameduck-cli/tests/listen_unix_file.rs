//! The file of a Unix socket `lameduck run` binds for its program
//! (`--listen NAME=unix:PATH`): there while lameduck runs, removed when it
//! exits. (The library's side, upgrades and systemd's sockets included, is
//! in lameduck-tests' `listen_socket_files`.)

mod run_support;

use nix::sys::signal::Signal;
use run_support::*;

#[test]
fn a_unix_socket_file_lameduck_run_bound_is_removed_at_its_exit() {
    let dir = Scratch::new("unix-file");
    let path = dir.path("api.sock");
    let spec = format!("api=unix:{}", path.display());
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--drain-delay",
        "0s",
        "--listen",
        &spec,
        "--",
        "sleep",
        "1000",
    ]);
    run.event("phase changed", |v| v["phase"] == "running");
    assert!(path.exists(), "{}", run.log());
    run.signal(Signal::SIGTERM);
    run.wait();
    assert!(
        !path.exists(),
        "the socket file is left after the exit:\n{}",
        run.log()
    );
}
