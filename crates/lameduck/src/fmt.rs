//! Human-readable formatting shared by logs, reports and errors.

use std::fmt;
use std::time::Duration;

/// Formats a duration in seconds, trimmed: `30s`, `1.5s`, `0.25s`, `0.004s`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seconds(pub(crate) Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        let s = if ms == 0 && !self.0.is_zero() {
            format!("{:.6}", self.0.as_secs_f64())
        } else {
            format!("{}.{:03}", ms / 1000, ms % 1000)
        };
        let s = s.trim_end_matches('0').trim_end_matches('.');
        let s = if s.is_empty() { "0" } else { s };
        f.pad(&format!("{s}s"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_trailing_zeros() {
        assert_eq!(Seconds(Duration::from_secs(30)).to_string(), "30s");
        assert_eq!(Seconds(Duration::from_millis(1500)).to_string(), "1.5s");
        assert_eq!(Seconds(Duration::from_millis(4)).to_string(), "0.004s");
        assert_eq!(Seconds(Duration::ZERO).to_string(), "0s");
        assert_eq!(Seconds(Duration::from_micros(250)).to_string(), "0.00025s");
    }
}
