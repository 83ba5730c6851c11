//! A service built on lameduck for process-level upgrade tests: a small
//! HTTP/1.1 server (raw tokio, lame-duck aware) that answers every request
//! with `pid <pid> gen <generation>`, on a listener named `http` taken
//! from `Listeners` (so socket activation and upgrades hand it over).
//! With `--server library` it serves through `lameduck::http::Server`
//! instead, with the probes on a second listener named `admin`, as a
//! service built from docs/restarts.md would.
//!
//! Every line it prints to stdout is `event: <pid> <what>`, so a test that
//! reads the output of several generations (they share stdout) can tell
//! them apart; logs go to stderr as JSON.
//!
//! `GET /readyz` answers the app's readiness: `200 ready` or `503 unready`.
//! With `--server library`, `GET /slow` lasts until the request's cancel
//! signal (the server then answers `503` for it).
//!
//! Failure injection: `--mode-file PATH` is read at start; its content
//! makes this generation `exit-at-start` (exit 1 before building the app),
//! `crash-after-start` (abort once components run, before ready) or
//! `never-ready`. A test writes the file before triggering an upgrade, as a
//! deployment would put a broken binary on disk.
//!
//! Fault points: `UPGRADE_FIXTURE_HOOK=<generation>:<point>:[+<delay>:]<fifo>[,…]`
//! stops that generation at the library's named point of an upgrade
//! (`lameduck::upgrade::set_fault_hook`): it prints `hook <point>`, then
//! waits until the test writes to the FIFO (or kills it there), then takes
//! `delay` more (a slow start-up).

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
    /// How long Stopping waits for work in flight (default: what the
    /// budget leaves).
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_timeout: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20s")]
    upgrade_timeout: Duration,
    /// How long an old process stays ready to take the service back
    /// (default: the drain delay).
    #[arg(long, value_parser = humantime::parse_duration)]
    settle: Option<Duration>,
    #[arg(long)]
    control: Option<PathBuf>,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    mode_file: Option<PathBuf>,
    /// Only try to connect to this control socket, send `status`, print
    /// the outcome and exit (for the permission tests, run as another
    /// user).
    #[arg(long)]
    probe_control: Option<PathBuf>,
    /// `raw`: the small server below; `library`: `lameduck::http::Server`
    /// with the probes on `--admin`.
    #[arg(long, default_value = "raw")]
    server: String,
    /// Where to bind `admin` (with `--server library`) when it is not
    /// inherited.
    #[arg(long, default_value = "127.0.0.1:0")]
    admin: String,
    /// Start this program in an upgrade instead of the fixture itself
    /// (`Upgrade::program`): a wrapper script, say.
    #[arg(long)]
    upgrade_program: Option<PathBuf>,
    /// Refuse to run with an inherited socket nobody took
    /// (`Unclaimed::Fail`) instead of warning.
    #[arg(long)]
    fail_unclaimed: bool,
}

fn event(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "event: {} {line}", std::process::id());
    let _ = out.flush();
}

const HANDOVER: &str = "fixture/generation";

/// A fault point of this generation.
struct FaultPoint {
    point: String,
    fifo: PathBuf,
    delay: Duration,
}

static HOOKS: std::sync::OnceLock<Vec<FaultPoint>> = std::sync::OnceLock::new();

fn install_hooks(generation: u64) {
    let Ok(spec) = std::env::var("UPGRADE_FIXTURE_HOOK") else {
        return;
    };
    let mine: Vec<FaultPoint> = spec
        .split(',')
        .filter_map(|h| {
            let mut parts = h.splitn(3, ':');
            let g: u64 = parts.next()?.parse().ok()?;
            let point = parts.next()?.to_string();
            let mut rest = parts.next()?;
            let mut delay = Duration::ZERO;
            if let Some(r) = rest.strip_prefix('+') {
                let (d, fifo) = r.split_once(':')?;
                delay = humantime::parse_duration(d).ok()?;
                rest = fifo;
            }
            (g == generation).then(|| FaultPoint {
                point,
                fifo: PathBuf::from(rest),
                delay,
            })
        })
        .collect();
    if mine.is_empty() {
        return;
    }
    let _ = HOOKS.set(mine);
    lameduck::upgrade::set_fault_hook(|point| {
        let Some(hook) = HOOKS
            .get()
            .and_then(|h| h.iter().find(|h| h.point == point))
        else {
            return;
        };
        // Opened for reading and writing, which on Linux does not wait for
        // a writer: the FIFO has a reader before the test hears of the
        // hook, so its release never finds none. The read then waits for
        // the test's byte.
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&hook.fifo);
        event(format_args!("hook {point}"));
        if let Ok(mut f) = fifo {
            let mut byte = [0u8; 1];
            let _ = std::io::Read::read(&mut f, &mut byte);
        }
        event(format_args!("released {point}"));
        // A slow start-up, as the test asked: not a synchronisation, the
        // test waits for what the processes say.
        std::thread::sleep(hook.delay);
    });
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.probe_control {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(mut s) => {
                println!("connected");
                let mut answer = String::new();
                let read = std::io::Write::write_all(&mut s, b"status\n")
                    .and_then(|()| std::io::Read::read_to_string(&mut s, &mut answer));
                match read {
                    Ok(_) => println!("answer: {}", answer.trim_end()),
                    Err(e) => println!("read error: {e}"),
                }
            }
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
    install_hooks(generation);

    let mut listeners = match Listeners::from_env() {
        Ok(l) if args.fail_unclaimed => l.unclaimed(lameduck::listen::Unclaimed::Fail),
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

    let mut upgrade = Upgrade::new().timeout(args.upgrade_timeout);
    if let Some(settle) = args.settle {
        upgrade = upgrade.settle(settle);
    }
    let mut upgrade = upgrade.handover(HANDOVER, move || (generation + 1).to_string().into_bytes());
    if let Some(c) = &args.control {
        upgrade = upgrade.control_socket(c);
    }
    if let Some(p) = &args.pid_file {
        upgrade = upgrade.pid_file(p);
    }
    if let Some(p) = &args.upgrade_program {
        upgrade = upgrade.program(p);
    }
    let body: Arc<str> = format!("pid {} gen {generation}\n", std::process::id()).into();
    let mut budget = Budget::new(args.grace_period).drain_delay(args.drain_delay);
    if let Some(t) = args.shutdown_timeout {
        budget = budget.shutdown_timeout(t);
    }
    let mut builder = App::builder("upgrade-fixture")
        .budget(budget)
        .upgrade(upgrade);
    if args.server == "library" {
        let admin = match listeners.tcp("admin", &args.admin) {
            Ok(l) => l,
            Err(err) => {
                eprintln!("fixture: {err}");
                return ExitCode::from(78);
            }
        };
        event(format_args!(
            "listening admin {}",
            admin.local_addr().expect("address")
        ));
        let answer = body.clone();
        let router = axum::Router::new()
            .route("/slow", axum::routing::get(slow))
            .fallback(move || {
                let answer = answer.clone();
                async move { answer.to_string() }
            });
        builder =
            builder.component(lameduck::http::Server::new(http, router).admin_listener(admin));
    } else {
        builder = builder.component(server(
            "http",
            Listening::Tcp(http.into_std()),
            body.clone(),
        ));
    }
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

/// `GET /slow` (with `--server library`): a request that ends only at its
/// cancel signal, as a long report would; it says `slow started` once in
/// flight, so that a test knows which process holds it.
async fn slow() -> &'static str {
    let cancel = lameduck::http::Cancel::current();
    event("slow started");
    match cancel {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
    "cancelled\n"
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
        let (status, text): (&str, &str) = if head.starts_with(b"GET /readyz ") {
            if ctx.app().health().is_ready() {
                ("200 OK", "ready\n")
            } else {
                ("503 Service Unavailable", "unready\n")
            }
        } else {
            ("200 OK", &body)
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n{}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" },
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
