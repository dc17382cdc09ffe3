//! The interface between a contract and the host, version 1: the functions a contract exports
//! (its entry points) and the host functions it may import from module `env`. `contracts/
//! INTERFACE.md` documents both for contract authors; this file is what the node enforces.

use wasmparser::ValType;

/// The interface version a deployed module is checked and run against.
pub const INTERFACE_VERSION: u32 = 1;

/// The exported memory the host reads and writes.
pub const MEMORY_EXPORT: &str = "memory";

/// A function the contract exports.
#[derive(Clone, Copy, Debug)]
pub struct EntryPoint {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
    pub required: bool,
}

/// A function the host offers.
#[derive(Clone, Copy, Debug)]
pub struct HostFunction {
    pub name: &'static str,
    pub params: &'static [ValType],
    pub results: &'static [ValType],
}

const I32: ValType = ValType::I32;

/// `allocate(len) -> ptr` gives the host room for a message; the other entry points take the
/// message `(ptr, len)` and answer 0 (done) or any other value (refused, with the reason given by
/// `set_result`).
pub const ENTRY_POINTS: &[EntryPoint] = &[
    EntryPoint {
        name: "allocate",
        params: &[I32],
        results: &[I32],
        required: true,
    },
    EntryPoint {
        name: "instantiate",
        params: &[I32, I32],
        results: &[I32],
        required: true,
    },
    EntryPoint {
        name: "execute",
        params: &[I32, I32],
        results: &[I32],
        required: true,
    },
    EntryPoint {
        name: "query",
        params: &[I32, I32],
        results: &[I32],
        required: true,
    },
    EntryPoint {
        name: "migrate",
        params: &[I32, I32],
        results: &[I32],
        required: false,
    },
];

/// The host functions. A function that answers with bytes puts them in the call's one register and
/// returns their length (or -1 for none); `register_read(ptr)` copies the register into memory.
pub const HOST_FUNCTIONS: &[HostFunction] = &[
    // () -> len: the call's environment as JSON (chain, block, contract, caller).
    HostFunction {
        name: "env",
        params: &[],
        results: &[I32],
    },
    // (ptr): copies the register to memory.
    HostFunction {
        name: "register_read",
        params: &[I32],
        results: &[],
    },
    // (key_ptr, key_len) -> len or -1
    HostFunction {
        name: "db_read",
        params: &[I32, I32],
        results: &[I32],
    },
    // (key_ptr, key_len, value_ptr, value_len)
    HostFunction {
        name: "db_write",
        params: &[I32, I32, I32, I32],
        results: &[],
    },
    // (key_ptr, key_len)
    HostFunction {
        name: "db_remove",
        params: &[I32, I32],
        results: &[],
    },
    // (key_ptr, key_len) -> len or -1: the contract's first key after the given one (an empty key
    // starts from the beginning).
    HostFunction {
        name: "db_next",
        params: &[I32, I32],
        results: &[I32],
    },
    // (ptr, len): an event, a JSON object.
    HostFunction {
        name: "emit_event",
        params: &[I32, I32],
        results: &[],
    },
    // (ptr, len): the call's answer (or, from a refusal, its reason).
    HostFunction {
        name: "set_result",
        params: &[I32, I32],
        results: &[],
    },
    // (ptr, len) -> len: a read-only query of the chain (JSON in, JSON out).
    HostFunction {
        name: "query_chain",
        params: &[I32, I32],
        results: &[I32],
    },
    // (ptr, len): a token transfer out of the contract's own account, made through the token
    // module's checks if the call ends well (JSON: symbol, to, amount, reason).
    HostFunction {
        name: "transfer",
        params: &[I32, I32],
        results: &[],
    },
    // (ptr, len) -> len: calls another contract (JSON: contract, msg); the register holds
    // {"ok": answer} or {"refused": reason}. A fault of the callee is the caller's.
    HostFunction {
        name: "call_contract",
        params: &[I32, I32],
        results: &[I32],
    },
    // (ptr, len): stops the call with a message; nothing it wrote is kept.
    HostFunction {
        name: "abort",
        params: &[I32, I32],
        results: &[],
    },
];
