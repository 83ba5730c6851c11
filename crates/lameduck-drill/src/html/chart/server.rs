//! The server's side of the timeline, from its flight record: a lane of its
//! phases with what was in flight at each deadline, and its listeners'
//! arrivals per tick. The drill draws the lane under its own panels, on its
//! own clock; `lameduck report --html` draws both alone, on the record's.

use std::fmt::Write as _;

use super::markers::{self, Marker};
use super::{LEFT, P99, Panel, RIGHT, Scale, WIDTH, nice_ceil, open_svg, panel_frame, x_axis};
use crate::html::escape;
use crate::human;
use crate::report::{ServerInventory, ServerRecord};

/// Where the lane sits under the drill's panels.
pub(super) const LANE_TOP: f64 = P99.top + P99.height + 30.0;
/// The lane: the phases' bars, then a row for the inventories' labels.
pub(super) const LANE_HEIGHT: f64 = 52.0;
const BAR: f64 = 22.0;

/// The fill colour of a phase.
fn color(phase: &str) -> &'static str {
    match phase {
        "starting" => "#b0bec5",
        "running" => "#81c784",
        "draining" => "#ffb74d",
        "stopping" => "#e57373",
        "cancelling" => "#ba68c8",
        "closing" => "#90a4ae",
        _ => "#616161",
    }
}

const PHASES: [&str; 7] = [
    "starting",
    "running",
    "draining",
    "stopping",
    "cancelling",
    "closing",
    "stopped",
];

/// Colours of the listeners' series.
const SERIES: [&str; 6] = [
    "#1e88e5", "#43a047", "#f4511e", "#8e24aa", "#00897b", "#6d4c41",
];

/// The phases as bars, each with its cause in a tooltip, and a flag at each
/// inventory naming what was still in flight.
pub(super) fn phase_lane(svg: &mut String, scale: &Scale, top: f64, record: &ServerRecord) {
    let _ = writeln!(
        svg,
        "<text class=\"title\" x=\"{LEFT}\" y=\"{}\">server phases: {} (pid {}), from its flight record</text>",
        top - 8.0,
        escape(&record.app),
        record.pid
    );
    for p in &record.phases {
        let end = p.end_us.unwrap_or(record.written_us);
        let (x0, x1) = (scale.at(p.start_us), scale.at(end));
        let width = (x1 - x0).max(1.0);
        let _ = write!(
            svg,
            "<rect class=\"phase\" x=\"{x0:.1}\" y=\"{top}\" width=\"{width:.1}\" height=\"{BAR}\" fill=\"{}\">\
             <title>{}: {} to {}, {}</title></rect>",
            color(&p.phase),
            escape(&p.phase),
            human::signed_at(p.start_us),
            p.end_us.map_or("the record".to_owned(), human::signed_at),
            escape(&p.cause)
        );
        // A name only where it fits.
        if width > 7.0 * p.phase.len() as f64 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" style=\"fill:#222\">{}</text>",
                x0 + 3.0,
                top + 15.0,
                escape(&p.phase)
            );
        }
        svg.push('\n');
    }
    // Labels alternate between two rows: deadlines are often close.
    for (n, inv) in record.inventories.iter().enumerate() {
        inventory_flag(svg, scale, top, 12.0 * (n % 2) as f64, inv);
    }
}

fn inventory_flag(svg: &mut String, scale: &Scale, top: f64, row: f64, inv: &ServerInventory) {
    let x = scale.at(inv.at_us);
    let y = top + BAR;
    let mut title = format!(
        "in flight at {} ({}): {} work, {} connections",
        inv.at,
        human::signed_at(inv.at_us),
        inv.work.len(),
        inv.connections.len()
    );
    for w in &inv.work {
        let _ = write!(
            title,
            "; {} {} (age {})",
            w.tracker,
            w.label,
            human::ms(w.age_ms)
        );
    }
    let anchor = if x > WIDTH - RIGHT - 120.0 {
        "end"
    } else {
        "middle"
    };
    let _ = writeln!(
        svg,
        "<g class=\"inventory\"><path d=\"M{x:.1},{y:.1} l-5,9 h10 z\" fill=\"#b71c1c\"/>\
         <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" style=\"fill:#b71c1c\">{}: {} in flight</text>\
         <title>{}</title></g>",
        y + 20.0 + row,
        escape(&inv.at),
        inv.work.len(),
        escape(&title)
    );
}

/// The phase colours, after the drill's legend.
pub(super) fn phase_legend(out: &mut String) {
    out.push_str("<div class=\"legend\">");
    for phase in PHASES {
        let _ = write!(
            out,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{phase}</span>",
            color(phase)
        );
    }
    out.push_str(
        "<span><span class=\"swatch\" style=\"background:#b71c1c\"></span>in flight at a deadline</span></div>\n",
    );
}

const TRAFFIC: Panel = Panel {
    top: 170.0,
    height: 150.0,
    title: "arrivals per 100 ms by listener, as the server saw them",
};

/// The listeners' arrivals per tick, stacked.
fn traffic_panel(svg: &mut String, scale: &Scale, record: &ServerRecord) {
    let t = &record.traffic;
    if t.listeners.is_empty() {
        // A program run without sockets of lameduck's (`lameduck run`
        // without `--listen`): there was nothing to count, not nothing
        // arriving.
        let _ = writeln!(
            svg,
            "<text class=\"title\" x=\"{LEFT}\" y=\"{}\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" style=\"fill:#777\">\
             no listening socket of the server's own: no arrivals were counted</text>",
            TRAFFIC.top - 8.0,
            TRAFFIC.title,
            (LEFT + WIDTH - RIGHT) / 2.0,
            TRAFFIC.top + TRAFFIC.height / 2.0
        );
        return;
    }
    let ticks = t
        .listeners
        .iter()
        .map(|l| l.arrivals.len())
        .max()
        .unwrap_or(0);
    let sum = |i: usize| -> u64 {
        t.listeners
            .iter()
            .map(|l| l.arrivals.get(i).copied().unwrap_or(0))
            .sum()
    };
    let max = nice_ceil((0..ticks).map(sum).max().unwrap_or(0) as f64);
    panel_frame(svg, &TRAFFIC, max, &|v| super::count_label(max, v));
    let tick_us = i64::try_from(t.tick_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
    let bottom = TRAFFIC.top + TRAFFIC.height;
    for i in 0..ticks {
        let start = t.from_us + tick_us * i as i64;
        let x0 = scale.at(start);
        let width = (scale.at(start + tick_us) - x0 - 0.5).max(0.5);
        let mut y = bottom;
        for (n, l) in t.listeners.iter().enumerate() {
            let count = l.arrivals.get(i).copied().unwrap_or(0);
            if count == 0 {
                continue;
            }
            let h = count as f64 / max * TRAFFIC.height;
            y -= h;
            let at = |series: &Option<Vec<u64>>| {
                series
                    .as_ref()
                    .and_then(|s| s.get(i))
                    .map_or("-".to_owned(), u64::to_string)
            };
            let _ = writeln!(
                svg,
                "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                 <title>{}: {}: {count} arrivals, {} connections, {} requests, {} finished</title></rect>",
                SERIES[n % SERIES.len()],
                human::signed_at(start),
                escape(&l.name),
                l.connections.get(i).copied().unwrap_or(0),
                at(&l.requests),
                at(&l.finished)
            );
        }
    }
}

/// The timeline of a flight record alone, on its own clock (zero at the
/// signal): markers, the phases, the traffic, and the legend.
pub(crate) fn flight_timeline(record: &ServerRecord) -> String {
    let (from, to) = record.span_us();
    let span_us = u64::try_from(to.saturating_sub(from)).unwrap_or(0).max(1);
    let scale = Scale {
        from_us: from,
        span_us: span_us as f64,
        grpc: false,
    };
    let bottom = TRAFFIC.top + TRAFFIC.height;
    let mut svg = String::with_capacity(16 * 1024);
    open_svg(&mut svg, bottom + super::AXIS, "flight record timeline");
    phase_lane(&mut svg, &scale, 80.0, record);
    traffic_panel(&mut svg, &scale, record);
    x_axis(&mut svg, &scale, bottom, span_us, "time since the signal");
    markers::draw_list(&mut svg, &scale, flight_markers(record), bottom);
    svg.push_str("</svg>\n");
    phase_legend(&mut svg);
    svg.push_str("<div class=\"legend\">");
    for (n, l) in record.traffic.listeners.iter().enumerate() {
        let _ = write!(
            svg,
            "<span><span class=\"swatch\" style=\"background:{}\"></span>{}</span>",
            SERIES[n % SERIES.len()],
            escape(&l.name)
        );
    }
    svg.push_str("</div>\n");
    svg
}

/// The record's moments: the signal, the drain's end, restarts, upgrade
/// steps and the exit.
fn flight_markers(record: &ServerRecord) -> Vec<Marker> {
    let mut list = Vec::new();
    let mut push = |at_us: i64, label: String, color: &'static str, dashed: bool| {
        list.push(Marker {
            at_us,
            label,
            color,
            dashed,
        });
    };
    if let Some(at) = record.shutdown_us {
        let reason = record.reason.as_deref().unwrap_or("shutdown");
        push(at, reason.to_owned(), "#5e35b1", false);
    }
    if let Some(d) = &record.drain {
        push(
            d.end_us,
            format!("drain ended: {}", d.ended),
            "#ef6c00",
            false,
        );
    }
    for r in &record.restarts {
        push(r.at_us, format!("restart {}", r.component), "#2e7d32", true);
    }
    for u in &record.upgrades {
        for s in &u.steps {
            push(s.at_us, s.step.clone(), "#00897b", true);
        }
    }
    if let Some(exit) = &record.exit {
        push(
            record.written_us,
            format!("exit {}", exit.code),
            "#212121",
            false,
        );
    }
    list
}
