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
    let mut damaged = std::fs::read(&archive).expect("archive");
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x55;
    let damaged_file = dir.path().join("damaged.tar.gz");
    std::fs::write(&damaged_file, damaged).expect("damaged");
    let out = restore(&damaged_file, &passphrase);
    assert!(!out.status.success(), "a damaged archive was restored");
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
