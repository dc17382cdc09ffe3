//! The seam between the ledger and its modules.
//!
//! A module is a deterministic state machine over the ledger: it declares the state-key prefixes
//! it owns, its operation type (the `Payload` variants it takes), its error type, what it writes
//! at genesis, how it applies one operation, and an optional end-of-block hook. The ledger
//! assembles `Payload` and dispatch from one list of modules (`medledger_ledger::registry`).
//!
//! A module sees `(op, &TxContext, &mut View)`: the block, the transaction's id, sender and
//! authority, and a view of the state that writes only under the module's own prefixes and reads
//! only its own prefixes and the ledger's identity (`CORE_PREFIXES`). Nothing of consensus,
//! storage or the network reaches it.
//!
//! **Invariant:** a module writes only under its own prefixes and reads no other module's state;
//! the view enforces it (a write elsewhere is a bug and panics; a read elsewhere is refused).
//! **Invariant:** prefixes of all modules and of the ledger are pairwise prefix-free, checked once
//! by `medledger_ledger::registry::check_prefixes` (a test and node start-up).

mod identity;
mod view;

pub use identity::*;
pub use view::*;

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_state::StateError;
use medledger_types::{Genesis, Height};

/// The context a block gives its transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockContext {
    pub chain_id: String,
    pub height: Height,
    pub time_ms: u64,
    pub proposer: PublicKey,
}

/// The transaction a module operation runs in: already authenticated, its nonce used.
#[derive(Clone, Copy, Debug)]
pub struct TxContext<'a> {
    pub block: &'a BlockContext,
    /// The transaction's position in its block.
    pub index: u32,
    /// The transaction's id (a hash of its signed body).
    pub id: Hash,
    pub sender: PublicKey,
    /// Who the sender acts as, at this transaction.
    pub authority: &'a Authority,
}

/// A module's refusal of an operation: a stable code for receipts and the API, and a message.
///
/// **Invariant:** a refusal's `code()` and `Display` text are part of the chain: they go into the
/// receipt, which the block's receipts root commits to. Never change either for an existing
/// refusal, or a stored chain no longer verifies.
pub trait ModuleError: std::error::Error + From<StateError> + Send + Sync + 'static {
    fn code(&self) -> &'static str;
}

/// A module of the state machine. See the crate documentation.
pub trait Module {
    /// A short, unique name (`records`, `supply`), used in logs and errors.
    const NAME: &'static str;
    /// The state-key prefixes the module owns, each ending in `/`.
    const PREFIXES: &'static [&'static str];
    /// Prefixes of other modules that this module reads (never writes), through those modules'
    /// public query functions. The registry checks each is another module's.
    const READS: &'static [&'static str] = &[];
    /// The `kind` of each operation, in the order of `Op`'s variants. Its length is the number of
    /// payload tags the module takes in the registry.
    const KINDS: &'static [&'static str];
    /// The operations: a borsh enum whose variants, in order, are the module's payload tags.
    type Op: BorshSerialize
        + BorshDeserialize
        + borsh::de::EnumExt
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + PartialEq
        + Eq;
    type Error: ModuleError;

    /// The operation's name, one of `KINDS`.
    fn kind(op: &Self::Op) -> &'static str;

    /// Checks the module's part of a genesis document.
    fn check_genesis(_genesis: &Genesis) -> Result<(), String> {
        Ok(())
    }

    /// Writes the module's genesis state. `genesis` has passed `check_genesis`.
    fn genesis(_genesis: &Genesis, _state: &mut View<'_, '_>) {}

    /// Applies one operation. On `Err` the ledger discards every write of the transaction.
    fn apply(
        op: &Self::Op,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), Self::Error>;

    /// Runs once as every block closes, after its transactions and before the ledger records the
    /// block's height.
    fn end_block(_block: &BlockContext, _state: &mut View<'_, '_>) -> Result<(), StateError> {
        Ok(())
    }

    /// Decodes a state entry under one of the module's prefixes for display (the API's
    /// `/v1/state/{key}`), or `None` if the key is not the module's.
    fn describe(_key: &str, _value: &[u8]) -> Option<serde_json::Value> {
        None
    }
}

/// A module that other modules may ask to act, inside the asking transaction (`View::request`).
///
/// The registry lists which module may ask which (`effects!`); the target checks an effect as it
/// would the same operation from the account owner, with its own view, and a refusal refuses the
/// asking transaction whole. The authority comes from the route, not from a signature: the
/// asking module is responsible for only asking what its own state entitles it to.
pub trait EffectTarget: Module {
    type Effect: std::any::Any + Send + std::fmt::Debug;

    /// Applies one effect that module `from` asked for in transaction `tx`.
    fn apply_effect(
        effect: &Self::Effect,
        tx: &TxContext<'_>,
        from: &'static str,
        state: &mut View<'_, '_>,
    ) -> Result<(), Self::Error>;
}

/// A module part of whose state the consortium governs: a governance proposal names one of its
/// `Action`s, which the ledger applies through this module's code and view once two thirds of the
/// organisations approve (`medledger_ledger::governance`).
pub trait Governed: Module {
    type Action: BorshSerialize
        + BorshDeserialize
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + PartialEq
        + Eq;

    /// The action's name, for display.
    fn action_kind(action: &Self::Action) -> &'static str;

    /// Checks an action when it is proposed; a refusal refuses the proposing transaction.
    fn check_action(action: &Self::Action, state: &View<'_, '_>) -> Result<(), Self::Error>;

    /// Applies an approved action, proposal `proposal`, in the approving transaction `tx`. On
    /// `Err` the ledger drops what it wrote and marks the proposal failed with the reason; the
    /// approving transaction stands.
    fn apply_action(
        action: &Self::Action,
        proposal: Hash,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), Self::Error>;
}

/// Reads and decodes one state entry.
pub fn read<T: BorshDeserialize>(
    state: &dyn medledger_state::StateRead,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    state
        .get(key)?
        .map(|bytes| medledger_state::decode_value(key, &bytes))
        .transpose()
}
