//! A service built on lameduck for process-level upgrade tests: a small
//! HTTP/1.1 server (raw tokio, lame-duck aware) that answers every request
//! with `pid <pid> gen <generation>`, on a listener named `http` taken
//! from `Listeners` (so socket activation and upgrades hand it over).
//!
//! Every line it prints to stdout is `event: <pid> <what>`, so a test that
//! reads the output of several generations (they share stdout) can tell
//! them apart; logs go to stderr as JSON.
//!
//! Failure injection: `--mode-file PATH` is read at start; its content
//! makes this generation `exit-at-start` (exit 1 before building the app),
//! `crash-after-start` (abort once components run, before ready) or
//! `never-ready`. A test writes the file before triggering an upgrade, as a
//! deployment would put a broken binary on disk.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use lameduck::listen::Listeners;
use lameduck::upgrade::{Upgrade, take_handover};
use lameduck::{App, Budget, Component, Context, Phase, WorkGuard};
use lameduck_tests::fixture;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Parser)]
struct Args {
    /// Where to bind `http` when it is not inherited.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Also serve on a Unix socket named `unix` at this path.
    #[arg(long)]
    unix: Option<PathBuf>,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    grace_period: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "300ms")]
    drain_delay: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    upgrade_timeout: Duration,
    #[arg(long)]
    control: Option<PathBuf>,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    mode_file: Option<PathBuf>,
    /// Only try to connect to this control socket, print the outcome and
    /// exit (for the permission test, run as another user).
    #[arg(long)]
    probe_control: Option<PathBuf>,
}

fn event(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "event: {} {line}", std::process::id());
    let _ = out.flush();
}

const HANDOVER: &str = "fixture/generation";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.probe_control {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => println!("connected"),
            Err(e) => println!("refused: {e}"),
        }
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .init();
    let mode = args
        .mode_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let mode = mode.trim().to_string();
    if mode == "exit-at-start" {
        eprintln!("fixture: failing at start, as the mode file says");
        return ExitCode::from(1);
    }
    let generation: u64 = match take_handover(HANDOVER) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).parse().unwrap_or(0),
        Ok(None) => 0,
        Err(err) => {
            eprintln!("fixture: {err}");
            0
        }
    };
    event(format_args!("generation {generation}"));

    let mut listeners = match Listeners::from_env() {
        Ok(l) => l,
        Err(err) => {
            eprintln!("fixture: {err}");
            event(format_args!(
                "listen-error {}",
                err.variable().unwrap_or("-")
            ));
            return ExitCode::from(78);
        }
    };
    let inherited: Vec<String> = listeners.names().map(str::to_string).collect();
    event(format_args!("inherited [{}]", inherited.join(",")));
    let http = match listeners.tcp("http", &args.listen) {
        Ok(l) => l,
        Err(err) => {
            eprintln!("fixture: {err}");
            return ExitCode::from(78);
        }
    };
    event(format_args!(
        "listening http {}",
        http.local_addr().expect("address")
    ));
    let unix = match &args.unix {
        Some(path) => match listeners.unix("unix", path) {
            Ok(l) => {
                event(format_args!("listening unix {}", path.display()));
                Some(l.into_std())
            }
            Err(err) => {
                eprintln!("fixture: {err}");
                return ExitCode::from(78);
            }
        },
        None => None,
    };

    let mut upgrade = Upgrade::new()
        .timeout(args.upgrade_timeout)
        .handover(HANDOVER, move || (generation + 1).to_string().into_bytes());
    if let Some(c) = &args.control {
        upgrade = upgrade.control_socket(c);
    }
    if let Some(p) = &args.pid_file {
        upgrade = upgrade.pid_file(p);
    }
    let body: Arc<str> = format!("pid {} gen {generation}\n", std::process::id()).into();
    let mut builder = App::builder("upgrade-fixture")
        .budget(Budget::new(args.grace_period).drain_delay(args.drain_delay))
        .upgrade(upgrade)
        .component(server(
            "http",
            Listening::Tcp(http.into_std()),
            body.clone(),
        ));
    if let Some(u) = unix {
        builder = builder.component(server("unix", Listening::Unix(u), body));
    }
    match mode.as_str() {
        "crash-after-start" => {
            builder = builder.component(Component::new("crasher", |_ctx| async move {
                event("crashing");
                std::process::abort();
            }));
        }
        "never-ready" => {
            builder = builder.component(Component::new("sluggard", |ctx| async move {
                event("never ready");
                ctx.on_stopping().await;
                Ok(())
            }));
        }
        _ => {}
    }
    let app = match fixture::build(builder) {
        Ok(app) => app,
        Err(code) => return code,
    };
    fixture::print_phases(app.handle(), |line| event(line));
    let report = app.await;
    if let Some(reason) = &report.reason {
        event(format_args!("reason {reason}"));
    }
    event(format_args!("exit code={}", report.status().code()));
    report.exit_code()
}

enum Listening {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// The HTTP component. The listener is taken on the first run only.
///
/// It reports ready at once but accepts only once the whole app is Running:
/// after an upgrade, the accept queue is shared with the old process, which
/// serves it until then — so a new process that crashes or never becomes
/// ready has taken no connection with it.
fn server(name: &'static str, listening: Listening, body: Arc<str>) -> Component {
    let slot = Arc::new(Mutex::new(Some(listening)));
    Component::new(name, move |ctx| {
        let slot = slot.clone();
        let body = body.clone();
        async move {
            let listening = slot.lock().unwrap().take().ok_or("the listener is gone")?;
            match listening {
                Listening::Tcp(l) => {
                    l.set_nonblocking(true)?;
                    let l = tokio::net::TcpListener::from_std(l)?;
                    ctx.ready();
                    if !running(&ctx).await {
                        return Ok(());
                    }
                    loop {
                        tokio::select! {
                            r = l.accept() => if let Ok((s, _)) = r {
                                let _ = s.set_nodelay(true);
                                // Tracked before the task runs: the shutdown
                                // must not finish between accept and spawn.
                                let guard = ctx.tracker().track("connection");
                                tokio::spawn(connection(s, ctx.clone(), body.clone(), guard));
                            },
                            () = ctx.on_stopping() => break,
                        }
                    }
                }
                Listening::Unix(l) => {
                    l.set_nonblocking(true)?;
                    let l = tokio::net::UnixListener::from_std(l)?;
                    ctx.ready();
                    if !running(&ctx).await {
                        return Ok(());
                    }
                    loop {
                        tokio::select! {
                            r = l.accept() => if let Ok((s, _)) = r {
                                let guard = ctx.tracker().track("connection");
                                tokio::spawn(connection(s, ctx.clone(), body.clone(), guard));
                            },
                            () = ctx.on_stopping() => break,
                        }
                    }
                }
            }
            // The listener closes here; another process may still hold the
            // socket, and its accept queue, after an upgrade.
            Ok(())
        }
    })
}

/// Waits until the app is Running; false if it never got there (a
/// shutdown from Starting: `reached` completes for any later phase too).
async fn running(ctx: &Context) -> bool {
    ctx.app().reached(Phase::Running).await;
    ctx.phase() == Phase::Running
}

/// One connection: requests until the client closes, or the app drains
/// (the response says `Connection: close`), or it stops while idle.
async fn connection<S>(stream: S, ctx: Context, body: Arc<str>, _conn: WorkGuard)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    let mut served = 0u64;
    loop {
        let mut head = Vec::new();
        let read = read_head(&mut stream, &mut head);
        let got = if served == 0 {
            read.await
        } else {
            tokio::select! {
                r = read => r,
                // Idle keep-alive connection at Stopping: close it.
                () = ctx.on_stopping() => return,
            }
        };
        match got {
            Ok(true) => {}
            _ => return,
        }
        let _req = ctx.tracker().track("GET /");
        let client_close = head
            .windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"connection: close"));
        let close = client_close || ctx.is_draining();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{}\r\n{}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" },
            body
        );
        if stream.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        served += 1;
        if close {
            let _ = stream.get_mut().shutdown().await;
            return;
        }
    }
}

/// Reads a request head (up to the blank line); `Ok(false)` at a clean EOF.
async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    head: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut r = r.take(16 * 1024);
    loop {
        let before = head.len();
        let n = r.read_until(b'\n', head).await?;
        if n == 0 {
            return Ok(false);
        }
        if &head[before..] == b"\r\n" || &head[before..] == b"\n" {
            return Ok(true);
        }
    }
}
