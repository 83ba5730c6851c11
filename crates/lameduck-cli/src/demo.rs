//! `lameduck demo`: a small service built on the library that shows every
//! phase of a shutdown.
//!
//! Three components: `db`, a resource that must close last; `worker`, a
//! background job loop; `http`, the server (on `db`, like the worker).
//! The routes live in `demo/routes.rs`; what a person or a log collector
//! sees, in `demo/display.rs`.
//!
//! Restartable with zero downtime: the listeners come through
//! `Listeners::from_env` (named `http` and `admin`), so `SIGHUP` starts the
//! binary on disk with the same sockets, and the old process drains once
//! the new one has taken over. `http::Server` decides who accepts on a
//! socket both processes hold, on the service port and the admin port
//! alike: a new process only once it runs, the old one not after the
//! commit.

mod display;
mod grpc;
mod hangup;
mod pid_json;
mod routes;
mod tls;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use lameduck::http::Server;
use lameduck::listen::{Listeners, TcpListener};
use lameduck::upgrade::Upgrade;
use lameduck::{App, Budget, Component};

use crate::addr::parse_socket_addr;
use crate::duration::{more_than_zero, parse_duration};
use crate::metrics_flags::MetricsFlags;
use crate::phases::PhaseFlags;

const LONG_ABOUT: &str = concat!(
    "\
Run a small service that shows every phase of a shutdown.

It serves HTTP on --listen and the probes (/livez, /readyz, /startupz, with
?verbose) and its lifecycle metrics (/metrics) on --admin, runs a background
worker, and holds a resource (db) that closes last. Send it SIGTERM (or
press Ctrl+C) while it is under load:

  draining    /readyz answers 503 at once; everything still serves; HTTP/1
              responses say Connection: close, HTTP/2 gets GOAWAY
  stopping    the listener closes (after taking the connections the kernel
              already queued); idle connections close; busy ones finish
              (a response counts until its last byte is on the wire);
              event streams end between events; WebSockets get 1001 Going
              Away and 2s to close; the worker finishes its job
  cancelling  (only if work outlives the shutdown timeout) handlers get the
              cancel signal; requests still waiting get 503 + Retry-After
  closing     db closes, last; with --final-scrape, /metrics waits for one
              more scrape of the final counts (else --pushgateway gets
              them); they are logged as one event in any case

Ctrl+C from a terminal skips the drain delay; SIGTERM always drains. A second
signal forces the exit.

SIGHUP restarts it with zero downtime: the binary on disk now starts with the
same listening sockets (the kernel's accept queue is shared, so no connection
is refused); once it is ready this process commits to it, and once it has run
for the drain delay this process drains and exits 0. If the new process fails
or is not ready within --upgrade-timeout, this one goes on serving and says
why; if it dies before it has run for the drain delay, this one takes the
service back. --pid-file always names the process serving now;
--control-socket takes `upgrade`, `status` and `reload` (the HTTPS
certificate, read again), one line each. A SIGHUP that comes as the demo's
terminal closes (it had one, and /dev/tty is gone) is a hangup, not a
restart: the demo stops as on SIGTERM, and the log says so.

Routes:
  /work?ms=50           answers after ms milliseconds (cancellable)
  /stream?n=10&ms=200   n chunks, one every ms; ends early at the cancel signal
  /events               server-sent events, one a second; ended at Stopping
  /ws                   WebSocket echo

gRPC on the same port (h2c, or h2 over HTTPS):
  lameduck.demo.Echo/Say     unary: {message, ms} back after ms milliseconds
  lameduck.demo.Echo/Count   server streaming: n replies, one every ms
  grpc.health.v1.Health      Check and Watch: SERVING while ready,
                             NOT_SERVING from the first instant of draining

HTTPS with --tls-cert and --tls-key (PEM; reloaded on the control socket's
`reload` and when the files change) or --tls-self-signed; ALPN offers h2
and http/1.1; the probes on --admin stay plain HTTP.

On a terminal it prints the phases as they happen; otherwise it logs JSON
lines (one structured event per phase change and the final report), each
with the `pid`, so that the old and the new process can be told apart during
a restart. Either way the first lines on stdout say where it listens:

  listening on http://127.0.0.1:8080      (https:// with TLS)
  admin on http://127.0.0.1:8081

Counts of what is in flight are taken at two moments: a phase line counts it
as it is printed; the report's `N in flight at stop` is the count as Stopping
began, and a flight record's inventory at stopping is that same list. A
request that starts or ends between the two moments is in one and not in
the other.

",
    crate::duration::duration_syntax!(),
    "

Exit status: the library's (see `lameduck --help`), and 2:
  0        clean
  1        a component failed
  2        bad flags or values, or a listener that cannot be set up: --admin
           equal to --listen is refused before binding, naming both; a bind
           the OS refuses names its flag and the OS's reason
           (`--admin 127.0.0.1:8081: cannot bind the \"admin\" listener:
           Address already in use`)
  3        a deadline passed
  78       an invalid configuration: a budget that does not fit, or a
           --pid-file, --control-socket or --flight-record path that cannot
           be used
  124      the exit watchdog ended a shutdown stuck past its budget
  130/143  a second SIGINT/SIGTERM forced the exit"
);

/// Run a demo service that shows every phase of a shutdown.
#[derive(Debug, clap::Args)]
#[command(long_about = LONG_ABOUT)]
pub struct Args {
    /// Address of the HTTP service (port 0 picks a free one)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    listen: SocketAddr,
    /// Address of the probes (/livez, /readyz, /startupz); the same address
    /// as --listen is refused before anything is bound (exit 2)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081", value_parser = parse_addr)]
    admin: SocketAddr,
    #[command(flatten)]
    phases: PhaseFlags,
    /// How to report: `human` phase lines, `json` log lines, or `auto`
    /// (human on a terminal)
    #[arg(long, value_name = "FORMAT", default_value = "auto")]
    output: display::Output,
    /// Keep the pid of the process serving now in this file (across
    /// restarts); a path that cannot be used stops the start (exit 78)
    #[arg(long, value_name = "PATH")]
    pid_file: Option<PathBuf>,
    /// Serve a control socket (mode 0600) that takes `upgrade`, `status` and
    /// `reload` (the HTTPS certificate);
    /// a path that cannot be used (no such directory, too long, a file or
    /// another instance's socket in the way) stops the start (exit 78)
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// How long a new process has to become ready on SIGHUP; 0s, which
    /// would fail every upgrade, is refused
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = more_than_zero(
            "would fail every upgrade before the new process could become ready",
            "30s"
        ),
        allow_hyphen_values = true,
        default_value = "30s"
    )]
    upgrade_timeout: Duration,
    /// How long an HTTP/1 keep-alive connection may wait for its next
    /// request before the server closes it, announced to clients as
    /// `Keep-Alive: timeout=N` (one second less, in whole seconds; not
    /// announced under 2s); `off` keeps idle connections for as long as
    /// their clients do; 0s is refused
    #[arg(long, value_name = "DURATION|off", value_parser = parse_timeout, allow_hyphen_values = true, default_value = "620s")]
    idle_timeout: Timeout,
    /// The listen backlog of the sockets it binds: connections the kernel
    /// queues before they are accepted [default: the larger of 1024 and
    /// net.core.somaxconn]
    #[arg(long, value_name = "CONNECTIONS")]
    backlog: Option<u32>,
    /// Write a flight record of the shutdown (and of each upgrade) to this
    /// JSON file, for `lameduck report`; `{pid}` in it becomes the process
    /// id. Its directory must exist (else exit 78)
    #[arg(long, value_name = "PATH")]
    flight_record: Option<PathBuf>,
    #[command(flatten)]
    metrics: MetricsFlags,
    #[command(flatten)]
    tls: tls::TlsFlags,
}

/// A timeout that can be turned off.
#[derive(Clone, Copy, Debug)]
struct Timeout(Option<Duration>);

/// `--listen`, `--admin`.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    parse_socket_addr(s, "IP:PORT (e.g. 127.0.0.1:8080)")
}

fn parse_timeout(s: &str) -> Result<Timeout, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(Timeout(None));
    }
    if s.trim().starts_with('-') {
        // Not the shared "0s or more": 0s is refused here too.
        return Err("a duration cannot be negative: give one, e.g. 620s, or `off`".to_string());
    }
    match parse_duration(s)? {
        Duration::ZERO => Err(
            "0s would be read as 'close at once' by some and 'never close' by others: \
             say `off` to keep idle connections open, or give a duration"
                .to_string(),
        ),
        d => Ok(Timeout(Some(d))),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let human = args.output.is_human();
    display::init_logging(human);
    // Before the runtime starts its threads: the inherited descriptors
    // (3, 4, …) are claimed as this process's own.
    let mut listeners =
        Listeners::from_env().context("taking the listening sockets passed in LISTEN_FDS")?;
    if let Some(backlog) = args.backlog {
        listeners = listeners.with_backlog(backlog);
    }
    // Caught before binding: the OS would refuse the second bind, with a
    // message that says nothing of which two flags collide.
    if args.admin == args.listen && args.listen.port() != 0 {
        anyhow::bail!(
            "--admin {} is the address --listen serves: the probes need an address of their own \
             (another port)",
            args.admin
        );
    }
    // Each error names the flag whose bind failed; the OS's reason follows.
    let http = listeners
        .tcp("http", args.listen)
        .with_context(|| format!("--listen {}", args.listen))?;
    let admin = listeners
        .tcp("admin", args.admin)
        .with_context(|| format!("--admin {}", args.admin))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args, human, http, admin))
}

async fn serve(
    args: Args,
    human: bool,
    http: TcpListener,
    admin: TcpListener,
) -> anyhow::Result<ExitCode> {
    let budget = args.phases.apply(Budget::default());
    // The drain window is the flags' alone, so its error can name them; the
    // arithmetic waits for the app, which adds its components' closes.
    if let Err(err) = crate::phases::check(&budget)
        && err.kind() == lameduck::BudgetErrorKind::DrainWindow
    {
        say!("lameduck: error: invalid configuration: {err}");
        return Ok(lameduck::ExitStatus::InvalidConfig.into());
    }

    let addr = http.local_addr().context("reading the bound address")?;
    let admin_addr = admin
        .local_addr()
        .context("reading the admin listener's address")?;
    let tls = args.tls.load()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut http = Server::new(http, grpc::with_grpc(routes::router()))
        .idle_timeout(args.idle_timeout.0)
        .admin_listener(admin);
    if let Some(tls) = tls {
        http = http.tls(tls);
    }

    // The demo tells a closed terminal's SIGHUP from an operator's itself.
    let mut upgrade = Upgrade::new()
        .timeout(args.upgrade_timeout)
        .on_sighup(false);
    if let Some(path) = &args.pid_file {
        upgrade = upgrade.pid_file(path);
    }
    if let Some(path) = &args.control_socket {
        upgrade = upgrade.control_socket(path);
    }
    let metrics = args.metrics.metrics()?;
    let mut app = App::builder("demo")
        .budget(budget)
        .metrics(&metrics)
        .upgrade(upgrade)
        .component(db())
        .component(worker())
        .component(Component::from(http).depends_on("db"));
    if let Some(path) = &args.flight_record {
        app = app.flight_record(path);
    }
    let app = app.build();
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            // The library's code for a configuration it refuses: the same
            // budget exits 78 here, in `lameduck plan` and in any service,
            // and so does a PID file or control socket path that cannot be
            // used.
            say!("lameduck: error: invalid configuration: {err}");
            return Ok(err.exit_status().into());
        }
    };

    // Machine-readable, before anything else, on every output format: tests
    // and scripts learn the ports from these lines.
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {scheme}://{addr}")?;
    writeln!(out, "admin on http://{admin_addr}")?;
    out.flush()?;
    drop(out);

    hangup::listen(app.handle()).context("listening for SIGHUP")?;
    let shown = human.then(|| tokio::spawn(display::phases(app.handle(), app.timeline().clone())));
    let report = app.await;
    if let Some(shown) = shown {
        let _ = shown.await;
        say!("{report}");
    }
    Ok(report.exit_code())
}

/// A resource that everything uses, so it stops last and closes last.
fn db() -> Component {
    Component::new("db", |ctx| async move {
        tracing::info!(target: "demo", "db: connected");
        ctx.ready();
        ctx.on_stopping().await;
        Ok(())
    })
    .on_close(|| async {
        tracing::info!(target: "demo", "db: closed, last");
        Ok(())
    })
}

/// A background worker: a job every half second, each tracked; at Stopping
/// it finishes the job in hand and returns.
fn worker() -> Component {
    Component::new("worker", move |ctx| {
        async move {
            ctx.ready();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    biased;
                    () = ctx.on_stopping() => break,
                    _ = tick.tick() => {}
                }
                let _job = ctx.tracker().track("job");
                // A job that takes a while: it is not interrupted by the
                // stop, only by the cancel signal.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    () = ctx.on_cancelled() => break,
                }
            }
            Ok(())
        }
    })
    .depends_on("db")
}
