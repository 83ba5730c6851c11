//! The kinds of server the benchmarks compare, and how to start each.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::net::free_ports;
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
    /// `article-axum`: the article pattern, `/readyz` 503 on SIGTERM, a
    /// fixed 5 s of serving, then axum's graceful shutdown.
    Article,
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
}

impl ServerKind {
    /// Every kind, in table order.
    pub const ALL: [ServerKind; 3] = [ServerKind::Lameduck, ServerKind::Axum, ServerKind::Dies];

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
            ServerKind::Article => "article-5s",
            ServerKind::Python => "python",
            ServerKind::Tini => "tini",
            ServerKind::DumbInit => "dumb-init",
            ServerKind::Catatonit => "catatonit",
            ServerKind::LameduckRun => "lameduck-run",
        }
    }

    /// Fresh ports for one instance. Only `lameduck demo` has a separate
    /// admin listener for its probes; the others answer `/readyz` on the
    /// service port.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub fn ports(self) -> anyhow::Result<Ports> {
        let ports = free_ports(2)?;
        Ok(match self {
            ServerKind::Lameduck | ServerKind::LameduckRun => Ports {
                listen: ports[0],
                admin: ports[1],
            },
            _ => Ports {
                listen: ports[0],
                admin: ports[0],
            },
        })
    }

    /// The command that starts one instance on `ports`. `timing` only
    /// matters to `lameduck demo`.
    pub fn launch(self, bins: &Binaries, ports: Ports, timing: DemoTiming) -> Launch {
        let listen = format!("127.0.0.1:{}", ports.listen);
        match self {
            ServerKind::Lameduck => Launch {
                program: bins.path("lameduck"),
                args: vec![
                    "demo".into(),
                    "--listen".into(),
                    listen,
                    "--admin".into(),
                    format!("127.0.0.1:{}", ports.admin),
                    "--grace-period".into(),
                    humantime::format_duration(timing.grace_period).to_string(),
                ]
                .into_iter()
                .chain(timing.drain_args())
                .collect(),
            },
            ServerKind::Axum => Launch {
                program: bins.path("baseline-axum"),
                args: vec!["--listen".into(), listen],
            },
            ServerKind::Dies => Launch {
                program: bins.path("dies-on-term"),
                args: vec!["--listen".into(), listen],
            },
            ServerKind::Article => Launch {
                program: bins.path("article-axum"),
                args: vec!["--listen".into(), listen],
            },
            ServerKind::Python => python(bins, ports, &[]),
            ServerKind::Tini => python(bins, ports, &["tini", "-s", "--"]),
            ServerKind::DumbInit => python(bins, ports, &["dumb-init"]),
            ServerKind::Catatonit => python(bins, ports, &["catatonit", "--"]),
            ServerKind::LameduckRun => {
                let lameduck = bins.path("lameduck");
                let lameduck = lameduck.to_string_lossy();
                let admin = format!("127.0.0.1:{}", ports.admin);
                let ready = format!("http://127.0.0.1:{}/", ports.listen);
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
    /// Where `/work` is served.
    pub listen: u16,
    /// Where `/readyz` is served.
    pub admin: u16,
}

/// The demo's shutdown timing.
#[derive(Debug, Clone, Copy)]
pub struct DemoTiming {
    /// How long it stays unready but serving: fixed, or at most with
    /// `drain_quiet`.
    pub drain_delay: Duration,
    /// With it, an adaptive drain: `--drain-max drain_delay --drain-quiet
    /// Q`, ending once no request arrived for Q.
    pub drain_quiet: Option<Duration>,
    /// Its whole budget.
    pub grace_period: Duration,
}

impl DemoTiming {
    /// The demo's drain flags: `--drain-delay D`, or `--drain-max D
    /// --drain-quiet Q`.
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
            drain_quiet: None,
            grace_period: Duration::ZERO,
        };
        let ports = Ports {
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
            anyhow::ensure!(
                program.is_file(),
                "{} is missing: run `cargo build --release -p lameduck-cli -p lameduck-bench` \
                 (or `scripts/bench`, which does)",
                program.display()
            );
        }
        Ok(())
    }
}

/// Whether `cmd` is an executable file in a directory of `PATH`.
fn on_path(cmd: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}
