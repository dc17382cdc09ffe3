//! End-to-end tests of health records under consent, through the real binary: a hospital imports
//! a Synthea patient over FHIR, the patient grants and revokes consent, practitioners read for a
//! purpose, every read is audited on chain first, bad input is refused whole, no PHI reaches the
//! chain, and erasure crypto-shreds the patient.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};

use common::hospital::{
    Hospital, assert_served_as, failed_with, key_of, original_bytes, stored_bytes, succeeded,
};
use common::{CONDITION, LAB_OBSERVATION, PATIENT_ID, medledger, public_key_of, stdout, synthea};
use medledger_crypto::SecretKey;
use serde_json::Value;

/// The whole patient story: import, consent, purposeful reads, deny, revoke, break-glass,
/// versions, HPKE, the patient's access log and Provenance.
#[test]
fn a_patient_controls_who_reads_their_records_and_sees_every_access() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hospital = Hospital::start(dir.path());
    let doctor = hospital.member("doctor", Some("practitioner"));
    let nurse = hospital.member("nurse", Some("practitioner"));
    let patient = hospital.member("patient", Some("patient"));
    let auditor = hospital.member("auditor", Some("auditor"));
    hospital.import_synthea(&doctor);
    hospital.bind(&patient);
    let lab = format!("Observation/{LAB_OBSERVATION}");
    let read = |key: &Path, reference: &str, purpose: &str| {
        hospital.fhir(key, &["read", reference, "--purpose", purpose])
    };

    // No grant yet: denied, and the denial is itself on chain.
    failed_with(&read(&doctor, &lab, "TREAT"), "403");

    // The patient permits the doctor to read Observations for treatment.
    let out = succeeded(hospital.consent(
        &patient,
        &[
            "grant",
            "--to",
            &format!("key:{}", public_key_of(&doctor)),
            "--purpose",
            "TREAT",
            "--type",
            "Observation",
        ],
    ));
    let grant = serde_json::from_str::<Value>(&stdout(&out)).expect("receipt")["id"]
        .as_str()
        .expect("grant id")
        .to_string();
    let out = read(&doctor, &lab, "TREAT");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The record as stored, with the server's id and meta written in.
    assert_served_as(
        out.stdout.strip_suffix(b"\n").expect("newline"),
        &stored_bytes(LAB_OBSERVATION),
        1,
    );
    // Wrong purpose, out of scope, and another practitioner: denied.
    failed_with(&read(&doctor, &lab, "HRESCH"), "403");
    failed_with(
        &read(&doctor, &format!("Condition/{CONDITION}"), "TREAT"),
        "403",
    );
    failed_with(&read(&nurse, &lab, "TREAT"), "403");
    failed_with(&read(&doctor, &lab, "NOT-A-PURPOSE"), "unknown purpose");

    // The same record sealed to the reader with HPKE opens on the reader's side only.
    // The stored bytes exactly: the Bundle's, with references to its entries as `Type/id`.
    let out = succeeded(hospital.fhir(&doctor, &["read", &lab, "--purpose", "TREAT", "--wrap"]));
    assert_eq!(
        out.stdout.strip_suffix(b"\n").expect("newline"),
        stored_bytes(LAB_OBSERVATION).as_slice()
    );
    assert_ne!(
        stored_bytes(LAB_OBSERVATION),
        original_bytes(LAB_OBSERVATION)
    );

    // A deny provision for laboratory data wins over the permit.
    succeeded(hospital.consent(
        &patient,
        &[
            "grant",
            "--deny",
            "--to",
            &format!("key:{}", public_key_of(&doctor)),
            "--category",
            "laboratory",
        ],
    ));
    failed_with(&read(&doctor, &lab, "TREAT"), "deny provision");

    // Break-glass: a practitioner for ETREAT reads without a grant; an auditor may not.
    succeeded(hospital.fhir(
        &nurse,
        &[
            "read",
            &format!("Condition/{CONDITION}"),
            "--purpose",
            "ETREAT",
            "--break-glass",
        ],
    ));
    failed_with(
        &hospital.fhir(
            &auditor,
            &[
                "read",
                &format!("Condition/{CONDITION}"),
                "--purpose",
                "ETREAT",
                "--break-glass",
            ],
        ),
        "403",
    );

    // A grant signed by someone other than the patient is refused on chain.
    let out = hospital.consent(
        &doctor,
        &[
            "grant",
            "--patient",
            &public_key_of(&patient),
            "--to",
            &format!("key:{}", public_key_of(&doctor)),
            "--purpose",
            "TREAT",
        ],
    );
    assert!(!out.status.success());
    assert!(stdout(&out).contains("not_the_patient"), "{}", stdout(&out));

    // Revoked: the doctor's Observation reads stop (a vital sign, outside the deny).
    let vital = "Observation/a5587c04-bab7-e7dd-cf9a-7b36c0187a95";
    assert!(read(&doctor, vital, "TREAT").status.success());
    succeeded(hospital.consent(&patient, &["revoke", "--grant", &grant]));
    failed_with(&read(&doctor, vital, "TREAT"), "403");
    let out = hospital.consent(&patient, &["revoke", "--grant", &grant]);
    assert!(stdout(&out).contains("grant_revoked"));

    // A search returns only what consent allows and says how much it withheld.
    let out = hospital.consent(
        &patient,
        &[
            "grant",
            "--to",
            "role:practitioner",
            "--purpose",
            "TREAT",
            "--type",
            "Condition",
        ],
    );
    assert!(out.status.success());
    let out = succeeded(hospital.fhir(
        &nurse,
        &[
            "search",
            "--patient",
            PATIENT_ID,
            "--type",
            "Condition",
            "--purpose",
            "TREAT",
        ],
    ));
    let bundle: Value = serde_json::from_str(&stdout(&out)).expect("bundle");
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["entry"].as_array().expect("entries").len(), 21);

    // The patient's own view: every access (allowed and denied, break-glass flagged), grants.
    let out = succeeded(hospital.fhir(&patient, &["me"]));
    let me: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let accesses = me["patients"][0]["accesses"].as_array().expect("accesses");
    assert!(accesses.len() >= 10, "{me}");
    assert!(accesses.iter().any(|event| event["break_glass"] == true));
    assert!(
        accesses
            .iter()
            .any(|event| event["decisions"][0][1]["rule"] == "no_consent")
    );
    assert_eq!(me["grants"].as_array().expect("grants").len(), 3);

    // The same log as FHIR AuditEvents; an unrelated practitioner of another role may not see it.
    let out = succeeded(hospital.fhir(&patient, &["log", "--patient", PATIENT_ID]));
    let log: Value = serde_json::from_str(&stdout(&out)).expect("bundle");
    let events = log["entry"].as_array().expect("entries");
    assert_eq!(events.len(), accesses.len());
    assert!(
        events
            .iter()
            .all(|entry| entry["resource"]["resourceType"] == "AuditEvent")
    );
    let visitor = hospital.member("visitor", Some("pharmacy"));
    failed_with(
        &hospital.fhir(&visitor, &["log", "--patient", PATIENT_ID]),
        "403",
    );

    // The grants come back as FHIR Consent resources, the revoked one inactive, to the patient
    // (and the custodian and auditors), not to a practitioner.
    let (status, _) = hospital.signed(
        &key_of(&nurse),
        "GET",
        &format!("/fhir/Consent?patient={PATIENT_ID}"),
        b"",
        None,
    );
    assert_eq!(status, 403);
    let (status, consents) = hospital.signed(
        &key_of(&patient),
        "GET",
        &format!("/fhir/Consent?patient={PATIENT_ID}"),
        b"",
        None,
    );
    assert_eq!(status, 200, "{consents}");
    let statuses: Vec<&str> = consents["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            assert_eq!(entry["resource"]["resourceType"], "Consent");
            entry["resource"]["status"].as_str().expect("status")
        })
        .collect();
    assert_eq!(statuses, ["inactive", "active", "active"], "{consents}");

    // A new version extends the history; Provenance shows both.
    let updated = String::from_utf8(original_bytes(CONDITION))
        .expect("utf-8")
        .replacen(
            "\"resourceType\"",
            "\"language\": \"en\", \"resourceType\"",
            1,
        )
        // Outside its Bundle a resource names others by type and id, not by urn:uuid.
        .replace(
            &format!("urn:uuid:{PATIENT_ID}"),
            &format!("Patient/{PATIENT_ID}"),
        )
        .replace(
            "urn:uuid:3699e7e7-8b1b-4a68-8011-e7a166598566",
            "Encounter/3699e7e7-8b1b-4a68-8011-e7a166598566",
        );
    let (status, body) = hospital.signed(
        &key_of(&doctor),
        "PUT",
        &format!("/fhir/Condition/{CONDITION}"),
        updated.as_bytes(),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let out = hospital.fhir(
        &nurse,
        &[
            "read",
            &format!("Condition/{CONDITION}"),
            "--purpose",
            "TREAT",
        ],
    );
    assert_served_as(
        out.stdout.strip_suffix(b"\n").expect("newline"),
        updated.as_bytes(),
        2,
    );
    let out =
        succeeded(hospital.fhir(&patient, &["provenance", &format!("Condition/{CONDITION}")]));
    let provenance: Value = serde_json::from_str(&stdout(&out)).expect("bundle");
    let text = provenance.to_string();
    assert!(
        text.contains("_history/1") && text.contains("_history/2"),
        "{text}"
    );
}

/// Bad input gets an OperationOutcome with the right status and stores nothing: malformed JSON,
/// an unknown resource type, a Bundle referencing a missing resource, a reader who is not
/// enrolled, a missing purpose, and a write by someone outside the custodian.
#[test]
fn bad_input_is_refused_whole_with_an_operation_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hospital = Hospital::start(dir.path());
    let doctor = key_of(&hospital.member("doctor", Some("practitioner")));
    let outsider = key_of(&hospital.member("outsider", None));
    let pharmacist = key_of(&hospital.member("pharmacist", Some("pharmacy")));
    let height = hospital.height();
    let missing = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:11111111-1111-1111-1111-111111111111","resource":{"resourceType":"Patient","id":"p1"},"request":{"method":"POST","url":"Patient"}},
        {"fullUrl":"urn:uuid:22222222-2222-2222-2222-222222222222","resource":{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:33333333-3333-3333-3333-333333333333"}},"request":{"method":"POST","url":"Observation"}}]}"#;
    // (signer, method, path, body, status, a phrase the outcome must hold)
    type Case<'a> = (&'a SecretKey, &'a str, &'a str, &'a [u8], u16, &'a str);
    let cases: &[Case<'_>] = &[
        (&doctor, "POST", "/fhir", b"{not json", 400, "structure"),
        (
            &doctor,
            "POST",
            "/fhir/Observation",
            br#"{"resourceType":"Spaceship","id":"x"}"#,
            400,
            "",
        ),
        (
            &doctor,
            "POST",
            "/fhir",
            missing.as_bytes(),
            400,
            "urn:uuid:33333333",
        ),
        (
            &doctor,
            "POST",
            "/fhir",
            br#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#,
            400,
            "",
        ),
        (
            &outsider,
            "POST",
            "/fhir",
            missing.as_bytes(),
            401,
            "not an enrolled",
        ),
        (
            &pharmacist,
            "POST",
            "/fhir/Patient",
            br#"{"resourceType":"Patient","id":"p9"}"#,
            403,
            "forbidden",
        ),
        (&outsider, "GET", "/fhir/Patient/p1", b"", 401, ""),
    ];
    for (key, method, path, body, status, mention) in cases {
        let purpose = (*method == "GET").then_some("TREAT");
        let (got, outcome) = hospital.signed(key, method, path, body, purpose);
        assert_eq!(got, *status, "{method} {path}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
        assert!(outcome.to_string().contains(mention), "{outcome}");
    }
    // A read without a purpose, and an unsigned request.
    let (status, outcome) = hospital.signed(&doctor, "GET", "/fhir/Patient/p1", b"", None);
    assert_eq!(status, 400, "{outcome}");
    let (status, outcome) = hospital.node.get("/fhir/Patient/p1");
    assert_eq!(status, 401, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // Nothing reached the chain or the vault.
    assert_eq!(hospital.height(), height);
    let (status, _) = hospital.signed(&doctor, "POST", "/fhir/Observation", br#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}"#, None);
    assert_eq!(
        status, 400,
        "p1 was never stored, so its Observation has no patient"
    );
    // A path the FHIR face does not serve is answered as FHIR too.
    let (status, outcome) = hospital.node.get("/fhir/Patient/p1/_history/1/extra");
    assert_eq!(status, 404, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // So is a method it does not take: records are never deleted.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .delete(format!("{}/fhir/Patient/p1", hospital.node.url))
        .call()
        .expect("node answers");
    assert_eq!(response.status().as_u16(), 405);
    let outcome: Value =
        serde_json::from_str(&response.body_mut().read_to_string().expect("body")).expect("json");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // The OpenAPI description covers the FHIR face.
    let (status, openapi) = hospital.node.get("/openapi.json");
    assert_eq!(status, 200);
    for path in [
        "/fhir",
        "/fhir/{type}/{id}",
        "/fhir/Patient/{id}/$erase",
        "/v1/records/me",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} is not in /openapi.json"
        );
    }
    assert_eq!(
        openapi["components"]["securitySchemes"]["medledger_signature"]["name"],
        "Authorization"
    );
    // The capability statement needs no signature.
    let (status, statement) = hospital.node.get("/fhir/metadata");
    assert_eq!(status, 200);
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
}

/// Strings of the Synthea patient that must never reach the chain: names, birth date, address,
/// identifiers, phone, and narrative text.
fn phi_strings() -> Vec<String> {
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(synthea()).expect("synthea")).expect("json");
    let patient = &bundle["entry"][0]["resource"];
    let mut strings = vec![
        patient["birthDate"]
            .as_str()
            .expect("birth date")
            .to_string(),
        patient["name"][0]["family"]
            .as_str()
            .expect("family")
            .to_string(),
        patient["name"][0]["given"][0]
            .as_str()
            .expect("given")
            .to_string(),
        patient["address"][0]["line"][0]
            .as_str()
            .expect("line")
            .to_string(),
        patient["address"][0]["city"]
            .as_str()
            .expect("city")
            .to_string(),
        patient["telecom"][0]["value"]
            .as_str()
            .expect("phone")
            .to_string(),
    ];
    for identifier in patient["identifier"].as_array().expect("identifiers") {
        strings.push(identifier["value"].as_str().expect("value").to_string());
    }
    for entry in bundle["entry"].as_array().expect("entries") {
        if let Some(div) = entry["resource"]["text"]["div"].as_str() {
            strings.push(div.chars().take(80).collect());
        }
    }
    strings
}

/// Every logical id in the Synthea patient's Bundle: the Patient's and each resource's.
fn synthea_ids() -> Vec<String> {
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(synthea()).expect("synthea")).expect("json");
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().expect("id").to_string())
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

/// After the Synthea bundle is imported and read, no byte of any block or of the state store
/// (the ledger database) holds the patient's name, birth date, address, identifiers or record
/// text, in plain text or as a plain SHA-256 (raw or hex), nor a plain hash of any record. The
/// node's log holds none of them either, and the vault holds only ciphertext of them.
#[test]
fn no_phi_reaches_the_chain_the_state_or_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hospital = Hospital::start(dir.path());
    let doctor = hospital.member("doctor", Some("practitioner"));
    hospital.import_synthea(&doctor);
    succeeded(hospital.fhir(
        &doctor,
        &[
            "read",
            &format!("Observation/{LAB_OBSERVATION}"),
            "--purpose",
            "ETREAT",
            "--break-glass",
        ],
    ));
    hospital.node.stop();

    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for text in phi_strings() {
        let digest = medledger_crypto::sha256(text.as_bytes());
        needles.push((format!("{text:?}"), text.clone().into_bytes()));
        needles.push((format!("sha256({text:?})"), digest.0.to_vec()));
        needles.push((
            format!("hex sha256({text:?})"),
            digest.to_hex().into_bytes(),
        ));
    }
    for id in [LAB_OBSERVATION, CONDITION, PATIENT_ID] {
        for bytes in [original_bytes(id), stored_bytes(id)] {
            let digest = medledger_crypto::sha256(&bytes);
            needles.push((format!("sha256 of record {id}"), digest.0.to_vec()));
        }
    }
    let ledger = std::fs::read(hospital.node.home.join("data/ledger.redb")).expect("ledger");
    assert!(ledger.len() > 100_000, "the ledger holds the import");
    let log = std::fs::read(hospital.node.home.join("node.log")).unwrap_or_default();
    for (what, needle) in &needles {
        assert!(
            !contains(&ledger, needle),
            "{what} is in the ledger database"
        );
        assert!(!contains(&log, needle), "{what} is in the node's log");
    }
    // The vault keeps content encrypted. (Its index holds FHIR logical ids, which are not
    // checked here: Synthea reuses the patient's id as its MRN.)
    let mut vault_files = Vec::new();
    files_under(&hospital.node.home.join("data/vault"), &mut vault_files);
    let vault: Vec<u8> = vault_files
        .iter()
        .flat_map(|file| std::fs::read(file).expect("vault file"))
        .collect();
    for text in phi_strings() {
        if text == PATIENT_ID {
            continue;
        }
        assert!(
            !contains(&vault, text.as_bytes()),
            "{text:?} is in the vault in plain text"
        );
    }
}

/// Erasure crypto-shreds the patient: afterwards no record can be read, the patient's secret is
/// in no file of the node (so the on-chain commitments, which it could recompute before, can
/// no longer be linked to any content), and the audit trail is intact and still verifies.
#[test]
fn erasure_makes_records_unreadable_and_commitments_unlinkable_but_keeps_the_audit_trail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hospital = Hospital::start(dir.path());
    let doctor = hospital.member("doctor", Some("practitioner"));
    let patient = hospital.member("patient", Some("patient"));
    hospital.import_synthea(&doctor);
    hospital.bind(&patient);
    let lab = format!("Observation/{LAB_OBSERVATION}");
    succeeded(hospital.fhir(
        &doctor,
        &["read", &lab, "--purpose", "ETREAT", "--break-glass"],
    ));

    // Before: the patient's secret sits in its key slot, and with it anyone could link the
    // on-chain commitment of the lab result to its content.
    let me: Value = serde_json::from_str(&stdout(&hospital.fhir(&patient, &["me"]))).expect("me");
    let patient_id = me["patients"][0]["patient"]
        .as_str()
        .expect("patient id")
        .to_string();
    let record = me["patients"][0]["accesses"][0]["decisions"][0][0]
        .as_str()
        .expect("record id")
        .to_string();
    let slots = std::fs::read(hospital.node.home.join("data/vault/vault.slots")).expect("slots");
    let patient_bytes = hex::decode(&patient_id).expect("hex");
    let slot = slots
        .chunks(64)
        .find(|slot| slot[..32] == patient_bytes[..])
        .expect("the patient's slot");
    let secret: [u8; 32] = slot[32..].try_into().expect("32 bytes");
    let (status, entry) = hospital
        .node
        .get(&format!("/v1/state/record-version/{record}/0000000001"));
    assert_eq!(status, 200, "{entry}");
    let on_chain = entry["entry"]["commitment"]
        .as_str()
        .expect("commitment")
        .to_string();
    let recomputed = medledger_crypto::envelope::PatientSecret(secret).commitment(
        &medledger_crypto::Hash::from_hex(&record).expect("record"),
        1,
        &stored_bytes(LAB_OBSERVATION),
    );
    assert_eq!(
        recomputed.to_hex(),
        on_chain,
        "the commitment is linkable before erasure"
    );

    // The patient erases.
    succeeded(hospital.fhir(&patient, &["erase", "--patient", PATIENT_ID]));

    // 1. Unreadable, even by break-glass (410 Gone: the node keeps a tombstone of the id, a
    // keyed hash), and not found by search.
    failed_with(
        &hospital.fhir(
            &doctor,
            &["read", &lab, "--purpose", "ETREAT", "--break-glass"],
        ),
        "410",
    );
    let out = hospital.fhir(
        &doctor,
        &[
            "search",
            "--patient",
            PATIENT_ID,
            "--purpose",
            "ETREAT",
            "--break-glass",
        ],
    );
    let bundle: Value = serde_json::from_str(&stdout(&out)).expect("bundle");
    assert!(
        bundle["entry"].as_array().is_none_or(Vec::is_empty),
        "{bundle}"
    );

    // 3. The audit trail is intact: the access events are still there, and the patient's log
    // shows them.
    let me_after: Value =
        serde_json::from_str(&stdout(&hospital.fhir(&patient, &["me"]))).expect("me");
    assert_eq!(
        me_after["patients"][0]["accesses"],
        me["patients"][0]["accesses"],
    );
    let (status, entry) = hospital
        .node
        .get(&format!("/v1/state/record-version/{record}/0000000001"));
    assert_eq!(status, 200);
    assert_eq!(entry["entry"]["commitment"], on_chain.as_str());
    // The AuditEvents stay searchable by the erased Patient's id, for those who may audit.
    let out = succeeded(hospital.fhir(&patient, &["log", "--patient", PATIENT_ID]));
    let log: Value = serde_json::from_str(&stdout(&out)).expect("bundle");
    assert_eq!(
        log["total"].as_u64(),
        me_after["patients"][0]["accesses_total"].as_u64(),
        "{log}"
    );
    // The break-glass read before the erasure; reads after it are answered 410 from the
    // tombstone, with no record left to name in an access event.
    assert_eq!(log["total"], 1, "{log}");

    // 2. The secret is in no file of the node any more, so the commitment cannot be linked;
    // nor is any id of the patient's resources (the Patient's id is also its MRN), in any file
    // under the node's home, freed database pages included.
    hospital.node.stop();
    let mut files = Vec::new();
    files_under(&hospital.node.home, &mut files);
    let ids = synthea_ids();
    assert!(ids.len() == 314 && ids.contains(&PATIENT_ID.to_string()));
    for file in &files {
        let bytes = std::fs::read(file).expect("file");
        assert!(
            !contains(&bytes, &secret),
            "the secret survives in {}",
            file.display()
        );
        for id in &ids {
            assert!(
                !contains(&bytes, id.as_bytes()),
                "the erased patient's id {id} survives in {}",
                file.display()
            );
        }
        assert!(
            !contains(&bytes, &stored_bytes(LAB_OBSERVATION)[..64]),
            "plaintext survives in {}",
            file.display()
        );
    }
    let out = medledger(&[
        "verify",
        "--home",
        hospital.node.home.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "the chain still verifies: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A genomic file is refused whole (nothing kept) when its bytes are not those its signed upload
/// declared, when it declares nothing, names no patient or is not genomic; a file altered on disk
/// fails its read instead of being served; and erasing the patient deletes it and answers 410.
#[test]
fn genomic_files_are_checked_end_to_end_and_shredded_with_the_patient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hospital = Hospital::start(dir.path());
    let doctor = hospital.member("doctor", Some("practitioner"));
    let patient = hospital.member("patient", Some("patient"));
    hospital.import_synthea(&doctor);
    hospital.bind(&patient);
    let doctor_key = key_of(&doctor);
    let files_dir = hospital.node.home.join("data/vault/files");
    let stored = || std::fs::read_dir(&files_dir).expect("files").count();
    let mut vcf = String::from(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n",
    );
    for line in 0..20_000 {
        vcf.push_str(&format!(
            "1\t{}\t.\tC\tT\t50\tPASS\t.\tGT\t1/1\n",
            10_000 + line
        ));
    }
    let security = format!("Patient/{PATIENT_ID}");
    let upload =
        |body: &[u8], declared: Option<medledger_crypto::Hash>, headers: &[(&str, &str)]| {
            let declared_hex = declared.map(|digest| digest.to_hex());
            let mut all: Vec<(&str, &str)> = headers.to_vec();
            if let Some(hex) = &declared_hex {
                all.push(("x-content-sha256", hex));
            }
            let (status, _, bytes) = hospital.node.signed_declaring(
                &doctor_key,
                "POST",
                "/fhir/Binary",
                body,
                &declared.unwrap_or_else(|| medledger_crypto::sha256(body)),
                &medledger_api::auth::AccessHeaders::default(),
                &all,
            );
            let outcome: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (status, outcome)
        };
    let vcf_headers = [
        ("content-type", "text/vcf"),
        ("x-security-context", security.as_str()),
    ];
    let cases: Vec<(&str, u16, Value)> = vec![
        {
            let (status, outcome) = upload(
                vcf.as_bytes(),
                Some(medledger_crypto::sha256(b"other")),
                &vcf_headers,
            );
            ("bytes other than declared", status, outcome)
        },
        {
            let (status, outcome) = upload(vcf.as_bytes(), None, &vcf_headers);
            ("no declared digest", status, outcome)
        },
        {
            let (status, outcome) = upload(
                vcf.as_bytes(),
                Some(medledger_crypto::sha256(vcf.as_bytes())),
                &[("content-type", "text/vcf")],
            );
            ("no patient", status, outcome)
        },
        {
            let (status, outcome) = upload(
                vcf.as_bytes(),
                Some(medledger_crypto::sha256(vcf.as_bytes())),
                &[
                    ("content-type", "application/fhir+json"),
                    ("x-security-context", &security),
                ],
            );
            ("not genomic", status, outcome)
        },
        {
            let note = b"Gerlach374 is allergic to penicillin\n";
            let (status, outcome) =
                upload(note, Some(medledger_crypto::sha256(note)), &vcf_headers);
            ("not a VCF", status, outcome)
        },
    ];
    for ((name, status, outcome), expected) in cases.into_iter().zip([400, 400, 400, 415, 400]) {
        assert_eq!(status, expected, "{name}: {outcome}");
        assert_eq!(
            outcome["resourceType"], "OperationOutcome",
            "{name}: {outcome}"
        );
        assert_eq!(stored(), 0, "{name}: nothing kept");
    }

    // A good upload is kept encrypted: no variant line is on disk in clear.
    let (status, sequence) = upload(
        vcf.as_bytes(),
        Some(medledger_crypto::sha256(vcf.as_bytes())),
        &vcf_headers,
    );
    assert_eq!(status, 201, "{sequence}");
    let id = sequence["id"].as_str().expect("id").to_string();
    assert_eq!(stored(), 1);
    let file = std::fs::read_dir(&files_dir)
        .expect("files")
        .next()
        .expect("one")
        .expect("entry")
        .path();
    let on_disk = std::fs::read(&file).expect("file");
    assert!(
        !contains(&on_disk, b"1\t10000\t.\tC\tT"),
        "plaintext on disk"
    );
    let copy = dir.path().join("copy.vcf");
    let read = |out: &Path| {
        hospital.fhir(
            &doctor,
            &[
                "download",
                &id,
                "--purpose",
                "ETREAT",
                "--break-glass",
                "--output",
                out.to_str().expect("utf-8"),
            ],
        )
    };
    succeeded(read(&copy));
    assert_eq!(std::fs::read_to_string(&copy).expect("copy"), vcf);

    // One byte flipped on disk: the read fails rather than serve other bytes, and no partial
    // copy is left behind.
    let mut altered = on_disk.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 1;
    std::fs::write(&file, &altered).expect("alter");
    let broken = dir.path().join("broken.vcf");
    let out = read(&broken);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(!broken.exists(), "a partial copy was left");
    std::fs::write(&file, &on_disk).expect("restore");

    // Erasure deletes the file; its id answers 410 from then on.
    succeeded(hospital.fhir(&patient, &["erase", "--patient", PATIENT_ID]));
    assert_eq!(stored(), 0, "the file went with the patient");
    failed_with(&read(&broken), "410");
}
