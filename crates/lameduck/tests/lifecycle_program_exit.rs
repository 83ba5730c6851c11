//! `Context::set_program_exit`: a component that supervises a program says
//! how it ended, and the report's status (so its log line, the flight
//! record and the exit code) gives the program's code when that run is the
//! component's last, by the severity rules of `ExitStatus`. Virtual time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lameduck::{
    App, Budget, Component, ExitStatus, Phase, ProgramExit, Report, Restart, RestartPolicy,
};

fn budget() -> Budget {
    Budget::new(Duration::from_secs(30))
        .drain_delay(Duration::from_secs(1))
        .shutdown_timeout(Duration::from_secs(10))
        .hard_timeout(Duration::from_secs(3))
}

fn policy(kind: Restart) -> RestartPolicy {
    RestartPolicy::new(kind)
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .jitter(0.0)
        .intensity(3, Duration::from_secs(60))
}

/// A component whose every run says `end` and returns at once (`Err`
/// when `fails`).
fn says(end: ProgramExit, fails: bool, kind: Restart) -> Component {
    Component::new("program", move |ctx| async move {
        ctx.ready();
        ctx.set_program_exit(end);
        if fails {
            Err("the program failed".into())
        } else {
            Ok(())
        }
    })
    .restart(policy(kind))
}

async fn run(component: Component) -> Report {
    App::builder("supervisor")
        .budget(budget())
        .handle_signals(false)
        .component(component)
        .build()
        .unwrap()
        .await
}

#[tokio::test(start_paused = true)]
async fn a_program_s_own_code_is_the_report_s_when_its_run_is_the_last() {
    let report = run(says(ProgramExit::Exited(3), false, Restart::Temporary)).await;
    assert_eq!(report.status(), ExitStatus::Program(ProgramExit::Exited(3)));
    assert_eq!(report.status().code(), 3);
    assert!(!report.status().is_clean());
    assert!(
        report
            .to_string()
            .ends_with("exit: program exited with 3 (3)"),
        "{report}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_that_is_restarted_has_said_nothing_for_the_exit_code() {
    let runs = Arc::new(AtomicU32::new(0));
    let counter = runs.clone();
    let component = Component::new("program", move |ctx| {
        let runs = counter.clone();
        async move {
            ctx.ready();
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                ctx.set_program_exit(ProgramExit::Exited(3));
                return Err("exit code 3".into());
            }
            Ok(())
        }
    })
    .restart(policy(Restart::Transient));
    let report = run(component).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(report.status(), ExitStatus::Clean, "{report}");
}

#[tokio::test(start_paused = true)]
async fn a_restart_policy_that_gives_up_keeps_the_program_s_last_code() {
    let report = run(says(ProgramExit::Killed(11), true, Restart::Permanent)).await;
    assert_eq!(report.status().code(), 139, "{report}");
    assert_eq!(
        report.status().to_string(),
        "program killed by signal 11 (139)"
    );
}

/// `--restart always` on a program that exits 0 each time: giving up is a
/// failure, which a 0 does not hide.
#[tokio::test(start_paused = true)]
async fn a_restart_policy_that_gives_up_on_clean_exits_is_a_component_failure() {
    let report = run(says(ProgramExit::Exited(0), false, Restart::Permanent)).await;
    assert_eq!(report.status(), ExitStatus::ComponentFailed, "{report}");
}

/// The program exits `end` at the stop signal; another component holds the
/// shutdown past its timeout.
async fn with_a_passed_deadline(end: ProgramExit) -> Report {
    let app = App::builder("supervisor")
        .budget(budget())
        .handle_signals(false)
        .component(Component::new("program", move |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            ctx.set_program_exit(end);
            Ok(())
        }))
        .component(Component::new("stubborn", |ctx| async move {
            ctx.ready();
            ctx.on_cancelled().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test");
    run.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_shows_over_a_program_s_0_but_not_over_its_failure() {
    let report = with_a_passed_deadline(ProgramExit::Exited(0)).await;
    assert_eq!(report.status(), ExitStatus::DeadlineExceeded, "{report}");
    let report = with_a_passed_deadline(ProgramExit::Exited(5)).await;
    assert_eq!(report.status().code(), 5, "{report}");
    assert!(!report.work.held.is_empty(), "{report}");
}
