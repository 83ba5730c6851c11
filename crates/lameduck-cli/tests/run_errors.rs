//! `lameduck run`: every kind of bad input is refused with a clear message
//! and its exit code (2 usage, 78 invalid configuration, 126/127 a program
//! that cannot be started), and nothing is left running.

mod run_support;

use std::process::{Command, Stdio};

struct Out {
    code: Option<i32>,
    stderr: String,
}

fn run(args: &[&str]) -> Out {
    run_with_admin("none", args)
}

fn run_with_admin(admin: &str, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .arg("run")
        .args(["--admin", admin])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn refused(args: &[&str], code: i32, says: &str) {
    let out = run(args);
    assert_eq!(out.code, Some(code), "{args:?}: {}", out.stderr);
    assert!(
        out.stderr.contains(says),
        "{args:?}: expected {says:?} in:\n{}",
        out.stderr
    );
}

#[test]
fn malformed_flags_are_usage_errors_that_say_what_was_expected() {
    refused(&["--ready", "tcp:3000", "--", "true"], 2, "has no port");
    refused(
        &["--ready", "https://x:1/", "--", "true"],
        2,
        "https is not supported",
    );
    refused(&["--ready", "soon", "--", "true"], 2, "expected http://");
    refused(
        &["--live", "notify", "--", "true"],
        2,
        "--live notify is not supported",
    );
    refused(&["--listen", "http", "--", "true"], 2, "expected NAME=ADDR");
    // A negative count is the value's error, not clap's tip to write
    // `-- -1` (which in run separates the program).
    refused(
        &["--max-restarts", "-1", "--", "true"],
        2,
        "invalid value '-1' for '--max-restarts <N>'",
    );
    refused(
        &["--live-failures", "-2", "--", "true"],
        2,
        "\"-2\" is not a count of 1 or more",
    );
    refused(
        &["--listen", "http=localhost:80", "--", "true"],
        2,
        "is not an address",
    );
    refused(
        &["--listen", "http=127.0.0.1:99999", "--", "true"],
        2,
        "invalid value 'http=127.0.0.1:99999' for '--listen <NAME=ADDR>': port 99999 is out of range: a port is 0 to 65535",
    );
    refused(
        &["--stop-signal", "STOP", "--", "true"],
        2,
        "does not stop a program",
    );
    refused(
        &["--stop-signal", "NOPE", "--", "true"],
        2,
        "unknown signal \"NOPE\"; expected a signal name or number, e.g. TERM, INT, QUIT",
    );
    refused(
        &["--forward", ",", "--", "true"],
        2,
        "\"\" in \",\": no signal named (an empty name); expected a signal name or number, e.g. QUIT, USR1, USR2, WINCH, CONT\n",
    );
    refused(
        &["--forward", "TERM", "--", "true"],
        2,
        "cannot also be forwarded",
    );
    refused(
        &["--ready-failures", "0", "--", "true"],
        2,
        "not a count of 1 or more",
    );
    refused(
        &["--restart", "sometimes", "--", "true"],
        2,
        "invalid value 'sometimes'",
    );
    refused(
        &["--grace-period", "soon", "--", "true"],
        2,
        "--grace-period",
    );
    refused(&[], 2, "CMD");
}

/// `--forward ''` (an unset shell variable, say) forwarded nothing without
/// a word: no forwarding is spelled `none`.
#[test]
fn an_empty_forward_list_is_refused_naming_none() {
    for value in ["", " "] {
        refused(
            &["--forward", value, "--", "true"],
            2,
            "the value is empty: give signals (e.g. QUIT,USR1), or `none` to forward none",
        );
    }
}

#[test]
fn a_placeholder_or_an_address_that_cannot_be_used_is_a_usage_error() {
    refused(&["--", "echo", "{fd:http}"], 2, "names no socket");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    refused(
        &["--listen", &format!("http={addr}"), "--", "true"],
        2,
        "--listen http=",
    );
    let out = run_with_admin(&addr, &["--", "true"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("--admin {addr}: binding the admin listener"))
            && out.stderr.contains("Address already in use"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_admin_address_that_is_a_listen_address_is_refused_naming_both_before_binding() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let out = run_with_admin(&addr, &["--listen", &format!("http={addr}"), "--", "true"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "--admin {addr} is the address --listen http serves"
        )),
        "{}",
        out.stderr
    );
    // Refused before binding: no OS error to report.
    assert!(!out.stderr.contains("os error"), "{}", out.stderr);
}

#[test]
fn a_socket_name_given_twice_is_refused_before_any_socket_is_bound() {
    let out = run(&[
        "--listen",
        "http=127.0.0.1:0",
        "--listen",
        "http=127.0.0.1:0",
        "--",
        "true",
    ]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("--listen http: the name is used twice"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("socket http on"),
        "a socket was bound first: {}",
        out.stderr
    );
}

#[test]
fn a_budget_that_does_not_fit_is_invalid_configuration_with_the_arithmetic() {
    refused(
        &["--grace-period", "5s", "--drain-delay", "10s", "--", "true"],
        78,
        "more than the grace period 5s",
    );
}

#[test]
fn a_program_that_cannot_be_started_says_so_with_the_shell_s_code() {
    let args = ["--", "no-such-program-lameduck-test"];
    refused(&args, 127, "command not found");
    // The shutdown skips the drain, and the log says only that: not what a
    // drain would have watched and how long it would have lasted.
    let log = run(&args).stderr;
    assert!(log.contains("drain ended: drain skipped"), "{log}");
    assert!(!log.contains("drain fixed"), "{log}");
    let dir = run_support::Scratch::new("noexec");
    let file = dir.path("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    refused(&["--", file.to_str().unwrap()], 126, "permission denied");
    // A directory is said as one, as a shell says it.
    let sub = dir.path("sub");
    std::fs::create_dir(&sub).unwrap();
    refused(&["--", sub.to_str().unwrap()], 126, "is a directory");
}

#[test]
fn a_path_flag_that_cannot_be_used_is_a_flag_error_on_stderr_before_the_program_starts() {
    let dir = run_support::Scratch::new("paths");
    let started = dir.path("started");
    let marker = format!("touch {}", started.display());
    for flag in ["--flight-record", "--control-socket"] {
        let args = [
            flag,
            "/nonexistent/dir/f",
            "--",
            "sh",
            "-c",
            marker.as_str(),
        ];
        // Not on a terminal: lameduck's own events would be JSON lines.
        let out = run(&args);
        assert_eq!(out.code, Some(78), "{args:?}: {}", out.stderr);
        let says = format!("lameduck: error: {flag}");
        assert!(
            out.stderr.starts_with("lameduck: error: ")
                && out.stderr.contains(&says)
                && out.stderr.contains("/nonexistent/dir does not exist"),
            "{args:?}: expected {says:?} in:\n{}",
            out.stderr
        );
        assert!(
            !out.stderr.lines().any(|l| l.starts_with('{')),
            "{args:?}: a log line, not a flag error:\n{}",
            out.stderr
        );
        assert!(!started.exists(), "{args:?}: the program was started");
    }
}

/// A flight record is written at the very end, to a temporary file in its
/// directory renamed over the path: a path that is a directory, or a
/// directory where nothing can be written, would lose it then with only a
/// warning. Both are refused before the program starts.
#[test]
fn a_flight_record_path_that_cannot_be_written_is_refused_before_the_program_starts() {
    let dir = run_support::Scratch::new("unwritable-record");
    let started = dir.path("started");
    let marker = format!("touch {}", started.display());
    let a_directory = dir.path("");
    let a_file = dir.path("a-file");
    std::fs::write(&a_file, "").unwrap();
    let under_a_file = a_file.join("flight.json");
    let under_a_file = under_a_file.to_str().expect("UTF-8");
    let missing = dir.path("missing/flight.json");
    for (path, says) in [
        (
            a_directory.to_str().expect("UTF-8").trim_end_matches('/'),
            "is a directory",
        ),
        ("/proc/flight.json", "cannot be written in /proc"),
        (under_a_file, "a-file is not a directory"),
        (missing.to_str().expect("UTF-8"), "missing does not exist"),
    ] {
        let args = ["--flight-record", path, "--", "sh", "-c", marker.as_str()];
        let out = run(&args);
        assert_eq!(out.code, Some(78), "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("lameduck: error: --flight-record") && out.stderr.contains(says),
            "{args:?}: expected {says:?} in:\n{}",
            out.stderr
        );
        assert!(!started.exists(), "{args:?}: the program was started");
    }
}

/// A socket passed under another name than the one asked for
/// (`systemd-socket-activate -l ADDR` without `--fdname`, named `unknown`)
/// holds the very port the service then fails to bind: the error says so,
/// and how to name it.
#[test]
fn a_bind_that_fails_on_a_port_an_unclaimed_inherited_socket_holds_names_the_socket() {
    use lameduck::listen::Handoff;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lameduck"));
    cmd.args(["run", "--output", "json", "--admin", "none"])
        .arg("--listen")
        .arg(format!("http={addr}"))
        .args(["--", "true"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    Handoff::new()
        .listener("unknown", &held)
        .unwrap()
        .apply(&mut cmd)
        .unwrap();
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("\"unknown\" (fd 3)") && stderr.contains("--fdname=http"),
        "{stderr}"
    );
}
