//! A second signal with `exit_on_force(false)`: `run()` returns `Forced`
//! and the process lives on. Real signals, sent to this test process, so
//! one scenario in this binary (signals are process-global).

#![cfg(unix)]

use std::time::Duration;

use lameduck::{App, Budget, Component, Ending, ExitStatus, Phase, SIGNAL_REPEAT_WINDOW, Signal};
use nix::sys::signal::{Signal as Sig, kill};
use nix::unistd::Pid;

fn sigterm() {
    kill(Pid::this(), Sig::SIGTERM).expect("signal this process");
}

#[tokio::test]
async fn with_exit_on_force_off_a_second_signal_returns_forced_and_the_process_lives_on() {
    let drain = Duration::from_millis(400);
    // Stopping begins a drain delay after the first signal: a signal sent
    // then is a second one, not a copy of the first.
    assert!(drain > SIGNAL_REPEAT_WINDOW);
    let app = App::builder("forced")
        .budget(Budget::new(Duration::from_secs(60)).drain_delay(drain))
        .exit_on_force(false)
        .exit_watchdog(false)
        .component(Component::new("stuck", |ctx| async move {
            ctx.ready();
            let _job = ctx.tracker().track("job that never ends");
            std::future::pending::<()>().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    sigterm();
    handle.reached(Phase::Stopping).await;
    sigterm();
    let report = run.await.unwrap();
    assert_eq!(report.status(), ExitStatus::Forced(Signal::Terminate));
    assert_eq!(report.status().code(), 143);
    assert_eq!(report.work.aborted.len(), 1, "{report}");
    // It ran until the forced exit aborted it: it did not "never start".
    assert_eq!(report.components[0].ended, Ending::Aborted, "{report}");
    assert_eq!(handle.phase(), Phase::Stopped);
}
