//! Restart policies, backoff, intensity and strategies. Virtual time.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lameduck::{
    App, Budget, Component, Ending, ExitStatus, Phase, Restart, RestartPolicy, ShutdownReason,
    Strategy,
};

fn budget() -> Budget {
    Budget::new(Duration::from_secs(30)).drain_delay(Duration::from_millis(100))
}

fn policy(kind: Restart) -> RestartPolicy {
    RestartPolicy::new(kind)
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .jitter(0.0)
        .intensity(3, Duration::from_secs(60))
}

#[tokio::test(start_paused = true)]
async fn a_panicking_component_is_restarted_then_escalates_past_the_intensity_limit() {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let app = App::builder("panics")
        .budget(budget())
        .handle_signals(false)
        .component(
            Component::new("flaky", move |ctx| {
                let runs = counter.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    ctx.ready();
                    panic!("boom {}", ctx.attempt());
                }
            })
            .restart(policy(Restart::Transient)),
        )
        .build()
        .unwrap();
    let report = app.await;
    // The first run and three restarts; the fourth failure escalates.
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!(report.status(), ExitStatus::ComponentFailed);
    assert_eq!(report.status().code(), 1);
    let flaky = report.component("flaky").unwrap();
    assert_eq!(flaky.restarts, 3);
    match &flaky.ended {
        Ending::Failed(why) => assert!(why.contains("panicked: boom 3"), "{why}"),
        other => panic!("{other:?}"),
    }
    match report.reason {
        Some(ShutdownReason::ComponentFailed { component, error }) => {
            assert_eq!(&*component, "flaky");
            assert!(error.contains("restarted 3 times within 60s"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn restarts_wait_for_an_exponential_backoff() {
    let starts = Arc::new(Mutex::new(Vec::new()));
    let log = starts.clone();
    let t0 = tokio::time::Instant::now();
    let app = App::builder("backoff")
        .budget(budget())
        .handle_signals(false)
        .component(
            Component::new("flaky", move |_ctx| {
                log.lock().unwrap().push(t0.elapsed());
                async { Err("no database".into()) }
            })
            .restart(policy(Restart::Permanent)),
        )
        .build()
        .unwrap();
    app.await;
    let starts = starts.lock().unwrap().clone();
    let gaps: Vec<u128> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    assert_eq!(gaps, [100, 200, 400]);
}

#[tokio::test(start_paused = true)]
async fn transient_components_that_return_are_not_restarted_but_permanent_ones_are() {
    let transient_runs = Arc::new(AtomicU32::new(0));
    let permanent_runs = Arc::new(AtomicU32::new(0));
    let (t, p) = (transient_runs.clone(), permanent_runs.clone());
    let app = App::builder("kinds")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("once", move |ctx| {
            t.fetch_add(1, Ordering::SeqCst);
            async move {
                ctx.ready();
                Ok(())
            }
        }))
        .component(
            Component::new("again", move |ctx| {
                let n = p.fetch_add(1, Ordering::SeqCst);
                async move {
                    ctx.ready();
                    if n < 2 {
                        return Ok(());
                    }
                    ctx.app().shutdown("enough");
                    ctx.on_stopping().await;
                    Ok(())
                }
            })
            .restart(policy(Restart::Permanent)),
        )
        .build()
        .unwrap();
    let report = app.await;
    assert_eq!(transient_runs.load(Ordering::SeqCst), 1);
    assert_eq!(permanent_runs.load(Ordering::SeqCst), 3);
    assert_eq!(report.status(), ExitStatus::Clean);
}

#[tokio::test(start_paused = true)]
async fn a_temporary_component_failure_is_reported_and_the_service_goes_on() {
    let app = App::builder("temp")
        .budget(budget())
        .handle_signals(false)
        .component(
            Component::new("probe", |_ctx| async { Err("unreachable".into()) })
                .restart(RestartPolicy::temporary()),
        )
        .component(Component::new("main", |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("done");
    let report = run.await.unwrap();
    assert_eq!(
        report.component("probe").unwrap().ended,
        Ending::Failed("unreachable".into())
    );
    assert_eq!(report.component("probe").unwrap().restarts, 0);
    assert_eq!(report.status(), ExitStatus::Clean);
}

#[tokio::test(start_paused = true)]
async fn rest_for_one_restarts_the_dependents_of_a_failed_component() {
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l1, l2) = (log.clone(), log.clone());
    let app = App::builder("rest")
        .budget(budget())
        .handle_signals(false)
        .strategy(Strategy::RestForOne)
        .component(
            Component::new("db", move |ctx| {
                let log = l1.clone();
                async move {
                    log.lock().unwrap().push(format!("db {}", ctx.attempt()));
                    ctx.ready();
                    if ctx.attempt() == 0 {
                        // Let the dependent start, then fail.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        return Err("connection lost".into());
                    }
                    ctx.on_stopping().await;
                    Ok(())
                }
            })
            .restart(policy(Restart::Permanent)),
        )
        .component(
            Component::new("http", move |ctx| {
                let log = l2.clone();
                async move {
                    log.lock().unwrap().push(format!("http {}", ctx.attempt()));
                    ctx.ready();
                    ctx.on_stopping().await;
                    log.lock()
                        .unwrap()
                        .push(format!("http {} stopped", ctx.attempt()));
                    if ctx.attempt() == 1 {
                        ctx.app().shutdown("test over");
                    }
                    Ok(())
                }
            })
            .depends_on("db"),
        )
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    // Wait for the second http run, then stop.
    loop {
        if log.lock().unwrap().iter().any(|l| l == "http 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown("test over");
    let report = run.await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            "db 0",
            "http 0",
            "http 0 stopped",
            "db 1",
            "http 1",
            "http 1 stopped"
        ]
    );
    assert_eq!(report.component("http").unwrap().restarts, 1);
    assert_eq!(report.component("db").unwrap().restarts, 1);
    assert_eq!(report.status(), ExitStatus::Clean);
}

#[tokio::test(start_paused = true)]
async fn one_for_one_leaves_the_dependents_running() {
    let http_runs = Arc::new(AtomicU32::new(0));
    let runs = http_runs.clone();
    let app = App::builder("one")
        .budget(budget())
        .handle_signals(false)
        .component(
            Component::new("db", |ctx| async move {
                ctx.ready();
                if ctx.attempt() == 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Err("connection lost".into());
                }
                ctx.app().shutdown("db came back");
                ctx.on_stopping().await;
                Ok(())
            })
            .restart(policy(Restart::Permanent)),
        )
        .component(
            Component::new("http", move |ctx| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move {
                    ctx.ready();
                    ctx.on_stopping().await;
                    Ok(())
                }
            })
            .depends_on("db"),
        )
        .build()
        .unwrap();
    let report = app.await;
    assert_eq!(http_runs.load(Ordering::SeqCst), 1);
    assert_eq!(report.component("db").unwrap().restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_dependency_that_will_not_restart_fails_the_app() {
    let app = App::builder("deps")
        .budget(budget())
        .handle_signals(false)
        .component(
            Component::new("db", |_ctx| async { Err("bad password".into()) })
                .restart(RestartPolicy::temporary()),
        )
        .component(
            Component::new("http", |ctx| async move {
                ctx.ready();
                ctx.on_stopping().await;
                Ok(())
            })
            .depends_on("db"),
        )
        .build()
        .unwrap();
    let report = app.await;
    assert_eq!(report.status(), ExitStatus::ComponentFailed);
    assert_eq!(
        report.component("http").unwrap().ended,
        Ending::NeverStarted
    );
    match report.reason {
        Some(ShutdownReason::ComponentFailed { component, error }) => {
            assert_eq!(&*component, "http");
            assert!(error.contains("dependency db failed"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_function_that_panics_before_its_future_is_a_component_failure() {
    let app = App::builder("eager")
        .budget(budget())
        .handle_signals(false)
        .component(
            Component::new(
                "eager",
                |_ctx| -> std::future::Ready<Result<(), lameduck::BoxError>> {
                    panic!("config missing")
                },
            )
            .restart(policy(Restart::Transient).intensity(1, Duration::from_secs(60))),
        )
        .build()
        .unwrap();
    let report = app.await;
    assert_eq!(report.status(), ExitStatus::ComponentFailed);
    assert_eq!(report.component("eager").unwrap().restarts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_component_that_ended_for_good_does_not_hold_readiness_back() {
    let app = App::builder("ended")
        .budget(budget())
        .handle_signals(false)
        .component(
            Component::new("probe", |_ctx| async { Err("gone".into()) })
                .restart(RestartPolicy::temporary()),
        )
        .component(Component::new("main", |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    // Running is reached only once the probe's failure was handled.
    handle.reached(Phase::Running).await;
    let status = handle.health().readiness();
    assert!(status.ok, "{status}");
    handle.shutdown("done");
    run.await.unwrap();
}
