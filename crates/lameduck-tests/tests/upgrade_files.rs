//! The files an upgradable service keeps — the PID file and the control
//! socket — and the descriptors it inherits, against what an operator's
//! machine holds: a directory others can write, a file in the way, another
//! instance, a fatal signal, variables that point at the wrong descriptor.
//! Real processes (the `upgrade-fixture`); as root, the other party is
//! another user (uid 65534) where it matters.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;
use support::{FIXTURE, Hook, Scratch, Service, control};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Runs `program args` as uid/gid 65534; its success.
fn as_nobody(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .is_ok_and(|s| s.success())
}

/// A directory anyone may write, as `/tmp` is (sticky).
fn shared_dir(tag: &str) -> Scratch {
    let dir = Scratch::new(tag);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

fn fixture(args: &[&str]) -> Command {
    let mut cmd = Command::new(FIXTURE);
    cmd.args(args);
    cmd
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the fixture to its exit: (exit code, stderr).
fn refused(cmd: &mut Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run the fixture");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// 7 (a): the PID file's temporary.

/// Another user who can write the PID file's directory plants a symlink at
/// the temporary name the PID file used to be written through
/// (`<pid-file>.tmp.<pid>`), pointing at a file of root's. The PID file is
/// written all the same, and root's file is untouched: the temporary's
/// name is unpredictable and it is created exclusively, never through a
/// link.
#[test]
fn a_symlink_planted_by_another_user_never_gets_the_pid_file_written_through_it() {
    if !is_root() {
        eprintln!("skipped: needs root, to plant the link as another user (uid {NOBODY})");
        return;
    }
    let dir = shared_dir("plant");
    let victim = dir.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let pid_file = dir.path("app.pid");
    let hook = Hook::new(&dir, 0, "pid-file");
    let mut cmd = fixture(&["--pid-file", path(&pid_file)]);
    cmd.env("UPGRADE_FIXTURE_HOOK", Hook::env(&[&hook]));
    let mut s = Service::spawn(cmd);
    let pid = hook.wait(&mut s);
    // The names it used to use, planted by someone else.
    for name in [format!("app.pid.tmp.{pid}"), format!(".lameduck.{pid}.tmp")] {
        assert!(
            as_nobody("ln", &["-s", path(&victim), path(&dir.path(&name))]),
            "plant {name} as nobody"
        );
    }
    hook.release();
    s.wait_event(pid, "phase running");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{pid}\n")
    );
    assert!(
        !std::fs::symlink_metadata(&pid_file).unwrap().is_symlink(),
        "the PID file is a file of its own"
    );
    assert_eq!(s.terminate(pid), 0);
    assert!(!pid_file.exists());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

// 7 (b): what is at the control socket's path.

#[test]
fn a_file_at_the_control_socket_path_stops_the_start_and_is_left_alone() {
    let dir = Scratch::new("ctl-file");
    let ctl = dir.path("ctl");
    std::fs::write(&ctl, "not a socket\n").unwrap();
    let (code, stderr) = refused(&mut fixture(&["--control", path(&ctl)]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("a file that is not a socket is in the way"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&ctl).unwrap(), "not a socket\n");
}

/// Another instance — of another user, as root — listens on the control
/// socket's path. A second instance refuses to start instead of stealing
/// the path (and deleting it at its exit); the first still answers there.
#[test]
fn a_control_socket_another_instance_listens_on_stops_the_start() {
    let dir = shared_dir("ctl-live");
    let ctl = dir.path("ctl");
    let mut first = fixture(&["--control", path(&ctl)]);
    if is_root() {
        first.uid(NOBODY).gid(NOBODY);
    }
    let mut s = Service::start_with(first);
    let pid = s.first_pid;
    let (code, stderr) = refused(&mut fixture(&["--control", path(&ctl)]));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains(&format!("a running process (pid {pid}) listens there")),
        "{stderr}"
    );
    assert_eq!(
        control(&ctl, b"status\n"),
        format!("ok running pid {pid}\n"),
        "the first instance's socket is still there, and its own"
    );
    assert_eq!(s.terminate(pid), 0);
    assert!(!ctl.exists());
}

#[test]
fn a_control_socket_nobody_listens_on_is_replaced() {
    let dir = Scratch::new("ctl-stale");
    let ctl = dir.path("ctl");
    drop(std::os::unix::net::UnixListener::bind(&ctl).unwrap());
    assert!(ctl.exists(), "a stale socket file");
    let mut s = Service::start(&["--control", path(&ctl)]);
    let pid = s.first_pid;
    assert_eq!(
        control(&ctl, b"status\n"),
        format!("ok running pid {pid}\n")
    );
    assert_eq!(s.terminate(pid), 0);
}

// 8, in part: paths that cannot be used stop the start.

#[test]
fn unusable_pid_file_and_control_socket_paths_stop_the_start_with_78() {
    let dir = Scratch::new("unusable");
    let long = dir.path(&"c".repeat(120));
    for (args, says) in [
        (
            vec![
                "--pid-file".to_string(),
                path(&dir.path("none/app.pid")).into(),
            ],
            "does not exist",
        ),
        (
            vec!["--pid-file".into(), path(&dir.0).into()],
            "is a directory",
        ),
        (
            vec!["--control".into(), path(&dir.path("none/ctl")).into()],
            "does not exist",
        ),
        (
            vec!["--control".into(), path(&dir.0).into()],
            "is a directory",
        ),
        (
            vec!["--control".into(), path(&long).into()],
            "too long for a Unix socket",
        ),
    ] {
        let (code, stderr) = refused(&mut fixture(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ));
        assert_eq!(code, Some(78), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    if is_root() {
        // A directory this user cannot write (as another user): refused
        // too, not skipped with a log line.
        let closed = dir.path("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = fixture(&["--pid-file", path(&closed.join("app.pid"))])
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{stderr}");
        assert!(stderr.contains("cannot create files in"), "{stderr}");
    }
}

// 7 (c): every way out removes the files that name the process.

fn files_of(dir: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.path("pid"), dir.path("ctl"))
}

#[test]
fn a_forced_exit_removes_the_pid_file_and_the_control_socket() {
    let dir = Scratch::new("forced");
    let (pid_file, ctl) = files_of(&dir);
    let mut s = Service::start(&[
        "--pid-file",
        path(&pid_file),
        "--control",
        path(&ctl),
        "--drain-delay",
        "20s",
    ]);
    let pid = s.first_pid;
    assert!(pid_file.exists() && ctl.exists());
    s.signal(pid, Signal::SIGTERM);
    s.wait_event(pid, "phase draining");
    // A different signal: the same one again this soon would be the same
    // delivery (docs/lifecycle.md), not a second signal.
    s.signal(pid, Signal::SIGINT);
    assert_eq!(s.wait_first().code(), Some(130), "forced by the SIGINT");
    assert!(!pid_file.exists(), "the PID file is removed");
    assert!(!ctl.exists(), "the control socket is removed");
}

/// A signal whose default action ends the process: the files go, and the
/// process still ends by that signal (a core dump included, for those
/// that dump; the test turns core dumps off).
#[test]
fn fatal_signals_remove_the_pid_file_and_the_control_socket() {
    for sig in [Signal::SIGQUIT, Signal::SIGABRT, Signal::SIGUSR1] {
        let dir = Scratch::new("fatal");
        let (pid_file, ctl) = files_of(&dir);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "ulimit -c 0; exec \"$0\" \"$@\"", FIXTURE])
            .args(["--pid-file", path(&pid_file), "--control", path(&ctl)]);
        let mut s = Service::start_with(cmd);
        assert!(pid_file.exists() && ctl.exists());
        s.signal(s.first_pid, sig);
        let status = s.wait_first();
        assert_eq!(status.signal(), Some(sig as i32), "{sig}: {status:?}");
        assert!(!pid_file.exists(), "{sig}: the PID file is removed");
        assert!(!ctl.exists(), "{sig}: the control socket is removed");
    }
}
