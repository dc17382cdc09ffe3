//! `medledger bench-monitor`: remote monitoring at fleet scale, through the node's real API.
//!
//! Setup (untimed): `--devices` device keys enrolled by the organisation, a patient for each
//! (one record each, written by the organisation), each device paired with its patient, and
//! every batch signed in advance (`--batches` per device of `--readings` readings: heart rate,
//! SpO2 and temperature, seeded).
//!
//! 1. **Ingestion**: `--clients` threads post the binary batches, each thread its own devices in
//!    sequence order; a batch counts once the node answered (durable). Then the node anchors
//!    what is left, and the rate is also given up to that anchor's commit.
//! 2. **On-chain bytes per reading**: the anchor transactions' encoded size over the readings,
//!    and (with `--home`) the ledger file's growth over them.
//! 3. **Alert latency**: a threshold rule (SpO2 below 90, at once) for `--alerts` patients; a
//!    care-team member follows the alert stream; one desaturated reading per patient is sent
//!    at `--alert-rate` a second, and the latency runs from sending it to the alert's arrival
//!    on the stream (its block committed).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use medledger_api::auth::AccessHeaders;
use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::{CoreOp, Payload, Tx};
use medledger_monitor::readings::{Batch, SignedBatch};
use medledger_monitor::{AlertRule, Code, Condition, MonitorOp, Reading};
use medledger_records::{RecordWrite, RecordsOp};
use rand_core::RngCore;
use serde_json::Value;

use crate::bench::disk_bytes;
use crate::bench_records::percentile;
use crate::bench_research::{sign_all, submit_waiting};
use crate::client::Client;
use crate::home;
use crate::monitor::Simulation;
use crate::records::{expect_ok, signed};

#[derive(clap::Args)]
pub struct MonitorBenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The organisation's root key file.
    #[arg(long)]
    key: PathBuf,
    /// The node's home, to report the ledger file's growth per reading.
    #[arg(long)]
    home: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Batches each device sends.
    #[arg(long, default_value_t = 10)]
    batches: u64,
    /// Readings per batch.
    #[arg(long, default_value_t = 50)]
    readings: usize,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Patients whose alert latency is measured (0: skip).
    #[arg(long, default_value_t = 200)]
    alerts: usize,
    /// Desaturated readings sent per second in the alert phase.
    #[arg(long, default_value_t = 20)]
    alert_rate: u64,
}

fn post_batch(client: &Client, batch: &SignedBatch) -> Result<()> {
    let (status, body) = client.send(
        "POST",
        "/v1/monitor/batches",
        &[("content-type", "application/octet-stream".to_string())],
        &batch.to_bytes(),
    )?;
    expect_ok(status, &body).map(|_| ())
}

pub fn run(args: MonitorBenchArgs) -> Result<()> {
    if args.devices == 0 || args.batches == 0 || args.clients == 0 {
        bail!("--devices, --batches and --clients must be positive");
    }
    if args.readings == 0 || args.readings > medledger_monitor::readings::BATCH_READINGS_MAX {
        bail!("--readings is 1 to 1,000");
    }
    if args.alerts > args.devices {
        bail!("--alerts is at most --devices");
    }
    let client = Client::new(&args.node);
    let root = home::read_key(&args.key)?;
    let chain_id = client.chain_id()?;
    let org = client.get(&format!("/v1/accounts/{}", root.public_key()))?["authority"]["org"]
        .as_str()
        .context("--key is not an organisation's root key")?
        .to_string();

    // Setup: devices and a care-team member enrolled, a patient per device, pairings.
    let started = Instant::now();
    let devices: Vec<SecretKey> = (0..args.devices)
        .map(|_| SecretKey::generate(rand_core::OsRng))
        .collect();
    let nurse = SecretKey::generate(rand_core::OsRng);
    let mut nonce = client.next_nonce(&root.public_key())?;
    let mut payloads: Vec<(SecretKey, u64, Payload)> = Vec::new();
    let mut next = |payload: Payload| {
        payloads.push((root.clone(), nonce, payload));
        nonce += 1;
    };
    next(
        CoreOp::Enrol {
            member: nurse.public_key(),
            role: medledger_types::Role::Practitioner,
        }
        .into(),
    );
    for device in &devices {
        next(
            CoreOp::Enrol {
                member: device.public_key(),
                role: medledger_types::Role::Device,
            }
            .into(),
        );
    }
    let patients: Vec<Hash> = (0..args.devices)
        .map(|_| {
            let mut id = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut id);
            Hash(id)
        })
        .collect();
    for chunk in patients.chunks(medledger_records::RECORDS_PER_TX_MAX) {
        let records = chunk
            .iter()
            .map(|patient| {
                let mut id = [0u8; 32];
                rand_core::OsRng.fill_bytes(&mut id);
                RecordWrite {
                    record: Hash(id),
                    patient: *patient,
                    resource_type: "Patient".into(),
                    category: None,
                    version: 1,
                    commitment: Hash(id),
                    author: root.public_key(),
                }
            })
            .collect();
        next(RecordsOp::PutRecords { records }.into());
    }
    for (device, patient) in devices.iter().zip(&patients) {
        next(
            MonitorOp::PairDevice {
                device: device.public_key(),
                patient: *patient,
            }
            .into(),
        );
    }
    let setup: Vec<Tx> = sign_all(&chain_id, payloads);
    submit_waiting(&client, &setup)?;
    println!(
        "setup: {} devices enrolled and paired, each with its patient, in {:.1} s",
        args.devices,
        started.elapsed().as_secs_f64()
    );

    // Every batch signed before the clock starts: per client, its devices in sequence order.
    let end_ms = crate::records::now_ms();
    let per_client: Vec<Vec<SignedBatch>> = (0..args.clients)
        .map(|c| {
            let mine: Vec<Vec<SignedBatch>> = devices
                .iter()
                .enumerate()
                .filter(|(d, _)| d % args.clients == c)
                .map(|(d, device)| {
                    Simulation {
                        start_seq: 0,
                        batches: args.batches,
                        per_batch: args.readings,
                        seed: d as u64,
                        end_ms,
                        interval_ms: 1_000,
                        desaturate_from: None,
                    }
                    .batches(&chain_id, device)
                })
                .collect();
            // Round-robin over the client's devices, each device's batches in order.
            let mut out = Vec::new();
            for round in 0..args.batches as usize {
                for batches in &mine {
                    if let Some(batch) = batches.get(round) {
                        out.push(batch.clone());
                    }
                }
            }
            out
        })
        .collect();
    let total_readings = (args.devices as u64) * args.batches * args.readings as u64;

    // 1. Ingestion.
    let disk_before = disk_bytes(&args.home);
    let anchors_before = anchor_count(&client, &org)?;
    let sent = AtomicU64::new(0);
    let failure = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for batches in &per_client {
            let (client, sent, failure) = (&client, &sent, &failure);
            scope.spawn(move || {
                for batch in batches {
                    if let Err(error) = post_batch(client, batch) {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                        return;
                    }
                    sent.fetch_add(batch.batch.readings.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(error.context("posting a batch"));
    }
    let ingested = started.elapsed();
    let (status, body) = signed(
        &client,
        &root,
        "POST",
        "/v1/monitor/anchor",
        b"",
        &AccessHeaders::default(),
    )?;
    expect_ok(status, &body)?;
    let anchored = started.elapsed();
    let received = sent.load(Ordering::Relaxed);
    println!(
        "ingested:  {received} readings from {} devices in {:.2} s: {:.0} readings/s ({:.0} batches/s)",
        args.devices,
        ingested.as_secs_f64(),
        received as f64 / ingested.as_secs_f64(),
        (args.devices as u64 * args.batches) as f64 / ingested.as_secs_f64()
    );
    println!(
        "anchored:  all of them in {:.2} s: {:.0} readings/s",
        anchored.as_secs_f64(),
        total_readings as f64 / anchored.as_secs_f64()
    );

    // 2. Bytes on chain per reading.
    let anchors_after = anchor_count(&client, &org)?;
    let mut tx_bytes = 0u64;
    let mut anchored_readings = 0u64;
    for seq in anchors_before..anchors_after {
        let key = String::from_utf8_lossy(&medledger_monitor::key_anchor(&org, seq)).into_owned();
        let entry = client.get(&format!("/v1/state/{key}"))?;
        let value = &entry["entry"];
        anchored_readings += value["readings"].as_u64().unwrap_or(0);
        let tx_id = value["tx"]
            .as_str()
            .context("an anchor names its transaction")?;
        let tx = client.get(&format!("/v1/txs/{tx_id}"))?;
        let tx: Tx = serde_json::from_value(tx["tx"].clone()).context("the anchor transaction")?;
        tx_bytes += tx.to_bytes().len() as u64;
    }
    println!(
        "on chain:  {} anchors of {anchored_readings} readings, {tx_bytes} transaction bytes: {:.3} bytes per reading",
        anchors_after - anchors_before,
        tx_bytes as f64 / anchored_readings.max(1) as f64
    );
    if let (Some(before), Some(after)) = (disk_before, disk_bytes(&args.home)) {
        println!(
            "disk:      the ledger file grew {} bytes: {:.2} bytes per reading (state and blocks)",
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / received.max(1) as f64
        );
    }

    // 3. Alert latency.
    if args.alerts > 0 {
        alert_latency(
            &args, &client, &root, &nurse, &devices, &patients, &chain_id,
        )?;
    }
    Ok(())
}

fn anchor_count(client: &Client, org: &str) -> Result<u64> {
    let key = String::from_utf8_lossy(&medledger_monitor::key_anchor_count(org)).into_owned();
    let (status, entry) = client.get_raw(&format!("/v1/state/{key}"))?;
    Ok(if status == 200 {
        entry["entry"].as_u64().unwrap_or(0)
    } else {
        0
    })
}

#[allow(clippy::too_many_arguments)]
fn alert_latency(
    args: &MonitorBenchArgs,
    client: &Client,
    root: &SecretKey,
    nurse: &SecretKey,
    devices: &[SecretKey],
    patients: &[Hash],
    chain_id: &str,
) -> Result<()> {
    let rule = AlertRule {
        id: "bench-low-spo2".into(),
        code: Code::OxygenSaturation,
        condition: Condition::Below {
            limit: 90,
            for_ms: 0,
        },
        escalate_after_ms: None,
    };
    let first = client.next_nonce(&root.public_key())?;
    let rules: Vec<(SecretKey, u64, Payload)> = patients[..args.alerts]
        .iter()
        .enumerate()
        .map(|(i, patient)| {
            (
                root.clone(),
                first + i as u64,
                MonitorOp::SetAlertRule {
                    patient: *patient,
                    rule: rule.clone(),
                }
                .into(),
            )
        })
        .collect();
    submit_waiting(client, &sign_all(chain_id, rules))?;

    // The care team's stream, from the next alert on.
    let (status, page) = signed(
        client,
        nurse,
        "GET",
        "/v1/monitor/alerts?follow=false&after=0",
        b"",
        &AccessHeaders::default(),
    )?;
    let mut after = expect_ok(status, &page)?["next"].as_u64().unwrap_or(0);
    // Everything before is older; read pages until the end.
    loop {
        let (status, page) = signed(
            client,
            nurse,
            "GET",
            &format!("/v1/monitor/alerts?follow=false&after={after}"),
            b"",
            &AccessHeaders::default(),
        )?;
        let next = expect_ok(status, &page)?["next"].as_u64().unwrap_or(after);
        if next == after {
            break;
        }
        after = next;
    }
    let arrivals: Mutex<BTreeMap<Hash, Instant>> = Mutex::new(BTreeMap::new());
    let sends: Mutex<BTreeMap<Hash, Instant>> = Mutex::new(BTreeMap::new());
    let stream = crate::client::open_event_stream(
        client,
        nurse,
        &format!("/v1/monitor/alerts?after={after}"),
    )?;
    let wanted = args.alerts;
    std::thread::scope(|scope| -> Result<()> {
        let arrivals = &arrivals;
        scope.spawn(move || {
            let mut data = String::new();
            for line in stream.lines() {
                let Ok(line) = line else { return };
                if let Some(rest) = line.strip_prefix("data:") {
                    data.push_str(rest.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let at = Instant::now();
                    // Each change of the feed: the raise carries the patient.
                    if let Ok(notice) = serde_json::from_str::<Value>(&data)
                        && notice["change"] == "raised"
                        && let Some(patient) = notice["alert"]["patient"]
                            .as_str()
                            .and_then(|p| Hash::from_hex(p).ok())
                    {
                        let mut seen = arrivals.lock().unwrap_or_else(|p| p.into_inner());
                        seen.entry(patient).or_insert(at);
                        if seen.len() >= wanted {
                            return;
                        }
                    }
                    data.clear();
                }
            }
        });
        let interval = Duration::from_micros(1_000_000 / args.alert_rate.max(1));
        for (device, patient) in devices.iter().zip(patients).take(args.alerts) {
            let batch = SignedBatch::sign(
                chain_id,
                Batch {
                    device: device.public_key(),
                    seq: args.batches,
                    readings: vec![Reading {
                        code: Code::OxygenSaturation,
                        time_ms: crate::records::now_ms(),
                        value: 85,
                    }],
                },
                device,
            );
            sends
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*patient, Instant::now());
            post_batch(client, &batch)?;
            std::thread::sleep(interval);
        }
        // Wait for the stream to deliver them all (or give up after a minute).
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline
            && arrivals.lock().unwrap_or_else(|p| p.into_inner()).len() < wanted
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })?;
    let arrivals = arrivals.into_inner().unwrap_or_else(|p| p.into_inner());
    let sends = sends.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut latencies: Vec<Duration> = sends
        .iter()
        .filter_map(|(patient, sent)| Some(arrivals.get(patient)?.saturating_duration_since(*sent)))
        .collect();
    latencies.sort();
    println!(
        "alerts:    {} of {} arrived on the stream; from the reading's arrival to the alert's: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        args.alerts,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    if latencies.len() < args.alerts {
        bail!("{} alerts never arrived", args.alerts - latencies.len());
    }
    Ok(())
}
