//! `lameduck run -- CMD ARGS…`: the whole shutdown sequence, zero-downtime
//! restarts and crash supervision for any program.
//!
//! `lameduck run` is itself an [`App`] of one component, `program`, that
//! supervises the program (`run/program.rs`; its zero-downtime restarts in
//! `run/restart.rs`, the sockets held for it in `run/held.rs`): the
//! library gives it the phases, the budget and its check, readiness and
//! liveness, the restart policy, the report and systemd's notifications.
//! Around it: the PID-1
//! duties (`run/reaper.rs`), the process groups (`run/instance.rs`) and
//! every descendant known by pid and start time (`run/known.rs`,
//! `run/tree.rs`), the
//! checks (`run/checks.rs`), the signals (`run/signals.rs`), the guard that
//! outlives a killed lameduck (`run/guard.rs`), and the logs
//! (`run/output.rs`). The flags and the help are in `run/args.rs`. The
//! exit code is the report's: the `program` component says how the program
//! ended, and the library makes it the report's status.

mod args;
mod checks;
mod flags;
pub mod guard;
mod held;
mod instance;
mod known;
mod output;
mod program;
mod reaper;
mod restart;
mod signals;
#[cfg(target_os = "linux")]
mod sock_diag;
mod sockets;
mod stop;
mod supervisor;
mod traffic;
mod tree;

use std::process::ExitCode;

use anyhow::Context as _;
use lameduck::upgrade::Upgrade;
use lameduck::{App, Budget, Component, Restart, RestartPolicy};

pub use args::Args;
use checks::CheckSpec;
use flags::{ListenAddr, Probe, RestartWhen};
use supervisor::{Parts, Supervisor};

/// The component that supervises the program.
const PROGRAM: &str = "program";

/// Runs `lameduck run`: the exit code, or an error for a usage problem.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    output::init(args.output);
    if args.live == Some(Probe::Notify) {
        anyhow::bail!(
            "--live notify is not supported: liveness needs a check lameduck runs (http://, tcp: or exec:)"
        );
    }
    let mut budget = args.phases.apply(Budget::default());
    let mut timeline = match crate::phases::check(&budget) {
        Ok(t) => t,
        Err(err) => {
            say!("lameduck: error: {err}");
            return Ok(ExitCode::from(lameduck::ExitStatus::InvalidConfig.code()));
        }
    };
    // Refused before anything is bound: the second bind would fail with
    // only the OS's "Address already in use".
    if let Some(admin) = args.admin.0
        && admin.port() != 0
        && let Some(spec) = args
            .listen
            .iter()
            .find(|s| matches!(s.addr, ListenAddr::Tcp(a) if a == admin))
    {
        anyhow::bail!(
            "--admin {admin} is the address --listen {} serves: the probes and metrics need a port of their own",
            spec.name
        );
    }
    // Before any thread starts: descriptors 3, 4, … passed by systemd are
    // claimed as this process's own, then bound what --listen asks.
    let (sockets, given) = sockets::open(&args.listen)?;
    let cmd = sockets::expand(&args.command, &sockets)?;
    // The drain ends on quiet traffic only where the traffic can be seen.
    let watch = traffic::Watch::check(&sockets);
    if let Err(why) = &watch {
        if let traffic::Unwatched::Unavailable(_) = why {
            tracing::warn!(target: "lameduck::run", reason = %why, "{why}: the drain is fixed at --drain-max");
        }
        if timeline.is_adaptive() {
            budget = args
                .phases
                .apply_with_fixed_drain(Budget::default(), timeline.drain_max());
            timeline = budget.check().context("fixing the drain at --drain-max")?;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let sockets = held::Held::new(sockets, given);
    runtime.block_on(supervise(args, budget, timeline, sockets, watch, cmd))
}

async fn supervise(
    args: Args,
    budget: Budget,
    timeline: lameduck::Timeline,
    sockets: held::Held,
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
                .with_context(|| format!("--admin {addr}: binding the admin listener"))?,
        ),
        None => None,
    };
    let (program, program_args) = cmd.split_first().context("no program to run")?;
    let check = |probe: Option<Probe>, interval, timeout, failures, successes, live| {
        probe.map(|probe| CheckSpec {
            probe,
            interval,
            timeout,
            failures,
            successes,
            fails_before_passing: live,
        })
    };
    let (restart_decisions, restarts) = supervisor::restart_decisions(PROGRAM);
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
            false,
        ),
        live: check(
            args.live,
            args.live_interval,
            args.live_timeout,
            args.live_failures,
            1,
            true,
        ),
        stop_signal: args.stop_signal,
        restart: args.restart,
        restart_timeout: args.restart_timeout,
        shutdown_timeout: timeline.shutdown_timeout,
        hard_timeout: timeline.hard_timeout,
        restarts,
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
        .observer(traffic::drain_start(&watch, &timeline))
        .observer(restart_decisions);
    if let Some(path) = &args.flight_record {
        app = app.flight_record(path);
    }
    let app = app
        .upgrade(upgrade)
        .component(
            Component::new(PROGRAM, move |ctx| program::run(component_sup.clone(), ctx))
                .restart(policy),
        )
        .build();
    let app = match app {
        Ok(app) => app,
        Err(err) => {
            // Every build error here comes from a flag (a path that cannot
            // be used, a budget that does not fit): the operator's mistake,
            // said like every other flag error, before the program starts.
            say!("lameduck: error: {}", flags::flag_error(&err, &paths));
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
    // Normally given up at the stop signal already; here when the restart
    // policy gave up on the program (the report is out: only the log can
    // say what this close lost).
    sup.launch.sockets.give_up(true);
    // Nothing of the program outlives lameduck: what the hard deadline
    // left behind is killed here, and waited for.
    sup.known.end(&sup.reaper).await;
    guard.done();
    // One number for the report's log line, the flight record and the exit.
    Ok(report.exit_code())
}
