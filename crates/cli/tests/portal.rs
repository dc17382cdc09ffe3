//! End-to-end test of the portal's chain explorer through the real binary: the node serves it at
//! `/portal` with nothing else to install; the explorer shows the head, the validators and the
//! latest blocks; a block page shows its header, who signed its certificate with what power, and
//! each transaction's outcome (a refused one with its code); bad input and missing blocks answer
//! in plain words; every page carries a strict Content-Security-Policy and escapes what it echoes.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{TestNode, anchor, wait_for_height};
use serde_json::Value;
use std::time::Duration;

fn page(node: &TestNode, path: &str) -> (u16, Vec<(String, String)>, String) {
    let (status, headers, body) = node.get_with_headers(path, &[]);
    let text = match body {
        Value::String(text) => text,
        other => other.to_string(),
    };
    (status, headers, text)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn the_chain_explorer_shows_blocks_certificates_and_outcomes_in_plain_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut node = TestNode::init(dir);
    node.start();
    let org = node.org_key();
    anchor(&node, &org, 1, true);
    let member = node.new_key(dir, "member", Some((&org, "practitioner")));
    // Enrolling the same key again is refused on chain: its block shows the refusal's code.
    let member_key = common::public_key_of(&member);
    let refused = node.cli(&[
        "tx",
        "--key",
        org.to_str().expect("utf-8"),
        "enrol",
        "--member",
        &member_key,
        "--role",
        "practitioner",
    ]);
    assert!(!refused.status.success());
    let receipt: Value = serde_json::from_slice(&refused.stdout).expect("receipt");
    let refused_height = receipt["height"].as_u64().expect("on chain");
    wait_for_height(&node, refused_height, Duration::from_secs(10));

    let (status, headers, home) = page(&node, "/portal");
    assert_eq!(status, 200);
    assert!(home.contains("Chain explorer"), "{home}");
    let policy = header(&headers, "content-security-policy").expect("a CSP");
    assert!(
        policy.contains("default-src 'none'") && !policy.contains("unsafe"),
        "{policy}"
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(!home.contains("<script"), "the portal serves no script");

    let (status, _, explorer) = page(&node, "/portal/explorer");
    assert_eq!(status, 200);
    assert!(
        explorer.contains("hospital"),
        "the validator's organisation: {explorer}"
    );
    assert!(explorer.contains(&format!("/portal/explorer/blocks/{refused_height}")));
    assert!(explorer.contains("In good order"), "{explorer}");

    let (status, _, block) = page(&node, &format!("/portal/explorer/blocks/{refused_height}"));
    assert_eq!(status, 200, "{block}");
    assert!(
        block.contains("Final: validators holding 1 of 1"),
        "{block}"
    );
    assert!(block.contains("refused: already_enrolled"), "{block}");
    assert!(block.contains(">enrol<"), "{block}");
    let (_, _, first) = page(&node, "/portal/explorer/blocks/1");
    assert!(first.contains("committed"), "{first}");

    // Missing blocks and bad input answer in plain words, never a raw error.
    let (status, _, missing) = page(&node, "/portal/explorer/blocks/999999");
    assert_eq!(status, 404);
    assert!(
        missing.contains("This chain has no block at height 999999"),
        "{missing}"
    );
    let (status, _, bad) = page(&node, "/portal/explorer/blocks/twelve");
    assert_eq!(status, 400);
    assert!(bad.contains("whole number"), "{bad}");
    let (status, _, echoed) = page(
        &node,
        "/portal/explorer/block?height=%3Cscript%3Ealert(1)%3C/script%3E",
    );
    assert_eq!(status, 400);
    assert!(!echoed.contains("<script>"), "{echoed}");
    assert!(
        echoed.contains("&lt;script&gt;") || echoed.contains("&#60;script&#62;"),
        "{echoed}"
    );
    // The jump form leads to the block.
    let (status, headers, jumped) = page(&node, "/portal/explorer/block?height=1");
    assert!(
        (status == 200 && jumped.contains("Block 1"))
            || (status == 303 && header(&headers, "location") == Some("/portal/explorer/blocks/1")),
        "{status} {jumped}"
    );

    let (status, headers, css) = page(&node, "/portal/static/portal.css");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/css")));
    assert!(css.contains("--focus"));
    node.stop();
}

#[test]
fn the_chain_explorer_in_chromium_is_usable_by_keyboard_and_on_a_phone_and_passes_axe() {
    let browser = common::browser_toolchain();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut node = TestNode::init(dir);
    node.start();
    let org = node.org_key();
    anchor(&node, &org, 1, true);
    let member = node.new_key(dir, "member", Some((&org, "practitioner")));
    let refused = node.cli(&[
        "tx",
        "--key",
        org.to_str().expect("utf-8"),
        "enrol",
        "--member",
        &common::public_key_of(&member),
        "--role",
        "practitioner",
    ]);
    let receipt: Value = serde_json::from_slice(&refused.stdout).expect("receipt");
    let refused_height = receipt["height"].as_u64().expect("on chain");
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    let out = std::process::Command::new("node")
        .arg(browser.join("explorer.mjs"))
        .arg(&node.url)
        .arg(&shots)
        .arg(refused_height.to_string())
        .output()
        .expect("node runs");
    node.stop();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["home", "explorer", "block", "missing-block"] {
        assert!(
            shots.join(format!("{name}.png")).exists(),
            "no screenshot of {name}"
        );
    }
}

/// Runs `medledger portal invite` as `root`; the answer's link.
fn invite(node: &TestNode, root: &std::path::Path, member: &[&str]) -> std::process::Output {
    let mut args = vec!["portal", "--key", root.to_str().expect("utf-8"), "invite"];
    args.extend_from_slice(member);
    node.cli(&args)
}

fn link_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("json");
    answer["link"].as_str().expect("a link").to_string()
}

/// People use the portal in Chromium with passkeys (a virtual WebAuthn authenticator): a patient
/// invited by the hospital makes a passkey, grants a clinician consent, sees the clinician's FHIR
/// read in their access log, revokes (and the next read is refused and shown too); a form sent
/// after the session ended is kept and sent once they sign in again; a forged CSRF token and the
/// wrong role are refused in plain words. A pharmacist scans a recalled pack as a keyboard-wedge
/// scanner types it (symbology identifier, group separator, Enter) and reads "Recalled" with the
/// custody trail. Invitations: only an organisation's root key makes them, for its own members,
/// once each. Every page passes axe-core and fits a phone.
#[test]
fn patients_and_pharmacists_sign_in_with_passkeys_and_act_in_chromium() {
    let browser = common::browser_toolchain();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut node = TestNode::init_orgs(
        dir,
        &[
            "hospital=Test Hospital",
            "maker=Maker Pharma",
            "pharmacy=Corner Pharmacy",
            "payer=Gold Health",
        ],
        &["maker=0614141", "pharmacy=9520011"],
    );
    node.start();
    let hospital = node.org_key();
    let maker_root = node.home.join("keys/maker.key");
    let pharmacy_root = node.home.join("keys/pharmacy.key");
    let doctor = node.new_key(dir, "doctor", Some((&hospital, "practitioner")));
    let patient = node.new_key(dir, "patient", Some((&hospital, "patient")));
    let maker = node.new_key(dir, "maker", Some((&maker_root, "manufacturer")));
    let pharmacist = node.new_key(dir, "pharmacist", Some((&pharmacy_root, "pharmacy")));
    let device = node.new_key(dir, "device", Some((&hospital, "device")));
    let auditor = node.new_key(dir, "auditor", Some((&maker_root, "auditor")));
    let payer_root = node.home.join("keys/payer.key");
    let reviewer = node.new_key(dir, "reviewer", Some((&payer_root, "insurer")));

    // The hospital holds the patient's records, bound to the patient's key.
    let bundle = serde_json::json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            { "resource": { "resourceType": "Patient", "id": "portal-patient", "gender": "female" },
              "request": { "method": "PUT", "url": "Patient/portal-patient" } },
            { "resource": { "resourceType": "Observation", "id": "portal-bp", "status": "final",
                "code": { "coding": [{ "system": "http://loinc.org", "code": "8480-6" }] },
                "subject": { "reference": "Patient/portal-patient" },
                "valueQuantity": { "value": 120, "unit": "mm[Hg]" } },
              "request": { "method": "PUT", "url": "Observation/portal-bp" } },
        ],
    });
    let bundle_file = dir.join("bundle.json");
    std::fs::write(&bundle_file, bundle.to_string()).expect("bundle");
    common::ok(common::run_as(
        &node,
        "fhir",
        &doctor,
        &["import", bundle_file.to_str().expect("utf-8")],
    ));
    common::ok(common::run_as(
        &node,
        "fhir",
        &hospital,
        &[
            "bind",
            "--patient",
            "portal-patient",
            "--patient-key",
            &common::public_key_of(&patient),
        ],
    ));

    // The patient's pulse oximeter, watched by a rule on SpO2.
    common::ok(common::run_as(
        &node,
        "monitor",
        &doctor,
        &[
            "pair",
            "--device",
            &common::public_key_of(&device),
            "--patient",
            "Patient/portal-patient",
        ],
    ));
    common::ok(common::run_as(
        &node,
        "monitor",
        &doctor,
        &[
            "rule",
            "--patient",
            "Patient/portal-patient",
            "--id",
            "low-spo2",
            "--code",
            "59408-5",
            "--below",
            "90",
            "--for-ms",
            "2000",
        ],
    ));

    // A recalled lot, and a genuine pack shipped to the pharmacy.
    const GTIN: &str = "09506000134352";
    common::ok(common::run_as(
        &node,
        "supply",
        &maker,
        &[
            "register",
            "--gtin",
            GTIN,
            "--name",
            "Insulin pen",
            "--storage",
            "2..8",
        ],
    ));
    common::ok(common::run_as(
        &node,
        "supply",
        &maker,
        &[
            "commission",
            "--gtin",
            GTIN,
            "--lot",
            "L1",
            "--expiry",
            "271231",
            "--range",
            "0001..0002",
        ],
    ));
    common::ok(common::run_as(
        &node,
        "supply",
        &maker,
        &[
            "recall",
            "--gtin",
            GTIN,
            "--lot",
            "L1",
            "--reason",
            "particulates",
        ],
    ));
    let genuine = format!("(01){GTIN}(17)271231(10)L2(21)0003");
    common::ok(common::run_as(
        &node,
        "supply",
        &maker,
        &[
            "commission",
            "--gtin",
            GTIN,
            "--lot",
            "L2",
            "--expiry",
            "271231",
            "--serial",
            "0003",
        ],
    ));
    let shipped = common::run_as(
        &node,
        "supply",
        &maker,
        &["ship", "--to", "pharmacy", "--unit", &genuine],
    );
    let shipment = common::stdout(&shipped)
        .lines()
        .find_map(|line| line.strip_prefix("shipment ").map(str::to_string))
        .unwrap_or_else(|| panic!("no shipment: {}", common::stdout(&shipped)));
    common::ok(common::run_as(
        &node,
        "supply",
        &pharmacist,
        &["receive", "--shipment", &shipment],
    ));

    // The payer's plan, funded in a token three of the four organisations created, covers the
    // patient; a claim naming no encounter waits in the payer's review queue.
    let payer_key = common::public_key_of(&payer_root);
    let token = |key: &std::path::Path, args: &[&str]| {
        common::ok(common::run_as(&node, "token", key, args))
    };
    token(
        &payer_root,
        &[
            "propose",
            "--symbol",
            "USD",
            "--name",
            "Consortium dollar",
            "--issuer",
            "payer",
        ],
    );
    token(&hospital, &["approve-class", "--symbol", "USD"]);
    token(&maker_root, &["approve-class", "--symbol", "USD"]);
    token(
        &payer_root,
        &[
            "mint", "--symbol", "USD", "--to", &payer_key, "--amount", "10000000",
        ],
    );
    let policy = serde_json::json!({
        "plan": "gold", "effective": "2026-01-01", "symbol": "USD", "account": payer_key,
        "deductible": "0", "copay": "0", "coinsurance_bp": 0, "annual_limit": "500000",
        "review_charge_ratio_bp": 30000, "authorisation_days": 90,
        "services": [{ "code": "99213", "allowed": "15000", "units_per_day_max": 1 }],
        "edits": [],
    });
    let policy_file = dir.join("policy.json");
    std::fs::write(&policy_file, policy.to_string()).expect("policy");
    common::ok(common::run_as(
        &node,
        "claim",
        &payer_root,
        &["publish", policy_file.to_str().expect("utf-8")],
    ));
    let covered = common::ok(common::run_as(
        &node,
        "claim",
        &payer_root,
        &[
            "cover",
            "--plan",
            "gold",
            "--member",
            &common::public_key_of(&patient),
            "--start",
            "2026-01-01",
        ],
    ));
    let coverage = covered["coverage"].as_str().expect("coverage").to_string();
    let claim = serde_json::json!({
        "resourceType": "Claim", "status": "active", "use": "claim", "created": "2026-11-20",
        "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional" }] },
        "patient": { "reference": "Patient/portal-patient" },
        "provider": { "reference": "Organization/hospital" },
        "priority": { "coding": [{ "code": "normal" }] },
        "insurance": [{ "sequence": 1, "focal": true, "coverage": { "reference": format!("Coverage/{coverage}") } }],
        "item": [{
            "sequence": 1,
            "productOrService": { "coding": [{ "system": "http://www.ama-assn.org/go/cpt", "code": "99213" }] },
            "servicedDate": "2026-11-23", "quantity": { "value": 1 },
            "net": { "value": 150.0, "currency": "USD" },
        }],
    });
    let claim_file = dir.join("claim.json");
    std::fs::write(&claim_file, claim.to_string()).expect("claim");
    let queued = common::ok(common::run_as(
        &node,
        "claim",
        &doctor,
        &["submit", claim_file.to_str().expect("utf-8")],
    ));
    assert_eq!(queued["outcome"], "queued", "{queued}");

    // A trial the patient is enrolled in at the hospital, awaiting their eConsent.
    let sponsor = node.new_key(dir, "sponsor", Some((&maker_root, "sponsor")));
    for (name, text) in [
        ("protocol.txt", "protocol, version 1"),
        ("sap.txt", "analysis plan"),
    ] {
        std::fs::write(dir.join(name), text).expect("trial document");
    }
    common::ok(common::run_as(
        &node,
        "trial",
        &sponsor,
        &[
            "register",
            "--study",
            "portal-1",
            "--title",
            "Once-weekly insulin",
            "--protocol",
            dir.join("protocol.txt").to_str().expect("utf-8"),
            "--sap",
            dir.join("sap.txt").to_str().expect("utf-8"),
            "--primary",
            "Change in HbA1c@26 weeks",
            "--site",
            "hospital",
        ],
    ));
    common::ok(common::run_as(
        &node,
        "trial",
        &doctor,
        &[
            "enrol",
            "--study",
            "portal-1",
            "--subject",
            "S-001",
            "--patient",
            &common::public_key_of(&patient),
        ],
    ));

    // Invitations: the root key of the member's own organisation only, and once each.
    let refused = invite(
        &node,
        &doctor,
        &["--member-key", patient.to_str().expect("utf-8")],
    );
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("root key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = invite(
        &node,
        &hospital,
        &["--member-key", pharmacist.to_str().expect("utf-8")],
    );
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("not one of"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let refused = invite(
        &node,
        &hospital,
        &["--member", &common::public_key_of(&doctor)],
    );
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("holds no key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let (status, openapi) = node.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(
        openapi["paths"]["/v1/portal/invitations"]["post"].is_object(),
        "the invitations endpoint is not described"
    );
    let (status, body) = node.signed(
        &common::secret_of(&hospital),
        "POST",
        "/v1/portal/invitations",
        br#"{"secret_key": "not hex"}"#,
        &Default::default(),
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let invited = |root: &std::path::Path, member: &std::path::Path| {
        link_of(&invite(
            &node,
            root,
            &["--member-key", member.to_str().expect("utf-8")],
        ))
    };
    let patient_link = invited(&hospital, &patient);
    let pharmacist_link = invited(&pharmacy_root, &pharmacist);
    let doctor_link = invited(&hospital, &doctor);
    let reviewer_link = invited(&payer_root, &reviewer);
    let auditor_link = invited(&maker_root, &auditor);
    // Passkeys need a domain: the links open the portal on localhost, not 127.0.0.1.
    let base = node.url.replace("127.0.0.1", "localhost");
    assert!(
        patient_link.starts_with(&format!("{base}/portal/welcome?invitation=")),
        "{patient_link}"
    );

    let read = |purpose: &str| -> Vec<String> {
        [
            common::bin(),
            "fhir",
            "--node",
            &node.url,
            "--key",
            doctor.to_str().expect("utf-8"),
            "read",
            "Observation/portal-bp",
            "--purpose",
            purpose,
        ]
        .iter()
        .map(|part| part.to_string())
        .collect()
    };
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    let config = serde_json::json!({
        "base": base,
        "shots": shots,
        "patientLink": patient_link,
        "pharmacistLink": pharmacist_link,
        "doctorLink": doctor_link,
        "auditorLink": auditor_link,
        "reviewerLink": reviewer_link,
        "genuine": genuine,
        "bundleOut": dir.join("access-trail.json"),
        "simulate": [
            common::bin(), "monitor", "--node", &node.url, "--key",
            device.to_str().expect("utf-8"), "simulate", "--batches", "2", "--readings", "30",
            "--desaturate-from", "0", "--seed", "3",
        ],
        "doctorKey": common::public_key_of(&doctor),
        "read": read("TREAT"),
        // What a keyboard-wedge scanner types for the pack's DataMatrix: the symbology
        // identifier, the AIs with a group separator after the variable-length lot, and Enter.
        "scan": format!("]d201{GTIN}17271231" ) + "10L1\u{1d}210001",
    });
    let out = std::process::Command::new("node")
        .arg(browser.join("passkeys.mjs"))
        .arg(config.to_string())
        .output()
        .expect("node runs");
    node.stop();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The access trail the auditor downloaded is a FHIR Bundle a third-party model accepts.
    let bundle: Value = serde_json::from_slice(
        &std::fs::read(dir.join("access-trail.json")).expect("the downloaded bundle"),
    )
    .expect("json");
    let mut resources = vec![bundle.clone()];
    resources.extend(
        bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|entry| entry["resource"].clone()),
    );
    assert!(resources.len() >= 3, "{bundle}");
    let types = common::validate_with_fhir_resources(dir, &resources);
    assert!(types["AuditEvent"].as_u64() >= Some(2), "{types}");
    for name in [
        "patient-erase",
        "care-alerts",
        "care-readings",
        "audit-access",
        "audit-unit",
        "payer-review",
        "patient-claims",
        "patient-tokens",
        "patient-research",
        "patient-trial",
        "sign-in",
        "welcome",
        "patient-home",
        "patient-consents",
        "patient-access",
        "scan-verdict",
    ] {
        assert!(
            shots.join(format!("{name}.png")).exists(),
            "no screenshot of {name}"
        );
    }
}
