//! Why a drill could not run (as opposed to a drill that ran and failed).

use std::io;
use std::time::Duration;

use crate::ConfigError;

/// A drill that could not be set up or carried out.
///
/// A server that drops requests is not an error: the drill runs, and its
/// [`Report`](crate::Report) says so in the verdict. These are the cases where
/// there is no verdict to give (the CLI exits with 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// The configuration does not hold together.
    #[error("invalid drill: {0}")]
    Config(#[from] ConfigError),
    /// The host of a URL did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The `host:port` looked up.
        host: String,
        /// Why, when the resolver said.
        #[source]
        source: Option<io::Error>,
    },
    /// The server command could not be started.
    #[error("cannot start the server {program}")]
    Spawn {
        /// The program as given.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file for the server's output (`--server-log`) could not be
    /// created.
    #[error("cannot create the server log {}", path.display())]
    ServerLog {
        /// The path given.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The attached process does not exist.
    #[error("no process with PID {pid}")]
    NoSuchProcess {
        /// The PID given.
        pid: u32,
    },
    /// The PID file (`--pid-file`) cannot be read, holds no PID, or names
    /// no running process: checked before the load (once the server is
    /// ready, when the drill starts it), since every signal would fail.
    #[error("--pid-file {}: {why}", path.display())]
    PidFile {
        /// The path given.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        why: String,
    },
    /// The server exited before it answered the readiness check.
    #[error("the server exited ({status}) before it was ready")]
    ExitedBeforeReady {
        /// The exit status, as text.
        status: String,
    },
    /// The server did not answer the readiness check with 2xx in time.
    #[error(
        "the server was not ready within {}: GET {url} last gave {last}",
        humantime::format_duration(*timeout)
    )]
    NotReady {
        /// The readiness URL.
        url: String,
        /// The time waited.
        timeout: Duration,
        /// The last answer or error seen.
        last: String,
    },
    /// Output could not be written.
    #[error("cannot write {what}")]
    Write {
        /// What was being written.
        what: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}
