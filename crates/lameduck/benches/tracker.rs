//! What tracking in-flight work costs, next to the alternatives.
//!
//! Run with `cargo bench -p lameduck --bench tracker`. Divan prints its table
//! first; a summary then prints the figures the tracker is held to, measured
//! in the same process:
//!
//! - `track(&'static str)` + drop, against a bare `AtomicUsize`
//!   `fetch_add` + `fetch_sub` pair (target: at most 2×) and against
//!   `TaskTracker::token()` + drop (target: no slower);
//! - cancellation fan-out: 100k tasks each holding a guard and awaiting a
//!   `CancellationToken`; the time from `cancel()` until `wait_idle()`
//!   resolves, on a 2-worker runtime (target: 50 ms). Most of it is tokio
//!   waking and finishing 100k tasks: the `fan_out_100k_task_tracker` row
//!   drains the same tasks through a `TaskTracker`, for scale;
//! - memory per tracked task: heap bytes for 100k live guards / 100k, plus
//!   `size_of::<WorkGuard>()` (target: 256 bytes).
//!
//! The global allocator counts bytes (stats_alloc), which adds two atomic
//! adds to every allocation. None of the per-op loops allocate; the fan-out
//! pays them on task teardown, and an A/B run against the plain system
//! allocator showed no difference beyond run-to-run noise.
//!
//! Timings on a shared 2-core machine swing with whatever else runs: compare
//! rows of one run, not runs.

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use divan::Bencher;
use lameduck::{Tracker, WorkGuard};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const FAN_OUT: usize = 100_000;

fn main() {
    // The summary needs a fresh process: chunks freed by one tracker are
    // reused by the next, so memory must be measured before anything else
    // has tracked work. `cargo bench` passes `--bench`; a test run does not,
    // and then only divan's quick single pass runs.
    let summary = std::env::args()
        .any(|a| a == "--bench")
        .then(Summary::measure);
    divan::main();
    if let Some(summary) = summary {
        summary.print();
    }
}

// ---- divan benches --------------------------------------------------------

#[divan::bench]
fn atomic_pair(bencher: Bencher<'_, '_>) {
    let counter = AtomicUsize::new(0);
    bencher.bench_local(|| atomic_pair_op(&counter));
}

#[divan::bench]
fn task_tracker_token(bencher: Bencher<'_, '_>) {
    let tracker = TaskTracker::new();
    bencher.bench_local(|| drop(black_box(tracker.token())));
}

#[divan::bench]
fn track_static(bencher: Bencher<'_, '_>) {
    let tracker = Tracker::new("bench");
    // Warm up: the first guard allocates the tracker's first chunk and
    // interns the label, which would throw off divan's sample sizing.
    drop(tracker.track("GET /work"));
    bencher.bench_local(|| drop(black_box(tracker.track("GET /work"))));
}

#[divan::bench]
fn track_dynamic(bencher: Bencher<'_, '_>) {
    let tracker = Tracker::new("bench");
    drop(tracker.track_with("GET /work?ms=5"));
    bencher.bench_local(|| drop(black_box(tracker.track_with("GET /work?ms=5"))));
}

#[divan::bench]
fn snapshot_of_1000(bencher: Bencher<'_, '_>) {
    let tracker = Tracker::new("bench");
    let _guards: Vec<_> = (0..1000).map(|_| tracker.track("GET /work")).collect();
    bencher.bench_local(|| black_box(tracker.snapshot()));
}

#[divan::bench(sample_count = 10, sample_size = 1)]
fn fan_out_100k_cancel_to_idle(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    bencher
        .with_inputs(|| FanOut::start(&rt, FAN_OUT))
        .bench_local_values(|fan_out| fan_out.cancel_and_wait(&rt));
}

/// The same fan-out drained through a `TaskTracker`, for scale: most of the
/// time goes to waking and finishing 100k tasks, whatever tracks them.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn fan_out_100k_task_tracker(bencher: Bencher<'_, '_>) {
    let rt = runtime();
    bencher
        .with_inputs(|| TaskFanOut::start(&rt, FAN_OUT))
        .bench_local_values(|fan_out| fan_out.cancel_and_wait(&rt));
}

// ---- shared pieces --------------------------------------------------------

#[inline]
fn atomic_pair_op(counter: &AtomicUsize) {
    // The orderings a plain in-flight counter would use; on x86-64 every
    // locked RMW costs the same whatever the ordering.
    black_box(counter).fetch_add(1, Ordering::Relaxed);
    black_box(counter).fetch_sub(1, Ordering::Release);
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime")
}

/// Counts tasks that reached their await point.
#[derive(Clone)]
struct Parked {
    count: Arc<AtomicUsize>,
    all: Arc<Notify>,
    want: usize,
}

impl Parked {
    fn new(want: usize) -> Self {
        Self {
            count: Arc::new(AtomicUsize::new(0)),
            all: Arc::new(Notify::new()),
            want,
        }
    }

    fn arrive(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.want {
            self.all.notify_one();
        }
    }

    async fn all(&self) {
        self.all.notified().await;
    }
}

/// 100k spawned tasks, each holding a guard and awaiting the token.
struct FanOut {
    token: CancellationToken,
    tracker: Tracker,
}

impl FanOut {
    fn start(rt: &Runtime, n: usize) -> Self {
        let (token, tracker) = (CancellationToken::new(), Tracker::new("fan-out"));
        let parked = Parked::new(n);
        for _ in 0..n {
            let (token, tracker, parked) = (token.clone(), tracker.clone(), parked.clone());
            rt.spawn(async move {
                let _guard = tracker.track("task");
                drop(tracker);
                parked.arrive();
                token.cancelled().await;
            });
        }
        rt.block_on(parked.all());
        assert_eq!(tracker.len(), n);
        Self { token, tracker }
    }

    /// Cancels from a task on the runtime, as a service's shutdown code
    /// would: wake-ups then go to the worker's own run queue instead of the
    /// runtime's shared injection queue.
    fn cancel_and_wait(self, rt: &Runtime) -> Duration {
        let timed = rt.spawn(async move {
            let start = Instant::now();
            self.token.cancel();
            self.tracker.wait_idle().await;
            start.elapsed()
        });
        rt.block_on(timed).expect("fan-out task")
    }
}

/// The same tasks, spawned on a `TaskTracker` instead of holding guards.
struct TaskFanOut {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl TaskFanOut {
    fn start(rt: &Runtime, n: usize) -> Self {
        let (token, tasks) = (CancellationToken::new(), TaskTracker::new());
        let parked = Parked::new(n);
        for _ in 0..n {
            let (token, parked) = (token.clone(), parked.clone());
            tasks.spawn_on(
                async move {
                    parked.arrive();
                    token.cancelled().await;
                },
                rt.handle(),
            );
        }
        tasks.close();
        rt.block_on(parked.all());
        Self { token, tasks }
    }

    /// As [`FanOut::cancel_and_wait`].
    fn cancel_and_wait(self, rt: &Runtime) -> Duration {
        let timed = rt.spawn(async move {
            let start = Instant::now();
            self.token.cancel();
            self.tasks.wait().await;
            start.elapsed()
        });
        rt.block_on(timed).expect("fan-out task")
    }
}

// ---- the summary ----------------------------------------------------------

struct Summary {
    /// `LAMEDUCK_BENCH_SMOKE` (CI's `scripts/bench all --smoke`): shorter
    /// rounds, which check that the summary runs but cannot measure the
    /// timings it is held to, so those are not judged.
    smoke: bool,
    atomic_ns: f64,
    task_tracker_ns: f64,
    guard_ns: f64,
    fan_out_ms: Vec<f64>,
    task_tracker_fan_out_ms: Vec<f64>,
    heap_bytes_per_task: f64,
}

impl Summary {
    fn measure() -> Self {
        let smoke = std::env::var_os("LAMEDUCK_BENCH_SMOKE").is_some();
        let heap_bytes_per_task = heap_bytes_per_task();
        let (atomic_ns, task_tracker_ns, guard_ns) = per_op_ns(smoke);
        let rt = runtime();
        // Interleaved, so both see the same machine.
        let (mut fan_out_ms, mut task_tracker_fan_out_ms) = (Vec::new(), Vec::new());
        for _ in 0..if smoke { 1 } else { 7 } {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            fan_out_ms.push(ms(FanOut::start(&rt, FAN_OUT).cancel_and_wait(&rt)));
            task_tracker_fan_out_ms.push(ms(TaskFanOut::start(&rt, FAN_OUT).cancel_and_wait(&rt)));
        }
        fan_out_ms.sort_by(f64::total_cmp);
        task_tracker_fan_out_ms.sort_by(f64::total_cmp);
        Self {
            smoke,
            atomic_ns,
            task_tracker_ns,
            guard_ns,
            fan_out_ms,
            task_tracker_fan_out_ms,
            heap_bytes_per_task,
        }
    }

    fn print(&self) {
        let guard_size = size_of::<WorkGuard>();
        let per_task = self.heap_bytes_per_task + guard_size as f64;
        let ms = &self.fan_out_ms;
        let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
        // Timings from a smoke run's short rounds say nothing either way.
        let timing = |ok: bool| {
            if self.smoke {
                "not measured in a smoke run"
            } else {
                verdict(ok)
            }
        };
        let vs_atomic = self.guard_ns / self.atomic_ns;
        let vs_task_tracker = self.guard_ns / self.task_tracker_ns;
        let median = ms[ms.len() / 2];
        eprintln!();
        eprintln!("lameduck tracker summary (one process, medians of interleaved rounds)");
        eprintln!(
            "  atomic fetch_add + fetch_sub pair  {:7.2} ns",
            self.atomic_ns
        );
        eprintln!(
            "  TaskTracker::token() + drop        {:7.2} ns",
            self.task_tracker_ns
        );
        eprintln!(
            "  Tracker::track(&'static) + drop    {:7.2} ns",
            self.guard_ns
        );
        eprintln!(
            "  guard / atomic pair                {vs_atomic:7.2} x   (target <= 2.00: {})",
            timing(vs_atomic <= 2.0)
        );
        eprintln!(
            "  guard / TaskTracker token          {vs_task_tracker:7.2} x   (target <= 1.00: {})",
            timing(vs_task_tracker <= 1.0)
        );
        eprintln!(
            "  fan-out {FAN_OUT} cancel -> idle     {median:7.2} ms  median of {}, min {:.2}, max {:.2} (target <= 50: {})",
            ms.len(),
            ms[0],
            ms[ms.len() - 1],
            timing(median <= 50.0)
        );
        let tt = &self.task_tracker_fan_out_ms;
        eprintln!(
            "    same tasks via TaskTracker::wait {:7.2} ms  median of {}, min {:.2}, max {:.2} (for scale)",
            tt[tt.len() / 2],
            tt.len(),
            tt[0],
            tt[tt.len() - 1],
        );
        eprintln!(
            "  memory per tracked task            {per_task:7.1} B   {:.1} heap + {guard_size} guard (target <= 256: {})",
            self.heap_bytes_per_task,
            verdict(per_task <= 256.0)
        );
    }
}

/// Heap bytes allocated to hold `FAN_OUT` live guards, per guard. The `Vec`
/// that holds them is allocated first and not counted; the guard's own size
/// is added by the caller.
fn heap_bytes_per_task() -> f64 {
    let mut guards = Vec::with_capacity(FAN_OUT);
    let region = Region::new(GLOBAL);
    let tracker = Tracker::new("memory");
    guards.extend((0..FAN_OUT).map(|_| tracker.track("GET /work")));
    let bytes = region.change().bytes_allocated;
    assert_eq!(tracker.len(), FAN_OUT);
    drop(guards);
    bytes as f64 / FAN_OUT as f64
}

/// ns per op of the three fast paths, as medians over interleaved rounds so
/// that frequency changes and noise hit all three alike.
fn per_op_ns(smoke: bool) -> (f64, f64, f64) {
    let (iters, rounds): (u32, usize) = if smoke { (10_000, 3) } else { (1_000_000, 21) };
    let counter = AtomicUsize::new(0);
    let task_tracker = TaskTracker::new();
    let tracker = Tracker::new("bench");
    let (mut a, mut t, mut g) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(time(iters, || atomic_pair_op(&counter)));
        t.push(time(iters, || drop(black_box(task_tracker.token()))));
        g.push(time(iters, || drop(black_box(tracker.track("GET /work")))));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(a), median(t), median(g))
}

/// ns per call of `f`; generic so that `f` is inlined like divan's closures.
fn time(iters: u32, f: impl Fn()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / f64::from(iters)
}
