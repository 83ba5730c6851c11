//! Human-readable formatting shared by logs, reports and errors.

use std::fmt;
use std::time::Duration;

/// Formats a duration for people, trimmed: `30s`, `1.5s`, `250ms`, `0.8ms`,
/// and below a twentieth of a millisecond `12.5µs` or `1ns`: a duration
/// that is not zero never reads as zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seconds(pub(crate) Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let text = if d.is_zero() {
            "0s".to_string()
        } else if d >= Duration::from_secs(1) {
            let ms = d.as_millis();
            trim(format!("{}.{:03}", ms / 1000, ms % 1000)) + "s"
        } else if d >= Duration::from_micros(50) {
            trim(format!("{:.1}", d.as_secs_f64() * 1000.0)) + "ms"
        } else if d >= Duration::from_micros(1) {
            trim(format!("{:.1}", d.as_secs_f64() * 1e6)) + "µs"
        } else {
            format!("{}ns", d.as_nanos())
        };
        f.pad(&text)
    }
}

/// A count and its noun, singular for one: `1 arrival`, `3 arrivals`.
/// The noun is given in the singular and takes an `s`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Count<'a>(pub(crate) usize, pub(crate) &'a str);

impl fmt::Display for Count<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Count(n, noun) = *self;
        write!(f, "{n} {noun}{}", if n == 1 { "" } else { "s" })
    }
}

fn trim(s: String) -> String {
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_of_one_is_singular_and_any_other_plural() {
        assert_eq!(Count(1, "arrival").to_string(), "1 arrival");
        assert_eq!(Count(0, "arrival").to_string(), "0 arrivals");
        assert_eq!(Count(2, "name").to_string(), "2 names");
    }

    #[test]
    fn trims_trailing_zeros() {
        assert_eq!(Seconds(Duration::from_secs(30)).to_string(), "30s");
        assert_eq!(Seconds(Duration::from_millis(1500)).to_string(), "1.5s");
        assert_eq!(Seconds(Duration::from_millis(500)).to_string(), "500ms");
        assert_eq!(Seconds(Duration::from_micros(4250)).to_string(), "4.2ms");
        assert_eq!(Seconds(Duration::from_micros(784)).to_string(), "0.8ms");
        assert_eq!(Seconds(Duration::ZERO).to_string(), "0s");
        assert_eq!(Seconds(Duration::from_millis(10_000)).to_string(), "10s");
    }

    #[test]
    fn a_sub_millisecond_duration_never_reads_as_zero() {
        assert_eq!(Seconds(Duration::from_nanos(1)).to_string(), "1ns");
        assert_eq!(Seconds(Duration::from_nanos(999)).to_string(), "999ns");
        assert_eq!(Seconds(Duration::from_nanos(1_500)).to_string(), "1.5µs");
        assert_eq!(Seconds(Duration::from_micros(49)).to_string(), "49µs");
        assert_eq!(Seconds(Duration::from_micros(50)).to_string(), "0.1ms");
    }
}
