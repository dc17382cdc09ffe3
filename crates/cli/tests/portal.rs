//! End-to-end test of the portal's chain explorer through the real binary: the node serves it at
//! `/portal` with nothing else to install; the explorer shows the head, the validators and the
//! latest blocks; a block page shows its header, who signed its certificate with what power, and
//! each transaction's outcome (a refused one with its code); bad input and missing blocks answer
//! in plain words; every page carries a strict Content-Security-Policy and escapes what it echoes.
#![allow(clippy::disallowed_methods)]

mod common;

use common::{TestNode, anchor, wait_for_height};
use serde_json::Value;
use std::time::Duration;

fn page(node: &TestNode, path: &str) -> (u16, Vec<(String, String)>, String) {
    let (status, headers, body) = node.get_with_headers(path, &[]);
    let text = match body {
        Value::String(text) => text,
        other => other.to_string(),
    };
    (status, headers, text)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn the_chain_explorer_shows_blocks_certificates_and_outcomes_in_plain_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut node = TestNode::init(dir);
    node.start();
    let org = node.org_key();
    anchor(&node, &org, 1, true);
    let member = node.new_key(dir, "member", Some((&org, "practitioner")));
    // Enrolling the same key again is refused on chain: its block shows the refusal's code.
    let member_key = common::public_key_of(&member);
    let refused = node.cli(&[
        "tx",
        "--key",
        org.to_str().expect("utf-8"),
        "enrol",
        "--member",
        &member_key,
        "--role",
        "practitioner",
    ]);
    assert!(!refused.status.success());
    let receipt: Value = serde_json::from_slice(&refused.stdout).expect("receipt");
    let refused_height = receipt["height"].as_u64().expect("on chain");
    wait_for_height(&node, refused_height, Duration::from_secs(10));

    let (status, headers, home) = page(&node, "/portal");
    assert_eq!(status, 200);
    assert!(home.contains("Chain explorer"), "{home}");
    let policy = header(&headers, "content-security-policy").expect("a CSP");
    assert!(
        policy.contains("default-src 'none'") && !policy.contains("unsafe"),
        "{policy}"
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(!home.contains("<script"), "the portal serves no script");

    let (status, _, explorer) = page(&node, "/portal/explorer");
    assert_eq!(status, 200);
    assert!(
        explorer.contains("hospital"),
        "the validator's organisation: {explorer}"
    );
    assert!(explorer.contains(&format!("/portal/explorer/blocks/{refused_height}")));

    let (status, _, block) = page(&node, &format!("/portal/explorer/blocks/{refused_height}"));
    assert_eq!(status, 200, "{block}");
    assert!(
        block.contains("Final: validators holding 1 of 1"),
        "{block}"
    );
    assert!(block.contains("refused: already_enrolled"), "{block}");
    assert!(block.contains(">enrol<"), "{block}");
    let (_, _, first) = page(&node, "/portal/explorer/blocks/1");
    assert!(first.contains("committed"), "{first}");

    // Missing blocks and bad input answer in plain words, never a raw error.
    let (status, _, missing) = page(&node, "/portal/explorer/blocks/999999");
    assert_eq!(status, 404);
    assert!(
        missing.contains("This chain has no block at height 999999"),
        "{missing}"
    );
    let (status, _, bad) = page(&node, "/portal/explorer/blocks/twelve");
    assert_eq!(status, 400);
    assert!(bad.contains("whole number"), "{bad}");
    let (status, _, echoed) = page(
        &node,
        "/portal/explorer/block?height=%3Cscript%3Ealert(1)%3C/script%3E",
    );
    assert_eq!(status, 400);
    assert!(!echoed.contains("<script>"), "{echoed}");
    assert!(
        echoed.contains("&lt;script&gt;") || echoed.contains("&#60;script&#62;"),
        "{echoed}"
    );
    // The jump form leads to the block.
    let (status, headers, jumped) = page(&node, "/portal/explorer/block?height=1");
    assert!(
        (status == 200 && jumped.contains("Block 1"))
            || (status == 303 && header(&headers, "location") == Some("/portal/explorer/blocks/1")),
        "{status} {jumped}"
    );

    let (status, headers, css) = page(&node, "/portal/static/portal.css");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("text/css")));
    assert!(css.contains("--focus"));
    node.stop();
}

#[test]
fn the_chain_explorer_in_chromium_is_usable_by_keyboard_and_on_a_phone_and_passes_axe() {
    let browser = common::browser_toolchain();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let mut node = TestNode::init(dir);
    node.start();
    let org = node.org_key();
    anchor(&node, &org, 1, true);
    let member = node.new_key(dir, "member", Some((&org, "practitioner")));
    let refused = node.cli(&[
        "tx",
        "--key",
        org.to_str().expect("utf-8"),
        "enrol",
        "--member",
        &common::public_key_of(&member),
        "--role",
        "practitioner",
    ]);
    let receipt: Value = serde_json::from_slice(&refused.stdout).expect("receipt");
    let refused_height = receipt["height"].as_u64().expect("on chain");
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portal-screenshots");
    let out = std::process::Command::new("node")
        .arg(browser.join("explorer.mjs"))
        .arg(&node.url)
        .arg(&shots)
        .arg(refused_height.to_string())
        .output()
        .expect("node runs");
    node.stop();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["home", "explorer", "block", "missing-block"] {
        assert!(
            shots.join(format!("{name}.png")).exists(),
            "no screenshot of {name}"
        );
    }
}
