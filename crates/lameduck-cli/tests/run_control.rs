//! `lameduck run --control-socket`: there from lameduck's start, so that a
//! monitor tells a program that starts from one that does not run.

mod run_support;

use nix::sys::signal::Signal;
use run_support::*;

/// The program is held unready (its check looks for a file the test
/// creates): `status` answers `starting` — where the socket did not exist
/// until the program was ready, and `status` failed with "no such file or
/// directory" — and `upgrade` is refused with why; once the program is
/// ready, `status` answers `running`.
#[test]
fn status_on_the_control_socket_answers_starting_while_the_program_is_not_ready() {
    let dir = Scratch::new("control-starting");
    let socket = dir.path("control.sock");
    let ready = dir.path("ready");
    let check = format!("exec:test -f {}", ready.display());
    let mut run = Running::start(&[
        "--admin",
        "none",
        "--drain-delay",
        "0s",
        "--ready",
        &check,
        "--ready-interval",
        "50ms",
        "--control-socket",
        socket.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.05; done",
    ]);
    run.event("control socket listening", |_| true);
    run.event("program started", |_| true);
    let pid = run.pid().as_raw();
    assert_eq!(
        control(&socket, "status"),
        format!("ok starting pid {pid}\n"),
        "{}",
        run.log()
    );
    let refused = control(&socket, "upgrade");
    assert!(
        refused.starts_with("error the app is still starting"),
        "{refused}"
    );
    assert!(!run.log().contains("restart: starting"), "{}", run.log());

    std::fs::write(&ready, "").unwrap();
    run.event("phase changed", |v| v["phase"] == "running");
    assert_eq!(
        control(&socket, "status"),
        format!("ok running pid {pid}\n")
    );
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    assert!(!socket.exists(), "the control socket is removed at exit");
}
