//! End-to-end: a consortium administrator drives the real binary and its HTTP API, on the happy
//! path and on every kind of bad input the issue names.

// Tests drive real processes and time out on the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use common::*;
use medledger_crypto::{Hash, SecretKey};
use medledger_ledger::{CoreOp, Payload, TxBody};
use serde_json::json;

fn submit(node: &TestNode, tx: &medledger_ledger::Tx) -> (u16, serde_json::Value) {
    node.post(
        "/v1/txs",
        &json!({"tx": hex::encode(tx.to_bytes())}).to_string(),
    )
}

fn tx_from(
    key: &SecretKey,
    chain: &str,
    nonce: u64,
    payload: impl Into<Payload>,
) -> medledger_ledger::Tx {
    TxBody {
        chain_id: chain.into(),
        sender: key.public_key(),
        nonce,
        payload: payload.into(),
    }
    .sign(key)
}

#[test]
fn an_administrator_enrols_transacts_queries_and_proves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::init(dir.path());
    node.start();
    let org_key = node.org_key();

    // keygen, enrol, and a member's first transaction.
    let alice_file = dir.path().join("alice.key");
    let out = medledger(&["keygen", "--out", alice_file.to_str().expect("utf-8")]);
    assert!(out.status.success());
    let alice = stdout(&out).trim().to_string();
    assert_eq!(alice, public_key_of(&alice_file));
    let out = node.cli(&[
        "tx",
        "--key",
        org_key.to_str().expect("utf-8"),
        "enrol",
        "--member",
        &alice,
        "--role",
        "practitioner",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = "11".repeat(32);
    let out = node.cli(&[
        "tx",
        "--key",
        alice_file.to_str().expect("utf-8"),
        "anchor",
        "--id",
        &id,
        "--commitment",
        &"22".repeat(32),
    ]);
    assert!(out.status.success());
    let receipt: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json receipt");
    assert_eq!(receipt["status"], "committed");
    let (status, shown) = node.get(&format!("/v1/txs/{}", receipt["id"].as_str().expect("id")));
    assert_eq!(status, 200);
    assert_eq!(shown["tx"]["body"]["payload"]["id"], id.as_str());

    // The same anchor again is on chain but rejected, and the CLI says so with a non-zero code.
    let out = node.cli(&[
        "tx",
        "--key",
        alice_file.to_str().expect("utf-8"),
        "anchor",
        "--id",
        &id,
        "--commitment",
        &"33".repeat(32),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let receipt: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json receipt");
    assert_eq!(
        (
            receipt["status"].as_str(),
            receipt["code"].as_str(),
            receipt["on_chain"].as_bool()
        ),
        (Some("rejected"), Some("anchor_exists"), Some(true))
    );

    // A state entry with its proof verifies offline against genesis; a tampered one does not.
    let proof_file = dir.path().join("proof.json");
    let out = node.cli(&[
        "query",
        "state",
        &format!("anchor/{id}"),
        "--proof-out",
        proof_file.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success());
    let genesis = node.home.join("genesis.json");
    let verify = |file: &std::path::Path| verify_proof(file, &genesis);
    let out = verify(&proof_file);
    assert!(out.status.success(), "{}", stdout(&out));
    let mut proof: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&proof_file).expect("read")).expect("json");
    let value = proof["proof"]["value"].as_str().expect("value").to_string();
    // Flip the first byte (writing a fixed byte would change nothing when it is already there).
    let first = u8::from_str_radix(&value[..2], 16).expect("hex");
    proof["proof"]["value"] = json!(format!("{:02x}{}", first ^ 0xff, &value[2..]));
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, proof.to_string()).expect("write");
    let out = verify(&tampered);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("INVALID"), "{}", stdout(&out));

    // A transaction's inclusion proof verifies too.
    let tx_id = receipt["id"].as_str().expect("id");
    let tx_proof = dir.path().join("tx-proof.json");
    assert!(
        node.cli(&[
            "query",
            "tx-proof",
            tx_id,
            "--out",
            tx_proof.to_str().expect("utf-8")
        ])
        .status
        .success()
    );
    let out = verify(&tx_proof);
    assert!(
        out.status.success() && stdout(&out).contains("anchor_exists"),
        "{}",
        stdout(&out)
    );

    // Blocks, the head and metrics are served.
    let (status, head) = node.get("/v1/blocks/head");
    assert_eq!(status, 200);
    let height = head["block"]["header"]["height"].as_u64().expect("height");
    assert_eq!(height, 3);
    let hash = head["hash"].as_str().expect("hash");
    assert_eq!(
        node.get(&format!("/v1/blocks/hash/{hash}")).1["block"]["header"]["height"],
        height
    );
    let (status, metrics) = node.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .expect("text")
            .contains("medledger_txs_committed_total 3")
    );
    // Every answer carries a request id: the client's own when it is plain, else a fresh one.
    // An error body names it; the node's log line names it with the route's pattern, never the
    // path's ids; /metrics counts requests by route, method and status.
    let header = |headers: &[(String, String)]| {
        headers
            .iter()
            .find(|(name, _)| name == "x-request-id")
            .map(|(_, value)| value.clone())
            .expect("an X-Request-Id header")
    };
    let missing = "ab".repeat(32);
    let (status, headers, body) = node.get_with_headers(
        &format!("/v1/txs/{missing}"),
        &[("x-request-id", "flow-check-1")],
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(header(&headers), "flow-check-1");
    assert_eq!(body["error"]["request_id"], "flow-check-1");
    let (status, headers, body) = node.get_with_headers(
        "/v1/blocks/not-a-height",
        &[("x-request-id", "not plain; injected")],
    );
    assert_eq!(status, 400, "{body}");
    let fresh = header(&headers);
    assert_eq!(fresh.len(), 16, "{fresh}");
    assert_eq!(body["error"]["request_id"], fresh.as_str());
    let (_, headers, _) = node.get_with_headers("/v1/status", &[]);
    assert_ne!(header(&headers), fresh);
    let (_, metrics) = node.get("/metrics");
    let metrics = metrics.as_str().expect("text");
    for counted in [
        r#"medledger_http_requests_total{route="/v1/txs/{id}",method="GET",status="404"} 1"#,
        r#"medledger_http_requests_total{route="/v1/blocks/{height}",method="GET",status="400"} 1"#,
        r#"medledger_http_request_seconds_count{route="/v1/txs/{id}"}"#,
    ] {
        assert!(metrics.contains(counted), "{counted} not in the metrics");
    }
    let log = std::fs::read_to_string(node.home.join("node.log")).expect("node log");
    let line = log
        .lines()
        .find(|line| line.contains("flow-check-1"))
        .unwrap_or_else(|| panic!("no log line for the request:\n{log}"));
    assert!(
        line.contains("/v1/txs/{id}") && line.contains("404"),
        "{line}"
    );
    assert!(!log.contains(&missing), "a path's id reached the log");
    assert!(log.contains(&fresh));

    let (status, openapi) = node.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(openapi["paths"]["/v1/txs"].is_object());

    // Revocation: the member can no longer transact.
    let out = node.cli(&[
        "tx",
        "--key",
        org_key.to_str().expect("utf-8"),
        "revoke",
        "--member",
        &alice,
    ]);
    assert!(out.status.success());
    let out = node.cli(&[
        "tx",
        "--key",
        alice_file.to_str().expect("utf-8"),
        "anchor",
        "--id",
        &"44".repeat(32),
        "--commitment",
        &"55".repeat(32),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("revoked at height 4"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_input_gets_a_clear_json_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = TestNode::init(dir.path());
    node.start();
    let status = node.get("/v1/status").1;
    let height_before = status["height"].as_u64().expect("height");
    let org_text = std::fs::read_to_string(node.org_key()).expect("key");
    let org_json: serde_json::Value = serde_json::from_str(&org_text).expect("json");
    let secret: [u8; 32] = hex::decode(org_json["secret_key"].as_str().expect("secret"))
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let org = SecretKey::from_bytes(secret);
    let anchor = CoreOp::Anchor {
        id: Hash([9; 32]),
        commitment: Hash([9; 32]),
    };

    // Each case: what is sent, the status expected, and the error code expected.
    let check = |body: String, status: u16, code: &str| {
        let (got, answer) = node.post("/v1/txs", &body);
        assert_eq!(got, status, "{body:.80}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty())
        );
    };
    check("{not json".into(), 400, "malformed_json");
    check(json!({"tx": "zz"}).to_string(), 400, "malformed_tx");
    check(json!({"tx": "00ff"}).to_string(), 400, "malformed_tx");
    check(
        json!({"tx": "aa", "txs": []}).to_string(),
        400,
        "malformed_json",
    );
    let (status, answer) = node.post_declaring_length("/v1/txs", 17 << 20);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["code"], "body_too_large", "{answer}");

    let mut bad_signature = tx_from(&org, "e2e", 1, anchor.clone());
    bad_signature.signature.0[3] ^= 1;
    check(
        json!({"tx": hex::encode(bad_signature.to_bytes())}).to_string(),
        401,
        "bad_signature",
    );
    let stranger = SecretKey::from_seed(77);
    check(
        json!({"tx": hex::encode(tx_from(&stranger, "e2e", 1, anchor.clone()).to_bytes())})
            .to_string(),
        403,
        "unknown_sender",
    );
    check(
        json!({"tx": hex::encode(tx_from(&org, "other-chain", 1, anchor.clone()).to_bytes())})
            .to_string(),
        400,
        "wrong_chain",
    );
    check(
        json!({"tx": hex::encode(tx_from(&org, "e2e", 100_000, anchor.clone()).to_bytes())})
            .to_string(),
        409,
        "nonce_gap",
    );

    // A malformed entry refuses a whole batch: nothing of it is admitted.
    let good = tx_from(&org, "e2e", 1, anchor.clone());
    let (status, answer) = node.post(
        "/v1/txs",
        &json!({"txs": [hex::encode(good.to_bytes()), "00"]}).to_string(),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("malformed_tx"))
    );
    assert_eq!(node.get(&format!("/v1/txs/{}", good.id())).0, 404);

    // Nothing was committed by any of the above.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        node.get("/v1/status").1["height"].as_u64(),
        Some(height_before)
    );

    // A replay: the good transaction commits once, then its nonce is used.
    let (status, _) = submit(&node, &good);
    assert_eq!(status, 202);
    let (_, receipt) = node.get(&format!("/v1/txs/{}/receipt?wait_ms=10000", good.id()));
    assert_eq!(receipt["status"], "committed");
    let replay = tx_from(
        &org,
        "e2e",
        1,
        CoreOp::Anchor {
            id: Hash([8; 32]),
            commitment: Hash([8; 32]),
        },
    );
    let (status, answer) = submit(&node, &replay);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("nonce_used")),
        "{answer}"
    );
    // Resubmitting the committed transaction itself is harmless.
    assert_eq!(submit(&node, &good).1["status"], "already_known");

    // Reads with bad paths get JSON errors too.
    for (path, status, code) in [
        ("/v1/txs/nothex", 400, "malformed_id"),
        ("/v1/blocks/minus-one", 400, "malformed_height"),
        ("/v1/blocks/999", 404, "not_found"),
        ("/v1/accounts/1234", 400, "malformed_key"),
        ("/v1/txs/00/receipt?wait_ms=abc", 400, "malformed_id"),
        ("/v1/state/chain/info?height=abc", 400, "malformed_query"),
        ("/nowhere", 404, "not_found"),
    ] {
        let (got, answer) = node.get(path);
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {answer}"
        );
    }
}
