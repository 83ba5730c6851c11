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
    App::builder("in-place")
        .budget(Budget::new(Duration::from_secs(30)).drain_delay(Duration::ZERO))
        .handle_signals(false)
        .exit_watchdog(false)
        .upgrade(upgrade)
        .component(Component::new("program", |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            Ok(())
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
