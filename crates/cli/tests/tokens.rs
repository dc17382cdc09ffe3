//! End-to-end test of the token ledger through the real binary: an insurer's organisation
//! proposes a settlement token and the hospital approves it; the insurer mints, pays a provider
//! (zero included), locks funds in escrow and releases them; a reward program pays a patient up
//! to its cap, and an adherence rule pays when the hospital's practitioner attests a care plan
//! met its goals; every refusal exits 2 with its code; the provider's balance is proven offline
//! against genesis, and its statement lists each movement with its reason.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TestNode, failed as refused, ok, public_key_of, stdout, verify_proof};
use serde_json::Value;

fn token(node: &TestNode, key: &Path, args: &[&str]) -> Output {
    common::run_as(node, "token", key, args)
}

fn balance(node: &TestNode, key: &Path, account: &str) -> String {
    let shown = ok(token(
        node,
        key,
        &["balance", "--symbol", "USD", "--account", account],
    ));
    shown["entry"]["balance"]
        .as_str()
        .expect("a balance")
        .to_string()
}

#[test]
fn a_settlement_token_is_governed_paid_escrowed_rewarded_and_proven() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut node = TestNode::init_orgs(dir, &["hospital=Hospital", "payer=Payer"], &[]);
    node.start();
    let hospital: PathBuf = node.home.join("keys/hospital.key");
    let payer: PathBuf = node.home.join("keys/payer.key");
    let insurer = node.new_key(dir, "insurer", Some((&payer, "insurer")));
    let provider = node.new_key(dir, "provider", Some((&hospital, "practitioner")));
    let patient = node.new_key(dir, "patient", Some((&hospital, "patient")));
    let stranger = node.new_key(dir, "stranger", None);
    let (insurer_key, provider_key, patient_key) = (
        public_key_of(&insurer),
        public_key_of(&provider),
        public_key_of(&patient),
    );

    // The payer proposes USD; one of two organisations is not two thirds, so it waits.
    refused(
        token(
            &node,
            &insurer,
            &[
                "propose", "--symbol", "USD", "--name", "Dollar", "--issuer", "payer",
            ],
        ),
        "not_an_organisation",
    );
    ok(token(
        &node,
        &payer,
        &[
            "propose",
            "--symbol",
            "USD",
            "--name",
            "Consortium dollar",
            "--issuer",
            "payer",
        ],
    ));
    let pending = ok(token(&node, &payer, &["class", "--symbol", "USD"]));
    assert!(pending["entry"]["proposal"].is_object(), "{pending}");
    ok(token(
        &node,
        &hospital,
        &["approve-class", "--symbol", "USD"],
    ));
    let created = ok(token(&node, &payer, &["class", "--symbol", "USD"]));
    assert_eq!(
        created["entry"]["class"]["issuers"][0], "payer",
        "{created}"
    );

    // Minting is the issuer's; payments go only to accounts, never past a balance.
    refused(
        token(
            &node,
            &hospital,
            &[
                "mint",
                "--symbol",
                "USD",
                "--to",
                &provider_key,
                "--amount",
                "5",
            ],
        ),
        "not_issuer",
    );
    ok(token(
        &node,
        &payer,
        &[
            "mint",
            "--symbol",
            "USD",
            "--to",
            &insurer_key,
            "--amount",
            "100000",
        ],
    ));
    let claim = "ab".repeat(32);
    let pay = |amount: &str, to: &str| {
        token(
            &node,
            &insurer,
            &[
                "transfer",
                "--symbol",
                "USD",
                "--to",
                to,
                "--amount",
                amount,
                "--reason",
                "settlement",
                "--reference",
                &claim,
            ],
        )
    };
    ok(pay("2500", &provider_key));
    ok(pay("0", &provider_key));
    refused(pay("1000000", &provider_key), "insufficient_balance");
    refused(pay("1", &public_key_of(&stranger)), "unknown_account");
    refused(pay("1.5", &provider_key), "decimal string");
    assert_eq!(balance(&node, &insurer, &provider_key), "2500");

    // Escrow against a prior authorisation: locked, then released by the payer's insurer.
    let locked = ok(token(
        &node,
        &insurer,
        &[
            "lock",
            "--symbol",
            "USD",
            "--payee",
            &provider_key,
            "--amount",
            "4000",
            "--arbiter",
            "payer",
            "--reference",
            &claim,
        ],
    ));
    let escrow = locked["escrow"].as_str().expect("escrow id").to_string();
    refused(
        token(&node, &provider, &["release", "--id", &escrow]),
        "not_arbiter",
    );
    ok(token(&node, &insurer, &["release", "--id", &escrow]));
    refused(
        token(&node, &payer, &["return", "--id", &escrow]),
        "escrow_settled",
    );
    assert_eq!(balance(&node, &insurer, &provider_key), "6500");
    assert_eq!(balance(&node, &insurer, &insurer_key), "93500");

    // Rewards: the payer's program pays the patient up to 300 a period.
    ok(token(
        &node,
        &payer,
        &[
            "reward-program",
            "--id",
            "sharing",
            "--symbol",
            "USD",
            "--purpose",
            "research-sharing",
            "--cap",
            "300",
        ],
    ));
    let reward = |amount: &str| {
        token(
            &node,
            &payer,
            &[
                "reward",
                "--program",
                "sharing",
                "--patient",
                &patient_key,
                "--amount",
                amount,
            ],
        )
    };
    ok(reward("200"));
    refused(reward("101"), "over_cap");
    ok(reward("100"));
    assert_eq!(balance(&node, &patient, &patient_key), "300");

    // Adherence by rule: the hospital keeps the patient's CarePlan; its practitioner attests the
    // plan's goals met, and the payer's program pays 60, once per plan and period.
    ok(token(
        &node,
        &payer,
        &[
            "reward-program",
            "--id",
            "adhere",
            "--symbol",
            "USD",
            "--purpose",
            "adherence",
            "--cap",
            "100",
            "--per-event",
            "60",
        ],
    ));
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            { "resource": { "resourceType": "Patient", "id": "adherent", "gender": "male" },
              "request": { "method": "PUT", "url": "Patient/adherent" } },
            { "resource": { "resourceType": "CarePlan", "id": "walks", "status": "active",
                "intent": "plan", "subject": { "reference": "Patient/adherent" } },
              "request": { "method": "PUT", "url": "CarePlan/walks" } },
        ],
    });
    let bundle_file = dir.join("care-plan.json");
    std::fs::write(&bundle_file, bundle.to_string()).expect("write");
    let fhir = |key: &Path, args: &[&str]| {
        let mut all = vec!["fhir", "--key", key.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        ok(node.cli(&all))
    };
    fhir(&provider, &["import", bundle_file.to_str().expect("utf-8")]);
    let attest = |key: &Path, care_plan: &str| {
        token(
            &node,
            key,
            &[
                "attest-adherence",
                "--program",
                "adhere",
                "--care-plan",
                care_plan,
            ],
        )
    };
    // Before the patient is bound to a key there is nobody to pay.
    refused(attest(&provider, "CarePlan/walks"), "patient_unlinked");
    fhir(
        &hospital,
        &[
            "bind",
            "--patient",
            "adherent",
            "--patient-key",
            &patient_key,
        ],
    );
    // Only the custodian's practitioners (and root key) resolve and attest its care plans.
    refused(attest(&patient, "CarePlan/walks"), "403");
    refused(attest(&provider, "CarePlan/absent"), "not held here");
    ok(attest(&provider, "CarePlan/walks"));
    assert_eq!(balance(&node, &patient, &patient_key), "360");
    refused(attest(&hospital, "CarePlan/walks"), "already_attested");

    // The provider's statement: the settlement, the zero payment and the escrow's release.
    let statement = ok(token(&node, &provider, &["statement"]));
    let movements = statement["entry"]["movements"]
        .as_array()
        .expect("movements");
    let reasons: Vec<&str> = movements
        .iter()
        .filter_map(|movement| movement["reason"].as_str())
        .collect();
    assert_eq!(
        reasons,
        ["settlement", "settlement", "settlement"],
        "{statement}"
    );
    assert_eq!(movements[0]["reference"], claim.as_str());
    assert_eq!(movements[2]["escrow"], escrow.as_str());
    assert_eq!(statement["entry"]["total"], 3, "{statement}");
    let page = ok(token(
        &node,
        &provider,
        &["statement", "--offset", "1", "--limit", "1"],
    ));
    assert_eq!(page["entry"]["total"], 3, "{page}");
    assert_eq!(page["entry"]["movements"][0], movements[1], "{page}");

    // Statements are a node's index of the class logs: a restart goes on from where it was,
    // and an index lost is rebuilt from the chain, the same.
    node.stop();
    node.start();
    assert_eq!(
        ok(token(&node, &provider, &["statement"]))["entry"],
        statement["entry"]
    );
    node.stop();
    std::fs::remove_file(node.home.join("data/tokens/statements.redb")).expect("the index");
    node.start();
    assert_eq!(
        ok(token(&node, &provider, &["statement"]))["entry"],
        statement["entry"]
    );

    // The provider's balance, proven offline against genesis.
    let proof = dir.join("balance-proof.json");
    let out = node.cli(&[
        "query",
        "state",
        &format!("token-balance/USD/{provider_key}"),
        "--proof-out",
        proof.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let out = verify_proof(&proof, &node.home.join("genesis.json"));
    assert!(out.status.success(), "{}", stdout(&out));
    let proven: Value =
        serde_json::from_str(&std::fs::read_to_string(&proof).expect("proof")).expect("json");
    let value = hex::decode(proven["proof"]["value"].as_str().expect("value")).expect("hex");
    let amount = u128::from_le_bytes(value.try_into().expect("a u128 balance, 16 bytes"));
    assert_eq!(amount, 6_500);
    node.stop();
}
