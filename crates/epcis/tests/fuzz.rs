//! Nothing panics on hostile input: arbitrary bytes, arbitrary EPCIS-flavoured JSON (hashed
//! directly, without the schema in front), GS1's examples with random byte edits, and identifier
//! strings pieced together from EPC URN and Digital Link fragments. (The cargo-fuzz target
//! `fuzz/fuzz_targets/epcis_parse.rs` does the same with coverage guidance, on nightly.)

use medledger_epcis::{Epc, event_hash_id, normalise_to_digital_link, parse_document};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const SEED: &str = include_str!("data/JSON/WithSensorData/SensorDataExample1.jsonld");

/// JSON built from the names and values the hash and typed view look at.
fn epcis_json() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "type",
        "ObjectEvent",
        "eventTime",
        "2024-01-01T00:00:00.5+01:00",
        "eventTimeZoneOffset",
        "epcList",
        "quantityList",
        "epcClass",
        "quantity",
        "childEPCs",
        "bizStep",
        "shipping",
        "disposition",
        "readPoint",
        "id",
        "bizTransactionList",
        "bizTransaction",
        "source",
        "sourceList",
        "destination",
        "sensorElementList",
        "sensorReport",
        "sensorMetadata",
        "time",
        "value",
        "uom",
        "FAH",
        "Temperature",
        "ilmd",
        "cbvmda:lotNumber",
        "example:x",
        "{",
        "/}",
        "@context",
        "errorDeclaration",
        "example:ignoreFields",
        "urn:epc:id:sgtin:0614141.107346.2017",
        "https://id.gs1.org/01/09780345418913/10/1/21/2",
        "",
        "1e-9",
        "-0",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        words.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((words.clone(), inner), 0..6).prop_map(|members| Value::Object(
                members
                    .into_iter()
                    .map(|(key, value)| (key.to_owned(), value))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

/// Parses `bytes`; whatever is accepted has well-formed hash IDs that can be recomputed without
/// panicking.
fn check(bytes: &[u8]) {
    if let Ok(document) = parse_document(bytes) {
        for event in &document.events {
            assert!(event.hash.starts_with("ni:///sha-256;"));
            let _ = event_hash_id(&event.json, &document.context);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes);
    }

    #[test]
    fn epcis_flavoured_json(event in epcis_json(), context in epcis_json()) {
        let _ = event_hash_id(&event, &context);
        let document = json!({
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", context],
            "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2024-01-01T00:00:00Z",
            "epcisBody": {"eventList": [event]},
        });
        check(document.to_string().as_bytes());
    }

    #[test]
    fn edited_examples(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6)) {
        let mut bytes = SEED.as_bytes().to_vec();
        for (position, byte, kind) in edits {
            let at = position.index(bytes.len() + 1);
            match kind {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => { bytes.remove(at); }
                _ if at < bytes.len() => bytes[at] = byte,
                _ => bytes.push(byte),
            }
        }
        check(&bytes);
    }

    #[test]
    fn identifier_fragments(parts in prop::collection::vec(prop::sample::select(vec![
        "urn:epc:id:", "urn:epc:idpat:", "urn:epc:class:lgtin:", "sgtin:", "sscc:", "sgln:", "grai:",
        "gdti:", "cpi:", "itip:", "upui:", "pgln:", "https://", "http://", "id.gs1.org", "/01/",
        "/00/", "/414/", "/8006/", "/10/", "/21/", "/22/", "/254/", "/gtin/", "?a=b", "#", ".",
        "..", "*", "%2F", "%", "0614141", "107346", "12345678901234", "9", "ß", "/",
    ]), 0..10)) {
        let text: String = parts.concat();
        let epc = Epc::parse(&text);
        let _ = epc.to_digital_link();
        for length in [0, 6, 9, 12, 13] {
            let _ = epc.to_urn(length);
        }
        if let Some(link) = normalise_to_digital_link(&text) {
            prop_assert!(link.starts_with("https://id.gs1.org/"));
        }
    }
}

/// The seed is a valid document, so edits start from something accepted.
#[test]
fn the_seed_is_accepted() {
    assert!(parse_document(SEED.as_bytes()).is_ok());
}
