//! The `lameduck` command: run, drill, plan and demo.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod drill;
mod phases;
mod plan;
mod run;

/// Services that stop, restart and roll over without dropping work.
#[derive(Debug, Parser)]
#[command(name = "lameduck", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(Box<run::Args>),
    Plan(plan::Args),
    Drill(drill::Args),
    Demo(demo::Args),
    /// (internal) The guard of `lameduck run`: kills the program's process
    /// groups if lameduck dies without stopping them.
    #[command(name = "run-guard", hide = true)]
    RunGuard {
        /// The pid of the lameduck it guards, for its message.
        parent: String,
    },
}

fn main() -> ExitCode {
    // The guard of `lameduck run` lives as long as lameduck: it starts
    // without parsing the command line, so it touches as little of the
    // binary as it can.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().as_deref() == Some(std::ffi::OsStr::new(run::guard::SUBCOMMAND)) {
        let parent = argv.next().unwrap_or_default();
        return ExitCode::from(run::guard::main(&parent.to_string_lossy()));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(*args),
        Command::RunGuard { parent } => Ok(ExitCode::from(run::guard::main(&parent))),
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
