//! What AI values mean: dates (a YYMMDD year needs a reference year to find its century, which the
//! caller passes in, so this crate never reads a clock), times, decimal measures and amounts, and
//! a value's dictionary components.

use crate::Gs1Error;
use crate::dictionary::{DICTIONARY, Linter};
use crate::element::{self, Options};
use crate::lint::days_in_month;
use crate::tables;

/// Turns a YYMMDD value into (year, month, day), per the GS1 General Specifications: the century
/// puts the year within 49 years before and 50 years after `reference_year`; day "00" means the
/// last day of the month.
pub fn expand_yymmdd(value: &str, reference_year: i32) -> Result<(i32, u8, u8), Gs1Error> {
    let bad = |reason| Gs1Error::Date {
        value: value.to_owned(),
        reason,
    };
    let b = value.as_bytes();
    if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
        return Err(bad("a date must be six digits, yymmdd"));
    }
    let two = |i: usize| i32::from(b[i] - b'0') * 10 + i32::from(b[i + 1] - b'0');
    let (yy, month, day) = (two(0), two(2), two(4));
    let reference_yy = reference_year.rem_euclid(100);
    let century = reference_year - reference_yy;
    let year = match yy - reference_yy {
        d if d >= 51 => century - 100 + yy,
        d if d <= -50 => century + 100 + yy,
        _ => century + yy,
    };
    if !(1..=12).contains(&month) {
        return Err(bad("no such month"));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let last = i32::try_from(days_in_month(month.unsigned_abs().into(), leap)).unwrap_or(31);
    let day = match day {
        0 => last,
        d if d <= last => d,
        _ => return Err(bad("no such day in that month")),
    };
    let narrow = |n: i32| u8::try_from(n).map_err(|_| bad("out of range"));
    Ok((year, narrow(month)?, narrow(day)?))
}

/// A date, and the time of day when the AI carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gs1DateTime {
    pub year: i32,
    pub month: u8,
    pub day: u8,
    /// Hour, minute, second.
    pub time: Option<(u8, u8, u8)>,
}

impl std::fmt::Display for Gs1DateTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)?;
        if let Some((h, m, s)) = self.time {
            write!(f, "T{h:02}:{m:02}:{s:02}")?;
        }
        Ok(())
    }
}

/// The value of `ai` split into its dictionary components ("800307071324001022085952" for AI
/// (8003) gives "0", "7071324001022", "085952"); optional components left out are not listed.
/// Only the structure is checked (lengths and character sets), not the linters: a value with a
/// wrong check digit still splits.
pub fn components<'v>(ai: &str, value: &'v str) -> Result<Vec<&'v str>, Gs1Error> {
    let entry = element::lookup(ai, &Options::syntax_only())?;
    element::check_length(ai, entry, value.as_bytes())?;
    let mut parts = Vec::new();
    let mut rest = value;
    for comp in &entry.components {
        let len = rest.len().min(comp.max);
        if comp.optional && len == 0 {
            continue;
        }
        if len < comp.min || !rest.is_char_boundary(len) {
            return Err(Gs1Error::TooShort { ai: ai.to_owned() });
        }
        let (part, tail) = rest.split_at(len);
        if let Err((lint, at, bad)) = crate::lint::cset(comp.cset, part.as_bytes()) {
            let at = value.len() - rest.len() + at;
            return Err(Gs1Error::Lint {
                ai: ai.to_owned(),
                lint,
                markup: format!(
                    "({ai}){}|{}|{}",
                    value.get(..at).unwrap_or_default(),
                    value.get(at..at + bad).unwrap_or_default(),
                    value
                        .get(at + bad..value.len() - tail.len())
                        .unwrap_or_default()
                ),
            });
        }
        parts.push(part);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(Gs1Error::TooLong { ai: ai.to_owned() });
    }
    Ok(parts)
}

fn two_digits(s: &str) -> Option<u8> {
    s.parse().ok().filter(|_| s.len() == 2)
}

/// The date (and time) that `value` of `ai` holds, if the AI is a date: its first component is a
/// YYMMDD or YYYYMMDD date, and later components may give the hour, minute and second.
/// `reference_year` places two-digit years (see [`expand_yymmdd`]). A time of "9999" in AIs
/// (4324) and (4325) means no time.
pub fn decode_date(
    ai: &str,
    value: &str,
    reference_year: i32,
) -> Result<Option<Gs1DateTime>, Gs1Error> {
    let opts = Options::syntax_only();
    let entry = element::lookup(ai, &opts)?;
    // The linters check the date and time fields, so what follows can read them as numbers.
    element::check_value(ai, entry, value.as_bytes(), &opts)?;
    let parts = components(ai, value)?;
    let kinds: Vec<&[Linter]> = entry
        .components
        .iter()
        .map(|c| c.linters.as_slice())
        .collect();
    let Some((&first, rest)) = parts.split_first() else {
        return Ok(None);
    };
    let first_kind = kinds.first().copied().unwrap_or_default();
    let (year, month, day) =
        if first_kind.contains(&Linter::Yymmdd) || first_kind.contains(&Linter::Yymmd0) {
            expand_yymmdd(first, reference_year)?
        } else if first_kind.contains(&Linter::Yyyymmdd) {
            let year: i32 = first[..4].parse().map_err(|_| Gs1Error::Date {
                value: first.to_owned(),
                reason: "no year",
            })?;
            let md = |r: std::ops::Range<usize>| first[r].parse::<u8>().unwrap_or(0);
            (year, md(4..6), md(6..8))
        } else {
            return Ok(None);
        };

    let mut time: Option<(u8, u8, u8)> = None;
    for (part, kind) in rest.iter().zip(kinds.iter().skip(1)) {
        if kind.contains(&Linter::Hhmi) {
            if *part == "9999" && matches!(ai, "4324" | "4325") {
                continue;
            }
            time = Some((
                two_digits(&part[..2]).unwrap_or(0),
                two_digits(&part[2..]).unwrap_or(0),
                0,
            ));
        } else if kind.contains(&Linter::Hh) {
            time = Some((two_digits(part).unwrap_or(0), 0, 0));
        } else if let Some(t) = time.as_mut() {
            if kind.contains(&Linter::Mi) {
                t.1 = two_digits(part).unwrap_or(0);
            } else if kind.contains(&Linter::Ss) {
                t.2 = two_digits(part).unwrap_or(0);
            }
        }
    }
    Ok(Some(Gs1DateTime {
        year,
        month,
        day,
        time,
    }))
}

/// An exact decimal number: `units` scaled down by 10 to the power `scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub units: u64,
    pub scale: u8,
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = format!(
            "{:0>width$}",
            self.units,
            width = usize::from(self.scale) + 1
        );
        let (int, frac) = digits.split_at(digits.len() - usize::from(self.scale));
        f.write_str(int)?;
        if !frac.is_empty() {
            write!(f, ".{frac}")?;
        }
        Ok(())
    }
}

/// A decoded measure, amount or percentage, with its currency (ISO 4217 alphabetic code) when the
/// AI carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quantity {
    pub value: Decimal,
    pub currency: Option<&'static str>,
}

/// The number that `value` of `ai` holds, for the AIs whose last digit places the decimal point:
/// trade and logistic measures (310n to 369n), amounts payable (390n to 393n, with an ISO 4217
/// currency in 391n and 393n), percentage discounts (394n) and prices per unit of measure (395n).
/// `None` for other AIs.
pub fn decode_quantity(ai: &str, value: &str) -> Result<Option<Quantity>, Gs1Error> {
    let b = ai.as_bytes();
    let [b'3', kind, sub, scale] = b else {
        return Ok(None);
    };
    if !scale.is_ascii_digit() || !sub.is_ascii_digit() {
        return Ok(None);
    }
    let with_currency = match (kind, sub) {
        (b'1'..=b'6', _) => false,
        (b'9', b'0' | b'2' | b'4' | b'5') => false,
        (b'9', b'1' | b'3') => true,
        _ => return Ok(None),
    };
    components(ai, value)?;
    let (currency, number) = if with_currency {
        let (code, number) = value.split_at(3);
        (tables::iso4217_alpha(code), number)
    } else {
        (None, value)
    };
    let units = number
        .parse()
        .map_err(|_| Gs1Error::TooLong { ai: ai.to_owned() })?;
    Ok(Some(Quantity {
        value: Decimal {
            units,
            scale: scale - b'0',
        },
        currency,
    }))
}

/// The dictionary title of `ai` ("BATCH/LOT" for (10)).
pub fn ai_title(ai: &str) -> Option<&'static str> {
    DICTIONARY.get(ai).map(|e| e.title.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centuries_follow_the_reference_year() {
        assert_eq!(expand_yymmdd("760101", 2026), Ok((2076, 1, 1)));
        assert_eq!(expand_yymmdd("770101", 2026), Ok((1977, 1, 1)));
        assert_eq!(expand_yymmdd("990101", 2026), Ok((1999, 1, 1)));
        assert_eq!(expand_yymmdd("000229", 2026), Ok((2000, 2, 29)));
        assert_eq!(expand_yymmdd("010101", 2099), Ok((2101, 1, 1)));
        assert_eq!(expand_yymmdd("490101", 2000), Ok((2049, 1, 1)));
        assert_eq!(expand_yymmdd("500101", 2000), Ok((2050, 1, 1)));
        assert_eq!(expand_yymmdd("510101", 2000), Ok((1951, 1, 1)));
    }

    #[test]
    fn day_zero_is_the_last_day_of_the_month() {
        assert_eq!(expand_yymmdd("200200", 2026), Ok((2020, 2, 29)));
        assert_eq!(expand_yymmdd("210200", 2026), Ok((2021, 2, 28)));
        assert_eq!(expand_yymmdd("211200", 2026), Ok((2021, 12, 31)));
        assert_eq!(expand_yymmdd("250400", 2026), Ok((2025, 4, 30)));
    }

    #[test]
    fn bad_dates() {
        for bad in [
            "120230", "990229", "251301", "250000", "2501", "25010A", "2501011",
        ] {
            assert!(
                matches!(expand_yymmdd(bad, 2026), Err(Gs1Error::Date { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn decimals_print_like_their_digits() {
        let d = |units, scale| Decimal { units, scale }.to_string();
        assert_eq!(d(23456, 5), "0.23456");
        assert_eq!(d(1230, 2), "12.30");
        assert_eq!(d(10, 0), "10");
        assert_eq!(d(0, 2), "0.00");
    }
}
