//! The state's keys and records. Keys are UTF-8 text (`member/<hex key>`) so that a proof names
//! what it proves in a form an auditor can read; values are borsh.
//!
//! **Invariant:** nothing here holds personal data: keys are public keys and opaque ids.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_state::decode_value;
use medledger_types::{Height, Organisation, Role, ValidatorSet};
use serde::Serialize;

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

/// An anchored commitment.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct AnchorRecord {
    pub owner: PublicKey,
    pub commitment: Hash,
    pub height: Height,
    pub time_ms: u64,
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

/// A decoded state entry, for display by the API and the CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Entry {
    Organisation(Organisation),
    OrganisationId { org: String },
    Member(MemberRecord),
    Nonce { nonce: u64 },
    Anchor(AnchorRecord),
    Validators(ValidatorSet),
    ChainInfo(ChainInfo),
    ChainHead(ChainHead),
    Organisations { organisations: Vec<String> },
    ValidatorChanges { heights: Vec<Height> },
    ValidatorProposal(crate::governance::ValidatorProposal),
    ScheduledChanges { proposals: Vec<Hash> },
    Patient(medledger_types::PatientEntry),
    PatientIds { patients: Vec<Hash> },
    Record(medledger_types::RecordHead),
    RecordVersion(medledger_types::RecordVersion),
    ConsentBook(medledger_types::ConsentBook),
    Grant(Box<medledger_types::ConsentEntry>),
    AccessCount { count: u64 },
    Access(Box<medledger_types::AccessEvent>),
    AccessRequest { patient: Hash, seq: u64 },
}

/// Decodes the value at `key`, or `None` for a key outside the schema.
pub fn decode_entry(key: &[u8], value: &[u8]) -> Option<Entry> {
    let text = std::str::from_utf8(key).ok()?;
    let prefix = text.split('/').next()?;
    let entry = match (prefix, key) {
        (_, KEY_VALIDATORS) => Entry::Validators(decode_value(key, value).ok()?),
        (_, KEY_CHAIN_INFO) => Entry::ChainInfo(decode_value(key, value).ok()?),
        (_, KEY_CHAIN_HEAD) => Entry::ChainHead(decode_value(key, value).ok()?),
        (_, crate::governance::KEY_ORGANISATIONS) => Entry::Organisations {
            organisations: decode_value(key, value).ok()?,
        },
        (_, crate::governance::KEY_VALIDATOR_CHANGES) => Entry::ValidatorChanges {
            heights: decode_value(key, value).ok()?,
        },
        ("governance", _) if text.starts_with("governance/proposal/") => {
            Entry::ValidatorProposal(decode_value(key, value).ok()?)
        }
        ("governance", _) if text.starts_with("governance/scheduled/") => Entry::ScheduledChanges {
            proposals: decode_value(key, value).ok()?,
        },
        ("org", _) => Entry::Organisation(decode_value(key, value).ok()?),
        ("org-root", _) => Entry::OrganisationId {
            org: decode_value(key, value).ok()?,
        },
        ("member", _) => Entry::Member(decode_value(key, value).ok()?),
        ("nonce", _) => Entry::Nonce {
            nonce: decode_value(key, value).ok()?,
        },
        ("anchor", _) => Entry::Anchor(decode_value(key, value).ok()?),
        ("patient", _) => Entry::Patient(decode_value(key, value).ok()?),
        ("patient-ids", _) => Entry::PatientIds {
            patients: decode_value(key, value).ok()?,
        },
        ("record", _) => Entry::Record(decode_value(key, value).ok()?),
        ("record-version", _) => Entry::RecordVersion(decode_value(key, value).ok()?),
        ("consent", _) => Entry::ConsentBook(decode_value(key, value).ok()?),
        ("grant", _) => Entry::Grant(Box::new(decode_value(key, value).ok()?)),
        ("access-count", _) => Entry::AccessCount {
            count: decode_value(key, value).ok()?,
        },
        ("access", _) => Entry::Access(Box::new(decode_value(key, value).ok()?)),
        ("access-request", _) => {
            let (patient, seq) = decode_value(key, value).ok()?;
            Entry::AccessRequest { patient, seq }
        }
        _ => return None,
    };
    Some(entry)
}
