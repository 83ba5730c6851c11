//! Deadlines: work that outlives the shutdown timeout is cancelled, work
//! that outlives the hard timeout is aborted and named. Virtual time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::{App, Budget, CloseOutcome, Component, Ending, ExitStatus, Phase, Report, Tracker};

fn budget() -> Budget {
    Budget::new(Duration::from_secs(30))
        .drain_delay(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(10))
        .hard_timeout(Duration::from_secs(3))
}

/// A component that is ready at once and returns at its stop signal.
fn until_stopped(name: &'static str) -> Component {
    Component::new(name, |ctx| async move {
        ctx.ready();
        ctx.on_stopping().await;
        Ok(())
    })
}

async fn run_until_running_then_stop(app: App) -> Report {
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test");
    run.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn work_that_finishes_in_time_is_counted_finished() {
    let app = App::builder("quick")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("jobs", |ctx| async move {
            ctx.ready();
            let job = ctx.tracker().track("job 1");
            ctx.on_stopping().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(job);
            Ok(())
        }))
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(report.work.in_flight_at_stop, 1);
    assert_eq!(report.work.finished, 1);
    assert!(report.work.cancelled.is_empty());
    assert_eq!(report.status(), ExitStatus::Clean);
    assert_eq!(
        report.phase_duration(Phase::Stopping),
        Some(Duration::from_secs(2))
    );
}

#[tokio::test(start_paused = true)]
async fn work_past_the_shutdown_timeout_gets_the_cancel_signal_and_is_named() {
    let app = App::builder("slow")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("jobs", |ctx| async move {
            ctx.ready();
            let quick = ctx.tracker().track("quick job");
            let slow = ctx.tracker().track_with(format!("export {}", 42));
            ctx.on_stopping().await;
            drop(quick);
            ctx.on_cancelled().await;
            drop(slow);
            Ok(())
        }))
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(report.work.in_flight_at_stop, 2);
    assert_eq!(report.work.finished, 1);
    let labels: Vec<&str> = report
        .work
        .cancelled
        .iter()
        .map(|w| w.label.as_str())
        .collect();
    assert_eq!(labels, ["export 42"]);
    assert_eq!(report.work.cancelled[0].tracker.as_ref(), "jobs");
    assert!(report.work.aborted.is_empty());
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded);
    assert_eq!(report.component("jobs").unwrap().ended, Ending::Finished);
}

#[tokio::test(start_paused = true)]
async fn a_hung_component_is_aborted_at_the_hard_deadline_and_named() {
    let app = App::builder("hung")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("stuck", |ctx| async move {
            ctx.ready();
            let _guard = ctx.tracker().track("GET /forever");
            std::future::pending::<()>().await;
            Ok(())
        }))
        .component(until_stopped("db").on_close(|| async { Ok(()) }))
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(
        report.phase_duration(Phase::Stopping),
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        report.phase_duration(Phase::Cancelling),
        Some(Duration::from_secs(3))
    );
    assert_eq!(report.work.aborted.len(), 1);
    assert_eq!(report.work.aborted[0].label, "GET /forever");
    assert_eq!(report.component("stuck").unwrap().ended, Ending::Aborted);
    // Resources still close after an abort.
    assert!(matches!(
        report.component("db").unwrap().close,
        CloseOutcome::Closed(_)
    ));
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded);
    assert_eq!(report.status().code(), 3);
    let text = report.to_string();
    assert!(
        text.contains("aborted: stuck: GET /forever (running"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_close_that_overruns_its_timeout_is_abandoned_and_the_next_one_runs() {
    let app = App::builder("close")
        .budget(budget())
        .handle_signals(false)
        .component(until_stopped("db").on_close(|| async { Ok(()) }))
        .component(
            Component::new("exporter", |ctx| async move {
                ctx.ready();
                ctx.on_stopping().await;
                Ok(())
            })
            .depends_on("db")
            .close_timeout(Duration::from_millis(500))
            .on_close(std::future::pending),
        )
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(
        report.component("exporter").unwrap().close,
        CloseOutcome::TimedOut(Duration::from_millis(500))
    );
    assert!(matches!(
        report.component("db").unwrap().close,
        CloseOutcome::Closed(_)
    ));
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_close_timeout_set_in_the_budget_is_the_one_the_close_gets() {
    // 3 s in the budget; the close takes 1.5 s, past the 1 s default that
    // used to replace it.
    let app = App::builder("budgeted")
        .budget(budget().close_timeout("db", Duration::from_secs(3)))
        .handle_signals(false)
        .component(until_stopped("db").on_close(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok(())
        }))
        .build()
        .unwrap();
    let report = run_until_running_then_stop(app).await;
    assert_eq!(
        report.component("db").unwrap().close,
        CloseOutcome::Closed(Duration::from_millis(1500))
    );
    assert_eq!(report.status(), ExitStatus::Clean);
}

/// Shares the worker's tracker with `db`.
type Shared = Arc<Mutex<Option<Tracker>>>;

/// `db`, which, told to stop, sends whether the worker's tracker was idle.
fn db_that_checks_the_worker(worker: Shared) -> (Component, tokio::sync::oneshot::Receiver<bool>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let db = Component::new("db", move |ctx| {
        let (tx, worker) = (tx.clone(), worker.clone());
        async move {
            ctx.ready();
            ctx.on_stopping().await;
            let idle = worker
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|t| t.is_empty());
            let _ = tx.lock().unwrap().take().map(|t| t.send(idle));
            Ok(())
        }
    });
    (db, rx)
}

/// `worker`, depending on `db`, which starts one tracked job with `job`
/// (given the job's guard and the cancel signal) and returns at its stop
/// signal: the job outlives the worker's run.
fn worker_with_job(
    shared: Shared,
    job: impl Fn(lameduck::WorkGuard, tokio_util::sync::CancellationToken) + Send + Sync + 'static,
) -> Component {
    let job = Arc::new(job);
    Component::new("worker", move |ctx| {
        *shared.lock().unwrap() = Some(ctx.tracker().clone());
        let job = job.clone();
        async move {
            ctx.ready();
            job(ctx.tracker().track("job"), ctx.cancel_token());
            ctx.on_stopping().await;
            Ok(())
        }
    })
    .depends_on("db")
}

/// The app of `db` and `worker` (whose one job `job` starts), and what db
/// says when told to stop: whether the worker's tracker was idle.
fn db_and_worker(
    job: impl Fn(lameduck::WorkGuard, tokio_util::sync::CancellationToken) + Send + Sync + 'static,
) -> (App, tokio::sync::oneshot::Receiver<bool>) {
    let shared = Shared::default();
    let (db, rx) = db_that_checks_the_worker(shared.clone());
    let app = App::builder("jobs")
        .budget(budget())
        .handle_signals(false)
        .component(db)
        .component(worker_with_job(shared, job))
        .build()
        .unwrap();
    (app, rx)
}

#[tokio::test(start_paused = true)]
async fn a_dependency_stays_up_until_its_dependents_tracked_work_is_done() {
    let (app, rx) = db_and_worker(|guard, _| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            drop(guard);
        });
    });
    let report = run_until_running_then_stop(app).await;
    assert_eq!(
        rx.await,
        Ok(true),
        "db was told to stop while the worker's job still ran"
    );
    // Stopping lasted until the spawned job finished.
    assert_eq!(
        report.phase_duration(Phase::Stopping),
        Some(Duration::from_secs(3))
    );
    assert_eq!(report.status(), ExitStatus::Clean);
}

#[tokio::test(start_paused = true)]
async fn at_the_cancel_signal_a_dependency_still_outlives_its_dependents_cancelled_work() {
    // A job that runs past the shutdown timeout and, at the cancel signal,
    // takes a second to roll back through db.
    let (app, rx) = db_and_worker(|guard, cancelled| {
        tokio::spawn(async move {
            cancelled.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(guard);
        });
    });
    let report = run_until_running_then_stop(app).await;
    assert_eq!(
        rx.await,
        Ok(true),
        "db was told to stop while the worker's cancelled job still rolled back"
    );
    // The shutdown timeout passed with the job in flight; the rollback then
    // took a second of the hard timeout.
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    assert_eq!(
        report.phase_duration(Phase::Cancelling),
        Some(Duration::from_secs(1))
    );
    // At the shutdown timeout db was not holding anything up of its own.
    let db = report
        .work
        .held
        .iter()
        .find(|h| &*h.component == "db")
        .unwrap_or_else(|| panic!("db is named at the shutdown timeout: {report}"));
    assert_eq!(
        db.what,
        "not told to stop yet: it outlives worker, still running or with work in flight"
    );
}
