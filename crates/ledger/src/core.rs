//! The ledger's own operations: identity (enrolment and revocation), anchors, and governance of
//! the validator set. They write only the ledger's prefixes (`medledger_module::CORE_PREFIXES`).

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_module::{
    Authority, MemberRecord, TxContext, key_anchor, key_member, key_org_by_root, member,
};
use medledger_state::{Overlay, StateRead, encode_value};
use medledger_types::{Height, Role, ValidatorChange};
use serde::{Deserialize, Serialize};

use crate::{AnchorRecord, TxError, governance};

/// The ledger's own operations. Their order is their payload tag (0 to 4): never reorder or
/// remove one.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CoreOp {
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
}

impl CoreOp {
    /// The operations' names, in tag order.
    pub const KINDS: &'static [&'static str] = &[
        "enrol",
        "revoke",
        "anchor",
        "propose_validator_change",
        "approve_validator_change",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            CoreOp::Enrol { .. } => "enrol",
            CoreOp::Revoke { .. } => "revoke",
            CoreOp::Anchor { .. } => "anchor",
            CoreOp::ProposeValidatorChange { .. } => "propose_validator_change",
            CoreOp::ApproveValidatorChange { .. } => "approve_validator_change",
        }
    }
}

pub(crate) fn apply(
    op: &CoreOp,
    tx: &TxContext<'_>,
    state: &mut Overlay<'_>,
) -> Result<(), TxError> {
    let ctx = tx.block;
    match op {
        CoreOp::Enrol { member: key, role } => {
            let Authority::Organisation { org } = tx.authority else {
                return Err(TxError::NotAnOrganisation("enrol members"));
            };
            if key.check().is_err() {
                return Err(TxError::InvalidKey(*key));
            }
            if state.get(&key_org_by_root(key))?.is_some() {
                return Err(TxError::KeyIsOrganisation(*key));
            }
            match member(state, key)? {
                Some(MemberRecord {
                    revoked_at: Some(_),
                    ..
                }) => return Err(TxError::KeyRevoked(*key)),
                Some(_) => return Err(TxError::AlreadyEnrolled(*key)),
                None => {}
            }
            let record = MemberRecord {
                org: org.clone(),
                role: *role,
                enrolled_at: ctx.height,
                revoked_at: None,
            };
            state.put(key_member(key), encode_value(&record));
            Ok(())
        }
        CoreOp::Revoke { member: key } => {
            let Authority::Organisation { org } = tx.authority else {
                return Err(TxError::NotAnOrganisation("revoke members"));
            };
            let mut record = member(state, key)?.ok_or(TxError::NotAMember(*key))?;
            if &record.org != org {
                return Err(TxError::NotYourMember {
                    member: *key,
                    org: record.org,
                });
            }
            if record.revoked_at.is_some() {
                return Err(TxError::AlreadyRevoked(*key));
            }
            record.revoked_at = Some(ctx.height);
            state.put(key_member(key), encode_value(&record));
            Ok(())
        }
        CoreOp::Anchor { id, commitment } => {
            let key = key_anchor(id);
            if state.get(&key)?.is_some() {
                return Err(TxError::AnchorExists(*id));
            }
            let record = AnchorRecord {
                owner: tx.sender,
                commitment: *commitment,
                height: ctx.height,
                time_ms: ctx.time_ms,
            };
            state.put(key, encode_value(&record));
            Ok(())
        }
        CoreOp::ProposeValidatorChange {
            change,
            effective_height,
        } => {
            let Authority::Organisation { org } = tx.authority else {
                return Err(TxError::NotAnOrganisation("propose validator changes"));
            };
            governance::propose(state, ctx, tx.id, org, change, *effective_height)
        }
        CoreOp::ApproveValidatorChange { proposal } => {
            let Authority::Organisation { org } = tx.authority else {
                return Err(TxError::NotAnOrganisation("approve validator changes"));
            };
            governance::approve(state, ctx, *proposal, org)
        }
    }
}
