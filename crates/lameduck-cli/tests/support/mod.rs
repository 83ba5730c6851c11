//! A small harness for the CLI tests: run the real `lameduck` binary and
//! capture what it printed and how it exited.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

/// The `lameduck` binary built for this test run, with a clean environment
/// for the variables that change how it prints.
pub fn lameduck() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lameduck"));
    cmd.env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

/// What one run of the binary printed, and its exit code.
#[derive(Debug)]
pub struct Output {
    /// `None` when a signal ended the process.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with everything the binary printed unless it exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code; {self:#?}");
        self
    }
}

/// Runs `lameduck ARGS` to completion.
pub fn run(args: &[&str]) -> Output {
    let out = lameduck()
        .args(args)
        .output()
        .expect("spawning the lameduck binary");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

pub mod demo;

/// Two ports that were free a moment ago (held together, so they differ).
/// The drill needs the URLs before it starts the demo, so the test picks them.
pub fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    (
        a.local_addr().expect("a local address").port(),
        b.local_addr().expect("a local address").port(),
    )
}

/// What a `lameduck drill` run printed, and its server's log, for a failed
/// assertion's message.
pub fn drill_context(output: &std::process::Output, log: &Path) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- demo log\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// The lines a process (and every generation that shares its stderr)
/// writes, read on a thread of their own.
pub struct LogLines(pub std::sync::mpsc::Receiver<String>);

impl LogLines {
    /// Follows `stderr` to its end.
    pub fn follow(stderr: std::process::ChildStderr) -> Self {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Self(rx)
    }

    /// Waits, at most `bound` for each line, for a line containing
    /// `needle`; returns it.
    pub fn wait_for(&self, needle: &str, bound: std::time::Duration) -> String {
        let mut seen = Vec::new();
        loop {
            match self.0.recv_timeout(bound) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(err) => panic!(
                    "no log line with {needle:?} ({err}); saw:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }
}
