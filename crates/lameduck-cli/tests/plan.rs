//! `lameduck plan`: the real binary, its output in each format, its errors
//! and exit codes.

mod support;

use std::time::Duration;

use lameduck::Budget;
use serde_json::Value;
use support::run;

fn plan(args: &[&str]) -> support::Output {
    let mut all = vec!["plan"];
    all.extend_from_slice(args);
    run(&all)
}

/// The table row of a phase, split into its columns.
fn row<'a>(table: &'a str, phase: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.starts_with(phase))
        .unwrap_or_else(|| panic!("no {phase:?} row in\n{table}"));
    line[phase.len()..].split_whitespace().collect()
}

/// The YAML lines that are not comments.
fn yaml_lines(yaml: &str) -> Vec<&str> {
    yaml.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect()
}

/// The value of the first `key: value` line, comments left out.
fn yaml_value<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    let prefix = format!("{key}:");
    lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix(prefix.as_str()).map(str::trim))
}

/// The lines nested under `key:` (more indented than it), comments left out.
fn yaml_section<'a>(yaml: &'a str, key: &str) -> Vec<&'a str> {
    let lines = yaml_lines(yaml);
    let start = lines
        .iter()
        .position(|l| l.trim_start() == format!("{key}:"))
        .unwrap_or_else(|| panic!("no {key} in\n{yaml}"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let outer = indent(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|l| indent(l) > outer)
        .copied()
        .collect()
}

fn number(lines: &[&str], key: &str) -> u64 {
    yaml_value(lines, key)
        .unwrap_or_else(|| panic!("no {key} in {lines:#?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key} is not a number: {e}"))
}

fn json(args: &[&str]) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = plan(&all);
    out.assert_code(0);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn default_table_splits_thirty_seconds_into_the_phases() {
    let out = plan(&[]);
    out.assert_code(0);
    let t = &out.stdout;
    assert_eq!(row(t, "draining"), ["0s", "5s", "5s"]);
    assert_eq!(row(t, "stopping"), ["5s", "20s", "25s"]);
    assert_eq!(row(t, "cancelling"), ["25s", "3s", "28s"]);
    assert_eq!(row(t, "closing"), ["28s", "0s", "28s"]);
    assert_eq!(row(t, "log flush"), ["28s", "500ms", "28.5s"]);
    assert_eq!(row(t, "safety margin"), ["28.5s", "1.5s", "30s"]);
    assert_eq!(row(t, "SIGKILL"), ["30s"]);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

#[test]
fn table_is_the_library_timeline() {
    let out = plan(&[
        "--grace-period",
        "45s",
        "--close",
        "db=2s",
        "--drain-delay",
        "10s",
    ]);
    out.assert_code(0);
    let expected = Budget::new(Duration::from_secs(45))
        .close_timeout("db", Duration::from_secs(2))
        .drain_delay(Duration::from_secs(10))
        .check()
        .unwrap();
    assert_eq!(out.stdout, format!("{expected}\n"));
}

#[test]
fn close_timeouts_are_listed_in_order_and_shorten_stopping() {
    let out = plan(&[
        "--grace-period",
        "30s",
        "--close",
        "db=2s",
        "--close",
        "kafka=1500ms",
    ]);
    out.assert_code(0);
    let t = &out.stdout;
    assert_eq!(row(t, "closing"), ["24.5s", "3.5s", "28s"]);
    assert_eq!(row(t, "stopping"), ["5s", "16.5s", "21.5s"]);
    let db = t.find("\n  db ").expect("db listed under closing");
    let kafka = t.find("\n  kafka ").expect("kafka listed under closing");
    assert!(t.find("closing").unwrap() < db && db < kafka, "{t}");
    assert_eq!(row(t, "  kafka"), ["1.5s"]);
}

#[test]
fn durations_take_humantime_units() {
    let out = plan(&[
        "--grace-period",
        "1m",
        "--hard-timeout",
        "1500ms",
        "--margin",
        "2s",
    ]);
    out.assert_code(0);
    assert_eq!(row(&out.stdout, "cancelling")[1], "1.5s");
    assert_eq!(row(&out.stdout, "safety margin"), ["58s", "2s", "60s"]);
    assert_eq!(row(&out.stdout, "SIGKILL"), ["60s"]);
}

#[test]
fn k8s_in_app_mode_has_probes_on_the_admin_port_and_no_prestop() {
    let out = plan(&["--format", "k8s"]);
    out.assert_code(0);
    let y = &out.stdout;
    let lines = yaml_lines(y);
    assert_eq!(number(&lines, "terminationGracePeriodSeconds"), 30);
    assert_eq!(number(&lines, "containerPort"), 8081);
    for (probe, path) in [
        ("startupProbe", "/startupz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ] {
        let section = yaml_section(y, probe);
        assert_eq!(yaml_value(&section, "path"), Some(path), "{probe}");
        assert_eq!(number(&section, "port"), 8081, "{probe}");
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("preStop") || l.contains("lifecycle")),
        "{y}"
    );
    // The kubelet cannot reach loopback: the spec must say how to bind.
    assert!(y.contains("0.0.0.0:8081"), "{y}");
}

#[test]
fn k8s_probes_follow_the_admin_port() {
    let out = plan(&["--format", "k8s", "--admin-port", "9100"]);
    out.assert_code(0);
    let y = &out.stdout;
    assert_eq!(number(&yaml_lines(y), "containerPort"), 9100);
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(number(&yaml_section(y, probe), "port"), 9100, "{probe}");
    }
    assert!(!y.contains("8081"), "{y}");
}

#[test]
fn k8s_grace_period_is_rounded_up_to_whole_seconds() {
    let out = plan(&["--format", "k8s", "--grace-period", "30500ms"]);
    out.assert_code(0);
    assert_eq!(
        number(&yaml_lines(&out.stdout), "terminationGracePeriodSeconds"),
        31
    );
}

#[test]
fn k8s_readiness_probe_notices_within_the_drain_delay() {
    for drain in [1, 2, 3, 5, 8, 10, 30] {
        let d = format!("{drain}s");
        let out = plan(&[
            "--format",
            "k8s",
            "--grace-period",
            "60s",
            "--drain-delay",
            &d,
        ]);
        out.assert_code(0);
        let r = yaml_section(&out.stdout, "readinessProbe");
        let period = number(&r, "periodSeconds");
        let threshold = number(&r, "failureThreshold");
        assert!(
            period >= 1 && period * threshold <= drain,
            "drain {d}: {r:#?}"
        );
    }
}

#[test]
fn k8s_in_prestop_mode_sleeps_the_drain_delay_inside_the_grace_period() {
    let out = plan(&[
        "--format",
        "k8s",
        "--drain-in",
        "prestop",
        "--grace-period",
        "45s",
        "--drain-delay",
        "10s",
    ]);
    out.assert_code(0);
    let y = &out.stdout;
    assert_eq!(number(&yaml_lines(y), "terminationGracePeriodSeconds"), 45);
    let hook = yaml_section(y, "preStop");
    assert_eq!(
        yaml_value(&hook, "command"),
        Some(r#"["sleep", "10"]"#),
        "{y}"
    );
    assert!(y.contains("leaving 35s until SIGKILL"), "{y}");
}

#[test]
fn a_prestop_sleep_is_a_fixed_drain_in_every_format_and_no_quiet_can_end_it() {
    // The default drain is a window that ends if quiet; a preStop sleep
    // cannot end early.
    let out = plan(&[
        "--format",
        "k8s",
        "--drain-in",
        "prestop",
        "--drain-max",
        "8s",
    ]);
    out.assert_code(0);
    let y = &out.stdout;
    assert!(!y.contains("ends if quiet"), "{y}");
    assert!(!y.contains("at least"), "{y}");
    assert!(
        y.contains("# Draining is the preStop sleep: fixed at 8s, as a sleep cannot end early."),
        "{y}"
    );
    assert!(
        y.contains("#   draining               0s        8s        8s"),
        "{y}"
    );
    let hook = yaml_section(y, "preStop");
    assert_eq!(
        yaml_value(&hook, "command"),
        Some(r#"["sleep", "8"]"#),
        "{y}"
    );
    let table = plan(&["--drain-in", "prestop"]);
    table.assert_code(0);
    assert!(!table.stdout.contains("ends if quiet"), "{}", table.stdout);
    let v = json(&["--drain-in", "prestop"]);
    assert_eq!(v["drain_max_seconds"], 5.0);
    assert_eq!(v["drain_min_seconds"], 5.0);
    assert_eq!(v["drain_quiet_seconds"], Value::Null);
    for flag in ["--drain-quiet", "--drain-min"] {
        let out = plan(&["--drain-in", "prestop", flag, "1s"]);
        out.assert_code(2);
        assert!(
            out.stderr.contains(&format!(
                "{flag} does not apply with --drain-in prestop: the drain is a preStop sleep, \
                 which cannot end early"
            )),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn k8s_in_prestop_mode_without_a_drain_delay_needs_no_hook() {
    let out = plan(&[
        "--format",
        "k8s",
        "--drain-in",
        "prestop",
        "--drain-delay",
        "0s",
    ]);
    out.assert_code(0);
    assert!(
        !yaml_lines(&out.stdout)
            .iter()
            .any(|l| l.contains("preStop")),
        "{}",
        out.stdout
    );
}

#[test]
fn json_has_every_phase_in_seconds() {
    let v = json(&["--grace-period", "30s", "--close", "db=2s"]);
    assert_eq!(v["grace_period_seconds"], 30.0);
    assert_eq!(v["drain_max_seconds"], 5.0);
    // Named after its flag, --drain-max; the old name is gone.
    assert!(v.get("drain_delay_seconds").is_none(), "{v}");
    assert_eq!(v["shutdown_timeout_seconds"], 18.0);
    assert_eq!(v["hard_timeout_seconds"], 3.0);
    assert_eq!(v["closes"][0]["name"], "db");
    assert_eq!(v["closes"][0]["timeout_seconds"], 2.0);
    assert_eq!(v["close_total_seconds"], 2.0);
    assert_eq!(v["log_flush_seconds"], 0.5);
    assert_eq!(v["safety_margin_seconds"], 1.5);
    assert_eq!(v["worst_case_seconds"], 28.5);

    let phases = v["phases"].as_array().expect("phases is an array");
    let names: Vec<_> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "draining",
            "stopping",
            "cancelling",
            "closing",
            "log flush",
            "safety margin"
        ]
    );
    let mut at = 0.0;
    for p in phases {
        assert_eq!(p["starts_seconds"], at, "{p}");
        at += p["lasts_seconds"].as_f64().unwrap();
        assert_eq!(p["ends_by_seconds"], at, "{p}");
    }
    assert_eq!(at, 30.0);
}

#[test]
fn json_carries_the_kubernetes_settings() {
    let app = json(&["--grace-period", "20.5s"]);
    let k = &app["kubernetes"];
    assert_eq!(k["termination_grace_period_seconds"], 21);
    assert_eq!(k["drain_in"], "app");
    assert!(k["prestop_sleep_seconds"].is_null(), "{k}");
    assert_eq!(k["admin_port"], 8081);

    let prestop = json(&["--drain-in", "prestop", "--drain-delay", "2500ms"]);
    assert_eq!(prestop["kubernetes"]["drain_in"], "prestop");
    assert_eq!(prestop["kubernetes"]["prestop_sleep_seconds"], 2.5);
}

#[test]
fn phases_that_overflow_the_grace_period_exit_78_with_the_arithmetic() {
    let out = plan(&["--grace-period", "10s", "--drain-delay", "8s"]);
    out.assert_code(78);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(
        out.stderr.trim_end(),
        "lameduck: error: invalid shutdown budget: drain 8s + shutdown 0s + hard 3s + close 0s + \
         log flush 500ms + margin 500ms = 12s, more than the grace period 10s; shorten a phase or \
         raise the grace period"
    );
}

#[test]
fn an_explicit_shutdown_timeout_that_does_not_fit_exits_78_in_every_format() {
    for format in ["table", "k8s", "json"] {
        let out = plan(&[
            "--format",
            format,
            "--shutdown-timeout",
            "25s",
            "--close",
            "db=1s",
        ]);
        out.assert_code(78);
        assert!(out.stdout.is_empty(), "{format}: {}", out.stdout);
        assert!(
            out.stderr.contains("shutdown 25s") && out.stderr.contains("close 1s (db 1s)"),
            "{format}: {}",
            out.stderr
        );
    }
}

#[test]
fn plan_shows_the_drain_window_and_reserves_drain_max() {
    let out = plan(&[
        "--drain-min",
        "1s",
        "--drain-max",
        "10s",
        "--drain-quiet",
        "2s",
    ]);
    out.assert_code(0);
    let t = &out.stdout;
    assert_eq!(row(t, "draining"), ["0s", "10s", "10s"]);
    assert_eq!(row(t, "  at least"), ["1s"]);
    assert_eq!(row(t, "  ends if quiet"), ["2s"]);
    assert_eq!(row(t, "stopping"), ["10s", "15s", "25s"]);
    let v = json(&["--drain-max", "10s", "--drain-quiet", "2s"]);
    assert_eq!(v["drain_max_seconds"], 10.0);
    assert_eq!(v["drain_min_seconds"], 0.0);
    assert_eq!(v["drain_quiet_seconds"], 2.0);
    // A fixed drain has no quiet, and no window rows.
    let v = json(&["--drain-delay", "10s"]);
    assert_eq!(v["drain_min_seconds"], 10.0);
    assert_eq!(v["drain_quiet_seconds"], Value::Null);
    let out = plan(&["--drain-delay", "10s"]);
    assert!(!out.stdout.contains("ends if quiet"), "{}", out.stdout);
}

#[test]
fn a_drain_window_upside_down_or_mixed_with_a_fixed_delay_is_refused() {
    let out = plan(&["--drain-min", "3s", "--drain-max", "2s"]);
    out.assert_code(78);
    assert!(
        out.stderr
            .contains("--drain-min 3s is longer than --drain-max 2s"),
        "{}",
        out.stderr
    );
    let out = plan(&["--drain-quiet", "50ms"]);
    out.assert_code(78);
    let out = plan(&["--drain-delay", "5s", "--drain-max", "10s"]);
    out.assert_code(2);
    assert!(out.stderr.contains("cannot be used with"), "{}", out.stderr);
}

#[test]
fn a_drain_quiet_that_cannot_end_the_drain_exits_78_naming_the_flags_it_conflicts_with() {
    // The budget's check decides, whichever flags made the drain fixed.
    let cases: [(&[&str], &str); 3] = [
        (
            &["--drain-delay", "5s", "--drain-quiet", "1s"],
            "--drain-quiet 1s conflicts with a fixed drain of 5s (--drain-delay, or --drain-min = --drain-max)",
        ),
        (
            &[
                "--drain-min",
                "5s",
                "--drain-max",
                "5s",
                "--drain-quiet",
                "1s",
            ],
            "--drain-quiet 1s conflicts with a fixed drain of 5s",
        ),
        (
            &["--drain-quiet", "10s", "--drain-max", "5s"],
            "--drain-quiet 10s conflicts with --drain-max 5s",
        ),
    ];
    for (args, names) in cases {
        let out = plan(args);
        out.assert_code(78);
        assert!(out.stderr.contains(names), "{args:?}: {}", out.stderr);
        // The user typed flags: the library's names are not theirs.
        for setting in ["drain_quiet", "drain_min", "drain_max", "drain_delay"] {
            assert!(!out.stderr.contains(setting), "{args:?}: {}", out.stderr);
        }
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

#[test]
fn a_drain_max_under_the_default_quiet_shows_a_quiet_that_fits_it() {
    let out = plan(&["--drain-max", "500ms"]);
    out.assert_code(0);
    let t = &out.stdout;
    assert_eq!(row(t, "draining"), ["0s", "500ms", "500ms"]);
    assert_eq!(row(t, "  ends if quiet"), ["250ms"]);
    let v = json(&["--drain-max", "500ms"]);
    assert_eq!(v["drain_quiet_seconds"], 0.25);
    // The same as the library, which the flags only feed.
    let lib = Budget::default()
        .drain_max(Duration::from_millis(500))
        .check()
        .unwrap();
    assert_eq!(lib.drain_quiet, Duration::from_millis(250));
    // Too short for any quiet: no rule that cannot apply is shown.
    let out = plan(&["--drain-max", "100ms"]);
    out.assert_code(0);
    assert!(!out.stdout.contains("ends if quiet"), "{}", out.stdout);
    // A quiet the user gave is theirs: refused, not shrunk.
    let out = plan(&["--drain-max", "500ms", "--drain-quiet", "1s"]);
    out.assert_code(78);
}

#[test]
fn a_sub_millisecond_grace_period_is_shown_as_given_not_as_zero() {
    let out = plan(&["--grace-period", "1ns"]);
    out.assert_code(78);
    assert!(
        out.stderr.contains("more than the grace period 1ns"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_budget_with_no_time_to_stop_exits_78() {
    let out = plan(&["--grace-period", "10s", "--drain-delay", "6s"]);
    out.assert_code(78);
    assert!(
        out.stderr
            .contains("leaves 0s for in-flight work to finish"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_shutdown_timeout_given_under_the_minimum_exits_78_naming_it_and_the_minimum() {
    for (given, shown) in [("50ms", "50ms"), ("0s", "0s")] {
        let out = plan(&["--shutdown-timeout", given]);
        out.assert_code(78);
        assert_eq!(
            out.stderr.trim_end(),
            format!(
                "lameduck: error: invalid shutdown budget: the shutdown timeout {shown} is less \
                 than the minimum 100ms for in-flight work to finish; raise it, or leave it unset \
                 for what the other phases leave"
            ),
        );
    }
}

#[test]
fn an_unparsable_duration_exits_2_naming_the_flag() {
    for (flag, value) in [
        ("--grace-period", "30x"),
        ("--drain-delay", "5"),
        ("--log-flush", ""),
    ] {
        let out = plan(&[flag, value]);
        out.assert_code(2);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        assert!(
            out.stderr
                .contains(&format!("invalid value '{value}' for '{flag} <DURATION>'")),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn close_without_equals_sign_exits_2() {
    let out = plan(&["--close", "db"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("expected NAME=DURATION"),
        "{}",
        out.stderr
    );

    let out = plan(&["--close", "db=soon"]);
    out.assert_code(2);
    assert!(out.stderr.contains("bad duration for db"), "{}", out.stderr);
}

#[test]
fn close_given_twice_is_refused_rather_than_overwritten() {
    let out = plan(&["--close", "db=1s", "--close", "db=2s"]);
    out.assert_code(2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert_eq!(
        out.stderr.trim_end(),
        "lameduck: error: --close db is given more than once"
    );
}

#[test]
fn help_explains_the_grace_period_and_the_exit_codes() {
    let out = plan(&["--help"]);
    out.assert_code(0);
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "terminationGracePeriodSeconds",
        "time between SIGTERM and SIGKILL",
        "lameduck plan --grace-period 30s --close db=2s",
        "78 the phases do not fit the grace period",
        "2 bad flags or values",
    ] {
        assert!(
            help.contains(needle),
            "{needle:?} missing from\n{}",
            out.stdout
        );
    }
}

/// The help's hand-wrapped text: what comes before `Usage:` and from
/// `Examples:` on (clap reflows the flags' own help to the width).
fn hand_wrapped(help: &str) -> String {
    let before = &help[..help.find("Usage:").expect("a usage line")];
    let after = &help[help.find("Examples:").expect("examples")..];
    format!("{before}{after}")
}

#[test]
fn help_reads_the_same_on_an_80_column_terminal_with_no_sentence_broken() {
    let help_at = |columns: &str| {
        let out = support::lameduck()
            .args(["plan", "--help"])
            .env("COLUMNS", columns)
            .output()
            .expect("run lameduck plan --help");
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let (narrow, wide) = (help_at("80"), help_at("1000"));
    // A line wider than the terminal is broken where it overflows, and the
    // rest of the sentence lands alone on a line of its own.
    assert_eq!(hand_wrapped(&narrow), hand_wrapped(&wide), "{narrow}");
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
}

#[test]
fn help_states_the_library_defaults() {
    let out = plan(&["--help"]);
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    let t = Budget::default().check().unwrap();
    let secs = |d: Duration| format!("{}s", d.as_secs_f64());
    for (flag, default) in [
        ("--grace-period", secs(t.grace_period)),
        ("--drain-max", secs(t.drain_delay)),
        ("--drain-min", secs(t.drain_min)),
        ("--drain-quiet", secs(t.drain_quiet)),
        ("--hard-timeout", secs(t.hard_timeout)),
        ("--log-flush", format!("{}ms", t.log_flush.as_millis())),
    ] {
        let after = &help[help.find(&format!("{flag} <DURATION>")).expect(flag)..];
        let next = after[2..].find(" --").map_or(after.len(), |i| i + 2);
        // `]` ends a plain default; `,` one that depends on another flag
        // (--drain-quiet's: half of --drain-max when that is shorter).
        let default_is = |end: &str| after[..next].contains(&format!("[default: {default}{end}"));
        assert!(
            default_is("]") || default_is(","),
            "{flag}: {}",
            &after[..next]
        );
    }
}
