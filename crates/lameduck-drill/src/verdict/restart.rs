//! The conditions only a restart has: each signal brings in a new process,
//! and readiness never dips while it does.

use super::{Rules, condition};
use crate::human;
use crate::report::{Condition, ConditionStatus, Events, ReadinessChange};

/// Every signal was followed by a new process serving (see
/// `drill::restarts` for how the drill finds it).
pub(super) fn new_process_after_each_signal(events: &Events) -> Condition {
    const NAME: &str = "new_process_after_each_signal";
    let signal = events
        .signals
        .first()
        .map_or("signal", |s| s.signal.as_str());
    if events.restarts.is_empty() {
        return condition(
            NAME,
            ConditionStatus::Fail,
            "no signal was sent, so no restart was seen".to_owned(),
        );
    }
    let mut restarts = events.restarts.clone();
    restarts.sort_by_key(|r| r.signal);
    let seen: Vec<String> = restarts
        .iter()
        .filter_map(|r| {
            let (old, new, at) = (r.pid?, r.new_pid?, r.seen_us?);
            let sent = events.signals.get(r.signal)?.at_us;
            Some(format!(
                "pid {old} → pid {new} (+{})",
                human::duration(at.saturating_sub(sent))
            ))
        })
        .collect();
    let missed: Vec<String> = restarts
        .iter()
        .filter(|r| r.new_pid.is_none())
        .map(|r| {
            let n = r.signal + 1;
            let Some(pid) = r.pid else {
                return format!("{signal} {n} was not delivered");
            };
            let sent = events.signals.get(r.signal).map_or(0, |s| s.at_us);
            let by = if r.nothing_left {
                format!(
                    "when it saw that none could come: pid {pid} had exited and nothing was left \
                     of its process group to start another, so the drill stopped looking"
                )
            } else if r.signal + 1 < events.signals.len() {
                "just before the next signal".to_owned()
            } else {
                "the end of the drill".to_owned()
            };
            let gone = match r.gone_pid {
                Some(gone) => format!(" (pid {gone} held it for a while, then no longer)"),
                None => String::new(),
            };
            let unfinished = unfinished_restart(events, &restarts, r.signal, pid)
                .map(|old| {
                    format!(
                        "; the previous restart had not finished: pid {old}, which pid {pid} \
                         replaced after {signal} {}, still ran when this signal went",
                        n - 1
                    )
                })
                .unwrap_or_default();
            format!(
                "{signal} {n} to pid {pid} at {}: no new process held the listening socket by {} \
                 ({by}){gone}{unfinished}",
                human::at(sent),
                human::at(r.until_us),
            )
        })
        .collect();
    if missed.is_empty() {
        condition(
            NAME,
            ConditionStatus::Pass,
            format!(
                "a new process took over after each of the {} {signal} signals: {}",
                restarts.len(),
                seen.join(", ")
            ),
        )
    } else {
        condition(
            NAME,
            ConditionStatus::Fail,
            format!(
                "{} of {} {signal} signals brought in no new process: {}",
                missed.len(),
                restarts.len(),
                missed.join("; ")
            ),
        )
    }
}

/// The process that signal `signal` (to `pid`) found still running though
/// `pid` had replaced it after the previous signal: a server that replaces
/// itself commonly refuses a new restart until the last one is over (the
/// old process gone), so a signal sent then brings in nothing.
fn unfinished_restart(
    events: &Events,
    restarts: &[crate::report::RestartEvent],
    signal: usize,
    pid: u32,
) -> Option<u32> {
    let sent = events.signals.get(signal)?.at_us;
    let previous = restarts.iter().find(|p| p.signal + 1 == signal)?;
    let old = previous.pid.filter(|&old| old != pid)?;
    if previous.new_pid != Some(pid) {
        return None;
    }
    let exited = events.exits.iter().find(|e| e.pid == old);
    exited.is_none_or(|e| e.at_us > sent).then_some(old)
}

/// Readiness answered 2xx at every probe of the drill.
pub(super) fn readiness_stayed_ready(rules: Rules, events: &Events) -> Condition {
    const NAME: &str = "readiness_stayed_ready";
    if !rules.readiness_polled {
        return condition(
            NAME,
            ConditionStatus::Skipped,
            "no readiness URL given (--ready-url)".to_owned(),
        );
    }
    let dips = readiness_dips(events);
    if dips.is_empty() {
        return condition(
            NAME,
            ConditionStatus::Pass,
            "every readiness probe answered 2xx".to_owned(),
        );
    }
    let described: Vec<String> = dips
        .iter()
        .map(|dip| {
            let until = match dip.to_us {
                Some(to) => format!("from {} to {}", human::at(dip.from_us), human::at(to)),
                None => format!("from {} to the end", human::at(dip.from_us)),
            };
            format!("{} {until}{}", dip.what, after_signal(events, dip.from_us))
        })
        .collect();
    condition(
        NAME,
        ConditionStatus::Fail,
        format!(
            "readiness was not 2xx {} time(s): {}",
            dips.len(),
            described.join("; ")
        ),
    )
}

/// A time readiness was not 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dip {
    /// When the first probe that was not 2xx answered.
    pub(crate) from_us: u64,
    /// When the next 2xx answer came (`None`: never again).
    pub(crate) to_us: Option<u64>,
    /// What the first probe got: `503`, `refused`, ….
    pub(crate) what: String,
}

/// The times readiness was not 2xx, from the changes the poller saw.
pub(crate) fn readiness_dips(events: &Events) -> Vec<Dip> {
    let mut dips = Vec::new();
    let mut open: Option<Dip> = None;
    for change in &events.readiness {
        if change.ready {
            if let Some(mut dip) = open.take() {
                dip.to_us = Some(change.at_us);
                dips.push(dip);
            }
        } else if open.is_none() {
            open = Some(Dip {
                from_us: change.at_us,
                to_us: None,
                what: describe(change),
            });
        }
    }
    dips.extend(open);
    dips
}

fn describe(change: &ReadinessChange) -> String {
    match (change.status, change.error) {
        (Some(status), _) => format!("answered {status}"),
        (None, Some(error)) => error.label().to_owned(),
        (None, None) => "no answer".to_owned(),
    }
}

/// ` (+12.0ms after HUP 2)`: the time since the last signal before `at_us`.
pub(crate) fn after_signal(events: &Events, at_us: u64) -> String {
    events
        .signal_before(at_us, None)
        .map_or(String::new(), |(n, s)| {
            format!(
                " (+{} after {} {})",
                human::duration(at_us - s.at_us),
                s.signal,
                n + 1
            )
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Expectation;
    use crate::outcome::Outcome;
    use crate::report::{RestartEvent, SignalEvent};

    fn events(readiness: Vec<ReadinessChange>, restarts: Vec<RestartEvent>) -> Events {
        let signal = |at_us, pid| SignalEvent {
            at_us,
            signal: "HUP".into(),
            pid: Some(pid),
            error: None,
        };
        Events {
            load_end_us: 10_000_000,
            end_us: 10_000_000,
            signals: vec![signal(1_000_000, 10), signal(5_000_000, 11)],
            readiness,
            readiness_flip_us: None,
            listener_closed_us: None,
            connect_probes: 0,
            exits: Vec::new(),
            restarts,
        }
    }

    fn change(at_us: u64, status: Option<u16>, error: Option<Outcome>) -> ReadinessChange {
        ReadinessChange {
            at_us,
            ready: status.is_some_and(|s| (200..300).contains(&s)),
            status,
            error,
        }
    }

    fn rules() -> Rules {
        Rules {
            expect: Expectation::Restart,
            signal: None,
            readiness_polled: true,
            grace_period: Duration::from_secs(1),
            grpc: false,
        }
    }

    #[test]
    fn readiness_dips_run_from_the_first_unready_answer_to_the_next_ready_one() {
        let e = events(
            vec![
                change(0, Some(200), None),
                change(5_012_000, Some(503), None),
                change(5_020_000, None, Some(Outcome::Refused)),
                change(5_031_000, Some(200), None),
                change(9_000_000, Some(503), None),
            ],
            Vec::new(),
        );
        let dips = readiness_dips(&e);
        assert_eq!(dips.len(), 2);
        assert_eq!(
            (dips[0].from_us, dips[0].to_us, dips[0].what.as_str()),
            (5_012_000, Some(5_031_000), "answered 503")
        );
        assert_eq!(dips[1].to_us, None);
        let c = readiness_stayed_ready(rules(), &e);
        assert_eq!(c.status, ConditionStatus::Fail);
        assert!(
            c.detail
                .contains("answered 503 from 5.012s to 5.031s (+12.0ms after HUP 2)"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn a_signal_that_brought_in_no_new_process_fails_and_is_named() {
        let restart = |signal, pid, new_pid: Option<u32>, gone_pid| RestartEvent {
            signal,
            pid: Some(pid),
            new_pid,
            seen_us: new_pid.map(|_| 1_010_000),
            gone_pid,
            until_us: 5_000_000 + signal as u64 * 4_000_000,
            nothing_left: false,
        };
        let e = events(
            Vec::new(),
            vec![
                restart(0, 10, Some(11), None),
                restart(1, 11, None, Some(12)),
            ],
        );
        let c = new_process_after_each_signal(&e);
        assert_eq!(c.status, ConditionStatus::Fail);
        assert!(
            c.detail.contains(
                "1 of 2 HUP signals brought in no new process: HUP 2 to pid 11 at 5.000s: no \
                 new process held the listening socket by 9.000s (the end of the drill) (pid 12 \
                 held it for a while, then no longer)"
            ),
            "{}",
            c.detail
        );
        let e = events(Vec::new(), vec![restart(0, 10, Some(11), None)]);
        assert_eq!(
            new_process_after_each_signal(&e).status,
            ConditionStatus::Pass
        );
    }

    #[test]
    fn a_signal_sent_before_the_previous_restart_finished_says_so() {
        let restart = |signal, pid, new_pid: Option<u32>| RestartEvent {
            signal,
            pid: Some(pid),
            new_pid,
            seen_us: new_pid.map(|_| 1_010_000),
            gone_pid: None,
            until_us: 5_000_000 + signal as u64 * 4_000_000,
            nothing_left: false,
        };
        let mut e = events(
            Vec::new(),
            vec![restart(0, 10, Some(11)), restart(1, 11, None)],
        );
        let said = "the previous restart had not finished: pid 10, which pid 11 replaced after HUP 1, \
                    still ran when this signal went";
        let c = new_process_after_each_signal(&e);
        assert!(c.detail.contains(said), "{}", c.detail);
        // The old process was gone when the signal went: not the reason.
        e.exits.push(crate::report::ExitEvent {
            pid: 10,
            at_us: 4_000_000,
            code: Some(0),
            signal: None,
            stopped_by_cleanup: None,
        });
        let c = new_process_after_each_signal(&e);
        assert!(!c.detail.contains("had not finished"), "{}", c.detail);
    }
}
