//! Renderers: medledger's on-chain facts written as valid FHIR R4 resources and Bundles.
//!
//! Keys, organisations, roles, records, grants and transactions have no FHIR resource of their
//! own here, so they appear as logical references (`Reference.identifier`) in the `urn:medledger:*`
//! identifier systems below. Every renderer's output is checked against the official R4 JSON
//! Schema in `tests/schema.rs`.

mod audit;
mod bundles;
mod capability;
mod consent;
mod device;
mod provenance;

pub use audit::{ResearchRelease, audit_event, research_release_event};
pub use bundles::{
    EntryResponse, OutputBundleType, ResponseKind, SearchEntry, bundle, response_bundle, searchset,
};
pub use capability::{CapabilityConfig, capability_statement};
pub use consent::consent;
pub use device::{
    DEVICE_KEY_SYSTEM, DeviceReading, PHD_NUMERIC_PROFILE, PairedDevice, device_observation,
    paired_device,
};
pub use provenance::{parse_provenance_id, provenance, provenance_id, provenance_version};

use serde_json::{Value, json};

/// Identifier system of member keys (hex Ed25519 public keys).
pub const KEY_SYSTEM: &str = "urn:medledger:key";
/// Identifier system of organisations (their on-chain ids).
pub const ORGANISATION_SYSTEM: &str = "urn:medledger:org";
/// Identifier system of member roles (`practitioner`, `pharmacy`, ...).
pub const ROLE_SYSTEM: &str = "urn:medledger:role";
/// Identifier system of records (hex opaque record ids).
pub const RECORD_SYSTEM: &str = "urn:medledger:record";
/// Identifier system of consent grants (hex grant ids).
pub const GRANT_SYSTEM: &str = "urn:medledger:grant";
/// Identifier system of ledger transactions (hex transaction ids).
pub const TX_SYSTEM: &str = "urn:medledger:tx";

/// HL7 v3 ActReason: purposes of use, and `BTG` (break the glass).
pub const ACT_REASON_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// A Coding, with its display when one is given.
fn coding(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut coding = json!({"system": system, "code": code});
    if let Some(display) = display {
        coding["display"] = json!(display);
    }
    coding
}

/// A CodeableConcept holding one Coding.
fn concept(system: &str, code: &str, display: Option<&str>) -> Value {
    json!({"coding": [coding(system, code, display)]})
}

/// A logical Reference: an identifier in `system`, with the target's type when it is known.
fn logical_reference(resource_type: Option<&str>, system: &str, value: &str) -> Value {
    let mut reference = json!({"identifier": {"system": system, "value": value}});
    if let Some(resource_type) = resource_type {
        reference["type"] = json!(resource_type);
    }
    reference
}

/// The purpose of use as a Coding in v3 ActReason.
fn purpose_coding(purpose: medledger_records::Purpose) -> Value {
    coding(ACT_REASON_SYSTEM, purpose.code(), Some(purpose.display()))
}
