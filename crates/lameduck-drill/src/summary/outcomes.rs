//! The summary's count of requests by outcome, and the first failures.

use std::fmt;

use crate::human;
use crate::outcome::Outcome;
use crate::report::Report;

/// How many failures of each class the summary quotes: the failure
/// samples say what the server answered (a 503 shed while draining, or
/// one for work cancelled at the shutdown timeout), which counts cannot.
const QUOTED_PER_CLASS: usize = 3;

/// The narrowest label column: the labels most tables show fit.
const LABEL_WIDTH: usize = 14;

/// The counts by outcome and by when each request *started* (before the
/// signal, after it, after the listener closed): a 503 answered after the
/// signal to a request that started before it is counted before it, and
/// the header says so. The label column is 14 wide, or as wide as its
/// longest label.
pub(super) fn table(f: &mut fmt::Formatter<'_>, r: &Report) -> fmt::Result {
    let q = &r.requests;
    let grpc = r.config.grpc.is_some();
    let shown: Vec<Outcome> = Outcome::ALL
        .into_iter()
        .filter(|&o| o == Outcome::Ok || q.total.get(o) > 0)
        .collect();
    let w = shown
        .iter()
        .map(|o| o.label_for(grpc).len())
        .chain([LABEL_WIDTH])
        .max()
        .unwrap_or_default();
    if r.config.signal.is_none() {
        writeln!(f, "  {:<w$} {:>10}", "outcome", "total")?;
        for o in shown {
            writeln!(f, "  {:<w$} {:>10}", o.label_for(grpc), q.total.get(o))?;
        }
        return Ok(());
    }
    // Over the three window columns (3 × 14 wide, 2 spaces between).
    writeln!(f, "  {:<w$} {:-^44}", "", " request started ")?;
    writeln!(
        f,
        "  {:<w$} {:>14} {:>14} {:>14} {:>10}",
        "outcome", "before signal", "after signal", "after close", "total"
    )?;
    for o in shown {
        writeln!(
            f,
            "  {:<w$} {:>14} {:>14} {:>14} {:>10}",
            o.label_for(grpc),
            q.before_signal.get(o),
            q.after_signal.get(o),
            q.after_listener_close.get(o),
            q.total.get(o)
        )?;
    }
    Ok(())
}

/// What the verdict holds against the server, apart from what it does not.
pub(super) fn failed_line(f: &mut fmt::Formatter<'_>, r: &Report) -> fmt::Result {
    let q = &r.requests;
    write!(f, "  failed: {}", q.failed)?;
    if q.not_counted.total() > 0 {
        write!(
            f,
            " · not counted, started after the listener closed: {}",
            q.not_counted.describe_failures()
        )?;
    }
    writeln!(f)
}

/// The first failures the verdict holds against the server, a few of each
/// class, with when each started and ended and what it got.
pub(super) fn first_failures(f: &mut fmt::Formatter<'_>, r: &Report) -> fmt::Result {
    let grpc = r.config.grpc.is_some();
    let counted = r.failures.samples.iter().filter(|s| s.counted);
    let mut quoted = Vec::new();
    for s in counted {
        if quoted
            .iter()
            .filter(|q: &&&crate::report::FailureSample| q.outcome == s.outcome)
            .count()
            < QUOTED_PER_CLASS
        {
            quoted.push(s);
        }
    }
    if quoted.is_empty() {
        return Ok(());
    }
    let w = quoted
        .iter()
        .map(|s| s.outcome.label_for(grpc).len())
        .chain(["outcome".len()])
        .max()
        .unwrap_or_default();
    writeln!(
        f,
        "\nfirst failures (at most {QUOTED_PER_CLASS} of each class)"
    )?;
    writeln!(
        f,
        "  {:<w$} {:>9} {:>9}  answer",
        "outcome", "started", "ended"
    )?;
    for s in quoted {
        writeln!(
            f,
            "  {:<w$} {:>9} {:>9}  {}",
            s.outcome.label_for(grpc),
            human::at(s.start_us),
            human::at(s.end_us),
            s.detail
        )?;
    }
    Ok(())
}
