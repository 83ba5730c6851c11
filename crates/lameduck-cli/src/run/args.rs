//! The flags of `lameduck run`, raw as clap parses them, and its help.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::flags::{self, ListenSpec, Probe, RestartWhen};
use super::output;
use crate::duration::{more_than_zero, parse_duration};
use crate::metrics_flags::MetricsFlags;
use crate::phases::PhaseFlags;

const LONG_ABOUT: &str = concat!(
    "\
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
  stopping   lameduck gives up its own copy of the --listen sockets and
             sends the program --stop-signal (SIGTERM): a socket stops
             listening once the program closes it, and new clients are
             refused, as without lameduck; it waits for every process of
             the group, up to the shutdown timeout
  cancelling SIGKILL to the whole group
A second SIGTERM or SIGINT cuts the drain short (the log, the report and the
flight record say `drain cut short by SIGINT`) and forwards that signal at
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
takes the same forms, checked from the moment the program is ready; a
program that fails it --live-failures times in a row is stopped and
restarted.

Sockets: --listen NAME=ADDR (TCP, or unix:PATH; repeatable) is bound by
lameduck and passed to the program as systemd does (LISTEN_FDS,
LISTEN_FDNAMES, LISTEN_PID): descriptors 3, 4, ... in order. {fd:NAME} in the
arguments becomes that socket's descriptor number ({fd} when there is one).
Sockets lameduck itself was given by systemd are passed on the same way.
lameduck keeps its copy while the program runs, so connections wait in the
queue through a restart or a crash; at the shutdown it gives its copy up
(above). Connections still queued when lameduck closes the last copy of a
socket (the program had closed its own) are reset: lameduck counts them in
its log, and exits 1 (`component failed (1)`).

Traffic: lameduck sees the connections on the TCP sockets it holds, listed
by the kernel's sock_diag: a new connection, or bytes received on one, is
traffic. With a drain window it lists them every 100 ms from the drain on,
and while the program runs every --drain-quiet / 4, rounded down to tenths of
a second (100 ms to 500 ms: 200 ms at the default 1s); a fixed drain
(--drain-delay) counts them at its start and end only (every 100 ms from its
start with --flight-record). Without
such a socket (the program binds its own port, or only unix: sockets), or
where sock_diag cannot be used, the drain is fixed at --drain-max, and the
log says so as it starts.

SIGHUP (or `upgrade` on --control-socket) restarts with zero downtime: a
second instance starts with the same sockets; once it is ready (by --ready)
the old one gets the stop signal. If the new one exits, fails its check or is
not ready within --restart-timeout, it is stopped and the old one goes on
serving. One restart at a time. Without --listen nothing is guaranteed: a
program that binds its own port cannot start a second instance on it, and a
check on that port is answered by the old one; a restart whose new instance
is gone once the old one has stopped is reported failed (log and control
socket), never complete. The SIGHUP of a closed terminal (lameduck had a
controlling terminal, and it is gone) stops instead, as SIGTERM does.

Crashes: --restart on-failure (the default), always or never, with
exponential backoff and jitter; more than --max-restarts within
--restart-window and lameduck exits with the program's last exit code.
What a crashed instance left running gets the stop signal; SIGKILL after
--hard-timeout before the program starts again, or, after the last crash,
at the shutdown timeout, named in the report, as for any shutdown.

lameduck's own events go to stderr: lines prefixed `lameduck[PID]:` on a
terminal, JSON lines otherwise (--output).

",
    crate::duration::duration_syntax!()
);

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

Exit status (the report's log line and --flight-record give the same code,
and why: `program exited with 3 (3)`, `clean (0)`, ...):
  N        the program's exit code, or 128 + the signal that killed it:
           when it ended by itself, on a stop signal with another code, or
           for the last time before lameduck gave up restarting it
  0        the program stopped on the stop signal lameduck sent it (killed
           by it, or exiting with 0 or 128 + its number), or lameduck was
           stopped while the program waited to be restarted
  1        lameduck gave up restarting a program whose last run exited 0
           (--restart always) or was stopped for failing --live; or
           connections queued on a socket were lost (reset) as lameduck
           closed its last copy
  2        usage: a bad flag or value, an address that cannot be bound
  3        lameduck stopped the program, or it exited 0 by itself, but a
           process of it (one it left running too) had to be killed at the
           shutdown timeout
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
    pub(super) admin: flags::Admin,

    /// When the program is ready: http://HOST:PORT/PATH, tcp:HOST:PORT,
    /// notify or exec:COMMAND [default: as soon as it started]
    #[arg(long, value_name = "CHECK")]
    pub(super) ready: Option<Probe>,
    /// How often the readiness check runs (more often until it first passes)
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        value_parser = more_than_zero(
            "would run the readiness check back to back, spinning a CPU",
            "1s"
        ),
        allow_hyphen_values = true
    )]
    pub(super) ready_interval: Duration,
    /// How long one readiness check may take
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        value_parser = more_than_zero(
            "would give each readiness check no time to answer, so none could pass",
            "1s"
        ),
        allow_hyphen_values = true
    )]
    pub(super) ready_timeout: Duration,
    /// Failures in a row that make a ready program unready
    #[arg(long, value_name = "N", default_value = "3", value_parser = flags::parse_count, allow_hyphen_values = true)]
    pub(super) ready_failures: u32,
    /// Successes in a row that make it ready
    #[arg(long, value_name = "N", default_value = "1", value_parser = flags::parse_count, allow_hyphen_values = true)]
    pub(super) ready_successes: u32,

    /// When the program is alive (same forms as --ready, but notify),
    /// checked once it is ready; a program that fails it --live-failures
    /// times in a row is stopped and restarted [default: no check]
    #[arg(long, value_name = "CHECK")]
    pub(super) live: Option<Probe>,
    /// How often the liveness check runs
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = more_than_zero(
            "would run the liveness check back to back, spinning a CPU",
            "10s"
        ),
        allow_hyphen_values = true
    )]
    pub(super) live_interval: Duration,
    /// How long one liveness check may take
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1s",
        value_parser = more_than_zero(
            "would give each liveness check no time to answer, so the program would be restarted again and again",
            "1s"
        ),
        allow_hyphen_values = true
    )]
    pub(super) live_timeout: Duration,
    /// Failures in a row that make the program count as dead
    #[arg(long, value_name = "N", default_value = "3", value_parser = flags::parse_count, allow_hyphen_values = true)]
    pub(super) live_failures: u32,

    #[command(flatten)]
    pub(super) phases: PhaseFlags,
    #[command(flatten)]
    pub(super) metrics: MetricsFlags,

    /// The signal that asks the program to stop
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = flags::parse_stop_signal)]
    pub(super) stop_signal: Signal,
    /// Signals forwarded to the program's group as they arrive
    /// (comma-separated, or none)
    #[arg(long, value_name = "SIGNALS", default_value = "QUIT,USR1,USR2,WINCH,CONT", value_parser = flags::parse_forwarded)]
    pub(super) forward: flags::Forwarded,

    /// A listening socket for the program: NAME=IP:PORT or NAME=unix:PATH
    /// (repeatable)
    #[arg(long = "listen", value_name = "NAME=ADDR")]
    pub(super) listen: Vec<ListenSpec>,

    /// When to start the program again after it ended
    #[arg(long, value_name = "WHEN", value_enum, default_value = "on-failure")]
    pub(super) restart: RestartWhen,
    /// The first restart's delay, doubled at each restart (with 20% jitter)
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration, allow_hyphen_values = true)]
    pub(super) restart_delay: Duration,
    /// The longest delay between restarts
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub(super) restart_delay_max: Duration,
    /// More restarts than this within --restart-window and lameduck gives up
    #[arg(
        long,
        value_name = "N",
        default_value = "5",
        allow_hyphen_values = true
    )]
    pub(super) max_restarts: u32,
    /// The window of --max-restarts
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = more_than_zero(
            "would count no restart, so --max-restarts would never give up",
            "30s"
        ),
        allow_hyphen_values = true
    )]
    pub(super) restart_window: Duration,
    /// How long the new instance of a zero-downtime restart (SIGHUP) has to
    /// become ready
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        value_parser = more_than_zero(
            "would fail every restart before the new instance could become ready",
            "30s"
        ),
        allow_hyphen_values = true
    )]
    pub(super) restart_timeout: Duration,

    /// Serve a control socket (mode 0600, owner only), from lameduck's
    /// start, that takes `upgrade` (a zero-downtime restart; answers `ok
    /// PID` with the new instance's pid, `busy` while one is under way, or
    /// `error WHY`, also while the program starts) and `status` (`ok PHASE
    /// pid PID`, lameduck's own pid: `ok starting …` until the program is
    /// ready); `reload` is answered with an error (lameduck run has nothing
    /// to reload: `upgrade` restarts)
    #[arg(long, value_name = "PATH")]
    pub(super) control_socket: Option<std::path::PathBuf>,

    /// Write a flight record of the shutdown (and of each zero-downtime
    /// restart) to this JSON file, for `lameduck report`: the phases, what
    /// ended the drain, the traffic seen on the sockets, the program's
    /// processes still alive at each deadline, the exit code. `{pid}` in it
    /// becomes lameduck's process id. Its directory must exist (else exit
    /// 78)
    #[arg(long, value_name = "PATH")]
    pub(super) flight_record: Option<std::path::PathBuf>,

    /// How to print lameduck's own events: auto (human on a terminal), human
    /// or json
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "auto")]
    pub(super) output: output::Output,

    /// The program and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(super) command: Vec<std::ffi::OsString>,
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
