//! The drain delay: spent while something still serves, cut short once
//! nothing does. Virtual time.

use std::time::Duration;

use lameduck::{App, Budget, Component, ExitStatus, Phase, Report};

fn budget() -> Budget {
    Budget::new(Duration::from_secs(60)).drain_delay(Duration::from_secs(20))
}

/// Runs `app` until it is Running, then shuts it down: its report.
async fn stop_once_running(app: App) -> Report {
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test");
    run.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_drain_with_every_component_returned_ends_at_once() {
    // A supervisor whose program ended during the drain: nothing is left
    // to keep serving, so waiting out the drain delay only delays the exit.
    let app = App::builder("supervisor")
        .budget(budget())
        .handle_signals(false)
        .exit_watchdog(false)
        .component(Component::new("program", |ctx| async move {
            ctx.ready();
            ctx.on_draining().await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        }))
        .build()
        .unwrap();
    let report = stop_once_running(app).await;
    assert_eq!(report.status(), ExitStatus::Clean);
    assert_eq!(
        report.phase_duration(Phase::Draining),
        Some(Duration::from_secs(3))
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_with_work_still_tracked_lasts_the_drain_delay() {
    let app = App::builder("server")
        .budget(budget())
        .handle_signals(false)
        .exit_watchdog(false)
        .component(Component::new("http", |ctx| async move {
            ctx.ready();
            // Work that outlives its component's return: still in flight.
            let guard = ctx.tracker().track("request");
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(guard);
            });
            ctx.on_draining().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let report = stop_once_running(app).await;
    assert_eq!(
        report.phase_duration(Phase::Draining),
        Some(Duration::from_secs(20))
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_of_no_components_drains_in_full() {
    // What it serves, it serves outside components: the drain is kept.
    let app = App::builder("bare")
        .budget(budget())
        .handle_signals(false)
        .exit_watchdog(false)
        .build()
        .unwrap();
    let report = stop_once_running(app).await;
    assert_eq!(
        report.phase_duration(Phase::Draining),
        Some(Duration::from_secs(20))
    );
}
