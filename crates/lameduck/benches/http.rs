//! How fast the HTTP server stops.
//!
//! Run with `cargo bench -p lameduck --features http --bench http`. It
//! prints the time from SIGTERM to exit of a lameduck server process with a
//! drain delay of 0: idle, and with 10,000 idle keep-alive connections open
//! (targets: at most 20 ms and 200 ms). The server is this same binary,
//! started again as a child; the time runs from `kill` to `waitpid`.
//!
//! What the server costs while it runs (throughput, CPU and instructions
//! per request against hyper-util and `axum::serve`, under wrk and h2load)
//! is `scripts/bench http`, which also runs this.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use lameduck::http::Server;
use lameduck::{App, Budget};

/// The full settings, and the short ones `LAMEDUCK_BENCH_SMOKE` asks for
/// (CI checks that the bench runs, not what it measures).
struct Settings {
    idle_connections: usize,
    exit_samples: usize,
}

fn settings() -> Settings {
    if std::env::var_os("LAMEDUCK_BENCH_SMOKE").is_some() {
        Settings {
            idle_connections: 500,
            exit_samples: 1,
        }
    } else {
        Settings {
            idle_connections: 10_000,
            exit_samples: 5,
        }
    }
}
const CHILD: &str = "LAMEDUCK_BENCH_CHILD";

fn main() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    // `cargo bench ... -- throughput` or `-- exit` runs one part; `cargo
    // bench` itself passes `--bench`, which is not a filter.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs = |part: &str| filter.is_empty() || filter.iter().any(|f| part.contains(f.as_str()));
    raise_fd_limit();
    if runs("exit") {
        exit_times();
    }
}

/// The trivial handler both servers run.
#[derive(Clone)]
struct Hello;

impl tower_service::Service<Request<Incoming>> for Hello {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Incoming>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"hello")))))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn exit_times() {
    let Settings {
        idle_connections,
        exit_samples,
        ..
    } = settings();
    println!("(b) SIGTERM to exit, drain delay 0, median of {exit_samples}");
    for idle in [0, idle_connections] {
        let mut samples: Vec<Duration> = (0..exit_samples).map(|_| exit_time(idle)).collect();
        samples.sort();
        let target = if idle == 0 { "<= 20 ms" } else { "<= 200 ms" };
        println!(
            "    {idle:>6} idle keep-alive connections  {:>8.2} ms   (min {:.2}, max {:.2}; target {target})",
            ms(samples[exit_samples / 2]),
            ms(samples[0]),
            ms(samples[exit_samples - 1]),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts a server process, opens `idle` keep-alive connections (each used
/// once), then times SIGTERM to exit.
fn exit_time(idle: usize) -> Duration {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line.trim().parse().expect("the child prints its address");
    let rt = runtime();
    let conns = rt.block_on(open_idle(addr, idle));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let start = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "the server exited with {status}");
    drop(conns);
    elapsed
}

/// Opens `n` connections, makes one request on each, and keeps them as
/// plain sockets, out of any reactor: the client stays idle while the
/// server closes them, and is not measured.
async fn open_idle(addr: SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut conns = Vec::with_capacity(n);
    // In batches: the listen backlog is 1024.
    let mut left = n;
    while left > 0 {
        let batch = left.min(256);
        left -= batch;
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..batch {
            opening.spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
                    .await
                    .unwrap();
                // The response is small and whole: headers, then "hello".
                let mut buf = Vec::new();
                while !buf.ends_with(b"hello") {
                    let mut chunk = [0u8; 512];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "closed early");
                    buf.extend_from_slice(&chunk[..n]);
                }
                stream.into_std().unwrap()
            });
        }
        while let Some(conn) = opening.join_next().await {
            conns.push(conn.unwrap());
        }
    }
    conns
}

/// The server process of (b).
fn child() {
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(async {
        let server = Server::bind("127.0.0.1:0", Hello).unwrap();
        let addr = server.local_addr().unwrap();
        let app = App::builder("bench")
            .budget(Budget::default().drain_delay(Duration::ZERO))
            .component(server)
            .build()
            .unwrap();
        let handle = app.handle();
        let run = tokio::spawn(app.run());
        // Running means the signal handlers are installed: only now may the
        // parent send SIGTERM.
        handle.reached(lameduck::Phase::Running).await;
        println!("{addr}");
        let report = run.await.unwrap();
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("{report}");
        }
        report.status().code()
    });
    drop(rt);
    std::process::exit(code.into());
}

/// 10,000 connections need 10,000 descriptors on each side.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
