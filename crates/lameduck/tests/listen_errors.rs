//! A listener that cannot be bound says why in its own message: `{e}`
//! alone names the operating system's reason, as a service that returns
//! the error with `?` prints it.
#![cfg(all(unix, any(feature = "systemd", feature = "upgrade")))]

use std::io;

use lameduck::listen::{ListenErrorKind, Listeners};

#[test]
fn a_tcp_listener_on_a_port_in_use_names_the_reason_in_its_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut listeners = Listeners::from_env().unwrap();
    let err = listeners.tcp("admin", addr).unwrap_err();
    assert_eq!(err.kind(), ListenErrorKind::Bind);
    let message = err.to_string();
    assert!(
        message.starts_with("cannot bind the \"admin\" listener")
            && message.contains("Address already in use"),
        "{message}"
    );
    assert_eq!(
        err.io_error().map(io::Error::kind),
        Some(io::ErrorKind::AddrInUse)
    );
    // Said once: not again as a source.
    assert!(std::error::Error::source(&err).is_none());
    // As an `io::Error`, it keeps the operating system's kind.
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn a_unix_listener_in_a_missing_directory_names_the_reason_in_its_message() {
    let mut listeners = Listeners::from_env().unwrap();
    let err = listeners
        .unix("control", "/nonexistent-lameduck-dir/control.sock")
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("/nonexistent-lameduck-dir/control.sock")
            && message.contains("No such file or directory"),
        "{message}"
    );
}
