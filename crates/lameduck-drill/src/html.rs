//! The HTML report: one self-contained page (inline CSS and SVG, no script,
//! no external asset) that a person reads at a glance: the verdict and its
//! conditions on top, the timeline below, the tables after. A flight record
//! alone (`lameduck report --html`) gets the same page, its timeline and its
//! tables; a drill that read one shows both on one timeline.

mod chart;
mod server;

use std::fmt::Write as _;

use crate::human;
use crate::outcome::Outcome;
use crate::report::{ConditionStatus, LatencyStats, Report};

impl Report {
    /// The report as a self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut page = String::with_capacity(64 * 1024);
        let verdict = if self.verdict.pass { "PASS" } else { "FAIL" };
        let class = if self.verdict.pass { "pass" } else { "fail" };
        open_page(
            &mut page,
            &format!("lameduck drill: {verdict} — {}", self.config.url),
            Header {
                class,
                badge: verdict,
                heading: "lameduck drill",
                line: &self.summary_line(),
            },
        );
        self.conditions(&mut page);
        page.push_str("<section><h2>Timeline</h2>\n");
        page.push_str(&chart::timeline(self));
        page.push_str("</section>\n");
        self.outcome_table(&mut page);
        self.latency_table(&mut page);
        self.event_list(&mut page);
        self.failure_list(&mut page);
        if let Some(record) = &self.server {
            server::sections(&mut page, record);
        }
        close_page(
            &mut page,
            &format!(
                "schema {} · lameduck {} · started {} · {} requests, {} accounted for",
                self.schema,
                self.lameduck_version,
                self.started_at,
                self.requests.sent,
                self.requests.accounted,
            ),
        );
        page
    }

    fn summary_line(&self) -> String {
        let first = self.summary().to_string();
        let line = first.lines().next().unwrap_or_default();
        line.trim_start_matches("lameduck drill: ").to_owned()
    }

    fn conditions(&self, page: &mut String) {
        page.push_str("<section><h2>Verdict</h2><ul class=\"conditions\">\n");
        for c in &self.verdict.conditions {
            let (class, mark) = match c.status {
                ConditionStatus::Pass => ("pass", "✔"),
                ConditionStatus::Fail => ("fail", "✘"),
                ConditionStatus::Skipped => ("skip", "–"),
            };
            let _ = writeln!(
                page,
                "<li class=\"{class}\"><span class=\"mark\">{mark}</span> <code>{}</code> {}</li>",
                escape(&c.name),
                escape(&c.detail)
            );
        }
        page.push_str("</ul></section>\n");
    }

    fn outcome_table(&self, page: &mut String) {
        let q = &self.requests;
        let after_close = if self.verdict.expect == crate::Expectation::Stop {
            "after listener close (not counted)"
        } else {
            "after listener close"
        };
        let _ = writeln!(
            page,
            "<section><h2>Requests</h2><table><thead><tr><th>outcome</th><th>started before signal</th>\
             <th>started after signal</th><th>started {after_close}</th><th>total</th></tr></thead><tbody>",
        );
        for outcome in Outcome::ALL {
            if q.total.get(outcome) == 0 && outcome != Outcome::Ok {
                continue;
            }
            let _ = writeln!(
                page,
                "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                chart::color(outcome),
                escape(outcome.label_for(self.config.grpc.is_some())),
                q.before_signal.get(outcome),
                q.after_signal.get(outcome),
                q.after_listener_close.get(outcome),
                q.total.get(outcome),
            );
        }
        let not_counted = match q.not_counted.total() {
            0 => String::new(),
            _ => format!(
                "; not counted, started after the listener closed: {}",
                q.not_counted.describe_failures()
            ),
        };
        let _ = writeln!(
            page,
            "</tbody></table><p class=\"note\">{} sent, {} accounted for, {} sent again unprocessed. \
             <strong>{} failed</strong>{}.</p></section>",
            q.sent,
            q.accounted,
            q.retried,
            q.failed,
            escape(&not_counted)
        );
    }

    fn latency_table(&self, page: &mut String) {
        page.push_str(
            "<section><h2>Latency of ok responses</h2><table><thead><tr><th>phase</th><th>p50</th>\
             <th>p90</th><th>p99</th><th>max</th><th>count</th></tr></thead><tbody>\n",
        );
        let row = |page: &mut String, label: &str, s: &LatencyStats| {
            let cell = |v: Option<u64>| v.map_or("–".to_owned(), human::duration);
            let _ = writeln!(
                page,
                "<tr><td>{label}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                cell(s.p50_us),
                cell(s.p90_us),
                cell(s.p99_us),
                cell(s.max_us),
                s.count
            );
        };
        // A plain load test has no signal to be before: its one row is all.
        if self.config.signal.is_some() {
            row(page, "before signal", &self.latency.before_signal);
            row(page, "during (signal → exit)", &self.latency.during);
            row(page, "after exit", &self.latency.after_exit);
        }
        row(page, "all", &self.latency.all);
        page.push_str("</tbody></table></section>\n");
    }

    fn event_list(&self, page: &mut String) {
        page.push_str("<section><h2>Events</h2><table class=\"events\"><tbody>\n");
        for (at, text) in crate::summary::events(self) {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td></tr>",
                human::at(at),
                escape(&text)
            );
        }
        page.push_str("</tbody></table></section>\n");
    }

    /// The first failures the verdict holds against the server; then,
    /// apart, a few of those it does not (refused after the listener closed).
    fn failure_list(&self, page: &mut String) {
        if self.failures.total == 0 {
            return;
        }
        let (counted, not_counted): (Vec<_>, Vec<_>) =
            self.failures.samples.iter().partition(|s| s.counted);
        page.push_str("<section><h2>First failures</h2>");
        if counted.is_empty() {
            page.push_str(
                "<p class=\"note\">None: no request failed that the verdict holds against the \
                 server.</p>",
            );
        } else {
            let _ = write!(
                page,
                "<p class=\"note\">{} of {} failed requests.</p>",
                counted.len(),
                self.requests.failed
            );
            sample_table(page, &counted, self.config.grpc.is_some());
        }
        if !not_counted.is_empty() {
            let _ = write!(
                page,
                "<h3>Not counted: started after the listener closed</h3><p class=\"note\">{}. \
                 Nothing listened any more, and a load balancer that honoured readiness would \
                 not have sent them: the verdict does not hold them against the server. The \
                 first ones:</p>",
                escape(&self.requests.not_counted.describe_failures())
            );
            sample_table(
                page,
                &not_counted[..not_counted.len().min(3)],
                self.config.grpc.is_some(),
            );
        }
        page.push_str("</section>\n");
    }
}

fn sample_table(page: &mut String, samples: &[&crate::report::FailureSample], grpc: bool) {
    page.push_str(
        "<table><thead><tr><th>started</th><th>ended</th><th>outcome</th><th>error</th></tr>\
         </thead><tbody>\n",
    );
    for s in samples.iter().take(20) {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            human::at(s.start_us),
            human::at(s.end_us),
            escape(s.outcome.label_for(grpc)),
            escape(&s.detail)
        );
    }
    page.push_str("</tbody></table>\n");
}

/// The coloured banner on top of a page.
struct Header<'a> {
    /// `pass` or `fail`: its colour.
    class: &'a str,
    badge: &'a str,
    heading: &'a str,
    line: &'a str,
}

/// The head of a page (its title, the shared style) and its banner.
fn open_page(page: &mut String, title: &str, header: Header<'_>) {
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(title),
    );
    let _ = writeln!(
        page,
        "<header class=\"{}\"><div class=\"badge\">{}</div><div><h1>{}</h1><p>{}</p></div></header>",
        header.class,
        escape(header.badge),
        escape(header.heading),
        escape(header.line)
    );
}

/// The footer, and the end of the page.
fn close_page(page: &mut String, footer: &str) {
    let _ = write!(
        page,
        "<footer>{}</footer>\n</body>\n</html>\n",
        escape(footer)
    );
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1040px;padding:0 16px 32px;color:#1d1d1f;background:#fafafa}
header{display:flex;gap:20px;align-items:center;padding:18px 20px;margin:16px 0;border-radius:10px;color:#fff}
header.pass{background:#2e7d32}header.fail{background:#c62828}
header h1{margin:0;font-size:18px;font-weight:600}header p{margin:4px 0 0;opacity:.92}
.badge{font-size:34px;font-weight:800;letter-spacing:1px}
h2{font-size:16px;margin:22px 0 8px}h3{font-size:14px;margin:16px 0 6px}
section{background:#fff;border:1px solid #e3e3e3;border-radius:10px;padding:4px 16px 12px;margin:12px 0}
ul.conditions{list-style:none;padding:0;margin:0}ul.conditions li{padding:3px 0}
li.pass .mark{color:#2e7d32}li.fail{color:#b71c1c;font-weight:600}li.fail .mark{color:#c62828}li.skip{color:#777}
table{border-collapse:collapse;width:100%}th,td{text-align:right;padding:3px 8px;border-bottom:1px solid #eee}
th:first-child,td:first-child{text-align:left}table.list th,table.list td{text-align:left}table.events td:last-child{text-align:left}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.note{color:#555;font-size:13px}.warning{color:#b71c1c}footer{color:#777;font-size:12px;margin-top:16px}
svg text{font:11px system-ui,sans-serif;fill:#444}svg .title{font-weight:600;fill:#222}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;font-size:12px;margin-top:6px}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
