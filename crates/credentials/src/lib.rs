//! Members' client keys, as a ledger module: the public keys a member registers on chain to sign
//! SMART on FHIR client assertions with an algorithm other than its own Ed25519 key. SMART asks
//! servers to accept ES384 (ECDSA on P-384 with SHA-384), and every node must agree on which keys
//! a member holds, so they live in the replicated state: `client-key/<member>/<kid>`.
//!
//! A member registers a key for itself, under a key id (`kid`) of its choosing, and may revoke it;
//! a `kid` is never reused, so an assertion naming it can only mean that key. Keys are checked
//! for shape here (an uncompressed SEC1 point of the curve's size); whether the point is on the
//! curve is checked by the signature verification that uses it.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::PublicKey;
use medledger_module::{Module, ModuleError, TxContext, View};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::Height;
use serde::{Deserialize, Serialize};

/// The longest key id.
pub const KID_BYTES_MAX: usize = 64;
/// The most keys one member may register (revoked ones included).
pub const KEYS_PER_MEMBER_MAX: u32 = 16;

/// The algorithm a client key signs with.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
pub enum KeyAlgorithm {
    /// ECDSA on P-384 with SHA-384 (JOSE `ES384`); the key is an uncompressed SEC1 point, 97
    /// bytes.
    #[serde(rename = "ES384")]
    Es384 = 0,
}

impl KeyAlgorithm {
    /// The length of an uncompressed SEC1 public point.
    pub fn point_bytes(self) -> usize {
        match self {
            KeyAlgorithm::Es384 => 97,
        }
    }
}

/// The credentials module's operations. Their order is their payload tag (from the registry's
/// base): never reorder or remove one.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialsOp {
    /// The sender registers a public key of its own under `kid`.
    RegisterClientKey {
        kid: String,
        algorithm: KeyAlgorithm,
        #[serde(with = "hex::serde")]
        public_key: Vec<u8>,
    },
    /// The sender revokes one of its keys.
    RevokeClientKey { kid: String },
}

/// A registered key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ClientKey {
    pub algorithm: KeyAlgorithm,
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
    pub registered_at: Height,
    pub revoked_at: Option<Height>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("invalid key id {0:?}: 1 to 64 ASCII letters, digits, '-', '_' or '.'")]
    InvalidKid(String),
    #[error("invalid public key: {0}")]
    InvalidKey(String),
    #[error("key id {0:?} is already registered for this member (key ids are never reused)")]
    KidTaken(String),
    #[error("this member has no key {0:?}")]
    UnknownKid(String),
    #[error("key {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error("a member registers at most {KEYS_PER_MEMBER_MAX} client keys")]
    TooManyKeys,
    #[error(transparent)]
    State(#[from] StateError),
}

impl ModuleError for CredentialsError {
    fn code(&self) -> &'static str {
        match self {
            CredentialsError::InvalidKid(_) => "invalid_kid",
            CredentialsError::InvalidKey(_) => "invalid_client_key",
            CredentialsError::KidTaken(_) => "kid_taken",
            CredentialsError::UnknownKid(_) => "unknown_kid",
            CredentialsError::AlreadyRevoked(_) => "client_key_revoked",
            CredentialsError::TooManyKeys => "too_many_client_keys",
            CredentialsError::State(_) => "state",
        }
    }
}

pub fn key_client_key(member: &PublicKey, kid: &str) -> Vec<u8> {
    format!("client-key/{member}/{kid}").into_bytes()
}

pub fn key_client_key_count(member: &PublicKey) -> Vec<u8> {
    format!("client-key-count/{member}").into_bytes()
}

/// A member's key `kid`, revoked or not.
pub fn client_key(
    state: &dyn StateRead,
    member: &PublicKey,
    kid: &str,
) -> Result<Option<ClientKey>, StateError> {
    medledger_module::read(state, &key_client_key(member, kid))
}

fn check_kid(kid: &str) -> Result<(), CredentialsError> {
    let ok = !kid.is_empty()
        && kid.len() <= KID_BYTES_MAX
        && kid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
    if ok {
        Ok(())
    } else {
        Err(CredentialsError::InvalidKid(kid.chars().take(80).collect()))
    }
}

/// The credentials module.
#[derive(Clone, Copy, Debug)]
pub struct Credentials;

impl Module for Credentials {
    const NAME: &'static str = "credentials";
    const PREFIXES: &'static [&'static str] = &["client-key/", "client-key-count/"];
    const KINDS: &'static [&'static str] = &["register_client_key", "revoke_client_key"];
    type Op = CredentialsOp;
    type Error = CredentialsError;

    fn kind(op: &CredentialsOp) -> &'static str {
        match op {
            CredentialsOp::RegisterClientKey { .. } => "register_client_key",
            CredentialsOp::RevokeClientKey { .. } => "revoke_client_key",
        }
    }

    fn apply(
        op: &CredentialsOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), CredentialsError> {
        match op {
            CredentialsOp::RegisterClientKey {
                kid,
                algorithm,
                public_key,
            } => {
                check_kid(kid)?;
                if public_key.len() != algorithm.point_bytes() || public_key.first() != Some(&4) {
                    return Err(CredentialsError::InvalidKey(format!(
                        "an {algorithm:?} key is an uncompressed SEC1 point: {} bytes starting 0x04",
                        algorithm.point_bytes()
                    )));
                }
                if client_key(state, &tx.sender, kid)?.is_some() {
                    return Err(CredentialsError::KidTaken(kid.clone()));
                }
                let count: u32 =
                    medledger_module::read(state, &key_client_key_count(&tx.sender))?.unwrap_or(0);
                if count >= KEYS_PER_MEMBER_MAX {
                    return Err(CredentialsError::TooManyKeys);
                }
                state.put(
                    key_client_key(&tx.sender, kid),
                    encode_value(&ClientKey {
                        algorithm: *algorithm,
                        public_key: public_key.clone(),
                        registered_at: tx.block.height,
                        revoked_at: None,
                    }),
                );
                state.put(key_client_key_count(&tx.sender), encode_value(&(count + 1)));
                Ok(())
            }
            CredentialsOp::RevokeClientKey { kid } => {
                check_kid(kid)?;
                let mut key = client_key(state, &tx.sender, kid)?
                    .ok_or_else(|| CredentialsError::UnknownKid(kid.clone()))?;
                if key.revoked_at.is_some() {
                    return Err(CredentialsError::AlreadyRevoked(kid.clone()));
                }
                key.revoked_at = Some(tx.block.height);
                state.put(key_client_key(&tx.sender, kid), encode_value(&key));
                Ok(())
            }
        }
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        if key.starts_with("client-key/") {
            let decoded: ClientKey = borsh::from_slice(value).ok()?;
            serde_json::to_value(decoded).ok()
        } else if key.starts_with("client-key-count/") {
            let count: u32 = borsh::from_slice(value).ok()?;
            Some(serde_json::json!(count))
        } else {
            None
        }
    }
}
