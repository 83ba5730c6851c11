//! The README's library example: the code it shows is the program
//! `crates/lameduck/examples/00_quickstart.rs`, and what it shows that
//! program printing — the log and the report — is what the program prints
//! when it gets `SIGTERM`.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Bound on every wait: a hang fails the test instead of the suite.
const WAIT: Duration = Duration::from_secs(60);

fn repository_file(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The body of the first fenced block in `text` after `heading` whose info
/// string is `info`.
fn block_after(text: &str, heading: &str, info: &str) -> String {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let fence = format!("```{info}\n");
    let open = start
        + text[start..]
            .find(&fence)
            .unwrap_or_else(|| panic!("no {fence:?} block after {heading:?}"))
        + fence.len();
    let close = open + text[open..].find("```\n").expect("a closing fence");
    text[open..close].to_owned()
}

/// A line with every number (`5`, `0.1`) replaced by `#`: timestamps,
/// durations and counts change from run to run, the words do not.
fn shape(line: &str) -> String {
    let chars: Vec<char> = line.trim_end().chars().collect();
    let mut out = String::with_capacity(line.len());
    for (i, &c) in chars.iter().enumerate() {
        let decimal_point =
            c == '.' && out.ends_with('#') && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || decimal_point {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn readme_library_example_is_the_quickstart_example() {
    let readme = block_after(
        &repository_file("README.md"),
        "## The library",
        "rust,no_run",
    );
    let example = repository_file("crates/lameduck/examples/00_quickstart.rs");
    let code = example
        .lines()
        .skip_while(|l| l.starts_with("//!") || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(readme.trim_end(), code.trim_end());
}

#[test]
fn examples_answer_an_invalid_configuration_with_its_exit_status_not_a_panic() {
    // `build().expect(…)` turns the documented exit 78 into a panic (101,
    // with a backtrace): what users copy must show `err.exit_status()`.
    let mut shown = vec![
        (
            "README.md".to_owned(),
            block_after(
                &repository_file("README.md"),
                "## The library",
                "rust,no_run",
            ),
        ),
        (
            "crates/lameduck/src/http/example.md".to_owned(),
            repository_file("crates/lameduck/src/http/example.md"),
        ),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for entry in std::fs::read_dir(root.join("crates/lameduck/examples")).expect("examples") {
        let path = entry.expect("an example").path();
        let name = format!("examples/{}", path.file_name().unwrap().to_string_lossy());
        shown.push((
            name,
            std::fs::read_to_string(&path).expect("read an example"),
        ));
    }
    assert!(shown.len() > 2, "no example found");
    for (name, code) in shown {
        // Joined into one line: the call chain spans several.
        let flat: String = code.split_whitespace().collect();
        if !flat.contains(".build()") {
            continue;
        }
        for panics in [".build().expect(", ".build().unwrap()", ".build()?"] {
            assert!(
                !flat.contains(panics),
                "{name} builds the app with {panics}"
            );
        }
        assert!(
            flat.contains("err.exit_status()"),
            "{name} does not exit with the build error's exit status"
        );
    }
}

#[test]
fn readme_library_example_prints_the_log_and_the_report_the_readme_shows() {
    let shown = block_after(&repository_file("README.md"), "## The library", "text");
    // Piped, as a log collector reads it: no NO_COLOR to hide escape codes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let (lines, printed) = mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut output = Vec::new();
    loop {
        let line = printed.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the example never reached Running; it printed {output:#?}")
        });
        let running = line.contains("phase=running");
        output.push(line);
        if running {
            break;
        }
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("signal the example");
    while let Ok(line) = printed.recv_timeout(WAIT) {
        output.push(line);
    }
    let status = child.wait().expect("the example exits");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr);
    assert_eq!(status.code(), Some(0), "{output:#?}\n{stderr}");
    // What the README shows is what a pipe gets: plain text.
    assert!(
        output.iter().all(|l| !l.contains('\x1b')),
        "escape codes written to a pipe:\n{}",
        output.join("\n")
    );

    // Every line the README shows, in its order, with numbers masked.
    let printed: Vec<String> = output.iter().map(|l| shape(l)).collect();
    let mut from = 0;
    for line in shown.lines() {
        let want = shape(line);
        match printed[from..].iter().position(|p| *p == want) {
            Some(at) => from += at + 1,
            None => panic!(
                "the README shows {line:?}, which the example did not print (in that order):\n{}",
                output.join("\n")
            ),
        }
    }
    assert_eq!(
        printed.len(),
        shown.lines().count(),
        "the example printed lines the README does not show:\n{}",
        output.join("\n")
    );
}
