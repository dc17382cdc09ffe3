//! Four validators as four real `medledger node` processes, driven as an operator would: a
//! validator killed with SIGKILL while the others keep committing, then restarted to catch up;
//! two of four stopped, so the chain must halt without forking, then resume; and at the end every
//! node's store passes `medledger verify` and all agree block for block.

// These tests wait on real processes, so they read the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestNode, free_port, medledger};
use serde_json::Value;

const VALIDATORS: usize = 4;

fn devnet(dir: &Path) -> Vec<TestNode> {
    // Consecutive free ports: probe a base until the whole range is free.
    let (api, p2p) = loop {
        let api = free_port();
        let p2p = free_port();
        let free = |base: u16| {
            (0..VALIDATORS as u16)
                .all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
        };
        if api < 60_000 && p2p < 60_000 && api.abs_diff(p2p) > 8 && free(api) && free(p2p) {
            break (api, p2p);
        }
    };
    let out = medledger(&[
        "devnet",
        "--init-only",
        "--dir",
        dir.to_str().expect("utf-8"),
        "--api-port",
        &api.to_string(),
        "--p2p-port",
        &p2p.to_string(),
    ]);
    assert!(
        out.status.success(),
        "devnet --init-only failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (0..VALIDATORS)
        .map(|i| {
            TestNode::existing(
                dir.join(format!("node{i}")),
                format!("127.0.0.1:{}", api + i as u16),
            )
        })
        .collect()
}

fn height(node: &TestNode) -> u64 {
    let (status, body) = node.get("/v1/status");
    assert_eq!(status, 200, "{body}");
    body["height"].as_u64().expect("height")
}

fn wait_for_height(node: &TestNode, target: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = height(node);
        if now >= target {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} stayed at height {now}, below {target}; log:\n{}",
            node.url,
            std::fs::read_to_string(node.home.join("node.log"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Anchors a fresh id through `node`; returns the transaction id once it is committed.
fn anchor(node: &TestNode, key: &Path, seed: u64, wait: bool) -> String {
    let id = format!("{seed:064x}");
    let commitment = format!("{:064x}", seed + 1_000_000);
    let mut args = vec!["tx", "--key", key.to_str().expect("utf-8")];
    if !wait {
        args.push("--no-wait");
    }
    args.extend(["anchor", "--id", &id, "--commitment", &commitment]);
    let out = node.cli(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "tx anchor failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    parsed["id"]
        .as_str()
        .or_else(|| parsed["receipt"]["tx_id"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no transaction id in {stdout:?}"))
}

fn committed_on(node: &TestNode, id: &str) -> bool {
    let (status, body) = node.get(&format!("/v1/txs/{id}/receipt"));
    status == 200 && body["status"] == "committed"
}

fn block_hash(node: &TestNode, height: u64) -> String {
    let (status, body) = node.get(&format!("/v1/blocks/{height}"));
    assert_eq!(status, 200, "block {height} on {}: {body}", node.url);
    body["hash"].as_str().expect("block hash").to_string()
}

/// The whole scenario in one test: the processes are expensive to start, and each phase builds on
/// the chain the previous one left.
#[test]
fn four_validators_survive_a_crash_and_halt_safely_without_quorum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = devnet(dir.path());
    // Each node is sent transactions of its own organisation, so no client reads a nonce from
    // one node and submits to another that may be a block behind.
    let org_key = |index: usize| dir.path().join(format!("keys/org{index}.key"));
    for node in nodes.iter_mut() {
        node.start();
    }
    wait_for_height(&nodes[0], 2, Duration::from_secs(60));

    // Transactions sent to different validators all commit.
    let mut acknowledged = Vec::new();
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
