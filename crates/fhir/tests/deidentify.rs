//! De-identifying a real Synthea patient leaves none of its Safe Harbor identifiers in the NDJSON
//! release, keeps the release's references resolvable, and cannot be linked across releases; and
//! de-identification never panics, whatever JSON it is given.

mod common;

use std::collections::BTreeSet;

use medledger_fhir::{IssueType, Pseudonymizer, deidentify, deidentify_bundle, validate};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const YEAR: i32 = 2025;

/// The Synthea sample, as vendored (gzipped, unchanged) with this crate's test data.
fn synthea() -> Value {
    serde_json::from_slice(&common::synthea_bundle()).expect("the Synthea bundle is JSON")
}

fn release(bundle: &Value, key: u8, reference_year: i32) -> Vec<Value> {
    deidentify_bundle(bundle, &Pseudonymizer::new([key; 32]), reference_year)
        .expect("the Synthea bundle de-identifies")
}

fn ndjson(resources: &[Value]) -> String {
    let lines: Vec<String> = resources.iter().map(Value::to_string).collect();
    lines.join("\n")
}

/// Every string in `value`, with the name of the element holding it.
fn strings<'a>(key: &'a str, value: &'a Value, out: &mut Vec<(&'a str, &'a str)>) {
    match value {
        Value::String(text) => out.push((key, text)),
        Value::Array(items) => items.iter().for_each(|item| strings(key, item, out)),
        Value::Object(object) => object
            .iter()
            .for_each(|(key, value)| strings(key, value, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Whether `text` contains `pattern`, in which `d` stands for any ASCII digit.
fn has_pattern(text: &str, pattern: &str) -> bool {
    let pattern = pattern.as_bytes();
    text.as_bytes().windows(pattern.len()).any(|window| {
        window.iter().zip(pattern).all(|(&byte, &want)| match want {
            b'd' => byte.is_ascii_digit(),
            _ => byte == want,
        })
    })
}

/// Shapes of identifiers that must not survive: full dates, SSNs, phone numbers and emails.
const PATTERNS: &[&str] = &[
    "dddd-dd-dd",
    "ddd-dd-dddd",
    "ddd-ddd-dddd",
    "(ddd) ddd-dddd",
    "@",
];

/// The Patient's identifying strings in the input: name parts, birth date, address, telecom,
/// identifier values, and the names in its extensions (mother's maiden name, birthplace city).
fn patient_identifiers(patient: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for pointer in ["/name", "/birthDate", "/address", "/telecom", "/identifier"] {
        let mut texts = Vec::new();
        if let Some(value) = patient.pointer(pointer) {
            strings("", value, &mut texts);
        }
        for (key, text) in texts {
            // The codes of these elements (`use`, `system`, `state`, ...) identify nobody.
            if matches!(
                key,
                "given" | "family" | "prefix" | "line" | "city" | "postalCode" | "value"
            ) || pointer == "/birthDate"
            {
                found.insert(text.to_owned());
            }
        }
    }
    for extension in patient["extension"].as_array().into_iter().flatten() {
        if let Some(text) = extension["valueString"].as_str() {
            found.insert(text.to_owned());
        }
        if let Some(city) = extension
            .pointer("/valueAddress/city")
            .and_then(Value::as_str)
        {
            found.insert(city.to_owned());
        }
    }
    found
}

/// No identifier of the Synthea patient, no original id, no provider name and no string shaped
/// like a date, SSN, phone number or email survives de-identification, while the input had all.
#[test]
fn synthea_release_leaks_no_identifier() {
    let bundle = synthea();
    let entries = bundle["entry"].as_array().expect("entries");
    let patient = entries
        .iter()
        .map(|entry| &entry["resource"])
        .find(|resource| resource["resourceType"] == "Patient")
        .expect("a Patient");
    let mut secrets = patient_identifiers(patient);
    assert!(
        secrets.len() >= 12,
        "too few identifiers found: {secrets:?}"
    );
    for entry in entries {
        let id = entry["resource"]["id"].as_str().expect("Synthea gives ids");
        secrets.insert(id.to_owned());
    }
    // Reference displays name practitioners and organisations.
    let mut input_strings = Vec::new();
    strings("", &bundle, &mut input_strings);
    for (key, text) in &input_strings {
        if *key == "display" && text.starts_with("Dr.") {
            secrets.insert((*text).to_owned());
        }
    }
    let input = bundle.to_string();
    for secret in &secrets {
        assert!(
            input.contains(secret.as_str()),
            "{secret:?} is not in the input"
        );
    }
    for pattern in &PATTERNS[..3] {
        assert!(
            has_pattern(&input, pattern),
            "{pattern} is not in the input"
        );
    }

    let resources = release(&bundle, 7, YEAR);
    assert_eq!(resources.len(), entries.len());
    let output = ndjson(&resources);
    assert_eq!(output.lines().count(), entries.len());
    for secret in &secrets {
        assert!(!output.contains(secret.as_str()), "{secret:?} leaked");
    }
    let mut output_strings = Vec::new();
    for resource in &resources {
        strings("", resource, &mut output_strings);
    }
    for (key, text) in &output_strings {
        for pattern in PATTERNS {
            assert!(
                !has_pattern(text, pattern),
                "{key}: {text:?} matches {pattern}"
            );
        }
        // URLs name code systems, codes and extensions, never a person or a document.
        if text.contains("://") {
            assert!(matches!(*key, "system" | "code" | "url"), "{key}: {text:?}");
        }
    }
    // The patient keeps the year of birth (75 in 2025), the gender and the coded demographics.
    let patient = &resources[0];
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(patient["birthDate"], "1950");
    assert_eq!(patient["gender"], "male");
    assert_eq!(
        patient["address"],
        json!([{"state": "MA", "country": "US"}])
    );
    assert_eq!(patient["extension"].as_array().map(Vec::len), Some(3));
}

/// Every reference in the release names another resource of the release (or a contained one),
/// so the pseudonymised records still link up.
#[test]
fn synthea_release_references_resolve() {
    let resources = release(&synthea(), 7, YEAR);
    let ids: BTreeSet<String> = resources
        .iter()
        .map(|resource| {
            format!(
                "{}/{}",
                resource["resourceType"].as_str().expect("type"),
                resource["id"].as_str().expect("id")
            )
        })
        .collect();
    assert_eq!(ids.len(), resources.len(), "ids are distinct");
    let mut resolved = 0;
    for resource in &resources {
        let contained: BTreeSet<String> = resource["contained"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|contained| Some(format!("#{}", contained["id"].as_str()?)))
            .collect();
        let mut texts = Vec::new();
        strings("", resource, &mut texts);
        for (key, reference) in texts {
            if key != "reference" {
                continue;
            }
            assert!(
                ids.contains(reference) || contained.contains(reference),
                "{reference} in {} resolves to nothing",
                resource["resourceType"]
            );
            resolved += 1;
        }
    }
    // 1101 `urn:uuid:` and 74 contained references; the 528 conditional ones are removed.
    assert_eq!(resolved, 1101 + 74);
}

/// One key gives the same release every time; another key gives ids that share nothing with it.
#[test]
fn synthea_releases_are_stable_and_unlinkable() {
    let bundle = synthea();
    let first = release(&bundle, 7, YEAR);
    assert_eq!(first, release(&bundle, 7, YEAR));
    let other = release(&bundle, 8, YEAR);
    let ids = |resources: &[Value]| -> BTreeSet<String> {
        resources
            .iter()
            .map(|resource| resource["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (first_ids, other_ids) = (ids(&first), ids(&other));
    assert_eq!(first_ids.len(), first.len());
    assert!(first_ids.is_disjoint(&other_ids));
    let other_text = ndjson(&other);
    assert!(first_ids.iter().all(|id| !other_text.contains(id.as_str())));
}

/// The patient is 91 in 2041, so a release made then drops the birth year altogether.
#[test]
fn synthea_patient_over_89_loses_birth_year() {
    let bundle = synthea();
    assert_eq!(release(&bundle, 7, 2039)[0]["birthDate"], "1950");
    let resources = release(&bundle, 7, 2041);
    assert_eq!(resources[0]["resourceType"], "Patient");
    assert_eq!(resources[0].get("birthDate"), None);
    assert!(!ndjson(&resources[..1]).contains("1950"));
}

/// Every schema issue of `resource` is a missing required element, looking into contained
/// resources, which the schema reports only as a whole.
fn assert_only_required(resource: &Value) {
    for issue in validate(resource) {
        if issue.code == IssueType::Required {
            continue;
        }
        let index = issue
            .expression
            .as_deref()
            .and_then(|expression| expression.split_once(".contained["))
            .and_then(|(_, index)| index.strip_suffix(']')?.parse::<usize>().ok());
        match index {
            Some(index) => assert_only_required(&resource["contained"][index]),
            None => panic!("{}: {issue:?}", resource["resourceType"]),
        }
    }
}

/// The release is still R4 JSON: the only schema complaints are required elements whose every
/// value was identifying (a Claim's provider named by a conditional reference, a Coverage's
/// payor named by display only), never a wrong type, a malformed value or an unknown element.
#[test]
fn synthea_release_is_r4_shaped() {
    let resources = release(&synthea(), 7, YEAR);
    for resource in &resources {
        assert_only_required(resource);
    }
    // The check bites: a year where R4 requires an instant is not valid.
    let mut observation = resources
        .iter()
        .find(|resource| resource["resourceType"] == "Observation")
        .expect("an Observation")
        .clone();
    observation["issued"] = json!("2019");
    assert!(!validate(&observation).is_empty());
}

/// HL7's example AuditEvents, Consents and Provenances (other shapes than Synthea's) come out as
/// R4 JSON too, without their full dates, and none is refused.
#[test]
fn hl7_examples_deidentify() {
    let examples = common::hl7_examples();
    assert!(examples.len() >= 20);
    for (name, bytes) in examples {
        let value: Value = serde_json::from_slice(&bytes).expect("the examples are JSON");
        let resource = deidentify(&value, &Pseudonymizer::new([7; 32]), YEAR)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_only_required(&resource);
        assert!(!has_pattern(&resource.to_string(), "dddd-dd-dd"), "{name}");
    }
}

/// JSON built from the words de-identification looks at, so random documents reach its rules.
fn fhir_json() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "resourceType",
        "Patient",
        "Observation",
        "Bundle",
        "Device",
        "id",
        "reference",
        "contained",
        "extension",
        "modifierExtension",
        "url",
        "address",
        "postalCode",
        "birthDate",
        "valueString",
        "valueAddress",
        "effectiveInstant",
        "issued",
        "code",
        "system",
        "display",
        "value",
        "unit",
        "a",
        "type",
        "identifier",
        "_birthDate",
        "urn:uuid:00000000-0000-4000-8000-000000000001",
        "#c",
        "Patient/a",
        "Patient?x=1",
        "1950-10-24",
        "2019-01-01T00:00:00Z",
        "02368",
        "99999-9",
        "entry",
        "resource",
        "fullUrl",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|number| json!(number)),
        any::<f64>().prop_map(|number| json!(number)),
        words.clone().prop_map(|word| json!(word)),
        ".{0,12}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(8, 128, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((words.clone(), inner), 0..6).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value))
                        .collect::<Map<String, Value>>(),
                )
            }),
        ]
    });
    // Most documents are rooted in a resource, so that they get past the first check.
    let resource_types = prop::sample::select(vec!["Patient", "Observation", "Bundle", "Nope"]);
    prop_oneof![
        value.clone(),
        (resource_types, value).prop_map(|(resource_type, mut value)| {
            if let Value::Object(object) = &mut value {
                object.insert("resourceType".to_owned(), json!(resource_type));
            }
            value
        }),
    ]
}

/// Whether `value` holds an empty object or array anywhere below its root.
fn has_empty(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| {
            item.as_object().is_some_and(Map::is_empty)
                || item.as_array().is_some_and(Vec::is_empty)
                || has_empty(item)
        }),
        Value::Object(object) => object.values().any(|item| {
            item.as_object().is_some_and(Map::is_empty)
                || item.as_array().is_some_and(Vec::is_empty)
                || has_empty(item)
        }),
        _ => false,
    }
}

proptest! {
    // Failures are reported with their minimal input rather than saved next to the sources.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever the JSON, de-identification returns a value or an error and never panics; what
    /// it returns is a typed resource without empty objects, arrays or full dates.
    #[test]
    fn never_panics(value in fhir_json()) {
        let pseudonymizer = Pseudonymizer::new([1; 32]);
        if let Ok(resource) = deidentify(&value, &pseudonymizer, YEAR) {
            prop_assert!(resource["resourceType"].is_string());
            prop_assert!(!has_empty(&resource), "{resource}");
            prop_assert!(!has_pattern(&resource.to_string(), "dddd-dd-dd"), "{resource}");
            // What comes out is de-identified already, so it goes through again.
            prop_assert!(deidentify(&resource, &pseudonymizer, YEAR).is_ok());
        }
        if let Ok(resources) = deidentify_bundle(&value, &pseudonymizer, YEAR) {
            for resource in resources {
                prop_assert!(!has_empty(&resource), "{resource}");
            }
        }
    }
}
