//! The parsers never panic: on arbitrary bytes, on arbitrary FHIR-flavoured JSON, and on valid
//! Bundles with random byte edits. Whatever they accept keeps its exact bytes.

use medledger_fhir::{fuzz_parse, parse_bundle, parse_resource, resolve_bundle};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// JSON values built from the words the parsers look at, so that random documents reach deep
/// into the checks rather than stopping at `resourceType`.
fn fhir_json() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "resourceType",
        "Bundle",
        "Patient",
        "Observation",
        "Account",
        "id",
        "type",
        "transaction",
        "batch",
        "collection",
        "entry",
        "fullUrl",
        "resource",
        "request",
        "method",
        "POST",
        "PUT",
        "url",
        "subject",
        "patient",
        "beneficiary",
        "reference",
        "category",
        "coding",
        "code",
        "system",
        "laboratory",
        "Patient/a",
        "Observation/a/_history/1",
        "urn:uuid:00000000-0000-4000-8000-000000000001",
        "#c",
        "Patient?identifier=x",
        "http://x.org/Patient/a",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|number| json!(number)),
        words.clone().prop_map(|word| json!(word)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
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
    })
}

/// A small valid transaction Bundle to mutate.
const SEED_BUNDLE: &str = r##"{"resourceType": "Bundle", "type": "transaction", "entry": [
  {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
   "resource": {"resourceType": "Patient", "id": "p"},
   "request": {"method": "POST", "url": "Patient"}},
  {"resource": {"resourceType": "Observation", "id": "o", "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"},
                "category": [{"coding": [{"code": "laboratory"}]}], "performer": [{"reference": "#x"}]},
   "request": {"method": "PUT", "url": "Observation/o"}}]}"##;

/// Whatever a parser accepts, its bytes are a slice of the input.
fn check_accepted(bytes: &[u8]) {
    fuzz_parse(bytes);
    if let Ok(resource) = parse_resource(bytes) {
        assert_eq!(resource.bytes, bytes);
    }
    if let Ok(bundle) = parse_bundle(bytes) {
        let range = bytes.as_ptr_range();
        for entry in &bundle.entries {
            assert!(range.contains(&entry.resource.bytes.as_ptr()));
            assert!(parse_resource(entry.resource.bytes).is_ok());
        }
        let _ = resolve_bundle(&bundle, &|_, id| id.len() % 2 == 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Arbitrary bytes never make `parse_resource` (or any parser) panic.
    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_resource(&bytes);
        check_accepted(&bytes);
    }

    /// Arbitrary JSON made of FHIR words, alone or as a Bundle's entries, never makes a parser
    /// panic.
    #[test]
    fn fhir_flavoured_json(value in fhir_json(), entries in prop::collection::vec(fhir_json(), 0..4)) {
        check_accepted(value.to_string().as_bytes());
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        check_accepted(bundle.to_string().as_bytes());
    }

    /// A valid Bundle with a few random byte edits never makes a parser panic.
    #[test]
    fn edited_bundles(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6)) {
        let mut bytes = SEED_BUNDLE.as_bytes().to_vec();
        for (position, byte, kind) in edits {
            let at = position.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => { bytes.remove(at); }
                _ if at < bytes.len() => bytes[at] = byte,
                _ => bytes.push(byte),
            }
        }
        check_accepted(&bytes);
    }
}

/// The seed Bundle itself resolves, so the edits start from something the parsers accept.
#[test]
fn seed_bundle_resolves() {
    let bundle = parse_bundle(SEED_BUNDLE.as_bytes()).expect("seed parses");
    let items = resolve_bundle(&bundle, &|_, _| false).expect("seed resolves");
    assert_eq!(items.len(), 2);
}
