//! In-place upgrades (`Upgrade::in_place`): the request, its checks and its
//! answers are an upgrade's, the replacement is the app's own function, and
//! the app goes on running.
#![cfg(all(unix, feature = "upgrade"))]

use std::sync::Arc;
use std::time::Duration;

use lameduck::upgrade::{Upgrade, UpgradeErrorKind};
use lameduck::{App, Budget, Component, Phase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

fn app(upgrade: Upgrade) -> App {
    app_holding(upgrade, None)
}

/// An app whose one component, told to stop, waits for `hold` (if any)
/// before it returns: the shutdown lasts until then.
fn app_holding(upgrade: Upgrade, hold: Option<Arc<Notify>>) -> App {
    app_holding_seen(upgrade, hold, Arc::default())
}

/// [`app_holding`], whose upgrades' failures and abandonments are named in
/// `seen`.
fn app_holding_seen(
    upgrade: Upgrade,
    hold: Option<Arc<Notify>>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
) -> App {
    App::builder("in-place")
        .budget(Budget::new(Duration::from_secs(30)).drain_delay(Duration::ZERO))
        .handle_signals(false)
        .exit_watchdog(false)
        .observer(move |event: &lameduck::observe::Event<'_>| {
            use lameduck::observe::Event;
            let name = match event {
                Event::UpgradeAbandoned { .. } => "upgrade abandoned",
                Event::UpgradeFailed { .. } => "upgrade failed",
                _ => return,
            };
            seen.lock().unwrap().push(name.to_string());
        })
        .upgrade(upgrade)
        .component(Component::new("program", move |ctx| {
            let hold = hold.clone();
            async move {
                ctx.ready();
                ctx.on_stopping().await;
                if let Some(hold) = hold {
                    hold.notified().await;
                }
                Ok(())
            }
        }))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_in_place_upgrade_answers_with_the_new_pid_and_the_app_runs_on() {
    let dir = std::env::temp_dir().join(format!("lameduck-in-place-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let control = dir.join("control.sock");
    let gate = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let (open, begun) = (gate.clone(), started.clone());
    let app = app(Upgrade::new().control_socket(&control).in_place(move || {
        let (open, begun) = (open.clone(), begun.clone());
        async move {
            begun.notify_one();
            open.notified().await;
            Ok(4242)
        }
    }));
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;

    let first = tokio::spawn({
        let handle = handle.clone();
        async move { handle.upgrade().await }
    });
    started.notified().await;
    // One at a time: a request while the first is under way is refused.
    let second = handle.upgrade().await.unwrap_err();
    assert_eq!(second.kind(), UpgradeErrorKind::Busy);
    gate.notify_one();
    let done = first.await.unwrap().unwrap();
    assert_eq!(done.new_pid, 4242);
    assert_eq!(
        handle.phase(),
        Phase::Running,
        "an in-place upgrade does not stop the app"
    );

    // The control socket takes the same path.
    let open = gate.clone();
    let ask = tokio::spawn(async move {
        let mut s = tokio::net::UnixStream::connect(&control).await.unwrap();
        s.write_all(b"upgrade\n").await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer
    });
    // Released once the request is in: the Notify keeps the permit.
    open.notify_one();
    assert_eq!(ask.await.unwrap(), "ok 4242\n");

    handle.shutdown("test over");
    let report = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    assert!(report.status().is_clean());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failed_in_place_upgrade_is_an_error_and_the_app_runs_on() {
    let app = app(Upgrade::new()
        .in_place(|| async { Err("the new instance exited: exit code 9".to_string()) }));
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    let err = handle.upgrade().await.unwrap_err();
    assert_eq!(err.kind(), UpgradeErrorKind::Exited);
    assert!(err.to_string().contains("exit code 9"), "{err}");
    assert_eq!(handle.phase(), Phase::Running);
    handle.shutdown("test over");
    run.await.unwrap();
}

/// An in-place upgrade that gives up as the shutdown begins is abandoned,
/// not failed: it was answered `Exited` and logged `upgrade in place
/// failed`, an error.
#[tokio::test]
async fn an_in_place_upgrade_given_up_by_the_shutdown_is_abandoned_not_failed() {
    let (gate, begun, done) = (
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    let (open, started) = (gate.clone(), begun.clone());
    let upgrade = Upgrade::new().in_place(move || {
        let (open, started) = (open.clone(), started.clone());
        async move {
            started.notify_one();
            open.notified().await;
            Err("lameduck began shutting down".to_string())
        }
    });
    // The shutdown lasts until the upgrade has been answered.
    let seen = Arc::default();
    let app = app_holding_seen(upgrade, Some(done.clone()), Arc::clone(&seen));
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    let upgrade = tokio::spawn({
        let handle = handle.clone();
        async move { handle.upgrade().await }
    });
    begun.notified().await;
    handle.shutdown("test over");
    handle.reached(Phase::Draining).await;
    gate.notify_one();
    let err = upgrade.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), UpgradeErrorKind::Abandoned, "{err}");
    done.notify_one();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap();
    // Observed as abandoned (the flight record's outcome, the metrics'
    // label), not as a failed upgrade.
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|e| e == "upgrade abandoned"), "{seen:?}");
    assert!(!seen.iter().any(|e| e == "upgrade failed"), "{seen:?}");
}
