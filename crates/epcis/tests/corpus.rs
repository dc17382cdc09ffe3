//! GS1's own EPCIS 2.0 JSON-LD examples (gs1/EPCIS, vendored in `tests/data/JSON` and
//! `tests/data/JSON-simple-context`): every example is accepted, every event keeps every field it
//! arrived with, and the typed view reads what the examples say.

use std::path::{Path, PathBuf};

use medledger_epcis::{
    Action, Document, DocumentKind, Epc, EpcisError, EventKind, QuantityList, event_hash_id,
    parse_document,
};
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// Every `.jsonld` file under `folder`, sorted.
fn files(folder: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable folder") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "jsonld") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&data(folder), &mut out);
    out.sort();
    out
}

fn load(path: &str) -> Document {
    let bytes = std::fs::read(data(path)).expect("example file");
    parse_document(&bytes).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The event objects of a document read plainly with serde_json.
fn raw_events(document: &Value) -> Vec<Value> {
    let list = match document["type"].as_str() {
        Some("EPCISDocument") => &document["epcisBody"]["eventList"],
        Some("EPCISQueryDocument") => {
            &document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        }
        _ => return vec![document.clone()],
    };
    list.as_array().cloned().unwrap_or_default()
}

/// Parses one example and checks what holds for every event of every example: the event is the
/// object as received (nothing lost, nothing added), its kind matches its type, it has a hash ID
/// in the `ni:` form and a plausible time.
fn check(path: &Path) -> Result<Document, String> {
    let name = path
        .strip_prefix(data(""))
        .unwrap_or(path)
        .display()
        .to_string();
    let bytes = std::fs::read(path).map_err(|error| format!("{name}: {error}"))?;
    let document = parse_document(&bytes).map_err(|error| format!("{name}: {error}"))?;
    let plain: Value =
        serde_json::from_slice(&bytes).map_err(|error| format!("{name}: {error}"))?;
    let raw = raw_events(&plain);
    if document.events.len() != raw.len() {
        return Err(format!(
            "{name}: {} events, expected {}",
            document.events.len(),
            raw.len()
        ));
    }
    if document.context != plain["@context"] {
        return Err(format!("{name}: context differs"));
    }
    for (index, (event, raw)) in document.events.iter().zip(&raw).enumerate() {
        if event.json != *raw {
            return Err(format!("{name} event {index}: json differs from the input"));
        }
        if raw["type"].as_str() != Some(event.kind.as_str()) {
            return Err(format!("{name} event {index}: kind {:?}", event.kind));
        }
        let hex = event
            .hash
            .strip_prefix("ni:///sha-256;")
            .and_then(|rest| rest.strip_suffix("?ver=CBV2.0"))
            .unwrap_or("");
        if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format!("{name} event {index}: hash {}", event.hash));
        }
        // The hash is a function of the stored event and context: it can be checked later.
        if event_hash_id(&event.json, &document.context) != event.hash {
            return Err(format!(
                "{name} event {index}: the stored event hashes differently"
            ));
        }
        // 2005-01-01 to 2030-01-01: the examples' years.
        if !(1_104_537_600_000..1_893_456_000_000).contains(&event.event_time_ms) {
            return Err(format!(
                "{name} event {index}: time {}",
                event.event_time_ms
            ));
        }
    }
    Ok(document)
}

#[test]
fn every_json_example_is_accepted_and_kept_verbatim() {
    let files = files("JSON");
    assert_eq!(files.len(), 47);
    let mut failures = Vec::new();
    let mut events = 0;
    for path in &files {
        match check(path) {
            Ok(document) => events += document.events.len(),
            Err(failure) => failures.push(failure),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(events, 56);
}

#[test]
fn simple_context_examples_except_the_two_known_bad_ones() {
    let files = files("JSON-simple-context");
    assert_eq!(files.len(), 20);
    for path in &files {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        let result = check(path);
        match name {
            "SensorDataExample12.jsonld" | "SensorDataExample17.jsonld" => {
                let bytes = std::fs::read(path).expect("file");
                let Err(EpcisError::Schema { reasons }) = parse_document(&bytes) else {
                    panic!("{name} must fail the schema");
                };
                assert!(!reasons.is_empty(), "{name}");
                let text = reasons.join("\n");
                if name == "SensorDataExample12.jsonld" {
                    assert!(
                        text.contains("schemaVersion") && text.contains("creationDate"),
                        "{text}"
                    );
                } else {
                    assert!(text.contains("/schemaVersion"), "{text}");
                }
            }
            _ => {
                result.unwrap_or_else(|failure| panic!("{failure}"));
            }
        }
    }
}

#[test]
fn worked_example_9_6_1() {
    // The Digital Link edition names other trade items (GTIN 70614141123451).
    for (path, gtin) in [
        ("JSON/Example_9.6.1-ObjectEvent.jsonld", "10614141073464"),
        (
            "JSON/WithDigitalLinkID/Example_9.6.1-ObjectEventWithDigitalLink.jsonld",
            "70614141123451",
        ),
    ] {
        let document = load(path);
        assert_eq!(document.kind, DocumentKind::Document);
        assert_eq!(document.header["schemaVersion"], "2.0");
        assert!(!document.header.contains_key("epcisBody"));
        assert!(document.duplicate_keys.is_empty());
        let [shipping, receiving] = &document.events[..] else {
            panic!("two events");
        };
        assert_eq!(shipping.kind, EventKind::Object);
        assert_eq!(shipping.action, Some(Action::Observe));
        assert_eq!(shipping.biz_step.as_deref(), Some("shipping"));
        assert_eq!(shipping.disposition.as_deref(), Some("in_transit"));
        // 2005-04-03T20:33:31.116-06:00
        assert_eq!(shipping.event_time_ms, 1_112_582_011_116);
        let sgtin = |serial: &str| Epc::Sgtin {
            gtin: gtin.to_owned(),
            serial: serial.to_owned(),
        };
        assert_eq!(shipping.epc_list, vec![sgtin("2017"), sgtin("2018")]);
        assert_eq!(
            shipping.read_point.as_deref(),
            Some("https://id.gs1.org/414/0614141073467/254/1234")
        );
        assert_eq!(
            shipping.biz_transactions,
            vec![(
                Some("po".to_owned()),
                "http://transaction.acme.com/po/12345678".to_owned()
            )]
        );
        assert_eq!(receiving.biz_step.as_deref(), Some("receiving"));
        assert_eq!(receiving.disposition.as_deref(), Some("in_progress"));
        assert_eq!(receiving.epc_list, vec![sgtin("2018")]);
        assert_eq!(
            receiving.biz_location.as_deref(),
            Some("https://id.gs1.org/414/0012345111112")
        );
        assert_eq!(receiving.biz_transactions.len(), 2);
        assert_eq!(receiving.biz_transactions[1].0.as_deref(), Some("desadv"));
        assert!(!receiving.is_error_declaration);
    }
}

#[test]
fn worked_examples_9_6_2_to_9_6_4() {
    let document = load("JSON/Example_9.6.3-AggregationEvent.jsonld");
    let event = &document.events[0];
    assert_eq!(event.kind, EventKind::Aggregation);
    assert_eq!(event.biz_step.as_deref(), Some("receiving"));
    assert_eq!(
        event.parent_id,
        Some(Epc::Sscc("106141412345678908".to_owned()))
    );
    assert_eq!(event.child_epcs.len(), 2);
    assert_eq!(event.quantities.len(), 2);
    assert_eq!(event.quantities[0].list, QuantityList::Child);
    assert_eq!(
        event.quantities[0].epc_class,
        Epc::Gtin("04012345987652".to_owned())
    );
    assert_eq!(event.quantities[0].quantity.as_deref(), Some("10"));
    assert_eq!(
        event.quantities[1].epc_class,
        Epc::Lgtin {
            gtin: "04012345123456".to_owned(),
            lot: "998877".to_owned()
        }
    );
    assert_eq!(event.quantities[1].quantity.as_deref(), Some("200.5"));
    assert_eq!(event.quantities[1].uom.as_deref(), Some("KGM"));

    let document = load("JSON/Example_9.6.4-TransformationEvent.jsonld");
    let event = &document.events[0];
    assert_eq!(event.kind, EventKind::Transformation);
    assert_eq!(event.biz_step.as_deref(), Some("commissioning"));
    assert_eq!(event.action, None);
    assert_eq!(event.input_epc_list.len(), 2);
    assert_eq!(event.output_epc_list.len(), 4);
    assert!(
        event
            .quantities
            .iter()
            .all(|quantity| quantity.list == QuantityList::Input)
    );
    assert_eq!(event.quantities.len(), 3);

    let document = load("JSON/Example_9.6.2-ObjectEvent.jsonld");
    assert_eq!(document.events[0].biz_step.as_deref(), Some("receiving"));

    // The Digital Link editions' identifiers are all read as GS1 keys.
    for path in [
        "JSON/WithDigitalLinkID/Example_9.6.2-ObjectEventWithDigitalLink.jsonld",
        "JSON/WithDigitalLinkID/Example_9.6.3-AggregationEventWithDigitalLink.jsonld",
        "JSON/WithDigitalLinkID/Example_9.6.4-TransformationEventWithDigitalLink.jsonld",
    ] {
        let event = &load(path).events[0];
        let epcs = [
            &event.epc_list,
            &event.child_epcs,
            &event.input_epc_list,
            &event.output_epc_list,
        ];
        let all: Vec<&Epc> = epcs
            .into_iter()
            .flatten()
            .chain(&event.parent_id)
            .chain(event.quantities.iter().map(|quantity| &quantity.epc_class))
            .collect();
        assert!(!all.is_empty(), "{path}");
        assert!(
            all.iter().all(|epc| !matches!(epc, Epc::Other(_))),
            "{path}: {all:?}"
        );
    }
}

#[test]
fn sensor_readings_are_flattened_in_milli_units() {
    let document = load("JSON/WithSensorData/SensorDataExample1.jsonld");
    let readings = &document.events[0].sensor_readings;
    assert_eq!(readings.len(), 12);
    let first = &readings[0];
    assert_eq!(first.sensor_type.as_deref(), Some("Temperature"));
    assert_eq!(first.value_milli, Some(26_000));
    assert_eq!(first.uom.as_deref(), Some("CEL"));
    assert_eq!(
        first.device_id.as_deref(),
        Some("urn:epc:id:giai:4000001.111")
    );
    // The sensor metadata time, 2019-04-02T14:05:00+01:00.
    assert_eq!(first.time_ms, 1_554_210_300_000);
    assert_eq!(readings[1].sensor_type.as_deref(), Some("AbsoluteHumidity"));
    assert_eq!(readings[1].value_milli, Some(12_100));
    assert_eq!(readings[4].value_milli, Some(26_100));

    let document = load("JSON/WithSensorData/SensorDataExample9.jsonld");
    let readings = &document.events[0].sensor_readings;
    assert_eq!(readings[0].exception.as_deref(), Some("ERROR_CONDITION"));
    assert_eq!(readings[1].exception.as_deref(), Some("ALARM_CONDITION"));
    assert_eq!(readings[0].value_milli, None);
    // No sensor time anywhere: the event time.
    assert_eq!(readings[0].time_ms, document.events[0].event_time_ms);
}

#[test]
fn extension_fields_survive_and_ilmd_is_read() {
    let document = load("JSON/WithFullCombinationOfFields/object_event_all_possible_fields.jsonld");
    let event = &document.events[0];
    assert_eq!(event.lot.as_deref(), Some("ABC123"));
    assert!(event.json.get("ext1:array").is_some());
    assert_eq!(event.json["ext1:float"], "20");
    assert_eq!(event.json["ilmd"]["cbvmda:countryOfOrigin"], "GB");
    assert!(event.pre_hash.contains("ext1") || event.pre_hash.contains("{"));

    let document =
        load("JSON/WithErrorDeclaration/Example_9.6.1-ObjectEvent-with-error-declaration.jsonld");
    let retracted = &document.events[0];
    assert!(retracted.is_error_declaration);
    assert_eq!(retracted.corrective_event_ids.len(), 2);
}

#[test]
fn a_repeated_key_keeps_its_last_value_and_is_reported() {
    // GS1's AssociationEvent-h gives `eventID` twice.
    let document = load("JSON/AssociationEvent/AssociationEvent-h.jsonld");
    assert_eq!(
        document.duplicate_keys,
        vec!["/epcisBody/eventList/0/eventID".to_owned()]
    );
    let event = &document.events[0];
    assert_eq!(
        event.event_id.as_deref(),
        Some("urn:uuid:fd338495-0e6d-41dd-afee-a862ecd32518")
    );
    assert_eq!(
        event.json["eventID"],
        "urn:uuid:fd338495-0e6d-41dd-afee-a862ecd32518"
    );
    assert_eq!(event.kind, EventKind::Association);
    assert_eq!(event.action, Some(Action::Delete));
}

#[test]
fn query_documents_are_read_too() {
    let document = load("JSON/EPCISQueryDocument.jsonld");
    assert_eq!(document.kind, DocumentKind::QueryDocument);
    assert_eq!(document.events.len(), 2);
    // The same events as 9.6.1, so the same hashes.
    let capture = load("JSON/Example_9.6.1-ObjectEvent.jsonld");
    for (queried, captured) in document.events.iter().zip(&capture.events) {
        assert_eq!(queried.hash, captured.hash);
    }
}

#[test]
fn a_bare_event_is_a_document_of_one() {
    let document = load("JSON/Example_9.6.2-ObjectEvent.jsonld");
    let mut event = document.events[0].json.clone();
    event["@context"] = document.context.clone();
    let bytes = serde_json::to_vec(&event).expect("serialises");
    let bare = parse_document(&bytes).expect("a bare event with its context is accepted");
    assert_eq!(bare.kind, DocumentKind::Event);
    assert!(bare.header.is_empty());
    assert_eq!(bare.events.len(), 1);
    assert_eq!(bare.events[0].hash, document.events[0].hash);
}
