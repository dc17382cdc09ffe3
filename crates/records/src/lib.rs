//! Health records under patient consent, as a ledger module: record versions, patient bindings,
//! consent grants and delegates, access events and erasure (PRODUCT.md modules 1 to 4). Content
//! never reaches the chain: a record is an opaque id, a FHIR type, an optional coarse category
//! and a keyed commitment.
//!
//! Consent lives in the same module as records because an access event decides, in one
//! transaction, every requested record against the patient's grants: the decision reads both,
//! and no module may read another's state.

mod machine;
mod types;

pub use machine::*;
pub use types::*;

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_module::{Module, ModuleError, TxContext, View};
use medledger_state::{StateError, decode_value};
use serde::{Deserialize, Serialize};

/// The records module's operations. Their order is their payload tag (from the registry's base):
/// never reorder or remove one.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RecordsOp {
    /// A custodian's node records new records or new versions of its records. The custodian is
    /// the sender's organisation.
    PutRecords { records: Vec<RecordWrite> },
    /// The custodian binds one of its patient ids to the patient's enrolled key, so the patient
    /// can sign consent for it and read its access log.
    BindPatient { patient: Hash, key: PublicKey },
    /// A patient names (or removes) a delegate who may sign consent on their behalf.
    SetDelegate { delegate: PublicKey, active: bool },
    /// A patient, or a delegate the patient named, grants consent. The grant's id is this
    /// transaction's id.
    GrantConsent { grant: ConsentGrant },
    /// The patient or a delegate revokes a grant.
    RevokeConsent { grant: Hash },
    /// The custodian's node records an access decision before it releases anything.
    RecordAccess { access: AccessRequest },
    /// Erasure of a patient's data: every node destroys the keys, ciphertext and secret it holds
    /// for this patient once the block is committed. Sent by the patient or by the custodian.
    ErasePatient { patient: Hash },
}

/// Why a records, consent or access operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("only an organisation's node or root key may {0}")]
    NotACustodian(&'static str),
    #[error("{0} may not author records for the custodian")]
    NotAnAuthor(PublicKey),
    #[error("{id} is held by {custodian}, not by the sender's organisation")]
    NotCustodian { id: Hash, custodian: String },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("record {record} is at version {}, so the next version is {expected}, not {got}", expected - 1)]
    VersionConflict {
        record: Hash,
        expected: u32,
        got: u32,
    },
    #[error("no record {0}")]
    UnknownRecord(Hash),
    #[error("no patient {0}")]
    UnknownPatient(Hash),
    #[error("patient {0} was erased")]
    PatientErased(Hash),
    #[error("patient {0} is already bound to a key")]
    PatientBound(Hash),
    #[error("key {0} is not an enrolled, unrevoked patient")]
    NotAPatient(PublicKey),
    #[error("{sender} is neither patient {patient} nor a delegate the patient named")]
    NotThePatient {
        sender: PublicKey,
        patient: PublicKey,
    },
    #[error("invalid consent grant: {0}")]
    InvalidGrant(String),
    #[error("the grant's period ended at {end_ms}, before this block")]
    GrantExpired { end_ms: u64 },
    #[error("no consent grant {0}")]
    UnknownGrant(Hash),
    #[error("consent grant {0} is already revoked")]
    GrantRevoked(Hash),
    #[error("request {0} was already recorded; a signed request is used once")]
    RequestReplayed(Hash),
    #[error("reader {0} is not an enrolled, unrevoked member")]
    ReaderNotEnrolled(PublicKey),
    #[error("only the patient, a delegate or the custodian may erase patient {0}")]
    NotAllowedToErase(Hash),
    #[error("key {0} is not a valid Ed25519 public key")]
    InvalidKey(PublicKey),
    #[error("key {0} is not a member of any organisation")]
    NotAMember(PublicKey),
    #[error("organisation {0} does not exist")]
    UnknownOrganisation(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ModuleError for RecordsError {
    fn code(&self) -> &'static str {
        match self {
            RecordsError::NotACustodian(_) => "not_a_custodian",
            RecordsError::NotAnAuthor(_) => "not_an_author",
            RecordsError::NotCustodian { .. } => "not_custodian",
            RecordsError::InvalidRecord(_) => "invalid_record",
            RecordsError::VersionConflict { .. } => "version_conflict",
            RecordsError::UnknownRecord(_) => "unknown_record",
            RecordsError::UnknownPatient(_) => "unknown_patient",
            RecordsError::PatientErased(_) => "patient_erased",
            RecordsError::PatientBound(_) => "patient_bound",
            RecordsError::NotAPatient(_) => "not_a_patient",
            RecordsError::NotThePatient { .. } => "not_the_patient",
            RecordsError::InvalidGrant(_) => "invalid_grant",
            RecordsError::GrantExpired { .. } => "grant_expired",
            RecordsError::UnknownGrant(_) => "unknown_grant",
            RecordsError::GrantRevoked(_) => "grant_revoked",
            RecordsError::RequestReplayed(_) => "request_replayed",
            RecordsError::ReaderNotEnrolled(_) => "reader_not_enrolled",
            RecordsError::NotAllowedToErase(_) => "not_allowed_to_erase",
            RecordsError::InvalidKey(_) => "invalid_key",
            RecordsError::NotAMember(_) => "not_a_member",
            RecordsError::UnknownOrganisation(_) => "unknown_organisation",
            RecordsError::State(_) => "state_error",
        }
    }
}

/// A decoded state entry of the records module, for display.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum RecordsEntry {
    Patient(PatientEntry),
    PatientIds { patients: Vec<Hash> },
    Record(RecordHead),
    RecordVersion(RecordVersion),
    ConsentBook(ConsentBook),
    Grant(Box<ConsentEntry>),
    AccessCount { count: u64 },
    Access(Box<AccessEvent>),
    AccessRequest { patient: Hash, seq: u64 },
}

impl RecordsEntry {
    /// Decodes the value at `key`, or `None` for a key that is not the module's.
    pub fn decode(key: &str, value: &[u8]) -> Option<RecordsEntry> {
        let bytes = key.as_bytes();
        let entry = match key.split('/').next()? {
            "patient" => RecordsEntry::Patient(decode_value(bytes, value).ok()?),
            "patient-ids" => RecordsEntry::PatientIds {
                patients: decode_value(bytes, value).ok()?,
            },
            "record" => RecordsEntry::Record(decode_value(bytes, value).ok()?),
            "record-version" => RecordsEntry::RecordVersion(decode_value(bytes, value).ok()?),
            "consent" => RecordsEntry::ConsentBook(decode_value(bytes, value).ok()?),
            "grant" => RecordsEntry::Grant(Box::new(decode_value(bytes, value).ok()?)),
            "access-count" => RecordsEntry::AccessCount {
                count: decode_value(bytes, value).ok()?,
            },
            "access" => RecordsEntry::Access(Box::new(decode_value(bytes, value).ok()?)),
            "access-request" => {
                let (patient, seq) = decode_value(bytes, value).ok()?;
                RecordsEntry::AccessRequest { patient, seq }
            }
            _ => return None,
        };
        Some(entry)
    }
}

/// The records module.
#[derive(Clone, Copy, Debug)]
pub struct Records;

impl Module for Records {
    const NAME: &'static str = "records";
    const PREFIXES: &'static [&'static str] = &[
        "patient/",
        "patient-ids/",
        "record/",
        "record-version/",
        "consent/",
        "grant/",
        "access-count/",
        "access/",
        "access-request/",
    ];
    const KINDS: &'static [&'static str] = &[
        "put_records",
        "bind_patient",
        "set_delegate",
        "grant_consent",
        "revoke_consent",
        "record_access",
        "erase_patient",
    ];
    type Op = RecordsOp;
    type Error = RecordsError;

    fn kind(op: &RecordsOp) -> &'static str {
        match op {
            RecordsOp::PutRecords { .. } => "put_records",
            RecordsOp::BindPatient { .. } => "bind_patient",
            RecordsOp::SetDelegate { .. } => "set_delegate",
            RecordsOp::GrantConsent { .. } => "grant_consent",
            RecordsOp::RevokeConsent { .. } => "revoke_consent",
            RecordsOp::RecordAccess { .. } => "record_access",
            RecordsOp::ErasePatient { .. } => "erase_patient",
        }
    }

    fn apply(
        op: &RecordsOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), RecordsError> {
        let ctx = tx.block;
        match op {
            RecordsOp::PutRecords { records } => put_records(state, tx, records),
            RecordsOp::BindPatient { patient, key } => {
                bind_patient(state, tx.authority, patient, key)
            }
            RecordsOp::SetDelegate { delegate, active } => {
                set_delegate(state, &tx.sender, delegate, *active)
            }
            RecordsOp::GrantConsent { grant } => grant_consent(state, tx, grant),
            RecordsOp::RevokeConsent { grant } => revoke_consent(state, ctx, &tx.sender, grant),
            RecordsOp::RecordAccess { access } => record_access(state, tx, access),
            RecordsOp::ErasePatient { patient } => {
                erase_patient(state, ctx, &tx.sender, tx.authority, patient)
            }
        }
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        serde_json::to_value(RecordsEntry::decode(key, value)?).ok()
    }
}
