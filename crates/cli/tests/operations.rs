//! Running a consortium for years, as its operators would: a backup taken from a running
//! validator under load and restored (the restored node catches up, loses no acknowledged
//! transaction and passes `medledger verify`), and every way a backup or a restore is refused.

// These tests wait on real processes, so they read the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    TestNode, anchor, block_hash, committed_on, devnet, height, medledger, one_devnet, secret_of,
    stdout, wait_for_height,
};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The archive's tar stream, if its gzip stream decodes and checks.
fn gunzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .ok()
        .map(|_| out)
}

/// A validator's backup, taken while the network commits transactions through it, restores into
/// a fresh home: with its keys (opened by the passphrase), it rejoins, catches up past every
/// transaction acknowledged before and after the backup, agrees with the others block for block,
/// and passes `medledger verify`. A wrong passphrase, a damaged archive, a non-empty home and a
/// backup asked for by another key are refused, leaving nothing behind.
#[test]
fn a_backup_under_load_restores_and_catches_up() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = devnet(dir.path(), 0);
    for node in nodes.iter_mut() {
        node.start();
    }
    wait_for_height(&nodes[0], 2, Duration::from_secs(60));
    let org_key = |index: usize| dir.path().join(format!("keys/org{index}.key"));
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "a long enough passphrase\n").expect("passphrase");

    // Load through validator 1, the one to back up.
    let stop = Arc::new(AtomicBool::new(false));
    let loader = {
        let stop = stop.clone();
        let node = TestNode::existing(nodes[1].home.clone(), nodes[1].listen.clone());
        let key = org_key(1);
        std::thread::spawn(move || {
            let mut acknowledged = Vec::new();
            let mut seed = 1;
            while !stop.load(Ordering::SeqCst) {
                acknowledged.push(anchor(&node, &key, seed, true));
                seed += 1;
            }
            acknowledged
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let archive = dir.path().join("node1.backup.tar.gz");
    let home = nodes[1].home.to_str().expect("utf-8").to_string();
    let out = medledger(&[
        "backup",
        "--home",
        &home,
        "--out",
        archive.to_str().expect("utf-8"),
        "--keys-passphrase-file",
        passphrase.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("summary");
    let backed_up_at = summary["height"].as_u64().expect("height");
    assert!(backed_up_at >= 2 && summary["keys"] == true, "{summary}");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let acknowledged = loader.join().expect("the load");
    assert!(
        acknowledged.len() > 4,
        "{} transactions",
        acknowledged.len()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&archive)
        .expect("archive")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the archive is readable by others");
    // The node's staging copy is gone.
    let backups = nodes[1].home.join("data/backups");
    assert_eq!(
        std::fs::read_dir(&backups).map_or(0, |entries| entries.count()),
        0
    );

    // Only the node's own key may ask for a backup.
    let (status, body) = nodes[1].signed(
        &secret_of(&org_key(1)),
        "POST",
        "/v1/admin/backup",
        b"",
        &Default::default(),
    );
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let out = medledger(&[
        "backup",
        "--home",
        &home,
        "--out",
        archive.to_str().expect("utf-8"),
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("exists"),
        "{}",
        stderr(&out)
    );

    // The validator's machine is lost.
    nodes[1].stop();
    let lost = dir.path().join("node1-lost");
    std::fs::rename(&nodes[1].home, &lost).expect("move the home away");

    // Refusals leave nothing: a wrong passphrase, a damaged archive, a home in use.
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase at all\n").expect("wrong passphrase");
    let restore = |from: &std::path::Path, pass: &std::path::Path| {
        medledger(&[
            "restore",
            "--from",
            from.to_str().expect("utf-8"),
            "--home",
            &home,
            "--keys-passphrase-file",
            pass.to_str().expect("utf-8"),
        ])
    };
    let out = restore(&archive, &wrong);
    assert!(
        !out.status.success() && stderr(&out).contains("passphrase does not open"),
        "{}",
        stderr(&out)
    );
    // One flipped byte anywhere is refused: in the data, in tar padding or headers, in the gzip
    // trailer's checksum. Deflate ignores some bits (the padding after a stored block's header),
    // and a flip there changes nothing the archive says; so from each starting point the test
    // takes the first byte whose flip does change the unpacked stream, or breaks it.
    let intact = std::fs::read(&archive).expect("archive");
    let unpacked = gunzip(&intact).expect("the intact archive unpacks");
    let damaged_file = dir.path().join("damaged.tar.gz");
    for start in [
        intact.len() / 4,
        intact.len() / 2,
        intact.len() * 3 / 4,
        intact.len() - 6,
    ] {
        let flipped = |at: usize| {
            let mut damaged = intact.clone();
            damaged[at] ^= 0x55;
            damaged
        };
        let at = (start..intact.len())
            .find(|&at| gunzip(&flipped(at)).as_ref() != Some(&unpacked))
            .expect("a byte whose flip changes the archive");
        let damaged = flipped(at);
        std::fs::write(&damaged_file, damaged).expect("damaged");
        let out = restore(&damaged_file, &passphrase);
        assert!(
            !out.status.success(),
            "an archive damaged at byte {at} of {} was restored",
            intact.len()
        );
    }
    assert!(
        !nodes[1].home.exists(),
        "a refused restore left {}",
        nodes[1].home.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(".medledger-restore")
        })
        .collect();
    assert!(leftovers.is_empty(), "staging left behind");
    let out = medledger(&[
        "restore",
        "--from",
        archive.to_str().expect("utf-8"),
        "--home",
        lost.to_str().expect("utf-8"),
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("not empty"),
        "{}",
        stderr(&out)
    );

    // Restored with its keys, it rejoins and catches up.
    let out = restore(&archive, &passphrase);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let key_file = nodes[1].home.join("keys/validator.key");
    assert_eq!(
        std::fs::read(&key_file).expect("restored key"),
        std::fs::read(lost.join("keys/validator.key")).expect("original key")
    );
    let mode = std::fs::metadata(&key_file)
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    nodes[1].start();
    let head = height(&nodes[0]);
    wait_for_height(&nodes[1], head, Duration::from_secs(60));
    for id in &acknowledged {
        assert!(committed_on(&nodes[1], id), "{id} was lost");
    }
    for height in 1..=head {
        assert_eq!(block_hash(&nodes[1], height), block_hash(&nodes[0], height));
    }
    // It votes again: the network commits with it and without another validator.
    nodes[3].stop();
    let before = height(&nodes[0]);
    anchor(&nodes[0], &org_key(0), 10_000, true);
    wait_for_height(&nodes[1], before + 1, Duration::from_secs(60));
    nodes[1].stop();
    let out = medledger(&["verify", "--home", &home]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

/// A full node starts from a validator's state snapshot instead of replaying the chain: the sync
/// is interrupted and resumes from the chunks it kept, the node then follows the chain from the
/// snapshot's height, serves proofs of state written before it that verify offline against
/// genesis, refuses what it does not hold (blocks and state below the snapshot) with a clear
/// error, and `medledger verify` checks it from the snapshot's certified header. A chunk altered
/// on the serving validator is refused and nothing is kept.
#[test]
fn a_full_node_starts_from_a_snapshot_and_catches_up() {
    let _devnet = one_devnet();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nodes = common::devnet_with_full_nodes(dir.path(), 0, 2);
    let mut second = nodes.pop().expect("a second full node");
    let mut full = nodes.pop().expect("the full node");
    for node in nodes.iter_mut() {
        node.start();
    }
    wait_for_height(&nodes[0], 2, Duration::from_secs(60));
    let org_key = |index: usize| dir.path().join(format!("keys/org{index}.key"));
    for full_node in [&full, &second] {
        let key = common::public_key_of(&full_node.home.join("keys/validator.key"));
        let out = nodes[0].cli(&[
            "tx",
            "--key",
            org_key(0).to_str().expect("utf-8"),
            "enrol",
            "--member",
            &key,
            "--role",
            "node",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let before: Vec<String> = (1..=12)
        .map(|seed| anchor(&nodes[0], &org_key(0), seed, true))
        .collect();
    let out = medledger(&[
        "snapshot",
        "--home",
        nodes[0].home.to_str().expect("utf-8"),
        "--chunk-leaves",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let snapshot: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("summary");
    let base = snapshot["height"].as_u64().expect("height");
    let chunks = snapshot["chunks"].as_u64().expect("chunks");
    assert!(chunks > 4, "{snapshot}");
    let after: Vec<String> = (100..=105)
        .map(|seed| anchor(&nodes[0], &org_key(0), seed, true))
        .collect();

    // Interrupted after two chunks, then resumed: only the rest are fetched.
    let full_home = full.home.to_str().expect("utf-8").to_string();
    let out = medledger(&[
        "statesync",
        "--home",
        &full_home,
        "--stop-after-chunks",
        "2",
    ]);
    assert!(!out.status.success(), "the interrupted sync succeeded");
    assert!(
        stderr(&out).contains("stopped after 2 chunks"),
        "{}",
        stderr(&out)
    );
    let out = medledger(&["statesync", "--home", &full_home]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let synced: serde_json::Value =
        serde_json::from_str(&text[..text.rfind('}').expect("json") + 1]).expect("report");
    assert_eq!(synced["height"].as_u64(), Some(base));
    assert_eq!(synced["chunks"].as_u64(), Some(chunks));
    assert_eq!(
        synced["chunks_fetched"].as_u64(),
        Some(chunks - 2),
        "{synced}"
    );
    assert!(!full.home.join("data/statesync").exists());
    let out = medledger(&["statesync", "--home", &full_home]);
    assert!(!out.status.success() && stderr(&out).contains("already holds a chain"));

    // It follows from the snapshot on.
    full.start();
    let head = height(&nodes[0]);
    wait_for_height(&full, head, Duration::from_secs(60));
    for id in &after {
        assert!(
            committed_on(&full, id),
            "{id} after the snapshot is missing"
        );
    }
    for height in base + 1..=head {
        assert_eq!(block_hash(&full, height), block_hash(&nodes[0], height));
    }
    // State written before the snapshot is there, with proofs that verify against genesis.
    let proof_file = dir.path().join("anchor-proof.json");
    let out = full.cli(&[
        "query",
        "state",
        &format!("anchor/{:064x}", 3),
        "--proof-out",
        proof_file.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = common::verify_proof(&proof_file, &full.home.join("genesis.json"));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    // What it does not hold is refused clearly: blocks at or below the snapshot, state below it.
    let (status, body) = full.get(&format!("/v1/blocks/{base}"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("height_not_kept")),
        "{body}"
    );
    let (status, body) = full.get(&format!("/v1/state/anchor/{:064x}?height={}", 3, base - 1));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (410, Some("height_not_kept")),
        "{body}"
    );
    let (status, _) = full.get(&format!("/v1/txs/{}/receipt", before[0]));
    assert_eq!(status, 404, "a receipt from before the snapshot");
    full.stop();
    let out = medledger(&["verify", "--home", &full_home]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("from the certified snapshot at height {base}")),
        "{}",
        stdout(&out)
    );

    // A chunk altered on the only validator holding the snapshot is refused; nothing is kept.
    let chunk = nodes[0]
        .home
        .join(format!("data/snapshots/{base}/chunk-000001.bin"));
    let mut bytes = std::fs::read(&chunk).expect("chunk");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&chunk, bytes).expect("alter");
    let out = medledger(&["statesync", "--home", second.home.to_str().expect("utf-8")]);
    assert!(!out.status.success(), "an altered snapshot was restored");
    assert!(stderr(&out).contains("chunk 1"), "{}", stderr(&out));
    second.start();
    // Started anyway, it is an empty full node following from genesis, not a half-restored one.
    wait_for_height(&second, head, Duration::from_secs(60));
    assert_eq!(block_hash(&second, 1), block_hash(&nodes[0], 1));
}
