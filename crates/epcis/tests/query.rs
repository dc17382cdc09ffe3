//! Query responses: `query_document` renders an `EPCISQueryDocument` that the EPCIS schema
//! accepts, holding the events exactly as they were captured, with their hashes unchanged.

use std::path::{Path, PathBuf};

use medledger_epcis::{Document, DocumentKind, event_with_context, parse_document, query_document};
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

fn load(path: &str) -> Document {
    let bytes = std::fs::read(data(path)).expect("example file");
    parse_document(&bytes).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Renders `captured` (events with the context of the document each came in) into a query
/// document, checks it against the schema by parsing it back, and checks that every event comes
/// back as it went in, with the same hash.
fn check(captured: &[(Value, String)], subscription: Option<&str>) -> Value {
    let events: Vec<Value> = captured.iter().map(|(event, _)| event.clone()).collect();
    let rendered = query_document(&events, "SimpleEventQuery", subscription);
    let bytes = serde_json::to_vec(&rendered).expect("serialises");
    let parsed = parse_document(&bytes).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(parsed.kind, DocumentKind::QueryDocument);
    assert_eq!(parsed.events.len(), captured.len());
    for (event, (json, hash)) in parsed.events.iter().zip(captured) {
        assert_eq!(&event.json, json);
        assert_eq!(&event.hash, hash, "{}", event.pre_hash);
    }
    let results = &rendered["epcisBody"]["queryResults"];
    assert_eq!(results["queryName"], "SimpleEventQuery");
    assert_eq!(results["subscriptionID"].as_str(), subscription);
    rendered
}

#[test]
fn renders_the_shape_of_gs1s_example() {
    let document = load("JSON/Example_9.6.1-ObjectEvent.jsonld");
    let captured: Vec<(Value, String)> = document
        .events
        .iter()
        .map(|event| {
            (
                event_with_context(&event.json, &document.context),
                event.hash.clone(),
            )
        })
        .collect();
    let rendered = check(&captured, Some("32d2aec1-a6d2-46d9-900a-24124288cce1"));
    // The members GS1's EPCISQueryDocument example has, bar id and creationDate.
    let example: Value = serde_json::from_slice(
        &std::fs::read(data("JSON/EPCISQueryDocument.jsonld")).expect("example"),
    )
    .expect("json");
    for pointer in [
        "/type",
        "/schemaVersion",
        "/epcisBody/queryResults/queryName",
    ] {
        assert_eq!(
            rendered.pointer(pointer),
            example.pointer(pointer),
            "{pointer}"
        );
    }
    assert!(rendered["@context"].is_array());
    assert!(rendered.get("creationDate").is_none());
}

#[test]
fn renders_every_captured_example_event() {
    let mut captured = Vec::new();
    for path in [
        "JSON/Example_9.6.1-ObjectEvent.jsonld",
        "JSON/Example_9.6.3-AggregationEvent.jsonld",
        "JSON/Example_9.6.4-TransformationEvent.jsonld",
        "JSON/Example-TransactionEvents-2020_07_03y.jsonld",
        "JSON/AssociationEvent/AssociationEvent-a.jsonld",
        "JSON/WithSensorData/SensorDataExample1.jsonld",
        "JSON/WithErrorDeclaration/ErrorDeclarationAndCorrectiveEvent.jsonld",
        "JSON/WithFullCombinationOfFields/object_event_all_possible_fields.jsonld",
        "JSON/WithFullCombinationOfFields/transformation_event_all_possible_fields.jsonld",
    ] {
        let document = load(path);
        for event in &document.events {
            captured.push((
                event_with_context(&event.json, &document.context),
                event.hash.clone(),
            ));
        }
    }
    check(&captured, None);
}

#[test]
fn an_empty_result_is_valid() {
    check(&[], None);
}

#[test]
fn a_context_already_on_the_event_is_kept() {
    let event = serde_json::json!({"@context": ["https://example.com/own"], "type": "ObjectEvent"});
    let with = event_with_context(&event, &serde_json::json!(["https://example.com/doc"]));
    assert_eq!(with, event);
    let none = event_with_context(&serde_json::json!({"type": "ObjectEvent"}), &Value::Null);
    assert!(none.get("@context").is_none());
}
