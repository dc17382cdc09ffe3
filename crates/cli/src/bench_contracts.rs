//! `medledger module bench-contracts`: the contract runtime measured in process, without the
//! network, signatures or disk: fuel and time per host call, the time to store and deploy a
//! 100 KiB module, and contract calls executed per second beside native token transfers in the
//! same run (the ledger's execution alone; `medledger bench --workload contract` measures a node).
#![allow(clippy::disallowed_methods)] // Instant::now: a benchmark measures wall time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use medledger_contracts::harness::{LIMITS, MapHost};
use medledger_contracts::runtime::{Call, End, Entry, runtime};
use medledger_contracts::{ContractsOp, validate};
use medledger_crypto::{Hash, SecretKey, sha256};
use medledger_ledger::testkit::{Chain, rejected};
use medledger_ledger::{CoreOp, TxBody};
use medledger_types::Role;

#[derive(Args)]
pub struct ContractsBenchArgs {
    /// Transactions per block in the execution comparison.
    #[arg(long, default_value_t = 2_000)]
    txs: usize,
    /// Host calls per measured call.
    #[arg(long, default_value_t = 10_000)]
    calls: u32,
}

/// A module whose `execute` makes `body` `count` times in a loop (`body` leaves nothing on the
/// stack), with key "k" at 0, a 32-byte value at 16 and JSON at 64.
fn looping(count: u32, body: &str) -> Result<Vec<u8>> {
    let text = format!(
        r#"(module
  (import "env" "env" (func $env (result i32)))
  (import "env" "register_read" (func $register_read (param i32)))
  (import "env" "db_read" (func $db_read (param i32 i32) (result i32)))
  (import "env" "db_write" (func $db_write (param i32 i32 i32 i32)))
  (import "env" "db_next" (func $db_next (param i32 i32) (result i32)))
  (import "env" "emit_event" (func $emit_event (param i32 i32)))
  (import "env" "query_chain" (func $query_chain (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "k")
  (data (i32.const 16) "0123456789abcdef0123456789abcdef")
  (data (i32.const 64) "{{\"member\":{{\"key\":\"00\"}}}}")
  (func (export "allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "instantiate") (param i32 i32) (result i32) (i32.const 0))
  (func (export "query") (param i32 i32) (result i32) (i32.const 0))
  (func (export "execute") (param i32 i32) (result i32)
    (local $i i32)
    (block $done (loop $again
      (br_if $done (i32.ge_u (local.get $i) (i32.const {count})))
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $again)))
    (i32.const 0)))"#
    );
    wat::parse_str(text).context("a benchmark module")
}

/// Runs `execute` of `code` `runs` times; answers (the fastest wall time, fuel used).
fn measure(code: &[u8], host: &mut MapHost, runs: usize) -> Result<(Duration, u64)> {
    runtime()
        .check(code, LIMITS)
        .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
    let code_hash = sha256(code);
    let mut best = Duration::MAX;
    let mut fuel = 0;
    for _ in 0..runs {
        let mut load = || Ok(code.to_vec());
        let started = Instant::now();
        let outcome = runtime().call(
            Call {
                code_hash,
                address: Hash([9; 32]),
                entry: Entry::Execute,
                message: b"{}",
                fuel: 10_000_000_000,
                memory_pages_max: LIMITS.memory_pages_max,
            },
            &mut load,
            host,
        )?;
        best = best.min(started.elapsed());
        if outcome.end != End::Done {
            bail!("a benchmark call ended {:?}", outcome.end);
        }
        fuel = outcome.fuel_used;
    }
    Ok((best, fuel))
}

fn host_calls(calls: u32) -> Result<()> {
    let mut host = MapHost::default();
    host.state.insert(b"k".to_vec(), vec![7; 32]);
    let (base_time, base_fuel) = measure(&looping(calls, "")?, &mut host, 5)?;
    println!(
        "host call                      fuel/call   ns/call   (loop of {calls}; the loop itself subtracted)"
    );
    for (name, count, body) in [
        (
            "env + register_read (~60 B)",
            calls,
            "(call $register_read (i32.const 1024) (drop (call $env)))",
        ),
        (
            "db_read, a 32 B value",
            calls,
            "(drop (call $db_read (i32.const 0) (i32.const 1)))",
        ),
        (
            "db_read, no value",
            calls,
            "(drop (call $db_read (i32.const 16) (i32.const 8)))",
        ),
        (
            "db_write, 1 B key, 32 B value",
            calls,
            "(call $db_write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 32))",
        ),
        (
            "db_next",
            calls,
            "(drop (call $db_next (i32.const 0) (i32.const 0)))",
        ),
        (
            "query_chain, 23 B",
            calls,
            "(drop (call $query_chain (i32.const 64) (i32.const 23)))",
        ),
        (
            "emit_event, 23 B (64 a call)",
            60,
            "(call $emit_event (i32.const 64) (i32.const 23))",
        ),
    ] {
        let (base_time, base_fuel) = if count == calls {
            (base_time, base_fuel)
        } else {
            measure(&looping(count, "")?, &mut host, 5)?
        };
        let (time, fuel) = measure(&looping(count, body)?, &mut host, 5)?;
        let per_fuel = fuel.saturating_sub(base_fuel) / u64::from(count);
        let per_ns = time.saturating_sub(base_time).as_nanos() / u128::from(count);
        println!("{name:<30} {per_fuel:>9} {per_ns:>9}");
    }
    let per_instruction = base_time.as_nanos() as f64 / base_fuel.max(1) as f64;
    println!(
        "the loop alone: {base_fuel} fuel in {:.2} ms ({per_instruction:.2} ns per unit of fuel)",
        base_time.as_secs_f64() * 1e3
    );
    Ok(())
}

/// A module of about `bytes` of code: many small functions, each a chain of arithmetic.
fn large_module(bytes: usize) -> Result<Vec<u8>> {
    let mut functions = String::new();
    let mut size = 0;
    let mut n = 0;
    while size < bytes {
        let mut body = String::from("(local.get 0)");
        for k in 0..40 {
            body = format!(
                "(i32.add (i32.mul {body} (i32.const {})) (i32.const {k}))",
                n + k
            );
        }
        functions.push_str(&format!(
            "(func (export \"f{n}\") (param i32) (result i32) {body})\n"
        ));
        size += 40 * 6 + 12;
        n += 1;
    }
    let text = format!(
        r#"(module (memory (export "memory") 1)
  (func (export "allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "instantiate") (param i32 i32) (result i32) (i32.const 0))
  (func (export "execute") (param i32 i32) (result i32) (i32.const 0))
  (func (export "query") (param i32 i32) (result i32) (i32.const 0))
  {functions})"#
    );
    wat::parse_str(text).context("the large module")
}

fn deploy_large() -> Result<()> {
    let code = large_module(100 * 1024)?;
    let started = Instant::now();
    let facts = validate::validate(&code, LIMITS).map_err(|r| anyhow::anyhow!("{r}"))?;
    let validated = started.elapsed();
    let started = Instant::now();
    runtime()
        .check(&code, LIMITS)
        .map_err(|r| anyhow::anyhow!("{r}"))?;
    let checked = started.elapsed();
    let mut chain = Chain::new();
    let started = Instant::now();
    chain.deploy_contract(&code, "large", "{}");
    let deployed = started.elapsed();
    println!(
        "a {} KiB module: validation {:.1} ms, validation and compilation {:.1} ms; stored in {} parts and deployed by governance through the ledger (in memory): {:.1} ms",
        facts.size / 1024,
        validated.as_secs_f64() * 1e3,
        checked.as_secs_f64() * 1e3,
        facts
            .size
            .div_ceil(medledger_contracts::PART_BYTES_MAX as u64),
        deployed.as_secs_f64() * 1e3,
    );
    Ok(())
}

/// The contract the execution comparison calls: it reads a counter, writes it back plus one and
/// emits an event: a read, a write and an event, what a simple call does.
fn counter() -> Result<Vec<u8>> {
    wat::parse_str(
        r#"(module
  (import "env" "db_read" (func $db_read (param i32 i32) (result i32)))
  (import "env" "register_read" (func $register_read (param i32)))
  (import "env" "db_write" (func $db_write (param i32 i32 i32 i32)))
  (import "env" "emit_event" (func $emit_event (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (data (i32.const 64) "{\"incremented\":1}")
  (func (export "allocate") (param i32) (result i32) (i32.const 4096))
  (func (export "instantiate") (param i32 i32) (result i32) (i32.const 0))
  (func (export "query") (param i32 i32) (result i32) (i32.const 0))
  (func (export "execute") (param i32 i32) (result i32)
    (if (i32.ge_s (call $db_read (i32.const 0) (i32.const 5)) (i32.const 0))
      (then (call $register_read (i32.const 32))))
    (i64.store (i32.const 32) (i64.add (i64.load (i32.const 32)) (i64.const 1)))
    (call $db_write (i32.const 0) (i32.const 5) (i32.const 32) (i32.const 8))
    (call $emit_event (i32.const 64) (i32.const 17))
    (i32.const 0)))"#,
    )
    .context("the counter")
}

fn execution(txs: usize) -> Result<()> {
    use medledger_tokens::{Amount, ClassSpec, Reason, TokensOp};
    let mut chain = Chain::new();
    let (org_a, org_b) = (chain.org_a.clone(), chain.org_b.clone());
    let senders: Vec<SecretKey> = (0..txs as u64)
        .map(|i| SecretKey::from_seed(10_000 + i))
        .collect();
    // Enrol the senders and fund them, in blocks of consecutive nonces from org a.
    let signed = |key: &SecretKey, first: u64, payloads: Vec<medledger_ledger::Payload>| {
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                TxBody {
                    chain_id: "test".into(),
                    sender: key.public_key(),
                    nonce: first + i as u64,
                    payload,
                }
                .sign(key)
            })
            .collect::<Vec<_>>()
    };
    let propose = chain.tx(
        &org_a,
        TokensOp::ProposeClass {
            spec: ClassSpec {
                symbol: "USD".into(),
                name: "Dollar".into(),
                decimals: 2,
                issuers: vec!["a".into()],
            },
        },
    );
    chain.one(propose);
    let approve = chain.tx(
        &org_b,
        TokensOp::ApproveClass {
            symbol: "USD".into(),
        },
    );
    chain.one(approve);
    let nonce = |chain: &Chain, key: &SecretKey| {
        medledger_ledger::next_nonce(
            &medledger_state::Snapshot {
                reader: &chain.tree,
                version: Some(chain.height),
            },
            &key.public_key(),
        )
    };
    let first = nonce(&chain, &org_a)?;
    let mut setup: Vec<medledger_ledger::Payload> = Vec::new();
    for sender in &senders {
        setup.push(
            CoreOp::Enrol {
                member: sender.public_key(),
                role: Role::Patient,
            }
            .into(),
        );
        setup.push(
            TokensOp::Mint {
                symbol: "USD".into(),
                to: sender.public_key(),
                amount: Amount(1_000_000),
                reference: None,
            }
            .into(),
        );
    }
    let txs_setup = signed(&org_a, first, setup);
    let (outcomes, _) = chain.block(&txs_setup)?;
    if outcomes.iter().any(|o| rejected(o) != "committed") {
        bail!("setting up the senders failed");
    }
    let contract = chain.deploy_contract(&counter()?, "counter", "{}");
    let transfers: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, sender)| {
            TxBody {
                chain_id: "test".into(),
                sender: sender.public_key(),
                nonce: 1,
                payload: TokensOp::Transfer {
                    symbol: "USD".into(),
                    to: senders[(i + 1) % senders.len()].public_key(),
                    amount: Amount(1),
                    reason: Reason::Transfer,
                    reference: None,
                }
                .into(),
            }
            .sign(sender)
        })
        .collect();
    let calls: Vec<_> = senders
        .iter()
        .map(|sender| {
            TxBody {
                chain_id: "test".into(),
                sender: sender.public_key(),
                nonce: 2,
                payload: ContractsOp::ExecuteContract {
                    contract,
                    msg: "{}".into(),
                }
                .into(),
            }
            .sign(sender)
        })
        .collect();
    let started = Instant::now();
    let (outcomes, _) = chain.block(&transfers)?;
    let transfer_time = started.elapsed();
    if outcomes.iter().any(|o| rejected(o) != "committed") {
        bail!("a transfer was refused");
    }
    let started = Instant::now();
    let (outcomes, _) = chain.block(&calls)?;
    let call_time = started.elapsed();
    if let Some(refused) = outcomes.iter().find(|o| rejected(o) != "committed") {
        bail!("a call was refused: {refused:?}");
    }
    let rate = |time: Duration| txs as f64 / time.as_secs_f64();
    println!(
        "{txs} transactions in one block, executed and committed to an in-memory tree: native token transfers {:.0}/s, contract calls (a read, a write, an event) {:.0}/s, {:.2} of the transfer rate",
        rate(transfer_time),
        rate(call_time),
        rate(call_time) / rate(transfer_time)
    );
    Ok(())
}

pub fn run(args: ContractsBenchArgs) -> Result<()> {
    if args.txs == 0 || args.calls == 0 {
        bail!("--txs and --calls must be positive");
    }
    host_calls(args.calls)?;
    deploy_large()?;
    execution(args.txs)?;
    Ok(())
}
