//! GS1 EPCIS 2.0 JSON-LD for medledger: capture documents are checked against the official EPCIS
//! 2.0 JSON Schema, each event is identified by its EPCIS event hash ID (GS1 CBV 2.0 §8.9), and
//! the ledger gets a typed view of each event while the event itself is kept as received, every
//! field included.
//!
//! **API boundary:** no IO, clock or randomness. The schema and the standard JSON-LD context are
//! compiled in; a document's remote `@context` URLs are never fetched.
//!
//! **Accepted inputs:** what the schema accepts at its root: an `EPCISDocument` (the capture
//! format), an `EPCISQueryDocument` (a query response, as partners forward them; the event hash
//! vectors include one), or a single bare event with its own `@context` (the EPCIS 2.0 REST
//! interface captures single events that way). [`Document::kind`] says which, so a capture
//! endpoint can refuse what it does not take. Events must be one of the five standard types;
//! the schema also admits extension event types, which are refused here, since the ledger has no
//! meaning for them.

mod context;
mod decimal;
mod dl;
mod epc;
mod error;
mod event;
mod hash;
mod json;
mod schema;
mod time;

use serde_json::{Map, Value, json};

pub use context::{EPCIS_CONTEXT_JSONLD, EPCIS_CONTEXT_URL};
pub use dl::normalise_to_digital_link;
pub use epc::Epc;
pub use error::EpcisError;
pub use event::{Action, Event, EventKind, Quantity, QuantityList, SensorReading};
pub use json::{DEPTH_MAX, DOCUMENT_BYTES_MAX};
pub use schema::{EPCIS_JSON_SCHEMA, SCHEMA_REASONS_MAX};

use context::Prefixes;
use json::Node;

/// What kind of document was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocumentKind {
    /// An `EPCISDocument`: events under `epcisBody.eventList`.
    Document,
    /// An `EPCISQueryDocument`: events under `epcisBody.queryResults.resultsBody.eventList`.
    QueryDocument,
    /// A single event object at the root.
    Event,
}

/// A parsed EPCIS document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub kind: DocumentKind,
    /// The document's `@context` as received (for a bare event, the event's), `Null` if absent.
    /// Events' CURIEs (`example:myField`) are read with it.
    pub context: Value,
    /// Every document-level member except `epcisBody` (`@context`, `type`, `schemaVersion`,
    /// `creationDate`, `sender`, `epcisHeader`, extensions …); empty for a bare event.
    pub header: Map<String, Value>,
    /// The events in document order.
    pub events: Vec<Event>,
    /// JSON pointers of object members whose key the document repeats (the last value is the
    /// one kept, everywhere), at most 50. Empty for a well-formed document; a capture endpoint
    /// may refuse the rest.
    pub duplicate_keys: Vec<String>,
}

/// Parses and checks an EPCIS 2.0 JSON-LD document: strict, bounded JSON (at most
/// [`DOCUMENT_BYTES_MAX`] bytes and [`DEPTH_MAX`] levels, no duplicate keys), conformance to the
/// EPCIS 2.0 JSON Schema, then one [`Event`] per event with its hash ID and typed view.
pub fn parse_document(bytes: &[u8]) -> Result<Document, EpcisError> {
    let (root, duplicate_keys) = json::parse(bytes)?;
    let value = root.to_value().map_err(|reason| EpcisError::Json {
        line: 1,
        column: 1,
        reason,
    })?;
    let reasons = schema::violations(&value);
    if !reasons.is_empty() {
        return Err(EpcisError::Schema { reasons });
    }
    let root_type = root.get("type").and_then(Node::as_str).unwrap_or_default();
    let (kind, events, base_path): (DocumentKind, &[Node], &str) = match root_type {
        "EPCISDocument" => (
            DocumentKind::Document,
            root.get("epcisBody")
                .and_then(|body| body.get("eventList"))
                .map(Node::items)
                .unwrap_or_default(),
            "/epcisBody/eventList",
        ),
        "EPCISQueryDocument" => (
            DocumentKind::QueryDocument,
            root.get("epcisBody")
                .and_then(|body| body.get("queryResults"))
                .and_then(|results| results.get("resultsBody"))
                .and_then(|body| body.get("eventList"))
                .map(Node::items)
                .unwrap_or_default(),
            "/epcisBody/queryResults/resultsBody/eventList",
        ),
        _ => (DocumentKind::Event, std::slice::from_ref(&root), ""),
    };

    let mut prefixes = Prefixes::standard();
    if kind != DocumentKind::Event
        && let Some(context) = root.get("@context")
    {
        prefixes.add(context);
    }
    let ignored = match kind {
        DocumentKind::Event => Default::default(),
        _ => hash::ignored_fields(&root, &prefixes),
    };
    let events = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let path = if kind == DocumentKind::Event {
                String::new()
            } else {
                format!("{base_path}/{index}")
            };
            Event::from_node(event, &prefixes, &ignored, &path)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let Value::Object(mut header) = value else {
        // The schema admits only objects at the root.
        return Err(EpcisError::Invalid {
            path: "/".to_owned(),
            reason: "an EPCIS document must be a JSON object".to_owned(),
        });
    };
    let context = header.get("@context").cloned().unwrap_or(Value::Null);
    if kind == DocumentKind::Event {
        header.clear();
    } else {
        header.remove("epcisBody");
    }
    Ok(Document {
        kind,
        context,
        header,
        events,
        duplicate_keys,
    })
}

/// The EPCIS event hash ID of an event object, read with `document_context` (the `@context` of
/// the document it came in, `Null` if none): what [`Event::hash`] was at capture, for checking a
/// stored event. A document's `ignoreFields` directive (see [`Event::hash`]) is not applied here.
pub fn event_hash_id(event: &Value, document_context: &Value) -> String {
    let mut prefixes = Prefixes::standard();
    prefixes.add(&Node::from_value(document_context));
    let event = Node::from_value(event);
    if let Some(context) = event.get("@context") {
        prefixes.add(context);
    }
    hash::hash_id(&hash::pre_hash(&event, &prefixes, &Default::default()))
}

/// Renders an `EPCISQueryDocument` (the EPCIS 2.0 query response) holding `events` verbatim,
/// under the standard EPCIS context. No `creationDate` is written: this crate has no clock, and
/// the schema does not require one.
///
/// Events that use prefixes of their original document's context (`example:…`) should carry
/// that context; see [`event_with_context`].
pub fn query_document(events: &[Value], query_name: &str, subscription_id: Option<&str>) -> Value {
    let mut results = Map::new();
    results.insert("queryName".to_owned(), Value::String(query_name.to_owned()));
    if let Some(subscription_id) = subscription_id {
        results.insert(
            "subscriptionID".to_owned(),
            Value::String(subscription_id.to_owned()),
        );
    }
    results.insert("resultsBody".to_owned(), json!({ "eventList": events }));
    json!({
        "@context": [EPCIS_CONTEXT_URL],
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "epcisBody": { "queryResults": results },
    })
}

/// `event` carrying `document_context` as its own `@context` (unless it has one already), so
/// that it can be read on its own, outside the document it came in: in a query response, its
/// CURIEs still resolve. Adding the context does not change the event's hash.
pub fn event_with_context(event: &Value, document_context: &Value) -> Value {
    let mut event = event.clone();
    if let Value::Object(members) = &mut event
        && !document_context.is_null()
        && !members.contains_key("@context")
    {
        members.insert("@context".to_owned(), document_context.clone());
    }
    event
}

/// Milliseconds since the Unix epoch of an EPCIS date-time (RFC 3339, e.g. a query's
/// `GE_eventTime`), read as UTC when it has no offset; `None` if it is not one.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    time::parse_timestamp(text, None).map(time::Instant::epoch_millis)
}
