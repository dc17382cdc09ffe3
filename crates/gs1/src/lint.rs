//! The content checks ("linters") the syntax dictionary names, written from the descriptions in
//! the GS1 General Specifications and GS1's Barcode Syntax Tests. Each check takes one component
//! of a value and, on failure, says what is wrong and where (position and length within the
//! component), which the caller turns into the `|bad|` markup of [`crate::Gs1Error::Lint`].

use crate::dictionary::{Cset, Linter};
use crate::error::LintError;
use crate::tables;

/// A failed check: what, and the offending span (start, length) within the component.
pub(crate) type Failure = (LintError, usize, usize);

type Res = Result<(), Failure>;

fn fail(e: LintError, pos: usize, len: usize) -> Res {
    Err((e, pos, len))
}

const CSET82: &[u8] =
    b"!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
const CSET39: &[u8] = b"#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const CSET32: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
const CSET64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Whether every byte of `s` is in GS1's character set 82.
pub fn is_cset82(s: &[u8]) -> bool {
    s.iter().all(|c| CSET82.contains(c))
}

fn first_outside(data: &[u8], set: &[u8]) -> Option<usize> {
    data.iter().position(|c| !set.contains(c))
}

fn digits(data: &[u8]) -> Res {
    match data.iter().position(|c| !c.is_ascii_digit()) {
        Some(p) => fail(LintError::NonDigitCharacter, p, 1),
        None => Ok(()),
    }
}

/// The value of a run of ASCII digits (already checked to be digits).
fn number(data: &[u8]) -> u64 {
    data.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// The character-set check every component gets before its own linters.
pub(crate) fn cset(cset: Cset, data: &[u8]) -> Res {
    match cset {
        Cset::Numeric => digits(data),
        Cset::Cset82 => match first_outside(data, CSET82) {
            Some(p) => fail(LintError::InvalidCset82Character, p, 1),
            None => Ok(()),
        },
        Cset::Cset39 => match first_outside(data, CSET39) {
            Some(p) => fail(LintError::InvalidCset39Character, p, 1),
            None => Ok(()),
        },
        Cset::Cset64 => {
            // Up to two '=' may pad the data to a multiple of three characters.
            let pads = data.iter().rev().take_while(|&&c| c == b'=').count();
            let len = data.len() - pads;
            if pads > 2 || (pads > 0 && !data.len().is_multiple_of(3)) {
                return fail(LintError::InvalidCset64Padding, len, pads);
            }
            match first_outside(&data[..len], CSET64) {
                Some(p) => fail(LintError::InvalidCset64Character, p, 1),
                None => Ok(()),
            }
        }
    }
}

pub(crate) fn run(linter: Linter, data: &[u8]) -> Res {
    use Linter as L;
    match linter {
        L::Csum => csum(data),
        L::Csumalpha => csumalpha(data),
        L::Gcppos1 => gcp_at(data, 0),
        L::Gcppos2 => gcp_at(data, 1),
        L::Hasnondigit => {
            if data.iter().all(u8::is_ascii_digit) {
                fail(LintError::RequiresNonDigitCharacter, 0, data.len())
            } else {
                Ok(())
            }
        }
        L::Hh => hour(data, 0),
        L::Mi => minute_or_second(data, 0, LintError::IllegalMinute),
        L::Ss => minute_or_second(data, 0, LintError::IllegalSecond),
        L::Hhmi => {
            if data.len() != 4 {
                let e = if data.len() < 4 {
                    LintError::HourWithMinuteTooShort
                } else {
                    LintError::HourWithMinuteTooLong
                };
                return fail(e, 0, data.len());
            }
            hour(&data[..2], 0)?;
            minute_or_second(&data[2..], 2, LintError::IllegalMinute)
        }
        L::Hyphen => match data.iter().position(|&c| c != b'-') {
            Some(p) => fail(LintError::NotHyphen, p, 1),
            None => Ok(()),
        },
        L::Iban => iban(data),
        L::Importeridx => {
            if data.len() != 1 {
                return fail(LintError::ImporterIdxMustBeOneCharacter, 0, data.len());
            }
            if data[0] == b'-' || data[0] == b'_' || data[0].is_ascii_alphanumeric() {
                Ok(())
            } else {
                fail(LintError::InvalidImportIdxCharacter, 0, 1)
            }
        }
        L::Iso3166 => in_list(tables::is_iso3166(data), LintError::NotIso3166, data),
        L::Iso3166999 => in_list(
            data == b"999" || tables::is_iso3166(data),
            LintError::NotIso3166Or999,
            data,
        ),
        L::Iso3166alpha2 => in_list(
            tables::is_iso3166_alpha2(data),
            LintError::NotIso3166Alpha2,
            data,
        ),
        L::Iso4217 => in_list(
            std::str::from_utf8(data)
                .ok()
                .and_then(tables::iso4217_alpha)
                .is_some(),
            LintError::NotIso4217,
            data,
        ),
        L::Iso5218 => in_list(
            matches!(data, b"0" | b"1" | b"2" | b"9"),
            LintError::InvalidBiologicalSexCode,
            data,
        ),
        L::Latitude => coordinate(
            data,
            1_800_000_000,
            LintError::LatitudeInvalidLength,
            LintError::InvalidLatitude,
        ),
        L::Longitude => coordinate(
            data,
            3_600_000_000,
            LintError::LongitudeInvalidLength,
            LintError::InvalidLongitude,
        ),
        L::Mediatype => {
            // AIDC media types: 01-10 assigned by ICCBBA, 80-99 for local or national use.
            let ok = data.len() == 2
                && data.iter().all(u8::is_ascii_digit)
                && matches!(number(data), 1..=10 | 80..=99);
            in_list(ok, LintError::InvalidMediaType, data)
        }
        L::Nonzero => {
            if data.iter().all(|&c| c == b'0') {
                fail(LintError::IllegalZeroValue, 0, data.len())
            } else {
                Ok(())
            }
        }
        L::Nozeroprefix => {
            if data.len() > 1 && data[0] == b'0' {
                fail(LintError::IllegalZeroPrefix, 0, 1)
            } else {
                Ok(())
            }
        }
        L::Packagetype => in_list(
            tables::is_package_type(data),
            LintError::InvalidPackageType,
            data,
        ),
        L::Pcenc => pcenc(data),
        L::Pieceoftotal => piece_of_total(data),
        L::Posinseqslash => position_in_sequence(data),
        L::Winding => in_list(
            matches!(data, b"0" | b"1" | b"9"),
            LintError::InvalidWindingDirection,
            data,
        ),
        L::Yesno => in_list(matches!(data, b"0" | b"1"), LintError::NotZeroOrOne, data),
        L::Zero => in_list(data == b"0", LintError::NotZero, data),
        L::Yymmdd => yymmdd(data, false),
        L::Yymmd0 => yymmdd(data, true),
        L::Yyyymmdd => yyyymmdd(data),
        L::Couponcode => coupon_code(data),
        L::Couponposoffer => coupon_positive_offer(data),
    }
}

fn in_list(ok: bool, e: LintError, data: &[u8]) -> Res {
    if ok { Ok(()) } else { fail(e, 0, data.len()) }
}

fn csum(data: &[u8]) -> Res {
    digits(data)?;
    let Some((check, body)) = data.split_last() else {
        return fail(LintError::TooShortForCheckDigit, 0, 0);
    };
    if crate::keys::check_digit(body) == *check {
        Ok(())
    } else {
        fail(LintError::IncorrectCheckDigit, data.len() - 1, 1)
    }
}

/// The alphanumeric check character pair (GS1 General Specifications, "check character
/// calculation for alphanumeric keys"): data characters weighted by primes from the right, sum
/// modulo 1021, split into two 5-bit values spelled in CSET 32.
fn csumalpha(data: &[u8]) -> Res {
    const PRIMES: [u32; 97] = [
        2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181,
        191, 193, 197, 199, 211, 223, 227, 229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281,
        283, 293, 307, 311, 313, 317, 331, 337, 347, 349, 353, 359, 367, 373, 379, 383, 389, 397,
        401, 409, 419, 421, 431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487, 491, 499, 503,
        509,
    ];
    let len = data.len();
    if len < 2 {
        return fail(LintError::TooShortForCheckPair, 0, len);
    }
    let body = &data[..len - 2];
    if body.len() > PRIMES.len() {
        return fail(LintError::TooLongForCheckPairImplementation, 0, len);
    }
    if let Some(p) = first_outside(body, CSET82) {
        return fail(LintError::InvalidCset82Character, p, 1);
    }
    if let Some(p) = first_outside(&data[len - 2..], CSET32) {
        return fail(LintError::InvalidCset32Character, len - 2 + p, 1);
    }
    let sum = body
        .iter()
        .rev()
        .zip(PRIMES)
        .map(|(c, prime)| {
            let weight = CSET82.iter().position(|x| x == c).unwrap_or(0);
            u32::try_from(weight).unwrap_or(0) * prime
        })
        .sum::<u32>()
        % 1021;
    let expected = [sum >> 5, sum & 31].map(|i| CSET32.get(i as usize).copied());
    if [Some(data[len - 2]), Some(data[len - 1])] == expected {
        Ok(())
    } else {
        fail(LintError::IncorrectCheckPair, len - 2, 2)
    }
}

/// The data from `offset` starts with a GS1 Company Prefix: without a registry of prefixes at
/// hand, that means at least the shortest prefix length (4) of digits.
fn gcp_at(data: &[u8], offset: usize) -> Res {
    const MIN_GCP: usize = 4;
    let rest = data.get(offset..).unwrap_or_default();
    if rest.len() < MIN_GCP {
        return fail(LintError::TooShortForGcp, offset, rest.len());
    }
    match rest[..MIN_GCP].iter().position(|c| !c.is_ascii_digit()) {
        Some(p) => fail(LintError::InvalidGcpPrefix, offset + p, 1),
        None => Ok(()),
    }
}

fn hour(data: &[u8], at: usize) -> Res {
    digits(data).map_err(|(e, p, l)| (e, p + at, l))?;
    if data.len() != 2 || number(data) > 23 {
        return fail(LintError::IllegalHour, at, data.len());
    }
    Ok(())
}

fn minute_or_second(data: &[u8], at: usize, e: LintError) -> Res {
    digits(data).map_err(|(e, p, l)| (e, p + at, l))?;
    if data.len() != 2 || number(data) > 59 {
        return fail(e, at, data.len());
    }
    Ok(())
}

/// Days in `month` (1-12), with February's length from `leap`.
pub(crate) fn days_in_month(month: u64, leap: bool) -> u64 {
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn month_and_day(data: &[u8], at: usize, leap: bool, day_zero: bool) -> Res {
    let month = number(&data[at..at + 2]);
    if !(1..=12).contains(&month) {
        return fail(LintError::IllegalMonth, at, 2);
    }
    let day = number(&data[at + 2..at + 4]);
    if (day == 0 && !day_zero) || day > days_in_month(month, leap) {
        return fail(LintError::IllegalDay, at + 2, 2);
    }
    Ok(())
}

fn date_length(data: &[u8], len: usize) -> Res {
    if data.len() < len {
        return fail(LintError::DateTooShort, 0, data.len());
    }
    if data.len() > len {
        return fail(LintError::DateTooLong, 0, data.len());
    }
    digits(data)
}

/// YYMMDD; the century is not known here, so every year divisible by four is taken as leap
/// (right for 2000 and every year from 1901 to 2099).
fn yymmdd(data: &[u8], day_zero: bool) -> Res {
    date_length(data, 6)?;
    month_and_day(data, 2, number(&data[..2]).is_multiple_of(4), day_zero)
}

fn yyyymmdd(data: &[u8]) -> Res {
    date_length(data, 8)?;
    let year = number(&data[..4]);
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    month_and_day(data, 4, leap, false)
}

fn coordinate(data: &[u8], max: u64, bad_length: LintError, out_of_range: LintError) -> Res {
    digits(data)?;
    if data.len() != 10 {
        return fail(bad_length, 0, data.len());
    }
    if number(data) > max {
        return fail(out_of_range, 0, 10);
    }
    Ok(())
}

/// ISO 13616 IBAN: country code, check digits, then the account; the whole, rotated by four and
/// read as a number with letters as 10-35, is 1 modulo 97.
fn iban(data: &[u8]) -> Res {
    let len = data.len();
    if len < 4 {
        return fail(LintError::IbanTooShort, 0, len);
    }
    if !tables::is_iso3166_alpha2(&data[..2]) {
        return fail(LintError::IllegalIbanCountryCode, 0, 2);
    }
    if len > 34 {
        return fail(LintError::IbanTooLong, 0, len);
    }
    if len <= 10 {
        return fail(LintError::IbanTooShort, 0, len);
    }
    let mut sum = 0u32;
    for i in (4..len).chain(0..4) {
        let c = data[i];
        let value = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return fail(LintError::InvalidIbanCharacter, i, 1),
        };
        sum = (sum * if value < 10 { 10 } else { 100 } + value) % 97;
    }
    if sum == 1 {
        Ok(())
    } else {
        fail(LintError::IncorrectIbanChecksum, 2, 2)
    }
}

fn pcenc(data: &[u8]) -> Res {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'%' {
            if i + 2 >= data.len() {
                return fail(LintError::InvalidPercentSequence, i, data.len() - i);
            }
            if !data[i + 1].is_ascii_hexdigit() || !data[i + 2].is_ascii_hexdigit() {
                return fail(LintError::InvalidPercentSequence, i, 3);
            }
            i += 2;
        }
        i += 1;
    }
    Ok(())
}

/// "PPTT": piece PP of TT, equal halves, neither zero, piece at most total.
fn piece_of_total(data: &[u8]) -> Res {
    digits(data)?;
    let len = data.len();
    if !len.is_multiple_of(2) {
        return fail(LintError::InvalidLengthForPieceOfTotal, 0, len);
    }
    let (piece, total) = data.split_at(len / 2);
    if number(piece) == 0 {
        return fail(LintError::ZeroPieceNumber, 0, len / 2);
    }
    if number(total) == 0 {
        return fail(LintError::ZeroTotalPieces, len / 2, len / 2);
    }
    if piece > total {
        return fail(LintError::PieceNumberExceedsTotal, 0, len);
    }
    Ok(())
}

/// "<pos>/<end>", both without leading zeros, pos at most end.
fn position_in_sequence(data: &[u8]) -> Res {
    let malformed = || fail(LintError::PositionInSequenceMalformed, 0, data.len());
    let Some(slash) = data.iter().position(|&c| c == b'/') else {
        return malformed();
    };
    let (pos, end) = (&data[..slash], &data[slash + 1..]);
    if pos.is_empty()
        || end.is_empty()
        || !pos.iter().all(u8::is_ascii_digit)
        || !end.iter().all(u8::is_ascii_digit)
    {
        return malformed();
    }
    if pos[0] == b'0' {
        return fail(LintError::IllegalZeroPrefix, 0, slash);
    }
    if end[0] == b'0' {
        return fail(LintError::IllegalZeroPrefix, slash + 1, end.len());
    }
    if pos.len() > end.len() || (pos.len() == end.len() && pos > end) {
        return fail(LintError::PositionExceedsEnd, 0, data.len());
    }
    Ok(())
}

/// A cursor over coupon data, whose fields are read one after another.
struct Coupon<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Coupon<'a> {
    fn left(&self) -> usize {
        self.data.len() - self.at
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.at).copied()
    }

    /// The next digit, which must be there and satisfy `ok`.
    fn digit(
        &mut self,
        missing: LintError,
        invalid: LintError,
        ok: impl Fn(u8) -> bool,
    ) -> Result<u8, Failure> {
        let Some(c) = self.peek() else {
            return Err((missing, 0, self.data.len()));
        };
        if !ok(c) {
            return Err((invalid, self.at, 1));
        }
        self.at += 1;
        Ok(c - b'0')
    }

    /// `n` more digits must be there.
    fn take(&mut self, n: usize, truncated: LintError) -> Result<&'a [u8], Failure> {
        if self.left() < n {
            let span = if self.left() == 0 {
                (0, self.data.len())
            } else {
                (self.at, self.left())
            };
            return Err((truncated, span.0, span.1));
        }
        let data: &'a [u8] = self.data;
        let field = &data[self.at..self.at + n];
        self.at += n;
        Ok(field)
    }

    /// A GS1 Company Prefix of `n` digits.
    fn gcp(&mut self, n: usize, truncated: LintError) -> Res {
        let start = self.at;
        let field = self.take(n, truncated)?;
        gcp_at(field, 0).map_err(|(e, _, _)| (e, start, n))
    }

    /// One purchase requirement: its length digit and value, its code and its family code.
    fn purchase(&mut self, e: Purchase) -> Result<(), Failure> {
        let vli = self.digit(e.missing_vli, e.invalid_length, |d| {
            (b'1'..=b'5').contains(&d)
        })?;
        self.take(usize::from(vli), e.truncated)?;
        self.digit(e.missing_code, e.invalid_code, |d| d <= b'4' || d == b'9')?;
        self.take(3, e.truncated_family)?;
        Ok(())
    }

    /// The company prefix of a second or third purchase; a length digit of 9 means the
    /// coupon's own prefix.
    fn purchase_gcp(
        &mut self,
        missing: LintError,
        invalid: LintError,
        truncated: LintError,
    ) -> Res {
        let vli = self.digit(missing, invalid, |d| d <= b'6' || d == b'9')?;
        if vli != 9 {
            self.gcp(usize::from(vli) + 6, truncated)?;
        }
        Ok(())
    }
}

/// The error codes of one purchase requirement of a coupon (its first, second or third).
struct Purchase {
    missing_vli: LintError,
    invalid_length: LintError,
    truncated: LintError,
    missing_code: LintError,
    invalid_code: LintError,
    truncated_family: LintError,
}

/// AI (8110): the North American coupon code.
fn coupon_code(data: &[u8]) -> Res {
    use LintError as E;
    digits(data)?;
    let mut c = Coupon { data, at: 0 };
    let vli = c.digit(E::CouponMissingGcpVli, E::CouponInvalidGcpLength, |d| {
        d <= b'6'
    })?;
    c.gcp(usize::from(vli) + 6, E::CouponTruncatedGcp)?;
    c.take(6, E::CouponTruncatedOfferCode)?;
    let vli = c.digit(
        E::CouponMissingSaveValueVli,
        E::CouponInvalidSaveValueLength,
        |d| (b'1'..=b'5').contains(&d),
    )?;
    c.take(usize::from(vli), E::CouponTruncatedSaveValue)?;
    c.purchase(Purchase {
        missing_vli: E::CouponMissing1stPurchaseRequirementVli,
        invalid_length: E::CouponInvalid1stPurchaseRequirementLength,
        truncated: E::CouponTruncated1stPurchaseRequirement,
        missing_code: E::CouponMissing1stPurchaseRequirementCode,
        invalid_code: E::CouponInvalid1stPurchaseRequirementCode,
        truncated_family: E::CouponTruncated1stPurchaseFamilyCode,
    })?;

    // Optional field 1: additional purchase rules and a second purchase.
    if c.peek() == Some(b'1') {
        c.at += 1;
        c.digit(
            E::CouponMissingAdditionalPurchaseRulesCode,
            E::CouponInvalidAdditionalPurchaseRulesCode,
            |d| d <= b'3',
        )?;
        c.purchase(Purchase {
            missing_vli: E::CouponMissing2ndPurchaseRequirementVli,
            invalid_length: E::CouponInvalid2ndPurchaseRequirementLength,
            truncated: E::CouponTruncated2ndPurchaseRequirement,
            missing_code: E::CouponMissing2ndPurchaseRequirementCode,
            invalid_code: E::CouponInvalid2ndPurchaseRequirementCode,
            truncated_family: E::CouponTruncated2ndPurchaseFamilyCode,
        })?;
        c.purchase_gcp(
            E::CouponMissing2ndPurchaseGcpVli,
            E::CouponInvalid2ndPurchaseGcpLength,
            E::CouponTruncated2ndPurchaseGcp,
        )?;
    }

    // Optional field 2: a third purchase.
    if c.peek() == Some(b'2') {
        c.at += 1;
        c.purchase(Purchase {
            missing_vli: E::CouponMissing3rdPurchaseRequirementVli,
            invalid_length: E::CouponInvalid3rdPurchaseRequirementLength,
            truncated: E::CouponTruncated3rdPurchaseRequirement,
            missing_code: E::CouponMissing3rdPurchaseRequirementCode,
            invalid_code: E::CouponInvalid3rdPurchaseRequirementCode,
            truncated_family: E::CouponTruncated3rdPurchaseFamilyCode,
        })?;
        c.purchase_gcp(
            E::CouponMissing3rdPurchaseGcpVli,
            E::CouponInvalid3rdPurchaseGcpLength,
            E::CouponTruncated3rdPurchaseGcp,
        )?;
    }

    // Optional fields 3 and 4: expiration and start dates.
    let mut expiry = None;
    if c.peek() == Some(b'3') {
        c.at += 1;
        let start = c.at;
        let date = c.take(6, E::CouponTooShortForExpirationDate)?;
        yymmdd(date, false).map_err(|_| (E::CouponInvalidExpirationDate, start, 6))?;
        expiry = Some(date);
    }
    if c.peek() == Some(b'4') {
        c.at += 1;
        let start = c.at;
        let date = c.take(6, E::CouponTooShortForStartDate)?;
        yymmdd(date, false).map_err(|_| (E::CouponInvalidStartDate, start, 6))?;
        if expiry.is_some_and(|e| date > e) {
            return fail(E::CouponExpirationBeforeStart, start.saturating_sub(8), 14);
        }
    }

    // Optional field 5: serial number.
    if c.peek() == Some(b'5') {
        c.at += 1;
        let vli = c.digit(
            E::CouponMissingSerialNumberVli,
            E::CouponMissingSerialNumberVli,
            |_| true,
        )?;
        c.take(usize::from(vli) + 6, E::CouponTruncatedSerialNumber)?;
    }

    // Optional field 6: retailer company prefix or GLN.
    if c.peek() == Some(b'6') {
        c.at += 1;
        let vli = c.digit(
            E::CouponMissingRetailerGcpOrGlnVli,
            E::CouponInvalidRetailerGcpOrGlnLength,
            |d| (b'1'..=b'7').contains(&d),
        )?;
        c.gcp(usize::from(vli) + 6, E::CouponTruncatedRetailerGcpOrGln)?;
    }

    // Optional field 9: miscellaneous.
    if c.peek() == Some(b'9') {
        c.at += 1;
        c.digit(
            E::CouponMissingSaveValueCode,
            E::CouponInvalidSaveValueCode,
            |d| matches!(d, b'0' | b'1' | b'2' | b'5' | b'6'),
        )?;
        c.digit(
            E::CouponMissingSaveValueAppliesToItem,
            E::CouponInvalidSaveValueAppliesToItem,
            |d| d <= b'2',
        )?;
        c.digit(
            E::CouponMissingStoreCouponFlag,
            E::CouponMissingStoreCouponFlag,
            |_| true,
        )?;
        c.digit(
            E::CouponMissingDontMultiplyFlag,
            E::CouponInvalidDontMultiplyFlag,
            |d| d <= b'1',
        )?;
    }

    if c.left() != 0 {
        return fail(E::CouponExcessData, c.at, c.left());
    }
    Ok(())
}

/// AI (8112): the positive offer file coupon code.
fn coupon_positive_offer(data: &[u8]) -> Res {
    use LintError as E;
    digits(data)?;
    let mut c = Coupon { data, at: 0 };
    c.digit(
        E::CouponMissingFormatCode,
        E::CouponInvalidFormatCode,
        |d| d <= b'1',
    )?;
    let vli = c.digit(
        E::CouponMissingFunderVli,
        E::CouponInvalidFunderLength,
        |d| d <= b'6',
    )?;
    c.take(usize::from(vli) + 6, E::CouponTruncatedFunder)?;
    c.take(6, E::CouponTruncatedOfferCode)?;
    let vli = c.digit(
        E::CouponMissingSerialNumberVli,
        E::CouponMissingSerialNumberVli,
        |_| true,
    )?;
    c.take(usize::from(vli) + 6, E::CouponTruncatedSerialNumber)?;
    if c.left() != 0 {
        return fail(E::CouponExcessData, c.at, c.left());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphanumeric_check_pairs() {
        assert!(csumalpha(b"22").is_ok());
        assert!(csumalpha(b"1987654Ad4X4bL5ttr2310c2K").is_ok());
        assert!(csumalpha(b"12345_0123456789:;<=>?62").is_ok());
        assert_eq!(
            csumalpha(b"1987654Ad4X4bL5ttr2310cXK"),
            Err((LintError::IncorrectCheckPair, 23, 2))
        );
        assert_eq!(
            csumalpha(b"2"),
            Err((LintError::TooShortForCheckPair, 0, 1))
        );
    }

    #[test]
    fn ibans() {
        for ok in [
            "FR7630006000011234567890189",
            "GB98MIDL07009312345678",
            "BE71096123456769",
        ] {
            assert_eq!(iban(ok.as_bytes()), Ok(()), "{ok}");
        }
        assert_eq!(
            iban(b"BE71096123456760"),
            Err((LintError::IncorrectIbanChecksum, 2, 2))
        );
        assert_eq!(
            iban(b"XX361234567890"),
            Err((LintError::IllegalIbanCountryCode, 0, 2))
        );
    }

    #[test]
    fn coupons_accept_well_formed_data() {
        assert_eq!(coupon_code(b"012345612345611110123"), Ok(()));
        assert_eq!(coupon_positive_offer(b"001234561234560123456"), Ok(()));
        assert_eq!(
            coupon_positive_offer(b"0012345612345601234567"),
            Err((LintError::CouponExcessData, 21, 1))
        );
    }

    #[test]
    fn base64_padding() {
        assert!(cset(Cset::Cset64, b"12=").is_ok());
        assert!(cset(Cset::Cset64, b"1==").is_ok());
        assert!(cset(Cset::Cset64, b"12").is_ok());
        assert_eq!(
            cset(Cset::Cset64, b"123="),
            Err((LintError::InvalidCset64Padding, 3, 1))
        );
    }
}
