//! What leaves the driver: lifecycle events to observers, exporters'
//! flushes inside the budget. Virtual time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::observe::Event;
use lameduck::{App, Budget, BuildErrorKind, CloseOutcome, Component, ExitStatus, Phase, Report};

fn budget() -> Budget {
    Budget::new(Duration::from_secs(30))
        .drain_delay(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(10))
        .hard_timeout(Duration::from_secs(3))
}

async fn run_until_running_then_stop(app: App) -> Report {
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test");
    run.await.unwrap()
}

/// A log of what happened, in order, shared by the closures below.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0.lock().unwrap().push(s.into());
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test(start_paused = true)]
async fn exporters_flush_after_every_close_and_the_report_says_how_each_went() {
    let log = Log::default();
    let (closed, flushed, hung) = (log.clone(), log.clone(), log.clone());
    let app = App::builder("svc")
        .budget(budget().close_timeout("kafka", Duration::from_secs(2)))
        .handle_signals(false)
        .component(
            Component::new("db", |ctx| async move {
                ctx.ready();
                ctx.on_stopping().await;
                Ok(())
            })
            .on_close(move || async move {
                closed.push("db closed");
                Ok(())
            }),
        )
        .exporter("otel", move || async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            flushed.push("otel flushed");
            Ok(())
        })
        .exporter("kafka", move || async move {
            hung.push("kafka flushing");
            std::future::pending().await
        })
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(
        log.lines(),
        ["db closed", "otel flushed", "kafka flushing"],
        "{report}"
    );
    assert_eq!(report.exporters.len(), 2);
    assert_eq!(
        report.exporters[0].flush,
        CloseOutcome::Closed(Duration::from_millis(300))
    );
    assert_eq!(
        report.exporters[1].flush,
        CloseOutcome::TimedOut(Duration::from_secs(2))
    );
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    let text = report.to_string();
    assert!(text.contains("exporter otel: flushed in 300ms"), "{text}");
    assert!(
        text.contains("exporter kafka: flush timed out after 2s"),
        "{text}"
    );
}

#[test]
fn an_exporter_counts_in_the_budget_and_needs_a_name_of_its_own() {
    let app = App::builder("svc")
        .budget(budget())
        .exporter("otel", || async { Ok(()) })
        .build()
        .unwrap();
    assert_eq!(
        app.timeline().close_timeout("otel"),
        Some(lameduck::DEFAULT_CLOSE_TIMEOUT)
    );
    assert_eq!(
        app.timeline().close_total(),
        lameduck::DEFAULT_CLOSE_TIMEOUT
    );

    let err = App::builder("svc")
        .component(Component::new("otel", |_ctx| async { Ok(()) }))
        .exporter("otel", || async { Ok(()) })
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), BuildErrorKind::DuplicateName);
    assert!(err.to_string().contains("exporter otel"), "{err}");

    // Too long for the grace period: the budget says so, exporters included.
    let err = App::builder("svc")
        .budget(Budget::new(Duration::from_secs(10)).close_timeout("otel", Duration::from_secs(9)))
        .exporter("otel", || async { Ok(()) })
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), BuildErrorKind::Budget);
    assert!(err.to_string().contains("otel 9s"), "{err}");
}

/// An observer that writes what it hears to `log`, one line per event.
fn hear(log: &Log) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
    let heard = log.clone();
    move |event: &Event<'_>| {
        let line = match event {
            Event::Starting { components, .. } => format!("starting {components}"),
            Event::PhaseChanged { from, to, .. } => format!("{from} -> {to}"),
            Event::ComponentStarted { component, .. } => format!("{component} started"),
            Event::ComponentReady { component, .. } => format!("{component} ready"),
            Event::ComponentExited {
                component, error, ..
            } => format!("{component} exited {}", error.unwrap_or("ok")),
            Event::DrainStarted { max } => format!("drain started {max:?}"),
            Event::DrainEnded { drain } => format!("drain ended {}", drain.ended),
            Event::Closed { name, .. } => format!("{name} closed"),
            Event::Report(r) => format!("report {}", r.status()),
            _ => return,
        };
        heard.push(line);
    }
}

#[tokio::test(start_paused = true)]
async fn observers_hear_every_phase_component_and_report_in_order() {
    let log = Log::default();
    let app = App::builder("svc")
        .budget(budget())
        .handle_signals(false)
        .observer(hear(&log))
        .component(
            Component::new("db", |ctx| async move {
                ctx.ready();
                ctx.on_stopping().await;
                Ok(())
            })
            .on_close(|| async { Ok(()) }),
        )
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(report.status(), ExitStatus::Clean);
    assert_eq!(
        log.lines(),
        [
            "starting 1",
            "db started",
            "db ready",
            "starting -> running",
            "running -> draining",
            "drain started 1s",
            "drain ended drain delay over",
            "draining -> stopping",
            "db exited ok",
            "stopping -> closing",
            "db closed",
            "report clean (0)",
            "closing -> stopped",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_names_what_it_cut_to_observers() {
    let cut = Log::default();
    let heard = cut.clone();
    let app = App::builder("svc")
        .budget(budget())
        .handle_signals(false)
        .observer(move |event: &Event<'_>| {
            if let Event::DeadlinePassed { deadline, work, .. } = event {
                for w in *work {
                    heard.push(format!("{deadline}: {}", w.label));
                }
            }
        })
        .component(Component::new("jobs", |ctx| async move {
            ctx.ready();
            let _stuck = ctx.tracker().track("stuck job");
            std::future::pending::<()>().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded);
    assert_eq!(
        cut.lines(),
        [
            "the shutdown timeout: stuck job",
            "the hard deadline: stuck job"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_panicking_observer_does_not_stop_the_shutdown_or_the_others() {
    let log = Log::default();
    let heard = log.clone();
    let app = App::builder("svc")
        .budget(budget())
        .handle_signals(false)
        .observer(|_: &Event<'_>| panic!("observer bug"))
        .observer(move |event: &Event<'_>| {
            if let Event::Report(_) = event {
                heard.push("report");
            }
        })
        .component(Component::new("db", |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(report.status(), ExitStatus::Clean);
    assert_eq!(log.lines(), ["report"]);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_before_running_skips_the_drain_and_no_drain_is_heard_to_start() {
    let log = Log::default();
    let app = App::builder("svc")
        .budget(budget())
        .handle_signals(false)
        .observer(hear(&log))
        .component(Component::new("slow", |ctx| async move {
            // Never ready: the app is still Starting when it is stopped.
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Starting).await;
    handle.shutdown("test");
    run.await.unwrap();
    let lines = log.lines();
    assert!(
        lines.iter().any(|l| l == "drain ended drain skipped"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("drain started")),
        "{lines:?}"
    );
}
