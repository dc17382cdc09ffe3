//! Block times (milliseconds since the Unix epoch, UTC) written as FHIR `instant`, `dateTime` and
//! `date` values. The calendar arithmetic is Howard Hinnant's `civil_from_days`, so no date
//! library is needed.

/// The last millisecond FHIR can write: 9999-12-31T23:59:59.999Z. FHIR years have four digits,
/// so later times are written as this one.
pub const TIME_MS_MAX: u64 = 253_402_300_799_999;

const DAY_MS: u64 = 86_400_000;

/// An R4 `instant`: UTC with milliseconds, e.g. `2026-11-21T19:43:25.123Z`.
pub fn instant(time_ms: u64) -> String {
    let time_ms = time_ms.min(TIME_MS_MAX);
    let (year, month, day) = civil_from_days(time_ms / DAY_MS);
    let in_day_ms = time_ms % DAY_MS;
    let (hours, minutes) = (in_day_ms / 3_600_000, in_day_ms / 60_000 % 60);
    let (seconds, milliseconds) = (in_day_ms / 1_000 % 60, in_day_ms % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hours:02}:{minutes:02}:{seconds:02}.{milliseconds:03}Z")
}

/// An R4 `dateTime` at full precision, which is written the same way as an `instant`.
pub fn date_time(time_ms: u64) -> String {
    instant(time_ms)
}

/// An R4 `date`: the UTC calendar day, e.g. `2026-11-21`.
pub fn date(time_ms: u64) -> String {
    let (year, month, day) = civil_from_days(time_ms.min(TIME_MS_MAX) / DAY_MS);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The days of `month` (1 to 12) of `year`.
pub(crate) fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`, the
/// inverse of [`civil_from_days`]).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01, so that each 400-year era starts on a March 1st and leap
    // days fall at the end of a year; `days` is never negative, so neither is anything below.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known instants, leap days and the limits are written correctly.
    #[test]
    fn writes_instants() {
        fn check(time_ms: u64, expected: &str) {
            assert_eq!(instant(time_ms), expected, "{time_ms}");
        }
        check(0, "1970-01-01T00:00:00.000Z");
        check(1, "1970-01-01T00:00:00.001Z");
        check(951_782_400_000, "2000-02-29T00:00:00.000Z");
        check(951_868_799_999, "2000-02-29T23:59:59.999Z");
        check(1_709_164_800_000, "2024-02-29T00:00:00.000Z");
        check(4_107_542_400_000, "2100-03-01T00:00:00.000Z");
        check(1_795_290_205_123, "2026-11-21T19:43:25.123Z");
        check(TIME_MS_MAX, "9999-12-31T23:59:59.999Z");
        check(u64::MAX, "9999-12-31T23:59:59.999Z");
        assert_eq!(date(1_795_290_205_123), "2026-11-21");
        assert_eq!(date_time(0), "1970-01-01T00:00:00.000Z");
    }

    /// Counting days from a date is the inverse of writing a count of days as a date, with each
    /// month as long as the calendar says.
    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in (0..160_000u64).step_by(7) {
            let (year, month, day) = civil_from_days(days);
            let (year, month, day) = (year as i64, month as i64, day as i64);
            assert_eq!(days_from_civil(year, month, day), days as i64);
            assert!(day <= days_in_month(year, month));
        }
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
    }

    /// Every day from 1970 to past 2400 follows the previous one on the calendar.
    #[test]
    fn days_are_consecutive() {
        let mut previous = civil_from_days(0);
        assert_eq!(previous, (1970, 1, 1));
        for days in 1..160_000 {
            let (year, month, day) = civil_from_days(days);
            let (last_year, last_month, last_day) = previous;
            let leap = last_year % 4 == 0 && (last_year % 100 != 0 || last_year % 400 == 0);
            let month_days = match last_month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if last_day < month_days {
                (last_year, last_month, last_day + 1)
            } else if last_month < 12 {
                (last_year, last_month + 1, 1)
            } else {
                (last_year + 1, 1, 1)
            };
            assert_eq!((year, month, day), expected, "day {days}");
            previous = (year, month, day);
        }
    }
}
