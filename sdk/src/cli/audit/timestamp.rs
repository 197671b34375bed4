//! Instants as the audit commands read them, in `--since` and `--until` and in each event's
//! `timestamp`: RFC 3339, or a date, parsed by the `time` crate.

use std::time::SystemTime;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::parsing::Parsed;
use time::{Date, UtcDateTime};

/// A date alone: midnight UTC.
const DATE: &[BorrowedFormatItem<'_>] = format_description!("[year]-[month]-[day]");

/// A date and a time of day (`T`, `t` or a space between them), with or without a fraction
/// of a second, and with `Z`, an offset such as `+02:00`, or no zone (UTC).
const DATE_TIME: &[BorrowedFormatItem<'_>] = format_description!(
    "[year]-[month]-[day][first [T][t][ ]][hour]:[minute]:[second][optional [.[subsecond]]][optional [[first [Z][z][[offset_hour sign:mandatory]:[offset_minute]]]]]"
);

/// The largest offset hour RFC 3339 allows (`time` reads up to 25).
const MAX_OFFSET_HOURS: u8 = 23;

/// Parses an instant: RFC 3339 (`2026-11-24T00:00:00Z`, with or without fractional seconds,
/// with `Z`, an offset such as `+02:00`, or no zone for UTC), or a date (`2026-11-24`,
/// midnight UTC).
pub(super) fn parse_time(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("{text:?} is not an RFC 3339 time such as 2026-11-24T00:00:00Z");
    let trimmed = text.trim();
    if let Ok(date) = Date::parse(trimmed, DATE) {
        return Ok(date.midnight().as_utc().into());
    }
    let mut parsed = Parsed::new();
    let rest = parsed
        .parse_items(trimmed.as_bytes(), DATE_TIME)
        .map_err(|_| bad())?;
    let offset_hours = parsed.offset_hour().map_or(0, i8::unsigned_abs);
    if !rest.is_empty() || offset_hours > MAX_OFFSET_HOURS {
        return Err(bad());
    }
    UtcDateTime::try_from(parsed)
        .map(SystemTime::from)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_are_instants_whatever_their_zone() {
        let midnight = parse_time("2026-11-24T00:00:00Z").unwrap();
        for same in [
            "2026-11-24",
            "2026-11-24T00:00:00",
            "2026-11-24 00:00:00",
            "2026-11-24T00:00:00.000Z",
            "2026-11-24T00:00:00+00:00",
            "2026-11-24T01:30:00+01:30",
            "2026-11-23T22:00:00-02:00",
        ] {
            assert_eq!(parse_time(same), Ok(midnight), "{same}");
        }
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-11-24T00:00:00+1:00",
            "2026-11-24T00:00:00+24:00",
            "2026-11-24T00:00:00+0a:00",
            "2026-11-24T00:00:00Zjunk",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    /// A fraction is kept to the nanosecond, and compared as an instant.
    #[test]
    fn fractions_of_a_second_count() {
        let base = parse_time("2026-11-24T00:00:00Z").unwrap();
        let later = parse_time("2026-11-24T00:00:00.001Z").unwrap();
        assert_eq!(
            later.duration_since(base).unwrap(),
            std::time::Duration::from_millis(1)
        );
        let nanos = parse_time("2026-11-24T00:00:00.000000001+00:00").unwrap();
        assert_eq!(nanos.duration_since(base).unwrap().as_nanos(), 1);
    }
}
