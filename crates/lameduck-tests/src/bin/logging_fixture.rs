//! A program that logs N numbered lines through `lameduck::logging`'s
//! non-blocking writer during its shutdown, then ends the way it is told:
//!
//!   logging-fixture MODE FILE N
//!
//! MODE: `clean` (exit 0), `deadline` (the lines' writer outlives both
//! deadlines: exit 3), `second-signal` (waits for a second SIGTERM: exit
//! 143), `watchdog` (blocks the runtime: the exit watchdog, 124), `panic`
//! (the main thread panics: 101). It prints `ready` once running, and
//! `written` once the N lines are logged (not necessarily on disk).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use lameduck::{App, Budget, Component};

fn say(what: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{what}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, file, n] = &args[..] else {
        eprintln!("usage: logging-fixture MODE FILE N");
        return ExitCode::from(2);
    };
    let n: usize = n.parse().expect("N is a number");
    let file = std::fs::File::create(file).expect("the log file");
    let (writer, logs) = lameduck::logging::non_blocking(file);
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(writer)
        .init();
    logs.install_panic_hook();

    let panic_now = Arc::new(tokio::sync::Notify::new());
    let mode = mode.clone();
    let budget = Budget::new(Duration::from_secs(3))
        .drain_delay(Duration::ZERO)
        .shutdown_timeout(Duration::from_millis(300))
        .hard_timeout(Duration::from_millis(300))
        .safety_margin(Duration::from_millis(500));
    let app = App::builder("logs")
        .budget(budget)
        .on_flush(logs.flusher())
        .component(Component::new("writer", {
            let (mode, panic_now) = (mode.clone(), panic_now.clone());
            move |ctx| {
                let (mode, panic_now) = (mode.clone(), panic_now.clone());
                async move {
                    ctx.ready();
                    ctx.on_stopping().await;
                    for i in 0..n {
                        tracing::info!(target: "fixture", "shutdown line {i}");
                    }
                    say("written");
                    match mode.as_str() {
                        "clean" => Ok(()),
                        "watchdog" => {
                            // Blocks this worker thread, and with it the
                            // runtime (one thread): only the watchdog ends it.
                            std::thread::sleep(Duration::from_secs(3600));
                            Ok(())
                        }
                        "panic" => {
                            panic_now.notify_one();
                            std::future::pending().await
                        }
                        // deadline, second-signal: never returns.
                        _ => std::future::pending().await,
                    }
                }
            }
        }))
        .build()
        .expect("valid app");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let handle = app.handle();
        let run = app.run();
        tokio::pin!(run);
        tokio::select! {
            report = &mut run => report.exit_code(),
            () = async {
                handle.reached(lameduck::Phase::Running).await;
                say("ready");
                panic_now.notified().await;
            } => panic!("fixture panic after the lines"),
        }
    })
}
