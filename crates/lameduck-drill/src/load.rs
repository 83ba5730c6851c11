//! The load generators: closed-loop workers or an open-loop schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::Client;
use crate::config::Load;
use crate::outcome::{Outcome, RawOutcome};
use crate::record::{Clock, Ending, RecordGuard, RecordSink};

/// After a failed connect, a closed-loop worker waits this long before its
/// next request, as a real client would, so that a closed listener does not
/// turn the drill into a busy loop that starves the server it measures of
/// CPU. (The listener probe still times the close to its own interval.)
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// What every request of one drill shares.
#[derive(Debug)]
pub(crate) struct LoadContext {
    pub(crate) client: Client,
    pub(crate) sink: Arc<RecordSink>,
    pub(crate) clock: Clock,
    /// No request is started at or after this instant.
    pub(crate) end: Instant,
    pub(crate) timeout: Duration,
}

/// Runs the load until `end`, then waits for every request in flight (each
/// bounded by the request timeout). Returns when every request sent has its
/// record.
pub(crate) async fn run(ctx: Arc<LoadContext>, load: Load) {
    match load {
        Load::Concurrency(workers) => {
            let mut set = JoinSet::new();
            for worker in 0..workers {
                set.spawn(closed_loop(
                    Arc::clone(&ctx),
                    u64::from(worker),
                    u64::from(workers),
                ));
            }
            while set.join_next().await.is_some() {}
        }
        Load::Rate {
            per_second,
            max_in_flight,
        } => open_loop(Arc::clone(&ctx), per_second, max_in_flight as usize).await,
    }
    ctx.client.close();
}

async fn closed_loop(ctx: Arc<LoadContext>, worker: u64, workers: u64) {
    // Worker w sends requests w, w + n, w + 2n, …: the sequence number picks
    // fresh or keep-alive in mixed mode, so each worker alternates evenly.
    let mut seq = worker;
    while Instant::now() < ctx.end {
        let guard = ctx.sink.begin(ctx.clock, Instant::now());
        let outcome = one(&ctx, seq, guard, None).await;
        if matches!(outcome, Outcome::Refused | Outcome::Error) {
            tokio::time::sleep(CONNECT_BACKOFF).await;
        }
        seq += workers;
    }
}

async fn open_loop(ctx: Arc<LoadContext>, per_second: u32, max_in_flight: usize) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut set = JoinSet::new();
    let t0 = ctx.clock.t0();
    for seq in 0u64.. {
        // Computed from t0 each time, so rounding never drifts the schedule.
        let due =
            t0 + Duration::from_nanos(seq.saturating_mul(1_000_000_000) / u64::from(per_second));
        if due >= ctx.end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let guard = ctx.sink.begin(ctx.clock, due);
        let (ctx, slots) = (Arc::clone(&ctx), Arc::clone(&slots));
        set.spawn(async move {
            one(&ctx, seq, guard, Some(&slots)).await;
        });
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
}

/// One request, bounded by the timeout counted from when it was due.
async fn one(
    ctx: &LoadContext,
    seq: u64,
    guard: RecordGuard,
    slots: Option<&Semaphore>,
) -> Outcome {
    let due = guard.due();
    let request = async {
        let _slot = match slots {
            Some(slots) => Some(
                slots
                    .acquire()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        ctx.client.send(seq).await
    };
    let ending = match tokio::time::timeout_at((due + ctx.timeout).into(), request).await {
        Ok(ending) => ending,
        Err(_) => Ending {
            start: due,
            raw: RawOutcome::Failed(Outcome::Timeout),
            flags: 0,
            detail: Some(format!(
                "no complete response within {}",
                humantime::format_duration(ctx.timeout)
            )),
        },
    };
    let outcome = ending.raw.resolve(false);
    guard.finish(ending);
    outcome
}
