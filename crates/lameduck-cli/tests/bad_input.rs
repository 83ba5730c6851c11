//! Bad input refused before anything starts, by the real binary: a duration
//! flag given 0s where 0s cannot work (exit 2, a bad flag value), a PID file
//! or control socket path that would fail once the service runs (exit 78),
//! a drill's `--pid-file` that names no running process (exit 2). In each
//! case the program is not started (a marker it would write stays absent),
//! the demo never says it listens, the drill never loads.

mod run_support;

use std::process::{Command, Stdio};

use run_support::Scratch;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn lameduck(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_lameduck"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run lameduck");
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The arguments that start something in `sub` (a program that writes
/// `marker`, the demo's listeners), around `flags`.
fn starting(sub: &str, flags: &[&str], marker: &str) -> Vec<String> {
    let touch = format!("touch {marker}");
    let (before, after): (&[&str], &[&str]) = match sub {
        "run" => (&["--admin", "none"], &["--", "sh", "-c", &touch]),
        "drill" => (
            &["--url", "http://127.0.0.1:9/"],
            &["--", "sh", "-c", &touch],
        ),
        "demo" => (&["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"], &[]),
        other => panic!("no arguments for {other}"),
    };
    std::iter::once(sub)
        .chain(before.iter().copied())
        .chain(flags.iter().copied())
        .chain(after.iter().copied())
        .map(str::to_owned)
        .collect()
}

#[track_caller]
fn assert_nothing_started(args: &[String], out: &Out, marker: &std::path::Path) {
    assert!(!marker.exists(), "{args:?}: the program was started");
    assert!(
        !out.stdout.contains("listening on"),
        "{args:?}: the demo listened:\n{}",
        out.stdout
    );
}

#[test]
fn a_duration_flag_where_zero_cannot_work_refuses_0s_before_anything_starts() {
    let dir = Scratch::new("zero-durations");
    let marker = dir.path("started");
    let marker_text = marker.to_str().expect("UTF-8");
    for (sub, flag, says) in [
        (
            "run",
            "--ready-interval",
            "would run the readiness check back to back",
        ),
        (
            "run",
            "--ready-timeout",
            "would give each readiness check no time to answer",
        ),
        (
            "run",
            "--live-interval",
            "would run the liveness check back to back",
        ),
        (
            "run",
            "--live-timeout",
            "would give each liveness check no time to answer",
        ),
        ("run", "--restart-timeout", "would fail every restart"),
        ("run", "--restart-window", "would count no restart"),
        (
            "drill",
            "--ready-timeout",
            "would give the server no time to become ready",
        ),
        (
            "drill",
            "--ready-interval",
            "would poll the readiness URL back to back",
        ),
        ("drill", "--duration", "would run no load"),
        ("drill", "--timeout", "would fail every request"),
        (
            "drill",
            "--grace-period",
            "would fail every signalled server",
        ),
        ("drill", "--every", "would send every signal at once"),
        ("demo", "--upgrade-timeout", "would fail every upgrade"),
    ] {
        let args = starting(sub, &[flag, "0s"], marker_text);
        let out = lameduck(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        let expected = format!("invalid value '0s' for '{flag} <DURATION>': 0s {says}");
        assert!(
            out.stderr.contains(&expected) && out.stderr.contains("give more than 0s, e.g. "),
            "{args:?}: expected {expected:?} in:\n{}",
            out.stderr
        );
        assert_nothing_started(&args, &out, &marker);
    }
}

#[test]
fn a_pid_file_or_control_socket_path_that_would_fail_later_is_refused_before_anything_starts() {
    let dir = Scratch::new("unusable-paths");
    let marker = dir.path("started");
    let marker_text = marker.to_str().expect("UTF-8");
    let file = dir.path("a-file");
    std::fs::write(&file, "x").expect("write a file");
    let under_a_file = file.join("x");
    // Short enough for a file, too long for a Unix socket's 107 bytes.
    let long = dir.path(&"c".repeat(110 - dir.0.as_os_str().len().min(100)));
    let cases = [
        // Exist, pass a permission check as root, take no new files.
        (
            "/proc/lameduck-probe",
            "cannot create files in /proc: the filesystem there takes no new files",
        ),
        ("/sys/lameduck-probe", "cannot create files in /sys"),
        (under_a_file.to_str().expect("UTF-8"), "is not a directory"),
        (long.to_str().expect("UTF-8"), "too long for a Unix socket"),
    ];
    for (sub, flag) in [
        ("run", "--control-socket"),
        ("demo", "--control-socket"),
        ("demo", "--pid-file"),
    ] {
        for (path, says) in cases {
            if flag == "--pid-file" && says.contains("too long") {
                // A PID file's path has no such limit.
                continue;
            }
            let args = starting(sub, &[flag, path], marker_text);
            let out = lameduck(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(out.code, Some(78), "{args:?}: {}", out.stderr);
            assert!(
                out.stderr.starts_with("lameduck: error: ")
                    && out.stderr.contains(flag)
                    && out.stderr.contains(says),
                "{args:?}: expected {flag} and {says:?} in:\n{}",
                out.stderr
            );
            assert!(
                !out.stderr.contains("No such file or directory"),
                "{args:?}: the OS's words, which name a directory that exists:\n{}",
                out.stderr
            );
            assert_nothing_started(&args, &out, &marker);
        }
    }
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("read the scratch directory")
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "a-file")
        .collect();
    assert!(left.is_empty(), "probes left behind: {left:?}");
}

#[test]
fn drill_refuses_a_pid_file_that_names_no_running_process_before_the_load() {
    let dir = Scratch::new("drill-pid-file");
    let mut gone = Command::new("true").spawn().expect("run true");
    let gone_pid = gone.id();
    gone.wait().expect("reap true");
    let garbage = dir.path("garbage.pid");
    std::fs::write(&garbage, "not a pid\n").expect("write");
    let dead = dir.path("dead.pid");
    std::fs::write(&dead, format!("{gone_pid}\n")).expect("write");
    let missing = dir.path("missing.pid");
    let zero = dir.path("zero.pid");
    std::fs::write(&zero, "0\n").expect("write");
    // A file that is no PID file: never dumped into the error.
    let status = std::path::PathBuf::from("/proc/self/status");
    let json = dir.path("report.json");
    // No server listens on port 9: a drill that waited for readiness
    // would say so, after --ready-timeout, instead.
    for (path, says) in [
        (&missing, "cannot read it".to_string()),
        (
            &garbage,
            "it holds no process id: it begins \"not a pid\"\n".to_string(),
        ),
        (
            &dead,
            format!("it names pid {gone_pid}, which is not running"),
        ),
        (
            &zero,
            "it holds 0, which is not a process id (they start at 1)\n".to_string(),
        ),
        (
            &status,
            "it holds no process id: it begins \"Name:\\tlameduck\" (cut)\n".to_string(),
        ),
    ] {
        let path = path.to_str().expect("UTF-8");
        let args = [
            "drill",
            "--url",
            "http://127.0.0.1:9/",
            "--json",
            json.to_str().expect("UTF-8"),
            "--pid-file",
            path,
        ];
        let out = lameduck(&args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        let expected = format!("lameduck: error: --pid-file {path}: {says}");
        assert!(
            out.stderr.contains(&expected),
            "{args:?}: expected {expected:?} in:\n{}",
            out.stderr
        );
        assert!(!json.exists(), "{args:?}: the drill ran");
        assert!(!out.stderr.contains("Umask"), "{args:?}: {}", out.stderr);
    }
    let out = lameduck(&["drill", "--url", "http://127.0.0.1:9/", "--pid", "0"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("'--pid <PID>'"), "{}", out.stderr);
}

/// A server the drill starts may write the PID file as it starts: the check
/// waits for it to be ready, and then refuses a file it did not write,
/// before the load, and stops the server.
#[test]
fn drill_checks_the_pid_file_of_a_server_it_starts_once_that_server_is_ready() {
    let dir = Scratch::new("drill-spawned-pid-file");
    let (listen, admin) = {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        (a.local_addr().expect("addr"), b.local_addr().expect("addr"))
    };
    let json = dir.path("report.json");
    let missing = dir.path("never-written.pid");
    let written = dir.path("written.pid");
    let args = [
        "drill",
        "--url",
        &format!("http://{listen}/"),
        "--ready-url",
        &format!("http://{admin}/readyz"),
        "--json",
        json.to_str().expect("UTF-8"),
        "--no-progress",
        "--pid-file",
        missing.to_str().expect("UTF-8"),
        "--",
        env!("CARGO_BIN_EXE_lameduck"),
        "demo",
        "--output",
        "json",
        "--listen",
        &listen.to_string(),
        "--admin",
        &admin.to_string(),
        "--pid-file",
        written.to_str().expect("UTF-8"),
    ];
    let out = lameduck(&args);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let expected = format!(
        "lameduck: error: --pid-file {}: cannot read it",
        missing.display()
    );
    assert!(
        out.stderr.contains(&expected),
        "expected {expected:?} in:\n{}",
        out.stderr
    );
    assert!(!json.exists(), "the drill ran its load");
    // The check waited for the server's start: the server had written its
    // own PID file by then. And it was stopped: its port is free again.
    assert!(written.exists(), "checked before the server started");
    std::net::TcpListener::bind(listen).expect("the server's port is free again");
}
