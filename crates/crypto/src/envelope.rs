//! Envelope encryption for health records, and keyed commitments to their content.
//!
//! Each record version is encrypted under its own random data key with AES-256-GCM. The data key
//! is stored wrapped (AES-256-GCM again) under a key derived from its patient's secret, and the
//! chain holds only an HMAC-SHA256 commitment under a second key derived from the same secret.
//! Destroying that one 32-byte secret therefore makes every data key of the patient unrecoverable
//! and every commitment unlinkable: nobody can confirm a guess about the content without it.
//!
//! A node's index of records by FHIR id uses the same two ideas. Its keys are blind indexes:
//! HMAC-SHA256 of the id under a key of the node ([`BlindKey`]), so the index can be searched by
//! an id without holding it. Its values (the ids themselves, and the links from an id to a record)
//! are sealed under a third key derived from the patient's secret ([`PatientSecret::index_key`]),
//! so they become unreadable with the secret.
//!
//! A data key can also be wrapped to a reader's X25519 key with HPKE (RFC 9180, base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM), so a record can travel to another
//! organisation without the custodian's secrets.
//!
//! Nothing here does IO; randomness comes from the caller.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;

use crate::{CryptoError, Hash};

type HpkeKem = hpke::kem::X25519HkdfSha256;
type HpkeKdf = hpke::kdf::HkdfSha256;
type HpkeAead = hpke::aead::AesGcm256;

const COMMIT_INFO: &[u8] = b"medledger/patient-commit-key/v1";
const WRAP_INFO: &[u8] = b"medledger/patient-wrap-key/v1";
const INDEX_INFO: &[u8] = b"medledger/patient-index-key/v1";
const COMMITMENT_TAG: &[u8] = b"medledger/record-commitment/v1";
const HPKE_INFO: &[u8] = b"medledger/record-key/v1";
const HPKE_SEED_INFO: &[u8] = b"medledger/hpke-x25519/v1";

/// The length of an AES-GCM nonce.
pub const NONCE_BYTES: usize = 12;

/// A patient's root secret, the one value erasure destroys. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PatientSecret(pub [u8; 32]);

impl fmt::Debug for PatientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientSecret(..)")
    }
}

impl PatientSecret {
    pub fn generate(mut rng: impl RngCore + CryptoRng) -> Self {
        let mut bytes = [0; 32];
        rng.fill_bytes(&mut bytes);
        PatientSecret(bytes)
    }

    fn derive(&self, info: &[u8]) -> [u8; 32] {
        let mut out = [0; 32];
        Hkdf::<Sha256>::new(None, &self.0)
            .expand(info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// The keyed commitment to one version of a record: HMAC-SHA256 over the record id, the
    /// version and the exact content bytes.
    pub fn commitment(&self, record: &Hash, version: u32, content: &[u8]) -> Hash {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.derive(COMMIT_INFO))
            .expect("HMAC takes a key of any length");
        mac.update(COMMITMENT_TAG);
        mac.update(&record.0);
        mac.update(&version.to_be_bytes());
        mac.update(content);
        Hash(mac.finalize().into_bytes().into())
    }

    /// Wraps a data key under this patient's wrapping key, bound to its record version.
    pub fn wrap(&self, key: &DataKey, nonce: [u8; NONCE_BYTES], aad: &[u8]) -> Vec<u8> {
        seal_with(&self.derive(WRAP_INFO), nonce, aad, &key.0)
    }

    pub fn unwrap(
        &self,
        wrapped: &[u8],
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let bytes = open_with(&self.derive(WRAP_INFO), nonce, aad, wrapped)?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Decrypt("a wrapped data key is 32 bytes".into()))?;
        Ok(DataKey(key))
    }

    /// The key this patient's index entries are sealed under.
    pub fn index_key(&self) -> IndexKey {
        IndexKey(self.derive(INDEX_INFO))
    }
}

/// The key a patient's index entries are sealed under (AES-256-GCM), derived from the patient's
/// secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct IndexKey([u8; 32]);

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(..)")
    }
}

impl IndexKey {
    pub fn seal(&self, nonce: [u8; NONCE_BYTES], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.0, nonce, aad, plaintext)
    }

    pub fn open(
        &self,
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, nonce, aad, ciphertext)
    }
}

/// A node's key for blind indexes: keyed hashes of identifiers, so that an index can be searched
/// by an identifier without holding it. Whoever lacks the key cannot confirm a guessed identifier
/// against the index. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct BlindKey(pub [u8; 32]);

impl fmt::Debug for BlindKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindKey(..)")
    }
}

impl BlindKey {
    pub fn generate(mut rng: impl RngCore + CryptoRng) -> Self {
        let mut bytes = [0; 32];
        rng.fill_bytes(&mut bytes);
        BlindKey(bytes)
    }

    /// HMAC-SHA256 over a domain tag and `parts`, each length-prefixed as in
    /// [`crate::hash_tagged`], so that no two different inputs share an encoding.
    pub fn blind(&self, tag: &[u8], parts: &[&[u8]]) -> Hash {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(&(tag.len() as u32).to_le_bytes());
        mac.update(tag);
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        Hash(mac.finalize().into_bytes().into())
    }
}

/// The key one record version is encrypted under. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(pub [u8; 32]);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate(mut rng: impl RngCore + CryptoRng) -> Self {
        let mut bytes = [0; 32];
        rng.fill_bytes(&mut bytes);
        DataKey(bytes)
    }

    pub fn seal(&self, nonce: [u8; NONCE_BYTES], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.0, nonce, aad, plaintext)
    }

    pub fn open(
        &self,
        nonce: [u8; NONCE_BYTES],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, nonce, aad, ciphertext)
    }
}

fn seal_with(key: &[u8; 32], nonce: [u8; NONCE_BYTES], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encrypts any message under 64 GiB")
}

fn open_with(
    key: &[u8; 32],
    nonce: [u8; NONCE_BYTES],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Decrypt("authentication failed".into()))
}

/// A reader's HPKE key pair (X25519). `Debug` never shows the secret.
#[derive(Clone)]
pub struct HpkeSecret(<HpkeKem as hpke::Kem>::PrivateKey);

impl fmt::Debug for HpkeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HpkeSecret(public {})", hex::encode(self.public_key()))
    }
}

impl HpkeSecret {
    /// Derives the key pair from input keying material (RFC 9180 DeriveKeyPair), e.g. a member's
    /// signing-key bytes, so a reader keeps one key file for signing and for receiving keys.
    pub fn derive(ikm: &[u8]) -> Self {
        let mut seed = [0; 32];
        Hkdf::<Sha256>::new(None, ikm)
            .expand(HPKE_SEED_INFO, &mut seed)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        HpkeSecret(HpkeKem::derive_keypair(&seed).0)
    }

    /// The 32-byte X25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let public = <HpkeKem as hpke::Kem>::sk_to_pk(&self.0);
        public.to_bytes().into()
    }

    /// Opens a data key wrapped to this key; `aad` must be what the sender bound it to.
    pub fn open_key(&self, wrapped: &WrappedKey, aad: &[u8]) -> Result<DataKey, CryptoError> {
        let encapped = <HpkeKem as hpke::Kem>::EncappedKey::from_bytes(&wrapped.enc)
            .map_err(|error| CryptoError::Decrypt(format!("encapsulated key: {error}")))?;
        let bytes = hpke::single_shot_open::<HpkeAead, HpkeKdf, HpkeKem>(
            &OpModeR::Base,
            &self.0,
            &encapped,
            HPKE_INFO,
            &wrapped.ciphertext,
            aad,
        )
        .map_err(|error| CryptoError::Decrypt(format!("hpke: {error}")))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::Decrypt("a wrapped data key is 32 bytes".into()))?;
        Ok(DataKey(key))
    }
}

/// A data key sealed to a reader with HPKE: the encapsulated key and the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrappedKey {
    #[serde(with = "hex::serde")]
    pub enc: Vec<u8>,
    #[serde(with = "hex::serde")]
    pub ciphertext: Vec<u8>,
}

/// Seals a data key to a reader's X25519 public key, bound to `aad`.
pub fn wrap_key_to(
    recipient: &[u8; 32],
    key: &DataKey,
    aad: &[u8],
    mut rng: impl RngCore + CryptoRng,
) -> Result<WrappedKey, CryptoError> {
    let public = <HpkeKem as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|error| CryptoError::Decrypt(format!("recipient key: {error}")))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<HpkeAead, HpkeKdf, HpkeKem, _>(
        &OpModeS::Base,
        &public,
        HPKE_INFO,
        &key.0,
        aad,
        &mut rng,
    )
    .map_err(|error| CryptoError::Decrypt(format!("hpke: {error}")))?;
    Ok(WrappedKey {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    /// Content sealed under a data key opens only with that key, nonce and associated data.
    #[test]
    fn sealed_content_opens_only_with_its_key_and_binding() {
        let key = DataKey::generate(rng(1));
        let sealed = key.seal([7; 12], b"record-1", b"{\"resourceType\":\"Patient\"}");
        assert_eq!(
            key.open([7; 12], b"record-1", &sealed).expect("opens"),
            b"{\"resourceType\":\"Patient\"}"
        );
        assert!(key.open([7; 12], b"record-2", &sealed).is_err());
        assert!(key.open([8; 12], b"record-1", &sealed).is_err());
        assert!(
            DataKey::generate(rng(2))
                .open([7; 12], b"record-1", &sealed)
                .is_err()
        );
        let mut flipped = sealed.clone();
        flipped[0] ^= 1;
        assert!(key.open([7; 12], b"record-1", &flipped).is_err());
    }

    /// A wrapped data key unwraps only under its patient's secret: another patient's secret (or
    /// a destroyed one) recovers nothing.
    #[test]
    fn data_keys_unwrap_only_under_their_patients_secret() {
        let (alice, bob) = (
            PatientSecret::generate(rng(3)),
            PatientSecret::generate(rng(4)),
        );
        let key = DataKey::generate(rng(5));
        let wrapped = alice.wrap(&key, [1; 12], b"aad");
        assert_eq!(
            alice.unwrap(&wrapped, [1; 12], b"aad").expect("unwraps"),
            key
        );
        assert!(bob.unwrap(&wrapped, [1; 12], b"aad").is_err());
        assert!(alice.unwrap(&wrapped, [1; 12], b"other").is_err());
    }

    /// Commitments are keyed: the same content gives different commitments under different
    /// patients' secrets, and a plain hash of the content matches neither.
    #[test]
    fn commitments_are_keyed_and_bound_to_record_and_version() {
        let (alice, bob) = (
            PatientSecret::generate(rng(6)),
            PatientSecret::generate(rng(7)),
        );
        let record = Hash([9; 32]);
        let content = b"{\"resourceType\":\"Observation\"}";
        let commitment = alice.commitment(&record, 1, content);
        assert_eq!(commitment, alice.commitment(&record, 1, content));
        assert_ne!(commitment, bob.commitment(&record, 1, content));
        assert_ne!(commitment, alice.commitment(&record, 2, content));
        assert_ne!(commitment, alice.commitment(&Hash([8; 32]), 1, content));
        assert_ne!(commitment, crate::sha256(content));
    }

    /// An index entry opens only under its patient's index key, with its nonce and associated
    /// data; the index key is neither the wrapping key nor the secret itself.
    #[test]
    fn index_entries_open_only_under_their_patients_index_key() {
        let (alice, bob) = (
            PatientSecret::generate(rng(10)),
            PatientSecret::generate(rng(11)),
        );
        let key = alice.index_key();
        assert_eq!(key, alice.index_key());
        let sealed = key.seal([3; 12], b"record-1", b"patient-erase-me");
        assert_eq!(
            key.open([3; 12], b"record-1", &sealed).expect("opens"),
            b"patient-erase-me"
        );
        assert!(bob.index_key().open([3; 12], b"record-1", &sealed).is_err());
        assert!(key.open([3; 12], b"record-2", &sealed).is_err());
        assert!(key.open([4; 12], b"record-1", &sealed).is_err());
        assert!(
            DataKey(alice.0)
                .open([3; 12], b"record-1", &sealed)
                .is_err()
        );
        assert!(
            DataKey(alice.derive(WRAP_INFO))
                .open([3; 12], b"record-1", &sealed)
                .is_err()
        );
    }

    /// A blind index depends on the key, the tag and each part with its boundaries, and is not
    /// the plain tagged hash of the same input.
    #[test]
    fn blind_indexes_are_keyed_and_domain_separated() {
        let key = BlindKey::generate(rng(12));
        let blind = key.blind(b"tag", &[b"Patient", b"p1"]);
        assert_eq!(blind, key.blind(b"tag", &[b"Patient", b"p1"]));
        for other in [
            BlindKey::generate(rng(13)).blind(b"tag", &[b"Patient", b"p1"]),
            key.blind(b"other tag", &[b"Patient", b"p1"]),
            key.blind(b"tag", &[b"Patient", b"p2"]),
            key.blind(b"tag", &[b"Patien", b"tp1"]),
            key.blind(b"tag", &[b"Patientp1"]),
            crate::hash_tagged(b"tag", &[b"Patient", b"p1"]),
        ] {
            assert_ne!(blind, other);
        }
    }

    /// A data key sealed with HPKE to a reader opens with the reader's key and nothing else.
    #[test]
    fn hpke_wrapped_keys_open_only_for_their_reader() {
        let reader = HpkeSecret::derive(b"reader signing key bytes");
        let other = HpkeSecret::derive(b"someone else");
        assert_eq!(
            reader.public_key(),
            HpkeSecret::derive(b"reader signing key bytes").public_key()
        );
        let key = DataKey::generate(rng(8));
        let wrapped = wrap_key_to(&reader.public_key(), &key, b"record", rng(9)).expect("wraps");
        assert_eq!(reader.open_key(&wrapped, b"record").expect("opens"), key);
        assert!(reader.open_key(&wrapped, b"other record").is_err());
        assert!(other.open_key(&wrapped, b"record").is_err());
        let truncated = WrappedKey {
            enc: wrapped.enc[..5].to_vec(),
            ciphertext: wrapped.ciphertext.clone(),
        };
        assert!(reader.open_key(&truncated, b"record").is_err());
    }
}
