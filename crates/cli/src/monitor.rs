//! `medledger monitor`: pair devices, set alert rules, stream readings from a simulated device,
//! read them under consent, and prove one offline against genesis.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::light::LightProof;
use medledger_monitor::readings::{Batch, ReadingProof, SignedBatch};
use medledger_monitor::{AlertRule, Anchor, Code, Condition, MonitorOp, Reading};
use medledger_types::Genesis;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;
use medledger_api::auth::AccessHeaders;

use crate::records::{expect_ok, signed};

#[derive(Subcommand)]
pub enum MonitorCommand {
    /// Pair a device with a patient (the patient's key, or the device organisation's people).
    Pair {
        /// The device's public key, hex.
        #[arg(long)]
        device: String,
        /// `Patient/<id>` held at this node, or the opaque patient id (hex).
        #[arg(long)]
        patient: String,
    },
    /// End a device's pairing: its readings are refused from then on.
    Unpair {
        #[arg(long)]
        device: String,
    },
    /// Set an alert rule for a patient (the patient's care team): exactly one of --below,
    /// --above, --change or --missing-for-ms.
    Rule {
        #[arg(long)]
        patient: String,
        /// 1 to 32 lower-case letters, digits or hyphens.
        #[arg(long)]
        id: String,
        /// A LOINC code, e.g. 59408-5 (SpO2), 8867-4 (heart rate).
        #[arg(long)]
        code: String,
        #[arg(long)]
        below: Option<i64>,
        #[arg(long)]
        above: Option<i64>,
        /// How long the threshold must hold (with --below or --above).
        #[arg(long, default_value_t = 0)]
        for_ms: u64,
        /// A change of at least this much...
        #[arg(long)]
        change: Option<i64>,
        /// ...within this long.
        #[arg(long, default_value_t = 600_000)]
        within_ms: u64,
        /// No reading of the code for this long.
        #[arg(long)]
        missing_for_ms: Option<u64>,
        #[arg(long)]
        escalate_after_ms: Option<u64>,
    },
    /// Remove a patient's alert rule.
    RemoveRule {
        #[arg(long)]
        patient: String,
        #[arg(long)]
        id: String,
    },
    /// Stream readings from a simulated device (its key is --key): realistic heart rate, SpO2
    /// and temperature, reproducible from a seed.
    Simulate {
        /// How many batches to send.
        #[arg(long, default_value_t = 10)]
        batches: u64,
        /// Readings per batch (a third each of heart rate, SpO2 and temperature).
        #[arg(long, default_value_t = 30)]
        readings: usize,
        /// The first batch's sequence number (the device's next; see `device`).
        #[arg(long)]
        start_seq: Option<u64>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Milliseconds between readings of one kind.
        #[arg(long, default_value_t = 1_000)]
        interval_ms: u64,
        /// From this batch on, SpO2 falls to 85-88 (to cross a threshold).
        #[arg(long)]
        desaturate_from: Option<u64>,
        /// Send JSON instead of the binary encoding.
        #[arg(long)]
        json: bool,
    },
    /// A device's pairing and what its anchors covered.
    Device {
        #[arg(long)]
        device: Option<String>,
    },
    /// Read a patient's readings (a signed, consent-checked, audited read).
    Readings {
        /// `Patient/<id>` at this node, or just the id.
        #[arg(long)]
        patient: String,
        #[arg(long)]
        code: Option<String>,
        #[arg(long)]
        from: Option<u64>,
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, default_value = "TREAT")]
        purpose: String,
    },
    /// Fetch a reading's proof and its anchor's state proof into one file.
    Proof {
        #[arg(long)]
        patient: String,
        #[arg(long)]
        device: String,
        #[arg(long)]
        seq: u64,
        #[arg(long)]
        index: u16,
        #[arg(long, default_value = "TREAT")]
        purpose: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a reading's proof offline against a genesis file.
    Verify {
        #[arg(long)]
        proof: PathBuf,
        #[arg(long)]
        genesis: PathBuf,
    },
    /// Anchor what this node received and has not anchored yet (its root key or node).
    Anchor,
    #[command(flatten)]
    Feed(crate::feed::FeedCommand),
    /// This organisation's adverse-event drafts (alerts of a trial's monitored threshold not
    /// yet reported); confirm one with `trial report-ae --draft <id>`.
    Drafts,
    /// Acknowledge an alert (a practitioner of the care team).
    Ack {
        #[arg(long)]
        org: String,
        #[arg(long)]
        seq: u64,
    },
}

fn key_arg(what: &str, text: &str) -> Result<PublicKey> {
    PublicKey::from_hex(text.trim()).with_context(|| format!("{what} {text:?} is not a public key"))
}

fn fhir_patient(text: &str) -> &str {
    text.strip_prefix("Patient/").unwrap_or(text)
}

/// The opaque patient id: given in hex, or resolved at this node from `Patient/<id>`.
fn patient_id(client: &Client, key: &SecretKey, text: &str) -> Result<Hash> {
    let Some(id) = text.strip_prefix("Patient/") else {
        return Hash::from_hex(text.trim())
            .context("--patient is Patient/<id> or the opaque patient id (hex)");
    };
    let (status, body) = signed(
        client,
        key,
        "GET",
        &format!("/v1/records/ids/Patient/{id}"),
        b"",
        &AccessHeaders::default(),
    )?;
    let found = expect_ok(status, &body)?;
    let patient = found["patient"]
        .as_str()
        .context("the node named no patient id")?;
    Hash::from_hex(patient).context("the node's patient id")
}

fn send(client: &Client, key: &SecretKey, op: MonitorOp) -> Result<i32> {
    let id = client.submit(key, op)?;
    let mut result = client.wait(&id, Duration::from_secs(60))?;
    let code = match result["status"].as_str() {
        Some("committed") => 0,
        _ => 2,
    };
    result["id"] = json!(id);
    crate::print(&result);
    Ok(code)
}

fn reading_headers(purpose: &str) -> AccessHeaders {
    AccessHeaders {
        purpose: Some(purpose.to_string()),
        ..AccessHeaders::default()
    }
}

/// A simulated body: values that wander within their normal ranges, from a seed.
struct Body {
    rng: ChaCha20Rng,
    heart: i64,
    spo2: i64,
    temperature: i64,
}

impl Body {
    fn new(seed: u64) -> Body {
        Body {
            rng: ChaCha20Rng::seed_from_u64(seed),
            heart: 72,
            spo2: 97,
            temperature: 3_680,
        }
    }

    /// A step of -1, 0 or 1 times `scale`.
    fn step(&mut self, scale: i64) -> i64 {
        (i64::from(self.rng.next_u32() % 3) - 1) * scale
    }

    fn next(&mut self, code: Code, desaturated: bool) -> i64 {
        match code {
            Code::HeartRate => {
                self.heart = (self.heart + self.step(2)).clamp(55, 110);
                self.heart
            }
            Code::OxygenSaturation => {
                let (low, high) = if desaturated { (85, 88) } else { (94, 99) };
                self.spo2 = (self.spo2 + self.step(1)).clamp(low, high);
                self.spo2
            }
            _ => {
                self.temperature = (self.temperature + self.step(5)).clamp(3_600, 3_780);
                self.temperature
            }
        }
    }
}

/// What a simulated device sends: `batches` batches of `per_batch` readings from `start_seq`,
/// a reading of each kind every `interval_ms`, the last at `end_ms`.
pub(crate) struct Simulation {
    pub start_seq: u64,
    pub batches: u64,
    pub per_batch: usize,
    pub seed: u64,
    pub end_ms: u64,
    pub interval_ms: u64,
    /// From this batch on, SpO2 falls to 85-88.
    pub desaturate_from: Option<u64>,
}

impl Simulation {
    /// The batches, signed by `device` for `chain_id`.
    pub(crate) fn batches(&self, chain_id: &str, device: &SecretKey) -> Vec<SignedBatch> {
        let codes = [
            Code::HeartRate,
            Code::OxygenSaturation,
            Code::BodyTemperature,
        ];
        let per_kind = self.per_batch.div_ceil(codes.len()).max(1) as u64;
        let total_steps = self.batches * per_kind;
        let mut body = Body::new(self.seed);
        let mut out = Vec::with_capacity(self.batches as usize);
        for n in 0..self.batches {
            let desaturated = self.desaturate_from.is_some_and(|from| n >= from);
            let mut readings = Vec::with_capacity(self.per_batch);
            for step in 0..per_kind {
                let back = total_steps - (n * per_kind + step) - 1;
                let at = self.end_ms.saturating_sub(back * self.interval_ms);
                for code in codes {
                    if readings.len() == self.per_batch {
                        break;
                    }
                    readings.push(Reading {
                        code,
                        time_ms: at,
                        value: body.next(code, desaturated),
                    });
                }
            }
            let batch = Batch {
                device: device.public_key(),
                seq: self.start_seq + n,
                readings,
            };
            out.push(SignedBatch::sign(chain_id, batch, device));
        }
        out
    }
}

pub fn run(client: &Client, key_path: &Path, command: MonitorCommand) -> Result<i32> {
    let key = home::read_key(key_path)?;
    match command {
        MonitorCommand::Pair { device, patient } => {
            let op = MonitorOp::PairDevice {
                device: key_arg("--device", &device)?,
                patient: patient_id(client, &key, &patient)?,
            };
            send(client, &key, op)
        }
        MonitorCommand::Unpair { device } => {
            let op = MonitorOp::UnpairDevice {
                device: key_arg("--device", &device)?,
            };
            send(client, &key, op)
        }
        MonitorCommand::Rule {
            patient,
            id,
            code,
            below,
            above,
            for_ms,
            change,
            within_ms,
            missing_for_ms,
            escalate_after_ms,
        } => {
            let code = Code::from_loinc(&code)
                .with_context(|| format!("{code} is not a monitored LOINC code"))?;
            let condition = match (below, above, change, missing_for_ms) {
                (Some(limit), None, None, None) => Condition::Below { limit, for_ms },
                (None, Some(limit), None, None) => Condition::Above { limit, for_ms },
                (None, None, Some(delta), None) => Condition::Change { delta, within_ms },
                (None, None, None, Some(for_ms)) => Condition::Missing { for_ms },
                _ => bail!("give exactly one of --below, --above, --change or --missing-for-ms"),
            };
            let op = MonitorOp::SetAlertRule {
                patient: patient_id(client, &key, &patient)?,
                rule: AlertRule {
                    id,
                    code,
                    condition,
                    escalate_after_ms,
                },
            };
            send(client, &key, op)
        }
        MonitorCommand::RemoveRule { patient, id } => {
            let op = MonitorOp::RemoveAlertRule {
                patient: patient_id(client, &key, &patient)?,
                rule: id,
            };
            send(client, &key, op)
        }
        MonitorCommand::Simulate {
            batches,
            readings,
            start_seq,
            seed,
            interval_ms,
            desaturate_from,
            json,
        } => {
            let chain_id = client.chain_id()?;
            let device = key.public_key();
            let start_seq = match start_seq {
                Some(seq) => seq,
                None => {
                    let (status, found) =
                        client.get_raw(&format!("/v1/monitor/devices/{device}"))?;
                    if status == 200 {
                        found["received"]["next_seq"].as_u64().unwrap_or(0)
                    } else {
                        0
                    }
                }
            };
            let all = Simulation {
                start_seq,
                batches,
                per_batch: readings.clamp(1, medledger_monitor::readings::BATCH_READINGS_MAX),
                seed,
                end_ms: crate::records::now_ms(),
                interval_ms,
                desaturate_from,
            }
            .batches(&chain_id, &key);
            let mut sent = Vec::new();
            for batch in all {
                let (content_type, body) = if json {
                    ("application/json", serde_json::to_vec(&batch)?)
                } else {
                    ("application/octet-stream", batch.to_bytes())
                };
                let (status, answer) = client.send(
                    "POST",
                    "/v1/monitor/batches",
                    &[("content-type", content_type.to_string())],
                    &body,
                )?;
                let answer = expect_ok(status, &answer)?;
                sent.push(answer);
            }
            crate::print(&json!({ "device": device, "batches": sent }));
            Ok(0)
        }
        MonitorCommand::Device { device } => {
            let device = match device {
                Some(text) => key_arg("--device", &text)?,
                None => key.public_key(),
            };
            crate::print(&client.get(&format!("/v1/monitor/devices/{device}"))?);
            Ok(0)
        }
        MonitorCommand::Readings {
            patient,
            code,
            from,
            to,
            limit,
            purpose,
        } => {
            let mut path = format!("/v1/monitor/readings?patient={}", fhir_patient(&patient));
            for (name, value) in [
                ("code", code),
                ("from", from.map(|v| v.to_string())),
                ("to", to.map(|v| v.to_string())),
                ("limit", limit.map(|v| v.to_string())),
            ] {
                if let Some(value) = value {
                    path.push_str(&format!("&{name}={value}"));
                }
            }
            let (status, body) =
                signed(client, &key, "GET", &path, b"", &reading_headers(&purpose))?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        MonitorCommand::Proof {
            patient,
            device,
            seq,
            index,
            purpose,
            out,
        } => {
            let device = key_arg("--device", &device)?;
            let path = format!(
                "/v1/monitor/proofs/{device}/{seq}/{index}?patient={}",
                fhir_patient(&patient)
            );
            let (status, body) =
                signed(client, &key, "GET", &path, b"", &reading_headers(&purpose))?;
            let found = expect_ok(status, &body)?;
            if status == 202 {
                bail!("the reading is kept but not anchored yet; try again after the next window");
            }
            let anchor_key = found["anchor_key"]
                .as_str()
                .context("the node named no anchor")?;
            let state = client.get(&format!("/v1/state/{anchor_key}?proof=true"))?;
            let file = json!({ "reading": found["proof"], "anchor": state["proof"] });
            std::fs::write(&out, serde_json::to_string_pretty(&file)?)
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("proof written to {}", out.display());
            crate::print(
                &json!({ "access_event": found["access_event"], "reading": found["proof"]["reading"] }),
            );
            Ok(0)
        }
        MonitorCommand::Verify { proof, genesis } => verify(&proof, &genesis),
        MonitorCommand::Feed(command) => crate::feed::run(client, &key, "/v1/monitor", command),
        MonitorCommand::Drafts => {
            let (status, body) = signed(
                client,
                &key,
                "GET",
                "/v1/monitor/adverse-event-drafts",
                b"",
                &AccessHeaders::default(),
            )?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
        MonitorCommand::Ack { org, seq } => {
            send(client, &key, MonitorOp::AcknowledgeAlert { org, seq })
        }
        MonitorCommand::Anchor => {
            let (status, body) = signed(
                client,
                &key,
                "POST",
                "/v1/monitor/anchor",
                b"",
                &AccessHeaders::default(),
            )?;
            crate::print(&expect_ok(status, &body)?);
            Ok(0)
        }
    }
}

/// Checks a reading's proof offline: the anchor's state proof against genesis, then the
/// reading's path to the anchored root. Exit 0 valid, 2 invalid.
fn verify(path: &Path, genesis: &Path) -> Result<i32> {
    let genesis: Genesis = home::read_genesis(genesis)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let reading: ReadingProof = serde_json::from_value(file["reading"].clone())
        .with_context(|| format!("{} holds no reading proof", path.display()))?;
    let anchor_proof: LightProof = serde_json::from_value(file["anchor"].clone())
        .with_context(|| format!("{} holds no anchor state proof", path.display()))?;
    if let Err(error) = anchor_proof.verify(&genesis) {
        println!("INVALID: the anchor's state proof: {error}");
        return Ok(2);
    }
    let LightProof::State { proof, .. } = &anchor_proof else {
        println!("INVALID: the anchor proof is not a state proof");
        return Ok(2);
    };
    let expected_key = medledger_monitor::key_anchor(&reading.org, reading.anchor);
    if proof.key != expected_key {
        println!(
            "INVALID: the state proof is of {}, not of the reading's anchor",
            String::from_utf8_lossy(&proof.key)
        );
        return Ok(2);
    }
    let Some(anchor) = proof
        .value
        .as_deref()
        .and_then(|bytes| borsh::from_slice::<Anchor>(bytes).ok())
    else {
        println!("INVALID: the anchor is absent from the proven state");
        return Ok(2);
    };
    if !reading.verify(anchor.root) {
        println!(
            "INVALID: the reading is not under anchor {} of {} (root {})",
            reading.anchor, reading.org, anchor.root
        );
        return Ok(2);
    }
    println!(
        "valid: {} {} {} at {} from device {} (batch {}, reading {}) is in anchor {} of {} (root {}), committed at height {}, proven after block {}",
        reading.reading.code.loinc(),
        reading.reading.code.value_text(reading.reading.value),
        reading.reading.code.unit(),
        reading.reading.time_ms,
        reading.device,
        reading.seq,
        reading.index,
        reading.anchor,
        reading.org,
        anchor.root,
        anchor.height,
        anchor_proof.header().height
    );
    Ok(0)
}
