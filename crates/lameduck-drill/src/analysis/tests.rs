use super::*;
use crate::Signal;
use crate::events::{ReadinessProbe, SentSignal};
use crate::outcome::RawOutcome;
use crate::report::ConditionStatus;
use crate::verdict::{Rules, judge};
use crate::{Expectation, Outcome};

fn record(start_us: u64, end_us: u64, raw: RawOutcome) -> Record {
    Record {
        start_us,
        end_us,
        latency_us: end_us - start_us,
        raw,
        flags: 0,
    }
}

fn ok(start_us: u64) -> Record {
    record(start_us, start_us + 100, RawOutcome::Status(200))
}

fn failed(start_us: u64, outcome: Outcome) -> Record {
    record(start_us, start_us + 50, RawOutcome::Failed(outcome))
}

fn observed(records: Vec<Record>) -> Observed {
    Observed {
        sent: records.len() as u64,
        records,
        details: Vec::new(),
        events: RawEvents::default(),
        exits: Vec::new(),
        load_end_us: 10_000,
        end_us: 12_000,
        expect: Expectation::Stop,
        recorded_exit: None,
    }
}

fn signal_at(observed: &mut Observed, at_us: u64, pid: u32) {
    observed.events.signals.push(SentSignal {
        at_us,
        signal: Signal::TERM,
        pid: Some(pid),
        error: None,
    });
}

fn exit(pid: u32, at_us: u64, code: i32) -> ExitEvent {
    ExitEvent {
        pid,
        at_us,
        code: Some(code),
        signal: None,
        stopped_by_cleanup: None,
    }
}

fn stop_rules(readiness_polled: bool) -> Rules {
    Rules {
        expect: Expectation::Stop,
        signal: Some(Signal::TERM),
        readiness_polled,
        grace_period: std::time::Duration::from_millis(5),
        grpc: false,
    }
}

fn status_of(verdict: &crate::report::Verdict, name: &str) -> ConditionStatus {
    verdict
        .conditions
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no condition {name}"))
        .status
}

#[test]
fn requests_fall_into_windows_around_the_signal_and_the_close() {
    let mut o = observed(vec![
        ok(100),
        ok(1_500),
        failed(2_000, Outcome::Reset),
        failed(3_000, Outcome::Refused),
        failed(3_500, Outcome::Refused),
        ok(3_600),
    ]);
    signal_at(&mut o, 1_000, 7);
    let facts = Facts::find(&o);
    assert_eq!(facts.listener_closed_us, Some(3_000));
    let r = requests(&o, &facts);
    assert_eq!(r.before_signal.ok, 1);
    assert_eq!(r.after_signal.ok, 1);
    assert_eq!(r.after_signal.reset, 1);
    assert_eq!(r.after_listener_close.refused, 2);
    assert_eq!(r.after_listener_close.ok, 1);
    assert_eq!(r.failed_before_listener_close, 1);
    assert_eq!(r.total.total(), 6);
    assert_eq!(r.sent, r.accounted);
}

#[test]
fn a_refused_connect_before_the_signal_is_a_failure_not_the_close() {
    let mut o = observed(vec![failed(500, Outcome::Refused), ok(1_500)]);
    signal_at(&mut o, 1_000, 7);
    o.events.refused_probes = vec![200, 4_000];
    let facts = Facts::find(&o);
    assert_eq!(facts.listener_closed_us, Some(4_000));
    assert_eq!(requests(&o, &facts).failed_before_listener_close, 1);
}

#[test]
fn a_503_counts_as_draining_only_when_answered_after_the_signal() {
    let mut o = observed(vec![
        record(100, 200, RawOutcome::Status(503)),
        record(900, 1_100, RawOutcome::Status(503)),
        record(1_200, 1_300, RawOutcome::Status(500)),
    ]);
    signal_at(&mut o, 1_000, 7);
    let r = requests(&o, &Facts::find(&o));
    assert_eq!(r.total.server_error, 2);
    assert_eq!(r.total.unavailable, 1);
}

#[test]
fn percentiles_are_nearest_rank() {
    let s = stats((1..=100).collect());
    assert_eq!(s.count, 100);
    assert_eq!(s.p50_us, Some(50));
    assert_eq!(s.p90_us, Some(90));
    assert_eq!(s.p99_us, Some(99));
    assert_eq!(s.max_us, Some(100));
    let one = stats(vec![7]);
    assert_eq!(
        (one.p50_us, one.p99_us, one.max_us),
        (Some(7), Some(7), Some(7))
    );
    assert_eq!(stats(Vec::new()).p50_us, None);
}

#[test]
fn latency_phases_split_at_the_signal_and_the_exit() {
    let mut o = observed(vec![
        ok(100),
        ok(1_100),
        ok(1_200),
        ok(5_000),
        failed(1_300, Outcome::Reset),
    ]);
    signal_at(&mut o, 1_000, 7);
    o.exits.push(exit(7, 2_000, 0));
    let l = latency(&o, &Facts::find(&o));
    assert_eq!(l.before_signal.count, 1);
    assert_eq!(l.during.count, 2);
    assert_eq!(l.after_exit.count, 1);
    assert_eq!(l.all.count, 4);
}

#[test]
fn slow_counts_only_ok_responses_strictly_over_the_threshold() {
    let o = observed(vec![
        ok(100),
        record(200, 700, RawOutcome::Status(200)),
        record(300, 400, RawOutcome::Status(200)),
        record(400, 2_400, RawOutcome::Failed(Outcome::Timeout)),
    ]);
    let slow = slow(&o, &Facts::find(&o), Duration::from_micros(100));
    assert_eq!(slow.threshold_us, 100);
    assert_eq!(slow.count, 1);
}

#[test]
fn readiness_flip_is_the_first_non_2xx_answer_after_the_signal() {
    let mut o = observed(vec![ok(100)]);
    signal_at(&mut o, 1_000, 7);
    let probe = |start_us, result| ReadinessProbe {
        start_us,
        end_us: start_us + 10,
        result,
    };
    o.events.readiness = vec![
        probe(500, ProbeResult::Status(503)),
        probe(900, ProbeResult::Status(200)),
        probe(1_100, ProbeResult::Failed(Outcome::Refused)),
        probe(1_200, ProbeResult::Status(503)),
    ];
    let facts = Facts::find(&o);
    assert_eq!(facts.readiness_flip_us, Some(1_210));
    let e = events(&o, &facts);
    let ready: Vec<bool> = e.readiness.iter().map(|c| c.ready).collect();
    assert_eq!(ready, vec![false, true, false, false]);
}

#[test]
fn a_graceful_stop_passes() {
    let mut o = observed(vec![ok(100), ok(1_500), failed(3_000, Outcome::Refused)]);
    signal_at(&mut o, 1_000, 7);
    o.exits.push(exit(7, 3_500, 0));
    o.events.readiness.push(ReadinessProbe {
        start_us: 1_010,
        end_us: 1_020,
        result: ProbeResult::Status(503),
    });
    let facts = Facts::find(&o);
    let verdict = judge(
        stop_rules(true),
        &facts,
        &requests(&o, &facts),
        &events(&o, &facts),
    );
    assert!(verdict.pass, "{verdict:#?}");
}

#[test]
fn a_stop_fails_on_each_broken_condition() {
    let mut o = observed(vec![
        ok(100),
        failed(1_500, Outcome::Incomplete),
        failed(3_000, Outcome::Refused),
    ]);
    signal_at(&mut o, 1_000, 7);
    o.exits.push(exit(7, 9_000, 3));
    let facts = Facts::find(&o);
    let verdict = judge(
        stop_rules(true),
        &facts,
        &requests(&o, &facts),
        &events(&o, &facts),
    );
    assert!(!verdict.pass);
    assert_eq!(
        status_of(&verdict, "no_failures_before_listener_close"),
        ConditionStatus::Fail
    );
    assert_eq!(
        status_of(&verdict, "readiness_flipped_before_listener_close"),
        ConditionStatus::Fail
    );
    assert_eq!(
        status_of(&verdict, "exited_within_grace_period"),
        ConditionStatus::Fail
    );
    assert_eq!(status_of(&verdict, "exit_code_zero"), ConditionStatus::Fail);
    assert_eq!(status_of(&verdict, "accounting"), ConditionStatus::Pass);
    assert_eq!(
        status_of(&verdict, "signals_delivered"),
        ConditionStatus::Pass
    );
}

#[test]
fn readiness_is_skipped_without_a_readiness_url() {
    let mut o = observed(vec![ok(100)]);
    signal_at(&mut o, 1_000, 7);
    o.exits.push(exit(7, 1_500, 0));
    let facts = Facts::find(&o);
    let verdict = judge(
        stop_rules(false),
        &facts,
        &requests(&o, &facts),
        &events(&o, &facts),
    );
    assert_eq!(
        status_of(&verdict, "readiness_flipped_before_listener_close"),
        ConditionStatus::Skipped
    );
    assert!(verdict.pass);
}

#[test]
fn a_restart_fails_on_any_failure_and_checks_service_after_the_exit() {
    let mut o = observed(vec![ok(100), ok(3_000), failed(8_000, Outcome::Refused)]);
    signal_at(&mut o, 1_000, 7);
    o.exits.push(exit(7, 2_000, 0));
    let facts = Facts::find(&o);
    let r = requests(&o, &facts);
    assert_eq!(r.ok_after_exit, Some(1));
    let rules = Rules {
        expect: Expectation::Restart,
        ..stop_rules(false)
    };
    let verdict = judge(rules, &facts, &r, &events(&o, &facts));
    assert!(!verdict.pass);
    assert_eq!(status_of(&verdict, "no_failures"), ConditionStatus::Fail);
    assert_eq!(
        status_of(&verdict, "served_after_old_process_exit"),
        ConditionStatus::Pass
    );
}

#[test]
fn a_sent_accounted_mismatch_fails_the_verdict() {
    let mut o = observed(vec![ok(100)]);
    o.sent = 2;
    let facts = Facts::find(&o);
    let rules = Rules {
        expect: Expectation::Load,
        signal: None,
        ..stop_rules(false)
    };
    let verdict = judge(rules, &facts, &requests(&o, &facts), &events(&o, &facts));
    assert_eq!(status_of(&verdict, "accounting"), ConditionStatus::Fail);
}

#[test]
fn notices_are_counted_by_window() {
    let mut o = observed(vec![ok(100), ok(1_100), ok(1_300)]);
    for r in &mut o.records {
        r.flags |= flags::CONNECTION_CLOSE;
    }
    o.events.goaways = vec![1_050];
    signal_at(&mut o, 1_000, 7);
    let k = keepalive(&o, &Facts::find(&o));
    assert_eq!(k.connection_close.before_signal, 1);
    assert_eq!(k.connection_close.after_signal, 2);
    assert_eq!(k.connection_close.first_after_signal_us, Some(1_200));
    assert_eq!(k.goaway.after_signal, 1);
}

#[test]
fn the_timeline_counts_every_request_once() {
    let mut o = observed((0..1000).map(|i| ok(i * 10)).collect());
    o.records.push(failed(9_999, Outcome::Reset));
    let t = timeline(&o, &Facts::find(&o));
    let total: u64 = t.buckets.iter().map(|b| b.outcomes.total()).sum();
    assert_eq!(total, 1001);
    assert!(t.buckets.len() as u64 * t.bucket_us >= o.end_us);
    assert!(t.buckets.len() <= 150);
}

#[test]
fn bucket_widths_are_round_and_bounded() {
    assert_eq!(timeline::bucket_width(1_000_000), 10_000);
    assert_eq!(timeline::bucket_width(10_000_000), 100_000);
    assert_eq!(timeline::bucket_width(3_600_000_000), 30_000_000);
}

#[test]
fn failures_after_the_close_of_a_stop_drill_are_counted_apart() {
    let records = vec![
        ok(100),
        failed(2_000, Outcome::Reset),
        failed(3_000, Outcome::Refused),
        failed(3_500, Outcome::Refused),
        failed(3_600, Outcome::Reset),
    ];
    let mut o = observed(records.clone());
    signal_at(&mut o, 1_000, 7);
    o.details = (1..5)
        .map(|index| FailureDetail {
            index,
            detail: "x".into(),
        })
        .collect();
    let facts = Facts::find(&o);
    let r = requests(&o, &facts);
    assert_eq!(r.failed, 1);
    assert_eq!(r.not_counted.refused, 2);
    assert_eq!(r.not_counted.reset, 1);
    assert_eq!(r.failed + r.not_counted.total(), r.total.failed());
    let counted: Vec<bool> = failures(&o, &facts)
        .samples
        .iter()
        .map(|s| s.counted)
        .collect();
    assert_eq!(counted, [true, false, false, false]);
    let t = timeline(&o, &facts);
    let excused: u64 = t.buckets.iter().map(|b| b.not_counted.total()).sum();
    assert_eq!(excused, 3);

    // A restart drill holds every failure against the server.
    let mut o = observed(records);
    signal_at(&mut o, 1_000, 7);
    o.expect = Expectation::Restart;
    let facts = Facts::find(&o);
    let r = requests(&o, &facts);
    assert_eq!(r.failed, 4);
    assert_eq!(r.not_counted.total(), 0);
}

#[test]
fn the_exit_code_of_a_process_the_drill_did_not_start_comes_from_its_flight_record() {
    // `--pid`: the drill sees the exit, not its code.
    let exit_unknown = |recorded: Option<u8>| {
        let mut o = observed(vec![ok(100)]);
        signal_at(&mut o, 1_000, 7);
        o.exits.push(ExitEvent {
            pid: 7,
            at_us: 2_000,
            code: None,
            signal: None,
            stopped_by_cleanup: None,
        });
        o.recorded_exit = recorded;
        let facts = Facts::find(&o);
        let r = requests(&o, &facts);
        let verdict = judge(stop_rules(false), &facts, &r, &events(&o, &facts));
        status_of(&verdict, "exit_code_zero")
    };
    assert_eq!(exit_unknown(None), ConditionStatus::Skipped);
    assert_eq!(exit_unknown(Some(0)), ConditionStatus::Pass);
    assert_eq!(exit_unknown(Some(3)), ConditionStatus::Fail);
}
