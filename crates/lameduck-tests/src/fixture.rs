//! What the fixture programs share: building the app the way a service
//! does, printing each phase as an event line a test can wait for, and the
//! components that misbehave on purpose.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;

use lameduck::{App, AppBuilder, AppHandle, Component, Phase};

/// Prints `event: <line>` on stdout, flushed at once.
pub fn event(line: impl fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "event: {line}");
    let _ = out.flush();
}

/// A component named `blocker` that, once stopping, prints `event:
/// blocking` and blocks its runtime thread for good: nothing async can end
/// it.
pub fn blocker() -> Component {
    Component::new("blocker", |ctx| async move {
        ctx.ready();
        ctx.on_stopping().await;
        event("blocking");
        loop {
            std::thread::park();
        }
    })
}

/// Builds the app, or prints why not and gives the exit code for it (78).
pub fn build(builder: AppBuilder) -> Result<App, ExitCode> {
    builder.build().map_err(|err| {
        eprintln!("fixture: {err}");
        err.exit_status().into()
    })
}

/// Prints `phase <name>` through `event` at every phase change, until
/// Stopped.
pub fn print_phases(handle: AppHandle, event: impl Fn(fmt::Arguments<'_>) + Send + 'static) {
    tokio::spawn(async move {
        let mut rx = handle.watch_phase();
        loop {
            let phase = *rx.borrow_and_update();
            event(format_args!("phase {phase}"));
            if phase == Phase::Stopped || rx.changed().await.is_err() {
                return;
            }
        }
    });
}

/// Builds the app, prints its phases, runs it, prints each line of its
/// report as `event: report <line>`, and gives its exit code.
pub async fn run(builder: AppBuilder) -> ExitCode {
    let app = match build(builder) {
        Ok(app) => app,
        Err(code) => return code,
    };
    print_phases(app.handle(), |line| event(line));
    let report = app.await;
    for line in report.to_string().lines() {
        event(format_args!("report {line}"));
    }
    report.exit_code()
}
