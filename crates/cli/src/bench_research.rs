//! `medledger bench-research`: measures cohort matching at a custodian as the number of its
//! patients grows, through the node's real API.
//!
//! Setup: `--patients` patient keys enrolled, a Patient record for each imported at the node (in
//! transaction Bundles of `--bundle` patients) and bound to its key, and every patient's research
//! consent granted with its own key: half for health/medical research with an ethics approval,
//! half for asthma research only. Then a researcher files a health/medical request, and the
//! custodian's match is timed from request to response: reading every patient this node holds,
//! judging each consent at the head, and committing the matches (about half) on chain.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use medledger_api::auth::AccessHeaders;
use medledger_crypto::SecretKey;
use medledger_ledger::{CoreOp, Payload, Tx, TxBody};
use medledger_research::ResearchOp;
use medledger_research::duo::DuoTerms;
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;
use crate::records::signed;

#[derive(clap::Args)]
pub struct ResearchBenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The custodian organisation's root key file.
    #[arg(long)]
    key: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
    /// Patients per imported Bundle.
    #[arg(long, default_value_t = 1_000)]
    bundle: usize,
    /// Concurrent clients for setup requests.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How many times to time a match (each of a new request).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

pub(crate) fn sign_all(chain_id: &str, payloads: Vec<(SecretKey, u64, Payload)>) -> Vec<Tx> {
    payloads
        .into_iter()
        .map(|(key, nonce, payload)| {
            TxBody {
                chain_id: chain_id.to_string(),
                sender: key.public_key(),
                nonce,
                payload,
            }
            .sign(&key)
        })
        .collect()
}

/// Submits in requests of 1,000 and waits for the last of each to commit.
pub(crate) fn submit_waiting(client: &Client, txs: &[Tx]) -> Result<()> {
    for chunk in txs.chunks(1_000) {
        let results = client.submit_batch(chunk)?;
        if let Some(bad) = results.iter().find(|result| result["error"].is_object()) {
            bail!("a setup transaction was refused: {bad}");
        }
        if let Some(last) = chunk.last() {
            let receipt = client.wait(&last.id(), Duration::from_secs(120))?;
            if receipt["status"] != "committed" {
                bail!("a setup transaction failed: {receipt}");
            }
        }
    }
    Ok(())
}

/// Runs `work(n)` for n in 0..count from `clients` threads; fails on the first error.
fn parallel(count: usize, clients: usize, work: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..clients.max(1) {
            scope.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= count {
                        return;
                    }
                    if let Err(error) = work(n) {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
                        next.store(count, Ordering::SeqCst);
                        return;
                    }
                }
            });
        }
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn terms(codes: &[&str], disease: Option<&str>) -> DuoTerms {
    DuoTerms {
        codes: codes.iter().map(|code| code.to_string()).collect(),
        disease: disease.map(str::to_string),
        institutions: Vec::new(),
    }
}

pub fn run(args: ResearchBenchArgs) -> Result<()> {
    if args.patients == 0 || args.bundle == 0 || args.bundle > 10_000 {
        bail!("--patients must be positive and --bundle 1 to 10,000");
    }
    let client = Client::new(&args.node);
    let root = home::read_key(&args.key)?;
    let chain_id = client.chain_id()?;
    let author = SecretKey::generate(rand_core::OsRng);
    let researcher = SecretKey::generate(rand_core::OsRng);
    let patients: Vec<SecretKey> = (0..args.patients)
        .map(|_| SecretKey::generate(rand_core::OsRng))
        .collect();
    let run_id = hex::encode(&researcher.public_key().0[..4]);

    // Enrolment of the author, the researcher and every patient, by the organisation.
    let started = Instant::now();
    let first = client.next_nonce(&root.public_key())?;
    let mut members = vec![
        (author.public_key(), medledger_types::Role::Practitioner),
        (researcher.public_key(), medledger_types::Role::Researcher),
    ];
    members.extend(
        patients
            .iter()
            .map(|key| (key.public_key(), medledger_types::Role::Patient)),
    );
    let enrolments = sign_all(
        &chain_id,
        members
            .into_iter()
            .enumerate()
            .map(|(i, (member, role))| {
                (
                    root.clone(),
                    first + i as u64,
                    CoreOp::Enrol { member, role }.into(),
                )
            })
            .collect(),
    );
    submit_waiting(&client, &enrolments)?;
    println!(
        "setup: {} members enrolled in {:.1} s",
        enrolments.len(),
        started.elapsed().as_secs_f64()
    );

    // A Patient record for each, in transaction Bundles, then each bound to its key.
    let started = Instant::now();
    let bundles = args.patients.div_ceil(args.bundle);
    parallel(bundles, args.clients, |b| {
        let entries: Vec<Value> = (b * args.bundle..((b + 1) * args.bundle).min(args.patients))
            .map(|n| {
                let id = format!("bench-{run_id}-{n}");
                json!({
                    "resource": {"resourceType": "Patient", "id": id, "gender": if n % 2 == 0 { "female" } else { "male" }},
                    "request": {"method": "PUT", "url": format!("Patient/{id}")},
                })
            })
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let body = serde_json::to_vec(&bundle)?;
        let (status, bytes) = signed(
            &client,
            &author,
            "POST",
            "/fhir",
            &body,
            &AccessHeaders::default(),
        )?;
        if !(200..300).contains(&status) {
            bail!(
                "import answered {status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(400)
                    .collect::<String>()
            );
        }
        Ok(())
    })?;
    println!(
        "setup: {} Patient records imported in {:.1} s",
        args.patients,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    parallel(args.patients, args.clients * 2, |n| {
        let body = serde_json::to_vec(&json!({"key": patients[n].public_key()}))?;
        let path = format!("/v1/records/patients/bench-{run_id}-{n}/bind");
        let (status, bytes) = signed(
            &client,
            &root,
            "POST",
            &path,
            &body,
            &AccessHeaders::default(),
        )?;
        if status != 200 {
            bail!(
                "bind answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(())
    })?;
    println!(
        "setup: {} patients bound in {:.1} s",
        args.patients,
        started.elapsed().as_secs_f64()
    );

    // Every patient's research consent, signed with their own key.
    let started = Instant::now();
    let consents = sign_all(
        &chain_id,
        patients
            .iter()
            .enumerate()
            .map(|(n, key)| {
                let terms = if n % 2 == 0 {
                    terms(&["DUO:0000006", "DUO:0000021"], None)
                } else {
                    terms(&["DUO:0000007"], Some("MONDO:0004979"))
                };
                (
                    key.clone(),
                    1,
                    ResearchOp::GrantResearchConsent {
                        terms,
                        resource_types: Vec::new(),
                        end_ms: None,
                    }
                    .into(),
                )
            })
            .collect(),
    );
    submit_waiting(&client, &consents)?;
    println!(
        "setup: {} research consents in {:.1} s",
        args.patients,
        started.elapsed().as_secs_f64()
    );

    let mut timings = Vec::new();
    for round in 0..args.rounds.max(1) {
        let nonce = client.next_nonce(&researcher.public_key())?;
        let request = sign_all(
            &chain_id,
            vec![(
                researcher.clone(),
                nonce,
                ResearchOp::FileRequest {
                    title: format!("bench round {round}"),
                    terms: terms(&["DUO:0000006", "DUO:0000021"], None),
                    resource_types: vec!["Observation".into()],
                    recipient: [9; 32],
                }
                .into(),
            )],
        );
        submit_waiting(&client, &request)?;
        let id = request[0].id();
        let started = Instant::now();
        let (status, bytes) = signed(
            &client,
            &root,
            "POST",
            &format!("/v1/research/requests/{id}/match"),
            b"",
            &AccessHeaders::default(),
        )?;
        let elapsed = started.elapsed();
        let report: Value = serde_json::from_slice(&bytes).context("the match report")?;
        if status != 200 {
            bail!("match answered {status}: {report}");
        }
        println!(
            "match {round}: {} patients checked, {} matched and committed, in {:.2} s",
            report["checked"],
            report["matched"],
            elapsed.as_secs_f64()
        );
        timings.push(elapsed);
    }
    timings.sort();
    println!(
        "cohort matching over {} patients: median {:.2} s, best {:.2} s, worst {:.2} s",
        args.patients,
        timings[timings.len() / 2].as_secs_f64(),
        timings[0].as_secs_f64(),
        timings[timings.len() - 1].as_secs_f64()
    );
    Ok(())
}
