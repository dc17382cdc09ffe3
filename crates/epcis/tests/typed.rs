//! The typed view on hand-made events: CBV values in each spelling become short names,
//! temperatures in any unit become milli-degrees Celsius, ILMD lot and expiry are found under
//! their CURIE, bare or full names.

use medledger_epcis::{Event, SensorReading, parse_document};
use serde_json::{Value, json};

/// Parses a one-event document whose event has `fields` besides the required ones (which
/// `fields` may override), under `context` extra to the standard one.
fn check(context: Value, fields: Value) -> Event {
    let mut event = json!({
        "type": "ObjectEvent",
        "eventTime": "2024-03-01T12:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
    });
    if let (Some(event), Some(fields)) = (event.as_object_mut(), fields.as_object()) {
        for (key, value) in fields {
            event.insert(key.clone(), value.clone());
        }
    }
    let document = json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld", context],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2024-03-01T12:00:00Z",
        "epcisBody": {"eventList": [event]},
    });
    let bytes = serde_json::to_vec(&document).expect("serialises");
    let mut parsed = parse_document(&bytes).unwrap_or_else(|error| panic!("{error}"));
    parsed.events.remove(0)
}

fn reading(unit: &str, value: Value) -> SensorReading {
    let event = check(
        json!({}),
        json!({"sensorElementList": [{"sensorReport": [
            {"type": "Temperature", "value": value, "minValue": value, "uom": unit}
        ]}]}),
    );
    event.sensor_readings[0].clone()
}

#[test]
fn cbv_values_in_every_spelling() {
    for (biz_step, disposition) in [
        ("shipping", "in_transit"),
        ("cbv:BizStep-shipping", "cbv:Disp-in_transit"),
        (
            "https://ref.gs1.org/cbv/BizStep-shipping",
            "https://ref.gs1.org/cbv/Disp-in_transit",
        ),
    ] {
        let event = check(
            json!({}),
            json!({"bizStep": biz_step, "disposition": disposition}),
        );
        assert_eq!(event.biz_step.as_deref(), Some("shipping"), "{biz_step}");
        assert_eq!(
            event.disposition.as_deref(),
            Some("in_transit"),
            "{disposition}"
        );
    }
    // (The EPCIS 1.x URN spelling, `urn:epcglobal:cbv:bizstep:shipping`, is refused by the
    // EPCIS 2.0 JSON schema.) The three spellings name the same step, so the events hash alike.
    let hashes: Vec<String> = [
        "shipping",
        "cbv:BizStep-shipping",
        "https://ref.gs1.org/cbv/BizStep-shipping",
    ]
    .iter()
    .map(|step| check(json!({}), json!({"bizStep": step})).hash)
    .collect();
    assert!(hashes.iter().all(|hash| *hash == hashes[0]), "{hashes:?}");

    let event = check(
        json!({}),
        json!({"bizStep": "https://example.com/steps/quarantining",
               "sourceList": [{"type": "https://ref.gs1.org/cbv/SDT-owning_party", "source": "urn:epc:id:pgln:0614141.00001"}],
               "destinationList": [{"type": "location", "destination": "urn:epc:id:sgln:0614141.00001.0"}]}),
    );
    assert_eq!(
        event.biz_step.as_deref(),
        Some("https://example.com/steps/quarantining")
    );
    assert_eq!(
        event.sources,
        vec![(
            "owning_party".to_owned(),
            "urn:epc:id:pgln:0614141.00001".to_owned()
        )]
    );
    assert_eq!(event.destinations[0].0, "location");
}

#[test]
fn temperatures_become_milli_celsius() {
    let celsius = reading("CEL", json!(-18.5));
    assert_eq!(celsius.value_milli, Some(-18_500));
    assert_eq!(celsius.uom.as_deref(), Some("CEL"));
    let fahrenheit = reading("FAH", json!(46.4));
    assert_eq!(fahrenheit.value_milli, Some(8_000));
    assert_eq!(fahrenheit.min_milli, Some(8_000));
    assert_eq!(fahrenheit.uom.as_deref(), Some("CEL"));
    let kelvin = reading("KEL", json!(275.15));
    assert_eq!(kelvin.value_milli, Some(2_000));
    // Exactly from the decimal text: 0.1 + 0.2 style errors cannot creep in.
    assert_eq!(reading("CEL", json!(0.3)).value_milli, Some(300));
    let humidity = check(
        json!({}),
        json!({"sensorElementList": [{
            "sensorMetadata": {"time": "2024-03-01T11:00:00+01:00", "deviceID": "urn:epc:id:giai:4000001.111"},
            "sensorReport": [{"type": "gs1:RelativeHumidity", "value": 55, "uom": "P1"}]
        }]}),
    );
    let humidity = &humidity.sensor_readings[0];
    assert_eq!(humidity.sensor_type.as_deref(), Some("RelativeHumidity"));
    assert_eq!(humidity.value_milli, Some(55_000));
    assert_eq!(humidity.uom.as_deref(), Some("P1"));
    assert_eq!(
        humidity.device_id.as_deref(),
        Some("urn:epc:id:giai:4000001.111")
    );
    // 2024-03-01T10:00:00Z, the sensor metadata time.
    assert_eq!(humidity.time_ms, 1_709_287_200_000);
}

#[test]
fn lot_and_expiry_from_ilmd() {
    for ilmd in [
        json!({"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2026-01-31"}),
        json!({"mda:lotNumber": "L1", "mda:itemExpirationDate": "2026-01-31"}),
        json!({"urn:epcglobal:cbv:mda:lotNumber": "L1", "urn:epcglobal:cbv:mda:itemExpirationDate": "2026-01-31"}),
    ] {
        let event = check(
            json!({"mda": "urn:epcglobal:cbv:mda:"}),
            json!({"action": "ADD", "bizStep": "commissioning", "ilmd": ilmd}),
        );
        assert_eq!(event.lot.as_deref(), Some("L1"), "{:?}", event.json["ilmd"]);
        assert_eq!(event.expiry.as_deref(), Some("2026-01-31"));
    }
}

#[test]
fn business_transaction_member_order_does_not_change_the_hash() {
    let type_first = check(
        json!({}),
        json!({"bizTransactionList": [{"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:0614141000005:PO1"}]}),
    );
    let id_first = check(
        json!({}),
        json!({"bizTransactionList": [{"bizTransaction": "urn:epcglobal:cbv:bt:0614141000005:PO1", "type": "po"}]}),
    );
    assert_eq!(type_first.hash, id_first.hash);
    assert!(
        type_first
            .pre_hash
            .ends_with("bizTransactionListtype=https://ref.gs1.org/cbv/BTT-pobizTransaction=urn:epcglobal:cbv:bt:0614141000005:PO1"),
        "{}",
        type_first.pre_hash
    );
}

#[test]
fn urn_and_digital_link_spellings_hash_alike() {
    let urn = check(
        json!({}),
        json!({"epcList": ["urn:epc:id:sgtin:0614141.107346.2017", "urn:epc:id:sscc:0614141.1234567890"],
               "readPoint": {"id": "urn:epc:id:sgln:0614141.07346.1234"}}),
    );
    let link = check(
        json!({}),
        json!({"epcList": ["https://id.gs1.org/00/106141412345678908", "https://example.com/01/10614141073464/21/2017?x=y"],
               "readPoint": {"id": "https://id.gs1.org/414/0614141073467/254/1234"}}),
    );
    assert_eq!(urn.hash, link.hash, "\n{}\n{}", urn.pre_hash, link.pre_hash);
    assert_eq!(urn.epc_list.len(), 2);
    let mut urn_epcs = urn.epc_list.clone();
    let mut link_epcs = link.epc_list.clone();
    urn_epcs.sort();
    link_epcs.sort();
    assert_eq!(urn_epcs, link_epcs);
    assert_eq!(urn.read_point, link.read_point);
}
