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
    if add_approval(state, &mut proposal.approvals, org)? {
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

/// Adds `org` to a proposal's approvals (kept sorted; the caller has refused a second approval);
/// answers whether they now reach two thirds of the organisations. Every kind of proposal counts
/// by this one rule.
fn add_approval(
    state: &dyn StateRead,
    approvals: &mut Vec<String>,
    org: &str,
) -> Result<bool, StateError> {
    let position = approvals
        .binary_search_by(|approver| approver.as_str().cmp(org))
        .unwrap_or_else(|position| position);
    approvals.insert(position, org.to_string());
    Ok(is_approved(approvals.len(), organisations(state)?.len()))
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

// ---------------------------------------------------------------------------------------------
// The one proposal mechanism. A proposal names an `Action`; it is enacted in the transaction that
// brings its approvals to two thirds of the organisations, or never, if its expiry height passes
// first. A validator-set change keeps the layout and schedule it always had (`ValidatorProposal`,
// applied at its effective height); every other action is a `Proposal` under
// `governance/motion/<id>`, numbered in `governance/motion-by-seq/<n>` for listing.
// ---------------------------------------------------------------------------------------------

use medledger_contracts::{Contracts, ContractsAction};
use medledger_crypto::PublicKey;
use medledger_module::{Governed, TxContext, View, key_parameter};
use medledger_types::{Organisation, check_name};
use serde::Deserialize;

/// The first payload tag of the governance operations (the ledger's own second block: its first,
/// tags 0 to 4, is full).
pub const GOVERNANCE_BASE: u8 = 96;
/// The most proposals that may be pending or enacted in total, so the list stays bounded.
pub const PROPOSALS_MAX: u64 = 1_000_000;

/// What the ledger itself governs.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CoreAction {
    /// Adds or removes a validator from `effective_height` (which is also the proposal's expiry).
    ChangeValidators {
        change: ValidatorChange,
        effective_height: Height,
    },
    /// Admits an organisation with its root key, which may then enrol members.
    AdmitOrganisation {
        id: String,
        name: String,
        root_key: PublicKey,
    },
    /// Sets a chain parameter that a module reads (see `parameters`).
    SetParameter { name: String, value: u64 },
}

/// What a proposal asks for: the ledger's own change, or a governed module's.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Action {
    Core(CoreAction),
    Contracts(ContractsAction),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Core(CoreAction::ChangeValidators { .. }) => "change_validators",
            Action::Core(CoreAction::AdmitOrganisation { .. }) => "admit_organisation",
            Action::Core(CoreAction::SetParameter { .. }) => "set_parameter",
            Action::Contracts(action) => Contracts::action_kind(action),
        }
    }
}

/// The governance operations, payload tags from `GOVERNANCE_BASE`. Only ever append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GovernanceOp {
    /// An organisation's root key proposes `action`, open for approval until `expires_at`
    /// (inclusive); its approval is counted. The proposal's id is this transaction's id.
    Propose { action: Action, expires_at: Height },
    /// An organisation's root key approves a proposal (of any kind, validator changes included).
    ApproveProposal { proposal: Hash },
}

impl GovernanceOp {
    pub const KINDS: &'static [&'static str] = &["propose", "approve_proposal"];

    pub fn kind(&self) -> &'static str {
        match self {
            GovernanceOp::Propose { .. } => "propose",
            GovernanceOp::ApproveProposal { .. } => "approve_proposal",
        }
    }
}

/// A proposal other than a validator change.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Proposal {
    pub action: Action,
    pub proposed_by: String,
    pub proposed_at: Height,
    pub expires_at: Height,
    /// Approving organisations, sorted.
    pub approvals: Vec<String>,
    pub status: Enactment,
    /// Its number in the list of proposals.
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Enactment {
    /// Waiting for approvals (or expired, once the height passes `expires_at`).
    Pending,
    /// Approved and done at `height`.
    Enacted { height: Height },
    /// Approved at `height`, but the action could not be done; nothing of it was kept.
    Failed {
        height: Height,
        code: String,
        reason: String,
    },
}

pub fn key_motion(id: &Hash) -> Vec<u8> {
    format!("governance/motion/{id}").into_bytes()
}

pub fn key_motion_by_seq(seq: u64) -> Vec<u8> {
    format!("governance/motion-by-seq/{seq:020}").into_bytes()
}

pub const KEY_MOTIONS_COUNT: &[u8] = b"governance/motions-count";

pub fn motion(state: &dyn StateRead, id: &Hash) -> Result<Option<Proposal>, StateError> {
    medledger_module::read(state, &key_motion(id))
}

/// Every parameter governance may set, with its default and range: the modules' lists.
pub fn parameters() -> Vec<medledger_contracts::Parameter> {
    medledger_contracts::PARAMETERS.to_vec()
}

/// The ids of proposals (other than validator changes), in order, from `start`, at most `limit`.
pub fn motions(state: &dyn StateRead, start: u64, limit: u64) -> Result<Vec<Hash>, StateError> {
    let count: u64 = medledger_module::read(state, KEY_MOTIONS_COUNT)?.unwrap_or(0);
    let mut ids = Vec::new();
    for seq in start..count.min(start.saturating_add(limit)) {
        if let Some(id) = medledger_module::read(state, &key_motion_by_seq(seq))? {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn contracts_view<'o, 'b>(state: &'o mut Overlay<'b>) -> View<'o, 'b> {
    View::new(
        state,
        <Contracts as medledger_module::Module>::NAME,
        <Contracts as medledger_module::Module>::PREFIXES,
        <Contracts as medledger_module::Module>::READS,
    )
}

/// Checks what can be checked when an action is proposed.
fn check_action(state: &mut Overlay<'_>, action: &Action) -> Result<(), TxError> {
    match action {
        Action::Core(CoreAction::ChangeValidators { .. }) => Ok(()),
        Action::Core(CoreAction::AdmitOrganisation { id, name, root_key }) => {
            check_name("organisation id", id)
                .map_err(|error| TxError::InvalidOrganisation(error.to_string()))?;
            if name.is_empty() || name.len() > medledger_types::NAME_BYTES_MAX {
                return Err(TxError::InvalidOrganisation(
                    "a name of 1 to 64 bytes".into(),
                ));
            }
            if root_key.check().is_err() {
                return Err(TxError::InvalidKey(*root_key));
            }
            if state.get(&crate::key_org(id))?.is_some() {
                return Err(TxError::OrganisationExists(id.clone()));
            }
            if state.get(&crate::key_org_by_root(root_key))?.is_some()
                || crate::member(state, root_key)?.is_some()
            {
                return Err(TxError::KeyInUse(*root_key));
            }
            Ok(())
        }
        Action::Core(CoreAction::SetParameter { name, value }) => {
            let parameter = parameters()
                .into_iter()
                .find(|parameter| parameter.name == name)
                .ok_or_else(|| TxError::UnknownParameter(name.clone()))?;
            if *value < parameter.min || *value > parameter.max {
                return Err(TxError::ParameterRange {
                    name: name.clone(),
                    value: *value,
                    min: parameter.min,
                    max: parameter.max,
                });
            }
            Ok(())
        }
        Action::Contracts(action) => {
            let view = contracts_view(state);
            Contracts::check_action(action, &view).map_err(TxError::from)
        }
    }
}

pub(crate) fn propose_action(
    state: &mut Overlay<'_>,
    tx: &TxContext<'_>,
    org: &str,
    action: &Action,
    expires_at: Height,
) -> Result<(), TxError> {
    let ctx = tx.block;
    if let Action::Core(CoreAction::ChangeValidators {
        change,
        effective_height,
    }) = action
    {
        if expires_at != *effective_height {
            return Err(TxError::EffectiveHeight {
                height: ctx.height,
                effective_height: expires_at,
                horizon: GOVERNANCE_HORIZON,
            });
        }
        return propose(state, ctx, tx.id, org, change, *effective_height);
    }
    if expires_at <= ctx.height || expires_at > ctx.height.saturating_add(GOVERNANCE_HORIZON) {
        return Err(TxError::EffectiveHeight {
            height: ctx.height,
            effective_height: expires_at,
            horizon: GOVERNANCE_HORIZON,
        });
    }
    check_action(state, action)?;
    let seq: u64 = medledger_module::read(state, KEY_MOTIONS_COUNT)?.unwrap_or(0);
    if seq >= PROPOSALS_MAX {
        return Err(TxError::TooManyProposals(PROPOSALS_MAX));
    }
    state.put(key_motion_by_seq(seq), encode_value(&tx.id));
    state.put(KEY_MOTIONS_COUNT.to_vec(), encode_value(&(seq + 1)));
    let proposal = Proposal {
        action: action.clone(),
        proposed_by: org.to_string(),
        proposed_at: ctx.height,
        expires_at,
        approvals: Vec::new(),
        status: Enactment::Pending,
        seq,
    };
    approve_motion_as(state, tx, tx.id, proposal, org)
}

pub(crate) fn approve_any(
    state: &mut Overlay<'_>,
    tx: &TxContext<'_>,
    id: Hash,
    org: &str,
) -> Result<(), TxError> {
    if proposal(state, &id)?.is_some() {
        return approve(state, tx.block, id, org);
    }
    let proposal = motion(state, &id)?.ok_or(TxError::UnknownProposal(id))?;
    if proposal.status != Enactment::Pending {
        return Err(TxError::ProposalClosed(id));
    }
    if proposal.approvals.iter().any(|approver| approver == org) {
        return Err(TxError::AlreadyApproved {
            proposal: id,
            org: org.to_string(),
        });
    }
    if tx.block.height > proposal.expires_at {
        return Err(TxError::ProposalExpired {
            proposal: id,
            effective_height: proposal.expires_at,
        });
    }
    approve_motion_as(state, tx, id, proposal, org)
}

fn approve_motion_as(
    state: &mut Overlay<'_>,
    tx: &TxContext<'_>,
    id: Hash,
    mut proposal: Proposal,
    org: &str,
) -> Result<(), TxError> {
    if add_approval(state, &mut proposal.approvals, org)? {
        let height = tx.block.height;
        proposal.status = match enact(state, tx, id, &proposal.action)? {
            Ok(()) => Enactment::Enacted { height },
            Err((code, reason)) => Enactment::Failed {
                height,
                code,
                reason,
            },
        };
    }
    state.put(key_motion(&id), encode_value(&proposal));
    Ok(())
}

/// Does an approved action. `Ok(Err(..))` is an action that could not be done: everything it
/// wrote is dropped (but for the fuel a contract burnt, which counts against the block).
fn enact(
    state: &mut Overlay<'_>,
    tx: &TxContext<'_>,
    id: Hash,
    action: &Action,
) -> Result<Result<(), (String, String)>, StateError> {
    let savepoint = state.savepoint();
    let failed = |error: TxError| Err((error.code().to_string(), error.to_string()));
    match action {
        Action::Core(CoreAction::ChangeValidators { .. }) => {
            unreachable!("validator changes are scheduled, not enacted here")
        }
        Action::Core(CoreAction::AdmitOrganisation { id, name, root_key }) => {
            // Checked again: another proposal may have admitted the id or key meanwhile.
            if let Err(error) = check_action(state, action) {
                return match error {
                    TxError::State(error) => Err(error),
                    error => Ok(failed(error)),
                };
            }
            let organisation = Organisation {
                id: id.clone(),
                name: name.clone(),
                root_key: *root_key,
                gs1_prefixes: Vec::new(),
            };
            state.put(crate::key_org(id), encode_value(&organisation));
            state.put(crate::key_org_by_root(root_key), encode_value(id));
            let mut organisations = organisations(state)?;
            let position = organisations
                .binary_search(id)
                .unwrap_or_else(|position| position);
            organisations.insert(position, id.clone());
            state.put(KEY_ORGANISATIONS.to_vec(), encode_value(&organisations));
            Ok(Ok(()))
        }
        Action::Core(CoreAction::SetParameter { name, value }) => {
            state.put(key_parameter(name), encode_value(value));
            Ok(Ok(()))
        }
        Action::Contracts(action) => {
            let mut view = contracts_view(state);
            let result = Contracts::apply_action(action, id, tx, &mut view);
            let kept = view.take_kept();
            let requests = view.take_requests();
            // What the action asked of other modules (a migration's token transfers), through
            // their own checks; a refusal fails the action like its own.
            let result = result.map_err(TxError::from).and_then(|()| {
                crate::registry::apply_requests(
                    <Contracts as medledger_module::Module>::NAME,
                    requests,
                    tx,
                    state,
                )
            });
            match result {
                Ok(()) => Ok(Ok(())),
                Err(error) => {
                    if let TxError::State(error) = error {
                        return Err(error);
                    }
                    state.restore(savepoint);
                    for (key, value) in kept {
                        state.put(key, value);
                    }
                    Ok(failed(error))
                }
            }
        }
    }
}

/// A proposal of either layout, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AnyProposal {
    Validators(ValidatorProposal),
    Other(Proposal),
}

/// The proposal `id`, whichever its kind.
pub fn any_proposal(state: &dyn StateRead, id: &Hash) -> Result<Option<AnyProposal>, StateError> {
    if let Some(proposal) = proposal(state, id)? {
        return Ok(Some(AnyProposal::Validators(proposal)));
    }
    Ok(motion(state, id)?.map(AnyProposal::Other))
}

/// Applies a governance operation: organisations' root keys only.
pub(crate) fn apply_op(
    op: &GovernanceOp,
    tx: &TxContext<'_>,
    state: &mut Overlay<'_>,
) -> Result<(), TxError> {
    let medledger_module::Authority::Organisation { org } = tx.authority else {
        return Err(TxError::NotAnOrganisation(
            "propose or approve governance actions",
        ));
    };
    match op {
        GovernanceOp::Propose { action, expires_at } => {
            propose_action(state, tx, org, action, *expires_at)
        }
        GovernanceOp::ApproveProposal { proposal } => approve_any(state, tx, *proposal, org),
    }
}
