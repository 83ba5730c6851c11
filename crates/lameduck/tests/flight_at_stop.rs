//! The flight record's inventory at Stopping and the report's count of the
//! work in flight at stop are one list, counted once: work that starts or
//! ends as Stopping begins is in both or in neither.
#![cfg(feature = "flight")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lameduck::flight::FlightRecord;
use lameduck::{App, Budget, Component};

/// A bound on the churn, never reached when the test passes.
const BOUND: Duration = Duration::from_secs(20);

/// Work that begins and ends without pause on its own thread, from before
/// the shutdown until the component is told to stop: the two counts of
/// the old code, taken a moment apart, told it differently.
fn churn(
    tracker: lameduck::Tracker,
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let began = Instant::now();
        running.store(true, Ordering::Release);
        let mut n = 0u64;
        // Bounded in count and in time.
        let mut live = Vec::with_capacity(64);
        while !stop.load(Ordering::Relaxed) && n < 50_000_000 && began.elapsed() < BOUND {
            // 0 to 63 pieces in flight, one more or all gone at each step.
            if live.len() == 63 {
                live.clear();
            }
            live.push(tracker.track("churn"));
            n += 1;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_inventory_at_stopping_is_the_work_the_report_counts_in_flight_at_stop() {
    let dir = std::env::temp_dir().join(format!("lameduck-at-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for round in 0..10 {
        let path = dir.join(format!("flight-{round}.json"));
        let worker = Component::new("worker", |ctx| async move {
            let tracker = ctx.tracker().clone();
            // Two that last through Stopping, so the lists are not empty.
            let held = [tracker.track("held one"), tracker.track("held two")];
            let (running, stop) = (
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
            );
            let churning = churn(tracker, running.clone(), stop.clone());
            // The shutdown comes while the churn runs. Bounded: the thread
            // starts, or the wait gives up and the round proves less.
            let began = Instant::now();
            while !running.load(Ordering::Acquire) && began.elapsed() < BOUND {
                tokio::task::yield_now().await;
            }
            ctx.ready();
            ctx.app().shutdown("test");
            ctx.on_stopping().await;
            stop.store(true, Ordering::Relaxed);
            tokio::task::spawn_blocking(move || churning.join().unwrap())
                .await
                .unwrap();
            drop(held);
            Ok(())
        });
        let app = App::builder("test")
            .budget(Budget::new(Duration::from_secs(10)).drain_delay(Duration::ZERO))
            .handle_signals(false)
            .exit_watchdog(false)
            .flight_record(&path)
            .component(worker)
            .build()
            .expect("valid app");
        let report = app.await;
        let record = FlightRecord::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let listed = record
            .inventories
            .iter()
            .find(|i| i.at == "stopping")
            .expect("an inventory at stopping")
            .work
            .len() as u64;
        let counted = record
            .work
            .as_ref()
            .expect("the settled work")
            .in_flight_at_stop;
        assert_eq!(listed, counted, "round {round}: the record's two counts");
        assert_eq!(
            counted as usize, report.work.in_flight_at_stop,
            "round {round}: the record and the report"
        );
        assert!(counted >= 2, "round {round}: the held work is in the list");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
