//! What the fixture programs share: building the app the way a service
//! does, and printing each phase as an event line a test can wait for.

use std::fmt;
use std::process::ExitCode;

use lameduck::{App, AppBuilder, AppHandle, Phase};

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
