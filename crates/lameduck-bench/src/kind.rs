//! The kinds of server the benchmarks compare, and how to start each.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::net::{free_ports, free_ports_on};
use crate::scratch::Scratch;

/// The naive Python server of the `lameduck run` comparison: it binds its
/// own port (or takes descriptor 3 from `LISTEN_FDS`), answers every GET,
/// and dies at once on SIGTERM (`--graceful`: finishes what it has). The
/// same file the CLI's process tests run.
const NAIVE_SERVER: &str = include_str!("../../lameduck-cli/tests/programs/naive_server.py");

/// A kind of server, as it behaves on SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// `lameduck demo`: unready at once, serves through the drain delay,
    /// then closes its listener and finishes what is in flight.
    Lameduck,
    /// `baseline-axum`: axum's plain `with_graceful_shutdown`, readiness
    /// always 200.
    Axum,
    /// `dies-on-term`: exits at once.
    Dies,
    /// A naive Python `http.server` that dies at once on SIGTERM, bare.
    Python,
    /// The same under `tini -s` (Debian's tini).
    Tini,
    /// The same under `dumb-init` (Debian's dumb-init).
    DumbInit,
    /// The same under `catatonit` (Debian's catatonit).
    Catatonit,
    /// The same under `lameduck run`: probes on its admin port, ready once
    /// the program answers, drained before it hears of the stop.
    LameduckRun,
    /// `lameduck demo` restarted in place: SIGHUP, its successor takes the
    /// same listening sockets, then it drains and exits.
    LameduckSighup,
    /// `actix-graceful`: actix-web 4's `HttpServer` with its default
    /// graceful shutdown, readiness always 200.
    #[value(name = "actix-graceful")]
    #[serde(rename = "actix-graceful")]
    Actix,
    /// `graceful-shutdown-axum`: axum under tokio-graceful-shutdown, as its
    /// documentation shows, readiness always 200.
    #[value(name = "tokio-graceful-shutdown")]
    #[serde(rename = "tokio-graceful-shutdown")]
    GracefulShutdown,
    /// `go-article`: the VictoriaMetrics article's Go server, its periods as
    /// the article sets them (drain 5 s).
    GoArticle,
    /// The same with the drain delay lameduck has in the run.
    GoArticleMatched,
    /// `axum-article`: the article's pattern on axum, the article's periods.
    AxumArticle,
    /// The same with the drain delay lameduck has in the run.
    AxumArticleMatched,
}

impl ServerKind {
    /// Every kind, in table order.
    pub const ALL: [ServerKind; 3] = [ServerKind::Lameduck, ServerKind::Axum, ServerKind::Dies];

    /// lameduck and every peer a user would pick instead, in table order
    /// (`scripts/bench rolling`).
    pub const PEERS: [ServerKind; 10] = [
        ServerKind::Lameduck,
        ServerKind::LameduckSighup,
        ServerKind::Axum,
        ServerKind::Actix,
        ServerKind::GracefulShutdown,
        ServerKind::GoArticle,
        ServerKind::GoArticleMatched,
        ServerKind::AxumArticle,
        ServerKind::AxumArticleMatched,
        ServerKind::Dies,
    ];

    /// The naive Python server, bare and under each init, in table order
    /// (`scripts/bench run`).
    pub const INITS: [ServerKind; 5] = [
        ServerKind::Python,
        ServerKind::Tini,
        ServerKind::DumbInit,
        ServerKind::Catatonit,
        ServerKind::LameduckRun,
    ];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Lameduck => "lameduck",
            ServerKind::Axum => "axum-graceful",
            ServerKind::Dies => "dies-on-term",
            ServerKind::Python => "python",
            ServerKind::Tini => "tini",
            ServerKind::DumbInit => "dumb-init",
            ServerKind::Catatonit => "catatonit",
            ServerKind::LameduckRun => "lameduck-run",
            ServerKind::LameduckSighup => "lameduck-sighup",
            ServerKind::Actix => "actix-graceful",
            ServerKind::GracefulShutdown => "tokio-graceful-shutdown",
            ServerKind::GoArticle => "go-article",
            ServerKind::GoArticleMatched => "go-article-matched",
            ServerKind::AxumArticle => "axum-article",
            ServerKind::AxumArticleMatched => "axum-article-matched",
        }
    }

    /// How long it stays unready but serving after SIGTERM, `lameduck`
    /// being lameduck's drain delay in the run: zero for the peers that
    /// have no such phase.
    pub fn drain_delay(self, lameduck: Duration) -> Duration {
        match self {
            ServerKind::Lameduck
            | ServerKind::LameduckSighup
            | ServerKind::LameduckRun
            | ServerKind::GoArticleMatched
            | ServerKind::AxumArticleMatched => lameduck,
            ServerKind::GoArticle | ServerKind::AxumArticle => ARTICLE_DRAIN_DELAY,
            _ => Duration::ZERO,
        }
    }

    /// How long its exit may take after the drain, at most, given the
    /// harness's `grace` period: actix-web keeps the balancer's keep-alive
    /// connections until they have been idle for its keep-alive timeout
    /// (5 s), bounded by its 30 s `shutdown_timeout`, so up to the harness's
    /// SIGKILL; the others finish their in-flight requests within a second.
    pub fn exit_bound(self, grace: Duration) -> Duration {
        match self {
            ServerKind::Actix => grace,
            _ => Duration::from_millis(500),
        }
    }

    /// Whether a restart is SIGHUP to the running process (which hands its
    /// sockets to its successor) rather than SIGTERM and a new start.
    pub fn restarts_in_place(self) -> bool {
        self == ServerKind::LameduckSighup
    }

    /// Whether it can serve on any loopback address (the naive Python server
    /// binds 127.0.0.1 only).
    pub fn binds_any_loopback(self) -> bool {
        self.needs().is_empty()
    }

    /// Fresh ports for one instance. Only `lameduck demo` has a separate
    /// admin listener for its probes; the others answer `/readyz` on the
    /// service port.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub fn ports(self) -> anyhow::Result<Ports> {
        Ok(self.ports_from(Ipv4Addr::LOCALHOST, &free_ports(2)?))
    }

    /// The ports of the two instances behind a load balancer. A kind that
    /// can serve on any loopback address gets 127.0.0.2 and 127.0.0.3 with
    /// the *same* port numbers, because Caddy health-checks every upstream
    /// on one port; the others get two sets of ports on 127.0.0.1.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub fn pool_ports(self) -> anyhow::Result<[Ports; 2]> {
        if !self.binds_any_loopback() {
            return Ok([self.ports()?, self.ports()?]);
        }
        let hosts = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
        let ports = free_ports_on(&hosts, 2)?;
        Ok(hosts.map(|host| self.ports_from(host, &ports)))
    }

    fn ports_from(self, host: Ipv4Addr, ports: &[u16]) -> Ports {
        let separate_admin = matches!(
            self,
            ServerKind::Lameduck | ServerKind::LameduckSighup | ServerKind::LameduckRun
        );
        Ports {
            host,
            listen: ports[0],
            admin: if separate_admin { ports[1] } else { ports[0] },
        }
    }

    /// The command that starts one instance on `ports`. `timing` only
    /// matters to `lameduck demo`.
    pub fn launch(self, bins: &Binaries, ports: Ports, timing: DemoTiming) -> Launch {
        let listen = ports.listen_addr().to_string();
        let plain = |program: &str, extra: &[String]| Launch {
            program: bins.path(program),
            args: [vec!["--listen".to_owned(), listen.clone()], extra.to_vec()].concat(),
        };
        let matched = vec![
            "--drain-delay".to_owned(),
            humantime::format_duration(timing.drain_delay).to_string(),
        ];
        match self {
            ServerKind::Lameduck | ServerKind::LameduckSighup => Launch {
                program: bins.path("lameduck"),
                args: vec![
                    "demo".into(),
                    "--listen".into(),
                    listen,
                    "--admin".into(),
                    ports.admin_addr().to_string(),
                    "--grace-period".into(),
                    humantime::format_duration(timing.grace_period).to_string(),
                ]
                .into_iter()
                .chain(timing.drain_args())
                .collect(),
            },
            ServerKind::Axum => plain("baseline-axum", &[]),
            ServerKind::Dies => plain("dies-on-term", &[]),
            ServerKind::Actix => plain("actix-graceful", &[]),
            ServerKind::GracefulShutdown => plain("graceful-shutdown-axum", &[]),
            ServerKind::GoArticle => plain("go-article", &[]),
            ServerKind::GoArticleMatched => plain("go-article", &matched),
            ServerKind::AxumArticle => plain("axum-article", &[]),
            ServerKind::AxumArticleMatched => plain("axum-article", &matched),
            ServerKind::Python => python(bins, ports, &[]),
            ServerKind::Tini => python(bins, ports, &["tini", "-s", "--"]),
            ServerKind::DumbInit => python(bins, ports, &["dumb-init"]),
            ServerKind::Catatonit => python(bins, ports, &["catatonit", "--"]),
            ServerKind::LameduckRun => {
                let lameduck = bins.path("lameduck");
                let lameduck = lameduck.to_string_lossy();
                let admin = ports.admin_addr().to_string();
                let ready = format!("http://{}/", ports.listen_addr());
                let drain = humantime::format_duration(timing.drain_delay).to_string();
                let grace = humantime::format_duration(timing.grace_period).to_string();
                python(
                    bins,
                    ports,
                    &[
                        &lameduck,
                        "run",
                        "--admin",
                        &admin,
                        "--ready",
                        &ready,
                        "--drain-delay",
                        &drain,
                        "--grace-period",
                        &grace,
                        "--",
                    ],
                )
            }
        }
    }

    /// The command that must be on `PATH` for this kind, if any.
    pub fn needs(self) -> &'static [&'static str] {
        match self {
            ServerKind::Python | ServerKind::LameduckRun => &["python3"],
            ServerKind::Tini => &["python3", "tini"],
            ServerKind::DumbInit => &["python3", "dumb-init"],
            ServerKind::Catatonit => &["python3", "catatonit"],
            _ => &[],
        }
    }
}

/// `wrapper… python3 naive_server.py PORT`.
fn python(bins: &Binaries, ports: Ports, wrapper: &[&str]) -> Launch {
    let mut argv: Vec<String> = wrapper.iter().map(|s| (*s).to_owned()).collect();
    argv.extend([
        "python3".to_owned(),
        bins.naive_server().to_string_lossy().into_owned(),
        ports.listen.to_string(),
    ]);
    let program = PathBuf::from(argv.remove(0));
    Launch {
        program,
        args: argv,
    }
}

/// The ports of one instance: the service, and the probes (the same port
/// for servers without an admin listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ports {
    /// The loopback address it serves on.
    pub host: Ipv4Addr,
    /// Where `/work` is served.
    pub listen: u16,
    /// Where `/readyz` is served.
    pub admin: u16,
}

impl Ports {
    /// Where `/work` is served.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.listen))
    }

    /// Where `/readyz` is served.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((self.host, self.admin))
    }
}

/// The article's readiness drain delay (`_readinessDrainDelay`).
const ARTICLE_DRAIN_DELAY: Duration = Duration::from_secs(5);

/// The demo's shutdown timing.
#[derive(Debug, Clone, Copy)]
pub struct DemoTiming {
    /// How long it stays unready but serving (with `drain_quiet`, at most).
    pub drain_delay: Duration,
    /// An adaptive drain: ends once no request arrived for this long.
    pub drain_quiet: Option<Duration>,
    /// Its whole budget.
    pub grace_period: Duration,
}

impl DemoTiming {
    /// The demo's drain flags: a fixed `--drain-delay`, or the window.
    fn drain_args(self) -> Vec<String> {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        match self.drain_quiet {
            None => vec!["--drain-delay".into(), d(self.drain_delay)],
            Some(q) => vec![
                "--drain-max".into(),
                d(self.drain_delay),
                "--drain-quiet".into(),
                d(q),
            ],
        }
    }
}

/// A program and its arguments.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

/// Where the built binaries are: `lameduck` and the bench binaries share a
/// target directory, so by default the directory of the running one.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
    /// Holds the naive Python server's file.
    scratch: Arc<Scratch>,
}

impl Binaries {
    /// `dir`, or the directory of the running executable.
    ///
    /// # Errors
    ///
    /// When the running executable's path is unknown.
    pub fn new(dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let dir = match dir {
            Some(dir) => dir,
            None => std::env::current_exe()
                .context("finding the running executable")?
                .parent()
                .context("the executable has no directory")?
                .to_path_buf(),
        };
        let scratch = Scratch::new("programs")?;
        std::fs::write(scratch.path().join("naive_server.py"), NAIVE_SERVER)
            .context("writing the naive Python server")?;
        Ok(Binaries {
            dir,
            scratch: Arc::new(scratch),
        })
    }

    /// The naive Python server's file.
    pub fn naive_server(&self) -> PathBuf {
        self.scratch.path().join("naive_server.py")
    }

    /// The path of the binary `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Checks that every binary `kinds` need is there, naming the build
    /// command if one is not.
    ///
    /// # Errors
    ///
    /// When a binary is missing.
    pub fn check(&self, kinds: &[ServerKind]) -> anyhow::Result<()> {
        let timing = DemoTiming {
            drain_delay: Duration::ZERO,
            grace_period: Duration::ZERO,
            drain_quiet: None,
        };
        let ports = Ports {
            host: Ipv4Addr::LOCALHOST,
            listen: 0,
            admin: 0,
        };
        for kind in kinds {
            for cmd in kind.needs() {
                anyhow::ensure!(
                    on_path(cmd),
                    "{cmd} is missing for {}: install it (scripts/bench run does, from Debian's packages)",
                    kind.name()
                );
            }
            if !kind.needs().is_empty() && *kind != ServerKind::LameduckRun {
                continue;
            }
            let program = kind.launch(self, ports, timing).program;
            // actix-web is behind a feature: it would turn on `tracing`'s
            // `log` feature in the hot-path servers too (Cargo.toml).
            let build = if *kind == ServerKind::Actix {
                "cargo build --release -p lameduck-bench --features actix --bin actix-graceful"
            } else {
                "cargo build --release -p lameduck-cli -p lameduck-bench"
            };
            anyhow::ensure!(
                program.is_file(),
                "{} is missing: run `{build}` \
                 (or `scripts/bench`, which does; it also builds go-article with Debian's golang-go)",
                program.display()
            );
        }
        Ok(())
    }
}

/// Whether `cmd` is an executable file in a directory of `PATH`.
fn on_path(cmd: &str) -> bool {
    which(cmd).is_some()
}

/// The absolute path of `program`: itself when it names a file by a path,
/// else the first executable file of that name in a directory of `PATH`.
/// A program that starts itself again (nginx's binary upgrade re-executes
/// its own `argv[0]`, without a search of `PATH`) must be given this.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = std::path::absolute(program).ok()?;
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|path| path.is_absolute() && executable(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_named_without_a_path_resolves_to_an_absolute_one() {
        let sh = which("sh").expect("sh is on PATH");
        assert!(sh.is_absolute(), "{}", sh.display());
        assert!(sh.ends_with("sh"));
        assert_eq!(which(&sh.to_string_lossy()), Some(sh));
        assert_eq!(which("no-such-program-anywhere"), None);
        assert_eq!(which("./no-such-program-anywhere"), None);
    }
}
