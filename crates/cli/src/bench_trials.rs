//! `medledger bench-trials`: measures clinical trials through the nodes' real API, as a site's
//! data managers and a sponsor's safety desk would drive them.
//!
//! 1. Setup: a study registered by the organisation (sponsor and site at once), `--subjects`
//!    participants enrolled, each consenting with their own key.
//! 2. Capture: `--forms` case report forms in requests of `--batch` forms from `--clients`
//!    threads, each request kept at the site and committed in one transaction. Reports forms per
//!    second, each committed on chain.
//! 3. Alerts: a sponsor subscribed to the alert stream (on `--alert-node`, another validator by
//!    default the same node) while the site reports `--events` adverse events at `--event-rate`
//!    per second. Reports, per event, the time from the report's request to the alert's arrival
//!    (which includes consensus on its block), and from its block's timestamp to the arrival.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use medledger_api::auth::AccessHeaders;
use medledger_crypto::SecretKey;
use medledger_ledger::{CoreOp, Payload, Tx, TxBody};
use medledger_trials::{OutcomeKind, OutcomeMeasure, TrialsOp};
use serde_json::{Value, json};

use crate::bench_records::{open_loop, percentile};
use crate::client::Client;
use crate::home;
use crate::records::signed;

#[derive(clap::Args)]
pub struct TrialsBenchArgs {
    /// The site's node.
    #[arg(long, default_value = "http://127.0.0.1:8640")]
    node: String,
    /// The node the sponsor subscribes to alerts on (default: `--node`).
    #[arg(long)]
    alert_node: Option<String>,
    /// The organisation's root key file: it sponsors the study, is its site, and enrols the
    /// benchmark's practitioner and participants.
    #[arg(long)]
    key: PathBuf,
    #[arg(long, default_value_t = 100)]
    subjects: usize,
    #[arg(long, default_value_t = 20_000)]
    forms: usize,
    /// Forms per capture request (at most 256).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 200)]
    events: usize,
    /// Offered adverse-event reports per second.
    #[arg(long, default_value_t = 20)]
    event_rate: u64,
    /// Names this run's study, so runs on one chain do not collide.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Signs `payloads` from `key` with consecutive nonces and submits them in one request; waits for
/// each to commit.
fn submit_all(client: &Client, key: &SecretKey, payloads: Vec<Payload>) -> Result<()> {
    let chain_id = client.chain_id()?;
    let first = client.next_nonce(&key.public_key())?;
    let txs: Vec<Tx> = payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            TxBody {
                chain_id: chain_id.clone(),
                sender: key.public_key(),
                nonce: first + i as u64,
                payload,
            }
            .sign(key)
        })
        .collect();
    for chunk in txs.chunks(1_000) {
        client.submit_batch(chunk)?;
    }
    for tx in &txs {
        let receipt = client.wait(&tx.id(), Duration::from_secs(60))?;
        if receipt["status"] != "committed" {
            bail!("a setup transaction failed: {receipt}");
        }
    }
    Ok(())
}

fn form(n: usize) -> Value {
    json!({
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [
            {"linkId": "systolic", "answer": [{"valueInteger": 110 + (n % 40)}]},
            {"linkId": "diastolic", "answer": [{"valueInteger": 70 + (n % 20)}]},
            {"linkId": "hba1c", "answer": [{"valueDecimal": 6.5 + (n % 30) as f64 / 10.0}]},
            {"linkId": "weight-kg", "answer": [{"valueDecimal": 60.0 + (n % 50) as f64}]},
        ],
    })
}

/// Follows the alert stream as `key` on `base`, recording each adverse-event alert's arrival
/// (wall-clock milliseconds) by event id, until `expected` have arrived or `stop` is set.
fn subscribe(
    base: &str,
    chain_id: &str,
    key: &SecretKey,
    after: u64,
    arrivals: &Mutex<BTreeMap<String, (u128, u64)>>,
    expected: usize,
    stop: &AtomicBool,
) -> Result<()> {
    let path = format!("/v1/trials/alerts?after={after}");
    let time_ms = crate::records::now_ms();
    let access = AccessHeaders::default();
    let bytes = medledger_api::auth::sign_bytes(chain_id, "GET", &path, time_ms, b"", &access);
    let authorization = medledger_api::auth::authorization(key, time_ms, &bytes);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .get(format!("{base}{path}"))
        .header("authorization", &authorization)
        .call()?;
    if response.status() != 200 {
        bail!("the alert stream answered {}", response.status());
    }
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    for line in reader.lines() {
        let line = line?;
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let arrived = wall_ms();
        let alert: Value = serde_json::from_str(data.trim())?;
        if alert["kind"] == "adverse_event"
            && let (Some(event), Some(block_ms)) =
                (alert["event"].as_str(), alert["time_ms"].as_u64())
        {
            let mut arrivals = arrivals
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            arrivals.insert(event.to_string(), (arrived, block_ms));
            if arrivals.len() >= expected {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[allow(clippy::disallowed_methods)]
fn wall_ms() -> u128 {
    // A benchmark's clock: it measures, and never reaches the ledger.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or(0)
}

pub fn run(args: TrialsBenchArgs) -> Result<()> {
    if args.subjects == 0 || args.clients == 0 || args.batch == 0 || args.batch > 256 {
        bail!("--subjects and --clients must be positive, --batch 1 to 256");
    }
    let client = Client::new(&args.node);
    let root = home::read_key(&args.key)?;
    let chain_id = client.chain_id()?;
    let account = client.get(&format!("/v1/accounts/{}", root.public_key()))?;
    let org = account["authority"]["org"]
        .as_str()
        .context("--key is not an organisation's root key")?
        .to_string();
    let practitioner = SecretKey::generate(rand_core::OsRng);
    let patients: Vec<SecretKey> = (0..args.subjects)
        .map(|_| SecretKey::generate(rand_core::OsRng))
        .collect();
    let study = format!("bench-{}", args.seed);

    // 1. Setup.
    let setup = Instant::now();
    let mut payloads: Vec<Payload> = vec![
        CoreOp::Enrol {
            member: practitioner.public_key(),
            role: medledger_types::Role::Practitioner,
        }
        .into(),
    ];
    payloads.extend(patients.iter().map(|patient| {
        Payload::from(CoreOp::Enrol {
            member: patient.public_key(),
            role: medledger_types::Role::Patient,
        })
    }));
    payloads.push(
        TrialsOp::RegisterStudy {
            study: study.clone(),
            title: "Benchmark study".into(),
            registry_id: None,
            protocol_hash: medledger_crypto::sha256(study.as_bytes()),
            sap_hash: medledger_crypto::sha256(b"sap"),
            outcomes: vec![OutcomeMeasure {
                kind: OutcomeKind::Primary,
                measure: "Change in HbA1c".into(),
                time_frame: "26 weeks".into(),
            }],
            sites: vec![org.clone()],
        }
        .into(),
    );
    payloads.extend(patients.iter().enumerate().map(|(n, patient)| {
        Payload::from(TrialsOp::EnrolSubject {
            study: study.clone(),
            subject: format!("S-{n:06}"),
            patient: patient.public_key(),
        })
    }));
    submit_all(&client, &root, payloads)?;
    for patient in &patients {
        submit_all(
            &client,
            patient,
            vec![
                TrialsOp::Consent {
                    study: study.clone(),
                    version: 1,
                }
                .into(),
            ],
        )?;
    }
    println!(
        "setup: study {study}, {} participants enrolled and consented in {:.1} s",
        args.subjects,
        setup.elapsed().as_secs_f64()
    );

    // 2. Capture.
    let requests = args.forms.div_ceil(args.batch);
    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let path = format!("/v1/trials/{study}/captures");
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..args.clients {
            scope.spawn(|| {
                loop {
                    let request = next.fetch_add(1, Ordering::SeqCst);
                    if request >= requests {
                        return;
                    }
                    let first = request * args.batch;
                    let forms: Vec<Value> = (first..(first + args.batch).min(args.forms))
                        .map(|n| {
                            json!({
                                "subject": format!("S-{:06}", n % args.subjects),
                                "form": "vitals",
                                "visit": format!("week-{}", n / args.subjects % 52),
                                "data": form(n),
                            })
                        })
                        .collect();
                    let body = serde_json::to_vec(&json!({ "forms": forms })).unwrap_or_default();
                    match signed(
                        &client,
                        &practitioner,
                        "POST",
                        &path,
                        &body,
                        &AccessHeaders::default(),
                    ) {
                        Ok((201, _)) => {}
                        Ok((status, bytes)) => {
                            eprintln!(
                                "capture answered {status}: {}",
                                String::from_utf8_lossy(&bytes)
                            );
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => {
                            eprintln!("capture failed: {error}");
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let failed = failures.load(Ordering::SeqCst);
    println!(
        "capture: {} forms in {requests} requests of {} from {} clients in {elapsed:.2} s: {:.0} forms/s committed ({failed} requests failed)",
        args.forms,
        args.batch,
        args.clients,
        args.forms as f64 / elapsed
    );

    // 3. Alerts.
    if args.events == 0 {
        return Ok(());
    }
    let alert_base = args.alert_node.clone().unwrap_or_else(|| args.node.clone());
    // The stream starts after the alerts already on the chain.
    let start_at = current_alert_count(&Client::new(&alert_base), &root)?;
    let arrivals = Mutex::new(BTreeMap::<String, (u128, u64)>::new());
    let sent = Mutex::new(BTreeMap::<String, u128>::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<()> {
        let subscriber = scope.spawn(|| {
            subscribe(
                &alert_base,
                &chain_id,
                &root,
                start_at,
                &arrivals,
                args.events,
                &stop,
            )
        });
        // Give the subscription a moment to open before the first report.
        std::thread::sleep(Duration::from_millis(500));
        let report = open_loop(args.events, args.event_rate, 8, |n| {
            let resource = json!({
                "resourceType": "AdverseEvent",
                "extension": [{
                    "url": "https://medledger.dev/fhir/StructureDefinition/adverse-event-expectedness",
                    "valueCode": "unexpected",
                }],
                "actuality": "actual",
                "subject": { "identifier": { "value": format!("S-{:06}", n % args.subjects) } },
                "seriousness": { "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness",
                    "code": "SeriousResultsInHospitalization",
                }]},
                "suspectEntity": [{
                    "instance": { "display": "study drug" },
                    "causality": [{ "assessment": { "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess",
                        "code": "Possible",
                    }]}}],
                }],
                "study": [{ "reference": format!("ResearchStudy/{study}") }],
            });
            let body = serde_json::to_vec(&resource).unwrap_or_default();
            let sent_ms = wall_ms();
            match signed(
                &client,
                &practitioner,
                "POST",
                "/fhir/AdverseEvent",
                &body,
                &AccessHeaders::default(),
            ) {
                Ok((status, bytes)) => {
                    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if let Some(event) = value["issue"][0]["diagnostics"]
                        .as_str()
                        .and_then(|text| text.strip_prefix("AdverseEvent/"))
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        sent.lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .insert(event.to_string(), sent_ms);
                    }
                    status
                }
                Err(_) => 0,
            }
        });
        println!(
            "adverse-event reports (request to committed response): {}",
            report.summary()
        );
        let waited = Instant::now();
        while arrivals.lock().map(|found| found.len()).unwrap_or(0) < args.events
            && waited.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !subscriber.is_finished() {
            println!("not every alert arrived within 30 s");
            // The subscriber notices at the stream's next keep-alive.
            stop.store(true, Ordering::SeqCst);
        }
        Ok(())
    })?;
    let arrivals = arrivals.into_inner().unwrap_or_default();
    let sent = sent.into_inner().unwrap_or_default();
    let mut from_request = Vec::new();
    let mut from_block = Vec::new();
    for (event, sent_ms) in &sent {
        if let Some((arrived, block_ms)) = arrivals.get(event) {
            from_request.push(Duration::from_millis(
                arrived.saturating_sub(*sent_ms) as u64
            ));
            from_block.push(Duration::from_millis(
                arrived.saturating_sub(u128::from(*block_ms)) as u64,
            ));
        }
    }
    from_request.sort();
    from_block.sort();
    println!(
        "alerts: {} of {} reports delivered to the subscriber on {alert_base}",
        from_request.len(),
        sent.len()
    );
    println!(
        "  report request -> alert received: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&from_request, 0.5),
        percentile(&from_request, 0.99),
        percentile(&from_request, 1.0)
    );
    println!(
        "  block timestamp -> alert received: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&from_block, 0.5),
        percentile(&from_block, 0.99),
        percentile(&from_block, 1.0)
    );
    Ok(())
}

/// The number of alerts so far: the cursor a reader reaches by paging to the end.
fn current_alert_count(client: &Client, key: &SecretKey) -> Result<u64> {
    let mut next = 0;
    loop {
        let (status, bytes) = signed(
            client,
            key,
            "GET",
            &format!("/v1/trials/alerts?follow=false&after={next}"),
            b"",
            &AccessHeaders::default(),
        )?;
        if status != 200 {
            bail!("reading the alerts answered {status}");
        }
        let page: Value = serde_json::from_slice(&bytes)?;
        let now = page["next"]
            .as_u64()
            .context("an alert page has no cursor")?;
        if now == next {
            return Ok(next);
        }
        next = now;
    }
}
