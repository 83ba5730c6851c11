//! The adaptive drain: it ends once the traffic has stopped, never before
//! `drain_min`, never after `drain_max`. Virtual time; the traffic comes
//! from a source the test drives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lameduck::{App, Budget, Component, DrainEnd, DrainReport, Phase, TRAFFIC_TICK, TrafficCounts};
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Timers fire on whole milliseconds.
const TIMER: Duration = Duration::from_millis(1);

/// A budget of 60 s with the drain window given.
fn window(min: Duration, max: Duration, quiet: Duration) -> Budget {
    Budget::new(Duration::from_secs(60))
        .drain_min(min)
        .drain_max(max)
        .drain_quiet(quiet)
}

/// Traffic the test makes: one arrival every `every`, from 25 ms after
/// the start (between the sampler's ticks), until a future completes; the
/// last arrival's time kept for the test to read.
struct Traffic {
    arrivals: Arc<AtomicU64>,
    last: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Traffic {
    fn new() -> Self {
        Self {
            arrivals: Arc::new(AtomicU64::new(0)),
            last: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Arrivals every `every` until `stop` completes.
    fn drive(&self, every: Duration, stop: impl std::future::Future<Output = ()> + Send + 'static) {
        let arrivals = self.arrivals.clone();
        let last = self.last.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(25)).await;
            let mut tick = tokio::time::interval(every);
            let mut stop = std::pin::pin!(stop);
            loop {
                tokio::select! {
                    biased;
                    () = &mut stop => return,
                    _ = tick.tick() => {
                        arrivals.fetch_add(1, Ordering::Relaxed);
                        *last.lock().unwrap() = Some(Instant::now());
                    }
                }
            }
        });
    }

    fn last(&self) -> Instant {
        self.last.lock().unwrap().expect("some traffic arrived")
    }
}

/// Runs an app whose traffic is `traffic`'s; shuts it down after
/// `running`; gives the drain's report and when the shutdown began.
async fn run(budget: Budget, traffic: &Traffic, running: Duration) -> (DrainReport, Instant) {
    let app = App::builder("svc")
        .budget(budget)
        .handle_signals(false)
        .exit_watchdog(false)
        .component(Component::new("http", |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let arrivals = traffic.arrivals.clone();
    handle.traffic_source("http", move || {
        Some(TrafficCounts::new(arrivals.load(Ordering::Relaxed)))
    });
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    tokio::time::sleep(running).await;
    let signal = Instant::now();
    handle.shutdown("test");
    let report = run.await.unwrap();
    assert!(report.status().is_clean(), "{report}");
    (report.drain.expect("the drain ended"), signal)
}

#[tokio::test(start_paused = true)]
async fn traffic_that_stops_ends_the_drain_at_drain_quiet_after_the_last_arrival() {
    let traffic = Traffic::new();
    // 20 arrivals a second; the shutdown 3 s in; the traffic goes on 1.5 s
    // into the drain.
    traffic.drive(ms(50), tokio::time::sleep(ms(4_500)));
    let budget = window(Duration::ZERO, Duration::from_secs(20), ms(500));
    let (drain, signal) = run(budget, &traffic, ms(3_000)).await;
    let quiet = signal + drain.lasted - traffic.last();
    assert!(drain.ended.is_quiet(), "{drain}");
    assert_eq!(drain.quiet_needed, Some(ms(500)), "{drain}");
    // Seen at the next sample, ended at the sample that makes 500 ms.
    assert!(
        quiet >= ms(500) && quiet <= ms(500) + TRAFFIC_TICK + TIMER,
        "ended {quiet:?} after the last arrival: {drain}"
    );
    assert!(drain.arrivals >= 25, "{drain}");
}

#[tokio::test(start_paused = true)]
async fn a_drain_never_ends_before_drain_min_however_quiet() {
    let traffic = Traffic::new();
    // Traffic for 3 s, then nothing from 2 s before the signal.
    traffic.drive(ms(50), tokio::time::sleep(ms(3_000)));
    let budget = window(Duration::from_secs(2), Duration::from_secs(20), ms(500));
    let (drain, _) = run(budget, &traffic, ms(5_000)).await;
    assert!(drain.ended.is_quiet(), "{drain}");
    assert!(
        drain.lasted >= Duration::from_secs(2) && drain.lasted <= Duration::from_secs(2) + TIMER,
        "{drain}"
    );
}

#[tokio::test(start_paused = true)]
async fn traffic_that_never_stops_ends_the_drain_at_drain_max() {
    let traffic = Traffic::new();
    traffic.drive(ms(50), std::future::pending());
    let budget = window(Duration::ZERO, Duration::from_secs(7), ms(500));
    let (drain, _) = run(budget, &traffic, ms(3_000)).await;
    assert_eq!(drain.ended, DrainEnd::MaxReached, "{drain}");
    assert!(
        drain.lasted >= Duration::from_secs(7) && drain.lasted <= Duration::from_secs(7) + TIMER,
        "{drain}"
    );
}

#[tokio::test(start_paused = true)]
async fn at_low_traffic_the_quiet_needed_grows_with_the_gaps_before_the_signal() {
    let traffic = Traffic::new();
    // One arrival every 400 ms, stopping with the signal: a 500 ms pause
    // proves nothing; four gaps' worth does.
    traffic.drive(ms(400), tokio::time::sleep(ms(6_000)));
    let budget = window(Duration::ZERO, Duration::from_secs(20), ms(500));
    let (drain, signal) = run(budget, &traffic, ms(6_000)).await;
    assert!(drain.ended.is_quiet(), "{drain}");
    assert_eq!(drain.quiet_needed, Some(ms(1_600)), "{drain}");
    let quiet = signal + drain.lasted - traffic.last();
    assert!(
        quiet >= ms(1_600) && quiet <= ms(1_600) + TRAFFIC_TICK + TIMER,
        "ended {quiet:?} after the last arrival: {drain}"
    );
}

#[tokio::test(start_paused = true)]
async fn too_little_traffic_before_the_signal_drains_to_drain_max() {
    let traffic = Traffic::new();
    // Three arrivals, long before the signal's look-back ends: they say
    // nothing about whether the balancers are still sending.
    traffic.drive(ms(100), tokio::time::sleep(ms(300)));
    let budget = window(Duration::ZERO, Duration::from_secs(5), ms(500));
    let (drain, _) = run(budget, &traffic, ms(2_000)).await;
    assert_eq!(drain.ended, DrainEnd::MaxReached, "{drain}");
    assert_eq!(drain.quiet_needed, None, "{drain}");
}

#[tokio::test(start_paused = true)]
async fn a_fixed_drain_lasts_its_delay_whatever_the_traffic() {
    let traffic = Traffic::new();
    traffic.drive(ms(50), tokio::time::sleep(ms(3_000)));
    let budget = Budget::new(Duration::from_secs(60)).drain_delay(Duration::from_secs(4));
    let (drain, _) = run(budget, &traffic, ms(5_000)).await;
    assert_eq!(drain.ended, DrainEnd::DelayOver, "{drain}");
    assert!(
        drain.lasted >= Duration::from_secs(4) && drain.lasted <= Duration::from_secs(4) + TIMER,
        "{drain}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_app_with_no_traffic_source_drains_to_drain_max() {
    // Nothing counts traffic: a quiet that cannot be seen proves nothing.
    let app = App::builder("worker")
        .budget(window(Duration::ZERO, Duration::from_secs(3), ms(500)))
        .handle_signals(false)
        .exit_watchdog(false)
        .component(Component::new("jobs", |ctx| async move {
            ctx.ready();
            ctx.on_stopping().await;
            Ok(())
        }))
        .build()
        .unwrap();
    let handle = app.handle();
    let run = tokio::spawn(app.run());
    handle.reached(Phase::Running).await;
    handle.shutdown("test");
    let report = run.await.unwrap();
    let drain = report.drain.clone().unwrap();
    assert_eq!(drain.ended, DrainEnd::MaxReached, "{report}");
    assert!(
        report.to_string().contains("drain: drain_max reached"),
        "{report}"
    );
}
