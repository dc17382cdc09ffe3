//! GS1 identifiers, spoken the way GS1's standards define them.
//!
//! This file holds the keys the ledger stores (GTIN-14, SSCC) and their check digits. The rest of
//! the crate (Application Identifiers, element strings, Digital Link) is table-driven from GS1's
//! syntax dictionary.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gs1Error {
    #[error("{what} must be {expected} digits, got {got:?}")]
    Length {
        what: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("{what} has a bad check digit: {got:?}")]
    CheckDigit { what: &'static str, got: String },
}

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
