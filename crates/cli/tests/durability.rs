//! End-to-end: kill -9 under load never loses an acknowledged transaction, and a flipped byte in
//! a stored block, transaction or state value is found by `medledger verify` and never served.

// Tests drive real processes and time out on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use medledger_crypto::{Hash, SecretKey, sha256};
use medledger_ledger::{CoreOp, Payload, Tx, TxBody};
use medledger_types::Role;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::json;

fn org_key(node: &TestNode) -> SecretKey {
    let text = std::fs::read_to_string(node.org_key()).expect("key");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    SecretKey::from_bytes(
        hex::decode(value["secret_key"].as_str().expect("secret"))
            .expect("hex")
            .try_into()
            .expect("32 bytes"),
    )
}

fn next_nonce(node: &TestNode, key: &SecretKey) -> u64 {
    node.get(&format!("/v1/accounts/{}", key.public_key())).1["next_nonce"]
        .as_u64()
        .expect("nonce")
}

fn anchor(key: &SecretKey, nonce: u64, n: u64) -> Tx {
    let payload = CoreOp::Anchor {
        id: sha256(&[&key.public_key().0[..], &n.to_le_bytes()].concat()),
        commitment: sha256(&n.to_be_bytes()),
    };
    TxBody {
        chain_id: "e2e".into(),
        sender: key.public_key(),
        nonce,
        payload: payload.into(),
    }
    .sign(key)
}

/// Submits batches and records every transaction the node reports committed, until stopped.
fn load(
    node_url: String,
    key: SecretKey,
    first_nonce: u64,
    acked: Arc<Mutex<BTreeSet<Hash>>>,
    stop: Arc<AtomicBool>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut nonce = first_nonce;
    while !stop.load(Ordering::SeqCst) {
        let batch: Vec<Tx> = (0..50)
            .map(|i| anchor(&key, nonce + i, nonce + i))
            .collect();
        let body =
            json!({"txs": batch.iter().map(|tx| hex::encode(tx.to_bytes())).collect::<Vec<_>>()});
        if agent
            .post(format!("{node_url}/v1/txs"))
            .send_json(&body)
            .is_err()
        {
            return; // the node is gone
        }
        nonce += batch.len() as u64;
        for tx in &batch {
            let Ok(mut response) = agent
                .get(format!(
                    "{node_url}/v1/txs/{}/receipt?wait_ms=3000",
                    tx.id()
                ))
                .call()
            else {
                return;
            };
            let Ok(state) = response.body_mut().read_json::<serde_json::Value>() else {
                return;
            };
            if state["status"] == "committed" {
                acked.lock().expect("lock").insert(tx.id());
            } else {
                break;
            }
        }
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::init(dir.path());
    let org = org_key(&node);
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for round in 0..8 {
        node.start();
        // Each round's sender is a fresh member, so its nonces start at 1 after a crash.
        let member = SecretKey::from_seed(1_000 + round);
        let enrol = TxBody {
            chain_id: "e2e".into(),
            sender: org.public_key(),
            nonce: next_nonce(&node, &org),
            payload: CoreOp::Enrol {
                member: member.public_key(),
                role: Role::Device,
            }
            .into(),
        }
        .sign(&org);
        node.post(
            "/v1/txs",
            &json!({"tx": hex::encode(enrol.to_bytes())}).to_string(),
        );
        let state = node
            .get(&format!("/v1/txs/{}/receipt?wait_ms=60000", enrol.id()))
            .1;
        let log = std::fs::read_to_string(node.home.join("node.log")).unwrap_or_default();
        assert_eq!(
            state["status"], "committed",
            "round {round}: {state}\n{log}"
        );
        acked.lock().expect("lock").insert(enrol.id());

        let stop = Arc::new(AtomicBool::new(false));
        let loaders: Vec<_> = (0..2)
            .map(|part| {
                // Two loaders for one member would race on nonces; the second uses the org key.
                let (url, acked, stop) = (node.url.clone(), acked.clone(), stop.clone());
                let key = if part == 0 {
                    member.clone()
                } else {
                    org.clone()
                };
                let first = next_nonce(&node, &key);
                std::thread::spawn(move || load(url, key, first, acked, stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + rng.next_u64() % 600));
        node.kill();
        stop.store(true, Ordering::SeqCst);
        for loader in loaders {
            loader.join().expect("loader");
        }

        node.start();
        let acked_now = acked.lock().expect("lock").clone();
        for id in &acked_now {
            let (status, state) = node.get(&format!("/v1/txs/{id}/receipt"));
            assert_eq!(
                (status, state["status"].as_str()),
                (200, Some("committed")),
                "round {round}: acknowledged {id} was lost"
            );
        }
        node.kill();
    }
    assert!(
        acked.lock().expect("lock").len() > 100,
        "the load committed too little to prove anything"
    );
    let out = medledger(&["verify", "--home", node.home.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("ok:"));
}

/// Flips one byte of every copy of `needle` in the database file; returns how many it changed.
fn flip_everywhere(file: &std::path::Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(file).expect("read db");
    let mut count = 0;
    let mut start = 0;
    while let Some(offset) = bytes[start..]
        .windows(needle.len())
        .position(|window| window == needle)
    {
        let at = start + offset + needle.len() / 2;
        bytes[at] ^= 0x01;
        count += 1;
        start = at + 1;
    }
    std::fs::write(file, bytes).expect("write db");
    count
}

/// A chain of five blocks, each with one anchor, copied into a fresh directory per case.
struct Fixture {
    _dir: tempfile::TempDir,
    node: TestNode,
    txs: Vec<Tx>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::init(dir.path());
    node.start();
    let org = org_key(&node);
    let mut txs = Vec::new();
    for nonce in 1..=5 {
        let tx = anchor(&org, nonce, 900 + nonce);
        node.post(
            "/v1/txs",
            &json!({"tx": hex::encode(tx.to_bytes())}).to_string(),
        );
        assert_eq!(
            node.get(&format!("/v1/txs/{}/receipt?wait_ms=60000", tx.id()))
                .1["status"],
            "committed"
        );
        txs.push(tx);
    }
    // Tampering happens to a stopped node's files.
    node.stop();
    Fixture {
        _dir: dir,
        node,
        txs,
    }
}

fn db_file(node: &TestNode) -> std::path::PathBuf {
    node.home.join("data/ledger.redb")
}

fn verify_names_height(node: &TestNode, height: u64) {
    let out = medledger(&["verify", "--home", node.home.to_str().expect("utf-8")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    assert!(
        text.contains(&format!("height {height}")),
        "expected height {height}: {text}"
    );
}

#[test]
fn a_clean_store_verifies() {
    let fixture = fixture();
    let out = medledger(&[
        "verify",
        "--home",
        fixture.node.home.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("to height 5: 5 transactions"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_flipped_byte_in_a_stored_transaction_is_found_and_not_served() {
    let mut fixture = fixture();
    let tx = &fixture.txs[2];
    assert!(flip_everywhere(&db_file(&fixture.node), &tx.signature.0) > 0);
    verify_names_height(&fixture.node, 3);
    fixture.node.start();
    let (status, answer) = fixture.node.get("/v1/blocks/3");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("store_integrity")),
        "{answer}"
    );
    assert_eq!(fixture.node.get("/v1/blocks/2").0, 200);
    let (status, answer) = fixture.node.get(&format!("/v1/txs/{}", tx.id()));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("store_integrity")),
        "{answer}"
    );
    assert_eq!(
        fixture
            .node
            .get(&format!("/v1/txs/{}", fixture.txs[1].id()))
            .0,
        200
    );
}

#[test]
fn a_flipped_byte_in_a_state_value_is_found_and_not_served() {
    let mut fixture = fixture();
    let tx = &fixture.txs[1];
    let Payload::Core(CoreOp::Anchor { commitment, id }) = tx.body.payload else {
        panic!("anchor")
    };
    assert!(flip_everywhere(&db_file(&fixture.node), &commitment.0) > 0);
    verify_names_height(&fixture.node, 2);
    fixture.node.start();
    let (status, answer) = fixture.node.get(&format!("/v1/state/anchor/{id}"));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (500, Some("store_integrity")),
        "{answer}"
    );
}

#[test]
fn a_database_that_fails_its_checksums_after_a_crash_is_reported_as_tampered() {
    let mut fixture = fixture();
    fixture.node.start();
    fixture.node.kill();
    assert!(flip_everywhere(&db_file(&fixture.node), &fixture.txs[0].signature.0) > 0);
    let out = medledger(&[
        "verify",
        "--home",
        fixture.node.home.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("TAMPERED"));
    assert!(!fixture.node.start_expecting_failure().status.success());
}

#[test]
fn a_flipped_byte_in_the_head_block_stops_the_node_from_starting() {
    let fixture = fixture();
    // The head header's transactions root is the leaf of its single transaction's Merkle tree.
    let root = fixture.txs[4].leaf_hash();
    assert!(flip_everywhere(&db_file(&fixture.node), &root.0) > 0);
    verify_names_height(&fixture.node, 5);
    let out = fixture.node.start_expecting_failure();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tampered") && stderr.contains("height 5"),
        "{stderr}"
    );
}
