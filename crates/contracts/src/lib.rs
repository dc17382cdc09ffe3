//! Contracts: WebAssembly that the consortium deploys by governance and members call, run
//! sandboxed and metered on wasmi.
//!
//! Code is stored by its SHA-256 (`UploadCode`, in parts of at most `PART_BYTES_MAX`), checked
//! once when its last part arrives (`validate`: no floats, threads or unknown imports, bounded
//! memory and size, no start function that works). A contract is an instance of stored code at an
//! address derived from the governance proposal that deployed it (`ContractsAction::Deploy`,
//! applied through `Governed` once two thirds of the organisations approve); governance also
//! upgrades (running the new code's `migrate`), freezes and unfreezes it. Members `Execute` it with
//! a JSON message; the node answers read-only queries.
//!
//! A contract writes only its own keys: the host maps each of its keys under
//! `contract-kv/<address>/`, so it has no name for anything else. Every call runs under a fuel
//! limit per call and a budget per block (chain parameters); a call that runs out of fuel, traps,
//! aborts or passes a limit leaves nothing written and is refused with the reason, and the fuel it
//! burnt still counts against the block's budget.
//!
//! **Invariant:** a call's outcome depends only on the chain: the code, the message, the block,
//! the caller and the committed state (see `runtime`).

pub mod abi;
#[doc(hidden)]
pub mod harness;
pub mod index;
pub mod query;
pub mod runtime;
pub mod validate;

use borsh::{BorshDeserialize, BorshSerialize};
use std::collections::BTreeMap;

use medledger_crypto::{Hash, hash_tagged, sha256};
use medledger_module::{
    Authority, Governed, Module, ModuleError, TxContext, View, parameter, read, standing,
};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::{Height, Role};
use serde::{Deserialize, Serialize};

use crate::runtime::{Call, End, Entry, Fault, Host, Outcome, runtime};
use crate::validate::{CodeFacts, CodeLimits, CodeRefusal};

pub use crate::runtime::MESSAGE_BYTES_MAX;

/// The most bytes of code one `UploadCode` carries.
pub const PART_BYTES_MAX: usize = 48 * 1024;
/// A contract's label, in bytes.
pub const LABEL_BYTES_MAX: usize = 64;

/// A chain parameter this module reads (`governance/param/<name>`), with its default and the range
/// governance may set it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

pub const CALL_FUEL_MAX: Parameter = Parameter {
    name: "contracts.call_fuel_max",
    default: 50_000_000,
    min: 10_000,
    max: 10_000_000_000,
};
pub const BLOCK_FUEL_MAX: Parameter = Parameter {
    name: "contracts.block_fuel_max",
    default: 2_000_000_000,
    min: 10_000,
    max: 1_000_000_000_000,
};
pub const CODE_BYTES_MAX: Parameter = Parameter {
    name: "contracts.code_bytes_max",
    default: 512 * 1024,
    min: 1_024,
    max: 4 * 1024 * 1024,
};
pub const MEMORY_PAGES_MAX: Parameter = Parameter {
    name: "contracts.memory_pages_max",
    default: 16,
    min: 1,
    max: 256,
};
/// Every parameter of this module.
pub const PARAMETERS: &[Parameter] = &[
    CALL_FUEL_MAX,
    BLOCK_FUEL_MAX,
    CODE_BYTES_MAX,
    MEMORY_PAGES_MAX,
];

/// The parameter's value in force.
pub fn parameter_value(state: &dyn StateRead, parameter_: Parameter) -> Result<u64, StateError> {
    Ok(parameter(state, parameter_.name)?.unwrap_or(parameter_.default))
}

/// The code limits at the parameters' defaults: what `medledger contract build` checks against.
pub const DEFAULT_CODE_LIMITS: CodeLimits = CodeLimits {
    code_bytes_max: CODE_BYTES_MAX.default,
    memory_pages_max: MEMORY_PAGES_MAX.default,
};

fn code_limits(state: &dyn StateRead) -> Result<CodeLimits, StateError> {
    Ok(CodeLimits {
        code_bytes_max: parameter_value(state, CODE_BYTES_MAX)?,
        memory_pages_max: parameter_value(state, MEMORY_PAGES_MAX)?,
    })
}

pub fn key_code(hash: &Hash) -> Vec<u8> {
    format!("contract-code/{hash}").into_bytes()
}
pub fn key_code_info(hash: &Hash) -> Vec<u8> {
    format!("contract-code-info/{hash}").into_bytes()
}
pub fn key_upload(hash: &Hash) -> Vec<u8> {
    format!("contract-upload/{hash}").into_bytes()
}
pub fn key_upload_part(hash: &Hash, part: u32) -> Vec<u8> {
    format!("contract-upload-part/{hash}/{part:05}").into_bytes()
}
pub fn key_contract(address: &Hash) -> Vec<u8> {
    medledger_module::key_contract(address)
}
// The longest contract key still makes a state key within the state's bound.
const _: () = assert!(
    "contract-kv/".len() + 64 + 1 + 2 * runtime::KEY_BYTES_MAX <= medledger_state::KEY_BYTES_MAX
);

/// A contract's value under its own key `key` (hex, so a proof names it in text).
pub fn key_value(address: &Hash, key: &[u8]) -> Vec<u8> {
    format!("contract-kv/{address}/{}", hex::encode(key)).into_bytes()
}
pub fn key_call(tx: &Hash) -> Vec<u8> {
    format!("contract-call/{tx}").into_bytes()
}
/// The `seq`-th event emitted on this chain, by any contract.
pub fn key_event(seq: u64) -> Vec<u8> {
    format!("contract-event/{seq:020}").into_bytes()
}
/// The number in the chain's event log of contract `address`'s `index`-th event.
pub fn key_event_of(address: &Hash, index: u64) -> Vec<u8> {
    format!("contract-event-of/{address}/{index:020}").into_bytes()
}
pub const KEY_EVENTS_COUNT: &[u8] = b"contract-count/events";
pub fn key_listed(seq: u64) -> Vec<u8> {
    format!("contract-list/{seq:020}").into_bytes()
}
pub const KEY_LIST_COUNT: &[u8] = b"contract-count/list";
pub const KEY_BLOCK_FUEL: &[u8] = b"contract-fuel/block";

/// The address of the contract that proposal `proposal` deploys.
pub fn address_of(proposal: &Hash) -> Hash {
    hash_tagged(b"medledger/contract-address", &[proposal.as_bytes()])
}

/// Stored code's facts.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct CodeInfo {
    pub hash: Hash,
    pub facts: CodeFacts,
    pub uploaded_by: String,
    pub uploaded_at: Height,
}

/// Code arriving in parts.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Upload {
    pub size: u64,
    pub parts: u32,
    pub received: u32,
    pub started_by: String,
}

/// A deployed contract.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ContractInfo {
    pub address: Hash,
    pub code_hash: Hash,
    pub label: String,
    /// 1 at deployment, one more at each upgrade.
    pub version: u32,
    pub frozen: bool,
    /// The proposal that deployed it.
    pub proposal: Hash,
    pub created_at: Height,
    pub changed_at: Height,
    /// Events emitted so far (the next event's number).
    pub events: u64,
}

/// The record of one call, under its transaction's id: what a client reads and proves.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct CallRecord {
    pub contract: Hash,
    pub entry: String,
    pub caller: Option<String>,
    pub height: Height,
    pub fuel_used: u64,
    /// The contract's answer (UTF-8 as the contract wrote it).
    pub result: String,
    /// The events it emitted: their numbers in the chain's log, from `first_event`.
    pub first_event: u64,
    pub events: u64,
}

/// One event a contract emitted, in the chain's log of every contract's events.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct EventRecord {
    /// Its number in the chain's log.
    pub seq: u64,
    pub contract: Hash,
    /// Its number among its contract's events.
    pub index: u64,
    pub height: Height,
    pub tx: Hash,
    /// A JSON object, as the contract emitted it.
    pub event: String,
}

/// The fuel spent by calls in one block, so far.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize,
)]
pub struct BlockFuel {
    pub height: Height,
    pub used: u64,
}

/// The module's operations. Their order is their payload tags: only ever append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContractsOp {
    /// One part of a module's code, by an organisation's root key or node. Code is checked and
    /// stored when its last part arrives; parts may come in any order, each once.
    UploadCode {
        code_hash: Hash,
        size: u64,
        part: u32,
        #[serde(with = "hex::serde")]
        bytes: Vec<u8>,
    },
    /// Calls a contract's `execute` with a JSON message, as the sender.
    ExecuteContract { contract: Hash, msg: String },
}

/// What governance does to contracts.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContractsAction {
    /// Instantiates stored code at `address_of(proposal)`, calling `instantiate` with `msg`.
    DeployContract {
        code_hash: Hash,
        label: String,
        msg: String,
    },
    /// Moves a contract to other stored code, calling the new code's `migrate` with `msg`; its
    /// state stays.
    UpgradeContract {
        contract: Hash,
        code_hash: Hash,
        msg: String,
    },
    /// Stops calls to a contract (queries still answer).
    FreezeContract {
        contract: Hash,
    },
    UnfreezeContract {
        contract: Hash,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ContractsError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("only an organisation's root key or node uploads code")]
    NotAnUploader,
    #[error("code {0} is already stored")]
    CodeExists(Hash),
    #[error("no stored code {0}")]
    UnknownCode(Hash),
    #[error("part {part} of code {code} has already arrived")]
    PartExists { code: Hash, part: u32 },
    #[error("the parts of code {code} hash to {got}")]
    CodeHashMismatch { code: Hash, got: Hash },
    #[error("{0}")]
    Code(#[from] CodeRefusal),
    #[error("no contract {0}")]
    UnknownContract(Hash),
    #[error("contract {0} is frozen")]
    Frozen(Hash),
    #[error("contract {0} is not frozen")]
    NotFrozen(Hash),
    #[error("the message is not JSON: {0}")]
    MessageNotJson(String),
    #[error("the contract refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Fault(Fault),
    #[error("the block's contract fuel ({limit}) is spent")]
    BlockFuelSpent { limit: u64 },
    #[error("code {0} has no migrate entry point, which an upgrade calls")]
    NoMigrate(Hash),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ModuleError for ContractsError {
    fn code(&self) -> &'static str {
        match self {
            ContractsError::Invalid { .. } => "invalid",
            ContractsError::NotAnUploader => "not_an_uploader",
            ContractsError::CodeExists(_) => "code_exists",
            ContractsError::UnknownCode(_) => "unknown_code",
            ContractsError::PartExists { .. } => "part_exists",
            ContractsError::CodeHashMismatch { .. } => "code_hash_mismatch",
            ContractsError::Code(refusal) => refusal.code(),
            ContractsError::UnknownContract(_) => "unknown_contract",
            ContractsError::Frozen(_) => "contract_frozen",
            ContractsError::NotFrozen(_) => "contract_not_frozen",
            ContractsError::MessageNotJson(_) => "message_not_json",
            ContractsError::Refused(_) => "contract_refused",
            ContractsError::Fault(fault) => match fault {
                Fault::OutOfFuel => "contract_out_of_fuel",
                Fault::Trap(_) => "contract_trap",
                Fault::Abort(_) => "contract_abort",
                Fault::Limit(_) => "contract_limit",
                Fault::WriteInQuery => "contract_write_in_query",
            },
            ContractsError::BlockFuelSpent { .. } => "block_fuel_spent",
            ContractsError::NoMigrate(_) => "no_migrate",
            ContractsError::State(_) => "state",
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ContractsError {
    ContractsError::Invalid {
        field,
        reason: reason.into(),
    }
}

pub fn code_info(state: &dyn StateRead, hash: &Hash) -> Result<Option<CodeInfo>, StateError> {
    read(state, &key_code_info(hash))
}

pub fn contract(state: &dyn StateRead, address: &Hash) -> Result<Option<ContractInfo>, StateError> {
    read(state, &key_contract(address))
}

pub fn call_record(state: &dyn StateRead, tx: &Hash) -> Result<Option<CallRecord>, StateError> {
    read(state, &key_call(tx))
}

/// The `seq`-th event of the chain's log.
pub fn event(state: &dyn StateRead, seq: u64) -> Result<Option<EventRecord>, StateError> {
    read(state, &key_event(seq))
}

/// How many events the chain's log holds.
pub fn events_count(state: &dyn StateRead) -> Result<u64, StateError> {
    Ok(read(state, KEY_EVENTS_COUNT)?.unwrap_or(0))
}

/// Contract `address`'s events from its `start`-th, at most `limit`.
pub fn events_of(
    state: &dyn StateRead,
    address: &Hash,
    start: u64,
    limit: u64,
) -> Result<Vec<EventRecord>, StateError> {
    let Some(info) = contract(state, address)? else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    for index in start..info.events.min(start.saturating_add(limit)) {
        if let Some(seq) = read::<u64>(state, &key_event_of(address, index))? {
            events.extend(event(state, seq)?);
        }
    }
    Ok(events)
}

/// The contracts deployed, in order, from the `start`-th, at most `limit`.
pub fn list(state: &dyn StateRead, start: u64, limit: u64) -> Result<Vec<Hash>, StateError> {
    let count: u64 = read(state, KEY_LIST_COUNT)?.unwrap_or(0);
    let mut addresses = Vec::new();
    for seq in start..count.min(start.saturating_add(limit)) {
        if let Some(address) = read(state, &key_listed(seq))? {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

/// A contract's value under its own key.
pub fn value(
    state: &dyn StateRead,
    address: &Hash,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StateError> {
    state.get(&key_value(address, key))
}

fn check_json(msg: &str) -> Result<(), ContractsError> {
    if msg.len() > MESSAGE_BYTES_MAX {
        return Err(ContractsError::MessageNotJson(format!(
            "{} bytes, above {MESSAGE_BYTES_MAX}",
            msg.len()
        )));
    }
    serde_json::from_str::<serde_json::Value>(msg)
        .map(|_| ())
        .map_err(|error| ContractsError::MessageNotJson(error.to_string()))
}

/// What every call of one transaction (or query) sees of the chain: its block and transaction.
#[derive(Clone, Debug)]
struct Block {
    chain_id: String,
    height: Height,
    time_ms: u64,
    tx: Option<Hash>,
}

impl Block {
    fn of_tx(tx: &TxContext<'_>) -> Block {
        Block {
            chain_id: tx.block.chain_id.clone(),
            height: tx.block.height,
            time_ms: tx.block.time_ms,
            tx: Some(tx.id),
        }
    }

    fn at_head(state: &dyn StateRead) -> Result<Block, StateError> {
        let head = medledger_module::chain_head(state)?;
        Ok(Block {
            chain_id: medledger_module::chain_info(state)?.chain_id,
            height: head.height,
            time_ms: head.time_ms,
            tx: None,
        })
    }
}

/// Who calls a contract.
#[derive(Clone, Copy, Debug)]
enum Caller {
    /// A signed transaction's sender.
    Key(medledger_crypto::PublicKey),
    /// Another contract, from its own call.
    Contract(Hash),
    /// Governance (instantiate, migrate) or a module consulting it: no caller.
    Nobody,
}

/// The environment a call sees (`env()`), as JSON.
fn env_json(
    state: &dyn StateRead,
    block: &Block,
    address: &Hash,
    caller: Caller,
    module: Option<&str>,
) -> Result<Vec<u8>, StateError> {
    let caller = match caller {
        Caller::Nobody => serde_json::Value::Null,
        Caller::Contract(contract) => {
            serde_json::json!({"key": contract.to_string(), "org": null, "role": "contract"})
        }
        Caller::Key(key) => {
            let (org, role) = match standing(state, &key)? {
                medledger_module::Standing::Acts(Authority::Organisation { org }) => {
                    (Some(org), Some("organisation".to_string()))
                }
                medledger_module::Standing::Acts(Authority::Member { org, role }) => {
                    (Some(org), Some(role_name(role)))
                }
                _ => (None, None),
            };
            serde_json::json!({"key": key.to_string(), "org": org, "role": role})
        }
    };
    let mut env = serde_json::json!({
        "interface": abi::INTERFACE_VERSION,
        "chain_id": block.chain_id,
        "block": {"height": block.height, "time_ms": block.time_ms},
        "contract": address.to_string(),
        "tx": block.tx.map(|tx| tx.to_string()),
        "caller": caller,
    });
    if let Some(module) = module {
        env["module"] = serde_json::Value::String(module.to_string());
    }
    Ok(serde_json::to_vec(&env).unwrap_or_default())
}

fn role_name(role: Role) -> String {
    serde_json::to_value(role)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The host of one contract's call: reads of its keys (what the calls before it in this call
/// wrote, over the committed state), chain queries, and its calls of other contracts.
struct StateHost<'s> {
    state: &'s dyn StateRead,
    block: &'s Block,
    address: Hash,
    /// The contracts running, outermost first; `address` is the last.
    stack: Vec<Hash>,
    /// What earlier calls in this call wrote, to any contract.
    written: runtime::Foreign,
    /// Who called this contract, and the module consulting it, for its environment.
    caller: Caller,
    module: Option<&'s str>,
}

impl Host for StateHost<'_> {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(value) = self.written.get(&(self.address, key.to_vec())) {
            return Ok(value.clone());
        }
        value(self.state, &self.address, key)
    }

    fn next_key(&mut self, after: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        // The committed keys less those written away, merged with those written.
        let written = self
            .written
            .range((
                std::ops::Bound::Excluded((self.address, after.to_vec())),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|((address, _), _)| *address == self.address)
            .find(|(_, value)| value.is_some())
            .map(|((_, key), _)| key.clone());
        let mut cursor = after.to_vec();
        let committed = loop {
            match index::next(self.state, &self.address, &cursor)? {
                Some(key)
                    if matches!(self.written.get(&(self.address, key.clone())), Some(None)) =>
                {
                    cursor = key
                }
                other => break other,
            }
        };
        Ok(match (written, committed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    fn query(&mut self, request: &[u8]) -> Result<Vec<u8>, StateError> {
        query::answer(self.state, request, self.block.time_ms)
    }

    fn env(&mut self) -> Result<Vec<u8>, StateError> {
        env_json(
            self.state,
            self.block,
            &self.address,
            self.caller,
            self.module,
        )
    }

    fn call(
        &mut self,
        contract: Hash,
        msg: &[u8],
        entry: Entry,
        fuel: u64,
        foreign: &runtime::Foreign,
    ) -> Result<Outcome, StateError> {
        let stop = |end: End| Outcome {
            end,
            fuel_used: 0,
            result: Vec::new(),
            writes: Default::default(),
            foreign: Default::default(),
            events: Vec::new(),
            transfers: Vec::new(),
        };
        let refuse = |reason: String| Outcome {
            result: reason.into_bytes(),
            ..stop(End::Refused)
        };
        if self.stack.contains(&contract) {
            return Ok(stop(End::Fault(Fault::Limit(format!(
                "a re-entrant call of contract {contract}, which is already running"
            )))));
        }
        if self.stack.len() >= runtime::CALL_DEPTH_MAX {
            return Ok(stop(End::Fault(Fault::Limit(format!(
                "calls nested deeper than {} contracts",
                runtime::CALL_DEPTH_MAX
            )))));
        }
        let Some(info) = self::contract(self.state, &contract)? else {
            return Ok(refuse(format!("no contract {contract}")));
        };
        if info.frozen && entry != Entry::Query {
            return Ok(refuse(format!("contract {contract} is frozen")));
        }
        let mut written = self.written.clone();
        written.extend(
            foreign
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        let mut stack = self.stack.clone();
        stack.push(contract);
        let mut callee = StateHost {
            state: self.state,
            block: self.block,
            address: contract,
            stack,
            written,
            caller: Caller::Contract(self.address),
            module: None,
        };
        run(&mut callee, info.code_hash, entry, msg, fuel)
    }
}

/// Runs one entry point of the code `code_hash` as `host`'s contract.
fn run(
    host: &mut StateHost<'_>,
    code_hash: Hash,
    entry: Entry,
    msg: &[u8],
    fuel: u64,
) -> Result<Outcome, StateError> {
    let state = host.state;
    let memory_pages_max = parameter_value(state, MEMORY_PAGES_MAX)?;
    let mut load = || -> Result<Vec<u8>, StateError> {
        state
            .get(&key_code(&code_hash))?
            .ok_or_else(|| StateError::Store(format!("contract code {code_hash} is missing")))
    };
    runtime().call(
        Call {
            code_hash,
            address: host.address,
            entry,
            message: msg,
            fuel,
            memory_pages_max,
        },
        &mut load,
        host,
    )
}

impl<'s> StateHost<'s> {
    /// The host of a call at the top of its stack.
    fn top(
        state: &'s dyn StateRead,
        block: &'s Block,
        address: Hash,
        caller: Caller,
        module: Option<&'s str>,
    ) -> StateHost<'s> {
        StateHost {
            state,
            block,
            address,
            stack: vec![address],
            written: Default::default(),
            caller,
            module,
        }
    }
}

/// Answers a read-only query of a contract at `state` (the node's `query`), with the fuel a call
/// may use. Nothing is written.
pub fn query_contract(
    state: &dyn StateRead,
    address: &Hash,
    msg: &str,
) -> Result<Result<Outcome, ContractsError>, StateError> {
    let Some(info) = contract(state, address)? else {
        return Ok(Err(ContractsError::UnknownContract(*address)));
    };
    if let Err(error) = check_json(msg) {
        return Ok(Err(error));
    }
    let block = Block::at_head(state)?;
    let fuel = parameter_value(state, CALL_FUEL_MAX)?;
    let mut host = StateHost::top(state, &block, info.address, Caller::Nobody, None);
    run(
        &mut host,
        info.code_hash,
        Entry::Query,
        msg.as_bytes(),
        fuel,
    )
    .map(Ok)
}

/// The prefixes a module declares in its `READS` to consult contracts (`consult`): what a
/// contract's code, state and chain queries read.
pub const CONSULT_READS: &[&str] = &[
    "contract/",
    "contract-code/",
    "contract-kv/",
    "contract-dir/",
    "contract-bucket/",
    "token-balance/",
    "record/",
    "patient/",
    "consent/",
    "grant/",
    "unit/",
];

/// What a consulted contract answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consulted {
    /// Its `query` answered (0) with these bytes.
    Answer { result: Vec<u8>, fuel_used: u64 },
    /// It could not answer: unknown or frozen, refused, trapped or ran out of fuel. The module
    /// decides what that means (claims: the claim waits for review).
    Failed { code: &'static str, reason: String },
}

/// Asks contract `address` to decide a rule for module `module`'s operation in transaction `tx`:
/// its read-only `query` entry point runs with `msg`, with the per-call fuel limit, at the block's
/// state. Nothing is written, so a module that owns none of the contract's state may consult it;
/// it declares `CONSULT_READS` among its reads. The environment names the block and the module
/// (`"module": "claims"`), and no caller.
pub fn consult(
    state: &dyn StateRead,
    tx: &TxContext<'_>,
    module: &str,
    address: &Hash,
    msg: &str,
) -> Result<Consulted, StateError> {
    use medledger_module::ModuleError;
    let failed = |error: ContractsError| Consulted::Failed {
        code: error.code(),
        reason: error.to_string(),
    };
    let Some(info) = contract(state, address)? else {
        return Ok(failed(ContractsError::UnknownContract(*address)));
    };
    if info.frozen {
        return Ok(failed(ContractsError::Frozen(*address)));
    }
    if let Err(error) = check_json(msg) {
        return Ok(failed(error));
    }
    let block = Block::of_tx(tx);
    let fuel = parameter_value(state, CALL_FUEL_MAX)?;
    let mut host = StateHost::top(state, &block, info.address, Caller::Nobody, Some(module));
    let outcome = run(
        &mut host,
        info.code_hash,
        Entry::Query,
        msg.as_bytes(),
        fuel,
    )?;
    Ok(match outcome.end {
        End::Done => Consulted::Answer {
            result: outcome.result,
            fuel_used: outcome.fuel_used,
        },
        End::Refused => failed(ContractsError::Refused(
            String::from_utf8_lossy(&outcome.result).into_owned(),
        )),
        End::Fault(fault) => failed(ContractsError::Fault(fault)),
    })
}

/// A contract's token account: its address, read as a key.
pub fn account_of(address: &Hash) -> medledger_crypto::PublicKey {
    medledger_crypto::PublicKey(address.0)
}

/// Writes one contract's keys, keeping its index.
fn write_keys<'k>(
    view: &mut View<'_, '_>,
    address: &Hash,
    writes: impl Iterator<Item = (&'k Vec<u8>, &'k Option<Vec<u8>>)>,
) -> Result<(), ContractsError> {
    for (key, value) in writes {
        let existed = view.get(&key_value(address, key))?.is_some();
        match value {
            Some(value) => {
                view.put(key_value(address, key), value.clone());
                if !existed {
                    index::insert(view, address, key)?;
                }
            }
            None => {
                if existed {
                    view.delete(key_value(address, key));
                    index::remove(view, address, key)?;
                }
            }
        }
    }
    Ok(())
}

/// Keeps a successful call's writes (its own and those of the contracts it called), its events
/// and token transfers (asked of the token module, which checks them as its own), and its record
/// under the transaction.
fn keep(
    view: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    info: &mut ContractInfo,
    entry: Entry,
    caller: Option<&medledger_crypto::PublicKey>,
    outcome: Outcome,
) -> Result<(), ContractsError> {
    write_keys(view, &info.address, outcome.writes.iter())?;
    let mut touched: Vec<Hash> = outcome
        .foreign
        .keys()
        .map(|(address, _)| *address)
        .collect();
    touched.dedup();
    for address in touched {
        write_keys(
            view,
            &address,
            outcome
                .foreign
                .iter()
                .filter(|((owner, _), _)| *owner == address)
                .map(|((_, key), value)| (key, value)),
        )?;
    }
    // Events are numbered in the chain's log and in their own contract's.
    let first_event = events_count(view)?;
    let mut seq = first_event;
    let mut others: BTreeMap<Hash, ContractInfo> = BTreeMap::new();
    for (address, event) in &outcome.events {
        let index = if *address == info.address {
            info.events += 1;
            info.events - 1
        } else {
            let other = match others.entry(*address) {
                std::collections::btree_map::Entry::Occupied(found) => found.into_mut(),
                std::collections::btree_map::Entry::Vacant(slot) => slot.insert(
                    contract(view, address)?.ok_or(ContractsError::UnknownContract(*address))?,
                ),
            };
            other.events += 1;
            other.events - 1
        };
        let record = EventRecord {
            seq,
            contract: *address,
            index,
            height: tx.block.height,
            tx: tx.id,
            event: String::from_utf8_lossy(event).into_owned(),
        };
        view.put(key_event(seq), encode_value(&record));
        view.put(key_event_of(address, index), encode_value(&seq));
        seq += 1;
    }
    if seq != first_event {
        view.put(KEY_EVENTS_COUNT.to_vec(), encode_value(&seq));
    }
    for (address, other) in &others {
        view.put(key_contract(address), encode_value(other));
    }
    for (address, transfer) in &outcome.transfers {
        view.request(medledger_tokens::TokenEffect::Transfer {
            symbol: transfer.symbol.clone(),
            from: account_of(address),
            to: transfer.to,
            amount: transfer.amount,
            reason: transfer.reason,
            reference: Some(tx.id),
        });
    }
    let record = CallRecord {
        contract: info.address,
        entry: entry.name().to_string(),
        caller: caller.map(|key| key.to_string()),
        height: tx.block.height,
        fuel_used: outcome.fuel_used,
        result: String::from_utf8_lossy(&outcome.result).into_owned(),
        first_event,
        events: outcome.events.len() as u64,
    };
    view.put(key_call(&tx.id), encode_value(&record));
    view.put(key_contract(&info.address), encode_value(&*info));
    Ok(())
}

/// Runs a state-changing entry point in transaction `tx`, charging the block's fuel budget (kept
/// even when the call fails), and keeps its effects if it ends well.
fn call_in_tx(
    view: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    info: &mut ContractInfo,
    entry: Entry,
    msg: &str,
    caller: Option<&medledger_crypto::PublicKey>,
) -> Result<(), ContractsError> {
    check_json(msg)?;
    let block_max = parameter_value(view, BLOCK_FUEL_MAX)?;
    let mut spent: BlockFuel = read(view, KEY_BLOCK_FUEL)?.unwrap_or_default();
    if spent.height != tx.block.height {
        spent = BlockFuel {
            height: tx.block.height,
            used: 0,
        };
    }
    let left = block_max.saturating_sub(spent.used);
    if left == 0 {
        return Err(ContractsError::BlockFuelSpent { limit: block_max });
    }
    let fuel = parameter_value(view, CALL_FUEL_MAX)?.min(left);
    let block = Block::of_tx(tx);
    let who = match caller {
        Some(key) => Caller::Key(*key),
        None => Caller::Nobody,
    };
    let mut host = StateHost::top(view, &block, info.address, who, None);
    let outcome = run(&mut host, info.code_hash, entry, msg.as_bytes(), fuel)?;
    spent.used = spent.used.saturating_add(outcome.fuel_used);
    view.put_kept(KEY_BLOCK_FUEL.to_vec(), encode_value(&spent));
    match &outcome.end {
        End::Done => keep(view, tx, info, entry, caller, outcome),
        End::Refused => Err(ContractsError::Refused(
            String::from_utf8_lossy(&outcome.result).into_owned(),
        )),
        End::Fault(fault) => Err(ContractsError::Fault(fault.clone())),
    }
}

fn upload(
    view: &mut View<'_, '_>,
    tx: &TxContext<'_>,
    code_hash: Hash,
    size: u64,
    part: u32,
    bytes: &[u8],
) -> Result<(), ContractsError> {
    let org = match tx.authority {
        Authority::Organisation { org } => org.clone(),
        Authority::Member {
            org,
            role: Role::Validator,
        } => org.clone(),
        Authority::Member { .. } => return Err(ContractsError::NotAnUploader),
    };
    if code_info(view, &code_hash)?.is_some() {
        return Err(ContractsError::CodeExists(code_hash));
    }
    let limits = code_limits(view)?;
    if size == 0 || size > limits.code_bytes_max {
        return Err(ContractsError::Code(CodeRefusal::TooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: limits.code_bytes_max,
        }));
    }
    let parts = u32::try_from(size.div_ceil(PART_BYTES_MAX as u64))
        .map_err(|_| invalid("size", "too many parts"))?;
    if part >= parts {
        return Err(invalid("part", format!("{part} of {parts} parts")));
    }
    let expected = if part + 1 == parts {
        size - u64::from(part) * PART_BYTES_MAX as u64
    } else {
        PART_BYTES_MAX as u64
    };
    if bytes.len() as u64 != expected {
        return Err(invalid(
            "bytes",
            format!("part {part} is {} bytes, not {expected}", bytes.len()),
        ));
    }
    let mut upload: Upload = match read(view, &key_upload(&code_hash))? {
        Some(upload) => upload,
        None => Upload {
            size,
            parts,
            received: 0,
            started_by: org.clone(),
        },
    };
    if upload.size != size {
        return Err(invalid(
            "size",
            format!("the upload began as {} bytes", upload.size),
        ));
    }
    if view.get(&key_upload_part(&code_hash, part))?.is_some() {
        return Err(ContractsError::PartExists {
            code: code_hash,
            part,
        });
    }
    upload.received += 1;
    if upload.received < upload.parts {
        view.put(key_upload_part(&code_hash, part), bytes.to_vec());
        view.put(key_upload(&code_hash), encode_value(&upload));
        return Ok(());
    }
    // The last part: assemble, check and store.
    let mut code = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for index in 0..parts {
        if index == part {
            code.extend_from_slice(bytes);
        } else {
            let key = key_upload_part(&code_hash, index);
            let Some(stored) = view.get(&key)? else {
                return Err(StateError::Store(format!("upload part {index} is missing")).into());
            };
            code.extend_from_slice(&stored);
            view.delete(key);
        }
    }
    view.delete(key_upload(&code_hash));
    let got = sha256(&code);
    if got != code_hash {
        return Err(ContractsError::CodeHashMismatch {
            code: code_hash,
            got,
        });
    }
    let facts = runtime().check(&code, limits)?;
    view.put(key_code(&code_hash), code);
    view.put(
        key_code_info(&code_hash),
        encode_value(&CodeInfo {
            hash: code_hash,
            facts,
            uploaded_by: org,
            uploaded_at: tx.block.height,
        }),
    );
    Ok(())
}

/// The contracts module.
#[derive(Debug)]
pub struct Contracts;

impl Module for Contracts {
    const NAME: &'static str = "contracts";
    const PREFIXES: &'static [&'static str] = &[
        "contract-code/",
        "contract-code-info/",
        "contract-upload/",
        "contract-upload-part/",
        "contract/",
        "contract-kv/",
        "contract-dir/",
        "contract-bucket/",
        "contract-call/",
        "contract-event/",
        "contract-event-of/",
        "contract-list/",
        "contract-count/",
        "contract-fuel/",
    ];
    // Chain queries (`query.rs`) read through these modules' public queries: token balances, a
    // record's patient and consent, a unit.
    const READS: &'static [&'static str] = &[
        "token-balance/",
        "record/",
        "patient/",
        "consent/",
        "grant/",
        "unit/",
    ];
    const KINDS: &'static [&'static str] = &["upload_code", "execute_contract"];
    type Op = ContractsOp;
    type Error = ContractsError;

    fn kind(op: &ContractsOp) -> &'static str {
        match op {
            ContractsOp::UploadCode { .. } => "upload_code",
            ContractsOp::ExecuteContract { .. } => "execute_contract",
        }
    }

    fn apply(
        op: &ContractsOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), ContractsError> {
        match op {
            ContractsOp::UploadCode {
                code_hash,
                size,
                part,
                bytes,
            } => upload(state, tx, *code_hash, *size, *part, bytes),
            ContractsOp::ExecuteContract {
                contract: address,
                msg,
            } => {
                let mut info =
                    contract(state, address)?.ok_or(ContractsError::UnknownContract(*address))?;
                if info.frozen {
                    return Err(ContractsError::Frozen(*address));
                }
                call_in_tx(state, tx, &mut info, Entry::Execute, msg, Some(&tx.sender))
            }
        }
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        fn json<T: BorshDeserialize + Serialize>(value: &[u8]) -> Option<serde_json::Value> {
            serde_json::to_value(borsh::from_slice::<T>(value).ok()?).ok()
        }
        if key.starts_with("contract/") {
            json::<ContractInfo>(value)
        } else if key.starts_with("contract-code-info/") {
            json::<CodeInfo>(value)
        } else if key.starts_with("contract-call/") {
            json::<CallRecord>(value)
        } else if key.starts_with("contract-event/") {
            json::<EventRecord>(value)
        } else if key.starts_with("contract-upload/") {
            json::<Upload>(value)
        } else if key.starts_with("contract-fuel/") {
            json::<BlockFuel>(value)
        } else if key.starts_with("contract-count/") || key.starts_with("contract-event-of/") {
            json::<u64>(value).map(|n| serde_json::json!({ "number": n }))
        } else if key.starts_with("contract-list/") {
            json::<Hash>(value).map(|address| serde_json::json!({ "contract": address }))
        } else if key.starts_with("contract-kv/") {
            Some(serde_json::json!({ "hex": hex::encode(value) }))
        } else if key.starts_with("contract-code/") {
            Some(serde_json::json!({ "bytes": value.len() }))
        } else {
            None
        }
    }
}

impl Governed for Contracts {
    type Action = ContractsAction;

    fn action_kind(action: &ContractsAction) -> &'static str {
        match action {
            ContractsAction::DeployContract { .. } => "deploy_contract",
            ContractsAction::UpgradeContract { .. } => "upgrade_contract",
            ContractsAction::FreezeContract { .. } => "freeze_contract",
            ContractsAction::UnfreezeContract { .. } => "unfreeze_contract",
        }
    }

    fn check_action(action: &ContractsAction, state: &View<'_, '_>) -> Result<(), ContractsError> {
        match action {
            ContractsAction::DeployContract {
                code_hash,
                label,
                msg,
            } => {
                if label.is_empty() || label.len() > LABEL_BYTES_MAX {
                    return Err(invalid("label", format!("1 to {LABEL_BYTES_MAX} bytes")));
                }
                code_info(state, code_hash)?.ok_or(ContractsError::UnknownCode(*code_hash))?;
                check_json(msg)
            }
            ContractsAction::UpgradeContract {
                contract: address,
                code_hash,
                msg,
            } => {
                contract(state, address)?.ok_or(ContractsError::UnknownContract(*address))?;
                let code =
                    code_info(state, code_hash)?.ok_or(ContractsError::UnknownCode(*code_hash))?;
                if !code.facts.migrates {
                    return Err(ContractsError::NoMigrate(*code_hash));
                }
                check_json(msg)
            }
            ContractsAction::FreezeContract { contract: address }
            | ContractsAction::UnfreezeContract { contract: address } => {
                contract(state, address)?.ok_or(ContractsError::UnknownContract(*address))?;
                Ok(())
            }
        }
    }

    fn apply_action(
        action: &ContractsAction,
        proposal: Hash,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), ContractsError> {
        Self::check_action(action, state)?;
        match action {
            ContractsAction::DeployContract {
                code_hash,
                label,
                msg,
            } => {
                let address = address_of(&proposal);
                let mut info = ContractInfo {
                    address,
                    code_hash: *code_hash,
                    label: label.clone(),
                    version: 1,
                    frozen: false,
                    proposal,
                    created_at: tx.block.height,
                    changed_at: tx.block.height,
                    events: 0,
                };
                call_in_tx(state, tx, &mut info, Entry::Instantiate, msg, None)?;
                let count: u64 = read(state, KEY_LIST_COUNT)?.unwrap_or(0);
                state.put(key_listed(count), encode_value(&address));
                state.put(KEY_LIST_COUNT.to_vec(), encode_value(&(count + 1)));
                Ok(())
            }
            ContractsAction::UpgradeContract {
                contract: address,
                code_hash,
                msg,
            } => {
                let mut info =
                    contract(state, address)?.ok_or(ContractsError::UnknownContract(*address))?;
                info.code_hash = *code_hash;
                info.version += 1;
                info.changed_at = tx.block.height;
                call_in_tx(state, tx, &mut info, Entry::Migrate, msg, None)
            }
            ContractsAction::FreezeContract { contract: address } => {
                let mut info =
                    contract(state, address)?.ok_or(ContractsError::UnknownContract(*address))?;
                if info.frozen {
                    return Err(ContractsError::Frozen(*address));
                }
                info.frozen = true;
                info.changed_at = tx.block.height;
                state.put(key_contract(address), encode_value(&info));
                Ok(())
            }
            ContractsAction::UnfreezeContract { contract: address } => {
                let mut info =
                    contract(state, address)?.ok_or(ContractsError::UnknownContract(*address))?;
                if !info.frozen {
                    return Err(ContractsError::NotFrozen(*address));
                }
                info.frozen = false;
                info.changed_at = tx.block.height;
                state.put(key_contract(address), encode_value(&info));
                Ok(())
            }
        }
    }
}
