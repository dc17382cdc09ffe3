//! Keys, signatures and hashing: the only place the project touches cryptographic primitives.
//!
//! Signatures are Ed25519 with the ZIP-215 validity rules (`ed25519-consensus`), so a signature is
//! valid or invalid the same way whether it is checked alone or in a batch, on every node. That
//! matters more in a replicated ledger than the choice of curve: two nodes that disagree on one
//! signature disagree on the state root.
//!
//! Nothing here does IO or reads a clock. Key generation takes its randomness from the caller.

pub mod envelope;
pub mod stream;

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a key, a signature or a hex string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("public key is not a valid Ed25519 point encoding")]
    MalformedPublicKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("expected {expected} bytes of hex, got {got}")]
    WrongLength { expected: usize, got: usize },
    #[error("invalid hex: {0}")]
    Hex(String),
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
}

/// A SHA-256 digest. Block hashes, transaction hashes and Merkle roots are all of this type.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        Ok(Hash(decode_hex_array(text)?))
    }
}

/// Hashes `data` with SHA-256.
pub fn sha256(data: &[u8]) -> Hash {
    Hash(Sha256::digest(data).into())
}

/// SHA-256 of content that arrives in pieces (a streamed file).
#[derive(Clone, Debug, Default)]
pub struct Sha256Stream(Sha256);

impl Sha256Stream {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Hash {
        Hash(self.0.finalize().into())
    }
}

/// Hashes a domain tag followed by `parts`, each length-prefixed so that no two different inputs
/// share an encoding. Every hash the protocol defines goes through here with its own tag.
pub fn hash_tagged(tag: &[u8], parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update((tag.len() as u32).to_le_bytes());
    hasher.update(tag);
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Hash(hasher.finalize().into())
}

/// An Ed25519 public key: the identity of every account, organisation and validator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        let key = PublicKey(decode_hex_array(text)?);
        key.check()?;
        Ok(key)
    }

    /// Checks that the bytes decode to a curve point, so a key that could never verify anything
    /// is refused when it is registered rather than when it is first used.
    pub fn check(&self) -> Result<(), CryptoError> {
        ed25519_consensus::VerificationKey::try_from(self.0)
            .map(|_| ())
            .map_err(|_| CryptoError::MalformedPublicKey)
    }

    /// Verifies one signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let key = ed25519_consensus::VerificationKey::try_from(self.0)
            .map_err(|_| CryptoError::MalformedPublicKey)?;
        key.verify(&ed25519_consensus::Signature::from(signature.0), message)
            .map_err(|_| CryptoError::BadSignature)
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, CryptoError> {
        Ok(Signature(decode_hex_array(text)?))
    }
}

/// A signing key. Its `Debug` output never shows the secret, so it cannot leak through a log.
#[derive(Clone)]
pub struct SecretKey(ed25519_consensus::SigningKey);

impl SecretKey {
    /// Creates a key from the caller's randomness (the operating system's, in the binaries).
    pub fn generate(rng: impl RngCore + CryptoRng) -> Self {
        SecretKey(ed25519_consensus::SigningKey::new(rng))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(ed25519_consensus::SigningKey::from(bytes))
    }

    /// A deterministic key for tests and simulations, derived from a seed.
    pub fn from_seed(seed: u64) -> Self {
        SecretKey::generate(ChaCha20Rng::seed_from_u64(seed))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verification_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

/// Verifies many signatures at once, about twice as fast per signature as one at a time.
///
/// Returns the indices of the items that do not verify (empty when all do). The batch's random
/// coefficients are derived from its own contents (Fiat-Shamir), so the check is deterministic and
/// needs no randomness from the caller; on failure each item is checked alone to name the culprits.
pub fn verify_batch(items: &[(PublicKey, &[u8], Signature)]) -> Vec<usize> {
    let mut verifier = ed25519_consensus::batch::Verifier::new();
    let mut seed = Sha256::new();
    seed.update(b"medledger/batch-verify/v1");
    let mut malformed = Vec::new();
    for (index, (key, message, signature)) in items.iter().enumerate() {
        seed.update(key.0);
        seed.update(signature.0);
        seed.update((message.len() as u64).to_le_bytes());
        seed.update(message);
        if key.check().is_err() {
            malformed.push(index);
            continue;
        }
        let key_bytes = ed25519_consensus::VerificationKeyBytes::from(key.0);
        verifier.queue((
            key_bytes,
            ed25519_consensus::Signature::from(signature.0),
            *message,
        ));
    }
    let rng = ChaCha20Rng::from_seed(seed.finalize().into());
    if malformed.is_empty() && verifier.verify(rng).is_ok() {
        return Vec::new();
    }
    items
        .iter()
        .enumerate()
        .filter(|(_, (key, message, signature))| key.verify(message, signature).is_err())
        .map(|(index, _)| index)
        .collect()
}

fn decode_hex_array<const N: usize>(text: &str) -> Result<[u8; N], CryptoError> {
    let bytes = hex::decode(text.trim()).map_err(|error| CryptoError::Hex(error.to_string()))?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| CryptoError::WrongLength { expected: N, got })
}

macro_rules! hex_display_and_serde {
    ($type:ty, $len:expr) => {
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($type), hex::encode(self.0))
            }
        }
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&hex::encode(self.0))
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <String as Deserialize>::deserialize(deserializer)?;
                decode_hex_array::<$len>(&text)
                    .map(Self)
                    .map_err(serde::de::Error::custom)
            }
        }
        impl std::str::FromStr for $type {
            type Err = CryptoError;
            fn from_str(text: &str) -> Result<Self, CryptoError> {
                decode_hex_array::<$len>(text).map(Self)
            }
        }
    };
}

hex_display_and_serde!(Hash, 32);
hex_display_and_serde!(PublicKey, 32);
hex_display_and_serde!(Signature, 64);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_signature_verifies_only_for_its_key_and_message() {
        let key = SecretKey::from_seed(1);
        let other = SecretKey::from_seed(2);
        let signature = key.sign(b"message");
        assert_eq!(key.public_key().verify(b"message", &signature), Ok(()));
        assert_eq!(
            key.public_key().verify(b"messagf", &signature),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            other.public_key().verify(b"message", &signature),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn batch_verification_names_exactly_the_bad_items() {
        let keys: Vec<SecretKey> = (0..8).map(SecretKey::from_seed).collect();
        let messages: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 40]).collect();
        let mut items: Vec<(PublicKey, &[u8], Signature)> = keys
            .iter()
            .zip(&messages)
            .map(|(key, message)| (key.public_key(), message.as_slice(), key.sign(message)))
            .collect();
        assert!(verify_batch(&items).is_empty());
        items[3].2.0[0] ^= 1;
        items[6].1 = b"not what was signed";
        assert_eq!(verify_batch(&items), vec![3, 6]);
    }

    #[test]
    fn a_malformed_public_key_is_refused_everywhere() {
        // y = 2 is not the encoding of any point on the curve.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        let key = PublicKey(bytes);
        assert_eq!(key.check(), Err(CryptoError::MalformedPublicKey));
        let signature = SecretKey::from_seed(1).sign(b"m");
        assert_eq!(
            key.verify(b"m", &signature),
            Err(CryptoError::MalformedPublicKey)
        );
        assert_eq!(verify_batch(&[(key, b"m", signature)]), vec![0]);
        assert!(PublicKey::from_hex(&hex::encode(bytes)).is_err());
    }

    #[test]
    fn secret_keys_do_not_show_in_debug_output() {
        let key = SecretKey::from_seed(9);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode(key.to_bytes())));
        assert!(shown.contains(&key.public_key().to_hex()));
    }

    #[test]
    fn tagged_hashes_separate_domains_and_boundaries() {
        assert_ne!(hash_tagged(b"a", &[b"xy"]), hash_tagged(b"b", &[b"xy"]));
        assert_ne!(
            hash_tagged(b"a", &[b"x", b"y"]),
            hash_tagged(b"a", &[b"xy"])
        );
        assert_eq!(
            sha256(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest! {
        #[test]
        fn hex_round_trips(bytes in any::<[u8; 32]>()) {
            let hash = Hash(bytes);
            prop_assert_eq!(Hash::from_hex(&hash.to_hex()), Ok(hash));
            prop_assert_eq!(hash.to_string().parse::<Hash>(), Ok(hash));
        }

        #[test]
        fn wrong_lengths_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assume!(bytes.len() != 32);
            prop_assert_eq!(
                Hash::from_hex(&hex::encode(&bytes)),
                Err(CryptoError::WrongLength { expected: 32, got: bytes.len() })
            );
        }
    }
}
