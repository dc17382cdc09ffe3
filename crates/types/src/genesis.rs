//! The genesis document: the consortium's founding organisations and validators.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey, hash_tagged};
use serde::{Deserialize, Serialize};

use crate::{NAME_BYTES_MAX, TypesError, Validator, ValidatorSet, check_name, encode};

/// A member organisation of the consortium and its root key, which enrols and revokes members.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Organisation {
    /// A short, stable id such as `st-marys-hospital`.
    pub id: String,
    /// A display name.
    pub name: String,
    pub root_key: PublicKey,
    /// The GS1 company prefixes the organisation holds (4 to 12 digits each). A GTIN, GLN or
    /// SSCC under one of them can be registered only by this organisation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gs1_prefixes: Vec<String>,
}

/// The chain's first state. Every node of a network starts from the same genesis; its hash is the
/// parent hash of block 1.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    /// Milliseconds since the Unix epoch; block 1 must be later.
    pub genesis_time_ms: u64,
    pub organisations: Vec<Organisation>,
    pub validators: Vec<Validator>,
}

impl Genesis {
    pub fn hash(&self) -> Hash {
        hash_tagged(b"medledger/genesis/v1", &[&encode(self)])
    }

    /// Checks names, keys and references, and returns the validator set. The modules' parts
    /// (such as GS1 prefixes) are checked by `medledger_ledger::check_genesis`.
    pub fn validate(&self) -> Result<ValidatorSet, TypesError> {
        check_name("chain id", &self.chain_id)?;
        let malformed = |reason: String| TypesError::Malformed {
            what: "genesis",
            reason,
        };
        if self.organisations.is_empty() {
            return Err(malformed("it names no organisations".into()));
        }
        let mut ids: Vec<&str> = Vec::new();
        let mut keys: Vec<PublicKey> = Vec::new();
        for organisation in &self.organisations {
            check_name("organisation id", &organisation.id)?;
            if organisation.name.is_empty() || organisation.name.len() > NAME_BYTES_MAX {
                return Err(malformed(format!(
                    "organisation {} needs a name of 1 to 64 bytes",
                    organisation.id
                )));
            }
            if organisation.root_key.check().is_err() {
                return Err(malformed(format!(
                    "organisation {} has an invalid root key",
                    organisation.id
                )));
            }
            if ids.contains(&organisation.id.as_str()) {
                return Err(malformed(format!(
                    "organisation {} appears twice",
                    organisation.id
                )));
            }
            if keys.contains(&organisation.root_key) {
                return Err(malformed(format!(
                    "root key of {} is used twice",
                    organisation.id
                )));
            }
            ids.push(&organisation.id);
            keys.push(organisation.root_key);
        }
        for validator in &self.validators {
            if !ids.contains(&validator.org.as_str()) {
                return Err(malformed(format!(
                    "validator {} names unknown organisation {}",
                    validator.key, validator.org
                )));
            }
        }
        ValidatorSet::new(self.validators.clone())
    }
}
