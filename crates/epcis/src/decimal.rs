//! Exact decimal numbers read from their text: no value the ledger consumes ever passes through
//! a binary float, whose rounding could differ from the digits a sender wrote.
//!
//! Two readers: [`Decimal::parse_json`] takes the JSON number grammar (sensor values,
//! quantities); [`Decimal::parse_lenient`] also takes what the reference event-hash
//! implementation treats as a number inside any string (a leading `+`, `.5`, `5.`, `1_000`),
//! because the event hash canonicalises every numeric-looking value.

/// A finite decimal `±digits × 10^exponent`, with no leading zeros in `digits` (zero has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decimal {
    negative: bool,
    /// ASCII digits without leading or trailing zeros; empty for zero.
    digits: Vec<u8>,
    exponent: i64,
}

/// The most significant digits accepted when converting to an integer; beyond this the value is
/// refused rather than rounded twice.
const DIGITS_MAX: usize = 30;

impl Decimal {
    /// Reads a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
    pub(crate) fn parse_json(text: &str) -> Option<Decimal> {
        let body = text.strip_prefix('-').unwrap_or(text);
        let (mantissa, _) = body.split_once(['e', 'E']).unwrap_or((body, ""));
        let (int, _) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let grammar = text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E'));
        if !grammar
            || body.starts_with('+')
            || int.is_empty()
            || (int.len() > 1 && int.starts_with('0'))
        {
            return None;
        }
        if mantissa.starts_with('.') || mantissa.ends_with('.') {
            return None;
        }
        Decimal::parse_lenient(text)
    }

    /// Reads what Python's `float()` reads as a finite number, after the caller has trimmed
    /// whitespace: an optional sign, digits with an optional point (`5.`, `.5`), an optional
    /// exponent, and single `_` between digits. `inf` and `nan` are not finite: `None`.
    pub(crate) fn parse_lenient(text: &str) -> Option<Decimal> {
        let (negative, body) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent_text) = match body.find(['e', 'E']) {
            Some(at) => (&body[..at], Some(&body[at + 1..])),
            None => (body, None),
        };
        let (int, frac) = match mantissa.find('.') {
            Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
            None => (mantissa, ""),
        };
        let int = digits_without_underscores(int)?;
        let frac = digits_without_underscores(frac)?;
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exponent: i64 = match exponent_text {
            None => 0,
            Some(text) => {
                let (sign, digits) = match text.as_bytes().first() {
                    Some(b'-') => (-1, &text[1..]),
                    Some(b'+') => (1, &text[1..]),
                    _ => (1, text),
                };
                let digits = digits_without_underscores(digits)?;
                if digits.is_empty() {
                    return None;
                }
                // An exponent beyond this is out of any range the callers handle; refusing it
                // keeps the arithmetic below from overflowing.
                if digits.len() > 6 {
                    return None;
                }
                let magnitude = digits
                    .iter()
                    .fold(0i64, |acc, digit| acc * 10 + i64::from(digit - b'0'));
                sign * magnitude
            }
        };
        let mut all: Vec<u8> = int;
        all.extend_from_slice(&frac);
        exponent -= i64::try_from(frac.len()).ok()?;
        let leading = all.iter().take_while(|&&digit| digit == b'0').count();
        all.drain(..leading);
        while all.last() == Some(&b'0') {
            all.pop();
            exponent += 1;
        }
        if all.is_empty() {
            exponent = 0;
        }
        Some(Decimal {
            negative: negative && !all.is_empty(),
            digits: all,
            exponent,
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The value's text as the reference event-hash implementation prints it: Python's
    /// `str(float(text))`, with a trailing `.0` dropped. Integral values print as integers, other
    /// values in plain notation, or in Python's scientific notation (`1.5e-05`) below 1e-4.
    ///
    /// Python goes through a binary double, so values with more than 15 significant digits can
    /// print differently there; here they print exactly. Magnitudes a double cannot hold
    /// (1e309 and up) give `None`, and the caller keeps the text as it is; magnitudes below the
    /// smallest double print as `0`, as they do in Python.
    pub(crate) fn canonical_text(&self) -> Option<String> {
        if self.is_zero() {
            return Some("0".to_owned());
        }
        let sign = if self.negative { "-" } else { "" };
        let digits = String::from_utf8_lossy(&self.digits);
        let count = i64::try_from(self.digits.len()).ok()?;
        // The decimal exponent of the first significant digit.
        let first = count.checked_add(self.exponent)? - 1;
        if first > 308 {
            return None;
        }
        if first < -324 {
            return Some("0".to_owned());
        }
        if self.exponent >= 0 {
            let zeros = usize::try_from(self.exponent).ok()?;
            return Some(format!("{sign}{digits}{}", "0".repeat(zeros)));
        }
        if first < -4 {
            let (head, tail) = digits.split_at(1);
            let dot = if tail.is_empty() { "" } else { "." };
            return Some(format!("{sign}{head}{dot}{tail}e-{:02}", -first));
        }
        let point = first + 1;
        if point > 0 {
            let (whole, fraction) = digits.split_at(usize::try_from(point).ok()?);
            Some(format!("{sign}{whole}.{fraction}"))
        } else {
            let zeros = usize::try_from(-point).ok()?;
            Some(format!("{sign}0.{}{digits}", "0".repeat(zeros)))
        }
    }

    /// The value times `10^shift` as an exact fraction `numerator / 10^k`, or `None` when it
    /// does not fit comfortably in an `i128`.
    fn scaled(&self, shift: i64) -> Option<(i128, i128)> {
        if self.digits.len() > DIGITS_MAX {
            return None;
        }
        let mut numerator: i128 = 0;
        for digit in &self.digits {
            numerator = numerator * 10 + i128::from(digit - b'0');
        }
        if self.negative {
            numerator = -numerator;
        }
        let exponent = self.exponent.checked_add(shift)?;
        let count = i64::try_from(self.digits.len()).ok()?;
        if exponent >= 0 {
            if count + exponent > DIGITS_MAX as i64 {
                return None;
            }
            Some((numerator * 10i128.pow(u32::try_from(exponent).ok()?), 1))
        } else if -exponent > DIGITS_MAX as i64 {
            // Far below one unit at this scale: rounds to zero.
            Some((0, 1))
        } else {
            Some((numerator, 10i128.pow(u32::try_from(-exponent).ok()?)))
        }
    }

    /// The value times 1000, rounded half away from zero.
    pub(crate) fn milli(&self) -> Option<i64> {
        let (numerator, denominator) = self.scaled(3)?;
        i64::try_from(round_div(numerator, denominator)).ok()
    }

    /// Degrees Fahrenheit to milli-degrees Celsius: `(F − 32) × 5/9 × 1000`, rounded half away
    /// from zero, computed on the exact fraction.
    pub(crate) fn fahrenheit_to_milli_celsius(&self) -> Option<i64> {
        let (numerator, denominator) = self.scaled(3)?;
        let shifted = numerator.checked_sub(denominator.checked_mul(32_000)?)?;
        i64::try_from(round_div(
            shifted.checked_mul(5)?,
            denominator.checked_mul(9)?,
        ))
        .ok()
    }
}

/// `numerator / denominator` (denominator positive) rounded half away from zero.
fn round_div(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    let remainder = numerator % denominator;
    if remainder.abs() * 2 >= denominator {
        quotient + numerator.signum()
    } else {
        quotient
    }
}

/// The ASCII digits of `text`, allowing a single `_` between two digits as Python does; `None`
/// if anything else is there.
fn digits_without_underscores(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for (index, &byte) in bytes.iter().enumerate() {
        match byte {
            b'0'..=b'9' => out.push(byte),
            b'_' if index > 0
                && bytes[index - 1].is_ascii_digit()
                && bytes.get(index + 1).is_some_and(u8::is_ascii_digit) => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> Option<String> {
        Decimal::parse_lenient(text).and_then(|value| value.canonical_text())
    }

    #[test]
    fn canonical_text_follows_python() {
        for (text, expected) in [
            ("452.0", "452"),
            ("12.1", "12.1"),
            ("12.10", "12.1"),
            ("26", "26"),
            ("-0.0", "0"),
            ("+3", "3"),
            ("007", "7"),
            ("1e2", "100"),
            ("1E+20", "100000000000000000000"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
            ("-0.000015", "-1.5e-05"),
            ("1_000.5", "1000.5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-273.15", "-273.15"),
            ("0.3434000", "0.3434"),
            ("1e-400", "0"),
        ] {
            assert_eq!(canon(text).as_deref(), Some(expected), "{text}");
        }
        for text in [
            "",
            ".",
            "1_",
            "_1",
            "1__0",
            "inf",
            "nan",
            "1e",
            "2023-10-09",
            "0x1A",
            "1 2",
            "1e309",
        ] {
            assert_eq!(canon(text), None, "{text}");
        }
    }

    #[test]
    fn json_grammar_only() {
        for text in ["+1", ".5", "5.", "01", "1_0", "1e"] {
            assert_eq!(Decimal::parse_json(text), None, "{text}");
        }
        assert!(Decimal::parse_json("-0.5e-3").is_some());
    }

    #[test]
    fn milli_rounds_half_away_from_zero() {
        let milli = |text: &str| Decimal::parse_json(text).and_then(|value| value.milli());
        assert_eq!(milli("26.1"), Some(26_100));
        assert_eq!(milli("-3.5"), Some(-3_500));
        assert_eq!(milli("0.0005"), Some(1));
        assert_eq!(milli("-0.0005"), Some(-1));
        assert_eq!(milli("0.0004"), Some(0));
        assert_eq!(milli("1e-40"), Some(0));
        assert_eq!(milli("1e40"), None);
        let fahrenheit =
            |text: &str| Decimal::parse_json(text).and_then(|v| v.fahrenheit_to_milli_celsius());
        assert_eq!(fahrenheit("32"), Some(0));
        assert_eq!(fahrenheit("212"), Some(100_000));
        assert_eq!(fahrenheit("-40"), Some(-40_000));
        assert_eq!(fahrenheit("98.6"), Some(37_000));
        assert_eq!(fahrenheit("33"), Some(556));
    }
}
