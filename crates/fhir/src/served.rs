//! A stored resource as the server serves it: with its logical `id` and with `meta.versionId`
//! and `meta.lastUpdated` from the ledger, as R4 §3.1.0.1.3 requires of every read.
//!
//! A record is stored exactly as it arrived (so its commitment covers the client's bytes); the
//! server's own elements are written in when it is served. Every other member, and every other
//! element of `meta` (profiles, security labels, tags), is kept byte for byte and in order.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::FhirError;
use crate::time::instant;

/// A JSON object's members in document order, each value as its raw bytes.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push(entry);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

fn members(bytes: &[u8]) -> Result<Vec<(String, Box<RawValue>)>, FhirError> {
    serde_json::from_slice::<Members>(bytes)
        .map(|members| members.0)
        .map_err(|error| FhirError::Json {
            line: error.line(),
            column: error.column(),
            reason: error.to_string(),
        })
}

fn push_member(out: &mut Vec<u8>, first: &mut bool, name: &str, raw: &[u8]) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.extend_from_slice(Value::from(name).to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(raw);
}

/// Rewrites a resource's members: `resourceType` first, then `id` (when given), then `meta`
/// (when given), then every other member in its original order.
fn rewrite(bytes: &[u8], id: Option<&str>, meta: Option<&Value>) -> Result<Vec<u8>, FhirError> {
    let members = members(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() + 128);
    out.push(b'{');
    let mut first = true;
    if let Some((_, raw)) = members.iter().find(|(name, _)| name == "resourceType") {
        push_member(&mut out, &mut first, "resourceType", raw.get().as_bytes());
    }
    if let Some(id) = id {
        push_member(
            &mut out,
            &mut first,
            "id",
            Value::from(id).to_string().as_bytes(),
        );
    }
    if let Some(meta) = meta {
        push_member(&mut out, &mut first, "meta", meta.to_string().as_bytes());
    }
    for (name, raw) in &members {
        let replaced = name == "resourceType"
            || (id.is_some() && name == "id")
            || (meta.is_some() && name == "meta");
        if !replaced {
            push_member(&mut out, &mut first, name, raw.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(out)
}

/// The resource with its logical id set to `id`: a create's server-assigned id.
pub fn with_id(bytes: &[u8], id: &str) -> Result<Vec<u8>, FhirError> {
    rewrite(bytes, Some(id), None)
}

/// The resource as served: `id`, `meta.versionId` and `meta.lastUpdated` (the block time of the
/// version) set, every other element kept.
pub fn served(
    bytes: &[u8],
    id: &str,
    version: u32,
    last_updated_ms: u64,
) -> Result<Vec<u8>, FhirError> {
    let existing = members(bytes)?
        .into_iter()
        .find(|(name, _)| name == "meta")
        .and_then(|(_, raw)| serde_json::from_str::<Map<String, Value>>(raw.get()).ok())
        .unwrap_or_default();
    let mut meta = Map::new();
    meta.insert("versionId".into(), Value::from(version.to_string()));
    meta.insert("lastUpdated".into(), Value::from(instant(last_updated_ms)));
    for (name, value) in existing {
        if name != "versionId" && name != "lastUpdated" {
            meta.insert(name, value);
        }
    }
    rewrite(bytes, Some(id), Some(&Value::Object(meta)))
}

/// Rewrites every JSON string in `bytes` whose whole value is a key of `targets` (a Bundle
/// entry's `fullUrl`, e.g. `urn:uuid:...`) to the target's `Type/id`, as a transaction stores
/// references to its own entries (R4 §3.1.0.11.2). Everything else is kept byte for byte. A
/// string written with escapes is compared as written, and `bytes` must be valid JSON.
pub fn rewrite_references(bytes: &[u8], targets: &BTreeMap<String, String>) -> Vec<u8> {
    if targets.is_empty() {
        return bytes.to_vec();
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while position < bytes.len() {
        let byte = bytes[position];
        if byte != b'"' {
            out.push(byte);
            position += 1;
            continue;
        }
        // A string token: find its closing quote, stepping over escapes.
        let start = position + 1;
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(bytes.len());
        let content = &bytes[start..end];
        match std::str::from_utf8(content)
            .ok()
            .and_then(|text| targets.get(text))
        {
            Some(target) => {
                out.extend_from_slice(Value::from(target.as_str()).to_string().as_bytes())
            }
            None => {
                out.push(b'"');
                out.extend_from_slice(content);
                if end < bytes.len() {
                    out.push(b'"');
                }
            }
        }
        position = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_resources_carry_id_and_meta_and_keep_everything_else() {
        let stored = br#"{"status":"final","resourceType":"Observation","meta":{"versionId":"9","profile":["http://x"]},"code":{"text":"a"},"id":"old"}"#;
        let out = served(stored, "obs-1", 3, 1_558_700_000_123).expect("rewrites");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.starts_with(r#"{"resourceType":"Observation","id":"obs-1","meta":{"#),
            "{text}"
        );
        let value: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["meta"]["versionId"], "3");
        assert_eq!(value["meta"]["lastUpdated"], "2019-05-24T12:13:20.123Z");
        assert_eq!(value["meta"]["profile"][0], "http://x");
        assert_eq!(value["status"], "final");
        assert!(
            text.ends_with(r#""status":"final","code":{"text":"a"}}"#),
            "{text}"
        );
        let created =
            with_id(br#"{"resourceType":"Patient","active":true}"#, "p1").expect("rewrites");
        assert_eq!(
            created,
            br#"{"resourceType":"Patient","id":"p1","active":true}"#
        );
        assert!(served(b"[1]", "x", 1, 0).is_err());
    }

    #[test]
    fn references_to_bundle_entries_become_type_and_id() {
        let targets: BTreeMap<String, String> = [(
            "urn:uuid:11111111-1111-1111-1111-111111111111".to_string(),
            "Patient/p1".to_string(),
        )]
        .into();
        let input = br#"{"a":"urn:uuid:11111111-1111-1111-1111-111111111111","b":"x \"urn:uuid:11111111-1111-1111-1111-111111111111\"","c":["urn:uuid:11111111-1111-1111-1111-111111111111"],"urn:uuid:2":1}"#;
        let out = rewrite_references(input, &targets);
        assert_eq!(
            std::str::from_utf8(&out).expect("utf-8"),
            r#"{"a":"Patient/p1","b":"x \"urn:uuid:11111111-1111-1111-1111-111111111111\"","c":["Patient/p1"],"urn:uuid:2":1}"#
        );
        assert_eq!(rewrite_references(input, &BTreeMap::new()), input);
        // Truncated input is copied, not panicked on.
        let _ = rewrite_references(br#"{"a":"urn:uu"#, &targets);
        let _ = rewrite_references(br#"{"a":"\"#, &targets);
    }
}
