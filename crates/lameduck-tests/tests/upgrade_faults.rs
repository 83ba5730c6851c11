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
        let left: Vec<_> = std::fs::read_dir(&self.dir.0)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with("hook-"))
            .collect();
        assert!(left.is_empty(), "files left behind: {left:?}");
    }
}

fn no_failures(stats: &Stats) {
    assert!(
        stats.failures.is_empty(),
        "{} of {} failed: {:#?}",
        stats.failures.len(),
        stats.ok + stats.failures.len() as u64,
        stats.failures
    );
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
    let c = Case::start_in(dir, &["--upgrade-timeout", "2s"], &[&hook]);
    let mut c = c;
    let old = c.old();
    let load = c.load();
    c.served(&load, old, 50);

    c.s.signal(old, Signal::SIGHUP);
    let new = hook.wait(&mut c.s);
    c.s.wait_stderr("giving up on the new process");
    hook.release();
    c.s.wait_stderr("upgrade failed; this process goes on serving");
    c.s.wait_exit(new);
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
