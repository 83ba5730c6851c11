//! The `lameduck` command: run, drill, plan, report and demo.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Writes a line to stderr like `eprintln!`, but a failed write is
/// dropped rather than a panic: after the terminal closed (`EIO`) or the
/// reader of the pipe went away (`EPIPE`) nobody is left to read it, and a
/// process in the middle of its shutdown must finish it, not die of a
/// message.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod addr;
mod demo;
mod drill;
mod duration;
mod metrics_flags;
mod phases;
mod plan;
mod report;
mod run;
mod signal;
mod terminal;

/// The exit codes of every subcommand, and of services built on the library:
/// one table (docs/lifecycle.md).
const EXIT_STATUS: &str = "\
Exit status (every subcommand, and services built on the library):
  0        success: a clean shutdown, a plan that fits, a drill that passed
  1        failure: a component failed (demo, services), or the drill failed
  2        usage: bad flags or values, or what the command needs could not
           be set up (a listener's address, the server to drill)
  3        a shutdown deadline passed: the shutdown timeout with work in
           flight (cancelled, even if it then finished anyway), work
           aborted, or a resource that did not close in time
  78       invalid configuration: a budget that does not fit or a drain
           window that contradicts itself (plan, run, demo, services), a
           dependency cycle, a timeout set twice, a path that cannot be used
           (run's --flight-record and --control-socket, checked before the
           program starts)
  124      the exit watchdog ended a shutdown stuck before its report
  130/143  a second SIGINT/SIGTERM forced the exit (run: a third)
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
            say!("lameduck: error: {err:#}");
            // Usage or set-up: the command could not do its work.
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every long flag, in every subcommand, that takes a value named one
    /// of `names`, with that name: found from the command's own definition,
    /// so that a new flag cannot be missed.
    fn flags_taking(names: &[&str]) -> Vec<(String, String, String)> {
        let cli = Cli::command();
        let mut found = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let taken = arg
                    .get_value_names()
                    .unwrap_or_default()
                    .iter()
                    .find(|n| names.contains(&n.as_str()));
                if let (Some(name), Some(long)) = (taken, arg.get_long()) {
                    found.push((
                        sub.get_name().to_string(),
                        format!("--{long}"),
                        name.to_string(),
                    ));
                }
            }
        }
        found
    }

    /// The error of a command line whose flag's value parser refuses the
    /// value, as clap prints it.
    fn refused_by_the_value_parser(argv: &[&str]) -> String {
        let err = Cli::try_parse_from(argv).expect_err(&format!("{argv:?}"));
        let text = err.to_string();
        assert_eq!(
            err.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{argv:?}: {text}"
        );
        text
    }

    #[test]
    fn a_port_out_of_range_is_refused_naming_the_flag_the_value_and_the_range() {
        let flags = flags_taking(&["ADDR", "NAME=ADDR"]);
        // run --listen and --admin, demo --listen and --admin.
        assert!(flags.len() >= 4, "{flags:?}");
        for (sub, flag, name) in &flags {
            let prefix = if name == "NAME=ADDR" { "http=" } else { "" };
            let value = format!("{prefix}127.0.0.1:99999");
            let argv = ["lameduck", sub.as_str(), flag.as_str(), value.as_str()];
            let text = refused_by_the_value_parser(&argv);
            assert!(
                text.contains(&format!("invalid value '{value}' for '{flag} <"))
                    && text.contains("port 99999 is out of range: a port is 0 to 65535"),
                "{argv:?}: {text}"
            );
        }
    }

    /// The terminal width the hand-wrapped help texts are written for. On a
    /// terminal this wide, clap breaks a wider line of a hand-wrapped block
    /// where it overflows, and leaves a word or two alone on a line in the
    /// middle of a sentence, or of an example command. (A paragraph that
    /// is one line, as doc comments give, clap wraps as a whole.)
    const HELP_WIDTH: usize = 80;

    #[test]
    fn no_hand_wrapped_help_line_is_wider_than_a_terminal_so_none_is_broken_mid_sentence() {
        let cli = Cli::command();
        let mut wide = Vec::new();
        for sub in cli.get_subcommands() {
            let texts = [
                sub.get_long_about(),
                sub.get_before_long_help(),
                sub.get_after_help(),
                sub.get_after_long_help(),
            ];
            for text in texts.into_iter().flatten() {
                let text = text.to_string();
                let lines: Vec<&str> = text.lines().collect();
                for (i, line) in lines.iter().enumerate() {
                    let in_block = [i.checked_sub(1), Some(i + 1)]
                        .into_iter()
                        .flatten()
                        .any(|j| lines.get(j).is_some_and(|l| !l.trim().is_empty()));
                    if in_block && line.chars().count() > HELP_WIDTH {
                        wide.push(format!("{}: {line}", sub.get_name()));
                    }
                }
            }
        }
        assert!(
            wide.is_empty(),
            "wider than {HELP_WIDTH} columns:\n{}",
            wide.join("\n")
        );
    }

    /// Every flag, in every subcommand, that takes a duration: by its value
    /// name or by the type its parser gives, so that a new one (named
    /// otherwise) is found too.
    fn duration_flags() -> Vec<(String, String, String)> {
        let cli = Cli::command();
        let mut found = Vec::new();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let name = arg.get_value_names().unwrap_or_default().join(" ");
                let parser = format!("{:?}", arg.get_value_parser());
                let takes = name.contains("DURATION") || parser.contains("Duration");
                if let (true, Some(long)) = (takes, arg.get_long()) {
                    found.push((sub.get_name().to_string(), format!("--{long}"), name));
                }
            }
        }
        found
    }

    #[test]
    fn a_duration_without_a_unit_is_refused_in_our_words_by_every_duration_flag() {
        let flags = duration_flags();
        // run 16, plan 11, drill 7, demo 10: a sanity floor, not the list.
        assert!(flags.len() >= 40, "{flags:?}");
        for (sub, flag, name) in &flags {
            let value = if name.starts_with("NAME=") {
                "db=30"
            } else {
                "30"
            };
            let argv = ["lameduck", sub.as_str(), flag.as_str(), value];
            let text = refused_by_the_value_parser(&argv);
            assert!(
                text.contains(&format!("invalid value '{value}' for '{flag} <{name}>': "))
                    && text.contains("a duration needs a unit, e.g. 30s, 500ms, 2m\n"),
                "{argv:?}: {text}"
            );
        }
    }

    #[test]
    fn a_negative_duration_is_refused_for_what_it_is_by_every_duration_flag() {
        let flags = flags_taking(&["DURATION"]);
        // plan 6, demo 5, drill 7: a sanity floor, not the list.
        assert!(flags.len() >= 18, "{flags:?}");
        for (sub, flag, _) in &flags {
            let mut argv = vec!["lameduck", sub.as_str()];
            if sub == "drill" {
                argv.extend(["--url", "http://127.0.0.1:9/"]);
            }
            for value in [["-1s"].as_slice(), &["-5"], &["-1m 30s"]] {
                let mut argv = argv.clone();
                argv.push(flag);
                argv.extend(value);
                let text = refused_by_the_value_parser(&argv);
                assert!(
                    text.contains(&format!("for '{flag} <DURATION>'"))
                        && text.contains("a duration cannot be negative"),
                    "{argv:?}: {text}"
                );
            }
        }
    }
}
