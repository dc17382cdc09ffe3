//! Signed transactions, their payloads and their receipts.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey, SecretKey, Signature, hash_tagged, sha256};
use serde::{Deserialize, Serialize};

use crate::{Height, TX_BYTES_MAX, TypesError, decode, encode};

const TX_SIGN_DOMAIN: &[u8] = b"medledger/tx/v1";
const TX_ID_TAG: &[u8] = b"medledger/tx-id/v1";

/// The roles an organisation can enrol a member with.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[borsh(use_discriminant = true)]
pub enum Role {
    Practitioner = 0,
    Patient = 1,
    Pharmacy = 2,
    Manufacturer = 3,
    Distributor = 4,
    Insurer = 5,
    Sponsor = 6,
    Device = 7,
    Auditor = 8,
    Validator = 9,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Practitioner,
        Role::Patient,
        Role::Pharmacy,
        Role::Manufacturer,
        Role::Distributor,
        Role::Insurer,
        Role::Sponsor,
        Role::Device,
        Role::Auditor,
        Role::Validator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Practitioner => "practitioner",
            Role::Patient => "patient",
            Role::Pharmacy => "pharmacy",
            Role::Manufacturer => "manufacturer",
            Role::Distributor => "distributor",
            Role::Insurer => "insurer",
            Role::Sponsor => "sponsor",
            Role::Device => "device",
            Role::Auditor => "auditor",
            Role::Validator => "validator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        crate::parse_name(&Role::ALL, Role::as_str, "role", text)
    }
}

/// What a transaction asks the ledger to do.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// An organisation's root key enrols `member` into that organisation with `role`.
    Enrol { member: PublicKey, role: Role },
    /// An organisation's root key revokes one of its own members. Revocation is permanent.
    Revoke { member: PublicKey },
    /// Records an opaque, keyed commitment under an opaque id, first writer wins. This is the
    /// notarisation primitive: the content and its key stay off chain.
    Anchor { id: Hash, commitment: Hash },
    /// An organisation's root key proposes a change to the validator set, to take effect from
    /// `effective_height` once two thirds of the organisations approve. The proposal's id is
    /// this transaction's id, and the proposer's approval is counted.
    ProposeValidatorChange {
        change: ValidatorChange,
        effective_height: Height,
    },
    /// An organisation's root key approves a pending validator-set proposal.
    ApproveValidatorChange { proposal: Hash },
    /// A custodian's node records new records or new versions of its records. The custodian is
    /// the sender's organisation.
    PutRecords { records: Vec<crate::RecordWrite> },
    /// The custodian binds one of its patient ids to the patient's enrolled key, so the patient
    /// can sign consent for it and read its access log.
    BindPatient { patient: Hash, key: PublicKey },
    /// A patient names (or removes) a delegate who may sign consent on their behalf.
    SetDelegate { delegate: PublicKey, active: bool },
    /// A patient, or a delegate the patient named, grants consent. The grant's id is this
    /// transaction's id.
    GrantConsent { grant: crate::ConsentGrant },
    /// The patient or a delegate revokes a grant.
    RevokeConsent { grant: Hash },
    /// The custodian's node records an access decision before it releases anything.
    RecordAccess { access: crate::AccessRequest },
    /// Erasure of a patient's data: every node destroys the keys, ciphertext and secret it holds
    /// for this patient once the block is committed. Sent by the patient or by the custodian.
    ErasePatient { patient: Hash },
    /// Supply-chain steps, each acted by the sender's organisation, applied in order, all or
    /// nothing.
    Supply { ops: Vec<crate::SupplyOp> },
    /// An organisation's node records EPCIS events captured from `capturer`, a member of its
    /// organisation, with the supply-chain steps they map to. An event already on record is
    /// skipped, so capturing it again changes nothing.
    CaptureEpcis {
        capturer: PublicKey,
        events: Vec<crate::CapturedEvent>,
    },
}

/// A change to the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ValidatorChange {
    Add(crate::Validator),
    Remove { key: PublicKey },
}

impl Payload {
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Enrol { .. } => "enrol",
            Payload::Revoke { .. } => "revoke",
            Payload::Anchor { .. } => "anchor",
            Payload::ProposeValidatorChange { .. } => "propose_validator_change",
            Payload::ApproveValidatorChange { .. } => "approve_validator_change",
            Payload::PutRecords { .. } => "put_records",
            Payload::BindPatient { .. } => "bind_patient",
            Payload::SetDelegate { .. } => "set_delegate",
            Payload::GrantConsent { .. } => "grant_consent",
            Payload::RevokeConsent { .. } => "revoke_consent",
            Payload::RecordAccess { .. } => "record_access",
            Payload::ErasePatient { .. } => "erase_patient",
            Payload::Supply { .. } => "supply",
            Payload::CaptureEpcis { .. } => "capture_epcis",
        }
    }
}

/// The signed part of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxBody {
    /// Binds the transaction to one chain, so it cannot be replayed on another.
    pub chain_id: String,
    pub sender: PublicKey,
    /// The sender's sequence number: the first transaction of a key has nonce 1, and each next
    /// one exactly one more, so none can be replayed or reordered.
    pub nonce: u64,
    pub payload: Payload,
}

impl TxBody {
    /// The bytes the sender signs: a domain tag, then the canonical encoding of the body.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut bytes = TX_SIGN_DOMAIN.to_vec();
        borsh::to_writer(&mut bytes, self).expect("encoding into memory never fails");
        bytes
    }

    pub fn sign(self, key: &SecretKey) -> Tx {
        let signature = key.sign(&self.sign_bytes());
        Tx {
            body: self,
            signature,
        }
    }
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Tx {
    pub body: TxBody,
    pub signature: Signature,
}

impl Tx {
    /// The transaction's id: a hash of its signed body. It does not cover the signature, so a
    /// re-encoded signature cannot give the same transaction a second id.
    pub fn id(&self) -> Hash {
        hash_tagged(TX_ID_TAG, &[&encode(&self.body)])
    }

    /// The Merkle leaf of the transaction in its block: a hash of all its bytes, signature
    /// included, so the block commits to exactly what is stored.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.to_bytes())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Tx, TypesError> {
        decode("transaction", bytes, TX_BYTES_MAX)
    }

    /// Checks the signature alone; the ledger checks everything else.
    pub fn verify_signature(&self) -> Result<(), medledger_crypto::CryptoError> {
        self.body
            .sender
            .verify(&self.body.sign_bytes(), &self.signature)
    }
}

/// Verifies the signatures of many transactions in one batch; returns the indices of those that
/// do not verify.
pub fn verify_tx_signatures(txs: &[Tx]) -> Vec<usize> {
    let sign_bytes: Vec<Vec<u8>> = txs.iter().map(|tx| tx.body.sign_bytes()).collect();
    let items: Vec<(PublicKey, &[u8], Signature)> = txs
        .iter()
        .zip(&sign_bytes)
        .map(|(tx, bytes)| (tx.body.sender, bytes.as_slice(), tx.signature))
        .collect();
    medledger_crypto::verify_batch(&items)
}

/// The Merkle leaf for an encoded transaction.
pub fn leaf_hash(tx_bytes: &[u8]) -> Hash {
    let mut tagged = b"medledger/tx-leaf/v1".to_vec();
    tagged.extend_from_slice(&sha256(tx_bytes).0);
    sha256(&tagged)
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Applied; its effects are in the state.
    Committed,
    /// In the block with its nonce used, but its payload was refused and left no effect.
    Rejected { code: String, reason: String },
}

/// The on-chain record of one transaction's outcome; the block's receipts root commits to these.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Receipt {
    pub tx_id: Hash,
    pub height: Height,
    pub index: u32,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Receipt {
    pub fn leaf_hash(&self) -> Hash {
        hash_tagged(b"medledger/receipt-leaf/v1", &[&encode(self)])
    }
}
