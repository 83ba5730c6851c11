//! The flight record seen by a person: `lameduck report --html` on a
//! checked-in record, rendered by a real headless Chromium; and `lameduck
//! drill --flight-record` against the real demo, which writes its record on
//! a real SIGTERM (or, handing over to a new process, on a real SIGHUP),
//! with the server's phases on the drill's own timeline.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use lameduck_drill::report::{ConditionStatus, Report, ServerRecord};

/// The checked-in record of a demo shutdown past its deadline, with a
/// stream stuck at `shutdown_timeout`.
const RECORD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/flight-record.json");

/// What a server instant may show early on the drill's clock: the record's
/// start and its instants are each cut to the whole millisecond.
const ALIGNMENT_US: u64 = 2_000;

/// A directory of its own for one test, removed at its end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("lameduck-view-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The page as headless Chromium built it (`--dump-dom`), and what
/// Chromium logged while loading it.
fn chromium_dom(page: &Path, profile: &Path) -> (String, String) {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "this test needs Debian's chromium at /usr/bin/chromium: `scripts/test` installs it \
         (apt-get install -y chromium)"
    );
    let output = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .args(["--disable-sync", "--no-first-run"])
        .args(["--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Fails if the page refers to anything outside itself.
#[track_caller]
fn assert_self_contained(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"));
    for external in ["<script", "<link", "src=", "@import", "url("] {
        assert!(
            !page.contains(external),
            "the page refers to something outside it: {external}"
        );
    }
}

#[test]
fn report_html_of_a_checked_in_record_renders_its_phases_and_stuck_work_in_chromium() {
    let dir = TempDir::new("report-html");
    let html = dir.join("record.html");
    let out = support::run(&["report", RECORD, "--html", html.to_str().unwrap()]);
    out.assert_code(0);
    // The text still goes to the terminal.
    assert!(
        out.stdout.contains("in flight at shutdown_timeout"),
        "{out:#?}"
    );
    let page = std::fs::read_to_string(&html).expect("the page was written");
    assert_self_contained(&page);

    let (dom, log) = chromium_dom(&html, &dir.join("profile"));
    assert!(dom.contains("</html>"), "Chromium built no page:\n{log}");
    for error in ["Uncaught", "SyntaxError", "ERR_FILE_NOT_FOUND"] {
        assert!(!log.contains(error), "Chromium logged {error:?}:\n{log}");
    }
    // Every phase is a row of the phases table, with its cause, and a bar
    // of the timeline.
    for (phase, cause) in [
        ("starting", "run"),
        ("running", "every component is ready"),
        ("draining", "SIGTERM"),
        ("stopping", "quiet for 500ms after 1.613s"),
        ("cancelling", "shutdown timeout passed"),
        ("closing", "every component stopped"),
    ] {
        let row = format!("<tr class=\"phase\"><td>{phase}</td>");
        let at = dom
            .find(&row)
            .unwrap_or_else(|| panic!("no row for {phase}:\n{dom}"));
        let end = at + dom[at..].find("</tr>").expect("the row ends");
        assert!(
            dom[at..end].contains(cause),
            "{phase} without its cause: {}",
            &dom[at..end]
        );
    }
    assert_eq!(dom.matches("<rect class=\"phase\"").count(), 6, "{dom}");
    // What ended the drain, and the stream stuck at the deadline, by label.
    assert!(
        dom.contains("What ended the drain:</strong> quiet"),
        "{dom}"
    );
    let deadline = dom
        .find("In flight at shutdown_timeout")
        .unwrap_or_else(|| panic!("no inventory at the deadline:\n{dom}"));
    let section = &dom[deadline..deadline + dom[deadline..].find("</section>").unwrap()];
    assert!(
        section.contains("<td class=\"label\">GET /stream</td>"),
        "the stuck stream is not named:\n{section}"
    );
    assert!(section.contains("127.0.0.1:55694"), "{section}");
    // The traffic per tick, by listener.
    assert!(dom.contains("arrivals per 100 ms by listener"), "{dom}");
}

#[test]
fn report_html_to_a_path_it_cannot_write_exits_2_saying_why() {
    let dir = TempDir::new("report-html-unwritable");
    let out_path = dir.join("no-such-dir").join("record.html");
    let out = support::run(&["report", RECORD, "--html", out_path.to_str().unwrap()]);
    out.assert_code(2);
    assert!(
        out.stderr.contains("cannot write the HTML page"),
        "{out:#?}"
    );
}

/// `lameduck drill --demo` with a short schedule, and `extra` flags.
fn drill_demo(dir: &TempDir, extra: &[&str]) -> (std::process::Output, String) {
    let json = dir.join("report.json");
    let output = support::lameduck()
        .args(["drill", "--demo", "--duration", "2s", "--at", "600ms"])
        .args(["--no-progress", "--json"])
        .arg(&json)
        .arg("--server-log")
        .arg(dir.join("demo.log"))
        .args(extra)
        .output()
        .expect("run lameduck drill");
    let context = support::drill_context(&output, &dir.join("demo.log"));
    (output, context)
}

fn report(dir: &TempDir, context: &str) -> Report {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
    Report::from_json(&text).unwrap_or_else(|err| panic!("no JSON report ({err})\n{context}"))
}

fn phase_start(server: &ServerRecord, phase: &str) -> i64 {
    server
        .phases
        .iter()
        .find(|p| p.phase == phase)
        .unwrap_or_else(|| panic!("the server went through no {phase}: {server:#?}"))
        .start_us
}

#[test]
fn drill_with_a_flight_record_puts_the_server_phases_on_its_timeline() {
    let dir = TempDir::new("drill-record");
    let record = dir.join("demo-{pid}.json");
    let html = dir.join("drill.html");
    let (output, context) = drill_demo(
        &dir,
        &[
            "--flight-record",
            record.to_str().unwrap(),
            "--require-flight-record",
            "--html",
            html.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{context}");
    let report = report(&dir, &context);
    let server = report
        .server
        .as_ref()
        .expect("the report has the server's side");
    assert_eq!(server.error, None, "{context}");
    let pid = report.events.signals[0].pid.expect("the signalled pid");
    assert_eq!(server.pid, pid, "{context}");
    assert!(
        server.path.ends_with(&format!("demo-{pid}.json")),
        "{}",
        server.path
    );
    let condition = report
        .verdict
        .conditions
        .iter()
        .find(|c| c.name == "flight_record")
        .expect("a flight_record condition");
    assert_eq!(condition.status, ConditionStatus::Pass, "{context}");

    // The clocks agree: the server began draining after the drill sent
    // SIGTERM and before the listener was seen closed, and stopped (closing
    // its listener) before the drill saw it closed.
    let signal_us = report.events.signals[0].at_us as i64;
    let closed_us = report
        .events
        .listener_closed_us
        .expect("the listener closed") as i64;
    let draining = phase_start(server, "draining");
    let stopping = phase_start(server, "stopping");
    assert!(
        draining + ALIGNMENT_US as i64 >= signal_us && draining < closed_us,
        "draining at {draining}µs, SIGTERM at {signal_us}µs, closed at {closed_us}µs\n{context}"
    );
    assert!(
        stopping >= draining && stopping <= closed_us + ALIGNMENT_US as i64,
        "stopping at {stopping}µs, listener closed at {closed_us}µs\n{context}"
    );
    assert!(
        phase_start(server, "running") < 0,
        "the demo was running before the load: {server:#?}"
    );
    assert_eq!(server.inventories[0].at, "stopping", "{context}");

    // The summary interleaves the server's phases with the drill's events,
    // and the page draws them under the clients' panels.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "server: draining (SIGTERM)",
        "server: stopping (",
        "server: in flight at stopping",
        "ok   flight_record: read",
    ] {
        assert!(
            stdout.contains(needle),
            "the summary lacks {needle:?}\n{context}"
        );
    }
    let page = std::fs::read_to_string(&html).expect("the HTML report");
    assert_self_contained(&page);
    let (dom, log) = chromium_dom(&html, &dir.join("profile"));
    for needle in [
        "server phases: demo (pid",
        "<rect class=\"phase\"",
        "<tr class=\"phase\"><td>draining</td>",
        "In flight at stopping",
    ] {
        assert!(dom.contains(needle), "the page lacks {needle:?}:\n{log}");
    }
}

#[test]
fn drill_warns_of_a_missing_flight_record_and_fails_only_when_it_is_required() {
    let dir = TempDir::new("drill-missing");
    let missing = dir.join("never-written.json");
    let missing = missing.to_str().unwrap();
    // The demo is not told to write it: the drill waits, bounded, then says so.
    let (output, context) = drill_demo_without_record(&dir, missing, false);
    assert_eq!(output.status.code(), Some(0), "a warning only\n{context}");
    let r = report(&dir, &context);
    let server = r
        .server
        .as_ref()
        .expect("the report says what became of it");
    assert!(
        server.error.as_deref().unwrap_or("").contains("no file"),
        "{context}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("warning: no flight record"), "{context}");
    assert!(stdout.contains("skip flight_record"), "{context}");

    let (output, context) = drill_demo_without_record(&dir, missing, true);
    assert_eq!(output.status.code(), Some(1), "required\n{context}");
    let r = report(&dir, &context);
    assert!(!r.verdict.pass, "{context}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("FAIL flight_record"),
        "{context}"
    );
}

/// A drill of the demo that asks for a record at `path` without the demo
/// writing one there (it writes its own elsewhere).
fn drill_demo_without_record(
    dir: &TempDir,
    path: &str,
    required: bool,
) -> (std::process::Output, String) {
    let (port, admin) = support::free_ports();
    let json = dir.join("report.json");
    let mut cmd = support::lameduck();
    cmd.arg("drill")
        .args(["--url", &format!("http://127.0.0.1:{port}/work?ms=5")])
        .args(["--ready-url", &format!("http://127.0.0.1:{admin}/readyz")])
        .args(["--duration", "2s", "--at", "600ms", "--no-progress"])
        .args(["--flight-record", path])
        .arg("--json")
        .arg(&json)
        .arg("--server-log")
        .arg(dir.join("demo.log"));
    if required {
        cmd.arg("--require-flight-record");
    }
    let output = cmd
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_lameduck"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--drain-delay", "300ms"])
        .output()
        .expect("run lameduck drill");
    let context = support::drill_context(&output, &dir.join("demo.log"));
    (output, context)
}

#[test]
fn restart_drill_reads_the_record_of_the_process_it_signalled_with_the_upgrade_steps() {
    let dir = TempDir::new("drill-restart");
    let record = dir.join("demo-{pid}.json");
    let (output, context) = drill_demo(
        &dir,
        &[
            "--signal",
            "HUP",
            "--flight-record",
            record.to_str().unwrap(),
            "--require-flight-record",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{context}");
    let report = report(&dir, &context);
    let old = report.events.signals[0].pid.expect("the signalled pid");
    let new = report.events.restarts[0].new_pid.expect("the new process");
    let server = report.server.as_ref().expect("the server's side");
    assert_eq!(server.error, None, "{context}");
    // `{pid}` named the old process, which handed over and wrote its record
    // as it left.
    assert_eq!(server.pid, old, "{context}");
    let upgrade = server.upgrades.first().expect("the upgrade the HUP began");
    assert_eq!(upgrade.outcome.as_deref(), Some("succeeded"), "{context}");
    assert_eq!(upgrade.new_pid, Some(new), "{context}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("server: upgrade succeeded"),
        "the summary lacks the upgrade's steps\n{context}"
    );
    assert!(
        stdout.contains(&format!("server: draining (upgraded: pid {new} took over)")),
        "{context}"
    );
}
