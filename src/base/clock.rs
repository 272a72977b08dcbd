//! Wall-clock helpers: Unix time, UTC calendar days and RFC 3339 timestamps.
//!
//! The daily limits roll over at UTC midnight and every file we write carries RFC 3339 times,
//! so this small civil-calendar conversion replaces a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The UTC day number (days since 1970-01-01) of a Unix time.
pub fn day_of(unix: u64) -> u64 {
    unix / 86_400
}

/// Seconds from `unix` until the next UTC midnight (at least 1).
pub fn secs_until_next_day(unix: u64) -> u64 {
    (86_400 - unix % 86_400).max(1)
}

/// `YYYY-MM-DD` for a UTC day number.
pub fn day_string(day: u64) -> String {
    let (y, m, d) = civil_from_days(day as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` into a UTC day number.
pub fn parse_day(s: &str) -> Option<u64> {
    let mut parts = s.split('-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    (days >= 0 && day_string(days as u64) == s).then_some(days as u64)
}

/// RFC 3339 UTC timestamp, e.g. `2026-11-22T13:40:05Z`.
pub fn rfc3339(unix: u64) -> String {
    let secs = unix % 86_400;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        day_string(day_of(unix)),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Reads an RFC 3339 UTC timestamp (`2026-11-22T13:40:05Z`, fractions of a second ignored)
/// back into a Unix time; `None` for anything else (an offset other than `Z` included).
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let (day, time) = s.split_once('T')?;
    let time = time.strip_suffix('Z')?;
    let time = time.split_once('.').map_or(time, |(whole, _)| whole);
    let mut hms = time.split(':').map(|p| {
        (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(parse_day(day)? * 86_400 + h * 3600 + m * 60 + sec)
}

// Howard Hinnant's algorithms (public domain), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_354_805), "2026-11-22T13:40:05Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(secs_until_next_day(86_400 - 5), 5);
        assert_eq!(secs_until_next_day(86_400), 86_400);
    }

    #[test]
    fn day_round_trip() {
        for day in [0, 59, 60, 365, 10_957, 11_016, 20_414, 40_000] {
            assert_eq!(parse_day(&day_string(day)), Some(day));
        }
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("2026-11"), None);
        assert_eq!(parse_day("yesterday"), None);
    }

    #[test]
    fn rfc3339_round_trip() {
        for t in [0, 951_782_400, 1_795_354_805] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2027-01-15T00:00:00.123Z"),
            Some(1_799_971_200)
        );
        for bad in [
            "2027-01-15",
            "2027-01-15T00:00:00",
            "2027-01-15T00:00:00+02:00",
            "2027-01-15T24:00:00Z",
            "2027-01-15T1:00:00Z",
            "2027-02-30T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
