//! Real FHIR: every HL7 R4 example parses as a resource, and Synthea's patient Bundle parses,
//! keeps every resource's exact bytes, and resolves with every entry attributed to its patient.

mod common;

use medledger_fhir::{
    BundleType, Method, PatientLink, ReferenceKind, classify_reference, parse_bundle,
    parse_resource, resolve_bundle,
};
use serde_json::Value;

/// Every HL7 example resource parses, keeps its bytes, and reports its references in order.
#[test]
fn hl7_examples_parse() {
    let examples = common::hl7_examples();
    assert_eq!(examples.len(), 25);
    for (name, bytes) in &examples {
        let resource = parse_resource(bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(resource.bytes, bytes.as_slice(), "{name}");
        let value: Value = serde_json::from_slice(bytes).expect("example is JSON");
        assert_eq!(
            value["resourceType"],
            resource.resource_type.as_str(),
            "{name}"
        );
        assert_eq!(value["id"].as_str(), resource.id.as_deref(), "{name}");
        let mut expected = Vec::new();
        collect_references(&value, &mut expected);
        let mut got = resource.references.clone();
        // serde_json's Value sorts object keys, so compare as multisets; document order is
        // covered by the unit tests.
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "{name}");
        for reference in &resource.references {
            assert_ne!(
                classify_reference(reference),
                ReferenceKind::Malformed,
                "{name}: {reference}"
            );
        }
    }
    let consent = examples
        .iter()
        .find(|(name, _)| name == "consent-example-notThem.json")
        .map(|(_, bytes)| parse_resource(bytes).expect("parses"));
    assert_eq!(
        consent.and_then(|consent| consent.patient),
        Some("Patient/f001".to_owned())
    );
}

fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                if let (true, Value::String(reference)) = (key == "reference", value) {
                    out.push(reference.clone());
                }
                collect_references(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
        _ => {}
    }
}

/// Synthea's Bundle parses with all 314 entries; each entry's bytes are a slice of the input
/// that parses to the same value as the entry's resource.
#[test]
fn synthea_bundle_parses_with_exact_bytes() {
    let input = common::synthea_bundle();
    let bundle = parse_bundle(&input).expect("Synthea bundle parses");
    assert_eq!(bundle.bundle_type, BundleType::Transaction);
    assert_eq!(bundle.entries.len(), 314);
    let whole: Value = serde_json::from_slice(&input).expect("JSON");
    let input_range = input.as_ptr_range();
    let mut end_previous = 0;
    for (index, entry) in bundle.entries.iter().enumerate() {
        let bytes = entry.resource.bytes;
        // The bytes are a slice of the input itself, in order, not a copy.
        assert!(input_range.contains(&bytes.as_ptr()), "entry {index}");
        let start = bytes.as_ptr() as usize - input.as_ptr() as usize;
        assert_eq!(&input[start..start + bytes.len()], bytes, "entry {index}");
        assert!(start >= end_previous, "entry {index}");
        end_previous = start + bytes.len();
        let parsed: Value = serde_json::from_slice(bytes).expect("entry bytes are JSON");
        assert_eq!(parsed, whole["entry"][index]["resource"], "entry {index}");
        let request = entry
            .request
            .as_ref()
            .expect("transaction entries have requests");
        assert_eq!(request.method, Method::Post, "entry {index}");
        assert_eq!(request.url, entry.resource.resource_type, "entry {index}");
    }
}

/// Synthea's Bundle resolves: all 314 entries attributed to its one Patient, conditional
/// references (`Practitioner?identifier=...`) left alone, ids taken from the resources.
#[test]
fn synthea_bundle_resolves() {
    let input = common::synthea_bundle();
    let bundle = parse_bundle(&input).expect("parses");
    let asked = std::cell::RefCell::new(Vec::new());
    let stored = |resource_type: &str, id: &str| {
        asked.borrow_mut().push(format!("{resource_type}/{id}"));
        false
    };
    let items = resolve_bundle(&bundle, &stored).expect("resolves");
    assert_eq!(items.len(), 314);
    assert!(
        asked.borrow().is_empty(),
        "nothing outside the bundle: {:?}",
        asked.borrow()
    );
    let patient = bundle
        .entries
        .iter()
        .position(|entry| entry.resource.resource_type == "Patient")
        .expect("one patient");
    for (index, item) in items.iter().enumerate() {
        assert_eq!(item.index, index);
        let expected = if index == patient {
            PatientLink::Own
        } else {
            PatientLink::Entry(patient)
        };
        assert_eq!(item.patient, expected, "entry {index}");
        assert_eq!(item.id, item.entry.resource.id, "entry {index}");
        assert!(item.id.is_some(), "entry {index}");
    }
    let conditional = bundle
        .entries
        .iter()
        .flat_map(|entry| &entry.resource.references)
        .filter(|reference| reference.starts_with("Practitioner?identifier="))
        .count();
    assert_eq!(conditional, 277);
    let categories: std::collections::BTreeSet<_> = bundle
        .entries
        .iter()
        .filter_map(|entry| entry.resource.category.as_deref())
        .collect();
    assert_eq!(
        categories.into_iter().collect::<Vec<_>>(),
        [
            "encounter-diagnosis",
            "exam",
            "laboratory",
            "survey",
            "vital-signs"
        ]
    );
}
