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
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown signal {0:?} (try TERM, INT, HUP, QUIT, USR1, USR2 or a number)")]
pub struct ParseSignalError(String);

impl FromStr for Signal {
    type Err = ParseSignalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseSignalError(s.to_owned());
        if let Ok(number) = s.parse::<i32>() {
            return Signal::from_number(number).ok_or_else(err);
        }
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        NixSignal::from_str(&full).map(Signal).map_err(|_| err())
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
    fn hup_means_restart_and_term_means_stop() {
        assert_eq!(Signal::HUP.default_expectation(), Expectation::Restart);
        assert_eq!(Signal::TERM.default_expectation(), Expectation::Stop);
        assert_eq!(Signal::INT.default_expectation(), Expectation::Stop);
    }
}
