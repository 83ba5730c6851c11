//! A new process that the old one stops — it exited before it was ready,
//! was not ready in time, or the upgrade was abandoned by a shutdown —
//! leaves nothing it started
//! behind: here the new process is a wrapper script (`Upgrade::program`)
//! that starts a `sleep` of its own, which must be gone once the old
//! process has answered, even after the wrapper itself has exited.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{Scratch, Service, control, get};

/// How long a process the old one stopped may take to be seen gone: the
/// old process answers only once it is, so this bounds a failure.
const GONE: Duration = Duration::from_secs(10);

/// A wrapper script that starts `sleep 1000` in the background, writes
/// its pid to `left` (atomically), then does `then`.
fn wrapper(dir: &Scratch, then: &str) -> (PathBuf, PathBuf) {
    let path = dir.path("wrapper.sh");
    let left = dir.path("left");
    let tmp = dir.path("left.tmp");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nsleep 1000 &\necho $! >'{}' && mv '{}' '{}'\n{then}\n",
            tmp.display(),
            tmp.display(),
            left.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (path, left)
}

/// Whether `pid` runs (a zombie does not).
fn is_running(pid: u32) -> bool {
    support::proc_state(pid).is_some_and(|s| !s.contains("zombie"))
}

/// The pid the wrapper wrote, once it has.
fn left_pid(left: &PathBuf) -> u32 {
    let deadline = Instant::now() + support::WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(left) {
            return text.trim().parse().expect("a pid");
        }
        assert!(
            Instant::now() < deadline,
            "the wrapper never wrote {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until `pid` no longer runs; kills it and fails if it
/// still does.
fn assert_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + GONE;
    while is_running(pid) {
        if Instant::now() >= deadline {
            // Started below this test: ours to clean up.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("{what} (pid {pid}) was left running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_new_process_that_exits_before_it_is_ready_leaves_nothing_it_started() {
    let dir = Scratch::new("upgrade-stop-exit");
    let (program, left) = wrapper(&dir, "exit 3");
    let ctl = dir.path("ctl");
    let s = Service::start(&[
        "--control",
        ctl.to_str().unwrap(),
        "--upgrade-program",
        program.to_str().unwrap(),
    ]);

    let answer = control(&ctl, b"upgrade\n");
    assert!(
        answer.starts_with("error") && answer.contains("exited before it was ready: exit code 3"),
        "{answer}"
    );
    // The wrapper wrote the pid before it exited, and the old process
    // answered only after it stopped what the wrapper left.
    let sleep = left_pid(&left);
    assert_gone(sleep, "the wrapper's child");
    assert_eq!(get(s.addr(), "/").map(|(code, _)| code), Ok(200));
}

#[test]
fn a_new_process_abandoned_by_a_shutdown_leaves_nothing_it_started() {
    let dir = Scratch::new("upgrade-stop-abandoned");
    // The wrapper never becomes ready: it waits for its child.
    let (program, left) = wrapper(&dir, "wait");
    let mut s = Service::start(&["--upgrade-program", program.to_str().unwrap()]);
    let old = s.first_pid;

    s.signal(old, Signal::SIGHUP);
    let sleep = left_pid(&left);
    assert!(is_running(sleep));
    s.signal(old, Signal::SIGTERM);
    assert_eq!(s.wait_first().code(), Some(0), "{}", s.stderr());
    assert!(
        s.stderr().contains("upgrade abandoned"),
        "the shutdown abandoned the upgrade: {}",
        s.stderr()
    );
    assert_gone(sleep, "the wrapper's child");
}

#[test]
fn a_new_process_that_is_not_ready_in_time_is_stopped_with_everything_it_started() {
    let dir = Scratch::new("upgrade-stop-timeout");
    // The wrapper never becomes ready: it waits for its child. Its first
    // act is to write the pid, well within the timeout.
    let (program, left) = wrapper(&dir, "wait");
    let ctl = dir.path("ctl");
    let s = Service::start(&[
        "--control",
        ctl.to_str().unwrap(),
        "--upgrade-timeout",
        "2s",
        "--upgrade-program",
        program.to_str().unwrap(),
    ]);

    let answer = control(&ctl, b"upgrade\n");
    assert!(
        answer.starts_with("error") && answer.contains("was not ready within 2s"),
        "{answer}"
    );
    let sleep = left_pid(&left);
    assert_gone(sleep, "the wrapper's child");
    assert_eq!(get(s.addr(), "/").map(|(code, _)| code), Ok(200));
}
