//! The README's example, as it is there: a database pool and a worker that
//! uses it. Run it, then stop it with `kill -TERM <pid>` (or Ctrl+C, which
//! skips the drain delay on a terminal) and watch the log and the report.
//!
//! ```text
//! cargo run -p lameduck --example 00_quickstart
//! ```

use std::io::IsTerminal;
use std::time::Duration;

use lameduck::{App, Budget, Component};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // lameduck logs each phase change and the final report through `tracing`:
    // without a subscriber, nothing is printed. Colours only on a terminal:
    // piped to a file or a log collector, escape codes are noise.
    let colours = std::io::stdout().is_terminal();
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(colours)
        .init();

    let app = App::builder("orders")
        .budget(Budget::new(Duration::from_secs(30)))
        .component(
            Component::new("db", |ctx| async move {
                ctx.ready(); // connected
                ctx.on_stopping().await; // fires after every user of the pool stopped
                Ok(())
            })
            .on_close(|| async { Ok(()) }), // close the pool
        )
        .component(
            Component::new("worker", |ctx| async move {
                ctx.ready();
                while !ctx.is_stopping() {
                    let _job = ctx.tracker().track("job"); // the shutdown waits for it
                    tokio::select! {
                        _ = ctx.on_stopping() => {}
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
                Ok(())
            })
            .depends_on("db"),
        )
        .build();
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            // A budget that does not fit, a dependency cycle: say why, exit 78.
            eprintln!("orders: {err}");
            return err.exit_status().into();
        }
    };
    let report = app.await;
    println!("{report}"); // the report again, for people: each phase, the work, the exit
    report.exit_code()
}
