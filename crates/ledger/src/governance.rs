//! Governance of the validator set: an organisation proposes adding or removing a validator from
//! a given height; the change is scheduled once two thirds of the consortium's organisations have
//! approved it, and applied when the block before that height closes, so the validator set of
//! height `h` is always the one in the state after block `h - 1`.
//!
//! **Invariant:** a change takes effect only at its proposal's `effective_height`, never earlier
//! or later; one that can no longer be applied there (its validator was meanwhile removed, or it
//! would empty the set) is marked failed and leaves the set alone.
//! **Invariant:** proposals cannot wait without bound: an effective height is at most
//! `GOVERNANCE_HORIZON` heights ahead, and approvals stop when it is reached.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::Hash;
use medledger_state::{Overlay, StateError, StateRead, decode_value, encode_value};
use medledger_types::{Height, ValidatorChange, ValidatorSet};
use serde::Serialize;

use crate::{BlockContext, KEY_VALIDATORS, TxError, validators};

/// The furthest ahead a change may be proposed to take effect.
pub const GOVERNANCE_HORIZON: Height = 1_000_000;
/// The most changes that may be scheduled at one height.
pub const CHANGES_PER_HEIGHT_MAX: usize = 16;

// The organisation list and the two-thirds rule are the seam's, so modules govern by them too.
pub use medledger_module::{KEY_ORGANISATIONS, is_approved, organisations};
/// The heights after which the validator set changed, in order: what a light client walks.
pub const KEY_VALIDATOR_CHANGES: &[u8] = b"chain/validator-changes";

pub fn key_proposal(id: &Hash) -> Vec<u8> {
    format!("governance/proposal/{id}").into_bytes()
}

/// Changes scheduled to take effect at `height`. Zero-padded, so keys sort by height.
pub fn key_scheduled(height: Height) -> Vec<u8> {
    format!("governance/scheduled/{height:020}").into_bytes()
}

/// A proposed validator-set change and its approvals.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ValidatorProposal {
    pub change: ValidatorChange,
    pub effective_height: Height,
    pub proposed_by: String,
    pub proposed_at: Height,
    /// Approving organisations, sorted, the proposer first counted.
    pub approvals: Vec<String>,
    pub status: ProposalStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProposalStatus {
    /// Waiting for approvals.
    Pending,
    /// Approved by two thirds of the organisations; applied at `effective_height`.
    Scheduled { approved_at: Height },
    /// In force from `effective_height`.
    Applied,
    /// Approved, but no longer applicable at `effective_height`.
    Failed { reason: String },
}

pub fn proposal(state: &dyn StateRead, id: &Hash) -> Result<Option<ValidatorProposal>, StateError> {
    let key = key_proposal(id);
    state
        .get(&key)?
        .map(|bytes| decode_value(&key, &bytes))
        .transpose()
}

/// The heights after which the validator set changed.
pub fn validator_changes(state: &dyn StateRead) -> Result<Vec<Height>, StateError> {
    match state.get(KEY_VALIDATOR_CHANGES)? {
        Some(bytes) => decode_value(KEY_VALIDATOR_CHANGES, &bytes),
        None => Ok(Vec::new()),
    }
}

/// The set `change` would make of `set`, or why it cannot be made.
pub fn changed_set(
    state: &dyn StateRead,
    set: &ValidatorSet,
    change: &ValidatorChange,
) -> Result<ValidatorSet, TxError> {
    let mut validators = set.validators.clone();
    match change {
        ValidatorChange::Add(validator) => {
            if validator.key.check().is_err() {
                return Err(TxError::InvalidKey(validator.key));
            }
            if set.get(&validator.key).is_some() {
                return Err(TxError::AlreadyValidator(validator.key));
            }
            if state.get(&crate::key_org(&validator.org))?.is_none() {
                return Err(TxError::UnknownOrganisation(validator.org.clone()));
            }
            validators.push(validator.clone());
        }
        ValidatorChange::Remove { key } => {
            if set.get(key).is_none() {
                return Err(TxError::NotAValidator(*key));
            }
            validators.retain(|validator| validator.key != *key);
        }
    }
    ValidatorSet::new(validators).map_err(|error| TxError::InvalidValidatorSet(error.to_string()))
}

pub(crate) fn propose(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
    id: Hash,
    org: &str,
    change: &ValidatorChange,
    effective_height: Height,
) -> Result<(), TxError> {
    if effective_height <= ctx.height
        || effective_height > ctx.height.saturating_add(GOVERNANCE_HORIZON)
    {
        return Err(TxError::EffectiveHeight {
            height: ctx.height,
            effective_height,
            horizon: GOVERNANCE_HORIZON,
        });
    }
    // Refuse what cannot apply today; it is checked again when it takes effect.
    changed_set(state, &validators(state)?, change)?;
    let proposal = ValidatorProposal {
        change: change.clone(),
        effective_height,
        proposed_by: org.to_string(),
        proposed_at: ctx.height,
        approvals: Vec::new(),
        status: ProposalStatus::Pending,
    };
    approve_as(state, ctx, id, proposal, org)
}

pub(crate) fn approve(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
    id: Hash,
    org: &str,
) -> Result<(), TxError> {
    let proposal = proposal(state, &id)?.ok_or(TxError::UnknownProposal(id))?;
    if proposal.status != ProposalStatus::Pending {
        return Err(TxError::ProposalClosed(id));
    }
    if proposal.approvals.iter().any(|approver| approver == org) {
        return Err(TxError::AlreadyApproved {
            proposal: id,
            org: org.to_string(),
        });
    }
    if ctx.height >= proposal.effective_height {
        return Err(TxError::ProposalExpired {
            proposal: id,
            effective_height: proposal.effective_height,
        });
    }
    approve_as(state, ctx, id, proposal, org)
}

fn approve_as(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
    id: Hash,
    mut proposal: ValidatorProposal,
    org: &str,
) -> Result<(), TxError> {
    let position = proposal
        .approvals
        .binary_search_by(|approver| approver.as_str().cmp(org))
        .unwrap_or_else(|position| position);
    proposal.approvals.insert(position, org.to_string());
    if is_approved(proposal.approvals.len(), organisations(state)?.len()) {
        let key = key_scheduled(proposal.effective_height);
        let mut scheduled: Vec<Hash> = match state.get(&key)? {
            Some(bytes) => decode_value(&key, &bytes)?,
            None => Vec::new(),
        };
        if scheduled.len() >= CHANGES_PER_HEIGHT_MAX {
            return Err(TxError::TooManyChanges(proposal.effective_height));
        }
        scheduled.push(id);
        state.put(key, encode_value(&scheduled));
        proposal.status = ProposalStatus::Scheduled {
            approved_at: ctx.height,
        };
    }
    state.put(key_proposal(&id), encode_value(&proposal));
    Ok(())
}

/// Applies the changes that take effect at the next height, in the order they were approved.
/// Called as block `ctx.height` closes.
pub(crate) fn apply_scheduled(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
) -> Result<(), StateError> {
    let next = ctx.height + 1;
    let key = key_scheduled(next);
    let Some(bytes) = state.get(&key)? else {
        return Ok(());
    };
    let scheduled: Vec<Hash> = decode_value(&key, &bytes)?;
    let before = validators(state)?;
    let mut set = before.clone();
    for id in scheduled {
        let Some(mut proposal) = proposal(state, &id)? else {
            return Err(StateError::Store(format!(
                "scheduled validator change {id} has no proposal"
            )));
        };
        proposal.status = match changed_set(state, &set, &proposal.change) {
            Ok(changed) => {
                set = changed;
                ProposalStatus::Applied
            }
            Err(TxError::State(error)) => return Err(error),
            Err(error) => ProposalStatus::Failed {
                reason: error.to_string(),
            },
        };
        state.put(key_proposal(&id), encode_value(&proposal));
    }
    if set != before {
        state.put(KEY_VALIDATORS.to_vec(), encode_value(&set));
        let mut changes = validator_changes(state)?;
        changes.push(ctx.height);
        state.put(KEY_VALIDATOR_CHANGES.to_vec(), encode_value(&changes));
    }
    Ok(())
}
