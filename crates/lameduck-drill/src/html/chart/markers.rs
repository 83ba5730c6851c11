//! The vertical markers across the timeline: each signal, the readiness
//! flip, the listener closing, each new process of a restart, each exit and
//! the end of the load.

use std::fmt::Write as _;

use super::{MARKER_TOP, RIGHT, Scale, WIDTH};
use crate::html::escape;
use crate::human;
use crate::report::Report;

/// A vertical line across the panels with a label on top.
pub(super) struct Marker {
    pub(super) at_us: i64,
    pub(super) label: String,
    pub(super) color: &'static str,
    pub(super) dashed: bool,
}

impl Marker {
    fn new(at_us: u64, label: String, color: &'static str, dashed: bool) -> Self {
        Marker {
            at_us: i64::try_from(at_us).unwrap_or(i64::MAX),
            label,
            color,
            dashed,
        }
    }
}

/// The drill's markers, down to `bottom`.
pub(super) fn draw(svg: &mut String, scale: &Scale, report: &Report, bottom: f64) {
    let e = &report.events;
    let mut list = Vec::new();
    for s in e.signals.iter().filter(|s| s.error.is_none()) {
        list.push(Marker::new(
            s.at_us,
            format!("SIG{}", s.signal),
            "#5e35b1",
            false,
        ));
    }
    if let Some(at) = e.readiness_flip_us {
        list.push(Marker::new(at, "readiness flip".into(), "#ef6c00", false));
    }
    if let Some(at) = e.listener_closed_us {
        list.push(Marker::new(at, "listener closed".into(), "#c62828", false));
    }
    for r in &e.restarts {
        if let (Some(pid), Some(at_us)) = (r.new_pid, r.seen_us) {
            list.push(Marker::new(at_us, format!("new {pid}"), "#2e7d32", true));
        }
    }
    for x in &e.exits {
        let code = x.code.map_or(String::new(), |c| format!(" ({c})"));
        let cleanup = x
            .stopped_by_cleanup
            .as_ref()
            .map_or(String::new(), |s| format!(" at cleanup's {s}"));
        list.push(Marker::new(
            x.at_us,
            format!("exit {}{code}{cleanup}", x.pid),
            "#212121",
            false,
        ));
    }
    list.push(Marker::new(
        e.load_end_us,
        "load end".into(),
        "#9e9e9e",
        true,
    ));
    draw_list(svg, scale, list, bottom);
}

/// Draws `list` from the top of the chart down to `bottom`, labels that
/// would overlap on the next row.
pub(super) fn draw_list(svg: &mut String, scale: &Scale, mut list: Vec<Marker>, bottom: f64) {
    list.sort_by_key(|m| m.at_us);
    let mut last_x = f64::NEG_INFINITY;
    let mut row = 0;
    for m in &list {
        let x = scale.at(m.at_us);
        // Labels that would overlap go one row down.
        row = if x - last_x < 90.0 { (row + 1) % 3 } else { 0 };
        last_x = x;
        let y = MARKER_TOP + 14.0 * f64::from(row);
        // Near the right edge the label goes to the left of its line.
        let (label_x, anchor) = if x > WIDTH - RIGHT - 100.0 {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let dash = if m.dashed {
            " stroke-dasharray=\"4 3\""
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{bottom}\" stroke=\"{}\" stroke-width=\"1.5\"{dash}>\
             <title>{}: {}</title></line>\
             <text x=\"{label_x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\" style=\"fill:{}\">{}</text>",
            y + 3.0,
            m.color,
            escape(&m.label),
            human::signed_at(m.at_us),
            m.color,
            escape(&m.label)
        );
    }
}
