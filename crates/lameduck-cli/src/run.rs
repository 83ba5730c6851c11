//! `lameduck run -- CMD ARGS…`: the whole shutdown sequence, zero-downtime
//! restarts and crash supervision for any program.
//!
//! `lameduck run` is itself an [`App`] of one component, `program`, that
//! supervises the program (`run/program.rs`): the library gives it the
//! phases, the budget and its check, readiness and liveness, the restart
//! policy, the report and systemd's notifications. Around it: the PID-1
//! duties (`run/reaper.rs`), the process groups (`run/instance.rs`), the
//! checks (`run/checks.rs`), the signals (`run/signals.rs`), the guard that
//! outlives a killed lameduck (`run/guard.rs`), and the logs
//! (`run/output.rs`).

mod checks;
mod flags;
pub mod guard;
mod instance;
mod output;
mod program;
mod reaper;
mod signals;
#[cfg(target_os = "linux")]
mod sock_diag;
mod sockets;
mod supervisor;
mod traffic;
mod tree;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use lameduck::upgrade::Upgrade;
use lameduck::{App, Budget, Component, Report, Restart, RestartPolicy, ShutdownReason};
use nix::sys::signal::Signal;

use crate::duration::parse_duration;
use crate::metrics_flags::MetricsFlags;
use crate::phases::PhaseFlags;
use checks::CheckSpec;
use flags::{ListenSpec, Probe, RestartWhen};
use supervisor::{Outcome, Parts, Supervisor};

const LONG_ABOUT: &str = "\
Run any program with the whole shutdown sequence, zero-downtime restarts and
crash supervision, with no change to the program.

lameduck starts CMD in a process group of its own, its standard input, output
and error passed through unchanged, and stays its parent: it reaps every
zombie (it is a child subreaper, fit to be PID 1 of a container), forwards
SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH and SIGCONT to the group (--forward), and
exits with the program's exit code, or 128 + the signal that killed it.

On SIGTERM (or SIGINT):
  draining   /readyz answers 503 at once; the program, unaware, keeps serving
             while load balancers catch up: until its traffic has been quiet
             for --drain-quiet (after --drain-min), --drain-max at the latest
  stopping   lameduck sends the program --stop-signal (SIGTERM) and waits for
             every process of its group, up to the shutdown timeout
  cancelling SIGKILL to the whole group
A second SIGTERM or SIGINT cuts the drain short and forwards that signal at
once; a third SIGKILLs the group and forces the exit: 128 + that signal (143
or 130). SIGINT from a terminal skips the drain.
A program stopped by the stop signal lameduck sent (killed by it, or exiting
with 128 + its number) counts as a clean stop: lameduck exits 0.

Probes on --admin (loopback by default): /livez, /readyz, /startupz, with
?verbose, and the lifecycle metrics (/metrics; --final-scrape waits at the
end for one more scrape of the final counts, else --pushgateway gets them,
and they are logged either way). The program is ready when --ready says so:
an HTTP GET (http://127.0.0.1:3000/health, 200-399 passes), a TCP connect
(tcp:127.0.0.1:3000), systemd's protocol (notify: lameduck serves a
NOTIFY_SOCKET and the program sends READY=1), or a command (exec:CMD, run
with sh -c, exit 0 passes); without --ready, as soon as it started. --live
takes the same forms; a program that fails it is stopped and restarted.

Sockets: --listen NAME=ADDR (TCP, or unix:PATH; repeatable) is bound by
lameduck and passed to the program as systemd does (LISTEN_FDS,
LISTEN_FDNAMES, LISTEN_PID): descriptors 3, 4, ... in order. {fd:NAME} in the
arguments becomes that socket's descriptor number ({fd} when there is one).
Sockets lameduck itself was given by systemd are passed on the same way.

Traffic: lameduck sees the connections on the TCP sockets it holds (the
kernel's sock_diag, every 100 ms): a new connection, or bytes received on
one, is traffic. Without such a socket (the program binds its own port, or
only unix: sockets), or where sock_diag cannot be used, the drain is fixed
at --drain-max, and the log says so as it starts.

SIGHUP (or `upgrade` on --control-socket) restarts with zero downtime: a
second instance starts with the same sockets; once it is ready (by --ready)
the old one gets the stop signal. If the new one exits, fails its check or is
not ready within --restart-timeout, it is stopped and the old one goes on
serving. One restart at a time.

Crashes: --restart on-failure (the default), always or never, with
exponential backoff and jitter; more than --max-restarts within
--restart-window and lameduck exits with the program's last exit code.

lameduck's own events go to stderr: lines prefixed `lameduck[PID]:` on a
terminal, JSON lines otherwise (--output).";

const AFTER_LONG_HELP: &str = "\
Examples:

  lameduck run -- python3 -m http.server 8000
      drain 5s on SIGTERM before the program hears of it; probes on
      127.0.0.1:8081

  lameduck run --admin 0.0.0.0:8081 --ready http://127.0.0.1:8000/ \\
      --grace-period 30s --drain-delay 10s -- ./server
      in a Kubernetes pod: probes reachable by the kubelet

  lameduck run --listen http=0.0.0.0:8000 --ready notify -- \\
      gunicorn --bind fd://{fd:http} app:app
      lameduck holds the socket: SIGHUP restarts without refusing a
      connection, and the drain ends once its
      connections are quiet

Exit status:
  N        the program's exit code, or 128 + the signal that killed it
  0        the program stopped on the stop signal lameduck sent it, or
           lameduck was stopped while the program waited to be restarted
  3        ... but its group had to be killed at the shutdown timeout
  2        usage: a bad flag or value, an address that cannot be bound
  78       invalid configuration: the phases do not fit the grace period,
           or a --flight-record or --control-socket path cannot be used
  124      the exit watchdog ended a shutdown stuck past its budget
  126/127  the program is not executable / not found
  130/143  a third SIGINT/SIGTERM forced the exit (the group was SIGKILLed)";

/// Run a program with draining, probes, zero-downtime restarts and crash
/// supervision.
#[derive(Debug, clap::Args)]
#[command(long_about = LONG_ABOUT, after_long_help = AFTER_LONG_HELP)]
pub struct Args {
    /// Where to serve /livez, /readyz and /startupz (port 0 picks one; none
    /// for no probes)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081", value_parser = flags::parse_admin)]
    admin: flags::Admin,

    /// When the program is ready: http://HOST:PORT/PATH, tcp:HOST:PORT,
    /// notify or exec:COMMAND [default: as soon as it started]
    #[arg(long, value_name = "CHECK")]
    ready: Option<Probe>,
    /// How often the readiness check runs (more often until it first passes)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true)]
    ready_interval: Duration,
    /// How long one readiness check may take
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true)]
    ready_timeout: Duration,
    /// Failures in a row that make a ready program unready
    #[arg(long, value_name = "N", default_value = "3", value_parser = flags::parse_count)]
    ready_failures: u32,
    /// Successes in a row that make it ready
    #[arg(long, value_name = "N", default_value = "1", value_parser = flags::parse_count)]
    ready_successes: u32,

    /// When the program is alive (same forms as --ready, but notify); a
    /// program that fails it is stopped and restarted [default: no check]
    #[arg(long, value_name = "CHECK")]
    live: Option<Probe>,
    /// How often the liveness check runs
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration, allow_hyphen_values = true)]
    live_interval: Duration,
    /// How long one liveness check may take
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true)]
    live_timeout: Duration,
    /// Failures in a row that make the program count as dead
    #[arg(long, value_name = "N", default_value = "3", value_parser = flags::parse_count)]
    live_failures: u32,

    #[command(flatten)]
    phases: PhaseFlags,
    #[command(flatten)]
    metrics: MetricsFlags,

    /// The signal that asks the program to stop
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = flags::parse_stop_signal)]
    stop_signal: Signal,
    /// Signals forwarded to the program's group as they arrive
    /// (comma-separated, or none)
    #[arg(long, value_name = "SIGNALS", default_value = "QUIT,USR1,USR2,WINCH,CONT", value_parser = flags::parse_forwarded)]
    forward: flags::Forwarded,

    /// A listening socket for the program: NAME=IP:PORT or NAME=unix:PATH
    /// (repeatable)
    #[arg(long = "listen", value_name = "NAME=ADDR")]
    listen: Vec<ListenSpec>,

    /// When to start the program again after it ended
    #[arg(long, value_name = "WHEN", value_enum, default_value = "on-failure")]
    restart: RestartWhen,
    /// The first restart's delay, doubled at each restart (with 20% jitter)
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration, allow_hyphen_values = true)]
    restart_delay: Duration,
    /// The longest delay between restarts
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
    restart_delay_max: Duration,
    /// More restarts than this within --restart-window and lameduck gives up
    #[arg(long, value_name = "N", default_value = "5")]
    max_restarts: u32,
    /// The window of --max-restarts
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    restart_window: Duration,
    /// How long the new instance of a zero-downtime restart (SIGHUP) has to
    /// become ready
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, allow_hyphen_values = true)]
    restart_timeout: Duration,

    /// Serve a control socket (mode 0600, owner only) that takes `upgrade`
    /// (a zero-downtime restart; answers `ok PID` or `error WHY`) and
    /// `status`
    #[arg(long, value_name = "PATH")]
    control_socket: Option<std::path::PathBuf>,

    /// Write a flight record of the shutdown (and of each zero-downtime
    /// restart) to this JSON file, for `lameduck report`: the phases, what
    /// ended the drain, the traffic seen on the sockets, the program's
    /// processes still alive at each deadline, the exit code. `{pid}` in it
    /// becomes lameduck's process id. Its directory must exist (else exit
    /// 78)
    #[arg(long, value_name = "PATH")]
    flight_record: Option<std::path::PathBuf>,

    /// How to print lameduck's own events: auto (human on a terminal), human
    /// or json
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "auto")]
    output: output::Output,

    /// The program and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<std::ffi::OsString>,
}

/// Runs `lameduck run`: the exit code, or an error for a usage problem.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    output::init(args.output);
    if args.live == Some(Probe::Notify) {
        anyhow::bail!(
            "--live notify is not supported: liveness needs a check lameduck runs (http://, tcp: or exec:)"
        );
    }
    let mut budget = args.phases.apply(Budget::default());
    let mut timeline = match budget.check() {
        Ok(t) => t,
        Err(err) => {
            eprintln!("lameduck: error: {err}");
            return Ok(ExitCode::from(lameduck::ExitStatus::InvalidConfig.code()));
        }
    };
    // Before any thread starts: descriptors 3, 4, … passed by systemd are
    // claimed as this process's own, then bound what --listen asks.
    let sockets = sockets::open(&args.listen)?;
    let cmd = sockets::expand(&args.command, &sockets)?;
    // The drain ends on quiet traffic only where the traffic can be seen.
    let watch = traffic::Watch::check(&sockets);
    if let Err(why) = &watch {
        if let traffic::Unwatched::Unavailable(_) = why {
            tracing::warn!(target: "lameduck::run", reason = %why, "{why}: the drain is fixed at --drain-max");
        }
        if timeline.is_adaptive() {
            budget = budget.drain_delay(timeline.drain_max());
            timeline = budget.check().context("fixing the drain at --drain-max")?;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(supervise(args, budget, timeline, sockets, watch, cmd))
}

async fn supervise(
    args: Args,
    budget: Budget,
    timeline: lameduck::Timeline,
    sockets: Vec<(String, std::os::fd::OwnedFd)>,
    watch: Result<traffic::Watch, traffic::Unwatched>,
    cmd: Vec<std::ffi::OsString>,
) -> anyhow::Result<ExitCode> {
    let reaper = reaper::Reaper::start().context("listening for SIGCHLD")?;
    let guard = guard::Guard::start();
    let uses_notify = args.ready == Some(Probe::Notify);
    let notify = if uses_notify {
        Some(sockets::NotifyDir::create().context("creating the notify socket")?)
    } else {
        None
    };
    let admin = match args.admin.0 {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the admin listener {addr}"))?,
        ),
        None => None,
    };
    let (program, program_args) = cmd.split_first().context("no program to run")?;
    let check = |probe: Option<Probe>, interval, timeout, failures, successes| {
        probe.map(|probe| CheckSpec {
            probe,
            interval,
            timeout,
            failures,
            successes,
        })
    };
    let sup = Supervisor::new(Parts {
        launch: instance::Launch {
            program: program.clone(),
            args: program_args.to_vec(),
            sockets,
            notify: notify.as_ref().map(|n| n.socket.path().to_path_buf()),
        },
        reaper,
        guard: guard.clone(),
        ready: check(
            args.ready,
            args.ready_interval,
            args.ready_timeout,
            args.ready_failures,
            args.ready_successes,
        ),
        live: check(
            args.live,
            args.live_interval,
            args.live_timeout,
            args.live_failures,
            1,
        ),
        stop_signal: args.stop_signal,
        restart_timeout: args.restart_timeout,
        shutdown_timeout: timeline.shutdown_timeout,
        hard_timeout: timeline.hard_timeout,
    });
    let policy = RestartPolicy::new(match args.restart {
        RestartWhen::Always => Restart::Permanent,
        RestartWhen::OnFailure => Restart::Transient,
        RestartWhen::Never => Restart::Temporary,
    })
    .backoff(args.restart_delay, args.restart_delay_max)
    .intensity(args.max_restarts, args.restart_window);
    // Restarts go through the library's upgrade path (one at a time, only
    // while Running, the control socket, systemd's RELOADING=1), replacing
    // the program in place.
    let restarts = sup.clone();
    let mut upgrade = Upgrade::new()
        .timeout(args.restart_timeout + timeline.shutdown_timeout)
        .in_place(move || {
            let sup = restarts.clone();
            async move { sup.restart().await }
        });
    if let Some(path) = &args.control_socket {
        upgrade = upgrade.control_socket(path);
    }
    let paths = flags::PathFlags {
        flight_record: args.flight_record.clone(),
        control_socket: args.control_socket.clone(),
    };
    let component_sup = sup.clone();
    let metrics = args.metrics.metrics()?;
    let mut app = App::builder("lameduck-run")
        .budget(budget)
        .metrics(&metrics)
        .handle_signals(false)
        .observer(traffic::drain_start(&watch, &timeline));
    if let Some(path) = &args.flight_record {
        app = app.flight_record(path);
    }
    let app = app
        .upgrade(upgrade)
        .component(
            Component::new("program", move |ctx| {
                program::run(component_sup.clone(), ctx)
            })
            .restart(policy),
        )
        .build();
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            // Every build error here comes from a flag (a path that cannot
            // be used, a budget that does not fit): the operator's mistake,
            // said like every other flag error, before the program starts.
            eprintln!("lameduck: error: {}", flags::flag_error(&err, &paths));
            return Ok(ExitCode::from(err.exit_status().code()));
        }
    };
    if let Ok(watch) = watch {
        let running = if timeline.is_adaptive() {
            traffic::WhileRunning::for_quiet(timeline.drain_quiet)
        } else {
            traffic::WhileRunning::Never
        };
        watch.install(&app.handle(), running);
    }
    if let Some(n) = notify {
        let sup = sup.clone();
        tokio::spawn(sup.hear(n));
    }
    if let Some(listener) = admin {
        let addr = listener.local_addr()?;
        tracing::info!(target: "lameduck::run", addr = %addr, "probes on http://{addr} (/livez, /readyz, /startupz, /metrics)");
        let probes =
            lameduck::http::Probes::new(app.handle().health().clone()).with_metrics(&metrics);
        let router = axum::Router::new().fallback_service(probes);
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                tracing::error!(target: "lameduck::run", error = %err, "the admin listener failed");
            }
        });
    }
    signals::listen(sup.clone(), app.handle(), &args.forward.0).context("listening for signals")?;
    let report = app.await;
    let code = exit_code(&report, sup.take_outcome());
    guard.done();
    Ok(ExitCode::from(code))
}

/// lameduck's exit code: the program's, except that a program stopped by
/// the signal lameduck sent it stopped cleanly.
fn exit_code(report: &Report, outcome: Outcome) -> u8 {
    if let Some(err) = outcome.cannot_start {
        return err.code;
    }
    if let Some(sig) = outcome.forced_by {
        return 128 + sig as u8;
    }
    let Some(ended) = outcome.last else {
        return report.status().code();
    };
    if outcome.stopped_with.iter().any(|s| ended.is_stop_by(*s)) {
        // A clean stop, unless stragglers had to be killed at the deadline
        // (3, the library's code for it).
        return report.status().code();
    }
    let asked = matches!(
        report.reason,
        Some(ShutdownReason::Signal(_) | ShutdownReason::Requested(_))
    );
    if outcome.last_while_running && asked {
        // Stopped while the program was down between crash restarts: the
        // stop was lameduck's, and its report says how it went.
        return report.status().code();
    }
    let gave_up = matches!(report.reason, Some(ShutdownReason::ComponentFailed { .. }));
    match ended.exit_code() {
        // Giving up after too many restarts is a failure even when the
        // last run exited 0 (`--restart always`).
        0 if gave_up => 1,
        code => code,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_is_complete() {
        use clap::CommandFactory;
        let mut cmd = crate::Cli::command();
        let run = cmd.find_subcommand_mut("run").expect("run exists");
        let help = run.render_long_help().to_string();
        for flag in [
            "--admin",
            "--ready",
            "--live",
            "--listen",
            "--stop-signal",
            "--restart",
            "--grace-period",
            "--flight-record",
            "sock_diag",
            "Exit status",
        ] {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
        }
    }
}
