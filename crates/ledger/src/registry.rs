//! The one list of modules. `Payload`, the refusals of module operations, dispatch, genesis,
//! end-of-block hooks and state-entry decoding are all assembled from it.
//!
//! **Invariant:** a payload's borsh tag never changes. The ledger's own operations take tags
//! `0..CoreOp::KINDS.len()`; each module takes `KINDS.len()` tags from the base named in the list,
//! its operations in variant order. A stored chain's transactions therefore decode, hash and
//! verify the same whatever modules are added after them. A new module takes the next free
//! base; the ranges are checked to be disjoint (`check_tags`).

use std::any::Any;
use std::io::{self, Read, Write};

use borsh::de::EnumExt;
use borsh::{BorshDeserialize, BorshSerialize};
use medledger_module::{BlockContext, EffectTarget, Module, ModuleError, TxContext, View};
use medledger_state::{Overlay, StateError};
use medledger_types::Genesis;
use serde::{Deserialize, Serialize};

use crate::TxError;
use crate::core::CoreOp;
use crate::governance::{GOVERNANCE_BASE, GovernanceOp};

/// One registered module, as the rest of the ledger sees it.
#[derive(Clone, Copy, Debug)]
pub struct ModuleInfo {
    pub name: &'static str,
    pub prefixes: &'static [&'static str],
    /// Other modules' prefixes it reads (`Module::READS`).
    pub reads: &'static [&'static str],
    pub kinds: &'static [&'static str],
    /// The payload tag of the module's first operation.
    pub base: u8,
}

/// Writes a module operation's borsh encoding with its variant tag moved up by `base`, so the
/// module's enum needs no knowledge of where it sits in `Payload`. A variant at or past `kinds`
/// (an operation added without its `KINDS` entry) would take the next module's tag: it is
/// refused, which `encode` turns into a crash the first time a test encodes it.
struct Shifted<'w, W: Write> {
    inner: &'w mut W,
    base: u8,
    kinds: usize,
    first: bool,
}

impl<W: Write> Write for Shifted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.first && !buf.is_empty() {
            self.first = false;
            if usize::from(buf[0]) >= self.kinds {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("operation {} of a module with {} KINDS", buf[0], self.kinds),
                ));
            }
            let tag = buf[0].checked_add(self.base).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "payload tag overflows a byte")
            })?;
            self.inner.write_all(&[tag])?;
            self.inner.write_all(&buf[1..])?;
            return Ok(buf.len());
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The view module `M` gets: its own prefixes, and the reads it declares.
fn view_of<'o, 'b, M: Module>(state: &'o mut Overlay<'b>) -> View<'o, 'b> {
    View::new(state, M::NAME, M::PREFIXES, M::READS)
}

fn shifted<W: Write>(inner: &mut W, base: u8, kinds: usize) -> Shifted<'_, W> {
    Shifted {
        inner,
        base,
        kinds,
        first: true,
    }
}

macro_rules! modules {
    (
        $($variant:ident($module:ty, $op:ty, $error:ty) @ $base:literal),* $(,)?
        ; effects { $($from:ty => $to:ty),* $(,)? }
    ) => {
        /// What a transaction asks the ledger to do: one of the ledger's own operations, or one
        /// module's. Its JSON form is the operation's (`{"type": "<kind>", ...}`).
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(untagged)]
        pub enum Payload {
            Core(CoreOp),
            Governance(GovernanceOp),
            $($variant(<$module as Module>::Op),)*
        }

        /// A module's refusal of an operation.
        #[derive(Debug, thiserror::Error)]
        pub enum ModuleFailure {
            $(#[error(transparent)] $variant(Box<<$module as Module>::Error>),)*
        }

        impl ModuleFailure {
            pub fn code(&self) -> &'static str {
                match self {
                    $(ModuleFailure::$variant(error) => error.code(),)*
                }
            }
        }

        $(
            // The list names the module's operation and error types (a trait's associated types
            // cannot carry these impls); `Module<Op = .., Error = ..>` checks they are the module's.
            impl From<$op> for Payload {
                fn from(op: $op) -> Payload {
                    fn same<M: Module<Op = $op, Error = $error>>() {}
                    let _ = same::<$module>;
                    Payload::$variant(op)
                }
            }
            impl From<$error> for TxError {
                fn from(error: $error) -> TxError {
                    TxError::Module(ModuleFailure::$variant(Box::new(error)))
                }
            }
        )*

        /// Every registered module, in tag order.
        pub const MODULES: &[ModuleInfo] = &[
            $(ModuleInfo {
                name: <$module as Module>::NAME,
                prefixes: <$module as Module>::PREFIXES,
                reads: <$module as Module>::READS,
                kinds: <$module as Module>::KINDS,
                base: $base,
            },)*
        ];

        impl Payload {
            /// The operation's name, as receipts and logs show it.
            pub fn kind(&self) -> &'static str {
                match self {
                    Payload::Core(op) => op.kind(),
                    Payload::Governance(op) => op.kind(),
                    $(Payload::$variant(op) => <$module as Module>::kind(op),)*
                }
            }
        }

        impl BorshSerialize for Payload {
            fn serialize<W: Write>(&self, writer: &mut W) -> io::Result<()> {
                match self {
                    Payload::Core(op) => BorshSerialize::serialize(op, writer),
                    Payload::Governance(op) => BorshSerialize::serialize(
                        op,
                        &mut shifted(writer, GOVERNANCE_BASE, GovernanceOp::KINDS.len()),
                    ),
                    $(Payload::$variant(op) => BorshSerialize::serialize(
                        op,
                        &mut shifted(writer, $base, <$module as Module>::KINDS.len()),
                    ),)*
                }
            }
        }

        impl BorshDeserialize for Payload {
            fn deserialize_reader<R: Read>(reader: &mut R) -> io::Result<Payload> {
                let tag = u8::deserialize_reader(reader)?;
                if usize::from(tag) < CoreOp::KINDS.len() {
                    return Ok(Payload::Core(CoreOp::deserialize_variant(reader, tag)?));
                }
                if tag >= GOVERNANCE_BASE && usize::from(tag - GOVERNANCE_BASE) < GovernanceOp::KINDS.len() {
                    return Ok(Payload::Governance(GovernanceOp::deserialize_variant(
                        reader,
                        tag - GOVERNANCE_BASE,
                    )?));
                }
                $(
                    if tag >= $base && usize::from(tag - $base) < <$module as Module>::KINDS.len() {
                        return Ok(Payload::$variant(
                            <<$module as Module>::Op as EnumExt>::deserialize_variant(reader, tag - $base)?,
                        ));
                    }
                )*
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown payload tag {tag}"),
                ))
            }
        }

        /// Applies a payload: the ledger's own operation, or a module's through a view limited
        /// to the module's prefixes.
        pub(crate) fn apply_payload(
            payload: &Payload,
            tx: &TxContext<'_>,
            state: &mut Overlay<'_>,
            kept: &mut Vec<(Vec<u8>, Vec<u8>)>,
        ) -> Result<(), TxError> {
            match payload {
                Payload::Core(op) => crate::core::apply(op, tx, state),
                Payload::Governance(op) => crate::governance::apply_op(op, tx, state),
                $(Payload::$variant(op) => {
                    let mut view = view_of::<$module>(state);
                    let applied = <$module as Module>::apply(op, tx, &mut view);
                    kept.extend(view.take_kept());
                    applied?;
                    let requests = view.take_requests();
                    apply_requests(<$module as Module>::NAME, requests, tx, state)
                })*
            }
        }

        /// Every declared effect route: (asking module, target module).
        pub const EFFECT_ROUTES: &[(&str, &str)] = &[
            $((<$from as Module>::NAME, <$to as Module>::NAME),)*
        ];

        /// Applies what module `from` asked of others, in order, each through its target's code
        /// and view. A request on no declared route is a bug in the asking module.
        pub(crate) fn apply_requests(
            from: &'static str,
            requests: Vec<Box<dyn Any + Send>>,
            tx: &TxContext<'_>,
            state: &mut Overlay<'_>,
        ) -> Result<(), TxError> {
            for request in requests {
                let mut applied = false;
                $(
                    if !applied && from == <$from as Module>::NAME {
                        if let Some(effect) = request.downcast_ref::<<$to as EffectTarget>::Effect>() {
                            let mut view = view_of::<$to>(state);
                            <$to as EffectTarget>::apply_effect(effect, tx, from, &mut view)?;
                            assert!(
                                view.take_requests().is_empty(),
                                "an effect's target asked for effects in turn"
                            );
                            applied = true;
                        }
                    }
                )*
                assert!(applied, "module {from} asked for an effect on no declared route");
            }
            Ok(())
        }

        /// Checks every module's part of a genesis document.
        pub fn check_modules_genesis(genesis: &Genesis) -> Result<(), String> {
            $(<$module as Module>::check_genesis(genesis)?;)*
            Ok(())
        }

        /// Writes every module's genesis state.
        pub(crate) fn modules_genesis(genesis: &Genesis, state: &mut Overlay<'_>) {
            $({
                let mut view = view_of::<$module>(state);
                <$module as Module>::genesis(genesis, &mut view);
            })*
        }

        /// Runs every module's end-of-block hook, in list order.
        pub(crate) fn modules_end_block(ctx: &BlockContext, state: &mut Overlay<'_>) -> Result<(), StateError> {
            $({
                let mut view = view_of::<$module>(state);
                <$module as Module>::end_block(ctx, &mut view)?;
            })*
            Ok(())
        }

        /// Describes a state entry under a module's prefix, for display.
        pub fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
            $(
                if <$module as Module>::PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
                    return <$module as Module>::describe(key, value);
                }
            )*
            None
        }
    };
}

use medledger_claims::{Claims, ClaimsError, ClaimsOp};
use medledger_contracts::{Contracts, ContractsError, ContractsOp};
use medledger_credentials::{Credentials, CredentialsError, CredentialsOp};
use medledger_monitor::{Monitor, MonitorError, MonitorOp};
use medledger_records::{Records, RecordsError, RecordsOp};
use medledger_research::{Research, ResearchError, ResearchOp};
use medledger_supply::{Supply, SupplyError, SupplyPayload};
use medledger_tokens::{Tokens, TokensError, TokensOp};
use medledger_trials::{Trials, TrialsError, TrialsOp};

// The module list. Adding a module is one line here: its `Payload` variant, its module, operation
// and error types, and its base: the first free multiple of 16 from `trials` on, so a module can
// later gain operations within its block of 16 tags without moving another's (the first three
// modules' tags are packed, as they shipped).
modules! {
    Records(Records, RecordsOp, RecordsError) @ 5,
    Supply(Supply, SupplyPayload, SupplyError) @ 12,
    Credentials(Credentials, CredentialsOp, CredentialsError) @ 14,
    Trials(Trials, TrialsOp, TrialsError) @ 16,
    Research(Research, ResearchOp, ResearchError) @ 32,
    Tokens(Tokens, TokensOp, TokensError) @ 48,
    Claims(Claims, ClaimsOp, ClaimsError) @ 64,
    Monitor(Monitor, MonitorOp, MonitorError) @ 80,
    // 96 is the ledger's own governance block (`governance::GOVERNANCE_BASE`).
    Contracts(Contracts, ContractsOp, ContractsError) @ 112;
    // Who may ask whom to act, inside the asking transaction (`medledger_module::EffectTarget`).
    effects {
        // An adjudicated claim settles through the token ledger: payments and escrow.
        Claims => Tokens,
        // A research release pays the released patients by the research-sharing reward rules.
        Research => Tokens,
        // A contract pays out of its own account.
        Contracts => Tokens,
    }
}

/// The owner of every registered prefix: the ledger's own (`medledger_module::CORE_PREFIXES`)
/// and each module's.
pub fn prefix_owners() -> Vec<(&'static str, &'static str)> {
    let mut owners: Vec<(&str, &str)> = medledger_module::CORE_PREFIXES
        .iter()
        .map(|prefix| ("ledger", *prefix))
        .collect();
    for module in MODULES {
        owners.extend(module.prefixes.iter().map(|prefix| (module.name, *prefix)));
    }
    owners
}

/// Checks that every prefix ends in `/` and that no registered prefix begins another, so every
/// state key has exactly one owner; and that every module's declared reads are another module's
/// prefixes.
pub fn check_prefixes() -> Result<(), String> {
    let owners = prefix_owners();
    prefixes_disjoint(&owners)?;
    reads_declared(&owners, MODULES)?;
    consults_declared(MODULES, medledger_contracts::CONSULT_READS)
}

/// A module that consults contracts (it reads their code, `contract-code/`) runs them under its own
/// view, so it must declare every read a contract's code, state and chain queries make. (Reading
/// `contract/` alone, as the token module does to know a contract's account, is no consulting.)
fn consults_declared(modules: &[ModuleInfo], consult_reads: &[&str]) -> Result<(), String> {
    for module in modules {
        if module.name == "contracts" || !module.reads.contains(&"contract-code/") {
            continue;
        }
        if let Some(missing) = consult_reads
            .iter()
            .find(|read| !module.reads.contains(read))
        {
            return Err(format!(
                "{} consults contracts but does not declare the read of {missing:?} they make",
                module.name
            ));
        }
    }
    Ok(())
}

fn reads_declared(owners: &[(&str, &str)], modules: &[ModuleInfo]) -> Result<(), String> {
    for module in modules {
        for read in module.reads {
            match owners.iter().find(|(_, prefix)| prefix == read) {
                Some((owner, _)) if *owner != module.name && *owner != "ledger" => {}
                Some((owner, _)) => {
                    return Err(format!(
                        "{} declares a read of {read:?}, which is {owner}'s own",
                        module.name
                    ));
                }
                None => {
                    return Err(format!(
                        "{} declares a read of {read:?}, which no module owns",
                        module.name
                    ));
                }
            }
        }
    }
    Ok(())
}

fn prefixes_disjoint(owners: &[(&str, &str)]) -> Result<(), String> {
    for (owner, prefix) in owners {
        if !prefix.ends_with('/') || prefix.len() < 2 {
            return Err(format!(
                "{owner}'s prefix {prefix:?} must be a name ending in '/'"
            ));
        }
    }
    for (i, (owner, prefix)) in owners.iter().enumerate() {
        for (other_owner, other) in &owners[i + 1..] {
            if prefix.starts_with(other) || other.starts_with(prefix) {
                return Err(format!(
                    "prefix {prefix:?} of {owner} overlaps {other:?} of {other_owner}"
                ));
            }
        }
    }
    Ok(())
}

/// Checks that the payload tag ranges of the ledger and the modules are disjoint.
pub fn check_tags() -> Result<(), String> {
    tags_disjoint(CoreOp::KINDS.len(), MODULES)
}

fn tags_disjoint(core: usize, modules: &[ModuleInfo]) -> Result<(), String> {
    let governance = usize::from(GOVERNANCE_BASE);
    let mut ranges: Vec<(usize, usize, &str)> = vec![
        (0, core, "ledger"),
        (
            governance,
            governance + GovernanceOp::KINDS.len(),
            "governance",
        ),
    ];
    for module in modules {
        let start = usize::from(module.base);
        ranges.push((start, start + module.kinds.len(), module.name));
    }
    ranges.sort();
    for pair in ranges.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(format!(
                "payload tags of {} ({}..{}) overlap those of {} ({}..{})",
                pair[1].2, pair[1].0, pair[1].1, pair[0].2, pair[0].0, pair[0].1
            ));
        }
    }
    match ranges.last() {
        Some((_, end, name)) if *end > 256 => Err(format!("payload tags of {name} pass 255")),
        _ => Ok(()),
    }
}

impl From<CoreOp> for Payload {
    fn from(op: CoreOp) -> Payload {
        Payload::Core(op)
    }
}

impl From<GovernanceOp> for Payload {
    fn from(op: GovernanceOp) -> Payload {
        Payload::Governance(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_prefixes_are_refused() {
        assert!(prefixes_disjoint(&[("a", "claim/"), ("b", "claims/")]).is_ok());
        for (owners, why) in [
            (&[("a", "claim/"), ("b", "claim/")][..], "overlaps"),
            (&[("a", "claim/"), ("b", "claim/x/")][..], "overlaps"),
            (&[("a", "claim")][..], "ending in '/'"),
            (&[("a", "/")][..], "ending in '/'"),
        ] {
            let error = prefixes_disjoint(owners).expect_err("refused");
            assert!(error.contains(why), "{owners:?}: {error}");
        }
    }

    #[test]
    fn reads_must_be_another_modules_prefixes() {
        let owners = [
            ("records", "record/"),
            ("claims", "claim/"),
            ("ledger", "member/"),
        ];
        let reader = |reads| ModuleInfo {
            name: "claims",
            prefixes: &["claim/"],
            reads,
            kinds: &[],
            base: 64,
        };
        assert!(reads_declared(&owners, &[reader(&["record/"])]).is_ok());
        for (reads, why) in [
            (&["claim/"][..], "claims's own"),
            (&["member/"][..], "ledger's own"),
            (&["record"][..], "no module owns"),
            (&["unit/"][..], "no module owns"),
        ] {
            let error = reads_declared(&owners, &[reader(reads)]).expect_err("refused");
            assert!(error.contains(why), "{reads:?}: {error}");
        }
        check_prefixes().expect("the registered modules' reads are declared");
        assert_eq!(
            EFFECT_ROUTES,
            &[
                ("claims", "tokens"),
                ("research", "tokens"),
                ("contracts", "tokens")
            ]
        );
    }

    #[test]
    fn a_module_that_consults_contracts_declares_what_they_read() {
        let module = |reads| ModuleInfo {
            name: "claims",
            prefixes: &["claim/"],
            reads,
            kinds: &[],
            base: 64,
        };
        let consult: &[&str] = &["contract/", "contract-code/", "unit/"];
        assert!(consults_declared(&[module(&["record/", "contract/"])], consult).is_ok());
        assert!(
            consults_declared(
                &[module(&["contract/", "contract-code/", "unit/"])],
                consult
            )
            .is_ok()
        );
        let error = consults_declared(&[module(&["contract/", "contract-code/"])], consult)
            .expect_err("refused");
        assert!(error.contains("\"unit/\""), "{error}");
    }

    #[test]
    fn overlapping_tag_ranges_are_refused() {
        let module = |name, base, kinds| ModuleInfo {
            name,
            prefixes: &[],
            reads: &[],
            kinds,
            base,
        };
        let two: &[&str] = &["x", "y"];
        assert!(tags_disjoint(5, &[module("a", 5, two), module("b", 7, two)]).is_ok());
        for modules in [
            vec![module("a", 4, two)],
            vec![module("a", 5, two), module("b", 6, two)],
            vec![module("a", 255, two)],
        ] {
            assert!(tags_disjoint(5, &modules).is_err(), "{modules:?}");
        }
    }
}
