//! The ledger's own state records, and the decoding of any state entry for display. The
//! identity keys every module reads are in `medledger_module` (re-exported here).
//!
//! The state's keys and records. Keys are UTF-8 text (`member/<hex key>`) so that a proof names
//! what it proves in a form an auditor can read; values are borsh.
//!
//! **Invariant:** nothing here holds personal data: keys are public keys and opaque ids.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_module::{
    ChainHead, ChainInfo, KEY_CHAIN_HEAD, KEY_CHAIN_INFO, KEY_VALIDATORS, MemberRecord,
};
use medledger_state::decode_value;
use medledger_types::{Height, Organisation, ValidatorSet};
use serde::Serialize;

/// An anchored commitment.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct AnchorRecord {
    pub owner: PublicKey,
    pub commitment: Hash,
    pub height: Height,
    pub time_ms: u64,
}

/// A decoded state entry, for display by the API and the CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Entry {
    Organisation(Organisation),
    OrganisationId {
        org: String,
    },
    Member(MemberRecord),
    Nonce {
        nonce: u64,
    },
    Anchor(AnchorRecord),
    Validators(ValidatorSet),
    ChainInfo(ChainInfo),
    ChainHead(ChainHead),
    Organisations {
        organisations: Vec<String>,
    },
    ValidatorChanges {
        heights: Vec<Height>,
    },
    ValidatorProposal(crate::governance::ValidatorProposal),
    ScheduledChanges {
        proposals: Vec<Hash>,
    },
    Proposal(crate::governance::Proposal),
    ProposalId {
        proposal: Hash,
    },
    Count {
        count: u64,
    },
    Parameter {
        value: u64,
    },
    /// An entry under a module's prefix, as the module describes it (`Module::describe`), in
    /// the same `{"record": ..., ...}` shape.
    #[serde(untagged)]
    Module(serde_json::Value),
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
        ("governance", _) if text.starts_with("governance/motion/") => {
            Entry::Proposal(decode_value(key, value).ok()?)
        }
        ("governance", _) if text.starts_with("governance/motion-by-seq/") => Entry::ProposalId {
            proposal: decode_value(key, value).ok()?,
        },
        (_, crate::governance::KEY_MOTIONS_COUNT) => Entry::Count {
            count: decode_value(key, value).ok()?,
        },
        ("governance", _) if text.starts_with("governance/param/") => Entry::Parameter {
            value: decode_value(key, value).ok()?,
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
        _ => Entry::Module(crate::registry::describe(text, value)?),
    };
    Some(entry)
}
