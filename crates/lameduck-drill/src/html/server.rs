//! A flight record's tables: its phases, its drain, what was in flight at
//! each deadline, restarts, upgrades, components and the exit. Under a
//! drill's report, or as a page of its own with its timeline on top.

use std::fmt::Write as _;

use super::{Header, chart, close_page, escape, open_page};
use crate::human;
use crate::report::{ServerInventory, ServerRecord};

impl ServerRecord {
    /// A flight record as a self-contained HTML page, like the drill's
    /// report: the outline on top, the timeline (phases, inventories,
    /// traffic per tick by listener), then the tables. Instants are on the
    /// record's clock as placed (zero at the signal with
    /// [`ServerRecord::from_signal`]).
    pub fn to_html(&self) -> String {
        let mut page = String::with_capacity(32 * 1024);
        let code = self.exit.as_ref().map(|e| e.code);
        let badge = code.map_or_else(|| self.kind.clone(), |c| format!("exit {c}"));
        open_page(
            &mut page,
            &format!("lameduck flight record: {} (pid {})", self.app, self.pid),
            Header {
                class: if code == Some(0) { "pass" } else { "fail" },
                badge: &badge,
                heading: "lameduck flight record",
                line: &self.outline(),
            },
        );
        page.push_str("<section><h2>Timeline</h2>\n");
        page.push_str(&chart::flight_timeline(self));
        page.push_str("</section>\n");
        tables(&mut page, self);
        close_page(
            &mut page,
            &format!(
                "{} · lameduck {} · started {} · pid {}",
                self.path, self.lameduck_version, self.started_at, self.pid
            ),
        );
        page
    }

    /// Who, why, and how it ended, in one line.
    fn outline(&self) -> String {
        let mut line = format!("{} (pid {}): {} record", self.app, self.pid, self.kind);
        if let Some(reason) = &self.reason {
            let _ = write!(line, " · reason: {reason}");
        }
        if let Some(exit) = &self.exit {
            let _ = write!(line, " · ended: {}, exit {}", exit.status, exit.code);
        }
        line
    }
}

/// Under a drill's report: the server's side, or why it is missing.
pub(super) fn sections(page: &mut String, record: &ServerRecord) {
    if let Some(error) = &record.error {
        let _ = writeln!(
            page,
            "<section class=\"server\"><h2>Server (flight record)</h2><p class=\"note warning\">\
             No flight record from {}: {}</p></section>",
            escape(&record.path),
            escape(error)
        );
        return;
    }
    let _ = writeln!(
        page,
        "<section class=\"server\"><h2>Server (flight record)</h2><p>{}</p><p class=\"note\">\
         Read from {}. Its instants are placed on the drill's clock by wall-clock time on this \
         host (to the millisecond).</p></section>",
        escape(&record.outline()),
        escape(&record.path)
    );
    tables(page, record);
}

fn tables(page: &mut String, r: &ServerRecord) {
    page.push_str(
        "<section class=\"server\"><h2>Server phases</h2><table class=\"list\"><thead><tr>\
         <th>phase</th><th>start</th><th>end</th><th>lasted</th><th>cause</th></tr></thead><tbody>\n",
    );
    for p in &r.phases {
        // A phase with no end was under way when the record was written:
        // it lasted at least until then.
        let lasted = match p.end_us {
            Some(end) => human::duration(u64::try_from(end - p.start_us).unwrap_or(0)),
            None => format!(
                "≥{}",
                human::duration(u64::try_from(r.written_us - p.start_us).unwrap_or(0))
            ),
        };
        let _ = writeln!(
            page,
            "<tr class=\"phase\"><td>{}</td><td>{}</td><td>{}</td><td>{lasted}</td><td>{}</td></tr>",
            escape(&p.phase),
            human::signed_at(p.start_us),
            p.end_us.map_or("–".to_owned(), human::signed_at),
            escape(&p.cause)
        );
    }
    page.push_str("</tbody></table>");
    if let Some(d) = &r.drain {
        let _ = write!(
            page,
            "<p><strong>What ended the drain:</strong> {} ({})</p>",
            escape(&d.ended),
            escape(&d.summary)
        );
    }
    let _ = writeln!(
        page,
        "<p class=\"note\">Budget: {}.</p></section>",
        escape(&r.budget.to_string())
    );
    for inv in &r.inventories {
        inventory(page, inv);
    }
    others(page, r);
}

fn inventory(page: &mut String, inv: &ServerInventory) {
    let _ = writeln!(
        page,
        "<section class=\"inventory\"><h2>In flight at {} ({})</h2><p class=\"note\">{} work, {} connections.</p>",
        escape(&inv.at),
        human::signed_at(inv.at_us),
        inv.work.len(),
        inv.connections.len()
    );
    if !inv.work.is_empty() {
        page.push_str(
            "<table class=\"list\"><thead><tr><th>tracker</th><th>label</th><th>age</th></tr></thead><tbody>\n",
        );
        for w in &inv.work {
            let _ = writeln!(
                page,
                "<tr class=\"work\"><td>{}</td><td class=\"label\">{}</td><td>{}</td></tr>",
                escape(&w.tracker),
                escape(&w.label),
                human::ms(w.age_ms)
            );
        }
        page.push_str("</tbody></table>\n");
    }
    if !inv.connections.is_empty() {
        page.push_str(
            "<table class=\"list\"><thead><tr><th>component</th><th>peer</th><th>protocol</th><th>state</th>\
             <th>in flight</th><th>idle</th><th>age</th></tr></thead><tbody>\n",
        );
        for c in &inv.connections {
            let _ = writeln!(
                page,
                "<tr class=\"connection\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.component),
                escape(&c.peer),
                escape(&c.protocol),
                escape(&c.state),
                c.in_flight,
                human::ms(c.idle_ms),
                human::ms(c.age_ms)
            );
        }
        page.push_str("</tbody></table>\n");
    }
    if !inv.held.is_empty() {
        page.push_str("<ul class=\"held\">");
        for h in &inv.held {
            let _ = write!(
                page,
                "<li><code>{}</code> {}</li>",
                escape(&h.component),
                escape(&h.what)
            );
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</section>\n");
}

/// Restarts, upgrades, components, the work and what was cut.
fn others(page: &mut String, r: &ServerRecord) {
    page.push_str("<section class=\"server\"><h2>Components and work</h2>");
    if let Some(work) = r.work_summary() {
        let _ = write!(page, "<p>{}.</p>", escape(&work));
    }
    if !r.components.is_empty() {
        page.push_str(
            "<table class=\"list\"><thead><tr><th>component</th><th>ended</th><th>close</th><th>restarts</th></tr>\
             </thead><tbody>\n",
        );
        for c in &r.components {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.name),
                escape(&c.ended),
                escape(&c.close),
                c.restarts
            );
        }
        page.push_str("</tbody></table>\n");
    }
    if !r.restarts.is_empty() {
        page.push_str("<h3>Restarts</h3><table class=\"events\"><tbody>\n");
        for x in &r.restarts {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{} (restart {}, after {}){}</td></tr>",
                human::signed_at(x.at_us),
                escape(&x.component),
                x.restarts,
                human::ms(x.delay_ms),
                escape(
                    &x.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            );
        }
        page.push_str("</tbody></table>\n");
    }
    for u in &r.upgrades {
        let _ = writeln!(
            page,
            "<h3>Upgrade at {}: {}</h3><table class=\"events\"><tbody>",
            human::signed_at(u.start_us),
            escape(u.outcome.as_deref().unwrap_or("under way"))
        );
        for s in &u.steps {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td></tr>",
                human::signed_at(s.at_us),
                escape(&s.step)
            );
        }
        page.push_str("</tbody></table>\n");
        if let Some(e) = &u.error {
            let _ = write!(page, "<p class=\"note\">error: {}</p>", escape(e));
        }
    }
    if let Some(t) = &r.truncated {
        let _ = write!(
            page,
            "<p class=\"note\">Cut to fit {} bytes: {} work items, {} connections, {} ticks, {} restarts left out.</p>",
            t.limit_bytes, t.work, t.connections, t.ticks, t.restarts
        );
    }
    page.push_str("</section>\n");
}

#[cfg(test)]
mod tests {
    use lameduck::flight::FlightRecord;

    use crate::report::ServerRecord;

    /// The checked-in record, with a restart and an upgrade added.
    fn record() -> FlightRecord {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../lameduck-cli/tests/data/flight-record.json"
        );
        let mut value: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        value["restarts"] = serde_json::json!([{
            "component": "worker", "at_ms": 900, "restarts": 1, "delay_ms": 100,
            "error": "queue <gone>"
        }]);
        value["upgrades"] = serde_json::json!([{
            "start_ms": 1000,
            "steps": [{"at_ms": 1000, "step": "spawned pid 1300"}, {"at_ms": 1200, "step": "pid 1300 ready"}],
            "outcome": "failed", "new_pid": null, "error": "pid 1300 exited"
        }]);
        FlightRecord::from_json(&value.to_string()).unwrap()
    }

    #[test]
    fn restarts_and_upgrade_steps_are_on_the_page_timed_from_the_signal() {
        let page = ServerRecord::from_signal("flight.json", &record()).to_html();
        // The signal is at 2487 ms: the upgrade's steps came before it.
        assert!(
            page.contains("<td>-1.487s</td><td>spawned pid 1300</td>"),
            "{page}"
        );
        assert!(
            page.contains("<td>-1.287s</td><td>pid 1300 ready</td>"),
            "{page}"
        );
        assert!(page.contains("Upgrade at -1.487s: failed"), "{page}");
        assert!(
            page.contains("worker (restart 1, after 100ms): queue &lt;gone&gt;"),
            "{page}"
        );
        assert!(!page.contains("<gone>"), "unescaped text");
    }

    #[test]
    fn a_phase_under_way_when_the_record_was_written_lasted_at_least_until_then() {
        let mut record = record();
        let closing = record.phases.last_mut().unwrap();
        closing.end_ms = None;
        let page = ServerRecord::from_signal("flight.json", &record).to_html();
        // closing began at 5104 ms; the record was written at 5105 ms.
        assert!(
            page.contains("<td>closing</td><td>2.617s</td><td>–</td><td>≥1.00ms</td>"),
            "{page}"
        );
    }

    #[test]
    fn a_placed_record_round_trips_through_json() {
        let placed = ServerRecord::from_flight_record("flight.json", &record(), -2_000_000);
        let text = serde_json::to_string(&placed).unwrap();
        assert_eq!(serde_json::from_str::<ServerRecord>(&text).unwrap(), placed);
        assert_eq!(placed.upgrades[0].steps[1].at_us, -800_000);
    }
}
