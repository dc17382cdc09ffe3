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
mod records;
mod supply;
mod tx;

pub use block::*;
pub use genesis::*;
pub use merkle::*;
pub use records::*;
pub use supply::*;
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
pub(crate) fn parse_name<T: Copy>(
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
    use proptest::prelude::*;

    fn payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            (any::<[u8; 32]>(), 0usize..10).prop_map(|(key, role)| Payload::Enrol {
                member: PublicKey(key),
                role: Role::ALL[role]
            }),
            any::<[u8; 32]>().prop_map(|key| Payload::Revoke {
                member: PublicKey(key)
            }),
            (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(id, c)| Payload::Anchor {
                id: Hash(id),
                commitment: Hash(c)
            }),
        ]
    }

    proptest! {
        /// Every transaction round-trips through its encoding, and its id and leaf follow it.
        #[test]
        fn transactions_round_trip(chain in "[a-z0-9-]{1,20}", seed in any::<u64>(), nonce in any::<u64>(), payload in payload()) {
            let key = SecretKey::from_seed(seed);
            let tx = TxBody { chain_id: chain, sender: key.public_key(), nonce, payload }.sign(&key);
            let bytes = tx.to_bytes();
            let back = Tx::from_bytes(&bytes).expect("decodes");
            prop_assert_eq!(&back, &tx);
            prop_assert_eq!(back.id(), tx.id());
            prop_assert!(back.verify_signature().is_ok());
            let json = serde_json::to_string(&tx).expect("json");
            prop_assert_eq!(serde_json::from_str::<Tx>(&json).expect("json back"), tx);
        }

        /// Arbitrary bytes never panic the decoder, and whatever decodes re-encodes to the same
        /// bytes: the encoding is canonical.
        #[test]
        fn decoding_untrusted_bytes_is_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(tx) = Tx::from_bytes(&bytes) {
                prop_assert_eq!(tx.to_bytes(), bytes.clone());
            }
            if let Ok(block) = Block::from_bytes(&bytes) {
                prop_assert_eq!(block.to_bytes(), bytes);
            }
        }
    }

    #[test]
    fn oversized_and_trailing_input_is_refused() {
        let key = SecretKey::from_seed(1);
        let tx = TxBody {
            chain_id: "c".into(),
            sender: key.public_key(),
            nonce: 1,
            payload: Payload::Revoke {
                member: key.public_key(),
            },
        }
        .sign(&key);
        let mut bytes = tx.to_bytes();
        bytes.push(0);
        assert!(matches!(
            Tx::from_bytes(&bytes),
            Err(TypesError::Malformed { .. })
        ));
        assert!(matches!(
            Tx::from_bytes(&vec![0; TX_BYTES_MAX + 1]),
            Err(TypesError::TooLarge { .. })
        ));
        let mut flipped = tx.clone();
        flipped.body.nonce = 2;
        assert!(flipped.verify_signature().is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("chain id", "st-marys.hospital_1").is_ok());
        for bad in ["", "Upper", "sp ace", "slash/", &"x".repeat(65)] {
            assert!(check_name("chain id", bad).is_err(), "{bad:?}");
        }
    }
}
