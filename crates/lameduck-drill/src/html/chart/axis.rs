//! The time axis under the panels: ticks on whole steps (100 ms to 10 min,
//! at most about a dozen), labelled with the instant itself, negative
//! before the clock's zero.

use std::fmt::Write as _;

use super::{RIGHT, Scale, WIDTH};

/// Ticks and labels along `y`, from the scale's left edge over `span_us`;
/// labels are the instants themselves (negative before zero).
pub(crate) fn x_axis(svg: &mut String, scale: &Scale, y: f64, span_us: u64, caption: &str) {
    const STEPS_US: [u64; 12] = [
        100_000,
        200_000,
        500_000,
        1_000_000,
        2_000_000,
        5_000_000,
        10_000_000,
        30_000_000,
        60_000_000,
        120_000_000,
        300_000_000,
        600_000_000,
    ];
    let step = STEPS_US
        .iter()
        .copied()
        .find(|s| span_us / s <= 12)
        .unwrap_or(600_000_000);
    let step_i = i64::try_from(step).unwrap_or(i64::MAX);
    let end = scale
        .from_us
        .saturating_add(i64::try_from(span_us).unwrap_or(i64::MAX));
    // The first tick on a whole step at or after the left edge.
    let mut at = scale.from_us.div_euclid(step_i) * step_i;
    if at < scale.from_us {
        at += step_i;
    }
    while at <= end {
        let x = scale.at(at);
        let label = if step < 1_000_000 {
            format!("{:.1}s", at as f64 / 1e6)
        } else {
            format!("{}s", at / 1_000_000)
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{y}\" y2=\"{}\" stroke=\"#999\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            y + 5.0,
            y + 18.0
        );
        at += step_i;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{caption}</text>",
        WIDTH - RIGHT,
        y + 34.0
    );
}
