//! `medledger bench-supply`: measures the supply chain through the node's real API, as a
//! packaging line and a pharmacy's scanners would drive it.
//!
//! 1. Commissioning: `--units` serialised units in lots of `--lot-size`, 2,500 per transaction,
//!    signed by a manufacturer and submitted in pipelined batches. Reports units per second, each
//!    committed on chain.
//! 2. Verification: signed scans of random commissioned units at a fixed offered rate (open
//!    loop). Reports p50 and p99.
//! 3. Recall report: the report of one lot, timed from request to the last byte received.
//!
//! Run it several times with `--skip-commission` off to grow the chain; each run adds lots with
//! fresh names (from `--seed`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use medledger_api::auth::AccessHeaders;
use medledger_crypto::SecretKey;
use medledger_ledger::TxBody;
use medledger_supply::{
    Gtin, ProductSpec, SupplyOp, SupplyPayload, TempRange, UNITS_PER_COMMISSION_MAX,
};

use crate::bench_records::{enrol, open_loop};
use crate::client::Client;
use crate::home;
use crate::records::signed;

#[derive(clap::Args)]
pub struct SupplyBenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The organisation's root key file: it enrols the benchmark's manufacturer and verifier.
    #[arg(long)]
    key: PathBuf,
    /// Units to commission in this run.
    #[arg(long, default_value_t = 100_000)]
    units: u64,
    /// Units per lot.
    #[arg(long, default_value_t = 100_000)]
    lot_size: u64,
    /// Transactions submitted per request; the next batch goes once the one before it commits.
    #[arg(long, default_value_t = 16)]
    batch_txs: usize,
    /// Offered verifications per second.
    #[arg(long, default_value_t = 2_000)]
    verify_rate: u64,
    #[arg(long, default_value_t = 20_000)]
    verifications: usize,
    #[arg(long, default_value_t = 16)]
    verify_clients: usize,
    /// How many times to time the recall report of the run's first lot.
    #[arg(long, default_value_t = 5)]
    recall_reports: usize,
    /// Names this run's lots, so runs on one chain do not collide.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// The benchmark's product: GTIN 0950600099999 + check digit.
fn bench_gtin() -> Result<Gtin> {
    let body = b"0950600099999";
    let check = medledger_supply::gs1_check_digit(body) as char;
    Ok(Gtin::parse(&format!(
        "{}{check}",
        String::from_utf8_lossy(body)
    ))?)
}

fn lot_name(seed: u64, lot: u64) -> String {
    format!("B{seed}L{lot}")
}

fn serial(seed: u64, n: u64) -> String {
    format!("{seed}S{n:012}")
}

pub fn run(args: SupplyBenchArgs) -> Result<()> {
    if args.units == 0 || args.lot_size == 0 || args.batch_txs == 0 {
        bail!("--units, --lot-size and --batch-txs must be positive");
    }
    // Serials are `<seed>S<12 digits>`, and a serial holds at most 20 characters.
    if args.seed >= 10_000_000 || args.units >= 1_000_000_000_000 {
        bail!("--seed must be below 10,000,000 and --units below 10^12");
    }
    let client = Client::new(&args.node);
    let root = home::read_key(&args.key)?;
    let maker = SecretKey::generate(rand_core::OsRng);
    enrol(&client, &root, &maker, "manufacturer")?;
    let gtin = bench_gtin()?;
    let register = client.submit(
        &maker,
        SupplyPayload::Supply {
            ops: vec![SupplyOp::RegisterProduct {
                product: ProductSpec {
                    gtin,
                    name: "Benchmark vaccine".into(),
                    storage: Some(TempRange {
                        min_milli_c: 2_000,
                        max_milli_c: 8_000,
                    }),
                },
            }],
        },
    )?;
    // A product registered by an earlier run stays registered (to its first manufacturer, which
    // is this organisation too), so `product_exists` is fine here.
    client.wait(&register, Duration::from_secs(60))?;

    // Commissioning.
    let chain_id = client.chain_id()?;
    let mut nonce = client.next_nonce(&maker.public_key())?;
    let txs_count = args.units.div_ceil(UNITS_PER_COMMISSION_MAX as u64);
    println!(
        "commissioning {} units in lots of {} ({txs_count} transactions of up to {UNITS_PER_COMMISSION_MAX})",
        args.units, args.lot_size
    );
    let bar = indicatif::ProgressBar::new(args.units);
    let started = Instant::now();
    let mut made = 0u64;
    let mut pending: Option<medledger_crypto::Hash> = None;
    let mut all = Vec::with_capacity(txs_count as usize);
    while made < args.units {
        let mut batch = Vec::with_capacity(args.batch_txs);
        while batch.len() < args.batch_txs && made < args.units {
            // A transaction never spans two lots.
            let lot = made / args.lot_size;
            let lot_end = ((lot + 1) * args.lot_size).min(args.units);
            let end = (made + UNITS_PER_COMMISSION_MAX as u64).min(lot_end);
            let serials = (made..end).map(|n| serial(args.seed, n)).collect();
            batch.push(
                TxBody {
                    chain_id: chain_id.clone(),
                    sender: maker.public_key(),
                    nonce,
                    payload: SupplyPayload::Supply {
                        ops: vec![SupplyOp::Commission {
                            gtin,
                            lot: lot_name(args.seed, lot),
                            expiry: "301231".into(),
                            serials,
                            location: Some("0614141000005".into()),
                        }],
                    }
                    .into(),
                }
                .sign(&maker),
            );
            nonce += 1;
            made = end;
        }
        for result in client.submit_batch(&batch)? {
            if result.get("error").is_some() {
                bail!("a commissioning transaction was refused at admission: {result}");
            }
        }
        // Keep one batch in flight while the next is signed and sent.
        if let Some(previous) = pending.take() {
            client.wait(&previous, Duration::from_secs(120))?;
        }
        pending = batch.last().map(|tx| tx.id());
        all.extend(batch.iter().map(|tx| tx.id()));
        bar.set_position(made);
    }
    if let Some(last) = pending {
        client.wait(&last, Duration::from_secs(120))?;
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    // Every transaction's outcome, checked after the clock stopped: a refused one is not counted.
    let mut refused = 0usize;
    for id in &all {
        if client.wait(id, Duration::from_secs(120))?["status"] != "committed" {
            refused += 1;
        }
    }
    println!(
        "commission: {} units in {seconds:.2} s = {:.0} units/s ({refused} transactions refused)",
        args.units,
        args.units as f64 / seconds
    );

    // Verification at a fixed offered rate, as the manufacturer's own verifier (custody holds).
    let codes: Vec<Vec<u8>> = (0..args.verifications as u64)
        .map(|n| {
            // A multiplicative walk spreads the scans over every lot of this run.
            let unit = (n.wrapping_mul(2_654_435_761)) % args.units;
            let lot = unit / args.lot_size;
            let code = format!(
                "(01){gtin}(17)301231(10){}(21){}",
                lot_name(args.seed, lot),
                serial(args.seed, unit)
            );
            serde_json::to_vec(&serde_json::json!({ "code": code })).unwrap_or_default()
        })
        .collect();
    println!(
        "verifying {} codes at {} verifications/s with {} clients",
        codes.len(),
        args.verify_rate,
        args.verify_clients
    );
    let genuine = std::sync::atomic::AtomicUsize::new(0);
    let run = open_loop(
        codes.len(),
        args.verify_rate,
        args.verify_clients,
        |n| match signed(
            &client,
            &maker,
            "POST",
            "/v1/supply/verify",
            &codes[n],
            &AccessHeaders::default(),
        ) {
            Ok((status, body)) => {
                let pattern = b"\"verdict\":\"genuine\"";
                if body.windows(pattern.len()).any(|w| w == pattern) {
                    genuine.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                status
            }
            Err(_) => 0,
        },
    );
    println!(
        "verify: {} in {:.2} s = {:.0}/s; latency {}; statuses {:?}; genuine {}",
        run.latencies.len(),
        run.seconds,
        run.latencies.len() as f64 / run.seconds,
        run.summary(),
        run.statuses,
        genuine.load(std::sync::atomic::Ordering::Relaxed)
    );

    // Recall report of the run's first lot.
    let path = format!(
        "/v1/supply/recall-report?gtin={gtin}&lot={}",
        lot_name(args.seed, 0)
    );
    let mut times = Vec::new();
    for _ in 0..args.recall_reports {
        let started = Instant::now();
        let (status, body) = signed(
            &client,
            &maker,
            "GET",
            &path,
            b"",
            &AccessHeaders::default(),
        )?;
        let elapsed = started.elapsed();
        if status != 200 {
            bail!(
                "recall report answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let report: serde_json::Value = serde_json::from_slice(&body)?;
        let units = report["report"]["units"].as_array().map_or(0, Vec::len);
        println!(
            "recall report: {units} units, {} bytes in {:.1} ms",
            body.len(),
            elapsed.as_secs_f64() * 1000.0
        );
        times.push(elapsed);
    }
    times.sort();
    if let Some(best) = times.first() {
        println!(
            "recall report: best {:.1} ms, median {:.1} ms",
            best.as_secs_f64() * 1000.0,
            times[times.len() / 2].as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
