//! `lameduck drill`: load a server, signal it, account for every request.

use std::process::ExitCode;

/// Prove under load that a server shuts down and restarts without failing a request.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
