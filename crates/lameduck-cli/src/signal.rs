//! Signals on the command line: every flag that takes one (`drill
//! --signal`, `run --stop-signal`, `run --forward`) reads it with the same
//! parser, the drill library's [`Signal`], so that `term`, `SIGTERM` and
//! `15` mean the same everywhere. What differs is what each flag accepts,
//! so each names its own examples in the error: a suggestion is always a
//! value the flag takes.

use lameduck_drill::{ParseSignalError, Signal};

/// The signal `s` names (any case, with or without `SIG`, or its number),
/// or an error that suggests `examples` — values the flag accepts — and
/// `none` when the flag takes it. A number that names no signal is not told
/// to give "a number".
pub fn parse(s: &str, examples: &[&str], takes_none: bool) -> Result<Signal, String> {
    s.parse().map_err(|err: ParseSignalError| {
        let what = if err.is_number() {
            "a signal name"
        } else {
            "a signal name or number"
        };
        let none = if takes_none { ", or none" } else { "" };
        format!("{err}; expected {what}, e.g. {}{none}", examples.join(", "))
    })
}

/// `signal` as nix's, to send or catch it.
pub fn to_nix(signal: Signal) -> nix::sys::signal::Signal {
    nix::sys::signal::Signal::try_from(signal.number())
        .expect("the drill's signals are nix's: it parses them with nix")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_signal_suggests_the_values_given_and_a_number_only_when_it_was_a_name() {
        let err = parse("0", &["TERM", "HUP"], true).unwrap_err();
        assert!(
            err.ends_with("expected a signal name, e.g. TERM, HUP, or none"),
            "{err}"
        );
        let err = parse("NOPE", &["QUIT"], false).unwrap_err();
        assert!(
            err.ends_with("expected a signal name or number, e.g. QUIT"),
            "{err}"
        );
        assert_eq!(parse("usr1", &[], false).unwrap(), Signal::USR1);
    }
}
