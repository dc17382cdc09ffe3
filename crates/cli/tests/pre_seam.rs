//! A store written by the code before modules were crates (commit 2f20e00; how it was made is in
//! `data/pre-seam/`): after the change it still verifies from genesis, and the node serves every
//! block and every sampled state entry (with its proof) exactly as the old node did.

// The test harness waits on the node with the wall clock; the node under test does not.
#![allow(clippy::disallowed_methods)]

mod common;

use std::io::Read;
use std::path::Path;

use common::{TestNode, free_port, medledger};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pre-seam");

fn read_gz(path: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("test data"))
        .read_to_end(&mut bytes)
        .expect("gzip");
    bytes
}

/// The stored home, unpacked into `dir`, listening on a free port.
fn unpack(dir: &Path) -> TestNode {
    let data = Path::new(DATA).join("home");
    let home = dir.join("home");
    std::fs::create_dir_all(home.join("keys")).expect("mkdir");
    std::fs::create_dir_all(home.join("data")).expect("mkdir");
    std::fs::copy(data.join("genesis.json"), home.join("genesis.json")).expect("copy");
    std::fs::copy(
        data.join("keys/validator.key"),
        home.join("keys/validator.key"),
    )
    .expect("copy");
    std::fs::write(
        home.join("data/ledger.redb"),
        read_gz(&data.join("data/ledger.redb.gz")),
    )
    .expect("store");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = std::fs::read_to_string(data.join("config.toml"))
        .expect("config")
        .replace("127.0.0.1:18731", &listen);
    std::fs::write(home.join("config.toml"), config).expect("config");
    TestNode::existing(home, listen)
}

#[test]
fn a_store_written_before_the_module_seam_verifies_and_serves_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = unpack(dir.path());
    let home = node.home.to_str().expect("utf-8").to_string();

    let verified = medledger(&["verify", "--home", &home]);
    assert!(
        verified.status.success(),
        "the old store no longer verifies: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    node.start();
    let blocks: Vec<Value> =
        serde_json::from_slice(&read_gz(&Path::new(DATA).join("blocks.json.gz"))).expect("json");
    assert_eq!(blocks.len(), 32);
    let (status, head) = node.get("/v1/status");
    assert_eq!(status, 200);
    assert_eq!(head["height"], 32, "the node made no block of its own");
    for (height, expected) in (1..).zip(&blocks) {
        let (status, served) = node.get(&format!("/v1/blocks/{height}"));
        assert_eq!(status, 200, "block {height}");
        assert_eq!(&served, expected, "block {height} is served differently");
    }
    let answers: Vec<Value> =
        serde_json::from_slice(&read_gz(&Path::new(DATA).join("state.json.gz"))).expect("json");
    assert!(answers.len() > 40);
    for entry in &answers {
        let key = entry["key"].as_str().expect("key");
        let (status, served) = node.get(&format!("/v1/state/{key}"));
        assert_eq!(status, 200, "state {key}");
        assert_eq!(
            &served, &entry["answer"],
            "state {key} is served differently"
        );
    }
    node.stop();
}
