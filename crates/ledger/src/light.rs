//! What a light client checks: a header certified by the validators, then a Merkle proof from
//! that header's roots to a state entry or a transaction. It needs only the genesis document.
//!
//! The validator set starts as genesis's. When governance has changed it, the proof carries a
//! trail: for each change, the certified header of the block after which the set changed, and a
//! state proof of the new set under that header's state root. The client walks the trail, each
//! step certified by the set the previous step established, and checks the target header with
//! the last set.
//!
//! Like every light client that starts from genesis, this one trusts that the prover did not
//! leave out a change: a trail that skips one can only make the client use an older set, which
//! then has to have certified the header. The validators that were removed are what that trust
//! rests on.

use medledger_crypto::Hash;
use medledger_state::StateProof;
use medledger_state::decode_value;
use medledger_types::{
    CertificateError, CommitCertificate, Genesis, Header, InclusionProof, Receipt, TypesError,
    ValidatorSet,
};

use crate::{KEY_VALIDATORS, Tx};

/// The most validator-set changes a proof may walk.
pub const TRAIL_STEPS_MAX: usize = 10_000;

/// One validator-set change on the way from genesis to a header: the certified header of the
/// block after which the set changed, and the new set proven under its state root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidatorStep {
    pub header: Header,
    pub certificate: CommitCertificate,
    pub validators: StateProof,
}
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
        #[serde(default)]
        validator_trail: Vec<ValidatorStep>,
    },
    /// A transaction's inclusion in a block, and its receipt.
    Tx {
        header: Header,
        certificate: CommitCertificate,
        tx: Tx,
        tx_proof: InclusionProof,
        receipt: Receipt,
        receipt_proof: InclusionProof,
        #[serde(default)]
        validator_trail: Vec<ValidatorStep>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LightError {
    #[error("genesis is invalid: {0}")]
    Genesis(#[from] TypesError),
    #[error("header is for chain {got:?}, genesis is for {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error(
        "header at height {height} names validator set {got}, but the set in force is {expected}"
    )]
    UnknownValidatorSet {
        height: u64,
        expected: Hash,
        got: Hash,
    },
    #[error("validator trail step at height {height}: {reason}")]
    Trail { height: u64, reason: String },
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
        let (header, certificate, trail) = match self {
            LightProof::State {
                header,
                certificate,
                validator_trail,
                ..
            }
            | LightProof::Tx {
                header,
                certificate,
                validator_trail,
                ..
            } => (header, certificate, validator_trail),
        };
        let validators = walk_trail(genesis, trail, header.height)?;
        check_certified(genesis, header, certificate, &validators)?;
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

/// Checks that `certificate` finalises `header` of this chain under `validators`.
fn check_certified(
    genesis: &Genesis,
    header: &Header,
    certificate: &CommitCertificate,
    validators: &ValidatorSet,
) -> Result<(), LightError> {
    if header.chain_id != genesis.chain_id {
        return Err(LightError::WrongChain {
            expected: genesis.chain_id.clone(),
            got: header.chain_id.clone(),
        });
    }
    if header.validators_hash != validators.hash() {
        return Err(LightError::UnknownValidatorSet {
            height: header.height,
            expected: validators.hash(),
            got: header.validators_hash,
        });
    }
    certificate.verify(header, validators)?;
    Ok(())
}

/// Walks the validator-set changes from genesis and returns the set that decides `height`.
pub fn walk_trail(
    genesis: &Genesis,
    trail: &[ValidatorStep],
    height: u64,
) -> Result<ValidatorSet, LightError> {
    let mut validators = genesis.validate()?;
    if trail.len() > TRAIL_STEPS_MAX {
        return Err(LightError::Trail {
            height,
            reason: format!("more than {TRAIL_STEPS_MAX} steps"),
        });
    }
    let mut previous = 0;
    for step in trail {
        let step_height = step.header.height;
        let fail = |reason: String| LightError::Trail {
            height: step_height,
            reason,
        };
        // The set changed after block `step_height`, so it matters only to later heights.
        if step_height <= previous || step_height >= height {
            return Err(fail(format!(
                "steps must rise and stay below the header's height {height}"
            )));
        }
        check_certified(genesis, &step.header, &step.certificate, &validators)?;
        if step.validators.key != KEY_VALIDATORS {
            return Err(fail("the proof is not of the validator set".into()));
        }
        step.validators
            .verify(step.header.state_root)
            .map_err(|error| fail(error.to_string()))?;
        let bytes = step
            .validators
            .value
            .as_ref()
            .ok_or_else(|| fail("the state holds no validator set".into()))?;
        validators =
            decode_value(KEY_VALIDATORS, bytes).map_err(|error| fail(error.to_string()))?;
        previous = step_height;
    }
    Ok(validators)
}
