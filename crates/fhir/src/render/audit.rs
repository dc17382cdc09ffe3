//! An access decision on the ledger written as an R4 AuditEvent: who read (or was refused) which
//! records of which patient, why, under which rule, and whether the glass was broken.

use medledger_crypto::{Hash, PublicKey};
use medledger_records::{AccessEvent, AccessRule};
use serde_json::{Value, json};

use super::{
    ACT_REASON_SYSTEM, KEY_SYSTEM, ORGANISATION_SYSTEM, RECORD_SYSTEM, TX_SYSTEM, coding, concept,
    logical_reference, purpose_coding,
};
use crate::time::instant;

const AUDIT_ENTITY_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/object-role";

/// An R4 AuditEvent for one access decision (a read: `action` `R`).
///
/// `outcome` is `0` (success) when every requested record was allowed and `4` (minor failure)
/// otherwise; `outcomeDesc` names the rules that decided. A break-glass read carries the security
/// label `BTG` in `meta.security` and says so first in `outcomeDesc`. The id is the hash of the
/// reader's signed request, which identifies the event.
pub fn audit_event(event: &AccessEvent, patient_reference: &str) -> Value {
    let purpose = json!([{"coding": [purpose_coding(event.purpose)]}]);
    let mut reader = json!({
        "type": concept(
            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "IRCP",
            Some("information recipient"),
        ),
        "who": logical_reference(None, KEY_SYSTEM, &event.reader.to_hex()),
        "requestor": true,
        "purposeOfUse": purpose,
    });
    if let Some(role) = event.reader_role {
        reader["role"] = json!([{"text": role.as_str()}]);
    }
    let reader_organisation = json!({
        "who": logical_reference(Some("Organization"), ORGANISATION_SYSTEM, &event.reader_org),
        "requestor": false,
    });
    let mut entities = vec![
        json!({
            "what": {"reference": patient_reference},
            "type": coding(AUDIT_ENTITY_TYPE_SYSTEM, "1", Some("Person")),
            "role": coding(OBJECT_ROLE_SYSTEM, "1", Some("Patient")),
        }),
        json!({
            "what": logical_reference(None, TX_SYSTEM, &event.tx.to_hex()),
            "type": coding(AUDIT_ENTITY_TYPE_SYSTEM, "2", Some("System Object")),
            "description": "the ledger transaction that recorded this decision",
            "detail": [{"type": "height", "valueString": event.height.to_string()}],
        }),
    ];
    for (record, rule) in &event.decisions {
        let decision = if rule.allows() { "permit" } else { "deny" };
        entities.push(json!({
            "what": logical_reference(None, RECORD_SYSTEM, &record.to_hex()),
            "type": coding(AUDIT_ENTITY_TYPE_SYSTEM, "2", Some("System Object")),
            "role": coding(OBJECT_ROLE_SYSTEM, "4", Some("Domain Resource")),
            "detail": [
                {"type": "decision", "valueString": decision},
                {"type": "rule", "valueString": rule_text(rule)},
            ],
        }));
    }
    let mut audit_event = json!({
        "resourceType": "AuditEvent",
        "id": event.request.to_hex(),
        "type": coding(
            "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "rest",
            Some("Restful Operation"),
        ),
        "subtype": [coding("http://hl7.org/fhir/restful-interaction", "read", Some("read"))],
        "action": "R",
        "recorded": instant(event.time_ms),
        "outcome": if event.allowed() { "0" } else { "4" },
        "outcomeDesc": outcome_text(event),
        "purposeOfEvent": purpose,
        "agent": [reader, reader_organisation],
        "source": {
            "site": event.custodian,
            "observer": logical_reference(Some("Organization"), ORGANISATION_SYSTEM, &event.custodian),
            "type": [coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                Some("Application Server"),
            )],
        },
        "entity": entities,
    });
    if event.break_glass {
        audit_event["meta"] = json!({
            "security": [coding(ACT_REASON_SYSTEM, "BTG", Some("break the glass"))],
        });
    }
    audit_event
}

/// A release of a patient's records to a researcher, as the research module logs it.
#[derive(Clone, Debug)]
pub struct ResearchRelease<'a> {
    pub request: &'a Hash,
    /// The release's number among the request's releases.
    pub release: u32,
    pub researcher: &'a PublicKey,
    pub researcher_org: &'a str,
    pub custodian: &'a str,
    pub height: u64,
    pub time_ms: u64,
}

/// An R4 AuditEvent for a research release of the patient's records: an export (DICOM 110106)
/// for research (HRESCH), by the custodian's node to the researcher, de-identified and sealed.
/// Its id is the request's id (first half) and the release's number.
pub fn research_release_event(release: &ResearchRelease<'_>, patient_reference: &str) -> Value {
    let research =
        json!([{"coding": [coding(ACT_REASON_SYSTEM, "HRESCH", Some("healthcare research"))]}]);
    json!({
        "resourceType": "AuditEvent",
        "id": format!("research-{}-{}", &release.request.to_hex()[..32], release.release),
        "type": coding("http://dicom.nema.org/resources/ontology/DCM", "110106", Some("Export")),
        "action": "R",
        "recorded": instant(release.time_ms),
        "outcome": "0",
        "outcomeDesc": format!(
            "released for research request {}: de-identified (HIPAA Safe Harbor) and sealed to the researcher",
            release.request.to_hex()
        ),
        "purposeOfEvent": research,
        "agent": [
            {
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "IRCP",
                    Some("information recipient"),
                ),
                "who": logical_reference(None, KEY_SYSTEM, &release.researcher.to_hex()),
                "requestor": true,
                "purposeOfUse": research,
            },
            {
                "who": logical_reference(Some("Organization"), ORGANISATION_SYSTEM, release.researcher_org),
                "requestor": false,
            },
        ],
        "source": {
            "site": release.custodian,
            "observer": logical_reference(Some("Organization"), ORGANISATION_SYSTEM, release.custodian),
            "type": [coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                Some("Application Server"),
            )],
        },
        "entity": [
            {
                "what": {"reference": patient_reference},
                "type": coding(AUDIT_ENTITY_TYPE_SYSTEM, "1", Some("Person")),
                "role": coding(OBJECT_ROLE_SYSTEM, "1", Some("Patient")),
            },
            {
                "what": logical_reference(None, RESEARCH_REQUEST_SYSTEM, &release.request.to_hex()),
                "type": coding(AUDIT_ENTITY_TYPE_SYSTEM, "2", Some("System Object")),
                "description": "the research request the release answers",
                "detail": [
                    {"type": "release", "valueString": release.release.to_string()},
                    {"type": "height", "valueString": release.height.to_string()},
                ],
            },
        ],
    })
}

const RESEARCH_REQUEST_SYSTEM: &str = "urn:medledger:research-request";

/// How one rule reads in the event's description and in each record's detail.
fn rule_text(rule: &AccessRule) -> String {
    match rule {
        AccessRule::Permit(grant) => format!("permitted by consent grant {}", grant.to_hex()),
        AccessRule::Deny(grant) => format!("denied by consent grant {}", grant.to_hex()),
        AccessRule::BreakGlass => {
            "released by break-glass emergency access, without a grant".to_owned()
        }
        AccessRule::NoConsent => "refused: no consent grant permits it".to_owned(),
        AccessRule::Erased => "refused: the patient's data was erased".to_owned(),
    }
}

/// `outcomeDesc`: the verdict, then each distinct rule with the number of records it decided.
fn outcome_text(event: &AccessEvent) -> String {
    let mut rules: Vec<(String, usize)> = Vec::new();
    for (_, rule) in &event.decisions {
        let text = rule_text(rule);
        match rules.iter_mut().find(|(known, _)| *known == text) {
            Some((_, count)) => *count += 1,
            None => rules.push((text, 1)),
        }
    }
    let verdict = if event.allowed() { "allowed" } else { "denied" };
    let mut text = String::new();
    if event.break_glass {
        text.push_str(&format!(
            "BREAK-GLASS: the reader invoked emergency access for purpose {}. ",
            event.purpose.code()
        ));
    }
    if rules.is_empty() {
        text.push_str(&format!("{verdict}: no records were requested"));
    } else {
        let parts: Vec<String> = rules
            .iter()
            .map(|(rule, count)| {
                let records = if *count == 1 { "record" } else { "records" };
                format!("{count} {records} {rule}")
            })
            .collect();
        text.push_str(&format!("{verdict}: {}", parts.join("; ")));
    }
    text
}
