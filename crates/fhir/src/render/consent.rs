//! A consent grant on the ledger written as an R4 Consent.
//!
//! The root provision carries the grant's period and no `type`: R4 defines `Consent.provision.type`
//! as "not permitted in root rule, required in all nested rules". The base rule is instead stated
//! by `policyRule` v3-ActCode `OPTIN`: nothing is shared unless a nested provision permits it.
//! Each medledger provision is one nested provision with its type, in the grant's order. Where
//! medledger's semantics differ from FHIR's nesting (a deny anywhere wins over every permit), the
//! ledger's decision is the one that counts; this rendering is for reading.

use medledger_records::{ConsentEntry, Grantee, Provision, ProvisionKind, Scope};
use serde_json::{Value, json};

use super::{
    GRANT_SYSTEM, KEY_SYSTEM, ORGANISATION_SYSTEM, RECORD_SYSTEM, ROLE_SYSTEM, coding, concept,
    logical_reference, purpose_coding,
};
use crate::time::{date_time, instant};

const OBSERVATION_CATEGORY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";
const CONDITION_CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
/// The categories of `RECORD_CATEGORIES` that come from HL7's condition-category; the rest come
/// from observation-category.
const CONDITION_CATEGORIES: [&str; 2] = ["problem-list-item", "encounter-diagnosis"];

/// An R4 Consent for a grant, as of block time `now_ms`.
///
/// `status` is `inactive` once the grant is revoked or its period has ended, and `active`
/// otherwise, including before its period starts (the period says when it applies).
pub fn consent(entry: &ConsentEntry, patient_reference: &str, now_ms: u64) -> Value {
    let grant = &entry.grant;
    let ended = grant.end_ms.is_some_and(|end| end <= now_ms);
    let status = if entry.revoked_at.is_some() || ended {
        "inactive"
    } else {
        "active"
    };
    let mut period = json!({"start": date_time(grant.start_ms)});
    if let Some(end_ms) = grant.end_ms {
        period["end"] = json!(date_time(end_ms));
    }
    let provisions: Vec<Value> = grant.provisions.iter().map(provision).collect();
    let mut root = json!({"period": period});
    if !provisions.is_empty() {
        root["provision"] = json!(provisions);
    }
    let id = entry.id.to_hex();
    json!({
        "resourceType": "Consent",
        "id": id,
        "meta": {
            "lastUpdated": instant(entry.revoked_time_ms.unwrap_or(entry.granted_time_ms)),
        },
        "identifier": [{"system": GRANT_SYSTEM, "value": id}],
        "status": status,
        "scope": concept(
            "http://terminology.hl7.org/CodeSystem/consentscope",
            "patient-privacy",
            Some("Privacy Consent"),
        ),
        "category": [concept("http://loinc.org", "59284-0", None)],
        "patient": {"reference": patient_reference},
        "dateTime": date_time(entry.granted_time_ms),
        "performer": [logical_reference(None, KEY_SYSTEM, &entry.signed_by.to_hex())],
        "policyRule": concept(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "OPTIN",
            Some("opt-in"),
        ),
        "provision": root,
    })
}

/// One nested provision.
fn provision(provision: &Provision) -> Value {
    let kind = match provision.kind {
        ProvisionKind::Permit => "permit",
        ProvisionKind::Deny => "deny",
    };
    let mut rendered = json!({"type": kind});
    if !provision.actors.is_empty() {
        let actors: Vec<Value> = provision.actors.iter().map(actor).collect();
        rendered["actor"] = json!(actors);
    }
    if !provision.purposes.is_empty() {
        let purposes: Vec<Value> = provision
            .purposes
            .iter()
            .copied()
            .map(purpose_coding)
            .collect();
        rendered["purpose"] = json!(purposes);
    }
    let mut classes = Vec::new();
    let mut codes = Vec::new();
    let mut data = Vec::new();
    for scope in &provision.scope {
        match scope {
            Scope::ResourceType(resource_type) => classes.push(coding(
                "http://hl7.org/fhir/resource-types",
                resource_type,
                None,
            )),
            Scope::Category(category) => codes.push(category_concept(category)),
            Scope::Record(record) => data.push(json!({
                "meaning": "instance",
                "reference": logical_reference(None, RECORD_SYSTEM, &record.to_hex()),
            })),
        }
    }
    for (field, values) in [("class", classes), ("code", codes), ("data", data)] {
        if !values.is_empty() {
            rendered[field] = json!(values);
        }
    }
    rendered
}

/// `Consent.provision.actor`: R4 requires both a role and a reference. Every actor of a grant is
/// a recipient of the patient's information.
fn actor(grantee: &Grantee) -> Value {
    let reference = match grantee {
        Grantee::Key(key) => logical_reference(None, KEY_SYSTEM, &key.to_hex()),
        Grantee::Organisation(organisation) => {
            logical_reference(Some("Organization"), ORGANISATION_SYSTEM, organisation)
        }
        Grantee::Role(role) => logical_reference(None, ROLE_SYSTEM, role.as_str()),
    };
    json!({
        "role": concept(
            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "IRCP",
            Some("information recipient"),
        ),
        "reference": reference,
    })
}

/// A record category as a CodeableConcept in the HL7 code system it comes from (text only for a
/// code outside `RECORD_CATEGORIES`, which the ledger should never hold).
fn category_concept(category: &str) -> Value {
    if CONDITION_CATEGORIES.contains(&category) {
        concept(CONDITION_CATEGORY_SYSTEM, category, None)
    } else if medledger_records::RECORD_CATEGORIES.contains(&category) {
        concept(OBSERVATION_CATEGORY_SYSTEM, category, None)
    } else {
        json!({"text": category})
    }
}
