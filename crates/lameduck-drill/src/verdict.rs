//! The verdict: each condition of the expectation, checked against what was
//! observed, with what was seen in words.

pub(crate) mod restart;

use std::time::Duration;

use crate::analysis::Facts;
use crate::human;
use crate::record::duration_us;
use crate::report::{Condition, ConditionStatus, Events, Requests, ServerRecord, Verdict};
use crate::{Expectation, Signal};

/// What the verdict needs to know beyond the observations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) expect: Expectation,
    pub(crate) signal: Option<Signal>,
    pub(crate) readiness_polled: bool,
    pub(crate) grace_period: Duration,
    /// Outcomes named as gRPC statuses.
    pub(crate) grpc: bool,
}

pub(crate) fn judge(rules: Rules, facts: &Facts, requests: &Requests, events: &Events) -> Verdict {
    let mut conditions = vec![accounting(requests)];
    match rules.expect {
        Expectation::Load => conditions.push(no_failures(requests, rules.grpc)),
        Expectation::Restart => {
            conditions.push(signals_delivered(events));
            conditions.push(restart::new_process_after_each_signal(events));
            conditions.push(restart::readiness_stayed_ready(rules, events));
            conditions.push(no_failures(requests, rules.grpc));
            conditions.push(served_after_exit(facts, requests, events));
        }
        Expectation::Stop => {
            conditions.push(signals_delivered(events));
            conditions.push(no_failures_before_close(facts, requests, rules.grpc));
            conditions.push(readiness_before_close(rules, facts));
            conditions.push(exited_in_time(rules, facts));
            conditions.push(exit_code(facts));
        }
    }
    Verdict {
        pass: conditions.iter().all(|c| c.status != ConditionStatus::Fail),
        expect: rules.expect,
        conditions,
    }
}

/// The condition `flight_record`, when one was asked for: passes when it
/// was read; otherwise fails if it was required, and is a warning (skipped)
/// if not.
pub(crate) fn flight_record(verdict: &mut Verdict, record: &ServerRecord, required: bool) {
    let (status, detail) = match &record.error {
        None => (
            ConditionStatus::Pass,
            format!(
                "read {} ({} pid {}, {} phases, {} inventories)",
                record.path,
                record.app,
                record.pid,
                record.phases.len(),
                record.inventories.len()
            ),
        ),
        Some(error) => {
            let status = if required {
                ConditionStatus::Fail
            } else {
                ConditionStatus::Skipped
            };
            (status, format!("{}: {error}", record.path))
        }
    };
    verdict.pass &= status != ConditionStatus::Fail;
    verdict
        .conditions
        .push(condition("flight_record", status, detail));
}

pub(crate) fn condition(name: &str, status: ConditionStatus, detail: String) -> Condition {
    Condition {
        name: name.to_owned(),
        status,
        detail,
    }
}

pub(crate) fn pass_if(ok: bool) -> ConditionStatus {
    if ok {
        ConditionStatus::Pass
    } else {
        ConditionStatus::Fail
    }
}

fn accounting(requests: &Requests) -> Condition {
    let ok = requests.sent == requests.accounted;
    let detail = if ok {
        format!("all {} requests sent are accounted for", requests.sent)
    } else {
        format!(
            "{} requests sent but {} accounted for (a bug in the drill: please report it)",
            requests.sent, requests.accounted
        )
    };
    condition("accounting", pass_if(ok), detail)
}

fn no_failures(requests: &Requests, grpc: bool) -> Condition {
    let failed = requests.total.failed();
    let detail = if failed == 0 {
        format!("none of the {} requests failed", requests.total.total())
    } else {
        format!(
            "{failed} of {} requests failed: {}",
            requests.total.total(),
            requests.total.describe_failures_for(grpc)
        )
    };
    condition("no_failures", pass_if(failed == 0), detail)
}

fn signals_delivered(events: &Events) -> Condition {
    let failed: Vec<String> = events
        .signals
        .iter()
        .filter_map(|s| {
            let error = s.error.as_ref()?;
            Some(format!("{} at {}: {error}", s.signal, human::at(s.at_us)))
        })
        .collect();
    if events.signals.is_empty() {
        return condition(
            "signals_delivered",
            ConditionStatus::Fail,
            "no signal was sent".to_owned(),
        );
    }
    if failed.is_empty() {
        let sent: Vec<String> = events
            .signals
            .iter()
            .map(|s| {
                format!(
                    "{} to pid {} at {}",
                    s.signal,
                    s.pid.unwrap_or_default(),
                    human::at(s.at_us)
                )
            })
            .collect();
        condition(
            "signals_delivered",
            ConditionStatus::Pass,
            format!("sent {}", sent.join(", ")),
        )
    } else {
        condition(
            "signals_delivered",
            ConditionStatus::Fail,
            format!("could not send {}", failed.join("; ")),
        )
    }
}

fn no_failures_before_close(facts: &Facts, requests: &Requests, grpc: bool) -> Condition {
    let failed = requests.failed_before_listener_close;
    let before = requests.before_signal.plus(&requests.after_signal);
    let when = match facts.listener_closed_us {
        Some(close) => format!("before the listener closed at {}", human::at(close)),
        None => "while the listener was open (it was never seen closing)".to_owned(),
    };
    let detail = if failed == 0 {
        format!(
            "none of the {} requests that started {when} failed",
            before.total()
        )
    } else {
        format!(
            "{failed} of the {} requests that started {when} failed: {}",
            before.total(),
            before.describe_failures_for(grpc)
        )
    };
    condition(
        "no_failures_before_listener_close",
        pass_if(failed == 0),
        detail,
    )
}

fn readiness_before_close(rules: Rules, facts: &Facts) -> Condition {
    const NAME: &str = "readiness_flipped_before_listener_close";
    if !rules.readiness_polled {
        return condition(
            NAME,
            ConditionStatus::Skipped,
            "no readiness URL given (--ready-url)".to_owned(),
        );
    }
    let (status, detail) = match (facts.readiness_flip_us, facts.listener_closed_us) {
        (Some(flip), Some(close)) if flip < close => (
            ConditionStatus::Pass,
            format!(
                "readiness answered non-2xx at {}, {} before the listener closed at {}",
                human::at(flip),
                human::duration(close - flip),
                human::at(close)
            ),
        ),
        (Some(flip), Some(close)) => (
            ConditionStatus::Fail,
            format!(
                "the listener closed at {} but readiness first answered non-2xx only at {}",
                human::at(close),
                human::at(flip)
            ),
        ),
        (None, Some(close)) => (
            ConditionStatus::Fail,
            format!(
                "the listener closed at {} and readiness never answered non-2xx before that",
                human::at(close)
            ),
        ),
        (Some(flip), None) => (
            ConditionStatus::Pass,
            format!(
                "readiness answered non-2xx at {}; the listener was not seen closing",
                human::at(flip)
            ),
        ),
        (None, None) => (
            ConditionStatus::Fail,
            "readiness never answered non-2xx after the signal".to_owned(),
        ),
    };
    condition(NAME, status, detail)
}

fn exited_in_time(rules: Rules, facts: &Facts) -> Condition {
    const NAME: &str = "exited_within_grace_period";
    let grace = human::std_duration(rules.grace_period);
    let signal = rules
        .signal
        .map_or("the signal".to_owned(), |s| s.to_string());
    let Some((sig_us, pid)) = facts.signal else {
        return condition(
            NAME,
            ConditionStatus::Fail,
            "no signal was delivered".to_owned(),
        );
    };
    match &facts.signalled_exit {
        Some(exit) if exit.stopped_by_cleanup.is_none() => {
            let took = exit.at_us.saturating_sub(sig_us);
            let ok = took <= duration_us(rules.grace_period);
            let detail = format!(
                "pid {pid} exited {} after {signal} (grace period {grace})",
                human::duration(took)
            );
            condition(NAME, pass_if(ok), detail)
        }
        Some(exit) => condition(
            NAME,
            ConditionStatus::Fail,
            format!(
                "pid {pid} was still running {grace} after {signal}; the drill's cleanup stopped it with SIG{}",
                exit.stopped_by_cleanup.as_deref().unwrap_or("KILL")
            ),
        ),
        None => condition(
            NAME,
            ConditionStatus::Fail,
            format!("pid {pid} was still running {grace} after {signal}"),
        ),
    }
}

fn exit_code(facts: &Facts) -> Condition {
    const NAME: &str = "exit_code_zero";
    let Some(exit) = &facts.signalled_exit else {
        return condition(
            NAME,
            ConditionStatus::Skipped,
            "the process did not exit".to_owned(),
        );
    };
    if let Some(sig) = &exit.stopped_by_cleanup {
        return condition(
            NAME,
            ConditionStatus::Skipped,
            format!("the drill's cleanup stopped the process with SIG{sig}"),
        );
    }
    match (exit.code, exit.signal) {
        (Some(0), _) => condition(NAME, ConditionStatus::Pass, "exited with code 0".to_owned()),
        (Some(code), _) => condition(
            NAME,
            ConditionStatus::Fail,
            format!("exited with code {code}"),
        ),
        (None, Some(signal)) => {
            let name =
                Signal::from_number(signal).map_or(signal.to_string(), |s| format!("SIG{s}"));
            condition(NAME, ConditionStatus::Fail, format!("killed by {name}"))
        }
        // Not the drill's child (`--pid`): its flight record, when read,
        // says how it ended.
        (None, None) => match facts.recorded_exit {
            Some(0) => condition(
                NAME,
                ConditionStatus::Pass,
                "exited with code 0 (from its flight record)".to_owned(),
            ),
            Some(code) => condition(
                NAME,
                ConditionStatus::Fail,
                format!("exited with code {code} (from its flight record)"),
            ),
            None => condition(
                NAME,
                ConditionStatus::Skipped,
                "exit code unknown: the process was not started by the drill (--flight-record \
                 would tell it)"
                    .to_owned(),
            ),
        },
    }
}

fn served_after_exit(facts: &Facts, requests: &Requests, events: &Events) -> Condition {
    const NAME: &str = "served_after_old_process_exit";
    // Requests stop starting at --duration, and the load ends once the last
    // of them has: an exit in between leaves no request to check with.
    let last_start = facts.last_start_us.unwrap_or(events.load_end_us);
    match (facts.last_exit_us, requests.ok_after_exit) {
        (Some(exit), _) if exit >= last_start => condition(
            NAME,
            ConditionStatus::Skipped,
            format!(
                "the old process exited at {}, after the last request started: lengthen \
                 --duration to check",
                human::at(exit)
            ),
        ),
        (Some(exit), Some(ok)) => condition(
            NAME,
            pass_if(ok > 0),
            format!(
                "{ok} requests that started after the old process exited at {} succeeded",
                human::at(exit)
            ),
        ),
        _ => condition(
            NAME,
            ConditionStatus::Skipped,
            "no signalled process exited during the load (a supervisor that restarts its workers keeps its PID)"
                .to_owned(),
        ),
    }
}
