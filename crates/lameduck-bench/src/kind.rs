//! The kinds of server the benchmarks compare, and how to start each.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::net::free_ports;

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
}

impl ServerKind {
    /// Every kind, in table order.
    pub const ALL: [ServerKind; 3] = [ServerKind::Lameduck, ServerKind::Axum, ServerKind::Dies];

    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Lameduck => "lameduck",
            ServerKind::Axum => "axum-graceful",
            ServerKind::Dies => "dies-on-term",
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
            ServerKind::Lameduck => Ports {
                listen: ports[0],
                admin: ports[1],
            },
            ServerKind::Axum | ServerKind::Dies => Ports {
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
                    "--drain-delay".into(),
                    humantime::format_duration(timing.drain_delay).to_string(),
                    "--grace-period".into(),
                    humantime::format_duration(timing.grace_period).to_string(),
                ],
            },
            ServerKind::Axum => Launch {
                program: bins.path("baseline-axum"),
                args: vec!["--listen".into(), listen],
            },
            ServerKind::Dies => Launch {
                program: bins.path("dies-on-term"),
                args: vec!["--listen".into(), listen],
            },
        }
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
    /// How long it stays unready but serving.
    pub drain_delay: Duration,
    /// Its whole budget.
    pub grace_period: Duration,
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
        Ok(Binaries { dir })
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
        };
        let ports = Ports {
            listen: 0,
            admin: 0,
        };
        for kind in kinds {
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
