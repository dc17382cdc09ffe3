//! `medledger bench-records`: measures health records through the node's real FHIR face, as an
//! EHR would drive it.
//!
//! 1. Import: synthetic patients made by varying the Synthea sample (every UUID is remapped per
//!    patient, so the references stay consistent), one transaction Bundle per patient, posted by
//!    several clients. Reports FHIR resources per second, each committed on chain.
//! 2. Reads: consent-checked reads at a fixed offered rate (open loop: latency is measured from
//!    each read's scheduled time, so a slow node cannot hide queueing). Each read commits its
//!    access event before the node answers. Reports p50 and p99, for signed requests and for a
//!    SMART bearer token, in alternating rounds of the same run.
//! 3. Tokens: SMART Backend Services token requests (a fresh client assertion each), from
//!    several clients. Reports tokens per second.
//!
//! `--resources K` keeps the Patient and K-1 of its Observations and Conditions (references to
//! encounters dropped), so the number of patients can grow to 100,000 in reasonable time;
//! without it each patient is the full 314-resource Synthea record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use medledger_api::auth::AccessHeaders;
use medledger_crypto::{SecretKey, sha256};
use medledger_ledger::CoreOp;
use medledger_records::RecordsOp;
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;
use crate::records::signed;

#[derive(clap::Args)]
pub struct RecordsBenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The organisation's root key file: it enrols the benchmark's practitioner and patients.
    #[arg(long)]
    key: PathBuf,
    /// The Synthea patient bundle to vary.
    #[arg(long)]
    bundle: PathBuf,
    /// How many synthetic patients to import.
    #[arg(long, default_value_t = 100)]
    patients: usize,
    /// Resources per patient (the Patient plus Observations and Conditions); the full bundle
    /// when absent.
    #[arg(long)]
    resources: Option<usize>,
    /// Concurrent importing clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Patients that consent to reads (each is enrolled, bound and grants TREAT).
    #[arg(long, default_value_t = 50)]
    consented: usize,
    /// Offered reads per second.
    #[arg(long, default_value_t = 1_000)]
    read_rate: u64,
    /// How many reads.
    #[arg(long, default_value_t = 10_000)]
    reads: usize,
    /// Concurrent reading clients (open loop: enough to keep up with the rate).
    #[arg(long, default_value_t = 32)]
    read_clients: usize,
    /// A seed that makes this run's patients distinct from an earlier run's on the same node.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rounds of reads, alternating signed requests and a bearer token (each round reads
    /// `--reads` records one way).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// How many tokens to request in the token-issuance measurement.
    #[arg(long, default_value_t = 2_000)]
    tokens: usize,
}

/// A deterministic UUID for patient `patient`'s copy of `original`.
fn remap(seed: u64, patient: usize, original: &[u8]) -> String {
    let digest = sha256(
        &[
            &seed.to_le_bytes()[..],
            &(patient as u64).to_le_bytes(),
            original,
        ]
        .concat(),
    );
    let hex = digest.to_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn is_uuid_at(bytes: &[u8], at: usize) -> bool {
    if at + 36 > bytes.len() {
        return false;
    }
    bytes[at..at + 36].iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

/// The bundle text with every UUID replaced by this patient's version of it.
fn vary(template: &[u8], seed: u64, patient: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len());
    let mut at = 0;
    while at < template.len() {
        if is_uuid_at(template, at) && (at == 0 || !template[at - 1].is_ascii_hexdigit()) {
            out.extend_from_slice(remap(seed, patient, &template[at..at + 36]).as_bytes());
            at += 36;
        } else {
            out.push(template[at]);
            at += 1;
        }
    }
    out
}

/// The Patient and `count - 1` Observations and Conditions, without encounter references.
fn subset(bundle: &Value, count: usize) -> Result<Value> {
    let entries = bundle["entry"]
        .as_array()
        .context("the bundle has no entries")?;
    let mut kept = Vec::with_capacity(count);
    for entry in entries {
        if kept.len() >= count {
            break;
        }
        let kind = entry["resource"]["resourceType"].as_str().unwrap_or("");
        if !matches!(kind, "Patient" | "Observation" | "Condition") {
            continue;
        }
        let mut entry = entry.clone();
        if let Some(resource) = entry["resource"].as_object_mut() {
            resource.remove("encounter");
            resource.remove("hasMember");
            resource.remove("derivedFrom");
        }
        kept.push(entry);
    }
    let mut out = bundle.clone();
    out["entry"] = Value::Array(kept);
    Ok(out)
}

pub(crate) fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

pub(crate) fn enrol(client: &Client, root: &SecretKey, key: &SecretKey, role: &str) -> Result<()> {
    let id = client.submit(
        root,
        CoreOp::Enrol {
            member: key.public_key(),
            role: role.parse().map_err(anyhow::Error::msg)?,
        },
    )?;
    let receipt = client.wait(&id, Duration::from_secs(60))?;
    if receipt["status"] != "committed" {
        bail!("enrolling a benchmark key failed: {receipt}");
    }
    Ok(())
}

pub fn run(args: RecordsBenchArgs) -> Result<()> {
    if args.patients == 0 || args.clients == 0 || args.read_clients == 0 {
        bail!("--patients, --clients and --read-clients must be positive");
    }
    let client = Client::new(&args.node);
    let root = home::read_key(&args.key)?;
    let text = std::fs::read(&args.bundle)
        .with_context(|| format!("reading {}", args.bundle.display()))?;
    let bundle: Value = serde_json::from_slice(&text).context("the bundle is not JSON")?;
    let template = match args.resources {
        Some(count) => serde_json::to_vec(&subset(&bundle, count.max(1))?)?,
        None => text.clone(),
    };
    let template_value: Value = serde_json::from_slice(&template)?;
    let targets: Vec<(String, String)> = template_value["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| {
                    let resource = &entry["resource"];
                    let kind = resource["resourceType"].as_str()?;
                    let id = resource["id"].as_str()?;
                    (kind == "Observation" || kind == "Condition")
                        .then(|| (kind.to_string(), id.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    let patient_template_id = template_value["entry"][0]["resource"]["id"]
        .as_str()
        .context("the bundle's first entry is not a Patient with an id")?
        .to_string();
    let per_patient = template_value["entry"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);

    let author = SecretKey::generate(rand_core::OsRng);
    enrol(&client, &root, &author, "practitioner")?;

    // Import.
    println!(
        "importing {} patients of {per_patient} resources ({} resources) with {} clients",
        args.patients,
        args.patients * per_patient,
        args.clients
    );
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let bar = indicatif::ProgressBar::new(args.patients as u64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.clients {
            let (next, failures, bar, client, author, template) = (
                next.clone(),
                failures.clone(),
                bar.clone(),
                client.clone(),
                author.clone(),
                &template,
            );
            let (seed, patients) = (args.seed, args.patients);
            scope.spawn(move || {
                loop {
                    let patient = next.fetch_add(1, Ordering::Relaxed);
                    if patient >= patients {
                        return;
                    }
                    let body = vary(template, seed, patient);
                    match signed(
                        &client,
                        &author,
                        "POST",
                        "/fhir",
                        &body,
                        &AccessHeaders::default(),
                    ) {
                        Ok((200, _)) => {}
                        Ok((status, body)) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            bar.suspend(|| {
                                eprintln!("import {status}: {}", String::from_utf8_lossy(&body))
                            });
                        }
                        Err(error) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            bar.suspend(|| eprintln!("import failed: {error:#}"));
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let import_seconds = started.elapsed().as_secs_f64();
    let imported = (args.patients - failures.load(Ordering::Relaxed)) * per_patient;
    let import_rate = imported as f64 / import_seconds;
    println!(
        "import: {imported} resources in {import_seconds:.2} s = {import_rate:.0} resources/s ({} bundles failed)",
        failures.load(Ordering::Relaxed)
    );

    // Consent: some patients enrol, are bound, and let practitioners read for treatment.
    let consented = args.consented.min(args.patients).max(1);
    let mut readable = Vec::with_capacity(consented);
    for index in 0..consented {
        let patient = index * (args.patients / consented).max(1);
        let key = SecretKey::generate(rand_core::OsRng);
        enrol(&client, &root, &key, "patient")?;
        let fhir_id = remap(args.seed, patient, patient_template_id.as_bytes());
        let body = serde_json::to_vec(&json!({"key": key.public_key()}))?;
        let (status, answer) = signed(
            &client,
            &root,
            "POST",
            &format!("/v1/records/patients/{fhir_id}/bind"),
            &body,
            &AccessHeaders::default(),
        )?;
        if status != 200 {
            bail!(
                "binding a patient failed ({status}): {}",
                String::from_utf8_lossy(&answer)
            );
        }
        let grant = RecordsOp::GrantConsent {
            grant: medledger_records::ConsentGrant {
                patient: key.public_key(),
                provisions: vec![medledger_records::Provision {
                    kind: medledger_records::ProvisionKind::Permit,
                    actors: vec![medledger_records::Grantee::Role(
                        medledger_types::Role::Practitioner,
                    )],
                    scope: vec![],
                    purposes: vec![medledger_records::Purpose::Treat],
                }],
                start_ms: 0,
                end_ms: None,
            },
        };
        let id = client.submit(&key, grant)?;
        client.wait(&id, Duration::from_secs(60))?;
        readable.push(patient);
    }

    // Reads, open loop at the offered rate.
    let paths: Vec<String> = (0..args.reads)
        .map(|n| {
            let patient = readable[n % readable.len()];
            let (kind, id) = &targets[(n / readable.len()) % targets.len().max(1)];
            format!("/fhir/{kind}/{}", remap(args.seed, patient, id.as_bytes()))
        })
        .collect();
    if targets.is_empty() {
        bail!("the bundle has no Observation or Condition to read");
    }
    println!(
        "reading {} records at {} reads/s with {} clients",
        args.reads, args.read_rate, args.read_clients
    );
    let access = AccessHeaders {
        purpose: Some("TREAT".into()),
        ..AccessHeaders::default()
    };
    let token = crate::records::fetch_token(&client, &author, "system/*.rs", Some("TREAT"))?;
    let token = token["access_token"]
        .as_str()
        .context("the token response has no access_token")?
        .to_string();
    for round in 0..args.rounds.max(1) {
        for bearer in [false, true] {
            let run = open_loop(paths.len(), args.read_rate, args.read_clients, |n| {
                if bearer {
                    client
                        .get_bearer(&paths[n], &token)
                        .map_or(0, |(status, _)| status)
                } else {
                    signed(&client, &author, "GET", &paths[n], b"", &access)
                        .map_or(0, |(status, _)| status)
                }
            });
            println!(
                "reads ({}, round {}): {} in {:.2} s = {:.0} reads/s; latency {}; statuses {:?}",
                if bearer { "bearer token" } else { "signed" },
                round + 1,
                run.latencies.len(),
                run.seconds,
                run.latencies.len() as f64 / run.seconds,
                run.summary(),
                run.statuses,
            );
        }
    }

    // Token issuance: each request carries a fresh assertion, checked and used once.
    let issued = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.read_clients.clamp(1, 8) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < args.tokens {
                    match crate::records::fetch_token(&client, &author, "system/*.rs", None) {
                        Ok(_) => issued.fetch_add(1, Ordering::Relaxed),
                        Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "tokens: {} issued in {seconds:.2} s = {:.0} tokens/s ({} refused)",
        issued.load(Ordering::Relaxed),
        issued.load(Ordering::Relaxed) as f64 / seconds,
        refused.load(Ordering::Relaxed)
    );
    Ok(())
}

/// What an open-loop run measured.
pub(crate) struct OpenLoop {
    /// Sorted, each from the request's scheduled time.
    pub latencies: Vec<Duration>,
    pub statuses: BTreeMap<u16, usize>,
    pub seconds: f64,
}

impl OpenLoop {
    pub fn summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.99),
            percentile(&self.latencies, 1.0)
        )
    }
}

/// Sends `count` requests at a fixed offered `rate` from `clients` threads (open loop: latency is
/// measured from each request's scheduled time, so a slow server cannot hide queueing).
/// `request(n)` sends the n-th and returns its HTTP status (0 for a transport failure).
pub(crate) fn open_loop(
    count: usize,
    rate: u64,
    clients: usize,
    request: impl Fn(usize) -> u16 + Sync,
) -> OpenLoop {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let next = AtomicUsize::new(0);
    let start = Instant::now() + Duration::from_millis(100);
    let latencies = std::sync::Mutex::new(Vec::with_capacity(count));
    let statuses = std::sync::Mutex::new(BTreeMap::<u16, usize>::new());
    std::thread::scope(|scope| {
        for _ in 0..clients.max(1) {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= count {
                        return;
                    }
                    let due = start + interval * n as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let status = request(n);
                    let latency = due.elapsed();
                    latencies
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(latency);
                    *statuses
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(status)
                        .or_default() += 1;
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().unwrap_or_else(|p| p.into_inner());
    latencies.sort();
    OpenLoop {
        latencies,
        statuses: statuses.into_inner().unwrap_or_else(|p| p.into_inner()),
        seconds,
    }
}
