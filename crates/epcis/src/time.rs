//! EPCIS timestamps (`2020-03-04T11:00:30.000+01:00`): the instant they name, in milliseconds
//! since the Unix epoch, and the UTC text the event hash uses.
//!
//! Fractions are cut to microseconds and then rounded to milliseconds half to even, the way the
//! reference event-hash implementation does it (Python's `round(microseconds, -3)`), so that the
//! typed view and the hash agree on the instant.

/// A point in time: whole seconds since 1970-01-01T00:00:00Z and milliseconds within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Instant {
    seconds: i64,
    millis: i64,
}

impl Instant {
    /// Milliseconds since the Unix epoch.
    pub(crate) fn epoch_millis(self) -> i64 {
        self.seconds * 1000 + self.millis
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `None` outside years 1 to 9999.
    pub(crate) fn utc_text(self) -> Option<String> {
        let days = self.seconds.div_euclid(86_400);
        let second_of_day = self.seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        if !(1..=9999).contains(&year) {
            return None;
        }
        Some(format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
            self.millis
        ))
    }
}

/// Reads `YYYY-MM-DD` `T` `HH:MM[:SS[.fraction]]` with an offset `Z`, `±HH:MM`, `±HHMM` or `±HH`.
/// A time without an offset is read at `default_offset_minutes` (UTC when `None`). `T` may also
/// be `t` or a space, as RFC 3339 allows.
pub(crate) fn parse_timestamp(text: &str, default_offset_minutes: Option<i32>) -> Option<Instant> {
    let bytes = text.as_bytes();
    let year = number(bytes.get(0..4)?)?;
    let month = number(bytes.get(5..7)?)?;
    let day = number(bytes.get(8..10)?)?;
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(bytes.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = number(bytes.get(11..13)?)?;
    if bytes.get(13) != Some(&b':') {
        return None;
    }
    let minute = number(bytes.get(14..16)?)?;
    let mut at = 16;
    let mut second = 0;
    let mut micros: i64 = 0;
    if bytes.get(at) == Some(&b':') {
        second = number(bytes.get(at + 1..at + 3)?)?;
        at += 3;
        if bytes.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start {
                return None;
            }
            // Only the first six digits count (the reference cuts to microseconds).
            for position in 0..6 {
                let digit = bytes
                    .get(start + position)
                    .filter(|_| start + position < at);
                micros = micros * 10 + digit.map_or(0, |digit| i64::from(digit - b'0'));
            }
        }
    }
    let offset_minutes = match bytes.get(at..)? {
        [] => i64::from(default_offset_minutes.unwrap_or(0)),
        [b'Z' | b'z'] => 0,
        rest => offset(rest)?,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let mut seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    // Round half to even on the millisecond, as Python's round() does.
    let mut millis = micros / 1000;
    let rest = micros % 1000;
    if rest > 500 || (rest == 500 && millis % 2 == 1) {
        millis += 1;
    }
    if millis == 1000 {
        millis = 0;
        seconds += 1;
    }
    Some(Instant { seconds, millis })
}

/// Reads a UTC offset `±HH:MM`, `±HHMM` or `±HH` as minutes east of UTC.
pub(crate) fn offset(bytes: &[u8]) -> Option<i64> {
    let sign = match bytes.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours = number(bytes.get(1..3)?)?;
    let minutes = match bytes.get(3..)? {
        [] => 0,
        [b':', rest @ ..] | rest @ [_, _] => number(rest)?,
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 60 + minutes))
}

/// The value of two or four ASCII digits.
fn number(digits: &[u8]) -> Option<i64> {
    if !matches!(digits.len(), 2 | 4) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |acc, digit| acc * 10 + i64::from(digit - b'0')),
    )
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the usual era-based computation).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Option<String> {
        parse_timestamp(text, None).and_then(Instant::utc_text)
    }

    #[test]
    fn normalises_to_utc_milliseconds() {
        for (text, expected) in [
            ("2020-03-04T11:00:30.000+01:00", "2020-03-04T10:00:30.000Z"),
            ("2023-01-11T12:00:00+01:00", "2023-01-11T11:00:00.000Z"),
            (
                "2022-02-15T01:33:31.116000-06:00",
                "2022-02-15T07:33:31.116Z",
            ),
            ("2023-02-02T11:04:03.1415Z", "2023-02-02T11:04:03.142Z"),
            ("2023-02-02T11:04:03.1414Z", "2023-02-02T11:04:03.141Z"),
            ("2023-02-02T11:04:03.1425Z", "2023-02-02T11:04:03.142Z"),
            ("2023-02-02T11:04:03.14250001Z", "2023-02-02T11:04:03.142Z"),
            ("2023-12-31T23:59:59.9996Z", "2024-01-01T00:00:00.000Z"),
            ("2022-02-17T11:30:47.0Z", "2022-02-17T11:30:47.000Z"),
            ("2000-02-29T00:00:00-0130", "2000-02-29T01:30:00.000Z"),
            ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(utc(text).as_deref(), Some(expected), "{text}");
        }
        for text in [
            "2023-02-30T00:00:00Z",
            "2023-02-02T11",
            "2023-02-02T24:00:00Z",
            "2023-02-02T11:04:60Z",
            "2023-02-02T11:04:03.Z",
            "2023-02-02T11:04:03+1",
            "yesterday",
        ] {
            assert_eq!(utc(text), None, "{text}");
        }
        assert_eq!(
            parse_timestamp("1970-01-01T01:00:00.5", Some(60)).map(Instant::epoch_millis),
            Some(500)
        );
    }
}
