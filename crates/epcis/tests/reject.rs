//! What capture refuses, and that every refusal says why: bad JSON, documents beyond the size and
//! nesting bounds, schema violations, and events the ledger has no meaning for.

use medledger_epcis::{DEPTH_MAX, DOCUMENT_BYTES_MAX, EpcisError, parse_document};
use serde_json::{Value, json};

/// A valid one-event capture document to break in one place at a time.
fn valid() -> Value {
    json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-01-01T00:00:00Z",
        "epcisBody": {"eventList": [{
            "type": "ObjectEvent",
            "eventTime": "2024-01-01T10:00:00.000+01:00",
            "eventTimeZoneOffset": "+01:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
            "action": "OBSERVE",
            "bizStep": "dispensing",
            "disposition": "dispensed"
        }]}
    })
}

/// `document` with its only event changed by `edit`.
fn with_event(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let mut document = valid();
    if let Some(event) = document["epcisBody"]["eventList"][0].as_object_mut() {
        edit(event);
    }
    serde_json::to_vec(&document).expect("serialises")
}

/// Parses `bytes`, expecting a refusal for which `expected` holds, with a non-empty message.
fn check(bytes: &[u8], expected: impl Fn(&EpcisError) -> bool) -> EpcisError {
    let error = match parse_document(bytes) {
        Ok(document) => panic!("accepted: {:?}", document.header),
        Err(error) => error,
    };
    assert!(expected(&error), "unexpected refusal: {error:?}");
    assert!(!error.to_string().is_empty());
    error
}

/// The schema reasons of a refusal that must come from the schema.
fn schema_reasons(bytes: &[u8]) -> Vec<String> {
    match check(bytes, |error| matches!(error, EpcisError::Schema { .. })) {
        EpcisError::Schema { reasons } => reasons,
        _ => Vec::new(),
    }
}

#[test]
fn the_baseline_is_accepted() {
    let document = parse_document(&serde_json::to_vec(&valid()).expect("json")).expect("valid");
    assert_eq!(document.events[0].biz_step.as_deref(), Some("dispensing"));
    assert_eq!(document.events[0].disposition.as_deref(), Some("dispensed"));
    // 2024-01-01T09:00:00Z
    assert_eq!(document.events[0].event_time_ms, 1_704_099_600_000);
}

#[test]
fn missing_event_time() {
    let reasons = schema_reasons(&with_event(|event| {
        event.remove("eventTime");
    }));
    assert!(
        reasons.iter().any(|reason| reason.contains("eventTime")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().all(|reason| reason.starts_with('/')),
        "{reasons:?}"
    );
}

#[test]
fn event_time_that_is_no_time() {
    let reasons = schema_reasons(&with_event(|event| {
        event.insert("eventTime".to_owned(), json!("yesterday"));
    }));
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("/epcisBody/eventList/0/eventTime")),
        "{reasons:?}"
    );
}

#[test]
fn unknown_event_type() {
    let reasons = schema_reasons(&with_event(|event| {
        event.insert("type".to_owned(), json!("FooEvent"));
    }));
    assert!(!reasons.is_empty());
    // An extension event type is valid EPCIS, but not something the ledger can record.
    let error = check(
        &with_event(|event| {
            event.insert("type".to_owned(), json!("https://example.com/RecallEvent"));
        }),
        |error| matches!(error, EpcisError::UnsupportedEventType { .. }),
    );
    assert_eq!(
        error.to_string(),
        "`/epcisBody/eventList/0/type`: event type \"https://example.com/RecallEvent\" is not supported; expected ObjectEvent, AggregationEvent, TransactionEvent, TransformationEvent or AssociationEvent"
    );
}

#[test]
fn action_outside_its_enumeration() {
    let reasons = schema_reasons(&with_event(|event| {
        event.insert("action".to_owned(), json!("UPDATE"));
    }));
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("/epcisBody/eventList/0/action")),
        "{reasons:?}"
    );
}

#[test]
fn every_reason_is_reported_up_to_the_cap() {
    let reasons = schema_reasons(&with_event(|event| {
        event.remove("eventTime");
        event.insert("action".to_owned(), json!("UPDATE"));
    }));
    assert!(reasons.len() >= 2, "{reasons:?}");
    let many: Vec<Value> = (0..200)
        .map(|_| json!({"type": "ObjectEvent", "action": "UPDATE"}))
        .collect();
    let mut document = valid();
    document["epcisBody"]["eventList"] = Value::Array(many);
    let reasons = schema_reasons(&serde_json::to_vec(&document).expect("json"));
    assert_eq!(reasons.len(), medledger_epcis::SCHEMA_REASONS_MAX);
}

#[test]
fn document_without_required_members() {
    let mut document = valid();
    if let Some(root) = document.as_object_mut() {
        root.remove("schemaVersion");
    }
    let reasons = schema_reasons(&serde_json::to_vec(&document).expect("json"));
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("schemaVersion")),
        "{reasons:?}"
    );
}

#[test]
fn not_json() {
    for bytes in [
        &b""[..],
        b"not json",
        b"{\"type\": \"EPCISDocument\",}",
        b"{\"a\": 1} trailing",
        b"\xff\xfe{}",
        b"{\"a\": \"\\ud800\"}",
    ] {
        let error = check(bytes, |error| matches!(error, EpcisError::Json { .. }));
        assert!(
            error.to_string().starts_with("not valid JSON at line"),
            "{error}"
        );
    }
}

#[test]
fn too_deep() {
    let depth = DEPTH_MAX + 1;
    let mut document = valid();
    let nested = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    document["epcisBody"]["eventList"][0]["example:deep"] = json!("placeholder");
    let text = serde_json::to_string(&document)
        .expect("json")
        .replace("\"placeholder\"", &nested);
    check(text.as_bytes(), |error| {
        matches!(error, EpcisError::TooDeep { .. })
    });
}

#[test]
fn too_large() {
    let bytes = vec![b' '; DOCUMENT_BYTES_MAX + 1];
    check(
        &bytes,
        |error| matches!(error, EpcisError::TooLarge { got, max } if *got == DOCUMENT_BYTES_MAX + 1 && *max == DOCUMENT_BYTES_MAX),
    );
}

#[test]
fn numbers_beyond_a_double() {
    let text = serde_json::to_string(&valid()).expect("json").replace(
        "\"type\":\"ObjectEvent\"",
        "\"type\":\"ObjectEvent\",\"example:huge\":1e400",
    );
    assert!(text.contains("1e400"));
    check(text.as_bytes(), |error| {
        matches!(error, EpcisError::Json { .. })
    });
}
