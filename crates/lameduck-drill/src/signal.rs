//! Signal names as the drill reads and prints them (`TERM`, `HUP`, …).

use std::fmt;
use std::str::FromStr;

use nix::sys::signal::Signal as NixSignal;

/// A Unix signal the drill can send, named without the `SIG` prefix.
///
/// Parsing accepts `TERM`, `SIGTERM`, `term` and the signal number (`15`).
///
/// # Examples
///
/// ```
/// use lameduck_drill::Signal;
///
/// let sig: Signal = "sigterm".parse().unwrap();
/// assert_eq!(sig, Signal::TERM);
/// assert_eq!(sig.to_string(), "TERM");
/// assert_eq!("1".parse::<Signal>().unwrap(), Signal::HUP);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(NixSignal);

impl Signal {
    /// `SIGTERM`: stop (what Kubernetes and systemd send).
    pub const TERM: Signal = Signal(NixSignal::SIGTERM);
    /// `SIGINT`: stop (Ctrl+C).
    pub const INT: Signal = Signal(NixSignal::SIGINT);
    /// `SIGQUIT`: stop.
    pub const QUIT: Signal = Signal(NixSignal::SIGQUIT);
    /// `SIGHUP`: restart or reload, by convention.
    pub const HUP: Signal = Signal(NixSignal::SIGHUP);
    /// `SIGUSR1`.
    pub const USR1: Signal = Signal(NixSignal::SIGUSR1);
    /// `SIGUSR2`: zero-downtime upgrade in several servers.
    pub const USR2: Signal = Signal(NixSignal::SIGUSR2);
    /// `SIGKILL`: cannot be handled; the drill uses it to clean up.
    pub const KILL: Signal = Signal(NixSignal::SIGKILL);

    /// The signal number (`15` for `TERM`).
    pub fn number(self) -> i32 {
        self.0 as i32
    }

    /// The name without the `SIG` prefix (`"TERM"`).
    pub fn name(self) -> &'static str {
        &self.0.as_str()[3..]
    }

    /// The signal with this number, if the platform has one.
    pub fn from_number(number: i32) -> Option<Signal> {
        NixSignal::try_from(number).ok().map(Signal)
    }

    /// What a drill expects from a server that gets this signal: `HUP`, `USR1`
    /// and `USR2` mean restart (no request may fail), everything else stop.
    pub fn default_expectation(self) -> crate::Expectation {
        match self.0 {
            NixSignal::SIGHUP | NixSignal::SIGUSR1 | NixSignal::SIGUSR2 => {
                crate::Expectation::Restart
            }
            _ => crate::Expectation::Stop,
        }
    }

    pub(crate) fn to_nix(self) -> NixSignal {
        self.0
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error returned when a signal name or number is not known.
///
/// The message says what is wrong with the text, and suggests nothing:
/// which signals are worth suggesting depends on what the signal is for
/// (a drill sends `TERM` or `HUP`; a command that forwards signals refuses
/// those), so a caller adds its own.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.reason())]
pub struct ParseSignalError {
    given: String,
    number: Option<i64>,
}

impl ParseSignalError {
    /// Whether the text was a number (one that names no signal): a
    /// suggestion should then be a name, not "a number".
    pub fn is_number(&self) -> bool {
        self.number.is_some()
    }

    fn reason(&self) -> String {
        match self.number {
            Some(0) => "0 is not a signal (kill -0 only checks that a process exists)".to_owned(),
            Some(n) => format!("{n} is not the number of a signal"),
            None if self.given.trim().is_empty() => "no signal named (an empty name)".to_owned(),
            None => format!("unknown signal {:?}", self.given.trim()),
        }
    }
}

impl FromStr for Signal {
    type Err = ParseSignalError;

    /// `TERM`, `SIGTERM`, `term` (any case, blanks around ignored) or the
    /// number, `15`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let err = |number| ParseSignalError {
            given: s.to_owned(),
            number,
        };
        if let Ok(number) = text.parse::<i64>() {
            return i32::try_from(number)
                .ok()
                .and_then(Signal::from_number)
                .ok_or_else(|| err(Some(number)));
        }
        let upper = text.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        NixSignal::from_str(&full)
            .map(Signal)
            .map_err(|_| err(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Expectation;

    #[test]
    fn parses_names_with_and_without_prefix() {
        assert_eq!("TERM".parse::<Signal>().unwrap(), Signal::TERM);
        assert_eq!("SIGHUP".parse::<Signal>().unwrap(), Signal::HUP);
        assert_eq!("usr2".parse::<Signal>().unwrap(), Signal::USR2);
        assert_eq!("2".parse::<Signal>().unwrap(), Signal::INT);
    }

    #[test]
    fn rejects_unknown_names() {
        let err = "TERMINATE".parse::<Signal>().unwrap_err();
        assert!(err.to_string().contains("TERMINATE"), "{err}");
        assert!("999".parse::<Signal>().is_err());
    }

    #[test]
    fn a_number_that_is_no_signal_is_told_apart_from_an_unknown_name() {
        for (text, says, number) in [
            ("0", "0 is not a signal", true),
            ("999", "999 is not the number of a signal", true),
            (
                "99999999999",
                "99999999999 is not the number of a signal",
                true,
            ),
            ("", "no signal named", false),
            (" ", "no signal named", false),
            ("NOPE", "unknown signal \"NOPE\"", false),
        ] {
            let err = text.parse::<Signal>().unwrap_err();
            assert!(err.to_string().contains(says), "{text:?}: {err}");
            assert_eq!(err.is_number(), number, "{text:?}");
            // No suggestion: the caller knows which signals are valid.
            assert!(!err.to_string().contains("or a number"), "{err}");
        }
        assert_eq!(" term ".parse::<Signal>().unwrap(), Signal::TERM);
    }

    #[test]
    fn hup_means_restart_and_term_means_stop() {
        assert_eq!(Signal::HUP.default_expectation(), Expectation::Restart);
        assert_eq!(Signal::TERM.default_expectation(), Expectation::Stop);
        assert_eq!(Signal::INT.default_expectation(), Expectation::Stop);
    }
}
