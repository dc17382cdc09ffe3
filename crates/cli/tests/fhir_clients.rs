//! End-to-end tests of the FHIR face as standard clients use it, through the real binary: search
//! paged by what consent allows, validated and versioned writes, content negotiation, and SMART
//! on FHIR Backend Services driven by unmodified third-party libraries (Authlib for OAuth 2.0,
//! fhirpy for FHIR), with every denial path: a narrow scope, a forged token, a missing purpose, a
//! replayed assertion, missing consent and a revoked member.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::hospital::{Hospital, key_of, succeeded};
use common::{LAB_OBSERVATION, PATIENT_ID, public_key_of, stdout};
use medledger_api::auth::AccessHeaders;
use serde_json::{Value, json};

fn treat() -> AccessHeaders {
    AccessHeaders {
        purpose: Some("TREAT".into()),
        ..AccessHeaders::default()
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// The Synthea patient's Observations, by id, as the Bundle file holds them.
fn synthea_observations() -> BTreeSet<String> {
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(common::synthea()).expect("synthea"))
            .expect("json");
    bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["resource"]["resourceType"] == "Observation")
        .map(|entry| entry["resource"]["id"].as_str().expect("id").to_string())
        .collect()
}

/// Follows a searchset's `next` links, through signed requests, collecting every entry's id.
fn follow(hospital: &Hospital, key: &Path, first: &str) -> (Vec<String>, Vec<Value>) {
    let key = key_of(key);
    let mut ids = Vec::new();
    let mut pages = Vec::new();
    let mut path = first.to_string();
    loop {
        let (status, bytes) = hospital.node.signed(&key, "GET", &path, b"", &treat());
        let page = json_of(&bytes);
        assert_eq!(status, 200, "{path}: {page}");
        for entry in page["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                ids.push(entry["resource"]["id"].as_str().expect("id").to_string());
            }
        }
        let next = page["link"]
            .as_array()
            .expect("links")
            .iter()
            .find(|link| link["relation"] == "next")
            .map(|link| link["url"].as_str().expect("url").to_string());
        pages.push(page);
        match next {
            // The links are absolute; the signed path is what follows the host.
            Some(url) => {
                path = url[url.find("/fhir").expect("fhir path")..].to_string();
            }
            None => return (ids, pages),
        }
    }
}

/// A hospital with the Synthea patient imported and bound, a doctor the patient lets read
/// Observations for treatment, and a nurse with no grant.
fn hospital_with_consent(dir: &Path) -> (Hospital, PathBuf, PathBuf, PathBuf) {
    let hospital = Hospital::start(dir);
    let doctor = hospital.member("doctor", Some("practitioner"));
    let nurse = hospital.member("nurse", Some("practitioner"));
    let patient = hospital.member("patient", Some("patient"));
    hospital.import_synthea(&doctor);
    hospital.bind(&patient);
    succeeded(hospital.consent(
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
    (hospital, doctor, nurse, patient)
}

#[test]
fn search_pages_by_what_consent_allows_and_links_every_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hospital, doctor, nurse, patient) = hospital_with_consent(dir.path());
    let observations = synthea_observations();
    assert!(observations.len() > 20);

    // Across types, consent first: total is the Observations, the rest are withheld.
    let (status, headers, bytes) = hospital.node.signed_with(
        &key_of(&doctor),
        "GET",
        &format!("/fhir?patient={PATIENT_ID}&_count=1000"),
        b"",
        &treat(),
        &[],
    );
    let all = json_of(&bytes);
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], observations.len(), "{}", all["total"]);
    let withheld: usize = headers["x-withheld-records"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert_eq!(withheld, 314 - observations.len());

    // Paged by ten: every permitted Observation exactly once, with self/next/previous links.
    let (ids, pages) = follow(
        &hospital,
        &doctor,
        &format!("/fhir/Observation?patient=Patient/{PATIENT_ID}&_count=10"),
    );
    assert_eq!(ids.len(), observations.len());
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), observations);
    assert_eq!(pages.len(), observations.len().div_ceil(10));
    for (number, page) in pages.iter().enumerate() {
        assert_eq!(page["total"], observations.len());
        let relations: Vec<&str> = page["link"]
            .as_array()
            .expect("links")
            .iter()
            .map(|link| link["relation"].as_str().expect("relation"))
            .collect();
        assert_eq!(relations[0], "self");
        assert_eq!(relations.contains(&"previous"), number > 0, "{relations:?}");
        assert_eq!(relations.contains(&"next"), number + 1 < pages.len());
        // Every served resource carries its version and the block time it was written.
        for entry in page["entry"].as_array().expect("entries") {
            assert_eq!(entry["resource"]["meta"]["versionId"], "1");
            assert!(entry["resource"]["meta"]["lastUpdated"].is_string());
            assert!(
                entry["fullUrl"]
                    .as_str()
                    .expect("url")
                    .starts_with("http://")
            );
        }
    }

    // _count=0 is the total alone; an unknown parameter is ignored and left out of the links,
    // unless the client asks for strict handling.
    let (status, bytes) = hospital.node.signed(
        &key_of(&doctor),
        "GET",
        &format!("/fhir/Observation?patient={PATIENT_ID}&_count=0&_totalMethod=x&_elements=id"),
        b"",
        &treat(),
    );
    let counted = json_of(&bytes);
    assert_eq!(status, 200, "{counted}");
    assert_eq!(counted["total"], observations.len());
    assert!(counted.get("entry").is_none(), "{counted}");
    let self_link = counted["link"][0]["url"].as_str().expect("self");
    assert!(
        !self_link.contains("_totalMethod") && self_link.contains("_count=0"),
        "{self_link}"
    );
    let (status, _, bytes) = hospital.node.signed_with(
        &key_of(&doctor),
        "GET",
        &format!("/fhir/Observation?patient={PATIENT_ID}&_totalMethod=x"),
        b"",
        &treat(),
        &[("prefer", "handling=strict")],
    );
    assert_eq!(status, 400, "{}", json_of(&bytes));
    assert!(String::from_utf8_lossy(&bytes).contains("_totalMethod"));

    // Search parameters on content, sorted by date, with the Patient and Provenance included.
    let vital = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs";
    let (status, bytes) = hospital.node.signed(
        &key_of(&doctor),
        "GET",
        &format!(
            "/fhir/Observation?patient={PATIENT_ID}&category={}&status=final&_sort=-date&_count=1000",
            vital.replace('|', "%7C")
        ),
        b"",
        &treat(),
    );
    let vitals = json_of(&bytes);
    assert_eq!(status, 200, "{vitals}");
    let entries = vitals["entry"].as_array().expect("entries");
    assert!(!entries.is_empty() && entries.len() < observations.len());
    let dates: Vec<&str> = entries
        .iter()
        .map(|entry| {
            assert!(
                entry["resource"]["category"]
                    .to_string()
                    .contains("vital-signs")
            );
            // Synthea writes vital signs' times as instants, all in one offset.
            entry["resource"]["effectiveInstant"]
                .as_str()
                .or_else(|| entry["resource"]["effectiveDateTime"].as_str())
                .expect("date")
        })
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted, "sorted by date, newest first");
    let newest_year = &dates[0][..4];
    let (status, bytes) = hospital.node.signed(
        &key_of(&doctor),
        "GET",
        &format!(
            "/fhir/Observation?patient={PATIENT_ID}&date=ge{newest_year}&date=lt9999&_count=1000"
        ),
        b"",
        &treat(),
    );
    let recent = json_of(&bytes);
    assert_eq!(status, 200, "{recent}");
    assert!(recent["total"].as_u64().expect("total") >= 1);
    assert!(recent["total"].as_u64() < Some(observations.len() as u64));
    let (status, bytes) = hospital.node.signed(
        &key_of(&doctor),
        "GET",
        &format!("/fhir/Observation?patient={PATIENT_ID}&date=2019-02-30"),
        b"",
        &treat(),
    );
    assert_eq!(status, 400, "{}", json_of(&bytes));
    // The Patient is included only where consent allows it: the doctor's grant is Observations.
    let (status, bytes) = hospital.node.signed(
        &key_of(&doctor),
        "GET",
        &format!(
            "/fhir/Observation?patient={PATIENT_ID}&_id={LAB_OBSERVATION}&_include=Observation:patient&_revinclude=Provenance:target"
        ),
        b"",
        &treat(),
    );
    let included = json_of(&bytes);
    assert_eq!(status, 200, "{included}");
    let kinds: Vec<(&str, &str)> = included["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["resource"]["resourceType"].as_str().expect("type"),
                entry["search"]["mode"].as_str().expect("mode"),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("Observation", "match"), ("Provenance", "include")],
        "{included}"
    );

    // The nurse has no grant: nothing, and everything counted as withheld.
    let (status, headers, bytes) = hospital.node.signed_with(
        &key_of(&nurse),
        "GET",
        &format!("/fhir/Observation?patient={PATIENT_ID}"),
        b"",
        &treat(),
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(json_of(&bytes)["total"], 0);
    assert_eq!(
        headers["x-withheld-records"].to_str().expect("ascii"),
        observations.len().to_string()
    );

    // The audit trail pages too, and only the patient, the custodian and auditors see it.
    let (log, pages) = follow(
        &hospital,
        &patient,
        &format!("/fhir/AuditEvent?patient={PATIENT_ID}&_count=3"),
    );
    assert!(log.len() >= 3, "{log:?}");
    assert_eq!(pages[0]["total"], log.len());
    assert_eq!(pages.len(), log.len().div_ceil(3));
    let (status, _) = hospital.signed(
        &key_of(&doctor),
        "GET",
        &format!("/fhir/AuditEvent?patient={PATIENT_ID}"),
        b"",
        None,
    );
    assert_eq!(
        status, 403,
        "a practitioner does not see who else read the record"
    );
    let (status, consents) = hospital.signed(
        &key_of(&patient),
        "GET",
        &format!("/fhir/Consent?patient={PATIENT_ID}&_count=1"),
        b"",
        None,
    );
    assert_eq!(status, 200, "{consents}");
    assert_eq!(consents["total"], 1);
    assert!(consents["link"][0]["url"].as_str().is_some());
    // One grant by id: to the patient and the custodian, not to a practitioner.
    let id = consents["entry"][0]["resource"]["id"]
        .as_str()
        .expect("grant id");
    for (key, expected) in [(&patient, 200), (&hospital.root, 200), (&doctor, 403)] {
        let (status, body) = hospital.signed(
            &key_of(key),
            "GET",
            &format!("/fhir/Consent/{id}"),
            b"",
            None,
        );
        assert_eq!(status, expected, "{body}");
    }
}

#[test]
fn writes_are_validated_versioned_and_negotiated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (hospital, doctor, _nurse, _patient) = hospital_with_consent(dir.path());
    let doctor_key = key_of(&doctor);
    let observation = |status: &str, code: Value| {
        serde_json::to_vec(&json!({
            "resourceType": "Observation",
            "status": status,
            "code": code,
            "subject": {"reference": format!("Patient/{PATIENT_ID}")},
        }))
        .expect("json")
    };
    let count = |hospital: &Hospital| {
        let (_, bytes) = hospital.node.signed(
            &doctor_key,
            "GET",
            &format!("/fhir/Observation?patient={PATIENT_ID}&_count=0"),
            b"",
            &treat(),
        );
        json_of(&bytes)["total"].as_u64().expect("total")
    };
    let before = count(&hospital);

    // Invalid: every problem reported, nothing stored.
    let (status, _, bytes) = hospital.node.signed_with(
        &doctor_key,
        "POST",
        "/fhir/Observation",
        &observation("not-a-status", json!("8302-2")),
        &AccessHeaders::default(),
        &[("content-type", "application/fhir+json")],
    );
    let outcome = json_of(&bytes);
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let expressions: Vec<&str> = outcome["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|issue| issue["expression"][0].as_str().expect("expression"))
        .collect();
    assert_eq!(expressions, ["Observation.code", "Observation.status"]);
    assert_eq!(count(&hospital), before);

    // A create without an id gets one, an absolute Location and the resource back.
    let (status, headers, bytes) = hospital.node.signed_with(
        &doctor_key,
        "POST",
        "/fhir/Observation/",
        &observation("final", json!({"text": "weight"})),
        &AccessHeaders::default(),
        &[("content-type", "application/fhir+json; charset=utf-8")],
    );
    let created = json_of(&bytes);
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("server id").to_string();
    assert_eq!(created["meta"]["versionId"], "1");
    let location = headers["location"].to_str().expect("ascii");
    assert!(
        location.starts_with("http://")
            && location.ends_with(&format!("/fhir/Observation/{id}/_history/1")),
        "{location}"
    );
    assert_eq!(headers["etag"].to_str().expect("ascii"), "W/\"1\"");
    assert_eq!(count(&hospital), before + 1);
    let (status, bytes) = hospital.node.signed(
        &doctor_key,
        "GET",
        &format!("/fhir/Observation/{id}"),
        b"",
        &treat(),
    );
    let read = json_of(&bytes);
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], id.as_str());
    assert_eq!(read["meta"]["versionId"], "1");

    // Version-aware update: a stale If-Match is 412 and stores nothing; the current one works.
    let mut changed = read.clone();
    changed["status"] = json!("amended");
    let body = serde_json::to_vec(&changed).expect("json");
    let path = format!("/fhir/Observation/{id}");
    let put = |if_match: &str, prefer: &str| {
        hospital.node.signed_with(
            &doctor_key,
            "PUT",
            &path,
            &body,
            &AccessHeaders::default(),
            &[("if-match", if_match), ("prefer", prefer)],
        )
    };
    let (status, _, bytes) = put("W/\"7\"", "return=representation");
    assert_eq!(status, 412, "{}", json_of(&bytes));
    let (status, headers, bytes) = put("W/\"1\"", "return=minimal");
    assert_eq!(status, 200, "{}", json_of(&bytes));
    assert!(bytes.is_empty(), "return=minimal has no body");
    assert_eq!(headers["etag"].to_str().expect("ascii"), "W/\"2\"");
    let (status, _, bytes) = put("W/\"1\"", "return=OperationOutcome");
    assert_eq!(status, 412, "{}", json_of(&bytes));

    // Content negotiation: 406 for formats the server does not speak, 415 for bodies.
    for (accept, format, expected) in [
        ("application/fhir+xml", "", 406),
        ("application/fhir+json", "", 200),
        ("*/*", "", 200),
        ("", "&_format=xml", 406),
        ("", "&_format=json", 200),
    ] {
        let mut headers = Vec::new();
        if !accept.is_empty() {
            headers.push(("accept", accept));
        }
        let (status, _, bytes) = hospital.node.signed_with(
            &doctor_key,
            "GET",
            &format!("/fhir/Observation/{id}?x=1{format}"),
            b"",
            &treat(),
            &headers,
        );
        assert_eq!(status, expected, "{accept}{format}: {}", json_of(&bytes));
    }
    let (status, _, bytes) = hospital.node.signed_with(
        &doctor_key,
        "POST",
        "/fhir/Observation",
        &observation("final", json!({"text": "x"})),
        &AccessHeaders::default(),
        &[("content-type", "text/plain")],
    );
    assert_eq!(status, 415, "{}", json_of(&bytes));
    assert_eq!(count(&hospital), before + 1);

    // Provenance: searched by target, read by id.
    let (status, bytes) = hospital.node.signed(
        &key_of(&hospital.root),
        "GET",
        &format!("/fhir/Provenance?target=Observation/{id}"),
        b"",
        &AccessHeaders::default(),
    );
    let provenance = json_of(&bytes);
    assert_eq!(status, 200, "{provenance}");
    assert_eq!(provenance["total"], 2);
    let second = provenance["entry"][1]["resource"]["id"]
        .as_str()
        .expect("id");
    let (status, bytes) = hospital.node.signed(
        &key_of(&hospital.root),
        "GET",
        &format!("/fhir/Provenance/{second}"),
        b"",
        &AccessHeaders::default(),
    );
    let one = json_of(&bytes);
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        one["target"][0]["reference"],
        format!("Observation/{id}/_history/2")
    );
    let (status, _) = hospital.signed(
        &key_of(&hospital.root),
        "GET",
        "/fhir/Provenance/not-a-provenance-1",
        b"",
        None,
    );
    assert_eq!(status, 404);
}

fn python() -> PathBuf {
    common::python_clients()
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/smart_backend.py")
}

/// An access token for `key`, fetched by the third-party OAuth client.
fn token(python: &Path, url: &str, key: &Path, scope: &str, purpose: &str) -> String {
    let out = Command::new(python)
        .arg(script())
        .args(["token", url, key.to_str().expect("utf-8"), scope, purpose])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out).trim().to_string()
}

#[test]
fn a_stock_smart_backend_client_uses_the_fhir_face() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let (hospital, doctor, nurse, patient) = hospital_with_consent(dir.path());
    // The doctor may read every type for treatment (the client reads back what it writes).
    succeeded(hospital.consent(
        &patient,
        &[
            "grant",
            "--to",
            &format!("key:{}", public_key_of(&doctor)),
            "--purpose",
            "TREAT",
        ],
    ));
    // A transaction Bundle of three new Observations of the stored patient.
    let entries: Vec<Value> = (0..3)
        .map(|n| {
            json!({
                "fullUrl": format!("urn:uuid:00000000-0000-4000-8000-00000000000{n}"),
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                    "subject": {"reference": format!("Patient/{PATIENT_ID}")},
                    "valueQuantity": {"value": 170 + n, "unit": "cm"},
                },
                "request": {"method": "POST", "url": "Observation"},
            })
        })
        .collect();
    let bundle = dir.path().join("bundle.json");
    std::fs::write(
        &bundle,
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string(),
    )
    .expect("bundle");

    let auditor = hospital.member("auditor", Some("auditor"));
    let url = &hospital.node.url;
    let out = Command::new(&python)
        .arg(script())
        .args([
            url.as_str(),
            doctor.to_str().expect("utf-8"),
            PATIENT_ID,
            bundle.to_str().expect("utf-8"),
            auditor.to_str().expect("utf-8"),
            common::bin(),
        ])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the SMART client failed:\n{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout(&out).trim()).expect("summary");
    assert_eq!(summary["imported"], 3);
    assert_eq!(
        summary["observations"],
        synthea_observations().len() + 3,
        "{summary}"
    );
    assert_eq!(summary["updated_version"], "2");
    assert_eq!(summary["es384"], true);
    assert!(summary["validated"].as_u64() > Some(70), "{summary}");

    // Consent still decides: the nurse's token reads nothing, and the denial is audited on chain
    // naming the nurse.
    let nurse_token = token(&python, url, &nurse, "system/*.rs", "TREAT");
    let (status, _, bytes) = hospital.node.bearer(
        &nurse_token,
        "GET",
        &format!("/fhir/Observation/{LAB_OBSERVATION}"),
        b"",
        &[],
    );
    assert_eq!(status, 403, "{}", json_of(&bytes));
    let (status, bytes) = hospital.node.signed(
        &key_of(&hospital.root),
        "GET",
        &format!("/fhir/AuditEvent?patient={PATIENT_ID}&_count=1000"),
        b"",
        &AccessHeaders::default(),
    );
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&bytes).contains(&public_key_of(&nurse)),
        "the nurse's denied read is on the audit trail"
    );

    // A revoked member's token stops working at once.
    let doctor_token = summary["token"].as_str().expect("token");
    let read = |token: &str| {
        hospital.node.bearer(
            token,
            "GET",
            &format!("/fhir/Observation/{LAB_OBSERVATION}"),
            b"",
            &[],
        )
    };
    assert_eq!(read(doctor_token).0, 200);
    succeeded(hospital.node.cli(&[
        "tx",
        "--key",
        hospital.root.to_str().expect("utf-8"),
        "revoke",
        "--member",
        &public_key_of(&doctor),
    ]));
    let (status, headers, bytes) = read(doctor_token);
    assert_eq!(status, 401, "{}", json_of(&bytes));
    assert!(
        headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("invalid_token")
    );
    // Nor can it get a new one.
    let out = Command::new(&python)
        .arg(script())
        .args(["token", url, doctor.to_str().expect("utf-8"), "system/*.rs"])
        .output()
        .expect("python runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_client"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stock_smart_app_launches_for_a_patient() {
    let python = python();
    let dir = tempfile::tempdir().expect("tempdir");
    let (hospital, doctor, _nurse, _patient) = hospital_with_consent(dir.path());
    // Another patient, with one Observation the app must not reach.
    let other = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:10000000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "id": "other-patient"},
         "request": {"method": "PUT", "url": "Patient/other-patient"}},
        {"fullUrl": "urn:uuid:10000000-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "id": "other-observation", "status": "final",
                      "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:10000000-0000-4000-8000-000000000001"}},
         "request": {"method": "PUT", "url": "Observation/other-observation"}}]});
    let (status, answer) = hospital.signed(
        &key_of(&doctor),
        "POST",
        "/fhir",
        other.to_string().as_bytes(),
        None,
    );
    assert_eq!(status, 200, "{answer}");

    // The organisation registers the app; only its root key may.
    let redirect = "http://127.0.0.1:9/callback";
    let out = hospital.fhir(
        &doctor,
        &[
            "register-app",
            "--name",
            "Growth chart",
            "--redirect-uri",
            redirect,
        ],
    );
    assert!(!out.status.success(), "a practitioner registered an app");
    // Redirect URIs an app could never be sent back to are refused, and nothing is kept.
    for bad in [
        "ftp://127.0.0.1/cb",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/cb#x",
        "/cb",
    ] {
        let out = hospital.fhir(
            &hospital.root,
            &["register-app", "--name", "Bad", "--redirect-uri", bad],
        );
        assert!(!out.status.success(), "{bad} was registered");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("400"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = succeeded(hospital.fhir(
        &hospital.root,
        &[
            "register-app",
            "--name",
            "Growth chart",
            "--redirect-uri",
            redirect,
        ],
    ));
    let app: Value = serde_json::from_str(&stdout(&out)).expect("app");
    let registry: Value = serde_json::from_slice(
        &std::fs::read(hospital.node.home.join("data/oauth/apps.json")).expect("registry"),
    )
    .expect("json");
    assert_eq!(registry.as_array().map(Vec::len), Some(1), "{registry}");
    let client_id = app["client_id"].as_str().expect("client_id").to_string();

    // An unknown app or an unregistered redirect URI gets an error page, never a redirect.
    for query in [
        format!("client_id=nobody&redirect_uri={redirect}&response_type=code"),
        format!("client_id={client_id}&redirect_uri=http://evil.example/cb&response_type=code"),
    ] {
        let (status, _) = hospital.node.get(&format!("/oauth/authorize?{query}"));
        assert_eq!(status, 400, "{query}");
    }

    let url = &hospital.node.url;
    let out = Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/smart_launch.py"))
        .args([
            url.as_str(),
            common::bin(),
            &client_id,
            redirect,
            doctor.to_str().expect("utf-8"),
            PATIENT_ID,
            "other-observation",
        ])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the SMART app failed:\n{}\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout(&out).trim()).expect("summary");
    assert_eq!(summary["observations"], synthea_observations().len());

    // Once the clinician is revoked, the refresh token is dead too.
    let refresh_token = summary["refresh_token"].as_str().expect("refresh token");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", client_id.as_str()),
    ];
    assert_eq!(hospital.node.post_form("/oauth/token", &form).0, 200);
    succeeded(hospital.node.cli(&[
        "tx",
        "--key",
        hospital.root.to_str().expect("utf-8"),
        "revoke",
        "--member",
        &public_key_of(&doctor),
    ]));
    let (status, answer) = hospital.node.post_form("/oauth/token", &form);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "invalid_grant");
}
