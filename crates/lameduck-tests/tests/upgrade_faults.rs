//! Upgrades on an operator's bad day: a new process that is a little too
//! slow, killed at the wrong moment, a signal to the old one mid-way, a
//! storm of `SIGHUP`s, PID 1 of a container. Real processes (the
//! `upgrade-fixture`), real sockets, real signals, under continuous
//! keep-alive and fresh-connection load.
//!
//! The rule every case checks: until the old process has committed to a
//! new one, the new one changes nothing the old one owns; after a
//! rollback, the old process owns everything again; after a commit, a new
//! process's death is seen and said. Each case ends the same way: the port
//! answers, readiness is 200, the PID file names the serving process,
//! `status` on the control socket answers from it, and once it is stopped
//! no process and no zombie is left.
//!
//! Where timing would decide, a fault point (`UPGRADE_FIXTURE_HOOK`) stops
//! the new process at a named moment, and the test acts there.

mod support;

use std::path::PathBuf;
use std::process::Command;

use lameduck_tests::load::{Config, Load, Stats};
use nix::sys::signal::Signal;
use support::{FIXTURE, Hook, Scratch, Service, assert_whole, become_subreaper};

/// The service under test, with its files.
struct Case {
    dir: Scratch,
    pid_file: PathBuf,
    ctl: PathBuf,
    s: Service,
}

impl Case {
    /// Starts the fixture (`--server library`) in `dir` with a PID file, a
    /// control socket, `extra` arguments and `hooks`.
    fn start_in(dir: Scratch, extra: &[&str], hooks: &[&Hook]) -> Self {
        become_subreaper();
        let (pid_file, ctl) = (dir.path("pid"), dir.path("ctl"));
        let mut cmd = Command::new(FIXTURE);
        cmd.args(["--server", "library"])
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--control")
            .arg(&ctl)
            .args(extra);
        if !hooks.is_empty() {
            cmd.env("UPGRADE_FIXTURE_HOOK", Hook::env(hooks));
        }
        let s = Service::start_with(cmd);
        Self {
            dir,
            pid_file,
            ctl,
            s,
        }
    }

    fn old(&self) -> u32 {
        self.s.first_pid
    }

    fn load(&self) -> Load {
        Load::start(
            self.s.addr(),
            Config {
                keep_alive: 3,
                fresh: 3,
                ..Config::default()
            },
        )
    }

    /// Waits until `pid` has answered `n` more requests of `load`.
    fn served(&self, load: &Load, pid: u32, n: u64) {
        let before = load.stats().by_pid.get(&pid).copied().unwrap_or(0);
        assert!(
            load.wait_until(support::WAIT, |st| st
                .by_pid
                .get(&pid)
                .copied()
                .unwrap_or(0)
                >= before + n),
            "pid {pid} did not serve {n} more requests: {:?}",
            load.stats().by_pid
        );
    }

    /// The end of every case: the service is whole, served by `serving`;
    /// then it stops cleanly and leaves nothing behind.
    fn finish(mut self, serving: u32) {
        assert_whole(&self.s, serving, &self.pid_file, &self.ctl);
        assert_eq!(self.s.terminate(serving), 0, "{} exits 0", serving);
        self.s.assert_all_gone();
        assert!(!self.pid_file.exists(), "the PID file is removed at exit");
        assert!(!self.ctl.exists(), "the control socket is removed at exit");
        self.nothing_left();
    }

    /// No file is left in the scratch directory but the hooks' FIFOs: no
    /// PID file, no control socket, no temporary.
    fn nothing_left(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.dir.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with("hook-"))
            .collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }
}

/// Starts the service with `extra` arguments and `hooks`, upgrades it by
/// `SIGHUP`, and waits until the new process runs and the old one settles
/// (ready to take the service back): `(case, old, new)`.
fn settling(dir: Scratch, extra: &[&str], hooks: &[&Hook]) -> (Case, u32, u32) {
    let mut c = Case::start_in(dir, extra, hooks);
    let old = c.old();
    c.s.signal(old, Signal::SIGHUP);
    let new = c.s.wait_successor(old);
    c.s.wait_stderr("this one stays ready to take the service back until it settles");
    (c, old, new)
}

/// A service under load, upgraded by `SIGHUP`, with the new process
/// stopped at a fault point.
struct Midway {
    c: Case,
    load: Load,
    hook: Hook,
    old: u32,
    new: u32,
}

/// Starts the service with `extra` arguments and the new process's
/// `hook`, loads it, sends `SIGHUP`, and waits until the new process is at
/// the hook.
fn upgrade_to(dir: Scratch, hook: Hook, extra: &[&str]) -> Midway {
    let mut c = Case::start_in(dir, extra, &[&hook]);
    let old = c.old();
    let load = c.load();
    c.served(&load, old, 50);
    c.s.signal(old, Signal::SIGHUP);
    let new = hook.wait(&mut c.s);
    Midway {
        c,
        load,
        hook,
        old,
        new,
    }
}

/// Whether a shutdown report in `stderr` (JSON lines) says `what`.
fn report_says(stderr: &str, what: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.contains("\"shutdown report\"") && l.contains(what))
}

fn no_failures(stats: &Stats) {
    support::none_failed("the load", stats);
}

/// A new process whose ready report comes after the old one gave up on it:
/// the old process serves on alone; the new one never runs and touches
/// nothing (no connection taken, no file, no filter on the socket).
fn late_ready(hook_spec_delay: Option<&str>) {
    let dir = Scratch::new("late");
    let hook = Hook::new(&dir, 1, "ready");
    let hook = match hook_spec_delay {
        Some(delay) => hook.with_delay(delay),
        None => hook,
    };
    let Midway {
        c,
        load,
        hook,
        old,
        new,
    } = upgrade_to(dir, hook, &["--upgrade-timeout", "2s"]);
    c.s.wait_stderr("giving up on the new process");
    hook.release();
    // Logged once the new process is stopped and reaped.
    c.s.wait_stderr("upgrade failed; this process goes on serving");
    assert!(
        !c.s.seen.contains(&(new, "phase running".into())),
        "the late process never ran: {:?}",
        c.s.seen
    );

    c.served(&load, old, 50);
    let stats = load.stop();
    no_failures(&stats);
    assert_eq!(
        stats.by_pid.keys().copied().collect::<Vec<_>>(),
        vec![old],
        "only the old process served"
    );
    c.finish(old);
}

#[test]
fn a_ready_report_just_after_the_timeout_changes_nothing() {
    late_ready(None);
}

#[test]
fn a_ready_report_a_second_after_the_timeout_changes_nothing() {
    late_ready(Some("1s"));
}

/// The new process is killed (`SIGKILL`) at `point`, in the middle of the
/// upgrade. Before the commit the old process rolls back; after it, before
/// the new one settled, the old process takes the service back. Either way
/// it serves again, alone, owns and checks its PID file and control socket,
/// and removes what the dead process left half made.
fn killed_at(point: &'static str, taken_back: bool) {
    let dir = Scratch::new("killed");
    let hook = Hook::new(&dir, 1, point);
    // A long settle time: a death after "running" happens before the
    // handover is final, whatever the machine's speed.
    let Midway {
        c, load, old, new, ..
    } = upgrade_to(dir, hook, &["--settle", "60s"]);
    c.s.signal(new, Signal::SIGKILL);
    c.s.wait_stderr("upgrade failed; this process goes on serving");
    if taken_back {
        c.s.wait_stderr("this process takes the service back and serves again");
    }
    c.s.wait_stderr("rollback: this process accepts on its listening sockets again");

    // The old process serves everything again: fresh connections, the
    // keep-alive ones, the probes, the control socket.
    c.served(&load, old, 200);
    let stats = load.stop();
    // The new process's accepted connections die with it (a SIGKILL); only
    // connections it held may fail, none of the old process's.
    for f in &stats.failures {
        assert!(
            !f.contains("connect:"),
            "a connection was refused: {:#?}",
            stats.failures
        );
    }
    c.finish(old);
}

#[test]
fn a_new_process_killed_before_it_is_ready_leaves_the_old_one_whole() {
    killed_at("ready", false);
}

#[test]
fn a_new_process_killed_just_after_the_commit_is_taken_back() {
    killed_at("commit", true);
}

#[test]
fn a_new_process_killed_as_it_writes_the_pid_file_is_taken_back() {
    killed_at("pid-file", true);
}

#[test]
fn a_new_process_killed_as_it_takes_the_control_socket_is_taken_back() {
    killed_at("control-socket", true);
}

#[test]
fn a_new_process_killed_once_it_runs_is_taken_back() {
    killed_at("running", true);
}

/// The new process dies once the handover is final and the old process
/// drains: too late to take back. The old process says so as an error,
/// removes the files that name the dead process, and exits non-zero.
#[test]
fn a_new_process_that_dies_after_the_handover_is_said_and_the_exit_is_not_clean() {
    let dir = Scratch::new("too-late");
    let hook = Hook::new(&dir, 0, "handed-over");
    let mut c = Case::start_in(dir, &["--settle", "0s"], &[&hook]);
    let old = c.old();
    c.s.signal(old, Signal::SIGHUP);
    let new = c.s.wait_successor(old);
    assert_eq!(hook.wait(&mut c.s), old);
    c.s.signal(new, Signal::SIGKILL);
    hook.release();
    c.s.wait_stderr("too late to take it back");
    assert_eq!(c.s.wait_exit(old), 1, "the old process's exit is not clean");
    c.s.assert_all_gone();
    assert!(
        !c.pid_file.exists(),
        "the PID file named the dead process: removed"
    );
    assert!(
        !c.ctl.exists(),
        "the dead process's control socket: removed"
    );
}

/// `SIGTERM` to the old process at `point` of the upgrade: the service is
/// being stopped, and the upgrade gives way. The new process is refused
/// (before the commit) or told the old one took everything back (after
/// it) and stopped; the old process drains and exits 0; no request fails
/// before the listener closes, and nothing is left: no process, no file.
/// The old process says it stops (`then` once the new process is let go),
/// never that it goes on serving.
fn sigterm_to_the_old_process_at(point: &'static str, log: &str, then: &str) {
    let dir = Scratch::new("sigterm");
    let hook = Hook::new(&dir, 1, point);
    let Midway {
        mut c,
        load,
        hook,
        old,
        new,
    } = upgrade_to(dir, hook, &["--settle", "60s"]);
    c.s.signal(old, Signal::SIGTERM);
    c.s.wait_stderr(log);
    // The old process drains: it serves what comes meanwhile.
    let stats = load.stop();
    no_failures(&stats);
    hook.release();
    c.s.wait_stderr(then);
    assert_eq!(c.s.wait_exit(old), 0, "the old process drains and exits 0");
    c.s.assert_all_gone();
    assert!(
        !c.s.seen.contains(&(new, "exit code=1".into())),
        "{:?}",
        c.s.seen
    );
    // It stops: it never says it goes on serving.
    let said = c.s.stderr();
    assert!(
        !said.contains("this process goes on serving"),
        "a stopping process said it goes on serving:\n{said}"
    );
    c.nothing_left();
}

/// `SIGTERM` to the old process once the new one runs, before it settled,
/// while a request that ends only at its cancel signal is in flight on the
/// new process: the new process is told to stop and gets its whole
/// graceful shutdown — here a 4 s shutdown timeout, then the cancel — so
/// the client hears the end its cancel signal makes (the server's `503`,
/// or the handler's own answer), not a connection cut by a kill. The new
/// process reports its own end (3: work cancelled at its deadline), the
/// old one exits 0 and says how the new one ended.
#[test]
fn sigterm_to_the_old_process_while_it_settles_lets_the_new_one_shut_down_gracefully() {
    let dir = Scratch::new("sigterm-settling");
    let (mut c, old, new) = settling(dir, &["--settle", "60s", "--shutdown-timeout", "4s"], &[]);
    // The old process accepts nothing since the commit: a fresh connection
    // goes to the new one.
    let addr = c.s.addr();
    let slow = std::thread::spawn(move || support::get(addr, "/slow"));
    c.s.wait_event(new, "slow started");
    c.s.signal(old, Signal::SIGTERM);
    let answer = slow.join().unwrap();
    // At the cancel signal the server answers 503, unless the handler's
    // own answer to it is first: either is a clean end, not a cut.
    assert!(
        matches!(&answer, Ok((503, _))) || matches!(&answer, Ok((200, b)) if b == "cancelled\n"),
        "the request in flight on the new process ends at its cancel signal: {answer:?}\nstderr:\n{}",
        c.s.stderr()
    );
    // Its own report: graceful, with work cancelled at its shutdown
    // timeout (3). A killed process reports nothing.
    assert_eq!(
        c.s.wait_exit(new),
        3,
        "the new process ends its own shutdown"
    );
    assert_eq!(c.s.wait_exit(old), 0, "the old process drains and exits 0");
    let said = c.s.stderr();
    assert!(
        said.contains("the new process told to stop has exited"),
        "the old process says how the new one ended:\n{said}"
    );
    assert!(!said.contains("killing it"), "nothing was killed:\n{said}");
    assert!(
        report_says(
            &said,
            &format!("process {new}, told to stop, exited: exit code 3")
        ),
        "the old process's report says how the new one ended:\n{said}"
    );
    c.s.assert_all_gone();
    c.nothing_left();
}

/// `SIGTERM` to the old process while the new one settles, and the new
/// one, told to stop, never finishes its shutdown (held at the `draining`
/// fault point): the old process kills it once it has outlived a whole
/// shutdown of the budget, says so as an error, and exits non-zero.
#[test]
fn a_new_process_that_outlives_its_stop_bound_is_killed_and_the_old_exit_says_so() {
    let dir = Scratch::new("stop-bound");
    let hook = Hook::new(&dir, 1, "draining");
    let (mut c, old, new) = settling(dir, &["--settle", "60s", "--grace-period", "6s"], &[&hook]);
    c.s.signal(old, Signal::SIGTERM);
    assert_eq!(hook.wait(&mut c.s), new);
    assert_eq!(c.s.wait_exit(old), 1, "the old process's exit is not clean");
    let said = c.s.stderr();
    assert!(
        said.contains("the new process did not finish its shutdown in time and was killed"),
        "{said}"
    );
    assert!(
        report_says(
            &said,
            &format!("process {new}, told to stop, did not exit within")
        ),
        "the old process's report says the new one was killed:\n{said}"
    );
    assert!(
        !c.s.seen
            .iter()
            .any(|(p, e)| *p == new && e.starts_with("exit code=")),
        "the new process was killed, not ended: {:?}",
        c.s.seen
    );
    c.s.assert_all_gone();
    c.nothing_left();
}

/// `SIGTERM` to the new process during the settle window (its drain lasts
/// 3 s): a successor that is leaving is not handed the service. The old
/// process takes it back at once — saying the new one began shutting down,
/// not that it died — serves every request meanwhile, and lets the new one
/// finish its drain and exit 0; the service ends whole, served by the old
/// process.
#[test]
fn a_new_process_that_begins_shutting_down_while_it_settles_is_taken_back() {
    let dir = Scratch::new("settling-term");
    let (mut c, old, new) = settling(dir, &["--settle", "60s", "--drain-delay", "3s"], &[]);
    let load = c.load();
    c.served(&load, new, 50);
    c.s.signal(new, Signal::SIGTERM);
    c.s.wait_stderr("began shutting down before it settled");
    c.s.wait_stderr("this process takes the service back and serves again");
    c.served(&load, old, 200);
    assert_eq!(c.s.wait_exit(new), 0, "the new process drains and exits 0");
    c.s.wait_stderr("the new process told to stop has exited");
    c.served(&load, old, 50);
    let stats = load.stop();
    no_failures(&stats);
    let said = c.s.stderr();
    assert!(!said.contains("upgrade complete"), "{said}");
    assert!(!said.contains("killing it"), "{said}");
    c.finish(old);
}

/// The new process still starts (it waits at its ready report, as a slow
/// start-up would): the upgrade is abandoned, and said so, before the old
/// process's report.
#[test]
fn sigterm_to_the_old_process_before_the_commit_is_said_as_a_shutdown_not_a_rollback() {
    sigterm_to_the_old_process_at(
        "ready",
        "giving up on the new process",
        "upgrade abandoned: this process is shutting down",
    );
}

#[test]
fn sigterm_to_the_old_process_before_the_handover_is_final_takes_back_and_drains() {
    sigterm_to_the_old_process_at(
        "running",
        "a shutdown began before the handover to the new process was final",
        "the new process told to stop has exited",
    );
}

/// A storm of `SIGHUP`s at every stage of an upgrade — to the old process
/// as it starts, while the new one starts, once it is committed to, and to
/// the new process before the handover is final — makes exactly one
/// handover: every other request is refused as busy, nothing fails, and no
/// third process appears.
#[test]
fn a_hup_storm_makes_one_handover_and_nothing_else() {
    const BUSY: &str = "an upgrade requested by SIGHUP is under way";
    let dir = Scratch::new("storm");
    let hook = Hook::new(&dir, 1, "running");
    let mut c = Case::start_in(dir, &["--settle", "3s"], &[&hook]);
    let old = c.old();
    let load = c.load();
    c.served(&load, old, 50);

    let storm = |c: &Case, pid: u32| {
        for _ in 0..20 {
            c.s.signal(pid, Signal::SIGHUP);
        }
    };
    // Signals of one kind merge while pending: each burst is sent once the
    // previous one was taken, as an event of the processes shows.
    storm(&c, old);
    c.s.wait_for(|_, e| e == "generation 1");
    storm(&c, old);
    c.s.wait_stderr_count(BUSY, 1);
    let new = hook.wait(&mut c.s);
    storm(&c, old);
    c.s.wait_stderr_count(BUSY, 2);
    // The new process runs, its parent has not made it the main one yet:
    // it must not upgrade itself.
    storm(&c, new);
    hook.release();
    c.s.wait_stderr("has not finished handing over to this one");
    assert_eq!(
        c.s.wait_exit(old),
        0,
        "the old process hands over and exits 0"
    );
    c.served(&load, new, 100);
    let stats = load.stop();
    no_failures(&stats);
    let generations: Vec<&String> =
        c.s.seen
            .iter()
            .filter(|(_, e)| e.starts_with("generation "))
            .map(|(_, e)| e)
            .collect();
    assert_eq!(
        generations,
        ["generation 0", "generation 1"],
        "one handover"
    );
    c.finish(new);
}

/// PID 1 of a PID namespace (a container's entry point): a new process
/// would die with it — the kernel kills every process of the namespace
/// when its init exits. The upgrade is refused, saying why, and the
/// service keeps serving. Needs root (`unshare --pid`); skipped otherwise.
#[test]
fn an_upgrade_as_pid_1_of_a_pid_namespace_is_refused_and_the_service_keeps_serving() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to make a PID namespace (unshare --pid)");
        return;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: no unshare(1) on this machine");
        return;
    }
    become_subreaper();
    let dir = Scratch::new("pid1");
    let (pid_file, ctl) = (dir.path("pid"), dir.path("ctl"));
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", FIXTURE])
        .args(["--server", "library"])
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--control")
        .arg(&ctl);
    let mut s = Service::spawn(cmd);
    // Inside the namespace the fixture is pid 1: its events say so.
    let (_, listening) = s.wait_for(|p, e| p == 1 && e.starts_with("listening http "));
    s.addr = Some(listening["listening http ".len()..].parse().unwrap());
    s.wait_for(|p, e| p == 1 && e == "phase running");
    s.admin = s
        .seen
        .iter()
        .find_map(|(p, e)| (*p == 1).then(|| e.strip_prefix("listening admin "))?)
        .map(|a| a.parse().unwrap());
    // Its pid outside: the child of unshare.
    let outside = support::children_of(s.first_pid)
        .into_iter()
        .next()
        .expect("unshare's child");
    s.pids.insert(outside);
    let load = Load::start(
        s.addr(),
        Config {
            keep_alive: 3,
            fresh: 3,
            ..Config::default()
        },
    );
    assert!(load.wait_until(support::WAIT, |st| st.ok >= 50));

    s.signal(outside, Signal::SIGHUP);
    s.wait_stderr("a new process would not outlive this one: this process is PID 1");
    assert_eq!(
        support::control(&ctl, b"upgrade\n").split(':').next(),
        Some("error a new process would not outlive this one")
    );
    let before = load.stats().ok;
    assert!(load.wait_until(support::WAIT, |st| st.ok >= before + 100));
    no_failures(&load.stop());
    assert!(
        !s.seen.iter().any(|(_, e)| e == "generation 1"),
        "no new process was started"
    );
    support::assert_whole_in_namespace(&s, 1, outside, &pid_file, &ctl);
    s.signal(outside, Signal::SIGTERM);
    assert_eq!(s.wait_exit(1), 0);
    s.assert_all_gone();
}
