//! `Context::on_inventory`: work a component learns of by looking (a
//! child's processes) is looked at on the app's task just before each
//! inventory, so that the inventory is of that moment — also when
//! Stopping comes without a drain, or a forced exit comes, before the
//! component's own task has run again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::{App, Budget, Component, ExitStatus, Phase, Signal};

#[tokio::test]
async fn work_listed_before_each_inventory_is_in_the_one_at_stop_and_in_the_forced_report() {
    let app = App::builder("looks")
        .budget(Budget::new(Duration::from_secs(60)).drain_delay(Duration::ZERO))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(Component::new("looks", |ctx| async move {
            let tracker = ctx.tracker().clone();
            let listed = Arc::new(Mutex::new(Vec::new()));
            ctx.on_inventory(move || {
                let mut listed = listed.lock().unwrap();
                let label = format!("listed at inventory {}", listed.len() + 1);
                listed.push(tracker.track_with(label));
            });
            ctx.ready();
            // It never looks on its own task.
            std::future::pending::<()>().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test");
    handle.reached(Phase::Stopping).await;
    handle.force(Signal::Terminate);
    let report = run.await.unwrap();
    assert_eq!(report.status(), ExitStatus::Forced(Signal::Terminate));
    assert_eq!(report.work.in_flight_at_stop, 1, "{report}");
    let aborted: Vec<&str> = report
        .work
        .aborted
        .iter()
        .map(|w| w.label.as_str())
        .collect();
    assert_eq!(
        aborted,
        ["listed at inventory 1", "listed at inventory 2"],
        "{report}"
    );
}
