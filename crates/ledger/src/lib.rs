//! Applies transactions and blocks to state: the deterministic state machine every node runs.
//!
//! The ledger owns authentication (chain id, sender, nonce), identity (organisations, members,
//! roles, revocation), anchors and validator-set governance, and dispatches every other payload to
//! the module that owns it ([`registry`], one list). A module sees `(op, &TxContext, &mut View)`
//! and nothing of consensus, storage or the network (`medledger_module`).
//!
//! **Invariant:** execution reads no clock and no randomness and iterates no hash map; time comes
//! from [`BlockContext::time_ms`]. The same blocks give the same writes on every node.
//! **Invariant:** a transaction that fails authentication (chain id, sender, nonce) makes its
//! block invalid; a transaction whose payload is refused is kept, uses its nonce, and leaves no
//! other trace.

mod core;
pub mod governance;
pub mod light;
pub mod registry;
pub mod schema;
pub mod testkit;

use medledger_crypto::{Hash, PublicKey};
use medledger_state::{Overlay, StateError, StateRead, encode_value};
use medledger_types::{Genesis, Height, Outcome, Receipt, TypesError, ValidatorSet, merkle_root};

pub use crate::core::CoreOp;
pub use medledger_module::{
    Authority, BlockContext, ChainHead, ChainInfo, KEY_CHAIN_HEAD, KEY_CHAIN_INFO, KEY_VALIDATORS,
    MemberRecord, Standing, TxContext, chain_head, chain_info, key_anchor, key_member, key_nonce,
    key_org, key_org_by_root, member, next_nonce, validators,
};
pub use registry::{ModuleFailure, Payload};
pub use schema::*;

/// A signed transaction of this ledger.
pub type Tx = medledger_types::Tx<Payload>;
/// The signed part of a transaction of this ledger.
pub type TxBody = medledger_types::TxBody<Payload>;
/// A block of this ledger.
pub type Block = medledger_types::Block<Payload>;

/// How far ahead of the next expected nonce a transaction may be and still wait in a mempool.
pub const NONCE_WINDOW: u64 = 4_096;

/// Why a transaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    #[error("transaction is for chain {got:?}, this chain is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("signature does not verify for sender {0}")]
    BadSignature(PublicKey),
    #[error("sender {0} is not enrolled in any organisation")]
    UnknownSender(PublicKey),
    #[error("sender {key} was revoked at height {height}")]
    RevokedSender { key: PublicKey, height: Height },
    #[error("nonce {got} is already used; the next nonce of {sender} is {expected}")]
    NonceUsed {
        sender: PublicKey,
        expected: u64,
        got: u64,
    },
    #[error("nonce {got} is out of order; the next nonce of {sender} is {expected}")]
    NonceGap {
        sender: PublicKey,
        expected: u64,
        got: u64,
    },
    #[error("only an organisation's root key may {0}")]
    NotAnOrganisation(&'static str),
    #[error("key {0} is not a valid Ed25519 public key")]
    InvalidKey(PublicKey),
    #[error("key {0} is an organisation's root key and cannot be enrolled as a member")]
    KeyIsOrganisation(PublicKey),
    #[error("key {0} is already enrolled")]
    AlreadyEnrolled(PublicKey),
    #[error("key {0} was revoked and cannot be enrolled again")]
    KeyRevoked(PublicKey),
    #[error("key {0} is not a member of any organisation")]
    NotAMember(PublicKey),
    #[error("member {member} belongs to {org}, not to the sender's organisation")]
    NotYourMember { member: PublicKey, org: String },
    #[error("member {0} is already revoked")]
    AlreadyRevoked(PublicKey),
    #[error("anchor {0} already exists; anchors are written once")]
    AnchorExists(Hash),
    #[error("key {0} is already a validator")]
    AlreadyValidator(PublicKey),
    #[error("key {0} is not a validator")]
    NotAValidator(PublicKey),
    #[error("organisation {0} does not exist")]
    UnknownOrganisation(String),
    #[error("the change would leave an invalid validator set: {0}")]
    InvalidValidatorSet(String),
    #[error(
        "effective height {effective_height} must be after the current height {height} and at most {horizon} ahead"
    )]
    EffectiveHeight {
        height: Height,
        effective_height: Height,
        horizon: Height,
    },
    #[error("no validator-set proposal {0}")]
    UnknownProposal(Hash),
    #[error("validator-set proposal {0} is no longer open for approval")]
    ProposalClosed(Hash),
    #[error("organisation {org} has already approved proposal {proposal}")]
    AlreadyApproved { proposal: Hash, org: String },
    #[error(
        "proposal {proposal} expired: its effective height {effective_height} has been reached"
    )]
    ProposalExpired {
        proposal: Hash,
        effective_height: Height,
    },
    #[error("height {0} already has the most validator changes scheduled")]
    TooManyChanges(Height),
    #[error("invalid organisation: {0}")]
    InvalidOrganisation(String),
    #[error("organisation {0} already exists")]
    OrganisationExists(String),
    #[error("key {0} is already an organisation's root key or a member")]
    KeyInUse(PublicKey),
    #[error("no chain parameter {0}")]
    UnknownParameter(String),
    #[error("parameter {name} must be from {min} to {max}, not {value}")]
    ParameterRange {
        name: String,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("the chain already holds {0} proposals")]
    TooManyProposals(u64),
    /// A module refused the operation.
    #[error(transparent)]
    Module(ModuleFailure),
    #[error(transparent)]
    State(#[from] StateError),
}

impl TxError {
    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::WrongChain { .. } => "wrong_chain",
            TxError::BadSignature(_) => "bad_signature",
            TxError::UnknownSender(_) => "unknown_sender",
            TxError::RevokedSender { .. } => "revoked_sender",
            TxError::NonceUsed { .. } => "nonce_used",
            TxError::NonceGap { .. } => "nonce_gap",
            TxError::NotAnOrganisation(_) => "not_an_organisation",
            TxError::InvalidKey(_) => "invalid_key",
            TxError::KeyIsOrganisation(_) => "key_is_organisation",
            TxError::AlreadyEnrolled(_) => "already_enrolled",
            TxError::KeyRevoked(_) => "key_revoked",
            TxError::NotAMember(_) => "not_a_member",
            TxError::NotYourMember { .. } => "not_your_member",
            TxError::AlreadyRevoked(_) => "already_revoked",
            TxError::AnchorExists(_) => "anchor_exists",
            TxError::AlreadyValidator(_) => "already_validator",
            TxError::NotAValidator(_) => "not_a_validator",
            TxError::UnknownOrganisation(_) => "unknown_organisation",
            TxError::InvalidValidatorSet(_) => "invalid_validator_set",
            TxError::EffectiveHeight { .. } => "bad_effective_height",
            TxError::UnknownProposal(_) => "unknown_proposal",
            TxError::ProposalClosed(_) => "proposal_closed",
            TxError::AlreadyApproved { .. } => "already_approved",
            TxError::ProposalExpired { .. } => "proposal_expired",
            TxError::TooManyChanges(_) => "too_many_changes",
            TxError::InvalidOrganisation(_) => "invalid_organisation",
            TxError::OrganisationExists(_) => "organisation_exists",
            TxError::KeyInUse(_) => "key_in_use",
            TxError::UnknownParameter(_) => "unknown_parameter",
            TxError::ParameterRange { .. } => "parameter_range",
            TxError::TooManyProposals(_) => "too_many_proposals",
            TxError::Module(failure) => failure.code(),
            TxError::State(_) => "state_error",
        }
    }
}

/// Why a block cannot be executed.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("transaction {index} ({id}) is invalid: {error}")]
    InvalidTx {
        index: usize,
        id: Hash,
        error: TxError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Types(#[from] TypesError),
}

/// Writes the genesis state. The caller commits it as version 0.
pub fn apply_genesis(genesis: &Genesis, state: &mut Overlay<'_>) -> Result<(), BlockError> {
    let validators = check_genesis(genesis)?;
    for organisation in &genesis.organisations {
        state.put(key_org(&organisation.id), encode_value(organisation));
        state.put(
            key_org_by_root(&organisation.root_key),
            encode_value(&organisation.id),
        );
    }
    state.put(KEY_VALIDATORS.to_vec(), encode_value(&validators));
    let mut organisations: Vec<String> = genesis
        .organisations
        .iter()
        .map(|organisation| organisation.id.clone())
        .collect();
    organisations.sort();
    state.put(
        governance::KEY_ORGANISATIONS.to_vec(),
        encode_value(&organisations),
    );
    let info = ChainInfo {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
    };
    state.put(KEY_CHAIN_INFO.to_vec(), encode_value(&info));
    state.put(
        KEY_CHAIN_HEAD.to_vec(),
        encode_value(&ChainHead {
            height: 0,
            time_ms: genesis.genesis_time_ms,
        }),
    );
    registry::modules_genesis(genesis, state);
    state.commit_tx();
    Ok(())
}

/// Checks a genesis document, the ledger's part and every module's, and returns the validator
/// set.
pub fn check_genesis(genesis: &Genesis) -> Result<ValidatorSet, TypesError> {
    let validators = genesis.validate()?;
    registry::check_modules_genesis(genesis).map_err(|reason| TypesError::Malformed {
        what: "genesis",
        reason,
    })?;
    Ok(validators)
}

/// Who `key` may act as, or why it may not act at all.
pub fn authority(state: &dyn StateRead, key: &PublicKey) -> Result<Authority, TxError> {
    match medledger_module::standing(state, key)? {
        Standing::Acts(authority) => Ok(authority),
        Standing::Revoked { height } => Err(TxError::RevokedSender { key: *key, height }),
        Standing::Unknown => Err(TxError::UnknownSender(*key)),
    }
}

/// Checks everything about a transaction except its signature, against the state it would run
/// on: chain id, an enrolled and unrevoked sender, and exactly the next nonce.
pub fn authorise(state: &dyn StateRead, chain_id: &str, tx: &Tx) -> Result<Authority, TxError> {
    if tx.body.chain_id != chain_id {
        return Err(TxError::WrongChain {
            expected: chain_id.into(),
            got: tx.body.chain_id.clone(),
        });
    }
    let authority = authority(state, &tx.body.sender)?;
    let expected = next_nonce(state, &tx.body.sender)?;
    let sender = tx.body.sender;
    match tx.body.nonce {
        got if got < expected => Err(TxError::NonceUsed {
            sender,
            expected,
            got,
        }),
        got if got > expected => Err(TxError::NonceGap {
            sender,
            expected,
            got,
        }),
        _ => Ok(authority),
    }
}

/// Applies one authorised transaction: uses its nonce, then runs its payload, keeping the payload's
/// writes only if it succeeds.
fn apply_tx(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
    index: u32,
    tx_id: Hash,
    tx: &Tx,
    authority: &Authority,
) -> Outcome {
    state.put(key_nonce(&tx.body.sender), encode_value(&tx.body.nonce));
    state.commit_tx();
    let tx_ctx = TxContext {
        block: ctx,
        index,
        id: tx_id,
        sender: tx.body.sender,
        authority,
    };
    let mut kept = Vec::new();
    match registry::apply_payload(&tx.body.payload, &tx_ctx, state, &mut kept) {
        Ok(()) => {
            state.commit_tx();
            Outcome::Committed
        }
        Err(error) => {
            state.discard_tx();
            // What the refused operation cost stands (a module's `View::put_kept`).
            for (key, value) in kept {
                state.put(key, value);
            }
            state.commit_tx();
            Outcome::Rejected {
                code: error.code().to_string(),
                reason: error.to_string(),
            }
        }
    }
}

/// What executing a block produced.
#[derive(Debug)]
pub struct Execution {
    pub receipts: Vec<Receipt>,
    pub txs_root: Hash,
    pub receipts_root: Hash,
}

/// Executes one transaction as the `index`-th of a block. `Err` means the transaction fails
/// authentication and must not be in the block; the state is then untouched.
pub fn execute_tx(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
    index: u32,
    tx_id: Hash,
    tx: &Tx,
) -> Result<Receipt, TxError> {
    let authority = authorise(state, &ctx.chain_id, tx)?;
    let outcome = apply_tx(state, ctx, index, tx_id, tx, &authority);
    Ok(Receipt {
        tx_id,
        height: ctx.height,
        index,
        outcome,
    })
}

/// Closes a block: records its height and time in the state and computes its roots.
pub fn finish_block(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
    txs: &[Tx],
    receipts: Vec<Receipt>,
) -> Result<Execution, StateError> {
    governance::apply_scheduled(state, ctx)?;
    registry::modules_end_block(ctx, state)?;
    state.put(
        KEY_CHAIN_HEAD.to_vec(),
        encode_value(&ChainHead {
            height: ctx.height,
            time_ms: ctx.time_ms,
        }),
    );
    state.commit_tx();
    let leaves: Vec<Hash> = txs.iter().map(Tx::leaf_hash).collect();
    let receipt_leaves: Vec<Hash> = receipts.iter().map(Receipt::leaf_hash).collect();
    Ok(Execution {
        txs_root: merkle_root(&leaves),
        receipts_root: merkle_root(&receipt_leaves),
        receipts,
    })
}

/// Executes a whole block, as a validator or an auditor replaying the chain does. Signatures
/// must already have been checked (in a batch, by the caller); any other authentication failure
/// makes the whole block invalid.
pub fn execute_block(
    state: &mut Overlay<'_>,
    ctx: &BlockContext,
    txs: &[Tx],
) -> Result<Execution, BlockError> {
    let mut receipts = Vec::with_capacity(txs.len());
    for (index, tx) in txs.iter().enumerate() {
        let id = tx.id();
        let receipt = execute_tx(state, ctx, index as u32, id, tx)
            .map_err(|error| BlockError::InvalidTx { index, id, error })?;
        receipts.push(receipt);
    }
    Ok(finish_block(state, ctx, txs, receipts)?)
}

/// What a block must link to: its parent (genesis for height 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentLink {
    pub height: Height,
    pub hash: Hash,
    pub time_ms: u64,
    /// The hash of the parent's certificate; `Hash::ZERO` for genesis, which has none.
    pub certificate_hash: Hash,
}

/// Checks a header's links to its parent: height, chain, previous hash, previous certificate,
/// forward time, and the validator set in force. The same rules for a proposal, a synced block
/// and a replay from disk.
pub fn check_header(
    header: &medledger_types::Header,
    chain_id: &str,
    parent: &ParentLink,
    validators: &ValidatorSet,
) -> Result<(), String> {
    if header.height != parent.height + 1 || header.chain_id != chain_id {
        return Err("header names another height or chain".into());
    }
    if header.prev_hash != parent.hash {
        return Err(format!(
            "previous hash is {}, the previous block's hash is {}",
            header.prev_hash, parent.hash
        ));
    }
    if header.last_commit_hash != parent.certificate_hash {
        return Err("previous certificate hash does not match".into());
    }
    if header.time_ms <= parent.time_ms {
        return Err("time does not move forward".into());
    }
    if header.validators_hash != validators.hash() {
        return Err("header names another validator set".into());
    }
    Ok(())
}

/// Checks an execution's roots against the header that claims them.
pub fn check_execution(
    header: &medledger_types::Header,
    execution: &Execution,
) -> Result<(), String> {
    if execution.txs_root != header.txs_root {
        return Err("transactions do not match the header's transactions root".into());
    }
    if execution.receipts_root != header.receipts_root {
        return Err("replayed receipts do not match the header's receipts root".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod codec_tests;
