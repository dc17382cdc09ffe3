//! What a light client checks: a header certified by the validators, then a Merkle proof from
//! that header's roots to a state entry or a transaction. It needs only the genesis document.
//!
//! The validator set is taken from genesis; the chain has no validator-set changes yet. When it
//! does, a light client will walk the certified headers that change the set.

use medledger_crypto::Hash;
use medledger_state::StateProof;
use medledger_types::{
    CertificateError, CommitCertificate, Genesis, Header, InclusionProof, Receipt, Tx, TypesError,
};
use serde::{Deserialize, Serialize};

/// A self-contained proof, as the API serves it and `medledger proof verify` checks it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Proofs are built once per request and serialised at once; boxing would only add noise.
#[allow(clippy::large_enum_variant)]
pub enum LightProof {
    /// The value of a state key (or its absence) after block `header.height`.
    State {
        header: Header,
        certificate: CommitCertificate,
        proof: StateProof,
    },
    /// A transaction's inclusion in a block, and its receipt.
    Tx {
        header: Header,
        certificate: CommitCertificate,
        tx: Tx,
        tx_proof: InclusionProof,
        receipt: Receipt,
        receipt_proof: InclusionProof,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LightError {
    #[error("genesis is invalid: {0}")]
    Genesis(#[from] TypesError),
    #[error("header is for chain {got:?}, genesis is for {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("header's validator set {got} is not the genesis set {expected}")]
    UnknownValidatorSet { expected: Hash, got: Hash },
    #[error("certificate does not finalise the header: {0}")]
    Certificate(#[from] CertificateError),
    #[error("state proof does not match the header's state root: {0}")]
    State(String),
    #[error("transaction is not included under the header's transactions root")]
    TxNotIncluded,
    #[error(
        "receipt is not included under the header's receipts root, or is not this transaction's"
    )]
    ReceiptNotIncluded,
}

impl LightProof {
    pub fn header(&self) -> &Header {
        match self {
            LightProof::State { header, .. } | LightProof::Tx { header, .. } => header,
        }
    }

    /// Checks the whole proof against genesis alone.
    pub fn verify(&self, genesis: &Genesis) -> Result<(), LightError> {
        let validators = genesis.validate()?;
        let (header, certificate) = match self {
            LightProof::State {
                header,
                certificate,
                ..
            }
            | LightProof::Tx {
                header,
                certificate,
                ..
            } => (header, certificate),
        };
        if header.chain_id != genesis.chain_id {
            return Err(LightError::WrongChain {
                expected: genesis.chain_id.clone(),
                got: header.chain_id.clone(),
            });
        }
        if header.validators_hash != validators.hash() {
            return Err(LightError::UnknownValidatorSet {
                expected: validators.hash(),
                got: header.validators_hash,
            });
        }
        certificate.verify(header, &validators)?;
        match self {
            LightProof::State { proof, .. } => proof
                .verify(header.state_root)
                .map_err(|error| LightError::State(error.to_string())),
            LightProof::Tx {
                tx,
                tx_proof,
                receipt,
                receipt_proof,
                ..
            } => {
                if !tx_proof.verify(header.txs_root, tx.leaf_hash()) {
                    return Err(LightError::TxNotIncluded);
                }
                let matches = receipt.tx_id == tx.id()
                    && receipt.height == header.height
                    && u64::from(receipt.index) == tx_proof.index
                    && receipt_proof.index == tx_proof.index;
                if !matches || !receipt_proof.verify(header.receipts_root, receipt.leaf_hash()) {
                    return Err(LightError::ReceiptNotIncluded);
                }
                Ok(())
            }
        }
    }
}
