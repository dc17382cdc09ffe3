//! FHIR R4 JSON for medledger: parsing and checking what clients submit (single resources and
//! transaction, batch or collection Bundles), and rendering what the ledger knows (Consent,
//! AuditEvent, Provenance, CapabilityStatement, OperationOutcome, search and response Bundles).
//!
//! **Invariant:** a parsed resource's `bytes` are exactly the bytes it arrived as, a slice of the
//! caller's buffer. What is stored is those bytes with only the transaction's own references
//! resolved ([`rewrite_references`]) and, on create, the assigned id ([`with_id`]); what is served
//! adds the server's `meta` ([`served`]); everything else stays byte for byte.
//!
//! **API boundary:** this crate knows FHIR JSON and nothing of HTTP, storage or the clock: time
//! comes in as block milliseconds, and whether a referenced resource exists is asked of the
//! caller.

mod adverse_event;
mod bundle;
pub mod claim;
pub mod deidentify;
mod error;
mod genomic;
mod json;
mod outcome;
mod reference;
mod render;
mod resolve;
mod resource;
pub mod search;
mod served;
pub mod time;
mod types;
mod validate;
pub mod vcf;

pub use adverse_event::{
    AdverseEventClass, AdverseEventSeriousness, EXPECTEDNESS_URL, SERIOUSNESS_SYSTEM,
    classify_adverse_event,
};
pub use bundle::{
    BUNDLE_BYTES_MAX, BUNDLE_ENTRIES_MAX, Bundle, BundleType, Entry, Method, Request, parse_bundle,
};
pub use deidentify::{Pseudonymizer, deidentify, deidentify_bundle};
pub use error::FhirError;
pub use genomic::{
    GENOMIC_FILE_URL, GenomicFile, GenomicFormat, genomic_file, genomic_file_extension,
    genomic_format, sequence_resource,
};
pub use outcome::{Issue, IssueType, Severity, operation_outcome};
pub use reference::{ReferenceKind, classify_reference};
pub use render::*;
pub use resolve::{Item, PatientLink, logical_id, resolve_bundle};
pub use resource::{
    CATEGORY_SYSTEMS, PATIENT_FIELDS, RESOURCE_BYTES_MAX, Resource, SUBJECT_LIST_TYPES,
    parse_resource,
};
pub use served::{rewrite_references, served, with_id};
pub use types::{ID_BYTES_MAX, RESOURCE_TYPES, is_id, is_resource_type, is_uuid};
pub use validate::{VALIDATION_ISSUES_MAX, r4_schema, validate};
pub use vcf::{VCF_LINE_BYTES_MAX, VcfError, VcfStats, deidentify_vcf};

/// Runs every parser on untrusted bytes (resources, Bundles, search parameters, dates, Provenance
/// ids, Claims, VCF files) and ignores the results: the entry point for fuzzing,
/// which must never panic whatever the input.
pub fn fuzz_parse(bytes: &[u8]) {
    if let Ok(resource) = parse_resource(bytes) {
        let _ = served(resource.bytes, "id", 1, u64::MAX);
        let targets = [("urn:uuid:x".to_string(), "Patient/x".to_string())].into();
        let _ = rewrite_references(resource.bytes, &targets);
        let _ = with_id(resource.bytes, "id");
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(resource.bytes) {
            let _ = validate(&value);
            let _ = search::date_of(&resource.resource_type, &value);
            let _ = classify_adverse_event(&value);
        }
    }
    if let Ok(bundle) = parse_bundle(bytes) {
        let _ = resolve_bundle(&bundle, &|_, _| false);
    }
    // The same bytes as a search's query string.
    if let Ok(text) = std::str::from_utf8(bytes) {
        let params: Vec<(String, String)> = text
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => (pair.to_string(), String::new()),
            })
            .collect();
        for kind in [
            None,
            Some("Observation"),
            Some("Patient"),
            Some("Provenance"),
        ] {
            if let Ok(query) = search::parse_search(kind, &params)
                && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
            {
                let _ = search::matches(kind.unwrap_or("Observation"), &value, &query.filters);
            }
        }
        let _ = search::parse_date(text);
        let _ = parse_provenance_id(text);
    }
    // The same bytes as a FHIR Claim for adjudication.
    let _ = claim::parse_claim(bytes, 2);
    // The same bytes as a VCF file to de-identify (VCF data lines need not be UTF-8).
    let _ = deidentify_vcf(bytes, std::io::sink(), "sample", 2024);
}
