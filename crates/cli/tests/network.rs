//! Four validators as four real `medledger node` processes, driven as an operator would: a
//! validator killed with SIGKILL while the others keep committing, then restarted to catch up;
//! two of four stopped, so the chain must halt without forking, then resume; and at the end every
//! node's store passes `medledger verify` and all agree block for block.

// These tests wait on real processes, so they read the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    LAB_OBSERVATION, PATIENT_ID, TestNode, anchor, block_hash, committed_on, devnet, height,
    medledger, one_devnet, public_key_of, stdout, synthea, tx, verify_proof, wait_for_height,
};
use serde_json::Value;

/// The whole scenario in one test: the processes are expensive to start, and each phase builds on
/// the chain the previous one left.
#[test]
fn four_validators_survive_a_crash_and_halt_safely_without_quorum() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = devnet(dir.path(), 0);
    // Each node is sent transactions of its own organisation, so no client reads a nonce from
    // one node and submits to another that may be a block behind.
    let org_key = |index: usize| dir.path().join(format!("keys/org{index}.key"));
    for node in nodes.iter_mut() {
        node.start();
    }
    wait_for_height(&nodes[0], 2, Duration::from_secs(60));

    // A transaction given to one validator reaches the others' mempools (gossip), so it commits
    // even when that validator dies right after accepting it.
    let gossiped = anchor(&nodes[3], &org_key(3), 5, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[0].get(&format!("/v1/txs/{gossiped}")).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "node 0 never heard of a transaction given to node 3"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nodes[3].kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !committed_on(&nodes[0], &gossiped) {
        assert!(
            Instant::now() < deadline,
            "the gossiped transaction never committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes[3].start();
    // The restarted node must have caught up before a client asks it for a nonce.
    wait_for_height(&nodes[3], height(&nodes[0]), Duration::from_secs(60));

    // Transactions sent to different validators all commit.
    let mut acknowledged = vec![gossiped];
    for (index, node) in nodes.iter().enumerate() {
        acknowledged.push(anchor(node, &org_key(index), index as u64 + 1, true));
    }

    // 1. kill -9 one validator; the other three keep committing.
    nodes[3].kill();
    for seed in 10..16 {
        let index = (seed % 3) as usize;
        acknowledged.push(anchor(&nodes[index], &org_key(index), seed, true));
    }
    let head_while_down = height(&nodes[0]);

    // 2. Restart it: it catches up from its peers and then follows the head.
    nodes[3].start();
    wait_for_height(&nodes[3], head_while_down + 1, Duration::from_secs(60));
    for id in &acknowledged {
        assert!(
            committed_on(&nodes[3], id),
            "transaction {id} missing on the restarted node"
        );
    }

    // 3. Stop two of four: no quorum, so nothing may be decided, and nothing may fork.
    nodes[2].kill();
    nodes[3].kill();
    std::thread::sleep(Duration::from_secs(2));
    let halted = height(&nodes[0]).max(height(&nodes[1]));
    let pending = anchor(&nodes[0], &org_key(0), 100, false);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        height(&nodes[0]) <= halted && height(&nodes[1]) <= halted,
        "the chain advanced without a quorum"
    );
    assert!(!committed_on(&nodes[0], &pending));

    // 4. Bring them back: the chain resumes and the waiting transaction commits.
    nodes[2].start();
    nodes[3].start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !committed_on(&nodes[0], &pending) {
        assert!(Instant::now() < deadline, "the chain did not resume");
        std::thread::sleep(Duration::from_millis(100));
    }
    acknowledged.push(pending);
    let head = height(&nodes[0]);
    for node in &nodes {
        wait_for_height(node, head, Duration::from_secs(60));
    }

    // Every node holds every acknowledged transaction and the same block at every height.
    for node in &nodes {
        for id in &acknowledged {
            assert!(committed_on(node, id), "{id} missing on {}", node.url);
        }
    }
    for height in 1..=head {
        let reference = block_hash(&nodes[0], height);
        for node in &nodes[1..] {
            assert_eq!(
                block_hash(node, height),
                reference,
                "fork at height {height}"
            );
        }
    }

    // A stopped node's store replays cleanly from genesis.
    for node in nodes.iter_mut() {
        node.stop();
        let out = medledger(&["verify", "--home", node.home.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "verify failed on {}: {}{}",
            node.home.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn log_of(node: &TestNode) -> String {
    std::fs::read_to_string(node.home.join("node.log")).unwrap_or_default()
}

/// A node whose key is outside the validator set is refused by every validator and learns
/// nothing of the chain; once two thirds of the organisations approve adding it, it joins at the
/// agreed height, catches up, and votes: with it, four of five validators keep committing when
/// one is killed. A light client walks the change from genesis to check a later transaction.
#[test]
fn governance_adds_a_validator_that_was_refused_before() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = devnet(dir.path(), 1);
    let org_key = |index: usize| dir.path().join(format!("keys/org{index}.key"));
    for node in nodes.iter_mut() {
        node.start();
    }
    wait_for_height(&nodes[0], 3, Duration::from_secs(60));

    // The outsider dialled every validator and was refused: it has no block at all.
    assert_eq!(height(&nodes[4]), 0, "an outsider synced blocks");
    assert!(
        log_of(&nodes[0]).contains("Rejecting connection from non-persistent peer"),
        "node 0 did not refuse the outsider:\n{}",
        log_of(&nodes[0])
    );

    // Propose adding it; one and then two approvals are not enough, the third is.
    let newcomer = public_key_of(&nodes[4].home.join("keys/validator.key"));
    // Far enough ahead for three transactions to commit even on a loaded CI machine.
    let effective = height(&nodes[0]) + 40;
    let effective_text = effective.to_string();
    let proposal = tx(
        &nodes[0],
        &org_key(0),
        true,
        &[
            "propose-validator",
            "--add",
            &newcomer,
            "--org",
            "org0",
            "--effective-height",
            &effective_text,
        ],
    );
    for index in [1, 2] {
        tx(
            &nodes[index],
            &org_key(index),
            true,
            &["approve-validator", "--proposal", &proposal],
        );
    }
    // Asked of the node that committed the last approval: another may not have its block yet.
    let (status, body) = nodes[2].get(&format!("/v1/state/governance/proposal/{proposal}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entry"]["status"]["status"], "scheduled", "{body}");

    // The newcomer is admitted at the effective height, syncs, and follows the head.
    wait_for_height(&nodes[0], effective + 2, Duration::from_secs(60));
    let before = nodes[0].get(&format!("/v1/blocks/{}", effective - 1)).1;
    let after = nodes[0].get(&format!("/v1/blocks/{effective}")).1;
    assert_ne!(
        before["block"]["header"]["validators_hash"], after["block"]["header"]["validators_hash"],
        "the validator set did not change at the effective height"
    );
    wait_for_height(&nodes[4], effective + 2, Duration::from_secs(60));

    // Four of five validators are a quorum only if the newcomer votes.
    nodes[0].kill();
    let committed = anchor(&nodes[1], &org_key(1), 7, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !committed_on(&nodes[4], &committed) {
        assert!(Instant::now() < deadline, "the newcomer missed a block");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A light client holding only genesis walks the change to check that transaction.
    let proof_file = dir.path().join("proof.json");
    let out = nodes[1].cli(&[
        "query",
        "tx-proof",
        &committed,
        "--out",
        proof_file.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    let proof: Value =
        serde_json::from_str(&std::fs::read_to_string(&proof_file).expect("read")).expect("json");
    assert_eq!(
        proof["validator_trail"].as_array().map(Vec::len),
        Some(1),
        "{proof}"
    );
    let genesis = dir.path().join("genesis.json");
    let verify = |file: &Path| verify_proof(file, &genesis);
    let out = verify(&proof_file);
    assert!(out.status.success(), "{}", stdout(&out));
    // Without the trail, the header's validator set is not the genesis one.
    let mut trimmed = proof.clone();
    trimmed["validator_trail"] = Value::Array(Vec::new());
    let trimmed_file = dir.path().join("trimmed.json");
    std::fs::write(&trimmed_file, trimmed.to_string()).expect("write");
    let out = verify(&trimmed_file);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));

    for node in nodes.iter_mut().skip(1) {
        node.stop();
        let out = medledger(&["verify", "--home", node.home.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "verify failed on {}: {}",
            node.home.display(),
            stdout(&out)
        );
    }
}

/// Health records under consensus: the custodian's own transactions (record versions, access
/// events, the erasure) are gossiped and decided like any other; every validator holds the same
/// access log; and every node applies the erasure at the same height.
#[test]
fn records_are_audited_on_every_validator_and_erased_everywhere() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = devnet(dir.path(), 0);
    let org_key = dir.path().join("keys/org0.key");
    for node in nodes.iter_mut() {
        node.start();
    }
    let key_file = |name: &str| {
        let file = dir.path().join(format!("{name}.key"));
        assert!(
            medledger(&["keygen", "--out", file.to_str().expect("utf-8")])
                .status
                .success()
        );
        file
    };
    let (doctor, patient) = (key_file("doctor"), key_file("patient"));
    for (key, role) in [(&doctor, "practitioner"), (&patient, "patient")] {
        let member = public_key_of(key);
        tx(
            &nodes[0],
            &org_key,
            true,
            &["enrol", "--member", &member, "--role", role],
        );
    }
    let fhir = |node: &TestNode, key: &Path, args: &[&str]| {
        let mut all = vec!["fhir", "--key", key.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        node.cli(&all)
    };
    let succeeded = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let patient_id = PATIENT_ID;
    let lab = &format!("Observation/{LAB_OBSERVATION}");
    succeeded(fhir(
        &nodes[0],
        &doctor,
        &["import", synthea().to_str().expect("utf-8")],
    ));
    succeeded(fhir(
        &nodes[0],
        &org_key,
        &[
            "bind",
            "--patient",
            patient_id,
            "--patient-key",
            &public_key_of(&patient),
        ],
    ));
    let denied = fhir(&nodes[0], &doctor, &["read", lab, "--purpose", "TREAT"]);
    assert!(!denied.status.success());
    // The patient grants through another validator; the custodian sees it once it is decided.
    let grant = nodes[2].cli(&[
        "consent",
        "--key",
        patient.to_str().expect("utf-8"),
        "grant",
        "--to",
        &format!("key:{}", public_key_of(&doctor)),
        "--purpose",
        "TREAT",
    ]);
    assert!(grant.status.success(), "{}", stdout(&grant));
    let granted_at = serde_json::from_str::<Value>(&stdout(&grant)).expect("receipt")["height"]
        .as_u64()
        .expect("height");
    wait_for_height(&nodes[0], granted_at, Duration::from_secs(30));
    let read = succeeded(fhir(
        &nodes[0],
        &doctor,
        &["read", lab, "--purpose", "TREAT"],
    ));
    let observation: Value = serde_json::from_str(&stdout(&read)).expect("json");
    assert_eq!(observation["resourceType"], "Observation");
    assert_eq!(observation["meta"]["versionId"], "1");

    // Every validator holds the same two access events for the patient.
    let me: Value =
        serde_json::from_str(&stdout(&succeeded(fhir(&nodes[0], &patient, &["me"])))).expect("me");
    let opaque = me["patients"][0]["patient"]
        .as_str()
        .expect("patient id")
        .to_string();
    let at = height(&nodes[0]);
    for node in &nodes {
        wait_for_height(node, at, Duration::from_secs(30));
        let (status, entry) = node.get(&format!("/v1/state/access-count/{opaque}?height={at}"));
        assert_eq!(status, 200, "{entry}");
        assert_eq!(entry["entry"]["count"], 2, "{}: {entry}", node.url);
    }

    // The patient erases; every node applies it at the same height, and the record is gone.
    succeeded(fhir(
        &nodes[0],
        &patient,
        &["erase", "--patient", patient_id],
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let heights: Vec<String> = nodes
        .iter()
        .map(|node| {
            loop {
                let log = log_of(node);
                if let Some(line) = log.lines().find(|line| line.contains("erasure applied")) {
                    let height = line
                        .split("height")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .unwrap_or("")
                        .trim_start_matches(|c: char| !c.is_ascii_digit())
                        .to_string();
                    break height;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} never applied the erasure",
                    node.url
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .collect();
    assert!(
        heights
            .iter()
            .all(|height| *height == heights[0] && !height.is_empty()),
        "{heights:?}"
    );
    // Gone, not unknown: the custodian keeps a tombstone (a keyed hash) of every erased id.
    let gone = fhir(&nodes[0], &doctor, &["read", lab, "--purpose", "TREAT"]);
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("410"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

#[test]
fn custody_moves_between_organisations_under_consensus() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = devnet(dir.path(), 0);
    for node in nodes.iter_mut() {
        node.start();
    }
    let (org0, org1) = (
        dir.path().join("keys/org0.key"),
        dir.path().join("keys/org1.key"),
    );
    let maker = nodes[0].new_key(dir.path(), "maker", Some((&org0, "manufacturer")));
    let pharmacist = nodes[0].new_key(dir.path(), "pharmacist", Some((&org1, "pharmacy")));
    let supply = |node: &TestNode, key: &Path, args: &[&str]| {
        let mut all = vec!["supply", "--key", key.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        let out = node.cli(&all);
        (
            out.status.code(),
            stdout(&out),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |node: &TestNode, key: &Path, args: &[&str]| {
        let (code, out, err) = supply(node, key, args);
        assert_eq!(code, Some(0), "supply {args:?}: {out}{err}");
        out
    };
    let gtin = "09506000134352";
    let unit = format!("(01){gtin}(21)7");
    ok(
        &nodes[0],
        &maker,
        &[
            "register",
            "--gtin",
            gtin,
            "--name",
            "Vaccine",
            "--storage",
            "2..8",
        ],
    );
    ok(
        &nodes[0],
        &maker,
        &[
            "commission",
            "--gtin",
            gtin,
            "--lot",
            "N1",
            "--expiry",
            "301231",
            "--range",
            "1..10",
        ],
    );
    let shipped = ok(
        &nodes[0],
        &maker,
        &["ship", "--to", "org1", "--unit", &unit],
    );
    let shipment = shipped
        .lines()
        .find_map(|line| line.strip_prefix("shipment "))
        .expect("shipment id")
        .to_string();
    // The pharmacy confirms through its own validator; custody passes on every node.
    let received = ok(
        &nodes[1],
        &pharmacist,
        &["receive", "--shipment", &shipment],
    );
    let at = serde_json::from_str::<Value>(&received).expect("receipt")["height"]
        .as_u64()
        .expect("height");
    for node in &nodes {
        wait_for_height(node, at, Duration::from_secs(30));
        let (code, out, err) = supply(node, &pharmacist, &["verify", &unit]);
        assert_eq!(code, Some(0), "{}: {out}{err}", node.url);
        let verdict: Value = serde_json::from_str(&out).expect("verdict");
        assert_eq!(verdict["custody"]["custodian"], "org1", "{}", node.url);
    }
    // A member captures EPCIS through its own organisation's node, not another's.
    let capture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../epcis/tests/data/JSON/Example_9.6.1-ObjectEvent.jsonld");
    let capture = capture.to_str().expect("utf-8");
    let (code, _, err) = supply(&nodes[0], &pharmacist, &["capture", capture]);
    assert_ne!(code, Some(0));
    assert!(err.contains("403"), "{err}");
    let captured: Value = serde_json::from_str(&ok(&nodes[1], &pharmacist, &["capture", capture]))
        .expect("capture report");
    let height = captured["height"].as_u64().expect("height");
    // Every validator indexes the committed event.
    for node in &nodes {
        wait_for_height(node, height, Duration::from_secs(30));
        let events: Value = serde_json::from_str(&ok(
            node,
            &pharmacist,
            &["events", "--biz-step", "shipping"],
        ))
        .expect("query document");
        let list = &events["epcisBody"]["queryResults"]["resultsBody"]["eventList"];
        assert_eq!(
            list.as_array().map(Vec::len),
            Some(1),
            "{}: {events}",
            node.url
        );
    }
}

/// `medledger devnet` as an operator runs it, stopped with SIGINT (also when a check fails).
struct RunningDevnet(std::process::Child);

impl Drop for RunningDevnet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// An idle network commits no more than one block per idle interval, and a transaction does not
/// wait for the interval: run as an operator runs it (`medledger devnet`, default logging), every
/// empty block comes at least the interval after its parent, the metrics count them, the block
/// holding a transaction submitted just after a block comes sooner than the interval, and the
/// log file holds no colour codes and none of the engine's per-height lines.
#[test]
fn an_idle_network_commits_one_block_per_interval() {
    const INTERVAL_MS: u64 = 4_000;
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, p2p) = common::devnet_ports(common::VALIDATORS);
    let running = RunningDevnet(
        std::process::Command::new(common::bin())
            .args(["devnet", "--dir"])
            .arg(dir.path())
            .args([
                "--api-port",
                &api.to_string(),
                "--p2p-port",
                &p2p.to_string(),
            ])
            .args(["--idle-block-interval-ms", &INTERVAL_MS.to_string()])
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("devnet starts"),
    );
    let node = TestNode::existing(dir.path().join("node0"), format!("127.0.0.1:{api}"));
    let node_up = Instant::now() + Duration::from_secs(60);
    while node.get("/v1/status").0 != 200 {
        assert!(Instant::now() < node_up, "node 0 never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_height(&node, 4, Duration::from_secs(60));
    let header = |height: u64| {
        let (status, body) = node.get(&format!("/v1/blocks/{height}"));
        assert_eq!(status, 200, "block {height}: {body}");
        (
            body["block"]["header"]["time_ms"].as_u64().expect("time"),
            body["block"]["txs"].as_array().map_or(0, Vec::len),
        )
    };
    // Height 1 follows genesis at once (a node starting up does not idle); after it, every
    // empty block waited out the interval.
    let head = height(&node);
    for height in 2..=head {
        let (parent_ms, _) = header(height - 1);
        let (time_ms, txs) = header(height);
        assert_eq!(txs, 0, "nothing was submitted");
        assert!(
            time_ms >= parent_ms + INTERVAL_MS,
            "block {height} came {} ms after its parent",
            time_ms - parent_ms
        );
    }
    let (status, metrics) = node.get("/metrics");
    assert_eq!(status, 200);
    let empty = metrics
        .as_str()
        .expect("the metrics text")
        .lines()
        .find_map(|line| line.strip_prefix("medledger_blocks_empty_total "))
        .and_then(|count| count.trim().parse::<u64>().ok())
        .expect("the empty-block counter");
    assert!(empty >= head - 1, "{empty} empty blocks counted of {head}");

    // Just after a new block, a transaction: its block does not wait for the interval.
    let before = height(&node);
    wait_for_height(&node, before + 1, Duration::from_secs(30));
    let parent = height(&node);
    let id = anchor(&node, &dir.path().join("keys/org0.key"), 7, true);
    let (status, receipt) = node.get(&format!("/v1/txs/{id}/receipt"));
    assert_eq!(status, 200, "{receipt}");
    let committed = receipt["height"].as_u64().expect("height");
    assert_eq!(
        committed,
        parent + 1,
        "the transaction waited for an idle block"
    );
    let (parent_ms, _) = header(parent);
    let (time_ms, txs) = header(committed);
    assert_eq!(txs, 1);
    assert!(
        time_ms < parent_ms + INTERVAL_MS,
        "the transaction's block came {} ms after its parent",
        time_ms - parent_ms
    );

    drop(running);
    let log = std::fs::read_to_string(dir.path().join("node0/node.log")).expect("node log");
    assert!(!log.contains('\u{1b}'), "colour codes in the log file");
    assert!(
        !log.lines()
            .any(|line| line.contains("arc_malachitebft") && line.contains(" INFO ")),
        "the engine's per-height lines are in the log"
    );
    assert!(log.contains("consensus ready"), "{log}");
}

/// A full node follows the validators by certified blocks, as an operator runs one: refused
/// until its key is enrolled with role node, then it catches up, takes transactions (forwarded to
/// a validator) and serves receipts and proofs that verify offline against genesis; killed with
/// SIGKILL under load, it restarts, catches up, agrees with the validators block for block and
/// passes `medledger verify`. It never signs a certificate.
#[test]
fn a_full_node_follows_serves_proofs_and_survives_kill_9() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = common::devnet_with_full_nodes(dir.path(), 0, 1);
    let org_key = |index: usize| dir.path().join(format!("keys/org{index}.key"));
    for node in nodes.iter_mut() {
        node.start();
    }
    let mut full = nodes.pop().expect("the full node");
    let full_key = public_key_of(&full.home.join("keys/validator.key"));
    wait_for_height(&nodes[0], 3, Duration::from_secs(60));

    // Not enrolled: validators refuse it, and it stays at genesis. An unsigned request and a
    // member of another role are refused too.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        height(&full),
        0,
        "a full node followed before its key was admitted"
    );
    let log = std::fs::read_to_string(full.home.join("node.log")).expect("log");
    assert!(log.contains("is not enrolled"), "{log}");
    assert_eq!(
        log.matches("following the chain failure").count(),
        1,
        "a refusal is logged once, not at every retry"
    );
    let (status, body) = nodes[0].get("/v1/sync/blocks?from=1");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, body) = nodes[0].signed(
        &common::secret_of(&org_key(0)),
        "GET",
        "/v1/sync/blocks?from=1",
        b"",
        &Default::default(),
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));

    let out = nodes[1].cli(&[
        "tx",
        "--key",
        org_key(1).to_str().expect("utf-8"),
        "enrol",
        "--member",
        &full_key,
        "--role",
        "node",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_height(&full, height(&nodes[0]), Duration::from_secs(60));

    // A transaction given to the full node is forwarded, committed, and proven by it.
    let id = anchor(&full, &org_key(0), 1, true);
    assert!(committed_on(&full, &id) && committed_on(&nodes[2], &id));
    let (status, proof) = full.get(&format!("/v1/txs/{id}/proof"));
    assert_eq!(status, 200, "{proof}");
    let proof_file = dir.path().join("tx-proof.json");
    std::fs::write(&proof_file, proof.to_string()).expect("proof file");
    let genesis = full.home.join("genesis.json");
    let out = common::verify_proof(&proof_file, &genesis);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let state_proof = dir.path().join("state-proof.json");
    let out = full.cli(&[
        "query",
        "state",
        &format!("anchor/{:064x}", 1),
        "--proof-out",
        state_proof.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        common::verify_proof(&state_proof, &genesis)
            .status
            .success()
    );

    // Under load through a validator, the full node is killed and restarted.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = {
        let stop = stop.clone();
        let validator = TestNode::existing(nodes[0].home.clone(), nodes[0].listen.clone());
        let key = org_key(2);
        std::thread::spawn(move || {
            let mut seed = 100;
            let mut acknowledged = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                acknowledged.push(anchor(&validator, &key, seed, true));
                seed += 1;
            }
            acknowledged
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    full.kill();
    std::thread::sleep(Duration::from_secs(2));
    full.start();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acknowledged = loader.join().expect("the load");
    assert!(
        acknowledged.len() > 3,
        "the load committed {} transactions",
        acknowledged.len()
    );
    let head = height(&nodes[0]);
    wait_for_height(&full, head, Duration::from_secs(60));
    for id in &acknowledged {
        assert!(committed_on(&full, id), "{id} missing on the full node");
    }
    for height in 1..=head {
        assert_eq!(
            block_hash(&full, height),
            block_hash(&nodes[0], height),
            "the full node differs at height {height}"
        );
        let (_, block) = full.get(&format!("/v1/blocks/{height}"));
        let signers = block["certificate"]["signatures"]
            .as_array()
            .expect("signatures");
        assert!(
            signers
                .iter()
                .all(|signature| signature["validator"] != full_key.as_str()),
            "the full node signed height {height}"
        );
    }
    full.stop();
    let out = medledger(&["verify", "--home", full.home.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
}
