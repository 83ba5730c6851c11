//! `http-server`'s flags: a setting the chosen server does not have is
//! refused before anything is bound, never silently ignored, so that a
//! pair is never measured with one side configured and the other not.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

/// Runs `http-server ARGS` and returns its exit code and standard error.
/// A server that starts anyway (it says where it listens) is killed and
/// the test fails: the refusal is what is expected, and its first line
/// of output, or the end of it, is awaited rather than a time.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_http-server"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("http-server runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if !line.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{args:?}: started instead of refusing: {line}");
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code(), err)
}

#[test]
fn an_idle_timeout_given_to_a_server_without_one_is_refused() {
    for kind in ["bare", "bare-keep-alive", "axum-serve", "tonic"] {
        let (code, err) = refused(&["--kind", kind, "--idle-timeout", "30"]);
        assert_eq!(code, Some(2), "{kind}: {err}");
        assert!(
            err.contains("--idle-timeout") && err.contains(&format!("--kind {kind}")),
            "{kind}: {err}"
        );
    }
}

#[test]
fn a_malformed_or_zero_idle_timeout_is_refused_naming_the_flag() {
    for bad in ["abc", "0", "-1", "30s"] {
        let flag = format!("--idle-timeout={bad}");
        let (code, err) = refused(&["--kind", "lameduck", &flag]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("--idle-timeout"), "{bad}: {err}");
        assert!(!err.contains("panicked"), "{bad}: {err}");
    }
}
