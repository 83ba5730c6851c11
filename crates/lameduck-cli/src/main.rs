//! The `lameduck` command: drill, plan and demo.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod drill;
mod phases;
mod plan;

/// Services that stop, restart and roll over without dropping work.
#[derive(Debug, Parser)]
#[command(name = "lameduck", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Plan(plan::Args),
    Drill(drill::Args),
    Demo(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plan(args) => plan::run(args),
        Command::Drill(args) => drill::run(args),
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lameduck: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
