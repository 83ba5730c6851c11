//! `lameduck drill` over `https://` and in gRPC mode against `lameduck
//! demo`: HTTP/2 and HTTP/1.1 by ALPN, a self-signed certificate taken with
//! `--insecure`, a CA file given with `--cacert`, unary calls of the demo's
//! `Echo/Say` and of `grpc.health.v1.Health/Check`, across a SIGTERM and a
//! SIGHUP upgrade; a certificate the CA file does not vouch for, and a
//! method the server does not have, which fail every request with the
//! reason.

mod support;

use std::path::{Path, PathBuf};

use lameduck_drill::Outcome;
use lameduck_drill::report::Report;

fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lameduck-drill-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A self-signed certificate for 127.0.0.1, written as `tls.crt` (also the
/// CA file) and `tls.key`.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

struct Run {
    code: Option<i32>,
    report: Report,
    context: String,
}

/// `lameduck drill --url URL DRILL_ARGS -- lameduck demo DEMO_ARGS` on the
/// ports, with its JSON report read back; the URL is `https://` when the
/// demo serves HTTPS.
fn drill(name: &str, ports: (u16, u16), drill_args: &[&str], demo_args: &[&str]) -> Run {
    let scheme = if demo_args.iter().any(|a| a.starts_with("--tls")) {
        "https"
    } else {
        "http"
    };
    let (port, admin) = ports;
    let dir = scratch_dir(name);
    let (json, log) = (dir.join("report.json"), dir.join("demo.log"));
    let output = support::lameduck()
        .arg("drill")
        .args(["--url", &format!("{scheme}://127.0.0.1:{port}/work?ms=10")])
        .args(["--ready-url", &format!("http://127.0.0.1:{admin}/readyz")])
        .args(["--concurrency", "6", "--grace-period", "10s"])
        .args(["--ready-timeout", "20s", "--no-progress"])
        .args(drill_args)
        .arg("--json")
        .arg(&json)
        .arg("--server-log")
        .arg(&log)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_lameduck"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--drain-delay", "200ms", "--grace-period", "10s"])
        .args(["--output", "json"])
        .args(demo_args)
        .output()
        .expect("run lameduck drill");
    let context = support::drill_context(&output, &log);
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let report =
        Report::from_json(&text).unwrap_or_else(|err| panic!("no JSON report ({err})\n{context}"));
    let context = format!("{context}\n--- failures\n{:#?}", report.failures.samples);
    Run {
        code: output.status.code(),
        report,
        context,
    }
}

/// Two SIGHUP upgrades under load, judged as restarts.
const TWO_HUPS: [&str; 12] = [
    "--signal",
    "HUP",
    "--expect",
    "restart",
    "--repeat",
    "2",
    "--at",
    "600ms",
    "--every",
    "700ms",
    "--duration",
    "2500ms",
];

/// A restart drill of [`TWO_HUPS`] passed: no request failed, and each
/// signal brought in a new process.
fn assert_restarted_twice(run: &Run) {
    assert_passed(run);
    assert_eq!(run.report.requests.total.failed(), 0, "{}", run.context);
    let restarts = &run.report.events.restarts;
    assert_eq!(restarts.len(), 2, "{}", run.context);
    assert!(
        restarts.iter().all(|r| r.new_pid.is_some()),
        "{}",
        run.context
    );
}

/// The drill passed, every request it sent is accounted for, and some
/// succeeded before and after the first signal.
fn assert_passed(run: &Run) {
    let (r, context) = (&run.report, &run.context);
    assert_eq!(run.code, Some(0), "{context}");
    assert!(r.verdict.pass, "{context}");
    let q = &r.requests;
    assert_eq!(q.sent, q.accounted, "{context}");
    assert_eq!(q.total.total(), q.sent, "{context}");
    assert!(q.before_signal.ok > 0 && q.after_signal.ok > 0, "{context}");
}

#[test]
fn drill_over_https_h2_with_insecure_passes_across_sigterm_of_the_self_signed_demo() {
    let run = drill(
        "sigterm",
        support::free_ports(),
        &[
            "--insecure",
            "--http",
            "2",
            "--duration",
            "2s",
            "--at",
            "700ms",
        ],
        &["--tls-self-signed"],
    );
    assert_passed(&run);
    assert_eq!(run.report.config.http, "2", "{}", run.context);
    let exit = run.report.events.exits.first().expect("the demo's exit");
    assert_eq!(
        (exit.code, exit.stopped_by_cleanup.as_deref()),
        (Some(0), None),
        "{}",
        run.context
    );
}

#[test]
fn drill_over_https_with_cacert_passes_across_a_sighup_upgrade() {
    let dir = scratch_dir("hup-files");
    let (cert, key) = certificate(&dir);
    let pid_file = dir.join("demo.pid");
    let (cert, key, pid_file) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        pid_file.to_str().unwrap(),
    );
    let run = drill(
        "sighup",
        support::free_ports(),
        &[
            &["--cacert", cert, "--connections", "mixed"][..],
            &TWO_HUPS,
            &["--pid-file", pid_file],
        ]
        .concat(),
        &["--tls-cert", cert, "--tls-key", key, "--pid-file", pid_file],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_restarted_twice(&run);
}

#[test]
fn drill_over_https_fails_every_request_to_a_server_its_cacert_does_not_vouch_for() {
    let dir = scratch_dir("untrusted-files");
    let (served, key) = certificate(&dir);
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (ca, _) = certificate(&other);
    let run = drill(
        "untrusted",
        support::free_ports(),
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--signal",
            "none",
            "--duration",
            "500ms",
        ],
        &[
            "--tls-cert",
            served.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (r, context) = (&run.report, &run.context);
    assert_eq!(run.code, Some(1), "{context}");
    assert!(!r.verdict.pass, "{context}");
    assert!(r.requests.sent > 0, "{context}");
    assert_eq!(r.requests.total.ok, 0, "{context}");
    let sample = r.failures.samples.first().expect("a failure sample");
    assert_eq!(sample.outcome, Outcome::Error, "{context}");
    assert!(
        sample.detail.contains("certificate"),
        "the reason is given: {}\n{context}",
        sample.detail
    );
}

#[test]
fn drill_of_an_https_url_without_cacert_or_insecure_is_a_usage_error() {
    let out = support::run(&["drill", "--url", "https://127.0.0.1:1/", "--signal", "none"]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("--cacert FILE") && out.stderr.contains("--insecure"),
        "{out:#?}"
    );
}

/// `SayRequest { message: "hi", ms: 5 }`.
const SAY_HI: &str = "0a0268691005";

#[test]
fn drill_grpc_unary_calls_pass_across_sigterm_of_the_demo() {
    let run = drill(
        "grpc-sigterm",
        support::free_ports(),
        &[
            "--grpc",
            "lameduck.demo.Echo/Say",
            "--grpc-message-hex",
            SAY_HI,
            "--duration",
            "2s",
            "--at",
            "700ms",
        ],
        &[],
    );
    assert_passed(&run);
    let c = &run.report.config;
    assert_eq!(
        (c.grpc.as_deref(), c.http.as_str(), c.method.as_str()),
        (Some("lameduck.demo.Echo/Say"), "2", "POST"),
        "{}",
        run.context
    );
}

#[test]
fn drill_grpc_header_names_the_method_called_not_the_path_of_the_url_given() {
    // The URL's path (`/work?ms=10`, as for plain requests) is not sent:
    // every call goes to the method's path, and the header, the JSON and
    // the HTML title say that, not the path given.
    let ports = support::free_ports();
    let html = scratch_dir("grpc-header").join("drill.html");
    let run = drill(
        "grpc-header",
        ports,
        &[
            "--grpc",
            "lameduck.demo.Echo/Say",
            "--grpc-message-hex",
            SAY_HI,
            "--signal",
            "none",
            "--duration",
            "500ms",
            "--html",
            html.to_str().expect("a UTF-8 path"),
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{}", run.context);
    assert!(run.report.requests.total.ok > 0, "{}", run.context);
    let called = format!("http://127.0.0.1:{}/lameduck.demo.Echo/Say", ports.0);
    assert_eq!(run.report.config.url, called, "{}", run.context);
    let header = format!("lameduck drill: gRPC POST {called} — 6 workers");
    assert!(run.context.contains(&header), "{header}\n{}", run.context);
    assert!(!run.context.contains("/work?ms=10 —"), "{}", run.context);
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert!(
        page.contains(&format!("lameduck drill: PASS — {called}</title>")),
        "{page}"
    );
    assert!(!page.contains("/work?ms=10"), "{page}");
}

#[test]
fn drill_grpc_health_checks_over_https_pass_across_a_sighup_upgrade() {
    let dir = scratch_dir("grpc-hup-files");
    let pid_file = dir.join("demo.pid");
    let pid_file = pid_file.to_str().unwrap();
    let run = drill(
        "grpc-sighup",
        support::free_ports(),
        &[
            &["--grpc-health", "--insecure"][..],
            &TWO_HUPS,
            &["--pid-file", pid_file],
        ]
        .concat(),
        &["--tls-self-signed", "--pid-file", pid_file],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_restarted_twice(&run);
    assert_eq!(
        run.report.config.grpc.as_deref(),
        Some("grpc.health.v1.Health/Check"),
        "{}",
        run.context
    );
}

#[test]
fn drill_grpc_of_a_method_the_server_lacks_fails_every_call_with_its_status() {
    let run = drill(
        "grpc-unimplemented",
        support::free_ports(),
        &[
            "--grpc",
            "lameduck.demo.Echo/Nope",
            "--signal",
            "none",
            "--duration",
            "300ms",
        ],
        &[],
    );
    let (r, context) = (&run.report, &run.context);
    assert_eq!(run.code, Some(1), "{context}");
    assert!(r.requests.sent > 0, "{context}");
    assert_eq!(r.requests.total.other_status, r.requests.sent, "{context}");
    let sample = r.failures.samples.first().expect("a failure sample");
    assert_eq!(sample.outcome, Outcome::OtherStatus, "{context}");
    assert!(sample.detail.starts_with("gRPC UNIMPLEMENTED"), "{context}");
    assert!(context.contains("other gRPC status"), "{context}");
}

#[test]
fn drill_grpc_flags_are_checked() {
    for (args, says) in [
        (&["--grpc", "Echo"][..], "is not SERVICE/METHOD"),
        (&["--grpc", "a.B/C", "--http", "1.1"], "--http 2"),
        (
            &["--grpc", "a.B/C", "--grpc-message-hex", "0a0"],
            "odd number of hex digits",
        ),
        (
            &["--grpc", "a.B/C", "--grpc-message-base64", "%%"],
            "is not base64",
        ),
    ] {
        let mut all = vec!["drill", "--url", "http://127.0.0.1:1/", "--signal", "none"];
        all.extend(args);
        let out = support::run(&all);
        out.assert_code(2);
        assert!(out.stderr.contains(says), "{args:?}: {out:#?}");
    }
}
