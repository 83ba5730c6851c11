//! Two apps in one process, one after the other, both handling signals:
//! once the first has stopped, a SIGTERM is the running app's to take — the
//! first one's signal thread, which stays to end a process stuck after its
//! report, leaves it alone. Real signals, sent to this test process, so one
//! scenario in this binary (signals are process-global).

#![cfg(unix)]

use std::time::Duration;

use lameduck::{App, Budget, Component, ExitStatus, Phase, ShutdownReason, Signal};
use nix::sys::signal::{Signal as Sig, kill};
use nix::unistd::Pid;

fn app(name: &str) -> App {
    App::builder(name)
        .budget(Budget::new(Duration::from_secs(30)).drain_delay(Duration::from_millis(50)))
        .exit_watchdog(false)
        .component(Component::new("worker", |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_signal_after_one_app_stopped_goes_to_the_app_still_running() {
    let first = app("first");
    first.handle().shutdown("replaced");
    assert!(first.await.status().is_clean());

    let second = app("second");
    let handle = second.handle();
    let run = tokio::spawn(second.run());
    handle.reached(Phase::Running).await;
    kill(Pid::this(), Sig::SIGTERM).expect("signal this process");
    let report = run.await.unwrap();
    // Had the first app's thread taken it, this process would have exited
    // with 143 before getting here.
    assert_eq!(
        report.reason,
        Some(ShutdownReason::Signal(Signal::Terminate))
    );
    assert_eq!(report.status(), ExitStatus::Clean);
}
