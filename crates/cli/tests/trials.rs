//! End-to-end tests of clinical trials through the real binary on a four-validator devnet: a
//! sponsor registers a study, a site enrols and captures under versioned consent, an amendment
//! forces re-consent, an adverse event starts its clock and reaches the sponsor's and the
//! regulator's alert streams as its block commits, the participant withdraws, and the regulator
//! proves the whole trail against genesis; every refusal leaves nothing behind, no PHI reaches
//! any node's chain or logs, and a change to kept data shows.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use common::hospital::key_of;
use common::{Subscriber, TestNode, WebhookReceiver, devnet, one_devnet, public_key_of, stdout};
use medledger_api::auth::AccessHeaders;
use redb::ReadableTable;
use serde_json::{Value, json};

/// Marks what must never leave the site in clear: a form's content and an event's narrative.
const FORM_SECRET: &str = "PHI-MARKER-glucose-note-Jane-Roe";
const NARRATIVE_SECRET: &str = "PHI-MARKER-found-unresponsive-at-42-Elm-Street";

fn trial(node: &TestNode, key: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["trial", "--key", key.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    node.cli(&all)
}

/// A command that succeeds: its JSON output, once every running node has the block it names.
fn ok(nodes: &[TestNode], out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let value = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    synced(nodes, &value);
    value
}

/// A command that fails, with `text` in its output; a refusal on chain is waited for like a
/// success, since it used the sender's nonce.
fn refused(nodes: &[TestNode], out: std::process::Output, text: &str) {
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "expected a refusal: {all}");
    assert!(all.contains(text), "expected {text:?} in: {all}");
    synced(
        nodes,
        &serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null),
    );
}

/// Waits until every running node has reached the height `value` names, if it names one.
fn synced(nodes: &[TestNode], value: &Value) {
    let Some(height) = value["height"].as_u64() else {
        return;
    };
    for node in nodes.iter().filter(|node| node.child.is_some()) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.get("/v1/status").1["height"].as_u64().unwrap_or(0) < height {
            assert!(
                Instant::now() < deadline,
                "{} never reached {height}",
                node.url
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn capture_body(
    subject: &str,
    data: Value,
    capture: Option<&str>,
    reason: Option<&str>,
) -> Vec<u8> {
    serde_json::to_vec(&json!({"forms": [{
        "subject": subject, "form": "vitals", "visit": "week-4", "data": data,
        "capture": capture, "reason": reason,
    }]}))
    .expect("json")
}

#[test]
fn a_trial_runs_from_registration_to_the_regulators_proven_view() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut nodes = devnet(dir, 0);
    for node in nodes.iter_mut() {
        node.start();
    }
    // org0 is the site, org1 the sponsor, org2 the regulator.
    let (site_root, sponsor_root, regulator_root) = (
        dir.join("keys/org0.key"),
        dir.join("keys/org1.key"),
        dir.join("keys/org2.key"),
    );
    let investigator = nodes[0].new_key(dir, "investigator", Some((&site_root, "practitioner")));
    let patient = nodes[0].new_key(dir, "patient", Some((&site_root, "patient")));
    let sponsor = nodes[1].new_key(dir, "sponsor", Some((&sponsor_root, "sponsor")));
    let regulator = nodes[2].new_key(dir, "regulator", Some((&regulator_root, "auditor")));
    let stranger = nodes[3].new_key(
        dir,
        "stranger",
        Some((&dir.join("keys/org3.key"), "practitioner")),
    );
    let protocol = write(
        dir,
        "protocol-v1.pdf",
        "protocol version 1: once-weekly insulin",
    );
    let sap = write(dir, "sap-v1.pdf", "statistical analysis plan 1");

    // Nothing is enrolled before registration.
    let patient_key = public_key_of(&patient);
    let enrol = [
        "enrol",
        "--study",
        "insulin-1",
        "--subject",
        "S-001",
        "--patient",
        &patient_key,
    ];
    refused(
        &nodes,
        trial(&nodes[0], &investigator, &enrol),
        "unknown_study",
    );

    // The sponsor's and the regulator's alert streams, open before anything happens.
    let sponsor_alerts = Subscriber::start("trial", &nodes[1], &sponsor, &[]);
    let regulator_alerts = Subscriber::start("trial", &nodes[2], &regulator, &[]);
    // The regulator's intake system takes the same alerts by webhook. Its first answer is an
    // error, so the first delivery is retried. Only the node's own members register there, and
    // only http(s) URLs.
    let receiver = WebhookReceiver::start(1);
    refused(
        &nodes,
        trial(&nodes[2], &sponsor, &["webhook", "--url", &receiver.url]),
        "403",
    );
    refused(
        &nodes,
        trial(&nodes[2], &regulator, &["webhook", "--url", "ftp://intake"]),
        "400",
    );
    let hook = ok(
        &nodes,
        trial(&nodes[2], &regulator, &["webhook", "--url", &receiver.url]),
    );
    let hook_id = hook["id"].as_str().expect("webhook id").to_string();

    let register = |node: &TestNode, key: &Path, study: &str| {
        trial(
            node,
            key,
            &[
                "register",
                "--study",
                study,
                "--title",
                "Once-weekly insulin in type 2 diabetes",
                "--registry-id",
                "NCT01234567",
                "--protocol",
                protocol.to_str().expect("utf-8"),
                "--sap",
                sap.to_str().expect("utf-8"),
                "--primary",
                "Change in HbA1c@26 weeks",
                "--secondary",
                "Body weight@26 weeks",
                "--site",
                "org0",
            ],
        )
    };
    refused(
        &nodes,
        register(&nodes[1], &investigator, "insulin-1"),
        "not_sponsor",
    );
    ok(&nodes, register(&nodes[1], &sponsor, "insulin-1"));
    refused(
        &nodes,
        register(&nodes[1], &sponsor, "insulin-1"),
        "study_exists",
    );

    // verify-protocol names the version a document is, and refuses another document.
    let verified = trial(
        &nodes[3],
        &regulator,
        &[
            "verify-protocol",
            "--study",
            "insulin-1",
            protocol.to_str().expect("utf-8"),
        ],
    );
    assert!(verified.status.success());
    assert!(
        stdout(&verified).contains("protocol of study insulin-1 version 1"),
        "{}",
        stdout(&verified)
    );
    let forged = write(
        dir,
        "protocol-forged.pdf",
        "protocol version 1: twice-weekly insulin",
    );
    let verified = trial(
        &nodes[3],
        &regulator,
        &[
            "verify-protocol",
            "--study",
            "insulin-1",
            forged.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(verified.status.code(), Some(2));
    assert!(stdout(&verified).contains("NOT REGISTERED"));

    // A site enrols; a non-site cannot.
    refused(&nodes, trial(&nodes[3], &stranger, &enrol), "not_site");
    ok(&nodes, trial(&nodes[0], &investigator, &enrol));

    // Capture before consent is refused, and nothing is kept or committed.
    let form = write(dir, "vitals.json", &json!({"resourceType": "QuestionnaireResponse", "status": "completed", "item": [{"linkId": "hba1c", "answer": [{"valueDecimal": 7.9}]}, {"linkId": "note", "answer": [{"valueString": FORM_SECRET}]}]}).to_string());
    let capture = |node: &TestNode, key: &Path, extra: &[&str]| {
        let mut args = vec![
            "capture",
            "--study",
            "insulin-1",
            "--subject",
            "S-001",
            "--form",
            "vitals",
            "--visit",
            "week-4",
            "--data",
            form.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        trial(node, key, &args)
    };
    refused(
        &nodes,
        capture(&nodes[0], &investigator, &[]),
        "no_trial_consent",
    );

    // The participant consents (through another validator), then capture succeeds.
    refused(
        &nodes,
        trial(
            &nodes[2],
            &patient,
            &["consent", "--study", "insulin-1", "--version", "2"],
        ),
        "not_current_version",
    );
    ok(
        &nodes,
        trial(
            &nodes[2],
            &patient,
            &["consent", "--study", "insulin-1", "--version", "1"],
        ),
    );
    let captured = ok(&nodes, capture(&nodes[0], &investigator, &[]));
    let capture_id = captured["captures"][0]["capture"]
        .as_str()
        .expect("capture id")
        .to_string();
    assert_eq!(captured["captures"][0]["version"], 1);
    // A correction is the next version, with its reason; without one it is refused.
    refused(
        &nodes,
        capture(&nodes[0], &investigator, &["--capture", &capture_id]),
        "reason_required",
    );
    let corrected = ok(
        &nodes,
        capture(
            &nodes[0],
            &investigator,
            &["--capture", &capture_id, "--reason", "transcription error"],
        ),
    );
    assert_eq!(corrected["captures"][0]["version"], 2);
    // Only the site's practitioners capture: the sponsor's request to the site's node is refused.
    refused(&nodes, capture(&nodes[0], &sponsor, &[]), "not_site_author");

    // The sponsor amends and switches the primary outcome: visible to anyone, with its version;
    // re-consent is required before any more capture.
    let protocol2 = write(dir, "protocol-v2.pdf", "protocol version 2");
    ok(
        &nodes,
        trial(
            &nodes[1],
            &sponsor,
            &[
                "amend",
                "--study",
                "insulin-1",
                "--protocol",
                protocol2.to_str().expect("utf-8"),
                "--sap",
                sap.to_str().expect("utf-8"),
                "--primary",
                "Body weight@26 weeks",
                "--secondary",
                "Change in HbA1c@26 weeks",
                "--reason",
                "slow recruitment",
                "--reconsent",
            ],
        ),
    );
    let shown = ok(
        &nodes,
        trial(&nodes[3], &stranger, &["show", "--study", "insulin-1"]),
    );
    let changes = &shown["versions"][1]["version"]["outcome_changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(2), "{shown}");
    assert!(
        changes.to_string().contains("Body weight") && changes.to_string().contains("modified")
    );
    let study_fhir = nodes[3].get("/fhir/ResearchStudy/insulin-1").1;
    assert_eq!(study_fhir["resourceType"], "ResearchStudy");
    assert!(
        study_fhir.to_string().contains(
            "changed outcome Body weight: secondary (26 weeks) became primary (26 weeks)"
        ),
        "{study_fhir}"
    );
    assert!(
        medledger_fhir::validate(&study_fhir).is_empty(),
        "{:?}",
        medledger_fhir::validate(&study_fhir)
    );
    let verified = trial(
        &nodes[3],
        &regulator,
        &[
            "verify-protocol",
            "--study",
            "insulin-1",
            sap.to_str().expect("utf-8"),
        ],
    );
    assert!(
        stdout(&verified).contains("version 1") && stdout(&verified).contains("version 2"),
        "{}",
        stdout(&verified)
    );

    refused(
        &nodes,
        capture(&nodes[0], &investigator, &[]),
        "reconsent_required",
    );
    // The participant's eConsent as FHIR: awaiting re-consent to version 2.
    let econsent = consent_of(&nodes[0], &patient);
    assert_eq!(econsent["status"], "proposed", "{econsent}");
    assert_eq!(econsent["extension"][0]["valueInteger"], 1, "{econsent}");
    refused(
        &nodes,
        trial(
            &nodes[0],
            &patient,
            &["consent", "--study", "insulin-1", "--version", "1"],
        ),
        "not_current_version",
    );
    ok(
        &nodes,
        trial(
            &nodes[0],
            &patient,
            &["consent", "--study", "insulin-1", "--version", "2"],
        ),
    );
    let econsent = consent_of(&nodes[0], &patient);
    assert_eq!(econsent["status"], "active", "{econsent}");
    assert_eq!(
        econsent["policy"][0]["uri"], "urn:medledger:trial:insulin-1:protocol-version:2",
        "{econsent}"
    );
    assert_eq!(
        econsent["verification"].as_array().map(Vec::len),
        Some(2),
        "both consents are signatures: {econsent}"
    );
    assert_eq!(
        econsent["provision"]["extension"][0]["valueReference"]["reference"],
        "ResearchStudy/insulin-1"
    );
    let after_reconsent = ok(&nodes, capture(&nodes[0], &investigator, &[]));
    let second_form = after_reconsent["captures"][0]["capture"]
        .as_str()
        .expect("id")
        .to_string();

    // An adverse event: fatal, unexpected and related, reported over FHIR by the site.
    refused(
        &nodes,
        trial(
            &nodes[0],
            &sponsor,
            &[
                "report-ae",
                "--study",
                "insulin-1",
                "--subject",
                "S-001",
                "--seriousness",
                "fatal",
                "--unexpected",
                "--related",
            ],
        ),
        "a site of the study or an enrolled practitioner of it",
    );
    let reported = ok(
        &nodes,
        trial(
            &nodes[0],
            &investigator,
            &[
                "report-ae",
                "--study",
                "insulin-1",
                "--subject",
                "S-001",
                "--seriousness",
                "fatal",
                "--unexpected",
                "--related",
                "--description",
                NARRATIVE_SECRET,
            ],
        ),
    );
    let event = reported["event"].as_str().expect("event id").to_string();

    // Both subscribers get the amendment, then the adverse event with its 7-day deadline.
    for subscriber in [&sponsor_alerts, &regulator_alerts] {
        let amendment = subscriber.next(Duration::from_secs(30));
        assert_eq!(amendment["kind"], "amendment", "{amendment}");
        assert_eq!(amendment["version"], 2);
        let alert = subscriber.next(Duration::from_secs(30));
        assert_eq!(alert["kind"], "adverse_event", "{alert}");
        assert_eq!(alert["event"], event.as_str());
        assert_eq!(alert["seriousness"], "fatal");
        let deadline = alert["deadline_ms"].as_u64().expect("deadline");
        assert_eq!(
            deadline - alert["time_ms"].as_u64().expect("time"),
            7 * 86_400_000
        );
    }
    // A subscriber that reconnects after the first alert resumes from there.
    let resumed = Subscriber::start(
        "trial",
        &nodes[3],
        &regulator,
        &["--after", "1", "--count", "1"],
    );
    assert_eq!(
        resumed.next(Duration::from_secs(30))["kind"],
        "adverse_event"
    );
    // A site's practitioner is no subscriber: its page is empty.
    let page = ok(&nodes, trial(&nodes[0], &investigator, &["alerts"]));
    assert_eq!(page["alerts"], json!([]), "{page}");

    // The sponsor acknowledges and reports in time; the clock reads so on every node.
    ok(
        &nodes,
        trial(
            &nodes[1],
            &sponsor,
            &["acknowledge", "--study", "insulin-1", "--event", &event],
        ),
    );
    refused(
        &nodes,
        trial(
            &nodes[1],
            &investigator,
            &[
                "report-to-regulator",
                "--study",
                "insulin-1",
                "--event",
                &event,
            ],
        ),
        "not_sponsor",
    );
    ok(
        &nodes,
        trial(
            &nodes[1],
            &sponsor,
            &[
                "report-to-regulator",
                "--study",
                "insulin-1",
                "--event",
                &event,
                "--reference",
                "IND-123456-0001",
            ],
        ),
    );
    let seen = ok(
        &nodes,
        trial(&nodes[2], &regulator, &["adverse-event", "--event", &event]),
    );
    assert_eq!(seen["clock"], "reported_on_time", "{seen}");
    assert!(
        seen["report"].is_null(),
        "only the site holds the narrative: {seen}"
    );
    let at_site = ok(
        &nodes,
        trial(&nodes[0], &sponsor, &["adverse-event", "--event", &event]),
    );
    assert_eq!(at_site["matches_commitment"], true, "{at_site}");
    assert!(at_site["report"].to_string().contains(NARRATIVE_SECRET));
    let (status, body) = nodes[2].signed(
        &key_of(&regulator),
        "GET",
        &format!("/fhir/AdverseEvent/{event}"),
        b"",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 200);
    let fhir_event: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        fhir_event["seriousness"]["coding"][0]["code"],
        "SeriousResultsInDeath"
    );
    assert!(fhir_event.to_string().contains("reported-on-time"));
    assert!(
        medledger_fhir::validate(&fhir_event).is_empty(),
        "{:?}",
        medledger_fhir::validate(&fhir_event)
    );
    let (status, _) = nodes[2].signed(
        &key_of(&stranger),
        "GET",
        &format!("/fhir/AdverseEvent/{event}"),
        b"",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 403);

    // The participant withdraws; no capture after it, and the sponsor is told.
    ok(
        &nodes,
        trial(
            &nodes[3],
            &patient,
            &["withdraw", "--study", "insulin-1", "--subject", "S-001"],
        ),
    );
    refused(&nodes, capture(&nodes[0], &investigator, &[]), "withdrawn");
    let withdrawal = sponsor_alerts.next(Duration::from_secs(30));
    assert_eq!(withdrawal["kind"], "withdrawal", "{withdrawal}");

    // The webhook got every alert the regulator's stream did, in order and once each accepted,
    // each signed by the node; the refused first attempt was retried.
    let deliveries = receiver.until(Duration::from_secs(60), |body| body["kind"] == "withdrawal");
    let node_key = nodes[2].get("/v1/status").1["validator"]
        .as_str()
        .expect("node key")
        .to_string();
    common::check_signed(&deliveries, &node_key, b"medledger/trial-alert-webhook/v1");
    assert_eq!(deliveries[0].0, 503);
    assert_eq!(deliveries[1].2, deliveries[0].2, "the same alert again");
    let accepted: Vec<Value> = deliveries
        .iter()
        .filter(|(status, ..)| *status == 200)
        .map(|(_, _, body)| serde_json::from_slice(body).expect("json"))
        .collect();
    let seqs: Vec<u64> = accepted
        .iter()
        .map(|alert| alert["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "{seqs:?}");
    let kinds: Vec<&str> = accepted
        .iter()
        .filter_map(|alert| alert["kind"].as_str())
        .collect();
    let at = |kind: &str| kinds.iter().position(|found| *found == kind);
    assert!(
        at("amendment") < at("adverse_event") && at("adverse_event") < at("withdrawal"),
        "{kinds:?}"
    );
    let listed = ok(&nodes, trial(&nodes[2], &regulator, &["webhooks"]));
    assert_eq!(
        listed["webhooks"][0]["delivered"],
        accepted.len(),
        "{listed}"
    );
    assert!(listed["webhooks"][0]["last_error"].is_null(), "{listed}");
    ok(
        &nodes,
        trial(&nodes[2], &regulator, &["unhook", "--id", &hook_id]),
    );
    let listed = ok(&nodes, trial(&nodes[2], &regulator, &["webhooks"]));
    assert_eq!(listed["webhooks"], json!([]));
    let (status, body) = nodes[1].signed(
        &key_of(&sponsor),
        "GET",
        "/fhir/ResearchSubject/insulin-1.S-001",
        b"",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 200);
    let subject: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(subject["status"], "withdrawn");
    assert_eq!(subject["consent"]["reference"], "Consent/insulin-1.S-001");
    // The withdrawal shows in the eConsent, to the sponsor too; a stranger sees nothing.
    let econsent = consent_of(&nodes[1], &sponsor);
    assert_eq!(econsent["status"], "inactive", "{econsent}");
    assert_eq!(econsent["provision"]["type"], "deny", "{econsent}");
    assert!(
        econsent["provision"]["period"]["end"].is_string(),
        "{econsent}"
    );
    assert!(
        medledger_fhir::validate(&econsent).is_empty(),
        "{:?}",
        medledger_fhir::validate(&econsent)
    );
    let (status, _) = nodes[2].signed(
        &key_of(&stranger),
        "GET",
        "/fhir/Consent/insulin-1.S-001",
        b"",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 403);
    // An independent FHIR model (fhir.resources) takes every trial resource served.
    let checked = common::validate_with_fhir_resources(
        dir,
        &[
            study_fhir.clone(),
            subject.clone(),
            econsent.clone(),
            fhir_event.clone(),
        ],
    );
    assert_eq!(
        checked,
        json!({"AdverseEvent": 1, "Consent": 1, "ResearchStudy": 1, "ResearchSubject": 1})
    );
    assert!(
        medledger_fhir::validate(&subject).is_empty(),
        "{:?}",
        medledger_fhir::validate(&subject)
    );

    // The regulator's view, proven entry by entry against genesis on another node.
    let genesis = dir.join("genesis.json");
    let audit = trial(
        &nodes[2],
        &regulator,
        &[
            "audit",
            "--study",
            "insulin-1",
            "--genesis",
            genesis.to_str().expect("utf-8"),
        ],
    );
    let view = ok(&nodes, audit.clone());
    assert!(String::from_utf8_lossy(&audit.stderr).contains("proven against genesis"));
    let meanings: Vec<&str> = view["signatures"]
        .as_array()
        .expect("signatures")
        .iter()
        .filter_map(|entry| entry["signature"]["meaning"].as_str())
        .collect();
    assert_eq!(
        meanings
            .iter()
            .filter(|meaning| **meaning == "consent")
            .count(),
        2,
        "{meanings:?}"
    );
    assert!(
        meanings.contains(&"withdrawal")
            && meanings.contains(&"review")
            && meanings.contains(&"responsibility")
    );
    assert_eq!(
        view["captures"].as_array().map(Vec::len),
        Some(3),
        "two versions of one form and one more"
    );
    assert_eq!(view["captures"][2]["version"]["protocol_version"], 2);
    assert_eq!(view["adverse_events"][0]["clock"], "reported_on_time");
    assert_eq!(view["subjects"][0]["subject"]["status"], "withdrawn");
    // Not for those outside the trial.
    refused(
        &nodes,
        trial(&nodes[3], &stranger, &["audit", "--study", "insulin-1"]),
        "403",
    );

    // The kept forms match the chain, at the site; other nodes hold none.
    let history = ok(
        &nodes,
        trial(
            &nodes[0],
            &regulator,
            &["history", "--study", "insulin-1", "--capture", &capture_id],
        ),
    );
    assert_eq!(history["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        history["versions"][1]["version"]["reason"],
        "transcription error"
    );
    assert_eq!(history["versions"][0]["matches_commitment"], true);
    let elsewhere = ok(
        &nodes,
        trial(
            &nodes[1],
            &regulator,
            &["history", "--study", "insulin-1", "--capture", &capture_id],
        ),
    );
    assert_eq!(elsewhere["held_here"], false);

    // Bad input through the API: clear errors, nothing kept.
    let investigator_key = key_of(&investigator);
    let post = |body: &[u8]| {
        nodes[0].signed(
            &investigator_key,
            "POST",
            "/v1/trials/insulin-1/captures",
            body,
            &AccessHeaders::default(),
        )
    };
    let (status, body) = post(b"{\"forms\": 3}");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _) = post(&capture_body("S-001", json!([1, 2]), None, None));
    assert_eq!(status, 400, "a form's data is an object");
    let many: Vec<Value> = (0..257)
        .map(|_| json!({"subject": "S-001", "form": "f", "visit": "v", "data": {}}))
        .collect();
    let (status, _) = post(&serde_json::to_vec(&json!({"forms": many})).expect("json"));
    assert_eq!(status, 400);
    let (status, body) = nodes[0].signed(&investigator_key, "POST", "/fhir/AdverseEvent", br#"{"resourceType": "AdverseEvent", "actuality": "actual", "subject": {"identifier": {"value": "S-001"}}, "study": [{"reference": "ResearchStudy/insulin-1"}], "seriousness": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness", "code": "Serious"}]}, "suspectEntity": [{"instance": {"display": "drug"}, "causality": [{"assessment": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess", "code": "Possible"}]}}]}]}"#, &AccessHeaders::default());
    assert_eq!(status, 422, "expectedness is required");
    let outcome: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome.to_string().contains("adverse-event-expectedness"));
    let (status, _) = nodes[2].signed(
        &key_of(&regulator),
        "GET",
        "/v1/trials/alerts?after=x",
        b"",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 400);

    // Stop the nodes; then no PHI in any node's chain store or log, and no narrative or form
    // content in clear in the site's own store.
    for node in nodes.iter_mut() {
        node.stop();
    }
    for node in &nodes {
        for file in [
            node.home.join("data/ledger.redb"),
            node.home.join("node.log"),
            node.home.join("data/trials/blobs.redb"),
        ] {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            for secret in [FORM_SECRET, NARRATIVE_SECRET] {
                assert!(
                    !bytes
                        .windows(secret.len())
                        .any(|window| window == secret.as_bytes()),
                    "{secret} found in {}",
                    file.display()
                );
            }
        }
    }

    // A change to kept data shows: flip a byte of the second form on the site's disk.
    let blobs = nodes[0].home.join("data/trials/blobs.redb");
    {
        let db = redb::Database::open(&blobs).expect("open the site's store");
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("trial_blobs");
        let key = format!("capture/insulin-1/{second_form}/1");
        let txn = db.begin_write().expect("write");
        {
            let mut open = txn.open_table(table).expect("table");
            let mut sealed = open
                .get(key.as_str())
                .expect("get")
                .expect("kept")
                .value()
                .to_vec();
            let last = sealed.len() - 1;
            sealed[last] ^= 1;
            open.insert(key.as_str(), sealed.as_slice())
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    nodes[0].start();
    let tampered = trial(
        &nodes[0],
        &regulator,
        &["history", "--study", "insulin-1", "--capture", &second_form],
    );
    assert_eq!(tampered.status.code(), Some(2), "{}", stdout(&tampered));
    assert!(String::from_utf8_lossy(&tampered.stderr).contains("TAMPERED"));
}

/// The participant S-001's eConsent, read as FHIR `Consent` by the holder of `key`.
fn consent_of(node: &TestNode, key: &Path) -> Value {
    let (status, body) = node.signed(
        &key_of(key),
        "GET",
        "/fhir/Consent/insulin-1.S-001",
        b"",
        &AccessHeaders::default(),
    );
    let resource: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(status, 200, "{resource}");
    assert!(
        medledger_fhir::validate(&resource).is_empty(),
        "{:?}",
        medledger_fhir::validate(&resource)
    );
    resource
}
