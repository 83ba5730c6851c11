//! What happened to one request, and how errors are sorted into outcomes.
//!
//! The classes are chosen so that each one points at a different server fault:
//! a `refused` request found no listener, a `reset` one had its connection
//! torn down, an `incomplete` one got part of an answer before the peer
//! closed, a `timeout` got nothing in time.

use std::error::Error as StdError;
use std::io;

use serde::{Deserialize, Serialize};

/// The outcome class of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx response, read to the end.
    Ok,
    /// 503 answered after the first signal: a server shedding load while
    /// it drains, or (lameduck) answering work it cancelled at its shutdown
    /// timeout, long after the drain (`Retry-After: 1`, `shutting down`;
    /// the failure samples give what the server said). Still a failed
    /// request.
    Unavailable,
    /// Any other 5xx, or a 503 before any signal.
    ServerError,
    /// A complete response with a status that is neither 2xx nor 5xx.
    OtherStatus,
    /// The connect was refused: no listener.
    Refused,
    /// The connection was reset (or the request could not be written to it).
    Reset,
    /// The peer closed the connection before the response was complete
    /// (mid-headers or mid-body).
    Incomplete,
    /// No complete response within the request timeout.
    Timeout,
    /// Anything else (protocol errors, local connect errors); the failure
    /// samples in the report carry the detail.
    Error,
}

impl Outcome {
    /// Every class, in report order.
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::Unavailable,
        Outcome::ServerError,
        Outcome::OtherStatus,
        Outcome::Refused,
        Outcome::Reset,
        Outcome::Incomplete,
        Outcome::Timeout,
        Outcome::Error,
    ];

    /// Whether the request failed (anything but `Ok`).
    pub fn is_failure(self) -> bool {
        self != Outcome::Ok
    }

    /// The name used in JSON and in the summary (`"server_error"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unavailable => "unavailable",
            Outcome::ServerError => "server_error",
            Outcome::OtherStatus => "other_status",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Incomplete => "incomplete",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }

    /// A short human label for a drill of gRPC calls (`"UNAVAILABLE after
    /// the signal"`) when `grpc`, else [`label`](Self::label).
    pub fn label_for(self, grpc: bool) -> &'static str {
        if !grpc {
            return self.label();
        }
        match self {
            Outcome::Ok => "OK",
            Outcome::Unavailable => "UNAVAILABLE after the signal",
            Outcome::ServerError => "UNAVAILABLE, 5xx",
            Outcome::OtherStatus => "other gRPC status",
            other => other.label(),
        }
    }

    /// A short human label (`"503 after the signal"`): not `draining`,
    /// which a 503 at the cancel signal is not.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok (2xx)",
            Outcome::Unavailable => "503 after the signal",
            Outcome::ServerError => "other 5xx",
            Outcome::OtherStatus => "other status",
            Outcome::Refused => "refused",
            Outcome::Reset => "reset",
            Outcome::Incomplete => "incomplete",
            Outcome::Timeout => "timeout",
            Outcome::Error => "other error",
        }
    }
}

/// What a request ended with, before the signal time is known: a 503 (or
/// a gRPC `UNAVAILABLE`) becomes [`Outcome::Unavailable`] or
/// [`Outcome::ServerError`] once it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawOutcome {
    /// An HTTP response read to the end (a gRPC one without `grpc-status`).
    Status(u16),
    /// A gRPC call that ended with this status code.
    Grpc(u8),
    Failed(Outcome),
}

/// gRPC's `UNAVAILABLE`: the code a draining server sheds calls with.
pub(crate) const GRPC_UNAVAILABLE: u8 = 14;

impl RawOutcome {
    pub(crate) fn resolve(self, answered_after_signal: bool) -> Outcome {
        match self {
            RawOutcome::Status(status) => classify_status(status, answered_after_signal),
            RawOutcome::Grpc(code) => classify_grpc(code, answered_after_signal),
            RawOutcome::Failed(outcome) => outcome,
        }
    }

    /// Whether it counts as `ok` (2xx, or gRPC `OK`).
    pub(crate) fn is_ok(self) -> bool {
        matches!(self, RawOutcome::Status(200..=299) | RawOutcome::Grpc(0))
    }
}

/// Sorts a gRPC call by its status: `OK`, `UNAVAILABLE` (as a 503: after the
/// signal, the server shedding calls while it drains; before, a failure),
/// any other status.
pub(crate) fn classify_grpc(code: u8, answered_after_signal: bool) -> Outcome {
    match code {
        0 => Outcome::Ok,
        GRPC_UNAVAILABLE if answered_after_signal => Outcome::Unavailable,
        GRPC_UNAVAILABLE => Outcome::ServerError,
        _ => Outcome::OtherStatus,
    }
}

/// The name of a gRPC status code (`UNAVAILABLE`), or its number.
pub(crate) fn grpc_code_name(code: u8) -> std::borrow::Cow<'static, str> {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES
        .get(usize::from(code))
        .map_or_else(|| code.to_string().into(), |name| (*name).into())
}

/// Sorts a complete response by its status.
pub(crate) fn classify_status(status: u16, answered_after_signal: bool) -> Outcome {
    match status {
        200..=299 => Outcome::Ok,
        503 if answered_after_signal => Outcome::Unavailable,
        500..=599 => Outcome::ServerError,
        _ => Outcome::OtherStatus,
    }
}

/// Sorts a failed TCP connect.
pub(crate) fn classify_connect(err: &io::Error) -> Outcome {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Outcome::Refused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Outcome::Reset,
        io::ErrorKind::TimedOut => Outcome::Timeout,
        _ => Outcome::Error,
    }
}

/// Sorts an error from sending a request or reading its response.
///
/// The whole `source()` chain is searched, innermost causes first, because
/// hyper wraps the I/O and HTTP/2 errors that tell what really happened.
pub(crate) fn classify_error(err: &(dyn StdError + 'static), http2: bool) -> Outcome {
    let mut chain: Vec<&(dyn StdError + 'static)> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        chain.push(e);
        next = e.source();
    }
    for e in chain.iter().rev() {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    return Outcome::Reset;
                }
                // h2 reports a peer that closed without GOAWAY as a broken
                // pipe; with HTTP/1.1 a broken pipe is a failed write to a
                // connection the peer had torn down.
                io::ErrorKind::BrokenPipe if http2 => return Outcome::Incomplete,
                io::ErrorKind::BrokenPipe => return Outcome::Reset,
                io::ErrorKind::UnexpectedEof => return Outcome::Incomplete,
                io::ErrorKind::TimedOut => return Outcome::Timeout,
                _ => {}
            }
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if h2.is_io() {
                continue;
            }
            // A stream reset or a GOAWAY with an error code: the server tore
            // the request down.
            if h2.reason().is_some_and(|r| r != h2::Reason::NO_ERROR) {
                return Outcome::Reset;
            }
            if h2.is_go_away() {
                return Outcome::Incomplete;
            }
        }
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() {
                return Outcome::Incomplete;
            }
            if hyper.is_timeout() {
                return Outcome::Timeout;
            }
        }
    }
    Outcome::Error
}

/// Whether an HTTP/2 error says the server did not process the request
/// (`REFUSED_STREAM`, or a stream above a GOAWAY's last stream id), so a
/// client may send it again on another connection, as real clients do.
pub(crate) fn is_unprocessed_h2(err: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away() && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        next = e.source();
    }
    false
}

/// The one-line description of an error, with its causes.
pub(crate) fn describe(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] io::Error);

    #[test]
    fn a_503_after_the_signal_is_not_labelled_draining_since_a_cancel_time_503_comes_after_the_drain()
     {
        // The class holds load shed while draining and lameduck's answer to
        // work cancelled at its shutdown timeout alike: its label claims
        // neither; the failure sample's detail tells them apart.
        for grpc in [false, true] {
            let label = Outcome::Unavailable.label_for(grpc);
            assert!(!label.contains("draining"), "{label}");
            assert!(label.ends_with("after the signal"), "{label}");
        }
    }

    #[test]
    fn statuses_sort_by_class_and_signal_time() {
        assert_eq!(classify_status(200, false), Outcome::Ok);
        assert_eq!(classify_status(204, true), Outcome::Ok);
        assert_eq!(classify_status(503, true), Outcome::Unavailable);
        assert_eq!(classify_status(503, false), Outcome::ServerError);
        assert_eq!(classify_status(502, true), Outcome::ServerError);
        assert_eq!(classify_status(404, true), Outcome::OtherStatus);
        assert_eq!(classify_status(301, false), Outcome::OtherStatus);
    }

    #[test]
    fn refused_connect_is_refused() {
        let err = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_connect(&err), Outcome::Refused);
        let err = io::Error::from(io::ErrorKind::AddrNotAvailable);
        assert_eq!(classify_connect(&err), Outcome::Error);
    }

    #[test]
    fn causes_are_searched_through_the_chain() {
        let reset = Outer(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(classify_error(&reset, false), Outcome::Reset);
        let eof = Outer(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(classify_error(&eof, false), Outcome::Incomplete);
        let other = Outer(io::Error::other("strange"));
        assert_eq!(classify_error(&other, false), Outcome::Error);
    }

    #[test]
    fn broken_pipe_depends_on_the_protocol() {
        let pipe = Outer(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(classify_error(&pipe, false), Outcome::Reset);
        assert_eq!(classify_error(&pipe, true), Outcome::Incomplete);
    }

    #[test]
    fn h2_stream_reset_is_a_reset_and_refused_stream_may_be_retried() {
        let cancel = h2::Error::from(h2::Reason::CANCEL);
        assert_eq!(classify_error(&cancel, true), Outcome::Reset);
        assert!(!is_unprocessed_h2(&cancel));
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(is_unprocessed_h2(&refused));
    }

    #[test]
    fn describe_joins_causes_once() {
        let err = Outer(io::Error::other("inner"));
        assert_eq!(describe(&err), "outer: inner");
    }

    #[test]
    fn grpc_calls_are_sorted_by_status_and_unavailable_by_the_signal() {
        assert_eq!(RawOutcome::Grpc(0).resolve(false), Outcome::Ok);
        assert!(RawOutcome::Grpc(0).is_ok() && !RawOutcome::Grpc(14).is_ok());
        assert_eq!(RawOutcome::Grpc(14).resolve(true), Outcome::Unavailable);
        assert_eq!(RawOutcome::Grpc(14).resolve(false), Outcome::ServerError);
        assert_eq!(RawOutcome::Grpc(13).resolve(true), Outcome::OtherStatus);
        assert_eq!(RawOutcome::Grpc(1).resolve(false), Outcome::OtherStatus);
        assert_eq!(grpc_code_name(14), "UNAVAILABLE");
        assert_eq!(grpc_code_name(99), "99");
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<_> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Outcome::ALL.len());
    }
}
