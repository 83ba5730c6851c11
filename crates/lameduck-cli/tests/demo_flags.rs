//! `lameduck demo` refusing addresses it cannot serve: the real binary, real
//! sockets on 127.0.0.1. Each error names the flag at fault and exits 2, as
//! `lameduck demo --help` documents for a listener that cannot be set up.

mod support;

use std::net::TcpListener;

#[test]
fn demo_with_admin_on_the_listen_address_names_both_flags_before_binding() {
    let (port, _) = support::free_ports();
    let addr = format!("127.0.0.1:{port}");
    let out = support::run(&["demo", "--listen", &addr, "--admin", &addr]);
    out.assert_code(2);
    assert!(
        out.stderr.contains(&format!(
            "lameduck: error: --admin {addr} is the address --listen serves"
        )),
        "{out:#?}"
    );
    // Refused before binding: no OS error to report.
    assert!(!out.stderr.contains("os error"), "{out:#?}");
    assert!(!out.stdout.contains("listening on"), "{out:#?}");
}

#[test]
fn demo_names_the_flag_whose_bind_the_os_refused_and_why() {
    // A port this test holds: the demo cannot bind it.
    let held = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let taken = held.local_addr().expect("a local address").to_string();
    let (free, _) = support::free_ports();
    let free = format!("127.0.0.1:{free}");
    for (flag, args) in [
        ("--listen", ["--listen", &taken, "--admin", &free]),
        ("--admin", ["--listen", &free, "--admin", &taken]),
    ] {
        let out = support::run(&[&["demo"][..], &args[..]].concat());
        out.assert_code(2);
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("lameduck: error: {flag} {taken}: "))
                && first.contains("Address already in use"),
            "{flag}: {out:#?}"
        );
    }
    drop(held);
}

#[test]
fn demo_duration_flags_refuse_zero_upgrade_timeouts_and_negative_values_as_bad_flags() {
    // Each exits 2, a bad flag value, before anything is bound: an upgrade
    // timeout of nothing would fail every upgrade, and a negative value is
    // refused for what it is, not taken for another flag.
    for (flag, value, says) in [
        ("--upgrade-timeout", "0s", "0s would fail every upgrade"),
        ("--upgrade-timeout", "-1s", "cannot be negative"),
        ("--idle-timeout", "-1s", "cannot be negative"),
        ("--idle-timeout", "0s", "say `off`"),
    ] {
        let out = support::run(&[
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            flag,
            value,
        ]);
        out.assert_code(2);
        assert!(
            out.stderr.contains(flag) && out.stderr.contains(says),
            "{flag} {value}: {out:#?}"
        );
        // Neither flag takes 0s: no message may offer it.
        assert!(
            !out.stderr.contains("0s or more"),
            "{flag} {value}: {out:#?}"
        );
        assert!(!out.stdout.contains("listening on"), "{out:#?}");
    }
}
