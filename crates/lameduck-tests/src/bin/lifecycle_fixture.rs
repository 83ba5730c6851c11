//! A service built on lameduck for process-level tests: three components in
//! a dependency chain (db ← cache ← http), plus optional misbehaving ones.
//! It prints one `event: ...` line per thing that happens, to stdout, so a
//! test can check order; logs go to stderr as JSON.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck::{App, Budget, Component, Restart, RestartPolicy};
use lameduck_tests::fixture::{self, event};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    grace_period: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    drain_delay: Duration,
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_timeout: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    hard_timeout: Duration,
    /// Add a component that tracks one request and ignores every signal.
    #[arg(long)]
    hang: bool,
    /// Add a component that blocks its thread forever once stopping.
    #[arg(long)]
    block: bool,
    /// Add a component that panics this many times in a row after start.
    #[arg(long, default_value_t = 0)]
    panics: u32,
    /// Restart intensity for the panicking component.
    #[arg(long, default_value_t = 3)]
    max_restarts: u32,
    /// Make db depend on http, closing a cycle.
    #[arg(long)]
    cycle: bool,
}

fn chain(name: &'static str, dep: Option<&'static str>) -> Component {
    let c = Component::new(name, move |ctx| async move {
        event(format_args!("start {name}"));
        ctx.ready();
        ctx.on_stopping().await;
        event(format_args!("stop {name}"));
        Ok(())
    })
    .close_timeout(Duration::from_millis(100))
    .on_close(move || async move {
        event(format_args!("close {name}"));
        Ok(())
    });
    match dep {
        Some(d) => c.depends_on(d),
        None => c,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .init();

    let mut budget = Budget::new(args.grace_period)
        .drain_delay(args.drain_delay)
        .hard_timeout(args.hard_timeout);
    if let Some(d) = args.shutdown_timeout {
        budget = budget.shutdown_timeout(d);
    }
    let mut db = chain("db", None);
    if args.cycle {
        db = db.depends_on("http");
    }
    let mut builder = App::builder("fixture")
        .budget(budget)
        .component(db)
        .component(chain("cache", Some("db")))
        .component(chain("http", Some("cache")));
    if args.hang {
        builder = builder.component(Component::new("stuck", |ctx| async move {
            ctx.ready();
            let _request = ctx.tracker().track("GET /forever");
            std::future::pending::<()>().await;
            Ok(())
        }));
    }
    if args.block {
        builder = builder.component(fixture::blocker());
    }
    if args.panics > 0 {
        let panics = args.panics;
        builder = builder.component(
            Component::new("flaky", move |ctx| async move {
                event(format_args!("start flaky {}", ctx.attempt()));
                ctx.ready();
                if ctx.attempt() < panics {
                    panic!("flaky failure {}", ctx.attempt());
                }
                ctx.on_stopping().await;
                Ok(())
            })
            .restart(
                RestartPolicy::new(Restart::Transient)
                    .backoff(Duration::from_millis(10), Duration::from_millis(50))
                    .intensity(args.max_restarts, Duration::from_secs(60)),
            ),
        );
    }
    fixture::run(builder).await
}
