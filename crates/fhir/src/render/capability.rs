//! The CapabilityStatement a node serves at `/metadata`: what it stores and how it may be asked.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::time::date_time;
use crate::types::is_resource_type;

/// Resource types the node serves from the ledger itself rather than storing as records, each
/// described once with its own interactions.
const LEDGER_TYPES: [&str; 8] = [
    "AuditEvent",
    "Claim",
    "ClaimResponse",
    "Consent",
    "Coverage",
    "ExplanationOfBenefit",
    "PaymentReconciliation",
    "Provenance",
];

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
    /// The resource types stored as records. Unknown names, `Bundle` and the ledger's own types
    /// (`AuditEvent`, `Consent`, `Provenance` and the financial resources, described with their
    /// own interactions) are skipped; duplicates are described once, in sorted order.
    pub resource_types: &'a [&'a str],
    /// Whether `GET [type]/[id]/_history/[vid]` is served.
    pub vread: bool,
    /// The SMART on FHIR OAuth endpoints, when the node issues tokens: (token, authorize).
    pub oauth: Option<(&'a str, &'a str)>,
}

/// The SMART extension of `rest.security` that names the OAuth endpoints.
const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
const SECURITY_SERVICE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/restful-security-service";

/// The search parameters of a record type: the patient, `_id`, `_lastUpdated` and its own.
fn search_params(resource_type: &str) -> Vec<Value> {
    let mut params = vec![
        json!({"name": "patient", "type": "reference",
            "documentation": "The patient the resources belong to (`Patient/[id]`)."}),
        json!({"name": "_id", "type": "token"}),
        json!({"name": "_lastUpdated", "type": "date",
            "documentation": "The block time of the version served."}),
    ];
    for (name, kind) in crate::search::parameters_of(resource_type) {
        let mut param = json!({"name": name, "type": kind});
        if (resource_type, name) == ("Observation", "device") {
            param["documentation"] = json!(
                "The device that measured it (`Device/<its key>` for a paired device). A patient's device readings (Personal Health Device profile, ids `rpm-...`) follow the records in every Observation search by patient that consent allows."
            );
        }
        params.push(param);
    }
    params
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
                "versioning": "versioned-update",
                "readHistory": false,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "interaction": interactions(&record_interactions),
                "searchInclude": [format!("{resource_type}:patient"), format!("{resource_type}:subject")],
                "searchRevInclude": ["Provenance:target"],
                "searchParam": search_params(resource_type),
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
    resources.push(json!({
        "type": "Claim",
        "documentation": "Submitted at the provider's node by its members (POST or $submit), \
            adjudicated on the ledger in the block that commits it; the answer is its \
            ClaimResponse. The Claim itself is kept sealed at the provider and read only there.",
        "interaction": interactions(&["create", "read"]),
        "operation": [{ "name": "submit", "definition": "http://hl7.org/fhir/OperationDefinition/Claim-submit" }],
    }));
    for (resource_type, documentation, codes) in [
        (
            "ClaimResponse",
            "The ledger's adjudication of a claim, with X12 CARC/RARC reasons; searched by requestor (a provider), insurer (a payer's queue) or, for a patient, their own.",
            &["read", "search-type"][..],
        ),
        (
            "ExplanationOfBenefit",
            "A claim as its patient reads it: billed, allowed, paid, and the patient's share.",
            &["read", "search-type"][..],
        ),
        (
            "Coverage",
            "A member's coverage under a payer's plan, from the ledger.",
            &["read"][..],
        ),
        (
            "PaymentReconciliation",
            "A payer's settlements to a provider over a period, from the ledger: searched by requestor, payment-issuer and created (ge, lt).",
            &["search-type"][..],
        ),
    ] {
        resources.push(json!({
            "type": resource_type,
            "documentation": documentation,
            "interaction": interactions(codes),
        }));
    }
    let mut security = json!({
        "description": "Two ways in. SMART on FHIR (OAuth 2.0): Backend Services \
            (client_credentials with a private_key_jwt assertion signed by an enrolled member's \
            key) and App Launch (authorization code with PKCE), bearer tokens with SMART v2 \
            scopes, enforced in addition to the patient's consent. Or a signed request: \
            `Authorization: Medledger key=<hex>, ts=<ms>, sig=<hex>`, an Ed25519 signature over \
            the chain id, method, path and query, time, body hash and access headers. Reads \
            name a purpose of use (`X-Purpose-Of-Use`, or the token's), are decided by the \
            patient's consent on the ledger, and every decision is recorded as an AuditEvent.",
    });
    if let Some((token, authorize)) = config.oauth {
        security["service"] = json!([{"coding": [{
            "system": SECURITY_SERVICE_SYSTEM,
            "code": "SMART-on-FHIR",
            "display": "SMART-on-FHIR",
        }]}]);
        security["extension"] = json!([{
            "url": OAUTH_URIS,
            "extension": [
                {"url": "token", "valueUri": token},
                {"url": "authorize", "valueUri": authorize},
            ],
        }]);
    }
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
            "security": security,
            "resource": resources,
            "interaction": interactions(&["transaction", "batch"]),
        }],
    })
}

fn interactions(codes: &[&str]) -> Vec<Value> {
    codes.iter().map(|code| json!({"code": code})).collect()
}
