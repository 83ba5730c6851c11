//! The user docs promise only what exists: every `lameduck SUBCOMMAND` that
//! the README, the guide, the help texts and the plan's pod spec name is a
//! subcommand of this binary; every `cargo doc` command documents the
//! modules behind features; the Kubernetes guide shows what `lameduck plan`
//! prints.

mod support;

use std::path::{Path, PathBuf};

use support::run;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The README and every page of the guide, with their paths.
fn user_docs() -> Vec<(String, String)> {
    let root = repository();
    let mut paths = vec![root.join("README.md")];
    let mut guide: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("the docs folder")
        .map(|entry| entry.expect("a docs entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    guide.sort();
    paths.extend(guide);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable doc");
            (path.display().to_string(), text)
        })
        .collect()
}

/// The subcommands `lameduck --help` lists.
fn subcommands() -> Vec<String> {
    let help = run(&["--help"]);
    help.assert_code(0);
    let commands = help
        .stdout
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section");
    commands
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The words that follow `lameduck ` where the text runs the command: a
/// code span (`` `lameduck x` ``), and in a code block or a command's output
/// (`code` is true then) a line that starts with the command, after a `$ `
/// prompt or an indented comment (`#   lameduck x`). Prose that merely
/// names lameduck (`# lameduck drains …`) is not a command.
fn commands_named(line: &str, code: bool) -> Vec<String> {
    let mut named = Vec::new();
    for (at, _) in line.match_indices("lameduck ") {
        let before = &line[..at];
        let starts_line = before.trim_start().is_empty()
            || before.trim_start() == "$ "
            || (before.trim_start().starts_with("#  ")
                && before
                    .trim_start()
                    .trim_start_matches('#')
                    .trim()
                    .is_empty());
        let runs = before.ends_with('`') || (code && starts_line);
        let word: String = line[at + "lameduck ".len()..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '-')
            .collect();
        if runs && !word.is_empty() && !word.starts_with('-') {
            named.push(word);
        }
    }
    named
}

#[test]
fn docs_name_only_subcommands_that_exist() {
    let known = subcommands();
    assert!(known.contains(&"drill".to_owned()), "{known:?}");
    let mut texts = user_docs();
    for args in [
        &["plan", "--format", "k8s"][..],
        &["plan", "--format", "k8s", "--drain-in", "prestop"],
        &["--help"],
        &["plan", "--help"],
        &["drill", "--help"],
        &["demo", "--help"],
    ] {
        let out = run(args);
        out.assert_code(0);
        // A command's output is read as code: every line counts.
        texts.push((
            format!("the output of lameduck {}", args.join(" ")),
            format!("```\n{}```\n", out.stdout),
        ));
    }
    let mut unknown = Vec::new();
    for (place, text) in &texts {
        let mut in_code = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            for word in commands_named(line, in_code) {
                if !known.contains(&word) {
                    unknown.push(format!("{place}:{}: lameduck {word}", n + 1));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "these name a subcommand that does not exist (lameduck has {known:?}):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn docs_build_the_api_docs_with_every_feature() {
    // Without --all-features, `cargo doc` leaves out the HTTP server, the
    // upgrade and systemd modules: the docs would show a library without them.
    let mut missing = Vec::new();
    for (place, text) in user_docs() {
        for (n, line) in text.lines().enumerate() {
            if line.contains("cargo doc") && !line.contains("--all-features") {
                let next = text.lines().nth(n + 1).unwrap_or_default();
                if !next.contains("--all-features") {
                    missing.push(format!("{place}:{}: {line}", n + 1));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn kubernetes_guide_shows_what_plan_prints() {
    let path = repository().join("docs/kubernetes.md");
    let guide = std::fs::read_to_string(&path).expect("docs/kubernetes.md");
    let mut shown = 0;
    for (at, _) in guide.match_indices("$ lameduck plan ") {
        let command = guide[at + 2..].lines().next().expect("a command line");
        let rest = &guide[at..];
        let open = rest
            .find("```yaml\n")
            .expect("a yaml block after the command")
            + 8;
        let close = open + rest[open..].find("```\n").expect("a closing fence");
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let out = run(&args);
        out.assert_code(0);
        assert_eq!(
            rest[open..close],
            out.stdout,
            "docs/kubernetes.md shows another output for `{command}`"
        );
        shown += 1;
    }
    assert_eq!(
        shown, 2,
        "the guide shows the app and the prestop pod specs"
    );
}

/// The exit codes a help text lists, in its order: each line of its
/// `Exit status` table that opens with a code.
fn exit_codes_listed(help: &str) -> Vec<String> {
    let table = &help[help.find("Exit status").expect("an exit status table")..];
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let code = line.strip_prefix("  ")?.split_whitespace().next()?;
            code.starts_with(|c: char| c.is_ascii_digit())
                .then(|| code.to_owned())
        })
        .collect()
}

#[test]
fn run_help_lists_its_exit_codes_in_order_each_on_a_line_of_its_own() {
    let all: &[&str] = &["0", "1", "2", "3", "78"];
    for (subcommand, expected) in [("run", all), ("demo", all), ("drill", &["0", "1", "2"])] {
        let out = run(&[subcommand, "--help"]);
        out.assert_code(0);
        let codes = exit_codes_listed(&out.stdout);
        let numbers: Vec<u32> = codes
            .iter()
            .map(|c| c.split('/').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{subcommand}: {codes:?}"
        );
        for code in expected {
            assert!(
                codes.iter().any(|c| c == code),
                "{subcommand}: {code} missing: {codes:?}"
            );
        }
        // A code's line is a sentence of its own, not the end of the one
        // above.
        assert!(!out.stdout.contains("  3        ..."), "{}", out.stdout);
    }
}

#[test]
fn the_top_level_help_names_run_path_checks_under_exit_78() {
    let out = run(&["--help"]);
    out.assert_code(0);
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    let at = help.find("78 invalid configuration").expect("a 78 line");
    let line = &help[at..help[at..].find(" 124 ").map_or(help.len(), |e| at + e)];
    for needle in ["run", "--flight-record", "--control-socket"] {
        assert!(line.contains(needle), "{needle} missing from {line:?}");
    }
}

#[test]
fn every_subcommand_that_takes_durations_says_how_to_write_them() {
    let syntax = "Durations are written like 30s, 1500ms, 1m or 1m30s";
    for subcommand in ["run", "drill", "plan", "demo"] {
        let out = run(&[subcommand, "--help"]);
        out.assert_code(0);
        let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(help.matches(syntax).count(), 1, "{subcommand}: {help}");
    }
}

#[test]
fn run_help_and_guide_say_the_same_of_when_the_connections_are_listed() {
    let out = run(&["run", "--help"]);
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    let guide = std::fs::read_to_string(repository().join("docs/run.md")).expect("docs/run.md");
    let guide = guide.split_whitespace().collect::<Vec<_>>().join(" ");
    // Every 100 ms from the drain on, 200 ms at the default quiet while the
    // program runs: in both, and no flat "every 100 ms" in the help.
    assert!(!help.contains("sock_diag, every 100 ms)"), "{help}");
    for text in [&help, &guide] {
        assert!(text.contains("200 ms"), "{text}");
        assert!(
            text.contains("every 100 ms") || text.contains("every tenth of a second"),
            "{text}"
        );
    }
}
