//! End-to-end test of governance and contracts through the real binary on a four-validator
//! devnet: an organisation is admitted by governance and enrols a member; a contract built from
//! C with the SDK is proposed, approved by two thirds and deployed; the new organisation's member
//! calls it and its state is proven offline against genesis; calls that run out of fuel, trap or
//! write from memory they do not have leave its state as it was; modules with floating point or an
//! unknown import, and bytes that are no module, are refused when stored; a frozen contract
//! refuses calls; an upgrade by governance migrates its state; every validator replays to the same
//! blocks and `verify` re-checks a validator's store from genesis.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{
    TestNode, block_hash, build_contract, devnet, failed, height, ok, one_devnet, public_key_of,
    stdout, verify_proof, wait_for_height,
};
use serde_json::Value;

fn contract(node: &TestNode, key: &Path, args: &[&str]) -> Output {
    common::run_as(node, "contract", key, args)
}

fn governance(node: &TestNode, key: &Path, args: &[&str]) -> Output {
    common::run_as(node, "governance", key, args)
}

fn query(node: &TestNode, address: &str, msg: &str) -> Value {
    ok(node.cli(&["contract", "query", "--contract", address, "--msg", msg]))
}

/// The proposal's state as the node shows it.
fn state_of(node: &TestNode, proposal: &str) -> String {
    let (status, body) = node.get(&format!("/v1/governance/proposals/{proposal}"));
    assert_eq!(status, 200, "{body}");
    body["state"].as_str().expect("state").to_string()
}

/// Compiles `source` with clang directly, skipping the build command's own check, so the chain's
/// refusal is what the test sees.
fn compile_unchecked(dir: &Path, name: &str, source: &str) -> PathBuf {
    common::contract_toolchain();
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contracts/sdk");
    let file = dir.join(format!("{name}.c"));
    std::fs::write(&file, source).expect("source");
    let wasm = dir.join(format!("{name}.wasm"));
    let out = std::process::Command::new("clang")
        .args([
            "--target=wasm32-unknown-unknown",
            "-O1",
            "-ffreestanding",
            "-nostdlib",
            "-Wno-unused-function",
            "-Wl,--no-entry",
        ])
        .arg("-I")
        .arg(&sdk)
        .arg("-o")
        .arg(&wasm)
        .arg(&file)
        .output()
        .expect("clang runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wasm
}

/// Proposes deploying `wasm` as `proposer` and approves it as `approver` (two organisations);
/// answers the contract's address.
fn deploy(
    node: &TestNode,
    proposer: &Path,
    approver: &Path,
    wasm: &Path,
    label: &str,
    msg: &str,
) -> String {
    let deployed = ok(contract(
        node,
        proposer,
        &[
            "propose-deploy",
            wasm.to_str().expect("utf-8"),
            "--label",
            label,
            "--msg",
            msg,
        ],
    ));
    let proposal = deployed["proposal"].as_str().expect("proposal").to_string();
    ok(governance(
        node,
        approver,
        &["approve", "--proposal", &proposal],
    ));
    deployed["contract"].as_str().expect("address").to_string()
}

/// Approves `proposal` as each (node, root key).
fn approve(approvers: &[(&TestNode, &PathBuf)], proposal: &str) {
    for (node, key) in approvers {
        ok(governance(node, key, &["approve", "--proposal", proposal]));
    }
}

const ENTRY_POINTS: &str = r#"
ML_ENTRY(instantiate) { return ML_OK; }
ML_ENTRY(query) { return ML_OK; }
"#;

#[test]
fn a_contract_is_governed_deployed_called_proven_refused_frozen_and_upgraded_on_a_devnet() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let counter = build_contract(dir, "counter", &[]);
    let counter_v2 = build_contract(dir, "counter", &["VERSION=2"]);
    let mut nodes = devnet(dir, 0);
    for node in nodes.iter_mut() {
        node.start();
    }
    wait_for_height(&nodes[0], 1, Duration::from_secs(60));
    let org = |i: usize| dir.join(format!("keys/org{i}.key"));

    // Governance admits a clinic: org0 proposes, and it takes three of four organisations.
    let clinic = nodes[0].new_key(dir, "clinic", None);
    let admitted = ok(governance(
        &nodes[0],
        &org(0),
        &[
            "propose-admit",
            "--id",
            "clinic",
            "--name",
            "Riverside Clinic",
            "--root-key",
            &public_key_of(&clinic),
        ],
    ));
    let admission = admitted["id"].as_str().expect("proposal id").to_string();
    ok(governance(
        &nodes[1],
        &org(1),
        &["approve", "--proposal", &admission],
    ));
    assert_eq!(state_of(&nodes[1], &admission), "pending");
    // Only an organisation's root key approves, and only once.
    failed(
        governance(&nodes[1], &org(1), &["approve", "--proposal", &admission]),
        "already_approved",
    );
    ok(governance(
        &nodes[2],
        &org(2),
        &["approve", "--proposal", &admission],
    ));
    wait_for_height(&nodes[0], height(&nodes[2]), Duration::from_secs(30));
    assert_eq!(state_of(&nodes[0], &admission), "enacted");
    // The clinic's root key now enrols its own member.
    let nurse = nodes[0].new_key(dir, "nurse", Some((&clinic, "practitioner")));

    // A malformed module, a float and an unknown import are refused when stored.
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0not a module").expect("write");
    failed(
        contract(
            &nodes[0],
            &org(0),
            &["upload", garbage.to_str().expect("utf-8")],
        ),
        "code_invalid",
    );
    let float = compile_unchecked(
        dir,
        "float",
        &format!(
            "#include \"medledger.h\"\n{ENTRY_POINTS}\nML_ENTRY(execute) {{ volatile double x = msg_len; return (int)(x * 1.5); }}\n"
        ),
    );
    failed(
        contract(
            &nodes[0],
            &org(0),
            &[
                "propose-deploy",
                float.to_str().expect("utf-8"),
                "--label",
                "float",
            ],
        ),
        "code_floating_point",
    );
    let import = compile_unchecked(
        dir,
        "import",
        &format!(
            "#include \"medledger.h\"\nML_IMPORT(clock) int clock_ms(void);\n{ENTRY_POINTS}\nML_ENTRY(execute) {{ return clock_ms(); }}\n"
        ),
    );
    failed(
        contract(
            &nodes[0],
            &org(0),
            &["upload", import.to_str().expect("utf-8")],
        ),
        "code_unknown_import",
    );
    // A member may not store code.
    failed(
        contract(
            &nodes[0],
            &nurse,
            &["upload", counter.to_str().expect("utf-8")],
        ),
        "not_an_uploader",
    );

    // The counter is proposed by org1. The clinic is the fifth organisation now, so it takes four
    // of five; until then there is no contract.
    let proposed = ok(contract(
        &nodes[1],
        &org(1),
        &[
            "propose-deploy",
            counter.to_str().expect("utf-8"),
            "--label",
            "counter",
            "--msg",
            r#"{"start": 5, "owner": "clinic"}"#,
        ],
    ));
    let deployment = proposed["proposal"].as_str().expect("proposal").to_string();
    let address = proposed["contract"].as_str().expect("address").to_string();
    let (status, _) = nodes[1].get(&format!("/v1/contracts/{address}"));
    assert_eq!(status, 404, "deployed without enough approvals");
    failed(
        contract(
            &nodes[0],
            &nurse,
            &[
                "call",
                "--contract",
                &address,
                "--msg",
                r#"{"increment": {"by": 1}}"#,
            ],
        ),
        "unknown_contract",
    );
    ok(governance(
        &nodes[2],
        &org(2),
        &["approve", "--proposal", &deployment],
    ));
    ok(governance(
        &nodes[3],
        &org(3),
        &["approve", "--proposal", &deployment],
    ));
    wait_for_height(&nodes[0], height(&nodes[3]), Duration::from_secs(30));
    assert_eq!(state_of(&nodes[0], &deployment), "pending");
    ok(governance(
        &nodes[0],
        &clinic,
        &["approve", "--proposal", &deployment],
    ));
    assert_eq!(state_of(&nodes[0], &deployment), "enacted");
    assert_eq!(
        query(&nodes[0], &address, r#"{"total": {}}"#)["result"]["total"],
        5
    );

    // The clinic's nurse calls it; the answer, the event and the new state agree.
    let called = ok(contract(
        &nodes[0],
        &nurse,
        &[
            "call",
            "--contract",
            &address,
            "--msg",
            r#"{"increment": {"by": 37}}"#,
        ],
    ));
    assert_eq!(
        called["call"]["call"]["result"], r#"{"total":42}"#,
        "{called}"
    );
    assert_eq!(
        called["call"]["events"][0]["event"],
        r#"{"incremented":37,"total":42}"#
    );
    let orgs = query(&nodes[2], &address, r#"{"orgs": {}}"#);
    assert_eq!(orgs["result"]["orgs"][0]["org"], "clinic", "{orgs}");
    assert_eq!(orgs["result"]["orgs"][0]["count"], 37);
    // The contract's state is proven offline against genesis alone.
    let key = format!("contract-kv/{address}/{}", hex::encode("total"));
    let proof = dir.join("total.json");
    let shown = ok(nodes[0].cli(&[
        "query",
        "state",
        &key,
        "--proof-out",
        proof.to_str().expect("utf-8"),
    ]));
    assert_eq!(shown["value"], hex::encode("42"), "{shown}");
    let verified = verify_proof(&proof, &dir.join("genesis.json"));
    assert!(verified.status.success(), "{}", stdout(&verified));
    // Only the owner organisation's members may reset it: the contract refuses others.
    failed(
        contract(
            &nodes[1],
            &org(1),
            &["call", "--contract", &address, "--msg", r#"{"reset": {}}"#],
        ),
        "only the owner's members reset",
    );

    // Calls that fail change nothing of the contract's state.
    let before = nodes[0].get(&format!(
        "/v1/contracts/{address}/state/{}",
        hex::encode("total")
    ));
    for (msg, code) in [
        (r#"{"spin": {}}"#, "contract_out_of_fuel"),
        (r#"{"trap": {}}"#, "contract_trap"),
        (r#"{"wild": {}}"#, "contract_trap"),
        (r#"{"nonsense": {}}"#, "contract_refused"),
    ] {
        failed(
            contract(
                &nodes[0],
                &nurse,
                &["call", "--contract", &address, "--msg", msg],
            ),
            code,
        );
    }
    let after = nodes[0].get(&format!(
        "/v1/contracts/{address}/state/{}",
        hex::encode("total")
    ));
    assert_eq!(before.1["hex"], after.1["hex"]);
    assert_eq!(after.1["text"], "42");
    // A query that is not JSON is refused by the API; a query of no contract is a 404.
    let (status, body) = nodes[0].post(&format!("/v1/contracts/{address}/query"), "{not json");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("message_not_json"))
    );
    let (status, _) = nodes[0].post(&format!("/v1/contracts/{}/query", "0".repeat(64)), "{}");
    assert_eq!(status, 404);

    // Governance freezes it: calls are refused, queries still answer; then unfreezes it.
    let frozen = ok(contract(
        &nodes[0],
        &org(0),
        &["propose-freeze", "--contract", &address],
    ));
    let freeze = frozen["id"].as_str().expect("id").to_string();
    approve(
        &[
            (&nodes[1], &org(1)),
            (&nodes[2], &org(2)),
            (&nodes[2], &clinic),
        ],
        &freeze,
    );
    wait_for_height(&nodes[0], height(&nodes[2]), Duration::from_secs(30));
    failed(
        contract(
            &nodes[0],
            &nurse,
            &[
                "call",
                "--contract",
                &address,
                "--msg",
                r#"{"increment": {"by": 1}}"#,
            ],
        ),
        "contract_frozen",
    );
    assert_eq!(
        query(&nodes[0], &address, r#"{"total": {}}"#)["result"]["total"],
        42
    );
    let thawed = ok(contract(
        &nodes[0],
        &org(0),
        &["propose-freeze", "--contract", &address, "--unfreeze"],
    ));
    let thaw = thawed["id"].as_str().expect("id").to_string();
    approve(
        &[
            (&nodes[1], &org(1)),
            (&nodes[3], &org(3)),
            (&nodes[3], &clinic),
        ],
        &thaw,
    );

    // An upgrade by governance moves it to version 2 and its migration scales the total.
    let upgraded = ok(contract(
        &nodes[3],
        &org(3),
        &[
            "propose-upgrade",
            "--contract",
            &address,
            counter_v2.to_str().expect("utf-8"),
            "--msg",
            r#"{"scale": 10}"#,
        ],
    ));
    let upgrade = upgraded["id"].as_str().expect("id").to_string();
    approve(
        &[
            (&nodes[0], &org(0)),
            (&nodes[1], &org(1)),
            (&nodes[1], &clinic),
        ],
        &upgrade,
    );
    wait_for_height(&nodes[2], height(&nodes[1]), Duration::from_secs(30));
    let total = query(&nodes[2], &address, r#"{"total": {}}"#);
    assert_eq!(total["result"]["total"], 420, "{total}");
    assert_eq!(total["result"]["version"], 2);
    let shown = ok(nodes[2].cli(&["contract", "show", "--contract", &address]));
    assert_eq!(shown["contract"]["version"], 2);
    assert_eq!(shown["contract"]["frozen"], false);
    ok(contract(
        &nodes[0],
        &nurse,
        &[
            "call",
            "--contract",
            &address,
            "--msg",
            r#"{"increment": {"by": 1}}"#,
        ],
    ));
    let events = ok(nodes[0].cli(&["contract", "events", "--contract", &address]));
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(2),
        "{events}"
    );

    // Every validator executed every block the same way; a stopped validator's store replays
    // from genesis to the same roots.
    let top = height(&nodes[0]);
    for node in &nodes[1..] {
        wait_for_height(node, top, Duration::from_secs(30));
    }
    for h in 1..=top {
        let hash = block_hash(&nodes[0], h);
        for node in &nodes[1..] {
            assert_eq!(block_hash(node, h), hash, "height {h}");
        }
    }
    for node in nodes.iter_mut() {
        node.stop();
    }
    let verified = common::medledger(&["verify", "--home", nodes[2].home.to_str().expect("utf-8")]);
    assert!(
        verified.status.success(),
        "{}{}",
        stdout(&verified),
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[test]
fn an_escrow_contract_holds_tokens_until_two_of_three_arbiters_approve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let escrow = build_contract(dir, "escrow", &[]);
    let mut node = TestNode::init_orgs(dir, &["hospital=Hospital", "payer=Payer"], &[]);
    node.start();
    let hospital = node.home.join("keys/hospital.key");
    let payer = node.home.join("keys/payer.key");
    let arbiters: Vec<PathBuf> = (0..3)
        .map(|i| {
            node.new_key(
                dir,
                &format!("arbiter{i}"),
                Some((&hospital, "practitioner")),
            )
        })
        .collect();
    let outsider = node.new_key(dir, "outsider", Some((&hospital, "practitioner")));
    let (hospital_key, payer_key) = (public_key_of(&hospital), public_key_of(&payer));
    let token = |key: &Path, args: &[&str]| ok(common::run_as(&node, "token", key, args));
    token(
        &payer,
        &[
            "propose", "--symbol", "USD", "--name", "Dollar", "--issuer", "payer",
        ],
    );
    token(&hospital, &["approve-class", "--symbol", "USD"]);
    token(
        &payer,
        &[
            "mint", "--symbol", "USD", "--to", &payer_key, "--amount", "10000",
        ],
    );

    // The hospital proposes the escrow, the payer approves: deployed.
    let terms = serde_json::json!({
        "symbol": "USD", "amount": "5000", "payer": payer_key, "payee": hospital_key,
        "arbiters": arbiters.iter().map(|key| public_key_of(key)).collect::<Vec<_>>(),
        "threshold": 2, "refund_after": height(&node) + 1000,
    });
    let address = deploy(
        &node,
        &hospital,
        &payer,
        &escrow,
        "surgery-escrow",
        &terms.to_string(),
    );
    let approve = |key: &Path| {
        contract(
            &node,
            key,
            &[
                "call",
                "--contract",
                &address,
                "--msg",
                r#"{"approve": {}}"#,
            ],
        )
    };
    let status = || query(&node, &address, r#"{"status": {}}"#)["result"].clone();

    ok(approve(&arbiters[0]));
    failed(approve(&arbiters[0]), "this arbiter already approved");
    failed(approve(&outsider), "only an arbiter approves");
    failed(
        contract(
            &node,
            &payer,
            &["call", "--contract", &address, "--msg", r#"{"refund": {}}"#],
        ),
        "too early for a refund",
    );
    // The payer funds the contract's own account, like any account.
    token(
        &payer,
        &[
            "transfer", "--symbol", "USD", "--to", &address, "--amount", "5000",
        ],
    );
    let before = status();
    assert_eq!(before["approvals"], 1, "{before}");
    assert_eq!(before["balance"], "5000");
    // Its balance reads like any account's (an address is no curve point, and need not be).
    let held = ok(common::run_as(
        &node,
        "token",
        &payer,
        &["balance", "--symbol", "USD", "--account", &address],
    ));
    assert_eq!(held["entry"]["balance"], "5000", "{held}");
    // The second approval pays the payee through the token module, in the same transaction.
    ok(approve(&arbiters[1]));
    let after = status();
    assert_eq!(after["released"], true, "{after}");
    assert_eq!(after["balance"], "0");
    let balance = ok(common::run_as(
        &node,
        "token",
        &hospital,
        &["balance", "--symbol", "USD", "--account", &hospital_key],
    ));
    assert_eq!(balance["entry"]["balance"], "5000", "{balance}");
    failed(approve(&arbiters[2]), "already released");
    let events = ok(node.cli(&["contract", "events", "--contract", &address]));
    assert_eq!(
        events["events"][0]["event"], r#"{"released":true}"#,
        "{events}"
    );
    node.stop();
}

#[test]
fn the_example_rules_answer_the_modules_questions_as_documented() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let condition = build_contract(dir, "release_condition", &[]);
    let adjudicate = build_contract(dir, "adjudicate", &[]);
    let mut node = TestNode::init_orgs(dir, &["hospital=Hospital", "payer=Payer"], &[]);
    node.start();
    let hospital = node.home.join("keys/hospital.key");
    let payer = node.home.join("keys/payer.key");
    let deploy =
        |wasm: &Path, label: &str, msg: &str| deploy(&node, &hospital, &payer, wasm, label, msg);

    // The data access committee's condition: only approved organisations, at most 50 patients a
    // release, genomic data only to organisations approved for it.
    let rule = deploy(
        &condition,
        "dac",
        r#"{"owner": "hospital", "patients_max": 50}"#,
    );
    let release = |org: &str, patients: u32, types: &[&str]| {
        let question = serde_json::json!({"release": {"request": "00", "researcher": "00",
            "researcher_org": org, "terms": {"codes": ["DUO:0000006"]},
            "resource_types": types, "custodian": "hospital", "patients": patients,
            "resources": 10, "release": 0}});
        query(&node, &rule, &question.to_string())["result"].clone()
    };
    assert_eq!(release("payer", 10, &["Observation"])["permit"], false);
    failed(
        contract(
            &node,
            &payer,
            &[
                "call",
                "--contract",
                &rule,
                "--msg",
                r#"{"approve": {"org": "payer"}}"#,
            ],
        ),
        "only the committee's organisation decides",
    );
    ok(contract(
        &node,
        &hospital,
        &[
            "call",
            "--contract",
            &rule,
            "--msg",
            r#"{"approve": {"org": "payer", "genomics": false}}"#,
        ],
    ));
    assert_eq!(release("payer", 10, &["Observation"])["permit"], true);
    assert_eq!(release("payer", 51, &["Observation"])["permit"], false);
    let genomic = release("payer", 10, &["Observation", "MolecularSequence"]);
    assert_eq!(genomic["permit"], false, "{genomic}");
    assert_eq!(
        query(&node, &rule, r#"{"approved": {}}"#)["result"]["orgs"][0]["org"],
        "payer"
    );
    // The custodian names it as its release condition; only its root key may.
    ok(common::run_as(
        &node,
        "research",
        &hospital,
        &["set-condition", "--contract", &rule],
    ));
    let (status, entry) = node.get("/v1/state/research-condition/hospital");
    assert_eq!(status, 200);
    assert_eq!(entry["entry"]["contract"], rule, "{entry}");

    // The payer's adjudication rule, asked the claims module's question directly.
    let payer_rule = deploy(
        &adjudicate,
        "payer-rule",
        r#"{"owner": "payer", "denied_codes": ["97039"], "units_max": {"97110": 4},
            "review_charge_above": 50000, "needs_diagnosis": {"83036": "E11"}}"#,
    );
    let question = serde_json::json!({"adjudicate": {"claim": "00", "use": "claim",
        "kind": "professional", "plan": "gold", "payer": "payer", "provider": "hospital",
        "diagnoses": ["I10"], "items": [
            {"sequence": 1, "code": "97039", "units": 1, "charge": "1000", "date": "2026-11-20"},
            {"sequence": 2, "code": "97110", "units": 6, "charge": "1000", "date": "2026-11-20"},
            {"sequence": 3, "code": "83036", "units": 1, "charge": "1000", "date": "2026-11-20"},
            {"sequence": 4, "code": "99215", "units": 1, "charge": "90000", "date": "2026-11-20"},
            {"sequence": 5, "code": "99213", "units": 1, "charge": "15000", "date": "2026-11-20"}]}});
    let answer = query(&node, &payer_rule, &question.to_string());
    let decisions: Vec<(String, String)> = answer["result"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["decision"].as_str().unwrap_or_default().to_string(),
                item["check"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("deny", "code-not-covered"),
            ("deny", "impossible-quantity"),
            ("deny", "code-not-covered"),
            ("review", "above-allowed"),
            ("approve", "code-not-covered"),
        ]
        .map(|(d, c)| (d.to_string(), c.to_string())),
        "{answer}"
    );
    node.stop();
}
