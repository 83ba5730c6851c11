//! Instants and durations the way the summary and the HTML page print them.

/// An instant since the load started: `2.013s`.
pub(crate) fn at(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us % 1_000_000) / 1_000)
}

/// A signed instant, for what happened before the zero of its clock:
/// `-1.250s`, `2.013s`.
pub(crate) fn signed_at(us: i64) -> String {
    match u64::try_from(us) {
        Ok(us) => at(us),
        Err(_) => format!("-{}", at(us.unsigned_abs())),
    }
}

/// A duration in whole milliseconds (a flight record's), as the library
/// prints one: `850ms`, `1.2s`, `30s`.
pub(crate) use lameduck::flight::millis as ms;

/// A duration, with a unit that keeps three significant figures or so:
/// `850µs`, `12.3ms`, `1.20s`.
pub(crate) fn duration(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..10_000 => format!("{:.2}ms", us as f64 / 1e3),
        10_000..1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        1_000_000..60_000_000 => format!("{:.2}s", us as f64 / 1e6),
        _ => format!("{:.0}s", us as f64 / 1e6),
    }
}

/// A duration from a `std::time::Duration`.
pub(crate) fn std_duration(d: std::time::Duration) -> String {
    duration(crate::record::duration_us(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_in_seconds_with_milliseconds() {
        assert_eq!(at(2_013_456), "2.013s");
        assert_eq!(at(999), "0.000s");
        assert_eq!(signed_at(-1_250_000), "-1.250s");
        assert_eq!(signed_at(2_013_456), "2.013s");
        assert_eq!(ms(850), "850ms");
        assert_eq!(ms(1_250), "1.3s");
        assert_eq!(ms(30_000), "30s");
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(duration(850), "850µs");
        assert_eq!(duration(1_234), "1.23ms");
        assert_eq!(duration(12_345), "12.3ms");
        assert_eq!(duration(1_200_000), "1.20s");
        assert_eq!(duration(90_000_000), "90s");
    }
}
