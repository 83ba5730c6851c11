//! Start, stop and close follow the dependency graph; phases and readiness
//! follow the shutdown sequence. Virtual time throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::{App, Budget, Component, Ending, ExitStatus, Phase, ShutdownReason};

type Log = Arc<Mutex<Vec<String>>>;

fn log(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn resource(name: &'static str, events: &Log) -> Component {
    let run_log = events.clone();
    let close_log = events.clone();
    Component::new(name, move |ctx| {
        let events = run_log.clone();
        async move {
            log(&events, format!("start {name}"));
            ctx.ready();
            ctx.on_stopping().await;
            log(&events, format!("stop {name}"));
            Ok(())
        }
    })
    .on_close(move || async move {
        log(&close_log, format!("close {name}"));
        Ok(())
    })
}

fn budget() -> Budget {
    Budget::new(Duration::from_secs(30)).drain_delay(Duration::from_secs(5))
}

#[tokio::test(start_paused = true)]
async fn components_start_in_dependency_order_and_stop_and_close_in_reverse() {
    let events = Log::default();
    let app = App::builder("order")
        .budget(budget())
        .handle_signals(false)
        .component(
            resource("http", &events)
                .depends_on("cache")
                .depends_on("db"),
        )
        .component(resource("cache", &events).depends_on("db"))
        .component(resource("db", &events))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test over");
    let report = run.await.unwrap();

    assert_eq!(
        *events.lock().unwrap(),
        [
            "start db",
            "start cache",
            "start http",
            "stop http",
            "stop cache",
            "stop db",
            "close http",
            "close cache",
            "close db"
        ]
    );
    assert_eq!(report.status(), ExitStatus::Clean);
    assert_eq!(
        report.reason,
        Some(ShutdownReason::Requested("test over".into()))
    );
    assert!(
        report
            .components
            .iter()
            .all(|c| c.ended == Ending::Finished)
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_turns_false_at_the_first_instant_of_draining_while_serving_goes_on() {
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let seen_tx = Arc::new(Mutex::new(Some(seen_tx)));
    let app = App::builder("drain")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("http", move |ctx| {
            let seen_tx = seen_tx.clone();
            async move {
                ctx.ready();
                ctx.on_draining().await;
                // The instant this component hears of the drain, readiness
                // is already false, and it has not been told to stop.
                let ready = ctx.app().health().is_ready();
                let stopping = ctx.is_stopping();
                if let Some(tx) = seen_tx.lock().unwrap().take() {
                    let _ = tx.send((ready, stopping, ctx.app().health().is_live()));
                }
                ctx.on_stopping().await;
                Ok(())
            }
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    assert!(handle.health().is_ready());
    handle.shutdown("deploy");
    let (ready, stopping, live) = seen_rx.await.unwrap();
    assert!(!ready, "readiness false at draining");
    assert!(!stopping, "still serving while draining");
    assert!(live, "liveness stays true while draining");
    let report = run.await.unwrap();
    assert_eq!(
        report.phase_duration(Phase::Draining),
        Some(Duration::from_secs(5))
    );
    assert_eq!(report.status(), ExitStatus::Clean);
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_before_running_skips_the_drain_delay() {
    let app = App::builder("early")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("slow-start", |ctx| async move {
            // Never ready: the app stays in Starting.
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap();
    app.handle().shutdown("cancelled deploy");
    let report = app.await;
    assert_eq!(report.phase_duration(Phase::Draining), Some(Duration::ZERO));
    assert_eq!(report.status(), ExitStatus::Clean);
}

#[tokio::test(start_paused = true)]
async fn every_phase_change_is_observable_in_order() {
    let app = App::builder("phases")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("worker", |ctx| async move {
            ctx.ready();
            ctx.on_cancelled().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let mut rx = handle.watch_phase();
    let seen = tokio::spawn(async move {
        let mut seen = vec![*rx.borrow_and_update()];
        while rx.changed().await.is_ok() {
            let p = *rx.borrow_and_update();
            seen.push(p);
            if p == Phase::Stopped {
                break;
            }
        }
        seen
    });
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test");
    let report = run.await.unwrap();
    // A watch channel shows the latest phase, so a slow observer may skip
    // one; what it sees only ever moves forward, and ends at Stopped.
    let seen = seen.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.first(), Some(&Phase::Starting));
    assert_eq!(seen.last(), Some(&Phase::Stopped));
    let phases: Vec<Phase> = report.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Draining,
            Phase::Stopping,
            Phase::Cancelling,
            Phase::Closing
        ]
    );
    // It waited for its cancel signal: the shutdown timeout passed.
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn every_component_sees_the_shutdown_reason() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let app = App::builder("reason")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("w", move |ctx| {
            let tx = tx.clone();
            async move {
                ctx.ready();
                ctx.on_draining().await;
                let _ = tx
                    .lock()
                    .unwrap()
                    .take()
                    .unwrap()
                    .send(ctx.shutdown_reason());
                ctx.on_stopping().await;
                Ok(())
            }
        }))
        .build()
        .unwrap();
    app.handle().shutdown("scale down");
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    assert_eq!(
        rx.await.unwrap(),
        Some(ShutdownReason::Requested("scale down".into()))
    );
    assert_eq!(
        handle.shutdown_reason(),
        Some(ShutdownReason::Requested("scale down".into()))
    );
    run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_app_stops_when_every_component_has_finished() {
    let app = App::builder("batch")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("migrate", |ctx| async move {
            ctx.ready();
            Ok(())
        }))
        .component(Component::new("report", |_ctx| async move { Ok(()) }).depends_on("migrate"))
        .build()
        .unwrap();
    let report = app.await;
    assert_eq!(report.reason, Some(ShutdownReason::Completed));
    assert_eq!(report.status(), ExitStatus::Clean);
    assert_eq!(report.phase_duration(Phase::Draining), Some(Duration::ZERO));
}
