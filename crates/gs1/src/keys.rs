//! GS1 keys the ledger stores and checks: GTIN (held as GTIN-14), SSCC and GLN, with their mod-10
//! check digits; and what a key says about who issued it: its GS1 prefix and, given GS1's table of
//! company prefix lengths, its GS1 Company Prefix.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::Gs1Error;
use crate::tables::GS1_PREFIXES;

/// The GS1 mod-10 check digit of `digits` (all ASCII digits, without the check digit): weights 3
/// and 1 alternate from the right.
pub fn check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8 + b'0'
}

fn digits_with_check(
    what: &'static str,
    s: &str,
    lengths: &[usize],
    expected: &'static str,
) -> Result<(), Gs1Error> {
    let bytes = s.as_bytes();
    if !lengths.contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(Gs1Error::Length {
            what,
            expected,
            got: s.to_owned(),
        });
    }
    let (body, check) = bytes.split_at(bytes.len() - 1);
    if check_digit(body) != check[0] {
        return Err(Gs1Error::CheckDigit {
            what,
            got: s.to_owned(),
        });
    }
    Ok(())
}

/// A Global Trade Item Number, always held as GTIN-14 (shorter GTINs are zero-padded on the left,
/// as GS1 prescribes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize)]
pub struct Gtin([u8; 14]);

impl Gtin {
    /// Parses a GTIN-8, -12, -13 or -14 and checks its check digit.
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        digits_with_check("GTIN", s, &[8, 12, 13, 14], "8, 12, 13 or 14")?;
        let mut out = [b'0'; 14];
        out[14 - s.len()..].copy_from_slice(s.as_bytes());
        Ok(Self(out))
    }

    /// The 14 digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Gtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Gtin {
    type Err = Gs1Error;
    fn from_str(s: &str) -> Result<Self, Gs1Error> {
        Self::parse(s)
    }
}

impl Serialize for Gtin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Gtin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A Serial Shipping Container Code: 18 digits with a check digit. Names a case or a pallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize)]
pub struct Sscc([u8; 18]);

impl Sscc {
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        digits_with_check("SSCC", s, &[18], "18")?;
        let mut out = [0; 18];
        out.copy_from_slice(s.as_bytes());
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Display for Sscc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Sscc {
    type Err = Gs1Error;
    fn from_str(s: &str) -> Result<Self, Gs1Error> {
        Self::parse(s)
    }
}

impl Serialize for Sscc {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Sscc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// Decoding checks the digits, so a transaction cannot carry an identifier that fails its check.
macro_rules! borsh_checked {
    ($ty:ty, $len:literal) => {
        impl BorshDeserialize for $ty {
            fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
                let raw = <[u8; $len]>::deserialize_reader(reader)?;
                let s = std::str::from_utf8(&raw)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                Self::parse(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            }
        }
    };
}
borsh_checked!(Gtin, 14);
borsh_checked!(Sscc, 18);

/// A Global Location Number: 13 digits with a check digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize)]
pub struct Gln([u8; 13]);

impl Gln {
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        digits_with_check("GLN", s, &[13], "13")?;
        let mut out = [0; 13];
        out.copy_from_slice(s.as_bytes());
        Ok(Self(out))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The GS1 prefix: who issued the number.
    pub fn gs1_prefix(&self) -> Option<Gs1Prefix> {
        gs1_prefix(self.as_str())
    }

    /// The GS1 Company Prefix, if `table` knows this number's prefix.
    pub fn company_prefix(&self, table: &GcpLengthTable) -> Option<&str> {
        table.company_prefix(self.as_str())
    }

    /// The 12 digits before the check digit.
    pub fn payload(&self) -> &str {
        &self.as_str()[..12]
    }

    pub fn check_digit(&self) -> u8 {
        self.0[12] - b'0'
    }
}

impl std::fmt::Display for Gln {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Gln {
    type Err = Gs1Error;
    fn from_str(s: &str) -> Result<Self, Gs1Error> {
        Self::parse(s)
    }
}

impl Serialize for Gln {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Gln {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as Deserialize>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

borsh_checked!(Gln, 13);

/// Which GTIN a GTIN-14 holds: the shortest format its leading zeros allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GtinFormat {
    Gtin8,
    Gtin12,
    Gtin13,
    Gtin14,
}

impl GtinFormat {
    /// The number of digits.
    pub fn digits(self) -> usize {
        match self {
            Self::Gtin8 => 8,
            Self::Gtin12 => 12,
            Self::Gtin13 => 13,
            Self::Gtin14 => 14,
        }
    }
}

impl Gtin {
    pub fn format(&self) -> GtinFormat {
        match self.0.iter().take_while(|&&d| d == b'0').count() {
            6.. => GtinFormat::Gtin8,
            2.. => GtinFormat::Gtin12,
            1 => GtinFormat::Gtin13,
            _ => GtinFormat::Gtin14,
        }
    }

    /// The GTIN in its own format (8, 12, 13 or 14 digits).
    pub fn short(&self) -> &str {
        &self.as_str()[14 - self.format().digits()..]
    }

    /// The digits of [`Self::short`] without the check digit.
    pub fn payload(&self) -> &str {
        let short = self.short();
        &short[..short.len() - 1]
    }

    pub fn check_digit(&self) -> u8 {
        self.0[13] - b'0'
    }

    /// The indicator digit of a GTIN-14 (its packaging level).
    pub fn packaging_level(&self) -> Option<u8> {
        (self.format() == GtinFormat::Gtin14).then(|| self.0[0] - b'0')
    }

    /// The GS1 prefix: who issued the number. A GTIN-8 has a GS1-8 prefix, its first three
    /// digits; the other formats are read as 13 digits.
    pub fn gs1_prefix(&self) -> Option<Gs1Prefix> {
        match self.format() {
            GtinFormat::Gtin8 => gs1_prefix(&self.as_str()[6..]),
            _ => gs1_prefix(&self.as_str()[1..]),
        }
    }

    /// The GS1 Company Prefix (written in the 13-digit form), if `table` knows this number's
    /// prefix. A GTIN-8 has none.
    pub fn company_prefix(&self, table: &GcpLengthTable) -> Option<&str> {
        match self.format() {
            GtinFormat::Gtin8 => None,
            _ => table.company_prefix(&self.as_str()[1..]),
        }
    }

    /// The item reference: the digits between the company prefix and the check digit.
    pub fn item_reference(&self, table: &GcpLengthTable) -> Option<&str> {
        let gcp = self.company_prefix(table)?;
        self.as_str().get(1 + gcp.len()..13)
    }
}

impl Sscc {
    /// The extension digit (the first).
    pub fn extension_digit(&self) -> u8 {
        self.0[0] - b'0'
    }

    /// The 17 digits before the check digit.
    pub fn payload(&self) -> &str {
        &self.as_str()[..17]
    }

    pub fn check_digit(&self) -> u8 {
        self.0[17] - b'0'
    }

    /// The GS1 prefix of the number after the extension digit.
    pub fn gs1_prefix(&self) -> Option<Gs1Prefix> {
        gs1_prefix(&self.as_str()[1..])
    }

    /// The GS1 Company Prefix, which follows the extension digit.
    pub fn company_prefix(&self, table: &GcpLengthTable) -> Option<&str> {
        table.company_prefix(&self.as_str()[1..])
    }
}

/// A GS1 prefix and what GS1 uses the numbers under it for (mostly: which member organisation
/// issues them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gs1Prefix {
    /// The prefix digits as matched (usually three).
    pub value: String,
    pub usage: &'static str,
}

/// The GS1 prefix of `digits` (a number read as 13 digits: a GLN, a GTIN-13 or a zero-padded
/// GTIN-12; or the first digits of a GTIN-8).
pub fn gs1_prefix(digits: &str) -> Option<Gs1Prefix> {
    GS1_PREFIXES.iter().find_map(|&(len, from, to, usage)| {
        let head = digits.get(..len)?;
        let n: u32 = head.parse().ok()?;
        (from..=to).contains(&n).then(|| Gs1Prefix {
            value: head.to_owned(),
            usage,
        })
    })
}

/// GS1's table of GS1 Company Prefix lengths (GS1 publishes it as "GCP length" data): for a
/// prefix of a 13-digit number, how many digits the company prefix has. The crate ships no copy;
/// the caller loads the current one (it changes monthly) with [`Self::from_entries`] or
/// [`Self::parse_gs1_xml`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcpLengthTable {
    lengths: BTreeMap<String, usize>,
}

impl GcpLengthTable {
    /// A table of (prefix, company prefix length) pairs.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        Self {
            lengths: entries
                .into_iter()
                .map(|(p, l)| (p.to_owned(), l))
                .collect(),
        }
    }

    /// Reads GS1's XML form, whose entries look like `<entry prefix="0614141" gcpLength="7"/>`.
    /// Entries it cannot read are skipped.
    pub fn parse_gs1_xml(xml: &str) -> Self {
        fn attribute<'a>(element: &'a str, name: &str) -> Option<&'a str> {
            let start = element.find(&format!("{name}=\""))? + name.len() + 2;
            let rest = element.get(start..)?;
            rest.get(..rest.find('"')?)
        }
        let lengths = xml
            .split("<entry")
            .skip(1)
            .filter_map(|element| {
                let element = &element[..element.find('>').unwrap_or(element.len())];
                let prefix = attribute(element, "prefix")?;
                let length = attribute(element, "gcpLength")?.parse().ok()?;
                prefix
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| (prefix.to_owned(), length))
            })
            .collect();
        Self { lengths }
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The company prefix length of `digits` (a 13-digit number or longer), from the longest
    /// prefix in the table.
    pub fn gcp_length(&self, digits: &str) -> Option<usize> {
        (1..=digits.len().min(12))
            .rev()
            .find_map(|l| self.lengths.get(digits.get(..l)?))
            .copied()
    }

    /// The company prefix at the start of `digits`.
    pub fn company_prefix<'a>(&self, digits: &'a str) -> Option<&'a str> {
        digits.get(..self.gcp_length(digits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtins_pad_to_fourteen_and_check() {
        assert_eq!(
            Gtin::parse("96385074").map(|g| g.to_string()),
            Ok("00000096385074".into())
        );
        assert_eq!(
            Gtin::parse("614141123452").map(|g| g.to_string()),
            Ok("00614141123452".into())
        );
        assert!(matches!(
            Gtin::parse("614141123453"),
            Err(Gs1Error::CheckDigit { .. })
        ));
        assert!(matches!(
            Gtin::parse("61414112345"),
            Err(Gs1Error::Length { .. })
        ));
        assert!(matches!(
            Gtin::parse("0061414112345a"),
            Err(Gs1Error::Length { .. })
        ));
        assert!(Sscc::parse("106141411234567897").is_ok());
        assert!(Sscc::parse("106141411234567898").is_err());
    }
}
