//! Readiness across upgrades, as a load balancer sees it: probers on the
//! admin port of `lameduck::http::Server` (the fixture's `--server
//! library`) — on one kept-alive connection, as Envoy probes, and on a
//! fresh connection each time — must hear 200 from one process or the
//! other through every handover, never a 503, and must end up on the new
//! process.

mod support;

use lameduck_tests::load::{Config, Load};
use nix::sys::signal::Signal;
use support::{FIXTURE, Scratch, Service, assert_whole, become_subreaper, none_failed};

fn start(dir: &Scratch, extra: &[&str]) -> Service {
    become_subreaper();
    let mut cmd = std::process::Command::new(FIXTURE);
    cmd.args(["--server", "library"])
        .arg("--pid-file")
        .arg(dir.path("pid"))
        .arg("--control")
        .arg(dir.path("ctl"))
        .args(extra);
    Service::start_with(cmd)
}

fn probers(s: &Service, keep_alive: usize, fresh: usize) -> Load {
    Load::start(
        s.admin.expect("an admin listener"),
        Config {
            keep_alive,
            fresh,
            probe: Some("/readyz"),
            ..Config::default()
        },
    )
}

fn traffic(s: &Service) -> Load {
    Load::start(
        s.addr(),
        Config {
            keep_alive: 2,
            fresh: 2,
            ..Config::default()
        },
    )
}

/// One prober on one kept-alive connection, across a handover with a long
/// drain: the old process ends the connection at the commit (an answer in
/// progress says `Connection: close`, an idle connection is closed), so
/// the prober reconnects to the new process instead of hearing the old
/// one's 503 through its drain.
#[test]
fn a_kept_alive_prober_moves_to_the_new_process_at_the_handover() {
    let dir = Scratch::new("probe-keepalive");
    let mut s = start(&dir, &["--drain-delay", "2s", "--settle", "0s"]);
    let old = s.first_pid;
    let probes = probers(&s, 1, 0);
    assert!(probes.wait_until(support::WAIT, |st| st.ok >= 20));

    s.signal(old, Signal::SIGHUP);
    let new = s.wait_successor(old);
    // The old process drains for 2s, readiness false: the prober must not
    // be there to hear it.
    s.wait_event(old, "phase draining");
    let before = probes.stats().ok;
    assert!(probes.wait_until(support::WAIT, |st| st.ok >= before + 20));
    assert_eq!(s.wait_exit(old), 0);
    let stats = probes.stop();
    none_failed("the kept-alive prober", &stats);
    assert!(
        stats.connections >= 2,
        "the prober reconnected: {} connections",
        stats.connections
    );
    assert_whole(&s, new, &dir.path("pid"), &dir.path("ctl"));
    assert_eq!(s.terminate(new), 0);
    s.assert_all_gone();
}

/// Twenty upgrades in a row under traffic, with kept-alive and fresh
/// probers on the admin port: not one 503, not one failed request.
#[test]
fn twenty_upgrades_keep_readiness_200_for_kept_alive_and_fresh_probers() {
    let dir = Scratch::new("probe-twenty");
    let mut s = start(&dir, &["--drain-delay", "100ms"]);
    let probes = probers(&s, 2, 2);
    let load = traffic(&s);
    let mut current = s.first_pid;
    assert!(probes.wait_until(support::WAIT, |st| st.ok >= 20));
    for generation in 1..=20 {
        s.signal(current, Signal::SIGHUP);
        let next = s.wait_successor(current);
        s.wait_event(next, &format!("generation {generation}"));
        assert_eq!(
            s.wait_exit(current),
            0,
            "generation {} exits 0",
            generation - 1
        );
        current = next;
    }
    let before = probes.stats().ok;
    assert!(probes.wait_until(support::WAIT, |st| st.ok >= before + 20));
    let stats = probes.stop();
    let traffic = load.stop();
    eprintln!(
        "twenty upgrades: {} probes answered 200 on {} connections, {} requests served; failed: {} probes, {} requests",
        stats.ok,
        stats.connections,
        traffic.ok,
        stats.failures.len(),
        traffic.failures.len()
    );
    none_failed("the probers", &stats);
    none_failed("the traffic", &traffic);
    assert_whole(&s, current, &dir.path("pid"), &dir.path("ctl"));
    assert_eq!(s.terminate(current), 0);
    s.assert_all_gone();
}
