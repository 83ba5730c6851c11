//! The lifecycle in one file: a database pool, a worker that uses it, and a
//! job tracker. Press Ctrl+C (fast: no drain delay on a terminal) or send
//! `SIGTERM` (drains for 2 s) and watch the phases go by: the worker stops
//! first, its last job finishes, then the pool stops and closes.
//!
//! ```text
//! cargo run -p lameduck --example 01_lifecycle
//! kill -TERM <pid>      # from another terminal, or Ctrl+C here
//! ```

use std::io::IsTerminal;
use std::time::Duration;

use lameduck::{App, Budget, Component, Phase};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Colours only on a terminal: piped, escape codes are noise.
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal())
        .init();

    let pool = Component::new("db", |ctx| async move {
        tracing::info!("db: connecting");
        tokio::time::sleep(Duration::from_millis(200)).await;
        ctx.ready();
        ctx.on_stopping().await;
        tracing::info!("db: stopping, nobody uses it any more");
        Ok(())
    })
    .on_close(|| async {
        tracing::info!("db: pool closed");
        Ok(())
    });

    let worker = Component::new("worker", |ctx| async move {
        ctx.ready();
        let mut n = 0;
        loop {
            tokio::select! {
                _ = ctx.on_stopping() => break,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            n += 1;
            // A job the shutdown waits for: its guard is in flight until dropped.
            let job = ctx.tracker().track_with(format!("job {n}"));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                drop(job);
            });
        }
        tracing::info!("worker: no new jobs; in-flight ones finish on their own");
        Ok(())
    })
    .depends_on("db");

    let app = App::builder("example")
        .budget(Budget::new(Duration::from_secs(10)).drain_delay(Duration::from_secs(2)))
        .component(pool)
        .component(worker)
        .build();
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            eprintln!("example: {err}");
            return err.exit_status().into();
        }
    };
    let handle = app.handle();
    tokio::spawn(async move {
        handle.reached(Phase::Running).await;
        println!(
            "running as pid {}; Ctrl+C or kill -TERM to stop",
            std::process::id()
        );
    });
    let report = app.await;
    println!("{report}");
    report.exit_code()
}
