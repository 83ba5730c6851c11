//! The drill itself: start or find the server, wait until it is ready, load
//! it, signal it, watch it exit, and turn what was seen into a report.

mod restarts;
mod signals;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::analysis::{self, Facts, Observed};
use crate::client::Client;
use crate::config::{DrillConfig, Expectation, HttpVersion, Load, ServerSpec};
use crate::dial::{Dialer, Tls};
use crate::error::DrillError;
use crate::events::EventLog;
use crate::flight::{self, FLIGHT_RECORD_WAIT};
use crate::load::{self, LoadContext};
use crate::probe::{self, ReadyCheck};
use crate::process::Server;
use crate::progress::{Progress, Stage};
use crate::record::{Clock, RecordSink};
use crate::report::{ExitEvent, Latency, Report, ReportConfig, SCHEMA, ServerInfo};
use crate::verdict::{self, Rules};

/// One drill, ready to run.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use lameduck_drill::{Drill, DrillConfig, ServerSpec, Signal, SignalPlan};
///
/// # async fn example() -> Result<(), lameduck_drill::DrillError> {
/// let mut config = DrillConfig::new("http://127.0.0.1:8080/")?;
/// config.server = ServerSpec::Spawn {
///     program: "./my-server".into(),
///     args: vec![],
///     log: None,
/// };
/// config.duration = Duration::from_secs(6);
/// config.signal = Some(SignalPlan::once(Signal::TERM, Duration::from_secs(2)));
/// let report = Drill::new(config)?.run().await?;
/// println!("{}", report.summary());
/// assert!(report.verdict.pass);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Drill {
    config: DrillConfig,
    /// The client side of TLS, for an `https://` drill.
    tls: Option<Tls>,
    progress: Progress,
}

impl Drill {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`DrillError::Config`] when it does not hold together, or an
    /// `https://` drill's `--cacert` file cannot be read or holds no
    /// certificate.
    pub fn new(config: DrillConfig) -> Result<Self, DrillError> {
        config.validate()?;
        let tls = config
            .is_https()
            .then(|| Tls::new(&config.tls))
            .transpose()?;
        let progress = Progress::new(config.duration);
        Ok(Drill {
            config,
            tls,
            progress,
        })
    }

    /// A handle to follow the drill while it runs.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Runs the drill to the end: at most the readiness timeout, plus the
    /// duration, plus the request timeout (or the rest of the grace period,
    /// when waiting for a signalled server to exit, or in a restart drill
    /// for the new process after the last signal), plus a few seconds of
    /// cleanup.
    ///
    /// # Errors
    ///
    /// When the drill cannot be carried out: the server does not start or is
    /// never ready, a host does not resolve. A server that fails requests is
    /// not an error: the report's verdict says so.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the drill and kills a server it spawned.
    pub async fn run(self) -> Result<Report, DrillError> {
        let config = &self.config;
        let addr = probe::resolve(&config.url).await?;
        let ready_uri = config
            .ready_url
            .clone()
            .unwrap_or_else(|| config.url.clone());
        let ready_addr = probe::resolve(&ready_uri).await?;
        let dialer = Dialer::new(&config.url, addr, self.tls.as_ref(), config.http);
        let call = (config.grpc.is_some() && config.ready_url.is_none()).then(|| {
            let events = Arc::new(EventLog::default());
            Arc::new(Client::new(config, dialer.clone(), Clock::start(), events))
        });
        let ready = ReadyCheck {
            dialer: Dialer::new(
                &ready_uri,
                ready_addr,
                self.tls.as_ref(),
                HttpVersion::Http1,
            ),
            uri: ready_uri,
            call,
        };
        // A server the drill does not start has written its PID file
        // already: checked before anything (one the drill starts, once it
        // is ready, below).
        let spawns = matches!(config.server, ServerSpec::Spawn { .. });
        if !spawns {
            pid_file_usable(config)?;
        }
        self.progress.set_stage(Stage::Starting);
        let server = Arc::new(match &config.server {
            ServerSpec::Unknown => Server::none(),
            ServerSpec::Spawn { program, args, log } => {
                Server::spawn(program, args, log.as_deref())?
            }
            ServerSpec::Attach(pid) => Server::attach(*pid)?,
        });
        self.progress.set_stage(Stage::WaitingReady);
        let started = match wait_ready(config, &ready, &server).await {
            Ok(()) if spawns => pid_file_usable(config),
            result => result,
        };
        if let Err(err) = started {
            server.clean_up(None, &[]).await;
            return Err(err);
        }

        let wall_start = SystemTime::now();
        let started_at = humantime::format_rfc3339_millis(wall_start).to_string();
        let clock = Clock::start();
        let events = Arc::new(EventLog::default());
        let sink = Arc::new(RecordSink::default());
        self.progress.start_load(
            clock,
            Arc::clone(&sink),
            Arc::clone(&events),
            Arc::clone(&server),
        );
        let ctx = Arc::new(LoadContext {
            client: Client::new(config, dialer, clock, Arc::clone(&events)),
            sink: Arc::clone(&sink),
            clock,
            end: clock.t0() + config.duration,
            timeout: config.timeout,
        });
        let mut observers = tokio::task::JoinSet::new();
        observers.spawn(probe::probe_listener(
            addr,
            config.connect_probe_interval,
            clock,
            Arc::clone(&events),
        ));
        if config.ready_url.is_some() {
            observers.spawn(
                ready
                    .clone()
                    .poll(config.ready_interval, clock, Arc::clone(&events)),
            );
        }
        let signaller = config.signal.map(|plan| {
            let target = signals::Targets::new(Arc::clone(&server), config.pid_file.clone(), addr);
            let excuse = (config.expectation() == Expectation::Stop).then(|| Arc::clone(&sink));
            tokio::spawn(signals::send(
                plan,
                target,
                signals::Signaller {
                    clock,
                    events: Arc::clone(&events),
                    excuse,
                    load_end: clock.t0() + config.duration,
                    grace_period: config.grace_period,
                },
            ))
        });

        load::run(ctx, config.load).await;
        let load_end_us = clock.now_us();
        if let Some(signaller) = signaller {
            // Its last signal was due before the end of the load; in a
            // restart drill it then looks for the last new process, for at
            // most the grace period.
            let _ = signaller.await;
        }
        self.progress.set_stage(Stage::WaitingExit);
        self.wait_for_exit(&server, &events, clock).await;
        observers.shutdown().await;

        self.progress.set_stage(Stage::CleaningUp);
        let grace = (config.expectation() != Expectation::Stop).then_some(config.grace_period);
        // The processes a restart replaced exit on their own: the cleanup
        // leaves them be, and does not take their exits for its own. A
        // supervisor (`lameduck run`) replaced a worker, not itself: it is
        // stopped like any server.
        let replaced: Vec<u32> = events
            .snapshot()
            .restarts
            .iter()
            .filter(|r| r.new_pid.is_some() && !r.supervisor)
            .filter_map(|r| r.pid)
            .collect();
        server.clean_up(grace, &replaced).await;
        let end_us = clock.now_us();
        let snapshot = events.snapshot();
        let server_record = match &config.flight_record {
            Some(template) => {
                let signalled = snapshot.signals.iter().find_map(|s| s.pid);
                let path = flight::path_for(template, signalled.or(server.pid()));
                Some(flight::read(&path, flight::unix_us(wall_start), FLIGHT_RECORD_WAIT).await)
            }
            None => None,
        };
        self.progress.set_stage(Stage::Done);

        let (records, details) = sink.take();
        let exits = server
            .exits()
            .into_iter()
            .map(|(pid, info, stopped_by_cleanup)| ExitEvent {
                pid,
                at_us: clock.us(info.at),
                code: info.code,
                signal: info.signal,
                stopped_by_cleanup: stopped_by_cleanup.map(|s| s.name().to_owned()),
            })
            .collect();
        let observed = Observed {
            records,
            details,
            sent: sink.sent(),
            events: snapshot,
            exits,
            load_end_us,
            end_us,
            expect: config.expectation(),
            recorded_exit: server_record
                .as_ref()
                .and_then(|r| r.exit.as_ref())
                .map(|e| e.code),
        };
        let mut report = self.report(started_at, &server, &observed);
        if let Some(record) = server_record {
            verdict::flight_record(&mut report.verdict, &record, config.flight_record_required);
            report.server = Some(record);
        }
        Ok(report)
    }

    /// With a stop signal, waits (up to the grace period from the signal) for
    /// the signalled process to exit, watching the listener meanwhile.
    async fn wait_for_exit(&self, server: &Server, events: &EventLog, clock: Clock) {
        if self.config.expectation() != Expectation::Stop {
            return;
        }
        let snapshot = events.snapshot();
        let Some(signal) = snapshot.signals.iter().find(|s| s.error.is_none()) else {
            return;
        };
        let Some(pid) = signal.pid else { return };
        let deadline =
            clock.t0() + std::time::Duration::from_micros(signal.at_us) + self.config.grace_period;
        let _ = tokio::time::timeout_at(deadline.max(Instant::now()).into(), server.wait_exit(pid))
            .await;
    }

    fn report(&self, started_at: String, server: &Server, observed: &Observed) -> Report {
        let config = &self.config;
        let facts = Facts::find(observed);
        let requests = analysis::requests(observed, &facts);
        let events = analysis::events(observed, &facts);
        let rules = Rules {
            expect: config.expectation(),
            signal: config.signal.map(|p| p.signal),
            readiness_polled: config.ready_url.is_some(),
            grace_period: config.grace_period,
            grpc: config.grpc.is_some(),
        };
        let verdict = verdict::judge(rules, &facts, &requests, &events);
        Report {
            schema: SCHEMA.to_owned(),
            lameduck_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at,
            config: report_config(config, server),
            latency: Latency {
                slow: config
                    .slow_threshold
                    .map(|threshold| analysis::slow(observed, &facts, threshold)),
                ..analysis::latency(observed, &facts)
            },
            keepalive: analysis::keepalive(observed, &facts),
            timeline: analysis::timeline(observed, &facts),
            failures: analysis::failures(observed, &facts),
            requests,
            events,
            verdict,
            server: None,
        }
    }
}

async fn wait_ready(
    config: &DrillConfig,
    ready: &ReadyCheck,
    server: &Server,
) -> Result<(), DrillError> {
    let exited = async {
        match server.pid() {
            Some(pid) => server.wait_exit(pid).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        result = ready.wait_ready(config.ready_timeout, config.ready_interval) => {
            result.map_err(|last| DrillError::NotReady {
                url: ready.uri.to_string(),
                timeout: config.ready_timeout,
                last,
            })
        }
        exit = exited => Err(DrillError::ExitedBeforeReady {
            status: match (exit.code, exit.signal) {
                (Some(code), _) => format!("code {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                (None, None) => "status unknown".to_owned(),
            },
        }),
    }
}

fn report_config(config: &DrillConfig, server: &Server) -> ReportConfig {
    let us = crate::record::duration_us;
    let (concurrency, rate) = match config.load {
        Load::Concurrency(n) => (Some(n), None),
        Load::Rate { per_second, .. } => (None, Some(per_second)),
    };
    let (kind, command) = match &config.server {
        ServerSpec::Unknown => ("none", Vec::new()),
        ServerSpec::Spawn { program, args, .. } => (
            "spawn",
            std::iter::once(program)
                .chain(args)
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
        ),
        ServerSpec::Attach(_) => ("attach", Vec::new()),
    };
    ReportConfig {
        // What the load requests: for gRPC the method's path, not the
        // given URL's.
        url: match &config.grpc {
            Some(call) => call.uri(&config.url).to_string(),
            None => config.url.to_string(),
        },
        ready_url: config.ready_url.as_ref().map(ToString::to_string),
        method: match config.grpc {
            Some(_) => "POST".to_owned(),
            None => config.request.method.to_string(),
        },
        grpc: config.grpc.as_ref().map(|call| call.method.clone()),
        http: config.http.as_str().to_owned(),
        connections: config.connections,
        concurrency,
        rate,
        duration_us: us(config.duration),
        timeout_us: us(config.timeout),
        signal: config.signal.map(|p| p.signal.to_string()),
        at_us: config.signal.map(|p| us(p.at)),
        repeat: config.signal.map_or(0, |p| p.repeat),
        every_us: config.signal.filter(|p| p.repeat > 1).map(|p| us(p.every)),
        expect: config.expectation(),
        grace_period_us: us(config.grace_period),
        server: ServerInfo {
            kind: kind.to_owned(),
            command,
            pid: server.pid(),
        },
    }
}

/// The `--pid-file`, if given, names a running process.
fn pid_file_usable(config: &DrillConfig) -> Result<(), DrillError> {
    match &config.pid_file {
        Some(path) => signals::check_pid_file(path).map_err(|why| DrillError::PidFile {
            path: path.clone(),
            why,
        }),
        None => Ok(()),
    }
}
