//! Duration values on the command line: one parser for every duration flag
//! of every subcommand, so that each bad value says what is wrong with it.

use std::time::Duration;

/// The longest duration any flag accepts. Far beyond any real grace period,
/// and low enough that adding every phase together cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

const HOW: &str = "write a duration like 30s, 1500ms, 1m or 1m 30s";

/// Parses `30s`, `1500ms`, `1m 30s`, from zero up to [`MAX_DURATION`].
///
/// The flags that take it also set `allow_hyphen_values`, so that a negative
/// value reaches this parser (and is refused for what it is) instead of
/// being taken for a flag by clap.
///
/// # Errors
///
/// A message (clap prefixes the flag and the value) for a negative value, a
/// number without a unit, an unknown unit, an empty value, or a duration
/// longer than a year.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("the value is empty; {HOW}"));
    }
    if t.starts_with('-') {
        return Err(format!("a duration cannot be negative; {HOW}"));
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        let e = e.to_string();
        // "time unit needed, for example 30sec or 30ms" shows the way already.
        if e.contains("for example") {
            e
        } else {
            format!("{e}; {HOW}")
        }
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "{s} is more than the longest accepted duration, 365 days"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_beyond_a_year_are_refused() {
        assert!(parse_duration("365days").is_ok());
        assert!(parse_duration("366days").is_err());
    }

    #[test]
    fn each_bad_duration_says_what_is_wrong_with_it() {
        let err = |s| parse_duration(s).unwrap_err();
        assert!(err("-1s").starts_with("a duration cannot be negative"));
        assert!(err(" -0s").starts_with("a duration cannot be negative"));
        assert!(err("5").contains("time unit needed"), "{}", err("5"));
        assert!(err("").starts_with("the value is empty"));
        assert!(err("30x").contains("unknown time unit"), "{}", err("30x"));
        assert!(err("30x").ends_with(HOW));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    }
}
