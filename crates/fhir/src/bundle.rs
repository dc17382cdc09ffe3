//! Bundles a client submits: `transaction`, `batch` or `collection`, each entry's resource
//! parsed by the rules of `parse_resource` and kept as its exact slice of the input.
//!
//! The input is read in passes. The first sees the Bundle's own members and keeps each entry as
//! a `RawValue` (the exact text of that entry); the second does the same for each entry's
//! members and its `resource`; the third parses each resource strictly. So each resource's bytes
//! are a slice of the caller's buffer, never a re-serialisation.

use std::cell::Cell;
use std::collections::BTreeSet;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::FhirError;
use crate::json::{Strict, json_error, position, utf8};
use crate::reference::has_scheme;
use crate::resource::{self, RESOURCE_BYTES_MAX, Resource, parse_text, shape};
use crate::types::{is_id, is_resource_type, is_uuid};

/// The largest Bundle accepted (the API's body limit).
pub const BUNDLE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The most entries one Bundle may hold.
pub const BUNDLE_ENTRIES_MAX: usize = 20_000;

/// The Bundle types a client may submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BundleType {
    /// All entries succeed or fail together.
    Transaction,
    /// Each entry succeeds or fails on its own.
    Batch,
    /// A set of resources with no requests: each is stored as if POSTed.
    Collection,
}

impl BundleType {
    /// The R4 `Bundle.type` code.
    pub fn code(self) -> &'static str {
        match self {
            BundleType::Transaction => "transaction",
            BundleType::Batch => "batch",
            BundleType::Collection => "collection",
        }
    }
}

/// The HTTP methods an entry's request may use: this is a store of records, so only creates and
/// updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Post,
    Put,
}

/// An entry's `request`, checked against its resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// For POST, the resource type; for PUT, `Type/id`.
    pub url: String,
}

impl Request {
    /// The id a PUT names (the part of `Type/id` after the slash); `None` for a POST.
    pub fn id(&self) -> Option<&str> {
        match self.method {
            Method::Post => None,
            Method::Put => self.url.split_once('/').map(|(_, id)| id),
        }
    }
}

/// One entry of a submitted Bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub full_url: Option<String>,
    pub resource: Resource<'a>,
    /// Present exactly when the Bundle is a transaction or a batch.
    pub request: Option<Request>,
}

/// A submitted Bundle, checked entry by entry (references are checked by `resolve_bundle`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub bundle_type: BundleType,
    pub id: Option<String>,
    pub entries: Vec<Entry<'a>>,
}

impl<'a> Bundle<'a> {
    /// A one-entry `collection` holding `resource`, so that a resource submitted alone goes
    /// through `resolve_bundle` with the same rules and errors as one in a Bundle.
    pub fn single(resource: Resource<'a>) -> Bundle<'a> {
        Bundle {
            bundle_type: BundleType::Collection,
            id: None,
            entries: vec![Entry {
                full_url: None,
                resource,
                request: None,
            }],
        }
    }
}

/// Parses a `transaction`, `batch` or `collection` Bundle strictly. Errors about one entry come
/// wrapped in `FhirError::Entry` or `FhirError::EntryResource` with its 0-based index.
pub fn parse_bundle(bytes: &[u8]) -> Result<Bundle<'_>, FhirError> {
    if bytes.len() > BUNDLE_BYTES_MAX {
        return Err(FhirError::TooLarge {
            what: "the bundle",
            got: bytes.len(),
            max: BUNDLE_BYTES_MAX,
        });
    }
    let text = utf8(bytes)?;
    let overflow = Cell::new(false);
    let raw = read(
        text,
        BundleSeed {
            overflow: &overflow,
        },
    );
    if overflow.get() {
        return Err(FhirError::TooManyEntries {
            max: BUNDLE_ENTRIES_MAX,
        });
    }
    let (members, entries) = match raw? {
        Object::Members { members, special } => (members, special),
        Object::Other(found) => return Err(FhirError::NotAnObject { found }),
    };
    let resource_type = resource::resource_type(&members)?;
    if resource_type != "Bundle" {
        return Err(FhirError::NotABundle {
            found: resource_type,
        });
    }
    let id = resource::id(&members)?;
    let bundle_type = match members.get("type") {
        None => {
            return Err(FhirError::MissingField {
                field: "type".to_owned(),
            });
        }
        Some(Value::String(code)) => match code.as_str() {
            "transaction" => BundleType::Transaction,
            "batch" => BundleType::Batch,
            "collection" => BundleType::Collection,
            _ => {
                return Err(FhirError::BundleTypeRefused {
                    found: code.clone(),
                });
            }
        },
        Some(other) => return Err(shape("type", "a string", other)),
    };
    if members.contains_key("total") {
        return Err(FhirError::FieldNotAllowed {
            field: "total".to_owned(),
            reason: "outside a searchset or history bundle (bdl-1)",
        });
    }
    let raw_entries = match entries {
        None => Vec::new(),
        Some(Entries::List(raw_entries)) => raw_entries,
        Some(Entries::Other(found)) => {
            return Err(FhirError::FieldShape {
                field: "entry".to_owned(),
                expected: "an array",
                found,
            });
        }
    };
    let mut parsed = Vec::with_capacity(raw_entries.len());
    for (index, raw_entry) in raw_entries.into_iter().enumerate() {
        parsed.push(entry(text, bundle_type, index, raw_entry.get())?);
    }
    Ok(Bundle {
        bundle_type,
        id,
        entries: parsed,
    })
}

/// Parses entry `index`, whose exact text `entry_text` is a slice of the Bundle's `text`.
fn entry<'a>(
    text: &'a str,
    bundle_type: BundleType,
    index: usize,
    entry_text: &'a str,
) -> Result<Entry<'a>, FhirError> {
    let (members, resource) = match read(entry_text, EntrySeed)
        .map_err(|error| shift(text, entry_text, error).in_entry(index))?
    {
        Object::Members { members, special } => (members, special),
        Object::Other(found) => {
            return Err(FhirError::FieldShape {
                field: format!("entry[{index}]"),
                expected: "an object",
                found,
            });
        }
    };
    let Some(resource) = resource else {
        return Err(FhirError::MissingField {
            field: "resource".to_owned(),
        }
        .in_entry(index));
    };
    let resource_text = resource.get();
    if resource_text.len() > RESOURCE_BYTES_MAX {
        return Err(FhirError::TooLarge {
            what: "the resource",
            got: resource_text.len(),
            max: RESOURCE_BYTES_MAX,
        }
        .in_entry_resource(index));
    }
    let resource = parse_text(resource_text)
        .map_err(|error| shift(text, resource_text, error).in_entry_resource(index))?;
    let check = || -> Result<Entry<'a>, FhirError> {
        for (field, reason) in [
            ("search", "outside a searchset bundle (bdl-2)"),
            ("response", "outside a response bundle (bdl-4)"),
        ] {
            if members.contains_key(field) {
                return Err(FhirError::FieldNotAllowed {
                    field: field.to_owned(),
                    reason,
                });
            }
        }
        let full_url = match members.get("fullUrl") {
            None => None,
            Some(Value::String(full_url)) => {
                check_full_url(full_url, &resource)?;
                Some(full_url.clone())
            }
            Some(other) => return Err(shape("fullUrl", "a string", other)),
        };
        let request = match (bundle_type, members.get("request")) {
            (BundleType::Collection, None) => None,
            (BundleType::Collection, Some(_)) => {
                return Err(FhirError::FieldNotAllowed {
                    field: "request".to_owned(),
                    reason: "in a collection bundle (bdl-3)",
                });
            }
            (_, None) => {
                return Err(FhirError::MissingField {
                    field: "request".to_owned(),
                });
            }
            (_, Some(request)) => Some(check_request(request, &resource)?),
        };
        Ok(Entry {
            full_url,
            resource,
            request,
        })
    };
    check().map_err(|error| error.in_entry(index))
}

/// Checks a `fullUrl` against the FHIR rules and against the resource it names.
fn check_full_url(full_url: &str, resource: &Resource<'_>) -> Result<(), FhirError> {
    let refuse = |reason| {
        Err(FhirError::FullUrl {
            full_url: full_url.to_owned(),
            reason,
        })
    };
    if let Some(uuid) = full_url.strip_prefix("urn:uuid:") {
        if !is_uuid(uuid) {
            return refuse("is not a urn:uuid with a lowercase 8-4-4-4-12 hexadecimal UUID");
        }
        return Ok(());
    }
    if !has_scheme(full_url) {
        return refuse("must be an absolute URL or a urn:uuid");
    }
    if full_url.contains("/_history/") {
        return refuse("must not name a version (bdl-8)");
    }
    // An absolute RESTful URL ends in `Type/id`, which must name this entry's resource.
    let mut segments = full_url.rsplit('/');
    if let (Some(id), Some(resource_type)) = (segments.next(), segments.next())
        && is_resource_type(resource_type)
        && (resource_type != resource.resource_type
            || resource.id.as_deref().is_some_and(|own| own != id))
    {
        return refuse("names a different resource than the entry holds");
    }
    Ok(())
}

/// Checks an entry's `request`: POST to the resource type, or PUT to `Type/id` of this resource.
fn check_request(request: &Value, resource: &Resource<'_>) -> Result<Request, FhirError> {
    let Value::Object(request) = request else {
        return Err(shape("request", "an object", request));
    };
    for (field, reason) in [
        ("ifNoneExist", "conditional create is not supported"),
        ("ifMatch", "version-aware updates are not supported"),
        ("ifNoneMatch", "conditional reads are not supported"),
        ("ifModifiedSince", "conditional reads are not supported"),
    ] {
        if request.contains_key(field) {
            return Err(FhirError::Unsupported {
                field: format!("request.{field}"),
                reason,
            });
        }
    }
    let string = |field: &str| match request.get(field) {
        None => Err(FhirError::MissingField {
            field: format!("request.{field}"),
        }),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(shape(&format!("request.{field}"), "a string", other)),
    };
    let method = match string("method")?.as_str() {
        "POST" => Method::Post,
        "PUT" => Method::Put,
        other => {
            return Err(FhirError::MethodRefused {
                method: other.to_owned(),
            });
        }
    };
    let url = string("url")?;
    let refuse = |reason: String| {
        Err(FhirError::RequestUrl {
            url: url.clone(),
            reason,
        })
    };
    let resource_type = &resource.resource_type;
    match method {
        Method::Post if url != *resource_type => {
            return refuse(format!(
                "must be the resource type {resource_type:?} for a POST"
            ));
        }
        Method::Post => {}
        Method::Put => {
            if url.contains('?') {
                return refuse("is a conditional update, which is not supported".to_owned());
            }
            let Some((url_type, id)) = url.split_once('/') else {
                return refuse(format!("must be {resource_type}/<id> for a PUT"));
            };
            if url_type != resource_type {
                return refuse(format!(
                    "names type {url_type:?} but the entry holds a {resource_type}"
                ));
            }
            if !is_id(id) {
                return refuse(format!("has an invalid id {id:?}"));
            }
            if let Some(own) = &resource.id
                && own != id
            {
                return refuse(format!("names id {id:?} but the resource's id is {own:?}"));
            }
        }
    }
    Ok(Request { method, url })
}

/// Reads one JSON value from `text` with `seed`, refusing trailing data.
fn read<'de, S: DeserializeSeed<'de>>(text: &'de str, seed: S) -> Result<S::Value, FhirError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    seed.deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| json_error(&error))
}

/// Moves the position of a JSON error found in `part` (a slice of `whole`) to where it is in
/// `whole`, so that messages point into what the client sent.
fn shift(whole: &str, part: &str, error: FhirError) -> FhirError {
    let FhirError::Json {
        line,
        column,
        reason,
    } = error
    else {
        return error;
    };
    let offset = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if offset > whole.len() {
        return FhirError::Json {
            line,
            column,
            reason,
        };
    }
    let (line_start, column_start) = position(whole.as_bytes(), offset);
    FhirError::Json {
        line: line_start + line - 1,
        column: if line == 1 {
            column_start - 1 + column
        } else {
            column
        },
        reason,
    }
}

/// A JSON value read by `BundleSeed` or `EntrySeed`: an object's members with one member kept
/// apart, or the kind of a value that was not an object.
enum Object<T> {
    Members {
        members: Map<String, Value>,
        special: Option<T>,
    },
    Other(&'static str),
}

/// `Bundle.entry`: each entry's exact text, or the kind of a value that was not an array.
enum Entries<'a> {
    List(Vec<&'a RawValue>),
    Other(&'static str),
}

/// Reads a Bundle's members, keeping `entry` as raw entries and stopping at
/// `BUNDLE_ENTRIES_MAX + 1` entries (flagging `overflow`).
struct BundleSeed<'s> {
    overflow: &'s Cell<bool>,
}

/// Reads an entry's members, keeping `resource` as its exact text.
struct EntrySeed;

/// Reads `Bundle.entry`.
struct EntriesSeed<'s> {
    overflow: &'s Cell<bool>,
}

/// Generates the `visit_*` methods that report a value of the wrong kind.
macro_rules! other_kinds {
    ($result:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($result("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($result("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($result("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($result("a number"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($result("a string"))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($result("null"))
        }
    };
}

impl<'de, 's> DeserializeSeed<'de> for BundleSeed<'s> {
    type Value = Object<Entries<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 's> Visitor<'de> for BundleSeed<'s> {
    type Value = Object<Entries<'de>>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a Bundle object")
    }

    other_kinds!(Object::Other);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Object::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        members(map, "entry", |map| {
            map.next_value_seed(EntriesSeed {
                overflow: self.overflow,
            })
        })
    }
}

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = Object<&'de RawValue>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = Object<&'de RawValue>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a Bundle entry object")
    }

    other_kinds!(Object::Other);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Object::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        members(map, "resource", |map| map.next_value::<&'de RawValue>())
    }
}

/// Reads an object's members strictly (no duplicate keys), handing the member named `special`
/// to `read_special` and keeping the rest as values.
fn members<'de, A: MapAccess<'de>, T>(
    mut map: A,
    special: &str,
    mut read_special: impl FnMut(&mut A) -> Result<T, A::Error>,
) -> Result<Object<T>, A::Error> {
    let mut members = Map::new();
    let mut special_value = None;
    let mut seen = BTreeSet::new();
    while let Some(key) = map.next_key::<String>()? {
        if !seen.insert(key.clone()) {
            return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
        }
        if key == special {
            special_value = Some(read_special(&mut map)?);
        } else {
            let value = map.next_value_seed(Strict { references: None })?;
            members.insert(key, value);
        }
    }
    Ok(Object::Members {
        members,
        special: special_value,
    })
}

impl<'de, 's> DeserializeSeed<'de> for EntriesSeed<'s> {
    type Value = Entries<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 's> Visitor<'de> for EntriesSeed<'s> {
    type Value = Entries<'de>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an array of Bundle entries")
    }

    other_kinds!(Entries::Other);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Entries::Other("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<&'de RawValue>()? {
            if entries.len() == BUNDLE_ENTRIES_MAX {
                // Stop reading at once rather than hold an unbounded list; the caller turns
                // this into `FhirError::TooManyEntries`.
                self.overflow.set(true);
                return Err(de::Error::custom("too many entries"));
            }
            entries.push(entry);
        }
        Ok(Entries::List(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Summarises a parse as one line: the bundle type and each entry, or the error with its
    /// issue type and expression.
    fn check(input: &str, expected: &str) {
        let got = match parse_bundle(input.as_bytes()) {
            Ok(bundle) => {
                let entries: Vec<String> = bundle
                    .entries
                    .iter()
                    .map(|entry| {
                        let request = match &entry.request {
                            Some(request) => format!("{:?} {}", request.method, request.url),
                            None => "-".to_owned(),
                        };
                        format!(
                            "{} {} {}",
                            entry.resource.resource_type,
                            entry.full_url.as_deref().unwrap_or("-"),
                            request
                        )
                    })
                    .collect();
                format!(
                    "{} id={:?} [{}]",
                    bundle.bundle_type.code(),
                    bundle.id,
                    entries.join(", ")
                )
            }
            Err(error) => format!(
                "{} at {}: {error}",
                error.issue_code(),
                error.expression().as_deref().unwrap_or("-")
            ),
        };
        assert_eq!(got, expected, "input: {input}");
    }

    const UUID: &str = "urn:uuid:00000000-0000-4000-8000-000000000001";

    /// A transaction Bundle with the given entries (JSON text).
    fn transaction(entries: &[&str]) -> String {
        format!(
            r#"{{"resourceType": "Bundle", "type": "transaction", "entry": [{}]}}"#,
            entries.join(", ")
        )
    }

    /// Well-formed Bundles of each accepted type.
    #[test]
    fn accepts() {
        check(
            &transaction(&[
                &format!(
                    r#"{{"fullUrl": "{UUID}", "resource": {{"resourceType": "Patient"}}, "request": {{"method": "POST", "url": "Patient"}}}}"#
                ),
                r#"{"resource": {"resourceType": "Observation", "id": "o1"}, "request": {"method": "PUT", "url": "Observation/o1"}}"#,
                r#"{"fullUrl": "http://example.org/fhir/Observation/o2", "resource": {"resourceType": "Observation"}, "request": {"method": "PUT", "url": "Observation/o2"}}"#,
            ]),
            "transaction id=None [Patient urn:uuid:00000000-0000-4000-8000-000000000001 Post Patient, \
             Observation - Put Observation/o1, Observation http://example.org/fhir/Observation/o2 Put Observation/o2]",
        );
        check(
            r#"{"resourceType": "Bundle", "id": "b1", "type": "batch", "entry": [{"resource": {"resourceType": "Basic"}, "request": {"method": "POST", "url": "Basic"}}]}"#,
            r#"batch id=Some("b1") [Basic - Post Basic]"#,
        );
        check(
            r#"{"resourceType": "Bundle", "type": "collection", "meta": {"lastUpdated": "2020-01-01T00:00:00Z"}, "entry": [{"fullUrl": "urn:oid:1.2.3", "resource": {"resourceType": "Basic"}}]}"#,
            "collection id=None [Basic urn:oid:1.2.3 -]",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "transaction"}"#,
            "transaction id=None []",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "transaction", "entry": []}"#,
            "transaction id=None []",
        );
    }

    /// Each entry's resource keeps its exact bytes, whitespace and escapes included.
    #[test]
    fn keeps_exact_bytes() {
        let resource =
            "{ \"resourceType\" :\"Patient\",\n  \"name\": [{\"text\": \"A\\u00e9\\n\"}] }";
        let input = format!(
            "{{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{{\"resource\": {resource} }}]}}"
        );
        let bundle = parse_bundle(input.as_bytes());
        let bytes = bundle
            .as_ref()
            .ok()
            .map(|bundle| bundle.entries[0].resource.bytes);
        assert_eq!(bytes, Some(resource.as_bytes()));
    }

    /// Refusals at the level of the Bundle itself.
    #[test]
    fn refuses_bundle() {
        check(
            "{",
            "structure at -: not valid JSON at line 1 column 1: EOF while parsing an object",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "batch"} {}"#,
            "structure at -: not valid JSON at line 1 column 45: trailing characters",
        );
        check(
            "[1]",
            "structure at -: a FHIR resource must be a JSON object, found an array",
        );
        check(
            "7",
            "structure at -: a FHIR resource must be a JSON object, found a number",
        );
        check(
            r#"{"type": "batch"}"#,
            "required at resourceType: `resourceType` is required",
        );
        check(
            r#"{"resourceType": "Patient"}"#,
            "invalid at resourceType: expected a Bundle, found a Patient resource",
        );
        check(
            r#"{"resourceType": "Bundel"}"#,
            r#"value at resourceType: unknown resource type "Bundel": not a FHIR R4 resource"#,
        );
        check(
            r#"{"resourceType": "Bundle", "id": "a/b", "type": "batch"}"#,
            r#"value at id: invalid id "a/b": a FHIR id is 1 to 64 ASCII letters, digits, '-' or '.'"#,
        );
        check(
            r#"{"resourceType": "Bundle"}"#,
            "required at type: `type` is required",
        );
        check(
            r#"{"resourceType": "Bundle", "type": ["batch"]}"#,
            "structure at type: `type` must be a string, found an array",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "searchset"}"#,
            r#"not-supported at type: bundle type "searchset" is not accepted; expected transaction, batch or collection"#,
        );
        check(
            r#"{"resourceType": "Bundle", "type": "document"}"#,
            r#"not-supported at type: bundle type "document" is not accepted; expected transaction, batch or collection"#,
        );
        check(
            r#"{"resourceType": "Bundle", "type": "batch", "total": 1}"#,
            "invariant at total: `total` is not allowed outside a searchset or history bundle (bdl-1)",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "batch", "entry": {}}"#,
            "structure at entry: `entry` must be an array, found an object",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "batch", "entry": [{}, 5]}"#,
            "required at Bundle.entry[0].resource: entry 0: `resource` is required",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "batch", "entry": [5]}"#,
            "structure at entry[0]: `entry[0]` must be an object, found a number",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "batch", "type": "batch"}"#,
            r#"structure at -: not valid JSON at line 1 column 50: duplicate key "type""#,
        );
        let many = format!(
            r#"{{"resourceType": "Bundle", "type": "batch", "entry": [{}]}}"#,
            vec!["{}"; BUNDLE_ENTRIES_MAX + 1].join(",")
        );
        check(
            &many,
            "too-costly at entry: the bundle has more than 20000 entries",
        );
        let large = vec![b' '; BUNDLE_BYTES_MAX + 1];
        assert_eq!(
            parse_bundle(&large).err(),
            Some(FhirError::TooLarge {
                what: "the bundle",
                got: BUNDLE_BYTES_MAX + 1,
                max: BUNDLE_BYTES_MAX
            })
        );
    }

    /// Refusals of one entry name the entry and, where there is one, the element.
    #[test]
    fn refuses_entry() {
        let entry = |text: &str| transaction(&[text]);
        check(
            &entry(r#"{"resource": [], "request": {"method": "POST", "url": "Patient"}}"#),
            "structure at Bundle.entry[0].resource: entry 0: a FHIR resource must be a JSON object, found an array",
        );
        check(
            &entry(r#"{"resource": {"resourceType": "Nope"}}"#),
            r#"value at Bundle.entry[0].resource.resourceType: entry 0: unknown resource type "Nope": not a FHIR R4 resource"#,
        );
        check(
            &entry(r#"{"resource": {"resourceType": "Bundle", "type": "batch"}}"#),
            "not-supported at Bundle.entry[0].resource: entry 0: a Bundle is not accepted as a single resource; submit it as a transaction or batch",
        );
        check(
            &entry(r#"{"resource": {"resourceType": "Observation", "subject": "Patient/1"}}"#),
            "structure at Bundle.entry[0].resource.subject: entry 0: `subject` must be an object (a Reference), found a string",
        );
        // Positions inside an entry are positions in the whole input.
        check(
            "{\"resourceType\": \"Bundle\", \"type\": \"batch\", \"entry\": [\n  {\"resource\": {\"resourceType\": \"Basic\", \"id\": \"a\", \"id\": \"b\"}}]}",
            r#"structure at Bundle.entry[0].resource: entry 0: not valid JSON at line 2 column 56: duplicate key "id""#,
        );
        check(
            "{\"resourceType\": \"Bundle\", \"type\": \"batch\", \"entry\": [\n  {\"fullUrl\": \"x\", \"fullUrl\": \"y\"}]}",
            r#"structure at Bundle.entry[0]: entry 0: not valid JSON at line 2 column 28: duplicate key "fullUrl""#,
        );
        let post_patient = r#""resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}"#;
        check(
            &entry(&format!(r#"{{"fullUrl": 1, {post_patient}}}"#)),
            "structure at Bundle.entry[0].fullUrl: entry 0: `fullUrl` must be a string, found a number",
        );
        check(
            &entry(&format!(
                r#"{{"fullUrl": "urn:uuid:0000", {post_patient}}}"#
            )),
            r#"value at Bundle.entry[0].fullUrl: entry 0: fullUrl "urn:uuid:0000" is not a urn:uuid with a lowercase 8-4-4-4-12 hexadecimal UUID"#,
        );
        check(
            &entry(&format!(r#"{{"fullUrl": "Patient/1", {post_patient}}}"#)),
            r#"value at Bundle.entry[0].fullUrl: entry 0: fullUrl "Patient/1" must be an absolute URL or a urn:uuid"#,
        );
        check(
            &entry(&format!(
                r#"{{"fullUrl": "http://x.org/Patient/1/_history/2", {post_patient}}}"#
            )),
            r#"value at Bundle.entry[0].fullUrl: entry 0: fullUrl "http://x.org/Patient/1/_history/2" must not name a version (bdl-8)"#,
        );
        check(
            &entry(&format!(
                r#"{{"fullUrl": "http://x.org/Observation/1", {post_patient}}}"#
            )),
            r#"value at Bundle.entry[0].fullUrl: entry 0: fullUrl "http://x.org/Observation/1" names a different resource than the entry holds"#,
        );
        check(
            &entry(
                r#"{"fullUrl": "http://x.org/Patient/1", "resource": {"resourceType": "Patient", "id": "2"}, "request": {"method": "PUT", "url": "Patient/2"}}"#,
            ),
            r#"value at Bundle.entry[0].fullUrl: entry 0: fullUrl "http://x.org/Patient/1" names a different resource than the entry holds"#,
        );
        check(
            &entry(r#"{"resource": {"resourceType": "Patient"}}"#),
            "required at Bundle.entry[0].request: entry 0: `request` is required",
        );
        check(
            r#"{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}"#,
            "invariant at Bundle.entry[0].request: entry 0: `request` is not allowed in a collection bundle (bdl-3)",
        );
        check(
            &entry(&format!(
                r#"{{"search": {{"mode": "match"}}, {post_patient}}}"#
            )),
            "invariant at Bundle.entry[0].search: entry 0: `search` is not allowed outside a searchset bundle (bdl-2)",
        );
        check(
            &entry(&format!(
                r#"{{"response": {{"status": "200"}}, {post_patient}}}"#
            )),
            "invariant at Bundle.entry[0].response: entry 0: `response` is not allowed outside a response bundle (bdl-4)",
        );
        let request = |request: &str| {
            entry(&format!(
                r#"{{"resource": {{"resourceType": "Patient", "id": "p"}}, "request": {request}}}"#
            ))
        };
        check(
            &request(r#""POST Patient""#),
            "structure at Bundle.entry[0].request: entry 0: `request` must be an object, found a string",
        );
        check(
            &request(r#"{"url": "Patient"}"#),
            "required at Bundle.entry[0].request.method: entry 0: `request.method` is required",
        );
        check(
            &request(r#"{"method": 1, "url": "Patient"}"#),
            "structure at Bundle.entry[0].request.method: entry 0: `request.method` must be a string, found a number",
        );
        check(
            &request(r#"{"method": "DELETE", "url": "Patient/p"}"#),
            r#"not-supported at Bundle.entry[0].request.method: entry 0: request method "DELETE" is not accepted: this server stores records and takes only POST and PUT"#,
        );
        check(
            &request(r#"{"method": "GET", "url": "Patient/p"}"#),
            r#"not-supported at Bundle.entry[0].request.method: entry 0: request method "GET" is not accepted: this server stores records and takes only POST and PUT"#,
        );
        check(
            &request(r#"{"method": "POST"}"#),
            "required at Bundle.entry[0].request.url: entry 0: `request.url` is required",
        );
        check(
            &request(r#"{"method": "POST", "url": "Observation"}"#),
            r#"value at Bundle.entry[0].request.url: entry 0: request url "Observation" must be the resource type "Patient" for a POST"#,
        );
        check(
            &request(r#"{"method": "PUT", "url": "Patient"}"#),
            r#"value at Bundle.entry[0].request.url: entry 0: request url "Patient" must be Patient/<id> for a PUT"#,
        );
        check(
            &request(r#"{"method": "PUT", "url": "Observation/p"}"#),
            r#"value at Bundle.entry[0].request.url: entry 0: request url "Observation/p" names type "Observation" but the entry holds a Patient"#,
        );
        check(
            &request(r#"{"method": "PUT", "url": "Patient/p/q"}"#),
            r#"value at Bundle.entry[0].request.url: entry 0: request url "Patient/p/q" has an invalid id "p/q""#,
        );
        check(
            &request(r#"{"method": "PUT", "url": "Patient/q"}"#),
            r#"value at Bundle.entry[0].request.url: entry 0: request url "Patient/q" names id "q" but the resource's id is "p""#,
        );
        check(
            &request(r#"{"method": "PUT", "url": "Patient?identifier=x"}"#),
            r#"value at Bundle.entry[0].request.url: entry 0: request url "Patient?identifier=x" is a conditional update, which is not supported"#,
        );
        check(
            &request(r#"{"method": "POST", "url": "Patient", "ifNoneExist": "identifier=x"}"#),
            "not-supported at Bundle.entry[0].request.ifNoneExist: entry 0: `request.ifNoneExist` is not supported: conditional create is not supported",
        );
    }

    /// Hostile nesting inside an entry's resource ends in an error, not a stack overflow.
    #[test]
    fn refuses_deep_nesting() {
        let depth = 100_000;
        let input = format!(
            r#"{{"resourceType": "Bundle", "type": "collection", "entry": [{{"resource": {{"resourceType": "Basic", "extension": {}{}}}}}]}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let error = parse_bundle(input.as_bytes()).err();
        assert!(
            matches!(&error, Some(FhirError::EntryResource { index: 0, error })
                if error.to_string().ends_with("recursion limit exceeded")),
            "{error:?}"
        );
    }

    /// A resource over the size limit inside a Bundle is refused as that entry's resource.
    #[test]
    fn refuses_large_entry() {
        let padding = " ".repeat(RESOURCE_BYTES_MAX);
        let input = format!(
            r#"{{"resourceType": "Bundle", "type": "collection", "entry": [{{"resource": {{"resourceType": "Basic",{padding}"id": "a"}}}}]}}"#
        );
        let error = parse_bundle(input.as_bytes()).err();
        assert_eq!(
            error.as_ref().map(ToString::to_string),
            Some(format!(
                "entry 0: the resource is {} bytes, over the limit of {RESOURCE_BYTES_MAX}",
                RESOURCE_BYTES_MAX + 35
            ))
        );
        assert_eq!(error.map(|error| error.issue_code()), Some("too-costly"));
    }
}
