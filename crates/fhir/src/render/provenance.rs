//! A record's history on the ledger written as R4 Provenance: one Provenance per version.
//!
//! One per version, rather than one covering them all, because R4 Provenance describes one
//! activity: with several targets and several authors in one resource, a reader could no longer
//! tell who wrote which version. Each one targets `Type/id/_history/N`, names the author (on
//! behalf of the custodian) and the custodian, says CREATE or UPDATE, and for an update points at
//! the version it revised.

use medledger_crypto::Hash;
use medledger_records::RecordVersion;
use serde_json::{Value, json};

use super::{KEY_SYSTEM, ORGANISATION_SYSTEM, concept, logical_reference};
use crate::time::instant;

const PARTICIPANT_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/provenance-participant-type";
const DATA_OPERATION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-DataOperation";

/// One Provenance per version of the record `record`, known to FHIR as `target_reference`
/// (`Type/id`), in the order given.
pub fn provenance(
    target_reference: &str,
    record: &Hash,
    versions: &[RecordVersion],
    custodian: &str,
) -> Vec<Value> {
    versions
        .iter()
        .map(|version| provenance_version(target_reference, record, version, custodian))
        .collect()
}

/// The Provenance of one version of the record `record`, known to FHIR as `target_reference`.
pub fn provenance_version(
    target_reference: &str,
    record: &Hash,
    version: &RecordVersion,
    custodian: &str,
) -> Value {
    let number = version.version;
    let activity = if number <= 1 { "CREATE" } else { "UPDATE" };
    let custodian_reference =
        logical_reference(Some("Organization"), ORGANISATION_SYSTEM, custodian);
    let mut rendered = json!({
        "resourceType": "Provenance",
        "id": provenance_id(record, number),
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

/// The id of the Provenance of version `version` of record `record`: the opaque record id in
/// base58 (letters and digits only, at most 44 of them), `-`, and the version. It is a valid FHIR
/// id, the same on every node, and names what it describes, so `GET Provenance/[id]` needs no
/// index.
pub fn provenance_id(record: &Hash, version: u32) -> String {
    format!("{}-{version}", bs58::encode(record.0).into_string())
}

/// The record and version a Provenance id names, if it is one.
pub fn parse_provenance_id(id: &str) -> Option<(Hash, u32)> {
    let (record, version) = id.rsplit_once('-')?;
    let bytes = bs58::decode(record).into_vec().ok()?;
    let record = Hash(<[u8; 32]>::try_from(bytes).ok()?);
    let version: u32 = version.parse().ok()?;
    (provenance_id(&record, version) == id).then_some((record, version))
}
