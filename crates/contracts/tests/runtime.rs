//! Tests of validation and of the runtime alone: what is refused at deployment and why, and what a
//! call does with fuel, traps, limits, the host's state and its own writes.

use medledger_contracts::harness::MapHost;
use medledger_contracts::runtime::{
    Call, End, Entry, Fault, Outcome, READ_FUEL, WRITE_FUEL, runtime,
};
use medledger_contracts::validate::{CodeLimits, validate};
use medledger_crypto::sha256;

const LIMITS: CodeLimits = CodeLimits {
    code_bytes_max: 512 * 1024,
    memory_pages_max: 16,
};

fn probe() -> Vec<u8> {
    wat::parse_file(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/probe.wat")).expect("wat")
}

fn call_with(code: &[u8], entry: Entry, msg: &str, fuel: u64, host: &mut MapHost) -> Outcome {
    let facts = runtime().check(code, LIMITS).expect("valid");
    assert!(facts.migrates);
    let hash = sha256(code);
    let mut load = || Ok(code.to_vec());
    runtime()
        .call(
            Call {
                code_hash: hash,
                address: medledger_crypto::Hash([1; 32]),
                entry,
                message: msg.as_bytes(),
                fuel,
                memory_pages_max: 16,
            },
            &mut load,
            host,
        )
        .expect("host never fails here")
}

fn call(msg: &str, host: &mut MapHost) -> Outcome {
    call_with(&probe(), Entry::Execute, msg, 1_000_000, host)
}

fn refusal(wat: &str) -> String {
    let code = wat::parse_str(wat).expect("wat");
    validate(&code, LIMITS)
        .expect_err("refused")
        .code()
        .to_string()
}

const EXPORTS: &str = r#"
  (memory (export "memory") 1)
  (func (export "allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "instantiate") (param i32 i32) (result i32) (i32.const 0))
  (func (export "execute") (param i32 i32) (result i32) (i32.const 0))
  (func (export "query") (param i32 i32) (result i32) (i32.const 0))"#;

#[test]
fn modules_that_would_break_determinism_or_bounds_are_refused_with_the_reason() {
    let module = |body: &str| format!("(module {body} {EXPORTS})");
    assert!(validate(&wat::parse_str(module("")).expect("wat"), LIMITS).is_ok());
    for (wat, code) in [
        // A float instruction, a float in a signature, a float local and a float global.
        (
            module("(func (result i32) (i32.trunc_f32_s (f32.add (f32.const 1) (f32.const 2))))"),
            "code_floating_point",
        ),
        (module("(func (param f64))"), "code_floating_point"),
        (module("(func (local f32))"), "code_floating_point"),
        (module("(global f64 (f64.const 0))"), "code_floating_point"),
        // Imports the host does not offer, or offers otherwise.
        (
            module(r#"(import "env" "clock" (func))"#),
            "code_unknown_import",
        ),
        (
            module(
                r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            ),
            "code_unknown_import",
        ),
        (
            module(r#"(import "env" "db_read" (func (param i32) (result i32)))"#),
            "code_import_signature",
        ),
        (
            module(r#"(import "env" "g" (global i32))"#),
            "code_import_kind",
        ),
        // A start function that does work.
        (
            module(
                "(global $g (mut i32) (i32.const 0)) (func $s (global.set $g (i32.const 1))) (start $s)",
            ),
            "code_start_function",
        ),
        // A missing entry point, and one with another signature.
        (
            r#"(module (memory (export "memory") 1)
                 (func (export "allocate") (param i32) (result i32) (i32.const 0)))"#
                .to_string(),
            "code_missing_export",
        ),
        (
            module("").replace(
                r#"(func (export "query") (param i32 i32) (result i32) (i32.const 0))"#,
                r#"(func (export "query") (param i32) (result i32) (i32.const 0))"#,
            ),
            "code_missing_export",
        ),
    ] {
        assert_eq!(refusal(&wat), code, "{wat}");
    }
    // Threads: shared memory.
    let shared = EXPORTS.replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 1 1 shared)"#,
    );
    assert_eq!(refusal(&format!("(module {shared})")), "code_threads");
    // Memory above the limit, and no memory at all.
    let large = EXPORTS.replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 17)"#,
    );
    assert_eq!(
        refusal(&format!("(module {large})")),
        "code_memory_too_large"
    );
    let none = EXPORTS.replace(r#"(memory (export "memory") 1)"#, "");
    assert_eq!(refusal(&format!("(module {none})")), "code_memory");
    // An empty start function does no work and is allowed.
    let quiet = module("(func $s) (start $s)");
    assert!(validate(&wat::parse_str(&quiet).expect("wat"), LIMITS).is_ok());
    // Size, and bytes that are not WebAssembly.
    let code = probe();
    let small = CodeLimits {
        code_bytes_max: code.len() as u64 - 1,
        ..LIMITS
    };
    assert_eq!(
        validate(&code, small).expect_err("big").code(),
        "code_too_large"
    );
    assert_eq!(
        validate(b"\0asm\x01\0\0\0garbage", LIMITS)
            .expect_err("bad")
            .code(),
        "code_invalid"
    );
    assert_eq!(
        validate(b"", LIMITS).expect_err("empty").code(),
        "code_invalid"
    );
}

#[test]
fn a_call_writes_reads_its_own_writes_and_reads_the_host() {
    let mut host = MapHost::default();
    let wrote = call(r#""w1""#, &mut host);
    assert_eq!(wrote.end, End::Done);
    assert_eq!(
        wrote.writes.get(b"k".as_slice()),
        Some(&Some(br#""w1""#.to_vec()))
    );
    // Nothing reaches the host until the caller keeps the writes.
    assert!(host.state.is_empty());
    host.state.insert(b"k".to_vec(), b"stored".to_vec());
    let read = call(r#""r""#, &mut host);
    assert_eq!(read.end, End::Done);
    assert_eq!(read.result, b"stored");
    assert!(read.writes.is_empty());
    // The environment and chain queries reach the contract as the host gives them; the host is
    // asked for the environment only by a call that reads it, and a call that does not costs less.
    host.env = br#"{"block":{"height":7}}"#.to_vec();
    let with_env = call(r#""v""#, &mut host);
    assert_eq!(with_env.result, br#"{"block":{"height":7}}"#);
    let without = call(r#""0""#, &mut host);
    assert!(with_env.fuel_used > without.fuel_used);
    assert_eq!(
        call(r#""q""#, &mut host).result,
        br#"{"organisation":{"id":"a"}}"#
    );
    // Reads cost fuel for the tree lookup and the bytes.
    let empty = call(r#""0""#, &mut host);
    assert!(read.fuel_used > empty.fuel_used + READ_FUEL);
}

#[test]
fn ranging_walks_the_committed_keys_in_order() {
    let mut host = MapHost::default();
    host.state.insert(b"k".to_vec(), b"1".to_vec());
    host.state.insert(b"z".to_vec(), b"2".to_vec());
    assert_eq!(call(r#""n""#, &mut host).result, b"k");
    assert_eq!(call(r#""N""#, &mut host).result, b"z");
    // Past the last key there is none. (How a call's own writes and removals merge with the
    // committed keys is the runtime's unit test `ranging_merges_the_calls_writes_and_removals_...`,
    // and the ledger's `ranging_walks_every_key_through_the_index`.)
    host.state.remove(b"z".as_slice());
    assert_eq!(call(r#""N""#, &mut host).result, b"");
}

#[test]
fn a_refusal_keeps_its_reason_and_no_writes() {
    let mut host = MapHost::default();
    let refused = call(r#""x""#, &mut host);
    assert_eq!(refused.end, End::Refused);
    assert_eq!(refused.result, b"denied");
    assert!(refused.writes.is_empty());
}

#[test]
fn faults_stop_the_call_and_discard_its_writes() {
    let mut host = MapHost::default();
    for (msg, fault) in [
        (r#""l""#, Fault::OutOfFuel),
        (
            r#""t""#,
            Fault::Trap("wasm `unreachable` instruction executed".into()),
        ),
        (
            r#""g""#,
            Fault::Trap("wasm `unreachable` instruction executed".into()),
        ),
        (r#""a""#, Fault::Abort("no".into())),
        (r#""o""#, Fault::Trap("memory access out of bounds".into())),
    ] {
        let outcome = call(msg, &mut host);
        match (&outcome.end, &fault) {
            (End::Fault(Fault::Trap(got)), Fault::Trap(_)) => {
                assert!(!got.is_empty(), "{msg}: {got}")
            }
            (got, want) => assert_eq!(got, &End::Fault(want.clone()), "{msg}"),
        }
        assert!(
            outcome.writes.is_empty() && outcome.events.is_empty(),
            "{msg}"
        );
    }
    // Running out of fuel uses exactly the fuel given, and the same fuel every time.
    let first = call_with(&probe(), Entry::Execute, r#""l""#, 50_000, &mut host);
    let second = call_with(&probe(), Entry::Execute, r#""l""#, 50_000, &mut host);
    assert_eq!(first.fuel_used, 50_000);
    assert_eq!(first, second);
    // Endless recursion stops at the runtime's depth bound, as a trap.
    let deep = call(r#""b""#, &mut host);
    assert!(matches!(deep.end, End::Fault(Fault::Trap(_))), "{deep:?}");
    // A write costs its fuel even when the fuel runs out on it.
    let starved = call_with(
        &probe(),
        Entry::Execute,
        r#""w""#,
        WRITE_FUEL / 2,
        &mut host,
    );
    assert_eq!(starved.end, End::Fault(Fault::OutOfFuel));
}

#[test]
fn memory_grows_only_to_the_limit() {
    let mut host = MapHost::default();
    // 1 page + 100 is above the 16-page limit: memory.grow answers -1 and the call goes on.
    let grown = call(r#""p""#, &mut host);
    assert_eq!(grown.end, End::Done);
    assert_eq!(grown.result, b"");
}

#[test]
fn a_query_may_not_write_or_emit() {
    let mut host = MapHost::default();
    for msg in [r#""w""#, r#""d""#, r#""e""#] {
        let outcome = call_with(&probe(), Entry::Query, msg, 1_000_000, &mut host);
        assert_eq!(outcome.end, End::Fault(Fault::WriteInQuery), "{msg}");
    }
    let read = call_with(&probe(), Entry::Query, r#""r""#, 1_000_000, &mut host);
    assert_eq!(read.end, End::Done);
}

#[test]
fn events_are_kept_in_order_with_a_done_call() {
    let mut host = MapHost::default();
    let outcome = call(r#""e""#, &mut host);
    assert_eq!(outcome.end, End::Done);
    assert_eq!(
        outcome.events,
        vec![(
            medledger_crypto::Hash([1; 32]),
            br#"{"kind":"probe"}"#.to_vec()
        )]
    );
}

#[test]
fn the_cache_changes_no_result() {
    // The same call, compiled fresh (a new module each time by a changed custom section) and
    // cached, uses the same fuel and gives the same outcome.
    let mut host = MapHost::default();
    host.state.insert(b"k".to_vec(), b"v".to_vec());
    let cached = call(r#""r""#, &mut host);
    let again = call(r#""r""#, &mut host);
    assert_eq!(cached, again);
    let mut fresh = probe();
    // A custom section changes the hash, not the behaviour.
    fresh.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    let fresh_outcome = call_with(&fresh, Entry::Execute, r#""r""#, 1_000_000, &mut host);
    assert_eq!(fresh_outcome, cached);
}
