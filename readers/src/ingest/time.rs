//! Turning the many spellings of a point in time into Unix milliseconds.
//!
//! Sources write RFC 3339 strings, ISO-8601 with a space, or bare numbers whose unit is only
//! known from their magnitude (seconds, ms, µs or ns since the epoch), or syslog's `Mar  4
//! 13:00:00` without a year (taken from the incident: see [`with_reference`]). Everything ends up
//! as [`Ts`]; spans additionally need nanosecond precision to keep fractional durations.

use crate::model::Ts;
pub use chrono::SecondsFormat;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

/// The unit of a bare epoch number, guessed from its magnitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl EpochUnit {
    /// `< 1e11` seconds, `< 1e14` ms, `< 1e17` µs, else ns (so any date after 1973 is classified right).
    pub fn of(x: f64) -> EpochUnit {
        let a = x.abs();
        if a < 1e11 {
            EpochUnit::Seconds
        } else if a < 1e14 {
            EpochUnit::Millis
        } else if a < 1e17 {
            EpochUnit::Micros
        } else {
            EpochUnit::Nanos
        }
    }

    /// Nanoseconds in one of this unit.
    pub fn nanos(self) -> i128 {
        match self {
            EpochUnit::Seconds => 1_000_000_000,
            EpochUnit::Millis => 1_000_000,
            EpochUnit::Micros => 1_000,
            EpochUnit::Nanos => 1,
        }
    }
}

/// The latest time readers accept, 9999-12-31T23:59:59.999Z; larger magnitudes are garbage.
pub const MAX_TS: Ts = 253_402_300_799_999;

/// Whether a time is within years -9999..=9999, i.e. plausibly meant as a time at all.
pub fn plausible(ts: Ts) -> bool {
    ts.checked_abs().is_some_and(|a| a <= MAX_TS)
}

/// An epoch number of unknown unit to Unix ms, rounded to the nearest ms. Non-finite is 0;
/// out-of-range values saturate.
pub fn from_number(x: f64) -> Ts {
    if !x.is_finite() {
        return 0;
    }
    let ms = x * EpochUnit::of(x).nanos() as f64 / 1e6;
    ms.round() as Ts
}

/// An epoch number of unknown unit to Unix nanoseconds.
pub fn nanos_from_number(x: f64) -> i128 {
    if !x.is_finite() {
        return 0;
    }
    (x * EpochUnit::of(x).nanos() as f64).round() as i128
}

/// Nanoseconds to ms, rounding down, saturating at the ends of `Ts`.
pub fn nanos_to_ms(ns: i128) -> Ts {
    let ms = ns.div_euclid(1_000_000);
    ms.clamp(Ts::MIN as i128, Ts::MAX as i128) as Ts
}

/// The nanoseconds past the millisecond [`nanos_to_ms`] keeps.
pub fn nanos_within_ms(ns: i128) -> u32 {
    ns.rem_euclid(1_000_000) as u32
}

/// A time written as text: RFC 3339 / ISO-8601 (`T` or space, `Z`, `+hh:mm`, `+hhmm` or no zone
/// meaning UTC, fractional seconds with `.` or `,`), a bare date, or a bare epoch number.
pub fn parse_time_str(s: &str) -> Option<Ts> {
    let t = s.trim();
    if t.parse::<i64>().is_err() {
        if let Ok(x) = t.parse::<f64>() {
            // Fractional epoch numbers round to the nearest ms, like `from_number`.
            return Some(from_number(x)).filter(|ts| x.is_finite() && plausible(*ts));
        }
    }
    parse_time_nanos(t).map(nanos_to_ms)
}

/// Like [`parse_time_str`] but to nanoseconds, exact for integers and date strings.
/// Times beyond ±[`MAX_TS`] are None.
pub fn parse_time_nanos(s: &str) -> Option<i128> {
    parse_nanos_unchecked(s).filter(|ns| plausible(nanos_to_ms(*ns)))
}

fn parse_nanos_unchecked(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return Some(i as i128 * EpochUnit::of(i as f64).nanos());
    }
    if let Ok(x) = s.parse::<f64>() {
        // Also catches `NaN` and `inf`, which are no time.
        return x.is_finite().then(|| nanos_from_number(x));
    }
    parse_date_nanos(s).or_else(|| {
        let reference = REFERENCE.with(|r| r.get()).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        parse_syslog_nanos(s, reference)
    })
}

thread_local! {
    /// When the data being read happened, about (Unix ms): gives syslog times their year.
    static REFERENCE: std::cell::Cell<Option<Ts>> = const { std::cell::Cell::new(None) };
}

/// The reference [`with_reference`] set on this thread, to hand to another.
pub fn reference() -> Option<Ts> {
    REFERENCE.with(|r| r.get())
}

/// Runs `f` with `reference` as the time syslog dates without a year are placed near (the
/// incident's alert); outside, they are placed near now.
pub fn with_reference<T>(reference: Option<Ts>, f: impl FnOnce() -> T) -> T {
    /// Puts the earlier reference back, also when `f` panics.
    struct Restore(Option<Ts>);
    impl Drop for Restore {
        fn drop(&mut self) {
            REFERENCE.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(REFERENCE.with(|r| r.replace(reference)));
    f()
}

/// A syslog (RFC 3164) time, `Mar  4 13:00:00` or `Mar 4 13:00:00.123`, which has no year and
/// no zone: UTC, in the year that puts it nearest to `reference`.
pub fn parse_syslog_nanos(s: &str, reference: Ts) -> Option<i128> {
    let mut parts = s.split_whitespace();
    let (month, day, clock) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || month.len() != 3 || !month.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let ref_year = DateTime::from_timestamp_millis(reference)?.naive_utc().date().year_ce().1 as i32;
    (ref_year - 1..=ref_year + 1)
        .filter_map(|y| {
            NaiveDateTime::parse_from_str(&format!("{y} {month} {day} {clock}"), "%Y %b %d %H:%M:%S%.f").ok()
        })
        .map(|d| d.and_utc())
        .min_by_key(|d| (d.timestamp_millis() - reference).abs())
        .map(|d| d.timestamp() as i128 * 1_000_000_000 + d.timestamp_subsec_nanos() as i128)
}

fn parse_date_nanos(s: &str) -> Option<i128> {
    if s.len() < 10 || !s.is_char_boundary(10) {
        return None;
    }
    // Normalise `2023-01-29 08:42:22,123 UTC` to `2023-01-29T08:42:22.123Z`.
    let mut t = String::with_capacity(s.len() + 1);
    t.push_str(&s[..10]);
    let rest = &s[10..];
    let rest = rest.strip_prefix(' ').map_or(rest, |r| r);
    if !rest.is_empty() && !rest.starts_with('T') && !rest.starts_with('t') {
        t.push('T');
    }
    t.push_str(rest);
    if let Some(stripped) = t.strip_suffix(" UTC").or_else(|| t.strip_suffix(" utc")) {
        t = format!("{stripped}Z");
    }
    if t.ends_with(['Z', 'z']) {
        t.pop();
        t.push_str("+00:00");
    }
    if let Some(p) = t.find(',') {
        t.replace_range(p..p + 1, ".");
    }
    let t = t.as_str();
    let nanos = |secs: i64, sub: u32| secs as i128 * 1_000_000_000 + sub as i128;
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(nanos(d.timestamp(), d.timestamp_subsec_nanos()));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(d) = DateTime::parse_from_str(t, fmt) {
            return Some(nanos(d.timestamp(), d.timestamp_subsec_nanos()));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, fmt) {
            let d = d.and_utc();
            return Some(nanos(d.timestamp(), d.timestamp_subsec_nanos()));
        }
    }
    if t.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            let d = d.and_hms_opt(0, 0, 0)?.and_utc();
            return Some(nanos(d.timestamp(), 0));
        }
    }
    None
}

/// A time as RFC 3339 in UTC with `Z` (`2023-01-29T08:42:22Z`, or `2023-01-29T08:42:22.383Z` at
/// [`SecondsFormat::Millis`]), or None when the time is outside years 1–9999. The one formatter:
/// written bundles use milliseconds, what people read ([`fmt_time`]) seconds.
pub fn rfc3339(ts: Ts, precision: SecondsFormat) -> Option<String> {
    use chrono::Datelike;
    let d = DateTime::from_timestamp_millis(ts)?;
    if !(1..=9999).contains(&d.year()) {
        return None;
    }
    Some(d.to_rfc3339_opts(precision, true))
}

/// A time for people (reports, prompts, narratives): RFC 3339 to the second, or the bare number
/// of milliseconds when it is no calendar time.
pub fn fmt_time(ts: Ts) -> String {
    rfc3339(ts, SecondsFormat::Secs).unwrap_or_else(|| ts.to_string())
}

/// The time of day, `13:21:05` (UTC), for evidence lines, whose date is the incident's.
pub fn fmt_clock(ts: Ts) -> String {
    DateTime::from_timestamp_millis(ts).map_or_else(|| ts.to_string(), |d| d.format("%H:%M:%S").to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn syslog_times_take_the_year_nearest_the_incident() {
        let alert = parse_time_str("2026-03-04T13:30:00Z").unwrap();
        let t = with_reference(Some(alert), || parse_time_str("Mar  4 13:00:00")).unwrap();
        assert_eq!(t, parse_time_str("2026-03-04T13:00:00Z").unwrap());
        // Late December before a January incident is last year.
        let jan = parse_time_str("2027-01-01T00:10:00Z").unwrap();
        let t = with_reference(Some(jan), || parse_time_str("Dec 31 23:59:58.5")).unwrap();
        assert_eq!(t, parse_time_str("2026-12-31T23:59:58.500Z").unwrap());
        assert_eq!(with_reference(Some(alert), || parse_time_str("Foo  4 13:00:00")), None);
        assert_eq!(with_reference(Some(alert), || parse_time_str("Feb 30 13:00:00")), None);
    }

    use super::*;

    const T: Ts = 1_674_981_742_383; // 2023-01-29T08:42:22.383Z

    #[test]
    fn parses_rfc3339_variants() {
        for s in [
            "2023-01-29T08:42:22.383Z",
            "2023-01-29T08:42:22.383150913Z",
            "2023-01-29 08:42:22.383Z",
            "2023-01-29T08:42:22.383+00:00",
            "2023-01-29T16:42:22.383+08:00",
            "2023-01-29T16:42:22.383+0800",
            "2023-01-29 08:42:22.383",
            "2023-01-29 08:42:22,383",
            "2023-01-29 08:42:22.383 UTC",
            "  2023-01-29T08:42:22.383z ",
        ] {
            assert_eq!(parse_time_str(s), Some(T), "{s}");
        }
        assert_eq!(parse_time_str("2023-01-29T08:42:22Z"), Some(T - 383));
        assert_eq!(parse_time_str("2023-01-29T08:42Z"), Some(T - 22_383));
        assert_eq!(parse_time_str("2023-01-29"), Some(T - 8 * 3_600_000 - 42 * 60_000 - 22_383));
    }

    #[test]
    fn parses_numbers_by_magnitude() {
        assert_eq!(parse_time_str("1674981742.383"), Some(T));
        assert_eq!(parse_time_str("1674981742383"), Some(T));
        assert_eq!(parse_time_str("1674981742383150"), Some(T));
        assert_eq!(parse_time_str("1674981742383150913"), Some(T));
        assert_eq!(from_number(1_674_981_742.383), T);
        assert_eq!(from_number(1_674_981_742_383.0), T);
        assert_eq!(from_number(1_674_981_742_383_150.0), T);
        assert_eq!(from_number(1.674_981_742_383_150_9e18), T);
        assert_eq!(from_number(1_700_000_000.123), 1_700_000_000_123);
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for s in [
            "",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "+Inf",
            "yesterday",
            "2023-13-45T99:00:00Z",
            "1e999",
            "ü",
            "2023-01-2ü",
            "99999999999999999999999999",
        ] {
            let _ = parse_time_str(s);
        }
        assert_eq!(parse_time_str("NaN"), None);
        assert_eq!(parse_time_str("yesterday"), None);
        assert_eq!(parse_time_str("1e300"), None);
        assert_eq!(parse_time_str("99999999999999999999999"), None);
        assert_eq!(parse_time_str("2023-13-45T99:00:00Z"), None);
        assert_eq!(from_number(f64::NAN), 0);
        assert_eq!(from_number(1e300), Ts::MAX);
    }

    #[test]
    fn formats_and_reparses_exactly() {
        for ts in [0, 1, T, -1, 253_402_300_799_999] {
            let s = rfc3339(ts, SecondsFormat::Millis);
            assert_eq!(s.as_deref().and_then(parse_time_str), Some(ts), "{s:?}");
        }
        assert_eq!(rfc3339(Ts::MAX, SecondsFormat::Millis), None);
    }
}
