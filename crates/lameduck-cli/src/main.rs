//! The `lameduck` command: run, drill, plan, report and demo.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod drill;
mod duration;
mod metrics_flags;
mod phases;
mod plan;
mod report;
mod run;

/// The exit codes of every subcommand, and of services built on the library:
/// one table (docs/lifecycle.md).
const EXIT_STATUS: &str = "\
Exit status (every subcommand, and services built on the library):
  0        success: a clean shutdown, a plan that fits, a drill that passed
  1        failure: a component failed (demo, services), or the drill failed
  2        usage: bad flags or values, or what the command needs could not
           be set up (a listener's address, the server to drill)
  3        a shutdown deadline passed: work was cancelled or aborted
  78       invalid configuration: a budget that does not fit (plan, demo,
           services), a dependency cycle, a timeout set twice
  124      the exit watchdog ended a shutdown stuck before its report
  130/143  a second SIGINT/SIGTERM forced the exit
  other    run: the program's own exit code, or 128 + the signal that killed
           it; 126/127 when it cannot be started (lameduck run --help)";

/// Services that stop, restart and roll over without dropping work.
#[derive(Debug, Parser)]
#[command(name = "lameduck", version, about, long_about = None, propagate_version = true,
          after_help = EXIT_STATUS)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(Box<run::Args>),
    Plan(plan::Args),
    Drill(drill::Args),
    Report(report::Args),
    Demo(Box<demo::Args>),
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
        Command::Report(args) => report::run(args),
        Command::Demo(args) => demo::run(*args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lameduck: error: {err:#}");
            // Usage or set-up: the command could not do its work.
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every flag that takes a duration, in every subcommand: found from the
    /// command's own definition, so that a new flag cannot be missed.
    fn duration_flags() -> Vec<(String, String)> {
        let cli = Cli::command();
        let mut found = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let takes_duration = arg
                    .get_value_names()
                    .is_some_and(|names| names.iter().any(|n| n.as_str() == "DURATION"));
                if let (true, Some(long)) = (takes_duration, arg.get_long()) {
                    found.push((sub.get_name().to_string(), format!("--{long}")));
                }
            }
        }
        found
    }

    #[test]
    fn a_negative_duration_is_refused_for_what_it_is_by_every_duration_flag() {
        let flags = duration_flags();
        // plan 6, demo 5, drill 7: a sanity floor, not the list.
        assert!(flags.len() >= 18, "{flags:?}");
        for (sub, flag) in &flags {
            let mut argv = vec!["lameduck", sub.as_str()];
            if sub == "drill" {
                argv.extend(["--url", "http://127.0.0.1:9/"]);
            }
            for value in [["-1s"].as_slice(), &["-5"], &["-1m 30s"]] {
                let mut argv = argv.clone();
                argv.push(flag);
                argv.extend(value);
                let err = Cli::try_parse_from(&argv).expect_err(&format!("{argv:?}"));
                let text = err.to_string();
                assert_eq!(
                    err.kind(),
                    clap::error::ErrorKind::ValueValidation,
                    "{argv:?}: {text}"
                );
                assert!(
                    text.contains(&format!("for '{flag} <DURATION>'"))
                        && text.contains("a duration cannot be negative"),
                    "{argv:?}: {text}"
                );
            }
        }
    }
}
