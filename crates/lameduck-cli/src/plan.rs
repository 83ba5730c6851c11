//! `lameduck plan`: the shutdown budget as a table or a Kubernetes pod spec.

use std::process::ExitCode;

/// Print the shutdown timing budget for a grace period.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
