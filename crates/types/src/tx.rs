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
    /// A researcher who files data requests (added after the first ten; roles only append).
    Researcher = 10,
    /// A read-only full node (a regulator's, an auditor's, or an organisation's read replica):
    /// validators serve it certified blocks; it never votes.
    Node = 11,
}

impl Role {
    pub const ALL: [Role; 12] = [
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
        Role::Researcher,
        Role::Node,
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
            Role::Researcher => "researcher",
            Role::Node => "node",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        crate::parse_name(&Role::ALL, Role::as_str, "role", text)
    }
}

/// A change to the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ValidatorChange {
    Add(crate::Validator),
    Remove { key: PublicKey },
}

/// The signed part of a transaction. `P` is the ledger's payload (`medledger_ledger::Payload`,
/// assembled from its module list); this crate only knows that it has a canonical encoding.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct TxBody<P> {
    /// Binds the transaction to one chain, so it cannot be replayed on another.
    pub chain_id: String,
    pub sender: PublicKey,
    /// The sender's sequence number: the first transaction of a key has nonce 1, and each next
    /// one exactly one more, so none can be replayed or reordered.
    pub nonce: u64,
    pub payload: P,
}

impl<P: BorshSerialize> TxBody<P> {
    /// The bytes the sender signs: a domain tag, then the canonical encoding of the body.
    pub fn sign_bytes(&self) -> Vec<u8> {
        let mut bytes = TX_SIGN_DOMAIN.to_vec();
        borsh::to_writer(&mut bytes, self).expect("encoding into memory never fails");
        bytes
    }

    pub fn sign(self, key: &SecretKey) -> Tx<P> {
        let signature = key.sign(&self.sign_bytes());
        Tx {
            body: self,
            signature,
        }
    }
}

/// A signed transaction.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Tx<P> {
    pub body: TxBody<P>,
    pub signature: Signature,
}

impl<P: BorshSerialize + BorshDeserialize> Tx<P> {
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

    pub fn from_bytes(bytes: &[u8]) -> Result<Tx<P>, TypesError> {
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
pub fn verify_tx_signatures<P: BorshSerialize>(txs: &[Tx<P>]) -> Vec<usize> {
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
