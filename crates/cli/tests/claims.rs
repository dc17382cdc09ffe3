//! End-to-end test of insurance claims through the real binary on a four-validator devnet: a
//! payer publishes a policy and covers a patient; the hospital's doctor submits clean,
//! duplicate, uncovered, unauthorised, code-pair-violating and unevidenced claims as FHIR
//! Claims, and each gets the expected ClaimResponse; approved ones settle in tokens in the same
//! block; the payer decides its review queue and an appeal; the patient reads their EOBs; bad
//! input gets an OperationOutcome; the provider's balance is proven offline against genesis; and
//! every rendered resource passes an independent FHIR model (fhir.resources).
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};

use common::{
    TestNode, devnet, failed, ok, one_devnet, public_key_of, run_as as run, stdout, verify_proof,
};
use serde_json::{Value, json};

/// A professional FHIR R4 Claim for Patient/claims-patient under `coverage`.
fn claim(coverage: &str, lines: &[(&str, &str, u32, &str)], encounter: bool, use_: &str) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, (code, date, units, net))| {
            let mut item = json!({
                "sequence": i + 1,
                "productOrService": { "coding": [{ "system": "http://www.ama-assn.org/go/cpt", "code": code }] },
                "servicedDate": date,
                "quantity": { "value": units },
                "net": { "value": net.parse::<f64>().expect("amount"), "currency": "USD" },
            });
            if encounter {
                item["encounter"] = json!([{ "reference": "Encounter/claims-visit" }]);
            }
            item
        })
        .collect();
    json!({
        "resourceType": "Claim",
        "status": "active",
        "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional" }] },
        "use": use_,
        "patient": { "reference": "Patient/claims-patient" },
        "created": "2026-11-20",
        "provider": { "reference": "Organization/hospital" },
        "priority": { "coding": [{ "code": "normal" }] },
        "diagnosis": [{ "sequence": 1, "diagnosisCodeableConcept": { "coding": [{ "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9" }] } }],
        "insurance": [{ "sequence": 1, "focal": true, "coverage": { "reference": format!("Coverage/{coverage}") } }],
        "item": items,
    })
}

fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, value.to_string()).expect("write");
    file
}

fn carcs(response: &Value, item: usize) -> Vec<String> {
    response["item"][item]["adjudication"]
        .as_array()
        .expect("adjudication")
        .iter()
        .filter_map(|line| {
            line["reason"]["coding"]
                .as_array()?
                .iter()
                .find(|c| c["system"] == "https://x12.org/codes/claim-adjustment-reason-codes")
                .and_then(|c| c["code"].as_str())
                .map(str::to_string)
        })
        .collect()
}

fn balance(node: &TestNode, key: &Path, account: &str) -> u128 {
    let shown = ok(run(
        node,
        "token",
        key,
        &["balance", "--symbol", "USD", "--account", account],
    ));
    shown["entry"]["balance"]
        .as_str()
        .expect("a balance")
        .parse()
        .expect("a number")
}

#[test]
fn claims_are_adjudicated_checked_settled_reviewed_appealed_and_explained_on_a_devnet() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut nodes = devnet(dir, 0);
    for node in nodes.iter_mut() {
        node.start();
    }
    let (hospital, payer) = (dir.join("keys/org0.key"), dir.join("keys/org1.key"));
    let (org2, _) = (dir.join("keys/org2.key"), ());
    let doctor = nodes[0].new_key(dir, "doctor", Some((&hospital, "practitioner")));
    let patient = nodes[0].new_key(dir, "patient", Some((&hospital, "patient")));
    let (hospital_key, payer_key, patient_key) = (
        public_key_of(&hospital),
        public_key_of(&payer),
        public_key_of(&patient),
    );

    // The settlement token, created by three of the four organisations; the payer funds itself.
    ok(run(
        &nodes[1],
        "token",
        &payer,
        &[
            "propose",
            "--symbol",
            "USD",
            "--name",
            "Consortium dollar",
            "--issuer",
            "org1",
        ],
    ));
    ok(run(
        &nodes[0],
        "token",
        &hospital,
        &["approve-class", "--symbol", "USD"],
    ));
    ok(run(
        &nodes[2],
        "token",
        &org2,
        &["approve-class", "--symbol", "USD"],
    ));
    ok(run(
        &nodes[1],
        "token",
        &payer,
        &[
            "mint", "--symbol", "USD", "--to", &payer_key, "--amount", "10000000",
        ],
    ));

    // The hospital's patient and the visit, bound to the patient's key.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            { "resource": { "resourceType": "Patient", "id": "claims-patient", "gender": "female" },
              "request": { "method": "PUT", "url": "Patient/claims-patient" } },
            { "resource": { "resourceType": "Encounter", "id": "claims-visit", "status": "finished",
                "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
                "subject": { "reference": "Patient/claims-patient" } },
              "request": { "method": "PUT", "url": "Encounter/claims-visit" } },
        ],
    });
    let bundle = write(dir, "visit.json", &bundle);
    ok(run(
        &nodes[0],
        "fhir",
        &doctor,
        &["import", bundle.to_str().expect("utf-8")],
    ));
    ok(run(
        &nodes[0],
        "fhir",
        &hospital,
        &[
            "bind",
            "--patient",
            "claims-patient",
            "--patient-key",
            &patient_key,
        ],
    ));

    // The payer's policy, as data, and the patient's coverage.
    let policy = json!({
        "plan": "gold", "effective": "2026-01-01", "symbol": "USD", "account": payer_key,
        "deductible": "5000", "copay": "1000", "coinsurance_bp": 2000, "annual_limit": "500000",
        "review_charge_ratio_bp": 30000, "authorisation_days": 90,
        "services": [
            { "code": "99213", "allowed": "15000", "units_per_day_max": 1 },
            { "code": "93000", "allowed": "2500", "units_per_day_max": 1 },
            { "code": "93010", "allowed": "1000", "units_per_day_max": 1 },
            { "code": "70553", "allowed": "80000", "units_per_day_max": 1, "prior_auth": "automatic" },
        ],
        "edits": [{ "column_one": "93000", "column_two": "93010" }],
    });
    let policy_file = write(dir, "policy.json", &policy);
    failed(
        run(
            &nodes[0],
            "claim",
            &hospital,
            &["publish", policy_file.to_str().expect("utf-8")],
        ),
        "not_payer",
    );
    ok(run(
        &nodes[1],
        "claim",
        &payer,
        &["publish", policy_file.to_str().expect("utf-8")],
    ));
    let plan = ok(run(&nodes[2], "claim", &payer, &["plan", "gold"]));
    assert_eq!(plan["entry"]["plan"]["payer"], "org1", "{plan}");
    let covered = ok(run(
        &nodes[1],
        "claim",
        &payer,
        &[
            "cover",
            "--plan",
            "gold",
            "--member",
            &patient_key,
            "--start",
            "2026-01-01",
        ],
    ));
    let coverage = covered["coverage"]
        .as_str()
        .expect("coverage id")
        .to_string();

    // A clean claim: adjudicated and paid in the block that commits it.
    let submit = |name: &str, value: &Value| {
        let file = write(dir, name, value);
        ok(run(
            &nodes[0],
            "claim",
            &doctor,
            &["submit", file.to_str().expect("utf-8")],
        ))
    };
    let clean = submit(
        "clean.json",
        &claim(
            &coverage,
            &[("99213", "2026-11-20", 1, "200.00")],
            true,
            "claim",
        ),
    );
    assert_eq!(clean["resourceType"], "ClaimResponse");
    assert_eq!(clean["outcome"], "complete", "{clean}");
    assert_eq!(carcs(&clean, 0), ["45", "1", "3", "2"]);
    assert_eq!(clean["payment"]["amount"]["value"], json!(72.0), "{clean}");
    assert_eq!(balance(&nodes[3], &payer, &hospital_key), 7_200);

    // The same service again: a duplicate, denied with CARC 18.
    let duplicate = submit(
        "dup.json",
        &claim(
            &coverage,
            &[("99213", "2026-11-20", 1, "200.00")],
            true,
            "claim",
        ),
    );
    assert_eq!(duplicate["outcome"], "error", "{duplicate}");
    assert_eq!(carcs(&duplicate, 0), ["18"]);
    // Before the coverage began: CARC 26.
    let uncovered = submit(
        "uncovered.json",
        &claim(
            &coverage,
            &[("99213", "2025-12-20", 1, "150.00")],
            true,
            "claim",
        ),
    );
    assert_eq!(carcs(&uncovered, 0), ["26"], "{uncovered}");
    // A service that needs prior authorisation, without one: CARC 197.
    let unauthorised = submit(
        "mri.json",
        &claim(
            &coverage,
            &[("70553", "2026-11-21", 1, "900.00")],
            true,
            "claim",
        ),
    );
    assert_eq!(carcs(&unauthorised, 0), ["197"], "{unauthorised}");
    // A code pair billed together: the column-two code is denied (CARC 97), the claim partial.
    let pair = submit(
        "pair.json",
        &claim(
            &coverage,
            &[
                ("93000", "2026-11-22", 1, "25.00"),
                ("93010", "2026-11-22", 1, "10.00"),
            ],
            true,
            "claim",
        ),
    );
    assert_eq!(pair["outcome"], "partial", "{pair}");
    assert_eq!(carcs(&pair, 1), ["97"]);
    let pair_id = pair["id"].as_str().expect("id").to_string();
    // No Encounter named: queued for the payer's review, nothing paid.
    let unevidenced = submit(
        "queued.json",
        &claim(
            &coverage,
            &[("99213", "2026-11-23", 1, "150.00")],
            false,
            "claim",
        ),
    );
    assert_eq!(unevidenced["outcome"], "queued", "{unevidenced}");
    let queued_id = unevidenced["id"].as_str().expect("id").to_string();

    // The payer's queue and decision; the doctor cannot decide.
    let queue = ok(run(
        &nodes[1],
        "claim",
        &payer,
        &["list", "--review", "org1"],
    ));
    assert_eq!(queue["total"], 1, "{queue}");
    failed(
        run(
            &nodes[0],
            "claim",
            &doctor,
            &["decide", &queued_id, "--approve"],
        ),
        "not_payer",
    );
    let before = balance(&nodes[0], &payer, &hospital_key);
    ok(run(
        &nodes[1],
        "claim",
        &payer,
        &["decide", &queued_id, "--approve"],
    ));
    let decided = ok(run(&nodes[2], "claim", &payer, &["show", &queued_id]));
    assert_eq!(decided["outcome"], "complete", "{decided}");
    assert_eq!(
        balance(&nodes[0], &payer, &hospital_key),
        before + 15_000 - 1_000 - 2_800
    );

    // The hospital appeals the bundled denial once; the payer approves and pays it.
    ok(run(
        &nodes[0],
        "claim",
        &hospital,
        &["appeal", &pair_id, "--reason", "coding_corrected"],
    ));
    failed(
        run(
            &nodes[0],
            "claim",
            &hospital,
            &["appeal", &pair_id, "--reason", "other"],
        ),
        "already_appealed",
    );
    ok(run(
        &nodes[1],
        "claim",
        &payer,
        &["decide-appeal", &pair_id, "--approve"],
    ));
    let appealed = ok(run(
        &nodes[1],
        "claim",
        &payer,
        &["show", &pair_id, "--as", "json"],
    ));
    assert_eq!(appealed["entry"]["status"], "adjudicated", "{appealed}");
    assert_eq!(appealed["entry"]["items"][1]["outcome"], "approved");

    // The patient sees their own EOBs at any node, and not another's claims.
    let mine = ok(run(&nodes[3], "claim", &patient, &["list"]));
    assert_eq!(mine["total"], 6, "{mine}");
    let clean_id = clean["id"].as_str().expect("id");
    let eob = ok(run(
        &nodes[3],
        "claim",
        &patient,
        &["show", clean_id, "--as", "eob"],
    ));
    assert_eq!(eob["resourceType"], "ExplanationOfBenefit");
    assert_eq!(
        eob["patient"]["identifier"]["value"],
        patient_key.as_str(),
        "{eob}"
    );
    failed(
        run(
            &nodes[3],
            "claim",
            &patient,
            &["list", "--provider", "org0"],
        ),
        "403",
    );
    // The FHIR Claim itself stays at the provider, for the provider.
    let kept = ok(run(
        &nodes[0],
        "claim",
        &doctor,
        &["show", clean_id, "--as", "claim"],
    ));
    assert_eq!(kept["resourceType"], "Claim");
    failed(
        run(
            &nodes[1],
            "claim",
            &payer,
            &["show", clean_id, "--as", "claim"],
        ),
        "404",
    );
    let json_view = ok(run(
        &nodes[0],
        "claim",
        &doctor,
        &["show", clean_id, "--as", "json"],
    ));
    assert_eq!(json_view["matches_commitment"], true, "{json_view}");

    // Bad input: an OperationOutcome naming the element; a signer outside the provider: 403.
    let mut broken = claim(
        &coverage,
        &[("99213", "2026-11-24", 1, "150.001")],
        true,
        "claim",
    );
    broken["use"] = json!("predetermination");
    let broken = write(dir, "broken.json", &broken);
    failed(
        run(
            &nodes[0],
            "claim",
            &doctor,
            &["submit", broken.to_str().expect("utf-8")],
        ),
        "400",
    );
    let outsider = write(
        dir,
        "outsider.json",
        &claim(
            &coverage,
            &[("99213", "2026-11-24", 1, "150")],
            true,
            "claim",
        ),
    );
    failed(
        run(
            &nodes[0],
            "claim",
            &payer,
            &["submit", outsider.to_str().expect("utf-8")],
        ),
        "403",
    );

    // The payer's own rule, a contract built from contracts/examples/adjudicate.c, deployed by
    // three of the four organisations and named by the payer for the plan's ECGs and visits: an
    // ECG without a cardiac (I) diagnosis is denied with the built-in reason code-not-covered
    // (CARC 96), a visit charged above 300.00 waits for review, others are paid as before.
    let rule = common::build_contract(dir, "adjudicate", &[]);
    let deployed = ok(run(
        &nodes[1],
        "contract",
        &payer,
        &[
            "propose-deploy",
            rule.to_str().expect("utf-8"),
            "--label",
            "gold-rules",
            "--msg",
            r#"{"owner":"org1","denied_codes":[],"units_max":{},"review_charge_above":30000,"needs_diagnosis":{"93000":"I"}}"#,
        ],
    ));
    let proposal = deployed["proposal"].as_str().expect("proposal").to_string();
    let contract = deployed["contract"].as_str().expect("contract").to_string();
    ok(run(
        &nodes[0],
        "governance",
        &hospital,
        &["approve", "--proposal", &proposal],
    ));
    ok(run(
        &nodes[2],
        "governance",
        &org2,
        &["approve", "--proposal", &proposal],
    ));
    failed(
        run(
            &nodes[0],
            "claim",
            &hospital,
            &[
                "set-rule-contract",
                "--plan",
                "gold",
                "--contract",
                &contract,
            ],
        ),
        "not_payer",
    );
    ok(run(
        &nodes[1],
        "claim",
        &payer,
        &[
            "set-rule-contract",
            "--plan",
            "gold",
            "--contract",
            &contract,
            "--code",
            "93000",
            "--code",
            "99213",
        ],
    ));
    let ecg = submit(
        "ecg.json",
        &claim(
            &coverage,
            &[("93000", "2026-11-25", 1, "25.00")],
            true,
            "claim",
        ),
    );
    assert_eq!(ecg["outcome"], "error", "{ecg}");
    assert_eq!(carcs(&ecg, 0), ["96"]);
    let costly = submit(
        "costly.json",
        &claim(
            &coverage,
            &[("99213", "2026-11-25", 1, "400.00")],
            true,
            "claim",
        ),
    );
    assert_eq!(costly["outcome"], "queued", "{costly}");
    let visit = submit(
        "visit-by-rule.json",
        &claim(
            &coverage,
            &[("99213", "2026-11-26", 1, "150.00")],
            true,
            "claim",
        ),
    );
    assert_eq!(visit["outcome"], "complete", "{visit}");
    // The payer's insurer reconfigures the rule through the contract itself; the hospital may not.
    failed(
        run(
            &nodes[0],
            "contract",
            &hospital,
            &[
                "call",
                "--contract",
                &contract,
                "--msg",
                r#"{"configure":{"owner":"org0"}}"#,
            ],
        ),
        "only the owner's members configure the rule",
    );

    // What the payer paid the hospital, reconciled; it is the hospital's whole balance.
    let paid = balance(&nodes[0], &payer, &hospital_key);
    let reconciliation = ok(run(
        &nodes[1],
        "claim",
        &payer,
        &[
            "reconcile",
            "--provider",
            "org0",
            "--payer",
            "org1",
            "--from",
            "2026-01-01",
            "--to",
            "2027-01-01",
        ],
    ));
    let resource = &reconciliation["entry"][0]["resource"];
    assert_eq!(
        resource["resourceType"], "PaymentReconciliation",
        "{reconciliation}"
    );
    let total = resource["paymentAmount"]["value"].as_f64().expect("amount");
    assert_eq!((total * 100.0).round() as u128, paid);

    // The hospital's balance, proven offline against genesis.
    let proof = dir.join("balance-proof.json");
    let out = nodes[2].cli(&[
        "query",
        "state",
        &format!("token-balance/USD/{hospital_key}"),
        "--proof-out",
        proof.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = verify_proof(&proof, &nodes[2].home.join("genesis.json"));
    assert!(out.status.success(), "{}", stdout(&out));

    // An independent FHIR model accepts what the node rendered, the rule contract's decisions
    // (a denial, a review, a payment) included.
    let coverage_resource = ok(run(&nodes[1], "claim", &payer, &["coverage", &coverage]));
    let checked = common::validate_with_fhir_resources(
        dir,
        &[
            clean.clone(),
            pair.clone(),
            unevidenced.clone(),
            ecg.clone(),
            costly.clone(),
            visit.clone(),
            eob,
            coverage_resource,
            resource.clone(),
        ],
    );
    assert_eq!(checked["ClaimResponse"], 6, "{checked}");
    // Every validator executed every block, rule contract included, to the same state: the same
    // block hashes (each commits its state root), and a stopped validator's store replays from
    // genesis to the same roots.
    let top = common::height(&nodes[0]);
    for node in &nodes[1..] {
        common::wait_for_height(node, top, std::time::Duration::from_secs(30));
    }
    for h in 1..=top {
        let hash = common::block_hash(&nodes[0], h);
        for node in &nodes[1..] {
            assert_eq!(common::block_hash(node, h), hash, "height {h}");
        }
    }
    for node in nodes.iter_mut() {
        node.stop();
    }
    let verified = common::medledger(&["verify", "--home", nodes[3].home.to_str().expect("utf-8")]);
    assert!(verified.status.success(), "{}", stdout(&verified));
}
