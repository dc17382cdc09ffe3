//! A hospital node for the records tests: a single-validator chain with its organisation's root
//! key, members enrolled by role, the Synthea patient imported, and signed requests made by hand.

use std::path::{Path, PathBuf};

use medledger_api::auth::AccessHeaders;
use medledger_crypto::SecretKey;
use serde_json::Value;

use super::{PATIENT_ID, TestNode, public_key_of, stdout, synthea};

/// The exact bytes of the entry resource with this id, as they stand in the Bundle file.
pub fn original_bytes(id: &str) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct Entry<'a> {
        #[serde(borrow)]
        resource: &'a serde_json::value::RawValue,
    }
    #[derive(serde::Deserialize)]
    struct Bundle<'a> {
        #[serde(borrow)]
        entry: Vec<Entry<'a>>,
    }
    let text = std::fs::read_to_string(synthea()).expect("synthea");
    let bundle: Bundle<'_> = serde_json::from_str(&text).expect("bundle");
    bundle
        .entry
        .iter()
        .map(|entry| entry.resource.get())
        .find(|raw| serde_json::from_str::<Value>(raw).expect("json")["id"].as_str() == Some(id))
        .expect("entry")
        .as_bytes()
        .to_vec()
}

/// The bytes the node stores for the entry with this id: as in the Bundle file, with references
/// to other entries by `fullUrl` written as `Type/id`, as a FHIR transaction stores them.
pub fn stored_bytes(id: &str) -> Vec<u8> {
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(synthea()).expect("synthea")).expect("json");
    let mut text = String::from_utf8(original_bytes(id)).expect("utf-8");
    for entry in bundle["entry"].as_array().expect("entries") {
        let full_url = entry["fullUrl"].as_str().expect("fullUrl");
        let target = format!(
            "{}/{}",
            entry["resource"]["resourceType"].as_str().expect("type"),
            entry["resource"]["id"].as_str().expect("id")
        );
        text = text.replace(&format!("\"{full_url}\""), &format!("\"{target}\""));
    }
    text.into_bytes()
}

pub struct Hospital {
    pub node: TestNode,
    pub dir: PathBuf,
    pub root: PathBuf,
}

impl Hospital {
    pub fn start(dir: &Path) -> Hospital {
        let mut node = TestNode::init(dir);
        node.start();
        let root = node.org_key();
        Hospital {
            node,
            dir: dir.to_path_buf(),
            root,
        }
    }

    /// A new key, enrolled with `role` unless `role` is `None`.
    pub fn member(&self, name: &str, role: Option<&str>) -> PathBuf {
        self.node.new_key(
            &self.dir,
            name,
            role.map(|role| (self.root.as_path(), role)),
        )
    }

    pub fn fhir(&self, key: &Path, args: &[&str]) -> std::process::Output {
        let mut all = vec!["fhir", "--key", key.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        self.node.cli(&all)
    }

    /// The custodian binds the Synthea patient to `patient`'s key.
    pub fn bind(&self, patient: &Path) {
        succeeded(self.fhir(
            &self.root,
            &[
                "bind",
                "--patient",
                PATIENT_ID,
                "--patient-key",
                &public_key_of(patient),
            ],
        ));
    }

    pub fn consent(&self, key: &Path, args: &[&str]) -> std::process::Output {
        let mut all = vec!["consent", "--key", key.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        self.node.cli(&all)
    }

    pub fn import_synthea(&self, author: &Path) {
        let out = self.fhir(author, &["import", synthea().to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_str(&stdout(&out)).expect("summary");
        assert_eq!(summary["resources"], 314, "{summary}");
    }

    pub fn height(&self) -> u64 {
        self.node.get("/v1/status").1["height"]
            .as_u64()
            .expect("height")
    }

    /// A signed request made by hand, for the bad-input cases the CLI would never send.
    pub fn signed(
        &self,
        key: &SecretKey,
        method: &str,
        path: &str,
        body: &[u8],
        purpose: Option<&str>,
    ) -> (u16, Value) {
        let access = AccessHeaders {
            purpose: purpose.map(str::to_string),
            ..AccessHeaders::default()
        };
        let (status, bytes) = self.node.signed(key, method, path, body, &access);
        (
            status,
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        )
    }
}

pub fn key_of(file: &Path) -> SecretKey {
    let text = std::fs::read_to_string(file).expect("key file");
    let value: Value = serde_json::from_str(&text).expect("json");
    let secret = hex::decode(value["secret_key"].as_str().expect("secret")).expect("hex");
    SecretKey::from_bytes(secret.try_into().expect("32 bytes"))
}

/// Returns a command's output after checking it succeeded.
pub fn succeeded(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn failed_with(out: &std::process::Output, status: &str) {
    assert!(
        !out.status.success(),
        "expected a refusal, got {}",
        stdout(out)
    );
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains(status), "expected {status}: {error}");
}

/// Checks that a served record is the stored one, version `version`, with the server's `id` and
/// `meta.versionId`/`meta.lastUpdated` written in and everything else as stored.
pub fn assert_served_as(served: &[u8], stored: &[u8], version: u32) {
    let strip = |bytes: &[u8]| {
        let mut value: Value = serde_json::from_slice(bytes).expect("a served record is JSON");
        if let Some(meta) = value.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                value.as_object_mut().expect("object").remove("meta");
            }
        }
        value
    };
    let value: Value = serde_json::from_slice(served).expect("json");
    assert_eq!(value["meta"]["versionId"], version.to_string(), "{value}");
    assert!(value["meta"]["lastUpdated"].is_string(), "{value}");
    assert_eq!(strip(served), strip(stored));
}
