//! A service built on lameduck for the signal tests: a raw HTTP/1.1 server
//! whose uploads are in-flight work for as long as the client takes to send
//! the body, a `/shutdown` route that calls `AppHandle::shutdown`, and
//! optional components that hold the runtime: a pending `stdin` read (which
//! makes dropping the runtime block) or a thread blocked for good.
//!
//! It prints one `event: ...` line per thing that happens, to stdout, so a
//! test can wait for it; logs go to stderr as JSON.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lameduck::{App, AppHandle, Budget, Component, Context};
use lameduck_tests::fixture::{self, event};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    grace_period: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    drain_delay: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    hard_timeout: Duration,
    /// Run on a current-thread runtime.
    #[arg(long)]
    current_thread: bool,
    /// Add a component that reads stdin (a blocking read on tokio's pool).
    #[arg(long)]
    read_stdin: bool,
    /// Add a component that blocks its thread for good once stopping.
    #[arg(long)]
    block: bool,
    /// Serve HTTP on 127.0.0.1, a free port.
    #[arg(long)]
    http: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .init();
    let runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("a runtime");
    // Dropped at the end of `main`, as `#[tokio::main]` does: that is where a
    // pending blocking read holds the process.
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> ExitCode {
    let mut builder = App::builder("signals-fixture").budget(
        Budget::new(args.grace_period)
            .drain_delay(args.drain_delay)
            .hard_timeout(args.hard_timeout),
    );
    if args.read_stdin {
        builder = builder.component(Component::new("stdin", |ctx| async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            ctx.ready();
            event("reading stdin");
            tokio::select! {
                _ = stdin.read(&mut buf) => {}
                () = ctx.on_stopping() => {}
            }
            Ok(())
        }));
    }
    if args.block {
        builder = builder.component(fixture::blocker());
    }
    if args.http {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        event(format_args!(
            "listening {}",
            listener.local_addr().expect("address")
        ));
        let slot = std::sync::Mutex::new(Some(listener));
        builder = builder.component(Component::new("http", move |ctx| {
            let listener = slot.lock().unwrap().take();
            async move {
                let listener = listener.ok_or("the listener is gone")?;
                ctx.ready();
                loop {
                    tokio::select! {
                        r = listener.accept() => if let Ok((s, _)) = r {
                            let conn = ctx.tracker().track("connection");
                            let ctx = ctx.clone();
                            tokio::spawn(async move {
                                let _conn = conn;
                                let _ = exchange(s, &ctx).await;
                            });
                        },
                        () = ctx.on_stopping() => return Ok(()),
                    }
                }
            }
        }));
    }
    fixture::run(builder).await
}

/// One request, then the connection closes. `GET /shutdown` calls
/// `AppHandle::shutdown`; a request with a body is in flight (tracked)
/// until its last byte came in, then answered with the body's length.
async fn exchange(stream: tokio::net::TcpStream, ctx: &Context) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let before = head.len();
        if stream.read_line(&mut head).await? == 0 {
            return Ok(());
        }
        if head[before..].trim().is_empty() {
            break;
        }
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let body = if path == "/shutdown" {
        shutdown(ctx.app());
        "shutting down".to_string()
    } else {
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let _request = ctx.tracker().track_with(format!("POST {path}"));
        event(format_args!("request {path} started"));
        let mut got = vec![0u8; len];
        stream.read_exact(&mut got).await?;
        event(format_args!("request {path} complete"));
        format!("got {len} bytes")
    };
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.get_mut().write_all(resp.as_bytes()).await?;
    stream.get_mut().shutdown().await
}

fn shutdown(app: &AppHandle) {
    event("shutdown requested");
    app.shutdown("asked over HTTP");
}
