//! The ledger's data: transactions, blocks, commit certificates, genesis and receipts, with their
//! canonical byte encoding.
//!
//! **Invariant:** every type that is hashed or signed is encoded with borsh, which has exactly one
//! encoding per value (no maps, no floats, fixed integer widths, strict enum tags and booleans).
//! Decoding rejects trailing bytes, so `encode(decode(bytes)) == bytes` for every accepted input,
//! and a hash computed from the encoding identifies the value.
//!
//! **API boundary:** this crate knows nothing of state, storage, the network or HTTP.

mod block;
mod genesis;
mod merkle;
pub mod sync;
mod tx;

pub use block::*;
pub use genesis::*;
pub use merkle::*;
pub use tx::*;

pub use medledger_crypto::{Hash, PublicKey, SecretKey, Signature};

/// A block height. Height 0 is genesis; the first block is height 1.
pub type Height = u64;

/// The largest encoded transaction a node accepts.
pub const TX_BYTES_MAX: usize = 64 * 1024;
/// The most transactions one block may carry.
pub const BLOCK_TXS_MAX: usize = 20_000;
/// The largest encoded block.
pub const BLOCK_BYTES_MAX: usize = 32 * 1024 * 1024;
/// The longest chain id, organisation id or name.
pub const NAME_BYTES_MAX: usize = 64;

/// Why bytes or a value were refused by this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TypesError {
    #[error("{what} is {got} bytes, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Encodes a value canonically.
pub fn encode<T: borsh::BorshSerialize>(value: &T) -> Vec<u8> {
    // Writing to a Vec cannot fail; borsh only errs for writers that do.
    borsh::to_vec(value).expect("encoding into memory never fails")
}

/// Decodes untrusted bytes, refusing oversized input and trailing bytes.
pub fn decode<T: borsh::BorshDeserialize>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, TypesError> {
    if bytes.len() > max {
        return Err(TypesError::TooLarge {
            what,
            got: bytes.len(),
            max,
        });
    }
    borsh::from_slice(bytes).map_err(|error| TypesError::Malformed {
        what,
        reason: error.to_string(),
    })
}

/// Finds the member of `all` named `text`, or says which names there are.
pub fn parse_name<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
    text: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|item| name(*item) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|item| name(*item)).collect();
            format!(
                "unknown {what} {text:?}; expected one of {}",
                names.join(", ")
            )
        })
}

/// Checks a chain id or organisation id: 1 to 64 bytes of lowercase ASCII letters, digits, `-`,
/// `_` or `.`, so it can appear in file names, URLs and logs without escaping.
pub fn check_name(what: &'static str, value: &str) -> Result<(), TypesError> {
    let invalid = |reason| {
        Err(TypesError::InvalidName {
            what,
            value: value.to_string(),
            reason,
        })
    };
    if value.is_empty() || value.len() > NAME_BYTES_MAX {
        return invalid("must be 1 to 64 bytes long");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
    {
        return invalid("may hold only a-z, 0-9, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("chain id", "st-marys.hospital_1").is_ok());
        for bad in ["", "Upper", "sp ace", "slash/", &"x".repeat(65)] {
            assert!(check_name("chain id", bad).is_err(), "{bad:?}");
        }
    }
}
