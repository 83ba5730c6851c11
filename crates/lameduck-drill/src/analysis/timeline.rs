//! Requests per time bucket.

use super::{Facts, Observed, stats};
use crate::outcome::Outcome;
use crate::report::{Bucket, OutcomeCounts, Timeline};

/// Bucket widths to choose from, so that the axis has round numbers.
const WIDTHS_US: [u64; 14] = [
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
];
/// At most this many buckets (a chart's worth).
const MAX_BUCKETS: u64 = 150;

/// The narrowest round bucket width that spans `span_us` in at most
/// [`MAX_BUCKETS`] buckets.
pub(crate) fn bucket_width(span_us: u64) -> u64 {
    WIDTHS_US
        .iter()
        .copied()
        .find(|w| span_us.div_ceil(*w) <= MAX_BUCKETS)
        .unwrap_or(WIDTHS_US[WIDTHS_US.len() - 1])
}

/// Requests by the bucket they started in, from 0 to the end of the drill.
pub(crate) fn timeline(observed: &Observed, facts: &Facts) -> Timeline {
    let span = observed.end_us.max(observed.load_end_us).max(1);
    let width = bucket_width(span);
    let count = span.div_ceil(width) as usize;
    let mut outcomes = vec![OutcomeCounts::default(); count];
    let mut not_counted = vec![OutcomeCounts::default(); count];
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); count];
    for record in &observed.records {
        let index = ((record.start_us / width) as usize).min(count - 1);
        let outcome = facts.outcome(record);
        outcomes[index].add(outcome);
        if outcome == Outcome::Ok {
            latencies[index].push(record.latency_us);
        } else if !facts.counts(record) {
            not_counted[index].add(outcome);
        }
    }
    let buckets = outcomes
        .into_iter()
        .zip(not_counted)
        .zip(latencies)
        .enumerate()
        .map(|(i, ((outcomes, not_counted), latencies))| Bucket {
            start_us: i as u64 * width,
            outcomes,
            p99_us: stats(latencies).p99_us,
            not_counted,
        })
        .collect();
    Timeline {
        bucket_us: width,
        buckets,
    }
}
