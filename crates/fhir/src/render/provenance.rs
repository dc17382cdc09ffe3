//! A record's history on the ledger written as R4 Provenance: one Provenance per version.
//!
//! One per version, rather than one covering them all, because R4 Provenance describes one
//! activity: with several targets and several authors in one resource, a reader could no longer
//! tell who wrote which version. Each one targets `Type/id/_history/N`, names the author (on
//! behalf of the custodian) and the custodian, says CREATE or UPDATE, and for an update points at
//! the version it revised.

use medledger_crypto::hash_tagged;
use medledger_records::RecordVersion;
use serde_json::{Value, json};

use super::{KEY_SYSTEM, ORGANISATION_SYSTEM, concept, logical_reference};
use crate::time::instant;

const PARTICIPANT_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
const DATA_OPERATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-DataOperation";

/// One Provenance per version of the record `target_reference` (`Type/id`), in the order given.
pub fn provenance(
    target_reference: &str,
    versions: &[RecordVersion],
    custodian: &str,
) -> Vec<Value> {
    versions
        .iter()
        .map(|version| provenance_version(target_reference, version, custodian))
        .collect()
}

/// The Provenance of one version of the record `target_reference` (`Type/id`).
pub fn provenance_version(
    target_reference: &str,
    version: &RecordVersion,
    custodian: &str,
) -> Value {
    let number = version.version;
    let activity = if number <= 1 { "CREATE" } else { "UPDATE" };
    let custodian_reference =
        logical_reference(Some("Organization"), ORGANISATION_SYSTEM, custodian);
    let mut rendered = json!({
        "resourceType": "Provenance",
        "id": provenance_id(target_reference, number),
        "target": [{"reference": format!("{target_reference}/_history/{number}")}],
        "recorded": instant(version.time_ms),
        "activity": concept(DATA_OPERATION_SYSTEM, activity, None),
        "agent": [
            {
                "type": concept(PARTICIPANT_TYPE_SYSTEM, "author", Some("Author")),
                "who": logical_reference(None, KEY_SYSTEM, &version.author.to_hex()),
                "onBehalfOf": custodian_reference,
            },
            {
                "type": concept(PARTICIPANT_TYPE_SYSTEM, "custodian", Some("Custodian")),
                "who": custodian_reference,
            },
        ],
    });
    if number > 1 {
        rendered["entity"] = json!([{
            "role": "revision",
            "what": {"reference": format!("{target_reference}/_history/{}", number - 1)},
        }]);
    }
    rendered
}

/// The id of the Provenance of version `version` of `target_reference`: a tagged hash, so that it
/// is a valid FHIR id for any target and the same on every node.
pub fn provenance_id(target_reference: &str, version: u32) -> String {
    hash_tagged(
        b"medledger/fhir/provenance",
        &[target_reference.as_bytes(), &version.to_le_bytes()],
    )
    .to_hex()
}
