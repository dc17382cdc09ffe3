//! The ledger's identity, which every module reads: organisations, members and their roles,
//! nonces, the validator set and the chain's head. The ledger writes it; modules only read it.
//!
//! Keys are UTF-8 text (`member/<hex key>`) so that a proof names what it proves in a form an
//! auditor can read; values are borsh.
//!
//! **Invariant:** nothing here holds personal data: keys are public keys and opaque ids.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_state::{StateError, StateRead, decode_value};
use medledger_types::{Height, Role, ValidatorSet};
use serde::Serialize;

use crate::read;

/// The prefixes the ledger itself owns: identity, nonces, anchors, the chain's own records and
/// governance. Every module may read these; none may write them.
pub const CORE_PREFIXES: &[&str] = &[
    "chain/",
    "org/",
    "org-root/",
    "member/",
    "nonce/",
    "anchor/",
    "governance/",
];

pub const KEY_VALIDATORS: &[u8] = b"chain/validators";
pub const KEY_CHAIN_INFO: &[u8] = b"chain/info";
pub const KEY_CHAIN_HEAD: &[u8] = b"chain/head";

pub fn key_org(id: &str) -> Vec<u8> {
    format!("org/{id}").into_bytes()
}

pub fn key_org_by_root(root_key: &PublicKey) -> Vec<u8> {
    format!("org-root/{root_key}").into_bytes()
}

pub fn key_member(key: &PublicKey) -> Vec<u8> {
    format!("member/{key}").into_bytes()
}

pub fn key_nonce(key: &PublicKey) -> Vec<u8> {
    format!("nonce/{key}").into_bytes()
}

pub fn key_anchor(id: &Hash) -> Vec<u8> {
    format!("anchor/{id}").into_bytes()
}

/// A member key's enrolment.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct MemberRecord {
    pub org: String,
    pub role: Role,
    pub enrolled_at: Height,
    pub revoked_at: Option<Height>,
}

/// Which chain this state belongs to.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ChainInfo {
    pub chain_id: String,
    pub genesis_hash: Hash,
}

/// The height and time of the last block applied, written by every block so every height has
/// its own state version.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ChainHead {
    pub height: Height,
    pub time_ms: u64,
}

/// Who a key acts as.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Authority {
    Organisation { org: String },
    Member { org: String, role: Role },
}

/// Whether a key may act, and as whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    Acts(Authority),
    Revoked { height: Height },
    Unknown,
}

/// Who `key` acts as: an organisation's root key, an enrolled member, or a validator of the
/// current set acting for its organisation (its node).
pub fn standing(state: &dyn StateRead, key: &PublicKey) -> Result<Standing, StateError> {
    let org_key = key_org_by_root(key);
    if let Some(bytes) = state.get(&org_key)? {
        return Ok(Standing::Acts(Authority::Organisation {
            org: decode_value(&org_key, &bytes)?,
        }));
    }
    Ok(match member(state, key)? {
        Some(MemberRecord {
            revoked_at: Some(height),
            ..
        }) => Standing::Revoked { height },
        Some(record) => Standing::Acts(Authority::Member {
            org: record.org,
            role: record.role,
        }),
        // A validator in the current set is its organisation's node and acts for it, e.g. as the
        // custodian of the records it serves.
        None => match validators(state)?.get(key) {
            Some(validator) => Standing::Acts(Authority::Member {
                org: validator.org.clone(),
                role: Role::Validator,
            }),
            None => Standing::Unknown,
        },
    })
}

pub fn member(state: &dyn StateRead, key: &PublicKey) -> Result<Option<MemberRecord>, StateError> {
    read(state, &key_member(key))
}

pub fn validators(state: &dyn StateRead) -> Result<ValidatorSet, StateError> {
    let bytes = state
        .get(KEY_VALIDATORS)?
        .ok_or_else(|| StateError::Store("no validator set in state".into()))?;
    decode_value(KEY_VALIDATORS, &bytes)
}

/// The height and block time of the last block applied to `state`.
pub fn chain_head(state: &dyn StateRead) -> Result<ChainHead, StateError> {
    let bytes = state
        .get(KEY_CHAIN_HEAD)?
        .ok_or_else(|| StateError::Store("no chain head in state".into()))?;
    decode_value(KEY_CHAIN_HEAD, &bytes)
}

pub fn chain_info(state: &dyn StateRead) -> Result<ChainInfo, StateError> {
    let bytes = state.get(KEY_CHAIN_INFO)?.ok_or_else(|| {
        StateError::Store("no chain info in state; genesis was not applied".into())
    })?;
    decode_value(KEY_CHAIN_INFO, &bytes)
}

/// The next nonce `sender` must use.
pub fn next_nonce(state: &dyn StateRead, sender: &PublicKey) -> Result<u64, StateError> {
    let key = key_nonce(sender);
    Ok(match state.get(&key)? {
        Some(bytes) => decode_value::<u64>(&key, &bytes)? + 1,
        None => 1,
    })
}

/// True when organisation `id` exists.
pub fn org_exists(state: &dyn StateRead, id: &str) -> Result<bool, StateError> {
    Ok(state.get(&key_org(id))?.is_some())
}

/// The organisation a key acts for as its custodian: the organisation's root key or its node (a
/// validator). Only these sign what an organisation records as a whole (record versions,
/// bindings, access events, EPCIS captures); a member acts through the node.
pub fn custodian_of(authority: &Authority) -> Option<&str> {
    match authority {
        Authority::Organisation { org }
        | Authority::Member {
            org,
            role: Role::Validator,
        } => Some(org),
        Authority::Member { .. } => None,
    }
}

/// The ids of the consortium's organisations, written at genesis.
pub const KEY_ORGANISATIONS: &[u8] = b"chain/organisations";

/// The consortium's organisations, by id.
pub fn organisations(state: &dyn StateRead) -> Result<Vec<String>, StateError> {
    let bytes = state
        .get(KEY_ORGANISATIONS)?
        .ok_or_else(|| StateError::Store("no organisation list in state".into()))?;
    decode_value(KEY_ORGANISATIONS, &bytes)
}

/// The consortium's rule for governance: `approvals` of `organisations` organisations is at least
/// two thirds.
pub fn is_approved(approvals: usize, organisations: usize) -> bool {
    approvals * 3 >= organisations * 2
}

/// A chain parameter set by governance (`governance/param/<name>`).
pub fn key_parameter(name: &str) -> Vec<u8> {
    format!("governance/param/{name}").into_bytes()
}

/// A chain parameter's value, if governance has set it; the module that reads it knows its
/// default.
pub fn parameter(state: &dyn StateRead, name: &str) -> Result<Option<u64>, StateError> {
    read(state, &key_parameter(name))
}

/// A deployed contract's record (the contracts module's `contract/<address>`). A contract's
/// address, read as a key, is the token account it holds funds in: the token module accepts it
/// as an account although no one signs for it.
pub fn key_contract(address: &Hash) -> Vec<u8> {
    format!("contract/{address}").into_bytes()
}

/// Whether `key` is a deployed contract's account.
pub fn is_contract_account(state: &dyn StateRead, key: &PublicKey) -> Result<bool, StateError> {
    Ok(state.get(&key_contract(&Hash(key.0)))?.is_some())
}
