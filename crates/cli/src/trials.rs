//! `medledger trial ...`: each step of a clinical trial, as its sponsor, site, participant or
//! regulator takes it. Steps that are one signature (registration, amendment, enrolment, consent,
//! withdrawal, acknowledgement, the report to the regulator, a review) are transactions signed
//! with the user's key; capture and adverse-event reports go through the site's node, which keeps
//! their content.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use medledger_api::auth::AccessHeaders;
use medledger_crypto::{Hash, PublicKey, SecretKey, sha256};
use medledger_ledger::light::LightProof;
use medledger_trials::{Meaning, OutcomeKind, OutcomeMeasure, Seriousness, Signed, TrialsOp};
use serde_json::{Value, json};

use crate::client::Client;
use crate::home;
use crate::records::signed;

#[derive(Subcommand)]
pub enum TrialCommand {
    /// Register a study (as its sponsor): the protocol and analysis plan are hashed here, only
    /// their SHA-256 goes on chain.
    Register {
        #[arg(long)]
        study: String,
        #[arg(long)]
        title: String,
        /// A public registry's id, e.g. an NCT number.
        #[arg(long)]
        registry_id: Option<String>,
        #[arg(long)]
        protocol: PathBuf,
        /// The statistical analysis plan.
        #[arg(long)]
        sap: PathBuf,
        /// A primary outcome, as "measure@time frame"; repeat for each.
        #[arg(long = "primary", required = true)]
        primary: Vec<String>,
        /// A secondary outcome, as "measure@time frame"; repeat for each.
        #[arg(long = "secondary")]
        secondary: Vec<String>,
        /// A site (organisation id); repeat for each.
        #[arg(long = "site", required = true)]
        sites: Vec<String>,
    },
    /// Set the device-reading thresholds the protocol monitors (as its sponsor), each
    /// `LOINC:below|above:LIMIT[:FOR_MS]` in the code's fixed units (`59408-5:below:900:60000`:
    /// SpO2 below 90.0 % for a minute); none clears them. A crossing at a site raises an alert
    /// there and opens an adverse-event draft for the site.
    Thresholds {
        #[arg(long)]
        study: String,
        #[arg(long = "threshold")]
        thresholds: Vec<String>,
    },
    /// Amend the protocol (as its sponsor): a new version with its reason; outcome changes are
    /// recorded against the previous version.
    Amend {
        #[arg(long)]
        study: String,
        #[arg(long)]
        protocol: PathBuf,
        #[arg(long)]
        sap: PathBuf,
        #[arg(long = "primary", required = true)]
        primary: Vec<String>,
        #[arg(long = "secondary")]
        secondary: Vec<String>,
        #[arg(long)]
        reason: String,
        /// Participants must consent again before any more data is captured for them.
        #[arg(long)]
        reconsent: bool,
    },
    /// Tell whether a document is a registered protocol or analysis plan of a study, and of
    /// which version (exit 0 if it is, 2 if not).
    VerifyProtocol {
        #[arg(long)]
        study: String,
        file: PathBuf,
    },
    /// A study's public registration and protocol versions.
    Show {
        #[arg(long)]
        study: String,
    },
    /// Enrol a participant (as a site): their enrolled patient key under an opaque subject id.
    Enrol {
        #[arg(long)]
        study: String,
        #[arg(long)]
        subject: String,
        /// The participant's patient key (hex).
        #[arg(long)]
        patient: String,
    },
    /// Consent to a protocol version (as the participant, with your own key).
    Consent {
        #[arg(long)]
        study: String,
        #[arg(long)]
        version: u32,
    },
    /// Withdraw from a study (as the participant, or a site recording it).
    Withdraw {
        #[arg(long)]
        study: String,
        #[arg(long)]
        subject: String,
    },
    /// Capture a case report form (as a site's practitioner): kept at the site, its commitment
    /// on chain. `--capture` and `--reason` make it a correction of an earlier one.
    Capture {
        #[arg(long)]
        study: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        form: String,
        #[arg(long)]
        visit: String,
        /// The form's content: a JSON file.
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        capture: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Every version of a captured form, checked against its commitment.
    History {
        #[arg(long)]
        study: String,
        #[arg(long)]
        capture: String,
    },
    /// Report an adverse event (as a site's practitioner), from a FHIR AdverseEvent file or
    /// from the flags.
    ReportAe {
        /// A FHIR R4 AdverseEvent (JSON); the flags below build one otherwise.
        #[arg(long, conflicts_with_all = ["study", "subject", "draft"])]
        file: Option<PathBuf>,
        /// Confirm an adverse-event draft (`monitor drafts`): its study and subject, and the
        /// event takes its id.
        #[arg(long, conflicts_with_all = ["study", "subject"])]
        draft: Option<String>,
        #[arg(long)]
        study: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// non-serious, serious, life-threatening or fatal.
        #[arg(long, default_value = "serious")]
        seriousness: String,
        #[arg(long)]
        unexpected: bool,
        /// The study drug is suspected (causality: possible).
        #[arg(long)]
        related: bool,
        /// What happened (kept at the site, never on chain).
        #[arg(long)]
        description: Option<String>,
    },
    /// An adverse event with its regulatory clock.
    AdverseEvent {
        #[arg(long)]
        event: String,
    },
    /// Acknowledge an adverse event (as the sponsor).
    Acknowledge {
        #[arg(long)]
        study: String,
        #[arg(long)]
        event: String,
    },
    /// Record the report of an adverse event to the regulator (as the sponsor).
    ReportToRegulator {
        #[arg(long)]
        study: String,
        #[arg(long)]
        event: String,
        /// The report's reference, e.g. an IND safety report number.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Sign something of a study with a stated meaning (authorship, approval, review,
    /// responsibility): a protocol version, a subject, a capture version or an adverse event.
    Sign {
        #[arg(long)]
        study: String,
        #[arg(long)]
        meaning: String,
        #[arg(long, group = "target")]
        version: Option<u32>,
        #[arg(long, group = "target")]
        subject: Option<String>,
        #[arg(long, group = "target", requires = "capture_version")]
        capture: Option<String>,
        #[arg(long)]
        capture_version: Option<u32>,
        #[arg(long, group = "target")]
        event: Option<String>,
    },
    /// The regulator's view of a trial; `--genesis` proves every entry against genesis as a
    /// light client (exit 2 if one fails).
    Audit {
        #[arg(long)]
        study: String,
        #[arg(long)]
        genesis: Option<PathBuf>,
    },
    #[command(flatten)]
    Feed(crate::feed::FeedCommand),
}

fn outcomes(primary: &[String], secondary: &[String]) -> Result<Vec<OutcomeMeasure>> {
    let parse = |kind: OutcomeKind, text: &String| -> Result<OutcomeMeasure> {
        let (measure, time_frame) = text
            .rsplit_once('@')
            .with_context(|| format!("outcome {text:?} is not \"measure@time frame\""))?;
        Ok(OutcomeMeasure {
            kind,
            measure: measure.trim().into(),
            time_frame: time_frame.trim().into(),
        })
    };
    let mut out = Vec::new();
    for text in primary {
        out.push(parse(OutcomeKind::Primary, text)?);
    }
    for text in secondary {
        out.push(parse(OutcomeKind::Secondary, text)?);
    }
    Ok(out)
}

fn file_hash(path: &Path) -> Result<Hash> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(sha256(&bytes))
}

fn hash_arg(what: &str, text: &str) -> Result<Hash> {
    Hash::from_hex(text.trim()).with_context(|| format!("{what} must be 32 bytes in hex"))
}

/// Submits one operation and waits for its receipt; exit 0 if committed, 2 if refused.
fn op_tx(client: &Client, key: &SecretKey, op: TrialsOp) -> Result<i32> {
    let id = client.submit(key, op)?;
    let result = client.wait(&id, Duration::from_secs(60))?;
    crate::print(&result);
    Ok(match result["status"].as_str() {
        Some("committed") => 0,
        _ => {
            eprintln!("the trial transaction was not applied");
            2
        }
    })
}

/// A signed request; fails with the node's message unless the status is 2xx.
fn call(client: &Client, key: &SecretKey, method: &str, path: &str, body: &[u8]) -> Result<Value> {
    let (status, bytes) = signed(client, key, method, path, body, &AccessHeaders::default())?;
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    if !(200..300).contains(&status) {
        let message = value["error"]["message"]
            .as_str()
            .or_else(|| value["issue"][0]["diagnostics"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| value.to_string());
        match value["error"]["code"].as_str() {
            Some(code) => bail!("the node answered {status} ({code}): {message}"),
            None => bail!("the node answered {status}: {message}"),
        }
    }
    Ok(value)
}

fn meaning(text: &str) -> Result<Meaning> {
    Ok(match text {
        "authorship" => Meaning::Authorship,
        "approval" => Meaning::Approval,
        "review" => Meaning::Review,
        "responsibility" => Meaning::Responsibility,
        other => bail!(
            "meaning {other:?} is not authorship, approval, review or responsibility (consent and withdrawal have their own commands)"
        ),
    })
}

/// A monitored threshold from `LOINC:below|above:LIMIT[:FOR_MS]`.
fn threshold(text: &str) -> Result<medledger_trials::MonitoredThreshold> {
    let parts: Vec<&str> = text.split(':').collect();
    let (loinc, direction, limit, for_ms) = match parts.as_slice() {
        [loinc, direction, limit] => (*loinc, *direction, *limit, "0"),
        [loinc, direction, limit, for_ms] => (*loinc, *direction, *limit, *for_ms),
        _ => bail!("a threshold is LOINC:below|above:LIMIT[:FOR_MS], not {text:?}"),
    };
    let limit: i64 = limit
        .parse()
        .with_context(|| format!("{text:?}: the limit is an integer in the code's fixed units"))?;
    let for_ms: u64 = for_ms
        .parse()
        .with_context(|| format!("{text:?}: the duration is milliseconds"))?;
    let (below, above) = match direction {
        "below" => (Some(limit), None),
        "above" => (None, Some(limit)),
        other => bail!("{text:?}: {other:?} is neither below nor above"),
    };
    Ok(medledger_trials::MonitoredThreshold {
        loinc: loinc.to_string(),
        below,
        above,
        for_ms,
    })
}

/// A FHIR AdverseEvent built from the flags.
fn adverse_event_resource(
    study: &str,
    subject: &str,
    seriousness: &str,
    unexpected: bool,
    related: bool,
    description: Option<&str>,
) -> Result<Value> {
    let (code, _) = match seriousness {
        "non-serious" => ("Non-serious", Seriousness::NonSerious),
        "serious" => ("Serious", Seriousness::Serious),
        "life-threatening" => ("SeriousIsLifeThreatening", Seriousness::LifeThreatening),
        "fatal" => ("SeriousResultsInDeath", Seriousness::Fatal),
        other => {
            bail!("seriousness {other:?} is not non-serious, serious, life-threatening or fatal")
        }
    };
    let mut resource = json!({
        "resourceType": "AdverseEvent",
        "extension": [{
            "url": "https://medledger.dev/fhir/StructureDefinition/adverse-event-expectedness",
            "valueCode": if unexpected { "unexpected" } else { "expected" },
        }],
        "actuality": "actual",
        "subject": { "identifier": { "system": format!("urn:medledger:trial-subject:{study}"), "value": subject } },
        "seriousness": { "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness",
            "code": code,
        }]},
        "suspectEntity": [{
            "instance": { "display": "study drug" },
            "causality": [{ "assessment": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess",
                "code": if related { "Possible" } else { "Unlikely" },
            }]}}],
        }],
        "study": [{ "reference": format!("ResearchStudy/{study}") }],
    });
    if let Some(description) = description {
        resource["event"] = json!({ "text": description });
    }
    Ok(resource)
}

/// Fetches each state entry the audit view names, with its proof at the view's height, and
/// checks the proof against genesis and the entry against the view.
fn prove_audit(client: &Client, view: &Value, genesis: &Path) -> Result<(usize, Vec<String>)> {
    let genesis = home::read_genesis(genesis)?;
    let height = view["height"]
        .as_u64()
        .context("the audit view has no height")?;
    let mut keys: Vec<&str> = vec![view["study_key"].as_str().context("no study key")?];
    for list in [
        "versions",
        "subjects",
        "signatures",
        "adverse_events",
        "captures",
    ] {
        for item in view[list].as_array().into_iter().flatten() {
            if let Some(key) = item["key"].as_str() {
                keys.push(key);
            }
        }
    }
    let mut failures = Vec::new();
    for key in &keys {
        let body = client.get(&format!("/v1/state/{key}?height={height}"))?;
        let proof: LightProof = serde_json::from_value(body["proof"].clone())
            .with_context(|| format!("the proof of {key} is malformed"))?;
        if let Err(error) = proof.verify(&genesis) {
            failures.push(format!("{key}: {error}"));
            continue;
        }
        let LightProof::State { proof, .. } = &proof else {
            failures.push(format!("{key}: not a state proof"));
            continue;
        };
        if proof.key != key.as_bytes() || proof.value.is_none() {
            failures.push(format!(
                "{key}: the proof is of another key or of an absence"
            ));
        }
    }
    Ok((keys.len(), failures))
}

pub fn run(client: &Client, key_path: &Path, command: TrialCommand) -> Result<i32> {
    let key = home::read_key(key_path)?;
    match command {
        TrialCommand::Register {
            study,
            title,
            registry_id,
            protocol,
            sap,
            primary,
            secondary,
            sites,
        } => {
            let op = TrialsOp::RegisterStudy {
                study,
                title,
                registry_id,
                protocol_hash: file_hash(&protocol)?,
                sap_hash: file_hash(&sap)?,
                outcomes: outcomes(&primary, &secondary)?,
                sites,
            };
            op_tx(client, &key, op)
        }
        TrialCommand::Thresholds { study, thresholds } => {
            let thresholds = thresholds
                .iter()
                .map(|text| threshold(text))
                .collect::<Result<Vec<_>>>()?;
            op_tx(
                client,
                &key,
                TrialsOp::SetMonitoredThresholds { study, thresholds },
            )
        }
        TrialCommand::Amend {
            study,
            protocol,
            sap,
            primary,
            secondary,
            reason,
            reconsent,
        } => {
            let op = TrialsOp::AmendProtocol {
                study,
                protocol_hash: file_hash(&protocol)?,
                sap_hash: file_hash(&sap)?,
                outcomes: outcomes(&primary, &secondary)?,
                reason,
                reconsent,
            };
            op_tx(client, &key, op)
        }
        TrialCommand::VerifyProtocol { study, file } => {
            let hash = file_hash(&file)?;
            let found = client.get(&format!("/v1/trials/{study}/documents/{hash}"))?;
            let versions = found["versions"].as_array().cloned().unwrap_or_default();
            if versions.is_empty() {
                println!(
                    "NOT REGISTERED: {} (sha256 {hash}) is no registered document of study {study}",
                    file.display()
                );
                return Ok(2);
            }
            for version in versions {
                println!(
                    "registered: {} (sha256 {hash}) is the {} of study {study} version {}",
                    file.display(),
                    match version["kind"].as_str() {
                        Some("protocol") => "protocol",
                        _ => "statistical analysis plan",
                    },
                    version["version"]
                );
            }
            Ok(0)
        }
        TrialCommand::Show { study } => {
            crate::print(&client.get(&format!("/v1/trials/{study}"))?);
            Ok(0)
        }
        TrialCommand::Enrol {
            study,
            subject,
            patient,
        } => {
            let patient = PublicKey::from_hex(patient.trim())
                .context("--patient must be a public key in hex")?;
            op_tx(
                client,
                &key,
                TrialsOp::EnrolSubject {
                    study,
                    subject,
                    patient,
                },
            )
        }
        TrialCommand::Consent { study, version } => {
            op_tx(client, &key, TrialsOp::Consent { study, version })
        }
        TrialCommand::Withdraw { study, subject } => {
            op_tx(client, &key, TrialsOp::Withdraw { study, subject })
        }
        TrialCommand::Capture {
            study,
            subject,
            form,
            visit,
            data,
            capture,
            reason,
        } => {
            let text = std::fs::read_to_string(&data)
                .with_context(|| format!("reading {}", data.display()))?;
            let data: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", data.display()))?;
            let capture = capture
                .as_deref()
                .map(|text| hash_arg("--capture", text))
                .transpose()?;
            let body = json!({"forms": [{
                "subject": subject, "form": form, "visit": visit, "data": data,
                "capture": capture, "reason": reason,
            }]});
            let answer = call(
                client,
                &key,
                "POST",
                &format!("/v1/trials/{study}/captures"),
                &serde_json::to_vec(&body)?,
            )?;
            crate::print(&answer);
            Ok(0)
        }
        TrialCommand::History { study, capture } => {
            let capture = hash_arg("--capture", &capture)?;
            let answer = call(
                client,
                &key,
                "GET",
                &format!("/v1/trials/{study}/captures/{capture}"),
                b"",
            )?;
            crate::print(&answer);
            let tampered = answer["versions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|version| version["matches_commitment"] == json!(false));
            if tampered {
                eprintln!("TAMPERED: kept data no longer matches its commitment on chain");
                return Ok(2);
            }
            Ok(0)
        }
        TrialCommand::ReportAe {
            file,
            draft,
            study,
            subject,
            seriousness,
            unexpected,
            related,
            description,
        } => {
            let resource = match (file, draft) {
                (None, Some(draft)) => {
                    let drafts =
                        call(client, &key, "GET", "/v1/monitor/adverse-event-drafts", b"")?;
                    let open = drafts["drafts"]
                        .as_array()
                        .and_then(|drafts| {
                            drafts.iter().find(|open| open["draft"] == draft.as_str())
                        })
                        .with_context(|| {
                            format!("no open adverse-event draft {draft} at this node")
                        })?;
                    let mut resource = adverse_event_resource(
                        open["study"].as_str().context("the draft has no study")?,
                        open["subject"]
                            .as_str()
                            .context("the draft has no subject")?,
                        &seriousness,
                        unexpected,
                        related,
                        description.as_deref(),
                    )?;
                    resource["identifier"] =
                        json!({ "system": "urn:medledger:adverse-event-draft", "value": draft });
                    resource
                }
                (Some(file), _) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("reading {}", file.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", file.display()))?
                }
                (None, None) => adverse_event_resource(
                    study
                        .as_deref()
                        .context("--study (or --file) is required")?,
                    subject
                        .as_deref()
                        .context("--subject (or --file) is required")?,
                    &seriousness,
                    unexpected,
                    related,
                    description.as_deref(),
                )?,
            };
            let (status, bytes) = signed(
                client,
                &key,
                "POST",
                "/fhir/AdverseEvent",
                &serde_json::to_vec(&resource)?,
                &AccessHeaders::default(),
            )?;
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if status != 201 {
                let message = value["issue"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|issue| issue["diagnostics"].as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                bail!("the node answered {status}: {message}");
            }
            let diagnostics = value["issue"][0]["diagnostics"].as_str().unwrap_or("");
            let event = diagnostics
                .strip_prefix("AdverseEvent/")
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or("");
            // Committed at this node's head by now.
            let height = client.get("/v1/status")?["height"].clone();
            crate::print(&json!({ "event": event, "reported": true, "height": height }));
            Ok(0)
        }
        TrialCommand::AdverseEvent { event } => {
            let event = hash_arg("--event", &event)?;
            let answer = call(
                client,
                &key,
                "GET",
                &format!("/v1/trials/adverse-events/{event}"),
                b"",
            )?;
            crate::print(&answer);
            Ok(0)
        }
        TrialCommand::Acknowledge { study, event } => {
            let event = hash_arg("--event", &event)?;
            op_tx(
                client,
                &key,
                TrialsOp::AcknowledgeAdverseEvent { study, event },
            )
        }
        TrialCommand::ReportToRegulator {
            study,
            event,
            reference,
        } => {
            let event = hash_arg("--event", &event)?;
            op_tx(
                client,
                &key,
                TrialsOp::ReportToRegulator {
                    study,
                    event,
                    reference,
                },
            )
        }
        TrialCommand::Sign {
            study,
            meaning: text,
            version,
            subject,
            capture,
            capture_version,
            event,
        } => {
            let on = match (version, subject, capture, event) {
                (Some(version), None, None, None) => Signed::ProtocolVersion { version },
                (None, Some(subject), None, None) => Signed::Subject { subject },
                (None, None, Some(capture), None) => Signed::Capture {
                    capture: hash_arg("--capture", &capture)?,
                    version: capture_version.context("--capture-version is required")?,
                },
                (None, None, None, Some(event)) => Signed::AdverseEvent {
                    event: hash_arg("--event", &event)?,
                },
                _ => bail!("name one of --version, --subject, --capture or --event"),
            };
            op_tx(
                client,
                &key,
                TrialsOp::Sign {
                    study,
                    on,
                    meaning: meaning(&text)?,
                },
            )
        }
        TrialCommand::Audit { study, genesis } => {
            let view = call(
                client,
                &key,
                "GET",
                &format!("/v1/trials/{study}/audit"),
                b"",
            )?;
            crate::print(&view);
            if let Some(genesis) = genesis {
                let (checked, failures) = prove_audit(client, &view, &genesis)?;
                if !failures.is_empty() {
                    for failure in &failures {
                        eprintln!("INVALID: {failure}");
                    }
                    return Ok(2);
                }
                eprintln!(
                    "valid: {checked} entries of study {study} proven against genesis at height {}",
                    view["height"]
                );
            }
            Ok(0)
        }
        TrialCommand::Feed(command) => crate::feed::run(client, &key, "/v1/trials", command),
    }
}
