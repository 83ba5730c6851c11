//! `lameduck run`: a process's age in the flight record is its age, from
//! its start (`/proc/PID/stat`), not from when lameduck first listed it.

mod run_support;

use std::path::Path;
use std::time::Instant;

use nix::sys::signal::Signal;
use run_support::*;

/// Clock ticks per second: the unit of a start time in `/proc/PID/stat`.
fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .map_or(100, |hz| hz as u64)
}

/// Nanoseconds since boot, suspend included: the clock of a start time.
fn boot_nanos() -> u128 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).unwrap();
    t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128
}

/// `pid`'s start time (`/proc/PID/stat`'s 22nd field), in clock ticks
/// after boot.
fn start_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// The age, in ms, of the work labelled `label` in the record's inventory
/// taken at `at`.
fn age_ms(path: &Path, at: &str, label: &str) -> u64 {
    let rec = record(path);
    let item = inventory_work(&rec, at)
        .iter()
        .find(|w| w["label"] == label)
        .unwrap_or_else(|| panic!("{label:?} is not in the inventory at {at}: {rec}"));
    item["age_ms"].as_u64().unwrap()
}

/// A process the program started before it was ready, half a second (by
/// the kernel's clock) before the stop, is named at Stopping with its age
/// since it started: at least the time from its start (its start time
/// rounded up to the next tick) to the stop signal, at most the time from
/// its start (rounded down) to lameduck's exit. lameduck tracks the
/// program's processes from the drain on; it gave the age since then
/// ("running for 2 ms" of a process that had run for minutes).
#[test]
fn a_process_that_ran_before_the_drain_is_named_with_its_age_since_it_started() {
    let dir = Scratch::new("ages");
    let (record, pid_file) = (dir.path("record.json"), dir.path("sleep.pid"));
    let script = format!(
        "trap 'exit 0' TERM; sleep 600 & echo $! > {pid}.tmp; mv {pid}.tmp {pid}; touch {{ready}}; wait",
        pid = pid_file.display(),
    );
    let mut run = start_ready_when_touched(
        &dir,
        &[
            "--drain-delay",
            "0s",
            "--flight-record",
            record.to_str().unwrap(),
        ],
        &script,
    );
    let sleep: i32 = until_file(&pid_file).trim().parse().unwrap();
    let start = start_ticks(sleep);
    let hz = ticks_per_second();
    let tick = 1_000_000_000 / u128::from(hz);
    // The child has run for half a second by the kernel's clock, far longer
    // than lameduck takes from the drain to Stopping (the age it gave).
    let waited = Instant::now();
    while boot_nanos() < u128::from(start + hz / 2) * tick {
        assert!(waited.elapsed() < WAIT, "the boot clock stands still");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let signalled = boot_nanos();
    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait(), Some(0), "{}", run.log());
    let exited = boot_nanos();

    let age = u128::from(age_ms(
        &record,
        "stopping",
        &format!("pid {sleep}: sleep 600"),
    ));
    // Milliseconds rounded down: up to 1 ms short.
    let at_least = signalled - (u128::from(start) + 1) * tick;
    assert!(
        age * 1_000_000 + 1_000_000 > at_least,
        "{age} ms, when it had run for {} ms at the stop signal: {}",
        at_least / 1_000_000,
        run.log()
    );
    let at_most = exited - u128::from(start) * tick;
    assert!(
        age * 1_000_000 <= at_most,
        "{age} ms, when it had run for {} ms at most as lameduck exited",
        at_most / 1_000_000
    );
}
