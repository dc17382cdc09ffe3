//! The CapabilityStatement a node serves at `/metadata`: what it stores and how it may be asked.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::time::date_time;
use crate::types::is_resource_type;

/// Resource types the node serves from the ledger itself rather than storing as records, each
/// described once with its own interactions.
const LEDGER_TYPES: [&str; 3] = ["AuditEvent", "Consent", "Provenance"];

/// What a node's CapabilityStatement says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilityConfig<'a> {
    /// The medledger version, e.g. `0.1.0`.
    pub software_version: &'a str,
    /// When this statement was last changed (milliseconds since the Unix epoch).
    pub date_ms: u64,
    /// Which node this is, e.g. `medledger node of org-a`.
    pub implementation_description: &'a str,
    /// The FHIR base URL the node serves, when known.
    pub base_url: Option<&'a str>,
    /// The resource types stored as records. Unknown names, `Bundle`, `AuditEvent`, `Consent`
    /// and `Provenance` (described with their own interactions) are skipped; duplicates are
    /// described once, in sorted order.
    pub resource_types: &'a [&'a str],
    /// Whether `GET [type]/[id]/_history/[vid]` is served.
    pub vread: bool,
}

/// An R4 CapabilityStatement (kind `instance`, so with `implementation`, as cpb-14 requires).
pub fn capability_statement(config: &CapabilityConfig<'_>) -> Value {
    let types: BTreeSet<&str> = config
        .resource_types
        .iter()
        .copied()
        .filter(|name| is_resource_type(name) && *name != "Bundle" && !LEDGER_TYPES.contains(name))
        .collect();
    let mut record_interactions = vec!["read"];
    if config.vread {
        record_interactions.push("vread");
    }
    record_interactions.extend(["update", "create", "search-type"]);
    let patient_search = json!([{
        "name": "patient",
        "type": "reference",
        "documentation": "The patient the resources belong to (`Patient/[id]`).",
    }]);
    let mut resources: Vec<Value> = types
        .iter()
        .map(|resource_type| {
            json!({
                "type": resource_type,
                "interaction": interactions(&record_interactions),
                "searchParam": patient_search,
            })
        })
        .collect();
    resources.push(json!({
        "type": "Consent",
        "documentation": "Consent grants recorded on the ledger, rendered as FHIR Consent.",
        "interaction": interactions(&["read", "search-type"]),
        "searchParam": patient_search,
    }));
    resources.push(json!({
        "type": "AuditEvent",
        "documentation": "Every access decision recorded on the ledger, rendered as FHIR AuditEvent.",
        "interaction": interactions(&["search-type"]),
        "searchParam": patient_search,
    }));
    resources.push(json!({
        "type": "Provenance",
        "documentation": "Who wrote each record version and when, from the ledger.",
        "interaction": interactions(&["read", "search-type"]),
        "searchParam": [{
            "name": "target",
            "type": "reference",
            "documentation": "The record whose versions to describe (`[type]/[id]`).",
        }],
    }));
    let mut implementation = json!({"description": config.implementation_description});
    if let Some(base_url) = config.base_url {
        implementation["url"] = json!(base_url);
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date_time(config.date_ms),
        "kind": "instance",
        "software": {"name": "medledger", "version": config.software_version},
        "implementation": implementation,
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "description": "Every request is signed by an enrolled member key: \
                    `Authorization: Medledger key=<hex>, ts=<ms>, sig=<hex>`, an Ed25519 \
                    signature over the chain id, method, path and query, time, body hash and \
                    access headers (`X-Purpose-Of-Use`, `X-Break-Glass`). Reads are decided by \
                    the patient's consent on the ledger, and every decision is recorded as an \
                    AuditEvent.",
            },
            "resource": resources,
            "interaction": interactions(&["transaction", "batch"]),
        }],
    })
}

fn interactions(codes: &[&str]) -> Vec<Value> {
    codes.iter().map(|code| json!({"code": code})).collect()
}
