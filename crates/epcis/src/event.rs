//! One EPCIS event: the object as received, its event hash ID, and the typed view the ledger maps
//! from (what happened, when, to which objects, where, and sensor readings).
//!
//! The typed view is derived, never authoritative: `json` is the event, with every field a sender
//! put in it, standard or not.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::EpcisError;
use crate::context::{Prefixes, short_name};
use crate::decimal::Decimal;
use crate::epc::Epc;
use crate::hash::{hash_id, pre_hash};
use crate::json::Node;
use crate::time::{offset, parse_timestamp};

/// The five EPCIS 2.0 event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    Object,
    Aggregation,
    Transaction,
    Transformation,
    Association,
}

impl EventKind {
    /// The `type` value (`ObjectEvent`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Object => "ObjectEvent",
            EventKind::Aggregation => "AggregationEvent",
            EventKind::Transaction => "TransactionEvent",
            EventKind::Transformation => "TransformationEvent",
            EventKind::Association => "AssociationEvent",
        }
    }

    fn from_type(name: &str) -> Option<EventKind> {
        Some(match name {
            "ObjectEvent" => EventKind::Object,
            "AggregationEvent" => EventKind::Aggregation,
            "TransactionEvent" => EventKind::Transaction,
            "TransformationEvent" => EventKind::Transformation,
            "AssociationEvent" => EventKind::Association,
            _ => return None,
        })
    }
}

/// An event's `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Add,
    Observe,
    Delete,
}

/// Which list of an event a quantity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuantityList {
    /// `quantityList` (object and transaction events).
    Quantity,
    /// `childQuantityList` (aggregation and association events).
    Child,
    /// `inputQuantityList` (transformation events).
    Input,
    /// `outputQuantityList` (transformation events).
    Output,
}

/// A class-level quantity: `epcClass`, `quantity` and `uom` of a quantity list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    pub list: QuantityList,
    /// The class (typically [`Epc::Lgtin`] or [`Epc::Gtin`]).
    pub epc_class: Epc,
    /// The quantity's decimal text as received (absent means a count that was not given).
    pub quantity: Option<String>,
    /// The unit of measure (UN/CEFACT rec. 20 code); absent for a count of instances.
    pub uom: Option<String>,
}

/// One sensor report, with the sensor element's metadata filled in where the report has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorReading {
    /// The measurement type's short name (`Temperature`, `RelativeHumidity`, …); a non-GS1 type
    /// as written.
    pub sensor_type: Option<String>,
    /// The report's `deviceID`, else the sensor metadata's.
    pub device_id: Option<String>,
    /// The report's `time`, else the sensor metadata's `time`, else the event time (epoch ms).
    pub time_ms: i64,
    /// `value`, `minValue`, `maxValue` and `meanValue` times 1000, rounded half away from zero,
    /// from the numbers' decimal text. Temperatures in `FAH` or `KEL` are converted to
    /// milli-degrees Celsius.
    pub value_milli: Option<i64>,
    pub min_milli: Option<i64>,
    pub max_milli: Option<i64>,
    pub mean_milli: Option<i64>,
    /// The unit the `_milli` values are in: `CEL` for a converted temperature, otherwise `uom` as
    /// received.
    pub uom: Option<String>,
    /// The alert (`ALARM_CONDITION`, `ERROR_CONDITION`), short name.
    pub exception: Option<String>,
}

/// An EPCIS event: as received, its hash ID, and a typed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The event object exactly as received, every member included (user extensions, comments,
    /// the event's own `@context` if it has one). Its CURIEs are read with the document's
    /// context ([`crate::Document::context`]).
    pub json: Value,
    /// The EPCIS event hash ID, `ni:///sha-256;<hex>?ver=CBV2.0` (CBV 2.0 §8.9), as the
    /// reference implementation computes it. User extension fields that the document lists in
    /// a `<prefix>:ignoreFields` member (at document level or in `queryResults`) are left out,
    /// as the reference does; see [`crate::event_hash_id`] to recompute it.
    pub hash: String,
    /// The canonical string that [`Event::hash`] hashes (CBV 2.0 §8.9), for audit and
    /// debugging.
    pub pre_hash: String,
    pub kind: EventKind,
    /// `eventID` as received.
    pub event_id: Option<String>,
    /// `eventTime` in milliseconds since the Unix epoch (UTC). A time written without an offset
    /// is read at `eventTimeZoneOffset`.
    pub event_time_ms: i64,
    pub action: Option<Action>,
    /// `bizStep` as a CBV short name (`shipping`), or as written if it is not a CBV value.
    pub biz_step: Option<String>,
    /// `disposition` as a CBV short name (`in_transit`), or as written.
    pub disposition: Option<String>,
    pub epc_list: Vec<Epc>,
    pub parent_id: Option<Epc>,
    pub child_epcs: Vec<Epc>,
    pub input_epc_list: Vec<Epc>,
    pub output_epc_list: Vec<Epc>,
    /// The entries of all quantity lists, in document order.
    pub quantities: Vec<Quantity>,
    /// `readPoint.id`: an SGLN as its canonical Digital Link URI, anything else as written.
    pub read_point: Option<String>,
    /// `bizLocation.id`, like `read_point`.
    pub biz_location: Option<String>,
    /// `(type, id)` of each business transaction; the type as a CBV short name (`po`).
    pub biz_transactions: Vec<(Option<String>, String)>,
    /// `(type, id)` of each source; the type as a CBV short name (`owning_party`).
    pub sources: Vec<(String, String)>,
    /// `(type, id)` of each destination.
    pub destinations: Vec<(String, String)>,
    /// `transformationID`.
    pub transformation_id: Option<String>,
    /// `ilmd` lot number (`cbvmda:lotNumber`).
    pub lot: Option<String>,
    /// `ilmd` item expiration date (`cbvmda:itemExpirationDate`), as written (`YYYY-MM-DD`).
    pub expiry: Option<String>,
    /// Every sensor report of every sensor element, in document order.
    pub sensor_readings: Vec<SensorReading>,
    /// Whether the event carries an `errorDeclaration` (it retracts an earlier event).
    pub is_error_declaration: bool,
    /// `errorDeclaration.correctiveEventIDs`.
    pub corrective_event_ids: Vec<String>,
}

/// A string member, or a number's text (ILMD values may be either).
fn text_of(node: &Node) -> Option<String> {
    match node {
        Node::String(text) => Some(text.clone()),
        Node::Number(text) => Some(text.clone()),
        _ => None,
    }
}

fn string_member(node: &Node, key: &str) -> Option<String> {
    node.get(key).and_then(Node::as_str).map(str::to_owned)
}

fn epcs(node: &Node, key: &str) -> Vec<Epc> {
    node.get(key)
        .map(|list| {
            list.items()
                .iter()
                .filter_map(Node::as_str)
                .map(Epc::parse)
                .collect()
        })
        .unwrap_or_default()
}

/// A location id: an SGLN as its canonical Digital Link, anything else as written.
fn location(node: &Node, key: &str) -> Option<String> {
    let id = node.get(key)?.get("id")?.as_str()?;
    Some(match Epc::parse(id) {
        sgln @ Epc::Sgln { .. } => sgln.to_digital_link().unwrap_or_else(|| id.to_owned()),
        _ => id.to_owned(),
    })
}

impl Event {
    /// Builds an event from its object, under the document's CURIE prefixes. `path` locates the
    /// event in the document for error messages.
    pub(crate) fn from_node(
        node: &Node,
        prefixes: &Prefixes,
        ignored: &BTreeSet<String>,
        path: &str,
    ) -> Result<Event, EpcisError> {
        let invalid = |field: &str, reason: &str| EpcisError::Invalid {
            path: format!("{path}/{field}"),
            reason: reason.to_owned(),
        };
        let type_name = node
            .get("type")
            .and_then(Node::as_str)
            .ok_or_else(|| invalid("type", "an event needs a type"))?;
        let kind =
            EventKind::from_type(type_name).ok_or_else(|| EpcisError::UnsupportedEventType {
                path: format!("{path}/type"),
                found: type_name.to_owned(),
            })?;

        // The event's own @context adds to the document's.
        let mut prefixes = prefixes.clone();
        if let Some(context) = node.get("@context") {
            prefixes.add(context);
        }

        let offset_minutes = node
            .get("eventTimeZoneOffset")
            .and_then(Node::as_str)
            .and_then(|text| offset(text.as_bytes()))
            .and_then(|minutes| i32::try_from(minutes).ok());
        let event_time_ms = node
            .get("eventTime")
            .and_then(Node::as_str)
            .and_then(|text| parse_timestamp(text, offset_minutes))
            .ok_or_else(|| invalid("eventTime", "not a valid date-time"))?
            .epoch_millis();

        let action = match node.get("action").and_then(Node::as_str) {
            None => None,
            Some("ADD") => Some(Action::Add),
            Some("OBSERVE") => Some(Action::Observe),
            Some("DELETE") => Some(Action::Delete),
            Some(_) => return Err(invalid("action", "must be ADD, OBSERVE or DELETE")),
        };

        let vocabulary = |key: &str, web: &str, urn: &str| {
            node.get(key)
                .and_then(Node::as_str)
                .map(|value| short_name(value, web, urn, &prefixes))
        };
        let biz_step = vocabulary("bizStep", "BizStep-", "urn:epcglobal:cbv:bizstep:");
        let disposition = vocabulary("disposition", "Disp-", "urn:epcglobal:cbv:disp:");

        let mut quantities = Vec::new();
        for (key, list) in [
            ("quantityList", QuantityList::Quantity),
            ("childQuantityList", QuantityList::Child),
            ("inputQuantityList", QuantityList::Input),
            ("outputQuantityList", QuantityList::Output),
        ] {
            for entry in node.get(key).map(Node::items).unwrap_or_default() {
                let Some(class) = entry.get("epcClass").and_then(Node::as_str) else {
                    continue;
                };
                quantities.push(Quantity {
                    list,
                    epc_class: Epc::parse(class),
                    quantity: entry.get("quantity").and_then(text_of),
                    uom: string_member(entry, "uom"),
                });
            }
        }

        let typed_pairs = |key: &str, id_key: &str, web: &str, urn: &str| {
            node.get(key)
                .map(Node::items)
                .unwrap_or_default()
                .iter()
                .filter_map(|entry| {
                    let id = string_member(entry, id_key)?;
                    let kind = entry
                        .get("type")
                        .and_then(Node::as_str)
                        .map(|value| short_name(value, web, urn, &prefixes));
                    Some((kind, id))
                })
                .collect::<Vec<_>>()
        };
        let biz_transactions = typed_pairs(
            "bizTransactionList",
            "bizTransaction",
            "BTT-",
            "urn:epcglobal:cbv:btt:",
        );
        let with_type = |pairs: Vec<(Option<String>, String)>| {
            pairs
                .into_iter()
                .map(|(kind, id)| (kind.unwrap_or_default(), id))
                .collect::<Vec<_>>()
        };
        let sources = with_type(typed_pairs(
            "sourceList",
            "source",
            "SDT-",
            "urn:epcglobal:cbv:sdt:",
        ));
        let destinations = with_type(typed_pairs(
            "destinationList",
            "destination",
            "SDT-",
            "urn:epcglobal:cbv:sdt:",
        ));

        let (mut lot, mut expiry) = (None, None);
        if let Some(Node::Object(members)) = node.get("ilmd") {
            for (key, value) in members {
                let name = prefixes.expand(key);
                let local = name.strip_prefix("urn:epcglobal:cbv:mda:").unwrap_or(&name);
                match local {
                    "lotNumber" => lot = text_of(value),
                    "itemExpirationDate" => expiry = text_of(value),
                    _ => {}
                }
            }
        }

        let sensor_readings = sensor_readings(node, &prefixes, event_time_ms, path)?;

        let error_declaration = node.get("errorDeclaration");
        let corrective_event_ids = error_declaration
            .and_then(|declaration| declaration.get("correctiveEventIDs"))
            .map(|ids| {
                ids.items()
                    .iter()
                    .filter_map(Node::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();

        let pre_hash = pre_hash(node, &prefixes, ignored);
        let json = node.to_value().map_err(|reason| EpcisError::Invalid {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Event {
            json,
            hash: hash_id(&pre_hash),
            pre_hash,
            kind,
            event_id: string_member(node, "eventID"),
            event_time_ms,
            action,
            biz_step,
            disposition,
            epc_list: epcs(node, "epcList"),
            parent_id: node.get("parentID").and_then(Node::as_str).map(Epc::parse),
            child_epcs: epcs(node, "childEPCs"),
            input_epc_list: epcs(node, "inputEPCList"),
            output_epc_list: epcs(node, "outputEPCList"),
            quantities,
            read_point: location(node, "readPoint"),
            biz_location: location(node, "bizLocation"),
            biz_transactions,
            sources,
            destinations,
            transformation_id: string_member(node, "transformationID"),
            lot,
            expiry,
            sensor_readings,
            is_error_declaration: error_declaration.is_some(),
            corrective_event_ids,
        })
    }
}

/// Flattens `sensorElementList` into readings.
fn sensor_readings(
    event: &Node,
    prefixes: &Prefixes,
    event_time_ms: i64,
    path: &str,
) -> Result<Vec<SensorReading>, EpcisError> {
    let mut readings = Vec::new();
    let elements = event
        .get("sensorElementList")
        .map(Node::items)
        .unwrap_or_default();
    for (element_index, element) in elements.iter().enumerate() {
        let metadata = element.get("sensorMetadata");
        let metadata_time = metadata
            .and_then(|metadata| metadata.get("time"))
            .and_then(Node::as_str);
        let metadata_device = metadata.and_then(|metadata| string_member(metadata, "deviceID"));
        let reports = element
            .get("sensorReport")
            .map(Node::items)
            .unwrap_or_default();
        for (report_index, report) in reports.iter().enumerate() {
            let here =
                format!("{path}/sensorElementList/{element_index}/sensorReport/{report_index}");
            let invalid = |field: &str, reason: &str| EpcisError::Invalid {
                path: format!("{here}/{field}"),
                reason: reason.to_owned(),
            };
            let sensor_type = report
                .get("type")
                .and_then(Node::as_str)
                .map(|value| short_name(value, "", "", prefixes));
            let time_ms = match report.get("time").and_then(Node::as_str).or(metadata_time) {
                Some(text) => parse_timestamp(text, None)
                    .ok_or_else(|| invalid("time", "not a valid date-time"))?
                    .epoch_millis(),
                None => event_time_ms,
            };
            let uom = string_member(report, "uom");
            // Temperatures are converted to Celsius so that limits compare across senders.
            let temperature_unit = match (sensor_type.as_deref(), uom.as_deref()) {
                (Some("Temperature"), Some(unit @ ("CEL" | "FAH" | "KEL"))) => Some(unit),
                _ => None,
            };
            let milli = |field: &str| -> Result<Option<i64>, EpcisError> {
                let Some(value) = report.get(field) else {
                    return Ok(None);
                };
                let Node::Number(text) = value else {
                    return Err(invalid(field, "not a number"));
                };
                let decimal =
                    Decimal::parse_json(text).ok_or_else(|| invalid(field, "not a number"))?;
                let converted = match temperature_unit {
                    Some("FAH") => decimal.fahrenheit_to_milli_celsius(),
                    Some("KEL") => decimal
                        .milli()
                        .and_then(|kelvin| kelvin.checked_sub(273_150)),
                    _ => decimal.milli(),
                };
                converted
                    .map(Some)
                    .ok_or_else(|| invalid(field, "out of range"))
            };
            readings.push(SensorReading {
                sensor_type,
                device_id: string_member(report, "deviceID").or_else(|| metadata_device.clone()),
                time_ms,
                value_milli: milli("value")?,
                min_milli: milli("minValue")?,
                max_milli: milli("maxValue")?,
                mean_milli: milli("meanValue")?,
                uom: if temperature_unit.is_some() {
                    Some("CEL".to_owned())
                } else {
                    uom
                },
                exception: report
                    .get("exception")
                    .and_then(Node::as_str)
                    .map(|value| short_name(value, "", "", prefixes)),
            });
        }
    }
    Ok(readings)
}
