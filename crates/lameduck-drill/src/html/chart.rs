//! The timeline as inline SVG: requests/s stacked by outcome, failed
//! requests/s by class, p99 latency, with markers for the signal, the
//! readiness flip, the listener closing, the exit and the end of the load.
//! In a stop drill, the time after the listener closed is shaded and
//! labelled: the failures that start there (refused connects) are not held
//! against the server, and their bars are faded.

use std::fmt::Write as _;

mod axis;
mod markers;
mod server;

pub(super) use axis::x_axis;

pub(super) use server::flight_timeline;

use super::escape;
use crate::human;
use crate::outcome::Outcome;
use crate::report::{Bucket, Report};

pub(super) const WIDTH: f64 = 1000.0;
pub(super) const LEFT: f64 = 64.0;
pub(super) const RIGHT: f64 = 16.0;
const MARKER_TOP: f64 = 18.0;

/// One chart panel: where it sits and what it plots.
pub(super) struct Panel {
    top: f64,
    height: f64,
    title: &'static str,
}

const RATE: Panel = Panel {
    top: 70.0,
    height: 200.0,
    title: "requests/s by outcome (by start time)",
};
const ERRORS: Panel = Panel {
    top: 310.0,
    height: 110.0,
    title: "failed requests/s by class",
};
pub(super) const P99: Panel = Panel {
    top: 460.0,
    height: 110.0,
    title: "p99 latency of ok responses",
};
/// Below the panels, the x axis takes this much.
pub(super) const AXIS: f64 = 40.0;

/// The fill colour of an outcome class.
pub(super) fn color(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "#43a047",
        Outcome::Unavailable => "#f9a825",
        Outcome::ServerError => "#ef6c00",
        Outcome::OtherStatus => "#8d6e63",
        Outcome::Refused => "#1e88e5",
        Outcome::Reset => "#d32f2f",
        Outcome::Incomplete => "#c2185b",
        Outcome::Timeout => "#7b1fa2",
        Outcome::Error => "#616161",
    }
}

/// The smallest of 1, 2, 5 × 10ⁿ at least `v`.
pub(super) fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= v)
        .unwrap_or(10.0 * magnitude)
}

/// Where an instant goes across the chart.
pub(super) struct Scale {
    /// The instant at the left edge.
    from_us: i64,
    /// The time the width spans.
    span_us: f64,
    /// Outcomes named as gRPC statuses.
    grpc: bool,
}

impl Scale {
    fn x(&self, us: u64) -> f64 {
        self.at(i64::try_from(us).unwrap_or(i64::MAX))
    }

    /// [`x`](Self::x) for a signed instant; what falls outside the span is
    /// drawn at its edge.
    fn at(&self, us: i64) -> f64 {
        let fraction = (us.saturating_sub(self.from_us)) as f64 / self.span_us;
        LEFT + fraction.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }
}

/// The timeline SVG and its legend.
pub(super) fn timeline(report: &Report) -> String {
    let t = &report.timeline;
    let span_us = (t.buckets.len() as u64 * t.bucket_us).max(1);
    let scale = Scale {
        from_us: 0,
        span_us: span_us as f64,
        grpc: report.config.grpc.is_some(),
    };
    let per_second = 1e6 / t.bucket_us as f64;
    // The server's phases, from its flight record, run under the panels.
    let server = report.server.as_ref().filter(|s| s.is_read());
    let bottom = match server {
        Some(_) => server::LANE_TOP + server::LANE_HEIGHT,
        None => P99.top + P99.height,
    };
    let height = bottom + AXIS;
    let mut svg = String::with_capacity(32 * 1024);
    open_svg(&mut svg, height, "drill timeline");

    let rate = |b: &Bucket, failures_only: bool| {
        let total = if failures_only {
            b.outcomes.failed()
        } else {
            b.outcomes.total()
        };
        total as f64 * per_second
    };
    let max_rate = nice_ceil(t.buckets.iter().map(|b| rate(b, false)).fold(0.0, f64::max));
    let max_errors = nice_ceil(t.buckets.iter().map(|b| rate(b, true)).fold(0.0, f64::max));
    let shaded = after_close(&mut svg, &scale, report);
    stacked(
        &mut svg,
        &scale,
        &RATE,
        t.bucket_us,
        &t.buckets,
        max_rate,
        per_second,
        false,
    );
    stacked(
        &mut svg,
        &scale,
        &ERRORS,
        t.bucket_us,
        &t.buckets,
        max_errors,
        per_second,
        true,
    );
    latency(&mut svg, &scale, t.bucket_us, &t.buckets);
    if let Some(server) = server {
        server::phase_lane(&mut svg, &scale, server::LANE_TOP, server);
    }
    x_axis(
        &mut svg,
        &scale,
        bottom,
        span_us,
        "time since the load started",
    );
    markers::draw(&mut svg, &scale, report, bottom);
    svg.push_str("</svg>\n");
    legend(&mut svg, shaded, scale.grpc);
    if server.is_some() {
        server::phase_legend(&mut svg);
    }
    svg
}

pub(super) fn open_svg(svg: &mut String, height: f64, label: &str) {
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" \
         role=\"img\" aria-label=\"{label}\">\n<rect width=\"{WIDTH}\" height=\"{height}\" fill=\"#fff\"/>\n"
    );
}

pub(super) fn panel_frame(svg: &mut String, panel: &Panel, max: f64, unit: &dyn Fn(f64) -> String) {
    let bottom = panel.top + panel.height;
    let _ = writeln!(
        svg,
        "<text class=\"title\" x=\"{LEFT}\" y=\"{}\">{}</text>",
        panel.top - 8.0,
        panel.title
    );
    for i in 0..=4 {
        let value = max * f64::from(i) / 4.0;
        let y = bottom - panel.height * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            unit(value)
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\" stroke=\"#999\"/>",
        WIDTH - RIGHT
    );
}

/// A count on a grid up to `max`: below 10, the grid lines fall between
/// whole numbers (0.25, 0.5, …).
pub(super) fn count_label(max: f64, v: f64) -> String {
    if max >= 10.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[allow(clippy::too_many_arguments)]
fn stacked(
    svg: &mut String,
    scale: &Scale,
    panel: &Panel,
    bucket_us: u64,
    buckets: &[Bucket],
    max: f64,
    per_second: f64,
    failures_only: bool,
) {
    panel_frame(svg, panel, max, &|v| count_label(max, v));
    let bottom = panel.top + panel.height;
    for b in buckets {
        let x0 = scale.x(b.start_us);
        let width = (scale.x(b.start_us + bucket_us) - x0 - 0.5).max(0.5);
        let mut y = bottom;
        // Failures held against the server first, then (faded, in the
        // failure panel) those that are not.
        for counted in [true, false] {
            for outcome in Outcome::ALL {
                if failures_only && !outcome.is_failure() {
                    continue;
                }
                let excused = b.not_counted.get(outcome);
                let count = match (failures_only, counted) {
                    (false, true) => b.outcomes.get(outcome),
                    (false, false) => 0,
                    (true, true) => b.outcomes.get(outcome) - excused,
                    (true, false) => excused,
                };
                if count == 0 {
                    continue;
                }
                let h = count as f64 * per_second / max * panel.height;
                y -= h;
                let (opacity, note) = if counted {
                    ("", "")
                } else {
                    (" fill-opacity=\"0.35\"", ", not counted")
                };
                let _ = writeln!(
                    svg,
                    "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"{}\"{opacity}>\
                     <title>{}–{}: {count} {}{note} ({:.0}/s)</title></rect>",
                    color(outcome),
                    human::at(b.start_us),
                    human::at(b.start_us + bucket_us),
                    outcome.label_for(scale.grpc),
                    count as f64 * per_second
                );
            }
        }
    }
}

/// In a stop drill, shades the time after the listener closed across the
/// panels and says why: what starts there is not held against the server.
/// Whether it did.
fn after_close(svg: &mut String, scale: &Scale, report: &Report) -> bool {
    if report.verdict.expect != crate::Expectation::Stop {
        return false;
    }
    let Some(close) = report.events.listener_closed_us else {
        return false;
    };
    let x = scale.x(close);
    let right = WIDTH - RIGHT;
    if right - x < 1.0 {
        return false;
    }
    let (top, bottom) = (RATE.top, P99.top + P99.height);
    let _ = writeln!(
        svg,
        "<rect class=\"after-close\" x=\"{x:.1}\" y=\"{top}\" width=\"{:.1}\" height=\"{:.1}\" \
         fill=\"#eceff1\"><title>after the listener closed ({}): requests that start here are \
         refused, and not counted against the server</title></rect>",
        right - x,
        bottom - top,
        human::at(close)
    );
    // The label sits in the failure panel, where the refused connects show.
    let (label_x, anchor) = if right - x > 200.0 {
        (x + 4.0, "start")
    } else {
        (right - 4.0, "end")
    };
    let _ = writeln!(
        svg,
        "<text class=\"after-close-label\" x=\"{label_x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">\
         after the listener closed: not counted</text>",
        ERRORS.top + 12.0
    );
    true
}

fn latency(svg: &mut String, scale: &Scale, bucket_us: u64, buckets: &[Bucket]) {
    let max = nice_ceil(buckets.iter().filter_map(|b| b.p99_us).max().unwrap_or(0) as f64);
    panel_frame(svg, &P99, max, &|v| human::duration(v as u64));
    let bottom = P99.top + P99.height;
    let points: Vec<(f64, f64, &Bucket)> = buckets
        .iter()
        .filter_map(|b| {
            let p99 = b.p99_us?;
            let x = scale.x(b.start_us + bucket_us / 2);
            Some((x, bottom - p99 as f64 / max * P99.height, b))
        })
        .collect();
    let path: Vec<String> = points
        .iter()
        .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
        .collect();
    let _ = writeln!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#3949ab\" stroke-width=\"1.5\"/>",
        path.join(" ")
    );
    for (x, y, b) in &points {
        let _ = writeln!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"#3949ab\"><title>{}: p99 {}</title></circle>",
            human::at(b.start_us),
            human::duration(b.p99_us.unwrap_or_default())
        );
    }
}

fn legend(out: &mut String, shaded: bool, grpc: bool) {
    out.push_str("<div class=\"legend\">");
    for outcome in Outcome::ALL {
        let _ = write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            color(outcome),
            escape(outcome.label_for(grpc))
        );
    }
    out.push_str(
        "<span><span class=\"swatch\" style=\"background:#3949ab\"></span>p99 latency</span>",
    );
    if shaded {
        out.push_str(
            "<span><span class=\"swatch\" style=\"background:#eceff1;border:1px solid #ccc\"></span>\
             after the listener closed: failures not counted (faded)</span>",
        );
    }
    out.push_str("</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceiling_rounds_up_to_1_2_5() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(3.0), 5.0);
        assert_eq!(nice_ceil(120.0), 200.0);
        assert_eq!(nice_ceil(1000.0), 1000.0);
    }
}
