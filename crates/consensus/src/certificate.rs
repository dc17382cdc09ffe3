//! The one mapping between the engine's commit certificate and the ledger's. Because a precommit
//! for a block signs exactly `CommitCertificate::vote_sign_bytes`, the mapping only renames
//! fields: the signatures pass through unchanged.

use malachitebft_app_channel::app::types::core::{
    CommitCertificate as EngineCertificate, CommitSignature, Round,
};
use medledger_types::{CommitCertificate, CommitSignature as LedgerSignature};

use crate::context::{Address, BlockId, Height, LedgerContext};

/// The ledger's certificate for an engine decision, its signatures sorted by validator key.
pub fn to_ledger(certificate: &EngineCertificate<LedgerContext>) -> CommitCertificate {
    let mut signatures: Vec<LedgerSignature> = certificate
        .commit_signatures
        .iter()
        .map(|signature| LedgerSignature {
            validator: signature.address.0,
            signature: signature.signature,
        })
        .collect();
    signatures.sort_by_key(|signature| signature.validator);
    CommitCertificate {
        height: certificate.height.0,
        round: certificate.round.as_u32().unwrap_or(0),
        block_hash: certificate.value_id.0,
        signatures,
    }
}

/// The engine's certificate for a stored ledger certificate, for a peer catching up.
pub fn to_engine(certificate: &CommitCertificate) -> EngineCertificate<LedgerContext> {
    EngineCertificate {
        height: Height(certificate.height),
        round: Round::new(certificate.round),
        value_id: BlockId(certificate.block_hash),
        commit_signatures: certificate
            .signatures
            .iter()
            .map(|signature| {
                CommitSignature::new(Address(signature.validator), signature.signature)
            })
            .collect(),
    }
}
