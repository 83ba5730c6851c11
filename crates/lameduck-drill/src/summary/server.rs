//! The server's side in the drill's summary: its phases and deadlines among
//! the drill's events, then what was still in flight at each deadline.

use std::fmt;

use crate::human;
use crate::report::{ServerInventory, ServerRecord};

/// The server's phase changes, inventories, restarts and upgrade steps, as
/// events on the drill's timeline; phases that began before the load
/// started are left to the block.
pub(super) fn events(r: &ServerRecord, list: &mut Vec<(u64, String)>) {
    for p in &r.phases {
        if let Ok(at) = u64::try_from(p.start_us) {
            list.push((at, format!("server: {} ({})", p.phase, p.cause)));
        }
    }
    for inv in &r.inventories {
        if let Ok(at) = u64::try_from(inv.at_us) {
            list.push((at, format!("server: {}", in_flight(inv))));
        }
    }
    for x in &r.restarts {
        if let Ok(at) = u64::try_from(x.at_us) {
            let why = x
                .error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            list.push((
                at,
                format!(
                    "server: {} restarts (restart {}){why}",
                    x.component, x.restarts
                ),
            ));
        }
    }
    for step in r.upgrades.iter().flat_map(|u| &u.steps) {
        if let Ok(at) = u64::try_from(step.at_us) {
            list.push((at, format!("server: upgrade {}", step.step)));
        }
    }
}

/// `in flight at stopping: 2 work, 1 connections`.
fn in_flight(inv: &ServerInventory) -> String {
    format!(
        "in flight at {}: {} work, {} connections",
        inv.at,
        inv.work.len(),
        inv.connections.len()
    )
}

/// How many work items and connections of an inventory the summary lists
/// (the oldest and busiest first); the JSON and the HTML have them all.
const LISTED: usize = 5;

/// The server's flight record: what ended its drain and what was stuck, or
/// why there is no record.
pub(super) fn block(f: &mut fmt::Formatter<'_>, r: &ServerRecord) -> fmt::Result {
    writeln!(f, "\nserver (flight record {})", r.path)?;
    if let Some(error) = &r.error {
        return writeln!(f, "  warning: no flight record: {error}");
    }
    write!(f, "  {} (pid {}), {} record", r.app, r.pid, r.kind)?;
    if let Some(exit) = &r.exit {
        write!(f, ", ended: {}, exit {}", exit.status, exit.code)?;
    }
    writeln!(f)?;
    for p in r.phases.iter().filter(|p| p.start_us < 0) {
        writeln!(
            f,
            "  {:>9}  {} ({}), before the load started",
            human::signed_at(p.start_us),
            p.phase,
            p.cause
        )?;
    }
    if let Some(d) = &r.drain {
        writeln!(f, "  drain: {}", d.summary)?;
    }
    for inv in &r.inventories {
        writeln!(
            f,
            "  {:>9}  {}",
            human::signed_at(inv.at_us),
            in_flight(inv)
        )?;
        for w in inv.work.iter().take(LISTED) {
            writeln!(
                f,
                "             work  {:<12} {:<28} age {}",
                w.tracker,
                w.label,
                human::ms(w.age_ms)
            )?;
        }
        for c in inv.connections.iter().take(LISTED) {
            writeln!(
                f,
                "             conn  {:<12} {:<22} {} {}, {} in flight, age {}",
                c.component,
                c.peer,
                c.protocol,
                c.state,
                c.in_flight,
                human::ms(c.age_ms)
            )?;
        }
        let more =
            inv.work.len().saturating_sub(LISTED) + inv.connections.len().saturating_sub(LISTED);
        if more > 0 {
            writeln!(
                f,
                "             … and {more} more (in the JSON and HTML reports)"
            )?;
        }
    }
    if let Some(work) = r.work_summary() {
        writeln!(f, "  work: {work}")?;
    }
    Ok(())
}
