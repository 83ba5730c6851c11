//! Duration values on the command line: one parser for every duration flag
//! of every subcommand, so that each bad value says what is wrong with it.

use std::time::Duration;

/// The longest duration any flag accepts. Far beyond any real grace period,
/// and low enough that adding every phase together cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How to write one: the end of each message.
const HOW: &str = "e.g. 30s, 500ms, 2m";

/// How to write a duration, for the help of each subcommand that takes
/// one: a macro, so that `concat!` can put it in a help text.
macro_rules! duration_syntax {
    () => {
        "Durations are written like 30s, 1500ms, 1m or 1m30s (quote a value with a
space in it: \"1m 30s\")."
    };
}
pub(crate) use duration_syntax;

/// Parses `30s`, `1500ms`, `1m 30s`, from zero up to [`MAX_DURATION`].
///
/// The flags that take it also set `allow_hyphen_values`, so that a negative
/// value reaches this parser (and is refused for what it is) instead of
/// being taken for a flag by clap.
///
/// # Errors
///
/// Our own reason, which clap puts after `invalid value '30' for
/// '--grace-period <DURATION>': `, for a negative value, a number without a
/// unit (`a duration needs a unit, e.g. 30s, 500ms, 2m`), an unknown unit,
/// anything else that is not a duration, an empty value, or a duration
/// longer than a year.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!(
            "the value is empty: a duration needs a number and a unit, {HOW}"
        ));
    }
    if t.starts_with('-') {
        return Err(format!("a duration cannot be negative: 0s or more, {HOW}"));
    }
    // `M` is a month to the parsing library: taken for minutes, `1M` would
    // be a grace period of a month.
    if t.contains('M') {
        return Err(format!(
            "`M` is not a unit here (it would be a month): minutes are `m`, {HOW}"
        ));
    }
    let d = humantime::parse_duration(t).map_err(|e| reason(&e))?;
    if d > MAX_DURATION {
        return Err(format!(
            "{s} is more than the longest accepted duration, 365 days"
        ));
    }
    Ok(d)
}

/// The parser of a duration flag for which 0s cannot work: as
/// [`parse_duration`], and 0s refused, saying what it would do (`zero`, the
/// words after "0s ") and what to give instead (`example`, e.g. `30s`).
///
/// One parser for all of them, so that each says it the same way: clap
/// puts the reason after `invalid value '0s' for '--flag <DURATION>': `
/// (exit code 2, before anything starts).
///
/// # Errors
///
/// Those of [`parse_duration`] (a negative value is told to give more
/// than 0s), and `0s {zero}: give more than 0s, e.g. {example}`.
pub fn more_than_zero(
    zero: &'static str,
    example: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        if s.trim().starts_with('-') {
            return Err(format!(
                "a duration cannot be negative: give more than 0s, e.g. {example}"
            ));
        }
        match parse_duration(s)? {
            Duration::ZERO => Err(format!("0s {zero}: give more than 0s, e.g. {example}")),
            d => Ok(d),
        }
    }
}

/// Our reason for what the parsing library refused, in our words.
fn reason(e: &humantime::DurationError) -> String {
    use humantime::DurationError as E;
    match e {
        E::UnknownUnit { unit, .. } if unit.is_empty() => format!("a duration needs a unit, {HOW}"),
        E::UnknownUnit { unit, .. } => {
            format!("{unit:?} is not a unit of time (ms, s, m, h, d…), {HOW}")
        }
        E::NumberOverflow => "the number is too large, or finer than a nanosecond".to_string(),
        E::InvalidCharacter(_) | E::NumberExpected(_) | E::Empty => {
            format!("not a duration: a number and a unit, {HOW}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_that_cannot_take_zero_says_what_zero_would_do() {
        let parse = more_than_zero("would spin", "1s");
        assert_eq!(
            parse("0s").unwrap_err(),
            "0s would spin: give more than 0s, e.g. 1s"
        );
        assert_eq!(parse("0ms").unwrap_err(), parse("0s").unwrap_err());
        assert!(
            parse("-1s")
                .unwrap_err()
                .starts_with("a duration cannot be negative")
        );
        assert_eq!(
            parse("5").unwrap_err(),
            "a duration needs a unit, e.g. 30s, 500ms, 2m"
        );
        assert_eq!(parse("1ns"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn durations_beyond_a_year_are_refused() {
        assert!(parse_duration("365days").is_ok());
        assert!(parse_duration("366days").is_err());
    }

    #[test]
    fn each_bad_duration_says_what_is_wrong_with_it_in_our_words() {
        let err = |s| parse_duration(s).unwrap_err();
        assert!(err("-1s").starts_with("a duration cannot be negative"));
        assert!(err(" -0s").starts_with("a duration cannot be negative"));
        assert_eq!(err("5"), "a duration needs a unit, e.g. 30s, 500ms, 2m");
        assert!(err("").starts_with("the value is empty"));
        assert!(
            err("30x").starts_with("\"x\" is not a unit of time"),
            "{}",
            err("30x")
        );
        assert!(
            err("1.5.s").starts_with("not a duration"),
            "{}",
            err("1.5.s")
        );
        assert!(err("s").starts_with("not a duration"), "{}", err("s"));
        for s in ["5", "", "30x", "1.5.s", "-1s"] {
            assert!(err(s).ends_with(HOW), "{s}: {}", err(s));
            assert!(!err(s).contains("sec or"), "{s}: {}", err(s));
        }
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        // The form the help shows: one shell word.
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        // Minutes are `m`; `M` would be a month.
        assert!(
            parse_duration("1M")
                .unwrap_err()
                .contains("minutes are `m`")
        );
    }
}
