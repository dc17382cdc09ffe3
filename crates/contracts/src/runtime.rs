//! The runtime: runs one entry point of a deployed module on wasmi, under a fuel limit, with the
//! host functions of `abi.rs`.
//!
//! A call never touches state directly. Its writes and events are buffered in the call (`Ctx`)
//! and handed back only when it ends well, so a trap, running out of fuel or a refusal leaves
//! nothing behind. What a call needs from outside (a state read, the next key, a chain query) is
//! asked of the caller's `Host` by suspending the call (wasmi's resumable calls) and resuming it
//! with the answer: the `Host` borrows the block's state only between steps, never inside wasmi.
//!
//! **Invariant:** a call's outcome (result, writes, events, fuel used, fault) is a function of
//! the module, the message, the environment and what the `Host` answers. Modules are compiled
//! eagerly, so the compilation cache changes no fuel count: a lazily translated function would
//! charge its translation to the first call that reaches it.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, OnceLock};

use medledger_crypto::{Hash, PublicKey};
use medledger_state::StateError;
use medledger_tokens::{Amount, Reason};
use serde::Deserialize;
use wasmi::errors::HostError;
use wasmi::{
    Caller, CompilationMode, Config, Engine, Error, Extern, Linker, Module, Store, StoreLimits,
    StoreLimitsBuilder, TypedResumableCall, Val,
};

use crate::abi::MEMORY_EXPORT;
use crate::validate::{CodeFacts, CodeLimits, CodeRefusal, validate};

/// Compiled modules kept between calls.
pub const MODULES_CACHED_MAX: usize = 64;
/// Fuel every host call costs before the bytes it moves.
pub const HOST_CALL_FUEL: u64 = 100;
/// Fuel per byte moved between the contract and the host.
pub const FUEL_PER_BYTE: u64 = 1;
/// Fuel for a state read the call's own writes do not answer (a lookup in the Merkle tree).
pub const READ_FUEL: u64 = 1_000;
/// Fuel for a state write (a leaf of the Merkle tree at the block's commit).
pub const WRITE_FUEL: u64 = 2_000;
/// Fuel for a chain query into another module.
pub const QUERY_FUEL: u64 = 2_000;
/// A contract's state key, in bytes: room for a prefix and a key in hex (`approval:<key>`),
/// while `contract-kv/<address>/<key in hex>` stays within a state key's bound.
pub const KEY_BYTES_MAX: usize = 80;
/// A contract's state value, in bytes.
pub const VALUE_BYTES_MAX: usize = 16 * 1024;
/// Distinct keys one call may write.
pub const WRITES_PER_CALL_MAX: usize = 1_024;
/// Events one call may emit.
pub const EVENTS_PER_CALL_MAX: usize = 64;
/// One event, a JSON object, in bytes.
pub const EVENT_BYTES_MAX: usize = 1_024;
/// A call's answer, in bytes.
pub const RESULT_BYTES_MAX: usize = 16 * 1024;
/// A message into a contract or a chain query, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 32 * 1024;
/// Nested WebAssembly calls within one call (wasmi counts frames, not the machine's stack).
pub const RECURSION_DEPTH_MAX: usize = 1_024;
/// Table elements a module may hold.
pub const TABLE_ELEMENTS_MAX: usize = 10_000;
/// Token transfers one call (its nested calls included) may ask for.
pub const TRANSFERS_PER_CALL_MAX: usize = 16;
/// Fuel for a token transfer (two balances, a movement and the class at the block's commit).
pub const TRANSFER_FUEL: u64 = 8_000;
/// Fuel for calling another contract, before the fuel the callee uses.
pub const CALL_FUEL: u64 = 10_000;
/// Contracts on one call stack: a call from the fourth is refused.
pub const CALL_DEPTH_MAX: usize = 4;

/// Writes to other contracts' keys, made by the calls a call made: (contract, key) → value.
pub type Foreign = BTreeMap<(Hash, Vec<u8>), Option<Vec<u8>>>;

/// A token transfer a contract asks for, out of its own account (`transfer`): JSON
/// `{"symbol": "USD", "to": "<hex key>", "amount": "<minor units>", "reason"?: "transfer"}`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub symbol: String,
    pub to: PublicKey,
    pub amount: Amount,
    #[serde(default = "transfer_reason")]
    pub reason: Reason,
}

fn transfer_reason() -> Reason {
    Reason::Transfer
}

/// A contract's call of another (`call_contract`): JSON `{"contract": "<hex>", "msg": {...}}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallRequest {
    contract: Hash,
    msg: serde_json::Value,
}

/// An entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Instantiate,
    Execute,
    Query,
    Migrate,
}

impl Entry {
    pub fn name(self) -> &'static str {
        match self {
            Entry::Instantiate => "instantiate",
            Entry::Execute => "execute",
            Entry::Query => "query",
            Entry::Migrate => "migrate",
        }
    }
}

/// What a call asks of the chain while it runs.
pub trait Host {
    /// The contract's value under `key`, as committed before the call.
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// The contract's first key after `after`, as committed before the call.
    fn next_key(&mut self, after: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Answers a chain query (JSON in, JSON out; a refusal is an answer too).
    fn query(&mut self, request: &[u8]) -> Result<Vec<u8>, StateError>;
    /// The call's environment as JSON (`env()`); asked at most once a call, and only by a contract
    /// that reads it, so a call that does not costs no caller lookup.
    fn env(&mut self) -> Result<Vec<u8>, StateError>;
    /// Runs `contract`'s `entry` with `msg` and at most `fuel`, for the calling contract, seeing
    /// `foreign` (what earlier calls of this call wrote) over the committed state. The host refuses
    /// re-entrancy and calls nested past `CALL_DEPTH_MAX`, in the outcome.
    fn call(
        &mut self,
        contract: Hash,
        msg: &[u8],
        entry: Entry,
        fuel: u64,
        foreign: &Foreign,
    ) -> Result<Outcome, StateError>;
}

/// Why a call stopped before it ended: its writes are discarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("the call ran out of fuel")]
    OutOfFuel,
    #[error("the call trapped: {0}")]
    Trap(String),
    #[error("the contract aborted: {0}")]
    Abort(String),
    #[error("the call passed a limit: {0}")]
    Limit(String),
    #[error("a query may not write state or emit events")]
    WriteInQuery,
}

impl Fault {
    pub fn code(&self) -> &'static str {
        match self {
            Fault::OutOfFuel => "out_of_fuel",
            Fault::Trap(_) => "trap",
            Fault::Abort(_) => "abort",
            Fault::Limit(_) => "limit",
            Fault::WriteInQuery => "write_in_query",
        }
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The entry point answered 0: its writes and events stand.
    Done,
    /// The entry point answered another value: the contract refused, `result` says why.
    Refused,
    Fault(Fault),
}

/// A call's outcome. `writes`, `foreign`, `events` and `transfers` are empty unless it ended
/// `Done`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub end: End,
    pub fuel_used: u64,
    pub result: Vec<u8>,
    /// Each of its own keys the call wrote, with its new value (`None`: removed).
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// What the contracts it called wrote.
    pub foreign: Foreign,
    /// Events (JSON objects) with the contract that emitted each, in order.
    pub events: Vec<(Hash, Vec<u8>)>,
    /// Token transfers with the contract whose account pays each, in order.
    pub transfers: Vec<(Hash, TransferRequest)>,
}

/// One call's buffers, the store's data.
#[derive(Debug)]
struct Ctx {
    address: Hash,
    /// The environment, once the host has given it.
    env: Option<Vec<u8>>,
    register: Option<Vec<u8>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    foreign: Foreign,
    events: Vec<(Hash, Vec<u8>)>,
    transfers: Vec<(Hash, TransferRequest)>,
    result: Vec<u8>,
    read_only: bool,
    limits: StoreLimits,
}

/// What a host function hands back to the runtime instead of an answer.
#[derive(Debug)]
enum Stop {
    /// Needs the chain: the runtime asks the `Host` and resumes the call.
    Suspend(Request),
    Fault(Fault),
}

#[derive(Debug)]
enum Request {
    Read(Vec<u8>),
    Next(Vec<u8>),
    Query(Vec<u8>),
    Call(Hash, Vec<u8>),
    Env,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Suspend(request) => write!(f, "suspended for {request:?}"),
            Stop::Fault(fault) => fault.fmt(f),
        }
    }
}

impl HostError for Stop {}

fn fault(fault: Fault) -> Error {
    Error::host(Stop::Fault(fault))
}

fn charge(caller: &mut Caller<'_, Ctx>, amount: u64) -> Result<(), Error> {
    let fuel = caller.get_fuel()?;
    if fuel < amount {
        caller.set_fuel(0)?;
        return Err(fault(Fault::OutOfFuel));
    }
    caller.set_fuel(fuel - amount)?;
    Ok(())
}

fn memory_of(caller: &Caller<'_, Ctx>) -> Result<wasmi::Memory, Error> {
    caller
        .get_export(MEMORY_EXPORT)
        .and_then(Extern::into_memory)
        .ok_or_else(|| fault(Fault::Trap("the module exports no memory".into())))
}

/// Reads `len` bytes at `ptr` of the contract's memory, at most `max`.
fn read_bytes(
    caller: &Caller<'_, Ctx>,
    ptr: i32,
    len: i32,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let len = usize::try_from(len)
        .map_err(|_| fault(Fault::Limit(format!("a negative {what} length"))))?;
    if len > max {
        return Err(fault(Fault::Limit(format!(
            "a {what} of {len} bytes, above {max}"
        ))));
    }
    let mut buffer = vec![0; len];
    memory_of(caller)?
        .read(caller, ptr as u32 as usize, &mut buffer)
        .map_err(|_| fault(Fault::Trap("memory access out of bounds".into())))?;
    Ok(buffer)
}

fn length(bytes: Option<&[u8]>) -> i32 {
    // Every register content is bounded well below i32::MAX.
    bytes.map_or(-1, |bytes| bytes.len() as i32)
}

fn host_linker(engine: &Engine) -> Result<Linker<Ctx>, wasmi::errors::LinkerError> {
    let mut linker = Linker::<Ctx>::new(engine);
    linker.func_wrap("env", "env", |mut caller: Caller<'_, Ctx>| {
        let Some(env) = caller.data().env.clone() else {
            charge(&mut caller, HOST_CALL_FUEL)?;
            return Err(Error::host(Stop::Suspend(Request::Env)));
        };
        charge(
            &mut caller,
            HOST_CALL_FUEL + env.len() as u64 * FUEL_PER_BYTE,
        )?;
        let len = env.len() as i32;
        caller.data_mut().register = Some(env);
        Ok(len)
    })?;
    linker.func_wrap(
        "env",
        "register_read",
        |mut caller: Caller<'_, Ctx>, ptr: i32| {
            let Some(register) = caller.data_mut().register.take() else {
                return Err(fault(Fault::Trap(
                    "register_read with an empty register".into(),
                )));
            };
            charge(
                &mut caller,
                HOST_CALL_FUEL + register.len() as u64 * FUEL_PER_BYTE,
            )?;
            memory_of(&caller)?
                .write(&mut caller, ptr as u32 as usize, &register)
                .map_err(|_| fault(Fault::Trap("memory access out of bounds".into())))?;
            Ok(())
        },
    )?;
    linker.func_wrap(
        "env",
        "db_read",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| {
            let key = read_bytes(&caller, ptr, len, KEY_BYTES_MAX, "key")?;
            charge(
                &mut caller,
                HOST_CALL_FUEL + key.len() as u64 * FUEL_PER_BYTE,
            )?;
            match caller.data().writes.get(&key).cloned() {
                Some(value) => {
                    charge(
                        &mut caller,
                        value.as_ref().map_or(0, |v| v.len() as u64) * FUEL_PER_BYTE,
                    )?;
                    let len = length(value.as_deref());
                    caller.data_mut().register = value;
                    Ok(len)
                }
                None => Err(Error::host(Stop::Suspend(Request::Read(key)))),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "db_write",
        |mut caller: Caller<'_, Ctx>, key_ptr: i32, key_len: i32, ptr: i32, len: i32| {
            if caller.data().read_only {
                return Err(fault(Fault::WriteInQuery));
            }
            let key = read_bytes(&caller, key_ptr, key_len, KEY_BYTES_MAX, "key")?;
            let value = read_bytes(&caller, ptr, len, VALUE_BYTES_MAX, "value")?;
            if key.is_empty() {
                return Err(fault(Fault::Limit("an empty key".into())));
            }
            charge(
                &mut caller,
                WRITE_FUEL + (key.len() + value.len()) as u64 * FUEL_PER_BYTE,
            )?;
            write(caller.data_mut(), key, Some(value))
        },
    )?;
    linker.func_wrap(
        "env",
        "db_remove",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| {
            if caller.data().read_only {
                return Err(fault(Fault::WriteInQuery));
            }
            let key = read_bytes(&caller, ptr, len, KEY_BYTES_MAX, "key")?;
            charge(&mut caller, WRITE_FUEL + key.len() as u64 * FUEL_PER_BYTE)?;
            write(caller.data_mut(), key, None)
        },
    )?;
    linker.func_wrap(
        "env",
        "db_next",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| -> Result<i32, Error> {
            let key = read_bytes(&caller, ptr, len, KEY_BYTES_MAX, "key")?;
            charge(
                &mut caller,
                HOST_CALL_FUEL + key.len() as u64 * FUEL_PER_BYTE,
            )?;
            Err(Error::host(Stop::Suspend(Request::Next(key))))
        },
    )?;
    linker.func_wrap(
        "env",
        "emit_event",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| {
            if caller.data().read_only {
                return Err(fault(Fault::WriteInQuery));
            }
            let event = read_bytes(&caller, ptr, len, EVENT_BYTES_MAX, "event")?;
            charge(
                &mut caller,
                HOST_CALL_FUEL + event.len() as u64 * FUEL_PER_BYTE,
            )?;
            if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&event).is_err()
            {
                return Err(fault(Fault::Limit(
                    "an event that is not a JSON object".into(),
                )));
            }
            let ctx = caller.data_mut();
            if ctx.events.len() >= EVENTS_PER_CALL_MAX {
                return Err(fault(Fault::Limit(format!(
                    "more than {EVENTS_PER_CALL_MAX} events"
                ))));
            }
            ctx.events.push((ctx.address, event));
            Ok(())
        },
    )?;
    linker.func_wrap(
        "env",
        "set_result",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| {
            let result = read_bytes(&caller, ptr, len, RESULT_BYTES_MAX, "result")?;
            charge(
                &mut caller,
                HOST_CALL_FUEL + result.len() as u64 * FUEL_PER_BYTE,
            )?;
            caller.data_mut().result = result;
            Ok(())
        },
    )?;
    linker.func_wrap(
        "env",
        "query_chain",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| -> Result<i32, Error> {
            let request = read_bytes(&caller, ptr, len, MESSAGE_BYTES_MAX, "query")?;
            charge(
                &mut caller,
                QUERY_FUEL + request.len() as u64 * FUEL_PER_BYTE,
            )?;
            Err(Error::host(Stop::Suspend(Request::Query(request))))
        },
    )?;
    linker.func_wrap(
        "env",
        "transfer",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| {
            if caller.data().read_only {
                return Err(fault(Fault::WriteInQuery));
            }
            let request = read_bytes(&caller, ptr, len, EVENT_BYTES_MAX, "transfer")?;
            charge(
                &mut caller,
                TRANSFER_FUEL + request.len() as u64 * FUEL_PER_BYTE,
            )?;
            let transfer: TransferRequest = serde_json::from_slice(&request)
                .map_err(|error| fault(Fault::Limit(format!("a malformed transfer: {error}"))))?;
            let ctx = caller.data_mut();
            if ctx.transfers.len() >= TRANSFERS_PER_CALL_MAX {
                return Err(fault(Fault::Limit(format!(
                    "more than {TRANSFERS_PER_CALL_MAX} transfers"
                ))));
            }
            ctx.transfers.push((ctx.address, transfer));
            Ok(())
        },
    )?;
    linker.func_wrap(
        "env",
        "call_contract",
        |mut caller: Caller<'_, Ctx>, ptr: i32, len: i32| -> Result<i32, Error> {
            let request = read_bytes(&caller, ptr, len, MESSAGE_BYTES_MAX, "call")?;
            charge(
                &mut caller,
                CALL_FUEL + request.len() as u64 * FUEL_PER_BYTE,
            )?;
            let call: CallRequest = serde_json::from_slice(&request)
                .map_err(|error| fault(Fault::Limit(format!("a malformed call: {error}"))))?;
            let msg = serde_json::to_vec(&call.msg).unwrap_or_default();
            Err(Error::host(Stop::Suspend(Request::Call(
                call.contract,
                msg,
            ))))
        },
    )?;
    linker.func_wrap(
        "env",
        "abort",
        |caller: Caller<'_, Ctx>, ptr: i32, len: i32| -> Result<(), Error> {
            let message = read_bytes(&caller, ptr, len.min(1_024), 1_024, "message")?;
            Err(fault(Fault::Abort(
                String::from_utf8_lossy(&message).into_owned(),
            )))
        },
    )?;
    Ok(linker)
}

fn write(ctx: &mut Ctx, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), Error> {
    if !ctx.writes.contains_key(&key) && ctx.writes.len() >= WRITES_PER_CALL_MAX {
        return Err(fault(Fault::Limit(format!(
            "more than {WRITES_PER_CALL_MAX} keys written"
        ))));
    }
    ctx.writes.insert(key, value);
    Ok(())
}

/// The engine, its host functions and the compiled-module cache. One per process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Ctx>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    modules: BTreeMap<Hash, Module>,
    order: VecDeque<Hash>,
}

/// The engine's configuration: fuel metering, eager compilation, and the features `validate`
/// allows and no more (no floats, SIMD, threads, 64-bit or multiple memories).
fn config() -> Config {
    let mut config = Config::default();
    config
        .consume_fuel(true)
        .compilation_mode(CompilationMode::Eager)
        .floats(false)
        .wasm_multi_memory(false)
        .wasm_tail_call(false)
        .wasm_extended_const(false)
        .wasm_custom_page_sizes(false)
        .wasm_wide_arithmetic(false)
        .set_max_recursion_depth(RECURSION_DEPTH_MAX);
    config
}

/// The process's runtime.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let engine = Engine::new(&config());
        // The host functions are fixed: defining them twice is a bug.
        let linker = host_linker(&engine).expect("host functions are defined once each");
        Runtime {
            engine,
            linker,
            cache: Mutex::new(Cache::default()),
        }
    })
}

/// A call to run.
#[derive(Debug)]
pub struct Call<'a> {
    pub code_hash: Hash,
    /// The contract being called: its state, events and transfers are its own.
    pub address: Hash,
    pub entry: Entry,
    pub message: &'a [u8],
    pub fuel: u64,
    pub memory_pages_max: u64,
}

impl Runtime {
    /// Validates `code` and compiles it, keeping the compiled module.
    pub fn check(&self, code: &[u8], limits: CodeLimits) -> Result<CodeFacts, CodeRefusal> {
        let facts = validate(code, limits)?;
        let module = Module::new(&self.engine, code)
            .map_err(|error| CodeRefusal::Invalid(error.to_string()))?;
        self.keep(medledger_crypto::sha256(code), module);
        Ok(facts)
    }

    fn keep(&self, hash: Hash, module: Module) {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if cache.modules.insert(hash, module).is_none() {
            cache.order.push_back(hash);
            while cache.order.len() > MODULES_CACHED_MAX {
                if let Some(old) = cache.order.pop_front() {
                    cache.modules.remove(&old);
                }
            }
        }
    }

    fn module(
        &self,
        hash: Hash,
        load: &mut dyn FnMut() -> Result<Vec<u8>, StateError>,
    ) -> Result<Result<Module, Fault>, StateError> {
        if let Some(module) = self
            .cache
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .modules
            .get(&hash)
        {
            return Ok(Ok(module.clone()));
        }
        let code = load()?;
        match Module::new(&self.engine, &code) {
            Ok(module) => {
                self.keep(hash, module.clone());
                Ok(Ok(module))
            }
            // Stored code passed the same check when it was stored.
            Err(error) => Ok(Err(Fault::Trap(format!(
                "the stored module does not compile: {error}"
            )))),
        }
    }

    /// Runs `call`. `load` reads the module's code if it is not cached. `Err` is only the host's
    /// own failure (state IO); everything the contract does is in the `Outcome`.
    pub fn call(
        &self,
        call: Call<'_>,
        load: &mut dyn FnMut() -> Result<Vec<u8>, StateError>,
        host: &mut dyn Host,
    ) -> Result<Outcome, StateError> {
        let ended = |end: End, fuel_used: u64, result: Vec<u8>| Outcome {
            end,
            fuel_used,
            result,
            writes: BTreeMap::new(),
            foreign: Foreign::new(),
            events: Vec::new(),
            transfers: Vec::new(),
        };
        let module = match self.module(call.code_hash, load)? {
            Ok(module) => module,
            Err(fault) => return Ok(ended(End::Fault(fault), 0, Vec::new())),
        };
        let memory_bytes =
            usize::try_from(call.memory_pages_max.saturating_mul(65_536)).unwrap_or(usize::MAX);
        let ctx = Ctx {
            address: call.address,
            env: None,
            register: None,
            writes: BTreeMap::new(),
            foreign: Foreign::new(),
            events: Vec::new(),
            transfers: Vec::new(),
            result: Vec::new(),
            read_only: call.entry == Entry::Query,
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .instances(1)
                .memories(1)
                .tables(1)
                .table_elements(TABLE_ELEMENTS_MAX)
                .build(),
        };
        let mut store = Store::new(&self.engine, ctx);
        store.limiter(|ctx| &mut ctx.limits);
        // Fuel metering is on in this engine's configuration.
        let _ = store.set_fuel(call.fuel);
        let run = run(&self.linker, &module, &mut store, &call, host)?;
        let left = store.get_fuel().unwrap_or(0);
        let fuel_used = call.fuel.saturating_sub(left);
        let ctx = store.into_data();
        Ok(match run {
            Ok(0) => Outcome {
                end: End::Done,
                fuel_used,
                result: ctx.result,
                writes: ctx.writes,
                foreign: ctx.foreign,
                events: ctx.events,
                transfers: ctx.transfers,
            },
            Ok(_) => ended(End::Refused, fuel_used, ctx.result),
            Err(fault) => ended(End::Fault(fault), fuel_used, Vec::new()),
        })
    }
}

/// Instantiates the module and runs the entry point, serving its suspensions.
fn run(
    linker: &Linker<Ctx>,
    module: &Module,
    store: &mut Store<Ctx>,
    call: &Call<'_>,
    host: &mut dyn Host,
) -> Result<Result<i32, Fault>, StateError> {
    let instance = match linker.instantiate_and_start(&mut *store, module) {
        Ok(instance) => instance,
        Err(error) => return Ok(Err(trap(error))),
    };
    let (Ok(allocate), Ok(entry)) = (
        instance.get_typed_func::<i32, i32>(&*store, "allocate"),
        instance.get_typed_func::<(i32, i32), i32>(&*store, call.entry.name()),
    ) else {
        return Ok(Err(Fault::Trap(format!(
            "the module has no {} entry point",
            call.entry.name()
        ))));
    };
    let len = call.message.len() as i32;
    let ptr = match drive(allocate.call_resumable(&mut *store, len), store, host)? {
        Ok(ptr) => ptr,
        Err(fault) => return Ok(Err(fault)),
    };
    let Some(memory) = instance.get_memory(&*store, MEMORY_EXPORT) else {
        return Ok(Err(Fault::Trap("the module exports no memory".into())));
    };
    if memory
        .write(&mut *store, ptr as u32 as usize, call.message)
        .is_err()
    {
        return Ok(Err(Fault::Trap(
            "allocate returned memory out of bounds".into(),
        )));
    }
    drive(entry.call_resumable(&mut *store, (ptr, len)), store, host)
}

fn trap(error: Error) -> Fault {
    if let Some(Stop::Fault(fault)) = error.downcast_ref::<Stop>() {
        return fault.clone();
    }
    if error.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) {
        return Fault::OutOfFuel;
    }
    match error.as_trap_code() {
        Some(code) => Fault::Trap(code.to_string()),
        None => Fault::Trap(error.to_string()),
    }
}

/// Runs a resumable call to its end, answering each suspension from `host`.
fn drive(
    mut step: Result<TypedResumableCall<i32>, Error>,
    store: &mut Store<Ctx>,
    host: &mut dyn Host,
) -> Result<Result<i32, Fault>, StateError> {
    loop {
        let suspended = match step {
            Ok(TypedResumableCall::Finished(value)) => return Ok(Ok(value)),
            Ok(TypedResumableCall::OutOfFuel(_)) => return Ok(Err(Fault::OutOfFuel)),
            Ok(TypedResumableCall::HostTrap(suspended)) => suspended,
            Err(error) => return Ok(Err(trap(error))),
        };
        let answer = match suspended.host_error().downcast_ref::<Stop>() {
            Some(Stop::Suspend(request)) => serve(request, store, host)?,
            Some(Stop::Fault(fault)) => return Ok(Err(fault.clone())),
            None => return Ok(Err(Fault::Trap(suspended.host_error().to_string()))),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(fault) => return Ok(Err(fault)),
        };
        step = suspended.resume(&mut *store, &[Val::I32(answer)]);
    }
}

fn spend(store: &mut Store<Ctx>, amount: u64) -> Result<(), Fault> {
    let fuel = store.get_fuel().unwrap_or(0);
    if fuel < amount {
        let _ = store.set_fuel(0);
        return Err(Fault::OutOfFuel);
    }
    let _ = store.set_fuel(fuel - amount);
    Ok(())
}

/// Answers one suspension: the register's new content and the host function's return value.
fn serve(
    request: &Request,
    store: &mut Store<Ctx>,
    host: &mut dyn Host,
) -> Result<Result<i32, Fault>, StateError> {
    let value = match request {
        Request::Read(key) => {
            let value = host.read(key)?;
            let bytes = value.as_ref().map_or(0, Vec::len) as u64;
            if let Err(fault) = spend(store, READ_FUEL + bytes * FUEL_PER_BYTE) {
                return Ok(Err(fault));
            }
            value
        }
        Request::Next(after) => {
            let next = next_key(after, &store.data().writes, host)?;
            if let Err(fault) = spend(store, READ_FUEL) {
                return Ok(Err(fault));
            }
            next
        }
        Request::Query(request) => {
            let answer = host.query(request)?;
            if answer.len() > MESSAGE_BYTES_MAX {
                return Ok(Err(Fault::Limit("a query answer above the limit".into())));
            }
            if let Err(fault) = spend(store, answer.len() as u64 * FUEL_PER_BYTE) {
                return Ok(Err(fault));
            }
            Some(answer)
        }
        Request::Env => {
            let env = host.env()?;
            if let Err(fault) = spend(store, env.len() as u64 * FUEL_PER_BYTE) {
                return Ok(Err(fault));
            }
            store.data_mut().env = Some(env.clone());
            Some(env)
        }
        Request::Call(contract, msg) => {
            let entry = if store.data().read_only {
                Entry::Query
            } else {
                Entry::Execute
            };
            let fuel = store.get_fuel().unwrap_or(0);
            let outcome = host.call(*contract, msg, entry, fuel, &store.data().foreign)?;
            if let Err(fault) = spend(store, outcome.fuel_used) {
                return Ok(Err(fault));
            }
            match outcome.end {
                End::Done => {
                    let ctx = store.data_mut();
                    for (key, value) in outcome.writes {
                        ctx.foreign.insert((*contract, key), value);
                    }
                    ctx.foreign.extend(outcome.foreign);
                    ctx.events.extend(outcome.events);
                    ctx.transfers.extend(outcome.transfers);
                    if ctx.writes.len() + ctx.foreign.len() > WRITES_PER_CALL_MAX
                        || ctx.events.len() > EVENTS_PER_CALL_MAX
                        || ctx.transfers.len() > TRANSFERS_PER_CALL_MAX
                    {
                        return Ok(Err(Fault::Limit(
                            "the calls it made passed the call's limits".into(),
                        )));
                    }
                    Some(envelope("ok", &outcome.result))
                }
                // A refusal is the caller's to handle.
                End::Refused => Some(envelope("refused", &outcome.result)),
                End::Fault(fault) => return Ok(Err(fault)),
            }
        }
    };
    let len = length(value.as_deref());
    store.data_mut().register = value;
    Ok(Ok(len))
}

/// What `call_contract` puts in the register: `{"ok": <the callee's answer>}` or
/// `{"refused": <its reason>}`, the answer as JSON if it is JSON, else as a string.
fn envelope(what: &str, answer: &[u8]) -> Vec<u8> {
    let answer = serde_json::from_slice::<serde_json::Value>(answer).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(answer).into_owned())
    });
    serde_json::to_vec(&serde_json::json!({ what: answer })).unwrap_or_default()
}

/// The first key after `after` as the call sees it: the committed keys less those it removed,
/// with those it wrote.
fn next_key(
    after: &[u8],
    writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    host: &mut dyn Host,
) -> Result<Option<Vec<u8>>, StateError> {
    let written = writes
        .range::<[u8], _>((Bound::Excluded(after), Bound::Unbounded))
        .find(|(_, value)| value.is_some())
        .map(|(key, _)| key.clone());
    let mut cursor = after.to_vec();
    let committed = loop {
        match host.next_key(&cursor)? {
            Some(key) if matches!(writes.get(&key), Some(None)) => cursor = key,
            other => break other,
        }
    };
    Ok(match (written, committed) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(committed: &[&str], writes: &[(&str, Option<&str>)], expected: &[&str]) {
        let mut host = crate::harness::MapHost {
            state: committed
                .iter()
                .map(|key| (key.as_bytes().to_vec(), b"v".to_vec()))
                .collect(),
            ..Default::default()
        };
        let writes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = writes
            .iter()
            .map(|(key, value)| {
                (
                    key.as_bytes().to_vec(),
                    value.map(|v| v.as_bytes().to_vec()),
                )
            })
            .collect();
        let mut seen = Vec::new();
        let mut cursor = Vec::new();
        while let Some(key) = next_key(&cursor, &writes, &mut host).expect("host") {
            seen.push(String::from_utf8(key.clone()).expect("utf8"));
            cursor = key;
        }
        assert_eq!(seen, expected, "{committed:?} with {writes:?}");
    }

    #[test]
    fn ranging_merges_the_calls_writes_and_removals_with_the_committed_keys() {
        check(&["a", "c", "e"], &[], &["a", "c", "e"]);
        check(
            &["a", "c", "e"],
            &[("b", Some("1")), ("f", Some("1"))],
            &["a", "b", "c", "e", "f"],
        );
        check(&["a", "c", "e"], &[("a", None), ("c", None)], &["e"]);
        check(&["a", "c"], &[("a", None), ("c", None)], &[]);
        check(&[], &[("x", Some("1")), ("y", None)], &["x"]);
        check(&["a"], &[("a", Some("new"))], &["a"]);
    }
}
