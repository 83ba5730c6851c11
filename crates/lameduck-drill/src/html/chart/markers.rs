//! The vertical markers across the timeline: each signal, the readiness
//! flip, the listener closing, each new process of a restart, each exit and
//! the end of the load.

use std::fmt::Write as _;

use super::{MARKER_TOP, P99, RIGHT, Scale, WIDTH};
use crate::html::escape;
use crate::human;
use crate::report::Report;

/// A vertical line across the panels with a label on top.
struct Marker {
    at_us: u64,
    label: String,
    color: &'static str,
    dashed: bool,
}

pub(super) fn draw(svg: &mut String, scale: &Scale, report: &Report) {
    let e = &report.events;
    let mut list = Vec::new();
    for s in e.signals.iter().filter(|s| s.error.is_none()) {
        list.push(Marker {
            at_us: s.at_us,
            label: format!("SIG{}", s.signal),
            color: "#5e35b1",
            dashed: false,
        });
    }
    if let Some(at) = e.readiness_flip_us {
        list.push(Marker {
            at_us: at,
            label: "readiness flip".into(),
            color: "#ef6c00",
            dashed: false,
        });
    }
    if let Some(at) = e.listener_closed_us {
        list.push(Marker {
            at_us: at,
            label: "listener closed".into(),
            color: "#c62828",
            dashed: false,
        });
    }
    for r in &e.restarts {
        if let (Some(pid), Some(at_us)) = (r.new_pid, r.seen_us) {
            list.push(Marker {
                at_us,
                label: format!("new {pid}"),
                color: "#2e7d32",
                dashed: true,
            });
        }
    }
    for x in &e.exits {
        let code = x.code.map_or(String::new(), |c| format!(" ({c})"));
        list.push(Marker {
            at_us: x.at_us,
            label: format!("exit {}{code}", x.pid),
            color: "#212121",
            dashed: false,
        });
    }
    list.push(Marker {
        at_us: e.load_end_us,
        label: "load end".into(),
        color: "#9e9e9e",
        dashed: true,
    });
    list.sort_by_key(|m| m.at_us);
    let bottom = P99.top + P99.height;
    let mut last_x = f64::NEG_INFINITY;
    let mut row = 0;
    for m in &list {
        let x = scale.x(m.at_us);
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
            human::at(m.at_us),
            m.color,
            escape(&m.label)
        );
    }
}
