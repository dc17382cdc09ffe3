//! HIPAA Safe Harbor de-identification (45 CFR 164.514(b)(2)) of FHIR R4 resources for a research
//! release, e.g. FHIR Bulk Data NDJSON: pure functions from JSON to JSON, with no IO.
//!
//! The rules, applied to every resource type alike:
//!
//! - **Ids** become [`Pseudonymizer::pseudonym`]s: HMAC-SHA256 under a key the caller derives per
//!   release, so one release is internally consistent (a reference `Type/id` becomes
//!   `Type/<pseudonym>` and still resolves) while two releases cannot be linked. `urn:uuid:`
//!   references resolve through the Bundle's `fullUrl`s ([`deidentify_bundle`]) or the
//!   Reference's `type`; contained references `#id` get a local pseudonym. Conditional, absolute
//!   and malformed references are removed, since they name identifiers or URLs and resolve to
//!   nothing in the release. Of a Reference only `reference` and `type` remain.
//! - **Removed wherever they appear:** `identifier` and every element whose name ends in
//!   `Identifier` (MRN, SSN, licences, passports, device identifiers), `name`, `telecom`,
//!   `photo`, `contact`, `text` (narrative and CodeableConcept text), `meta`, `note`,
//!   `signature`, `udiCarrier`, `deviceName`, elements ending in `Number` (serial, lot, model),
//!   `position` and coordinates, `data` (attachment content), `url` outside an extension,
//!   `multipleBirthInteger`, element ids and primitive extensions (`_birthDate`), and any member
//!   whose name is no R4 element's (per the vendored R4 schema), whatever it holds.
//! - **Strings are removed unless known to be safe:** dates, and values of elements that hold
//!   codes ([`CODE_ELEMENTS`], a Coding's `display`). Everything else (`valueString`,
//!   `description`, `title`, `uid`, `altId`, ...) is free text or an identifier.
//! - **Dates**, the values of every R4 date, dateTime and instant element (known by name from
//!   the schema, and by shape `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss...`),
//!   become the year alone; a date-shaped string anywhere else is removed.
//!   Instant-typed elements (`issued`, `recorded`, `DocumentReference.date`, ...) cannot hold a
//!   year, so they are removed; choice elements `xInstant` become `xDateTime`. A `birthDate`
//!   is removed when the person is or may be 90 or older in `reference_year` (nothing replaces
//!   it), and ages in years of 90 or more read `>= 90`.
//! - **Addresses** keep only `state`, `country` and the first three digits of a US ZIP code, or
//!   `000` for the [`RESTRICTED_ZIP3`] areas of 20,000 people or fewer.
//! - **Extensions** are removed except [`EXTENSIONS_KEPT`] (race, ethnicity, birth sex), whose
//!   free text is removed like any other. A `modifierExtension` refuses the resource: it
//!   changes the meaning of its element, so removing it would misstate the record.
//! - Numbers and booleans are kept (measurements, sequences, flags); emptied objects and arrays
//!   are removed, so the result is still FHIR JSON. It may lack elements R4 requires (a
//!   Provenance without `recorded`): a smaller record is the price of leaking nothing.
//!
//! Removal, not masking, is the rule throughout: a masked value (`"Jo***"`, a shifted date)
//! still carries part of the identifier and needs a proof that the part is harmless, while an
//! absent one needs none. Anything this module does not recognise is removed for the same reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use medledger_crypto::envelope::BlindKey;
use serde_json::{Map, Value};

use crate::error::FhirError;
use crate::reference::{ReferenceKind, classify_reference};
use crate::types::is_resource_type;

/// How deep elements may nest. R4 resources nest about fifteen levels; the bound keeps the
/// recursion from exhausting the stack on a hostile value.
pub const DEIDENTIFY_DEPTH_MAX: usize = 64;

/// The oldest age Safe Harbor lets a release show; older people are "90 or older".
pub const AGE_YEARS_MAX: i32 = 89;

/// The three-digit ZIP areas of 20,000 people or fewer (HHS guidance, 2000 census), written as
/// `000`.
pub const RESTRICTED_ZIP3: &[&str] = &[
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// The extensions kept: demographic codes that identify nobody.
pub const EXTENSIONS_KEPT: &[&str] = &[
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
];

/// Elements whose string values are codes from a vocabulary, which identify nobody.
pub const CODE_ELEMENTS: &[&str] = &[
    "category",
    "code",
    "comparator",
    "contentType",
    "criticality",
    "currency",
    "dayOfWeek",
    "docStatus",
    "durationUnit",
    "gender",
    "intent",
    "language",
    "lifecycleStatus",
    "mode",
    "outcome",
    "periodUnit",
    "priority",
    "severity",
    "status",
    "system",
    "type",
    "unit",
    "use",
    "valueCode",
    "version",
    "when",
];

/// Elements removed whatever their value holds.
const REMOVED_ELEMENTS: &[&str] = &[
    "contact",
    "data",
    "deviceName",
    "meta",
    "multipleBirthInteger",
    "name",
    "note",
    "photo",
    "position",
    "signature",
    "telecom",
    "text",
    "udiCarrier",
    "latitude",
    "longitude",
    "altitude",
];

/// Instant-typed elements, as (resource type or `*`, element of the resource): R4 requires
/// full precision there, so a year cannot stand in and the element is removed.
const INSTANT_ELEMENTS: &[(&str, &str)] = &[
    ("*", "issued"),
    ("*", "recorded"),
    ("*", "lastUpdated"),
    ("*", "timestamp"),
    ("DocumentReference", "date"),
    ("Appointment", "start"),
    ("Appointment", "end"),
    ("AppointmentResponse", "start"),
    ("AppointmentResponse", "end"),
    ("Slot", "start"),
    ("Slot", "end"),
    ("Subscription", "end"),
];

const PSEUDONYM_TAG: &[u8] = b"medledger/fhir-pseudonym/v1";
const CONTAINED_TAG: &[u8] = b"medledger/fhir-contained-id/v1";

/// How many bytes of the HMAC a pseudonym keeps: 128 bits make a collision within one release
/// negligible, and 32 hex digits are a valid FHIR id.
const PSEUDONYM_BYTES: usize = 16;

/// Replaces ids: stable within one release, unlinkable across releases. The caller derives the
/// key for each release (request) from a node secret; `Debug` never shows it.
#[derive(Debug, Clone)]
pub struct Pseudonymizer {
    key: BlindKey,
}

impl Pseudonymizer {
    pub fn new(key: [u8; 32]) -> Self {
        Pseudonymizer { key: BlindKey(key) }
    }

    /// The pseudonym of `resource_type/id`: 32 lowercase hex digits (a valid FHIR id), the same
    /// for the same key and inputs, and unguessable without the key.
    pub fn pseudonym(&self, resource_type: &str, id: &str) -> String {
        self.keyed(PSEUDONYM_TAG, resource_type, id)
    }

    /// The pseudonym of a contained resource's local id, which has no resource type.
    fn local(&self, id: &str) -> String {
        self.keyed(CONTAINED_TAG, "", id)
    }

    fn keyed(&self, tag: &[u8], resource_type: &str, id: &str) -> String {
        let mac = self
            .key
            .blind(tag, &[resource_type.as_bytes(), id.as_bytes()]);
        mac.as_bytes()[..PSEUDONYM_BYTES]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// De-identifies one resource. A `urn:uuid:` reference resolves only through the Reference's
/// `type`; use [`deidentify_bundle`] to resolve them through the Bundle's `fullUrl`s.
///
/// `reference_year` is the release's year (its block's), against which ages are judged.
pub fn deidentify(
    resource: &Value,
    pseudonymizer: &Pseudonymizer,
    reference_year: i32,
) -> Result<Value, FhirError> {
    let release = Release {
        pseudonymizer,
        reference_year,
        full_urls: BTreeMap::new(),
    };
    Ok(Value::Object(release.resource(
        as_object(resource)?,
        Scope::Top,
        0,
    )?))
}

/// De-identifies every entry's resource of a Bundle, in order: the lines of an NDJSON release.
/// An entry's `urn:uuid:` fullUrl stands for its resource, so references to it resolve to the
/// resource's pseudonymised id; an entry without a resource is skipped.
pub fn deidentify_bundle(
    bundle: &Value,
    pseudonymizer: &Pseudonymizer,
    reference_year: i32,
) -> Result<Vec<Value>, FhirError> {
    let bundle = as_object(bundle)?;
    match bundle.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {}
        found => {
            return Err(FhirError::NotABundle {
                found: found.unwrap_or("untyped").to_owned(),
            });
        }
    }
    let entries: &[Value] = match bundle.get("entry") {
        None => &[],
        Some(Value::Array(entries)) => entries,
        Some(other) => return Err(shape("entry", "an array", other)),
    };
    // The resource each entry stands for, with the id its pseudonym is made from: the
    // resource's own id if it has one, else the UUID of its fullUrl.
    let mut full_urls = BTreeMap::new();
    for entry in entries {
        let resource = entry.get("resource");
        let resource_type = resource
            .and_then(|r| r.get("resourceType"))
            .and_then(Value::as_str);
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        if let (Some(resource_type), Some(full_url)) = (resource_type, full_url)
            && let Some(uuid) = full_url.strip_prefix("urn:uuid:")
        {
            let id = resource.and_then(|r| r.get("id")).and_then(Value::as_str);
            full_urls.insert(full_url, (resource_type, id.unwrap_or(uuid)));
        }
    }
    let release = Release {
        pseudonymizer,
        reference_year,
        full_urls,
    };
    let mut resources = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(resource) = entry.get("resource") else {
            continue;
        };
        let object = as_object(resource).map_err(|error| error.in_entry_resource(index))?;
        let mut out = release
            .resource(object, Scope::Top, 0)
            .map_err(|error| error.in_entry_resource(index))?;
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        if let Some(&(resource_type, id)) = full_url.and_then(|url| release.full_urls.get(url)) {
            let pseudonym = pseudonymizer.pseudonym(resource_type, id);
            out.insert("id".to_owned(), Value::String(pseudonym));
        }
        resources.push(Value::Object(out));
    }
    Ok(resources)
}

/// Whether a resource is a release's own (its id is pseudonymised with its type) or contained in
/// another (its id is local to the container and pseudonymised as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Top,
    Contained,
}

/// One release: the pseudonymizer, the year ages are judged in, and the Bundle's `urn:uuid:`
/// fullUrls as (resource type, id).
struct Release<'a> {
    pseudonymizer: &'a Pseudonymizer,
    reference_year: i32,
    full_urls: BTreeMap<&'a str, (&'a str, &'a str)>,
}

impl Release<'_> {
    fn resource(
        &self,
        object: &Map<String, Value>,
        scope: Scope,
        depth: usize,
    ) -> Result<Map<String, Value>, FhirError> {
        let resource_type = match object.get("resourceType") {
            Some(Value::String(name)) => name.as_str(),
            Some(other) => return Err(shape("resourceType", "a string", other)),
            None => {
                return Err(FhirError::MissingField {
                    field: "resourceType".to_owned(),
                });
            }
        };
        if !is_resource_type(resource_type) {
            return Err(FhirError::UnknownResourceType {
                name: resource_type.to_owned(),
            });
        }
        if resource_type == "Bundle" {
            return Err(FhirError::Unsupported {
                field: "resourceType".to_owned(),
                reason: "a Bundle is de-identified entry by entry, with deidentify_bundle",
            });
        }
        let mut out = Map::new();
        out.insert("resourceType".to_owned(), Value::from(resource_type));
        for (key, value) in object {
            let instant = INSTANT_ELEMENTS
                .iter()
                .any(|&(kind, element)| (kind == "*" || kind == resource_type) && element == key);
            match key.as_str() {
                "resourceType" => {}
                _ if instant => {}
                "id" => {
                    if let Some(id) = value.as_str() {
                        let pseudonym = match scope {
                            Scope::Top => self.pseudonymizer.pseudonym(resource_type, id),
                            Scope::Contained => self.pseudonymizer.local(id),
                        };
                        out.insert("id".to_owned(), Value::String(pseudonym));
                    }
                }
                _ => {
                    if let Some((key, value)) = self.member(key, value, depth + 1)? {
                        out.insert(key, value);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One member of an object, renamed where its type changes (`xInstant` to `xDateTime`), or
    /// `None` when it is removed.
    fn member(
        &self,
        key: &str,
        value: &Value,
        depth: usize,
    ) -> Result<Option<(String, Value)>, FhirError> {
        check_depth(key, depth)?;
        let lowercase = key.to_ascii_lowercase();
        if !is_element_name(key)
            || REMOVED_ELEMENTS.contains(&key)
            || lowercase.ends_with("identifier")
            || lowercase.ends_with("number")
        {
            return Ok(None);
        }
        let kept = match key {
            "modifierExtension" => {
                return Err(FhirError::Unsupported {
                    field: key.to_owned(),
                    reason: "a modifier extension changes its element's meaning, so it cannot be removed",
                });
            }
            "extension" => self.extensions(value, true, depth)?,
            _ if key == "address" || key.ends_with("Address") => {
                map_items(value, |item| Ok(address(item)))?
            }
            "birthDate" => value.as_str().and_then(|date| self.birth_date(date)),
            "contained" => map_items(value, |item| match item {
                Value::Object(object) => Ok(Some(Value::Object(self.resource(
                    object,
                    Scope::Contained,
                    depth + 1,
                )?))),
                _ => Ok(None),
            })?,
            _ => self.value(key, value, depth)?,
        };
        let key = match key.strip_suffix("Instant") {
            Some(choice) => format!("{choice}DateTime"),
            None => key.to_owned(),
        };
        Ok(kept.map(|value| (key, value)))
    }

    /// A value of element `key` (an array's items are values of the same element).
    fn value(&self, key: &str, value: &Value, depth: usize) -> Result<Option<Value>, FhirError> {
        check_depth(key, depth)?;
        Ok(match value {
            Value::Null => None,
            Value::Bool(_) | Value::Number(_) => Some(value.clone()),
            Value::String(text) => string(key, text).map(Value::String),
            Value::Array(_) => map_items(value, |item| self.value(key, item, depth + 1))?,
            Value::Object(object) => self.object(object, depth + 1)?,
        })
    }

    fn object(
        &self,
        object: &Map<String, Value>,
        depth: usize,
    ) -> Result<Option<Value>, FhirError> {
        if object.contains_key("resourceType") {
            return Ok(Some(Value::Object(self.resource(
                object,
                Scope::Top,
                depth,
            )?)));
        }
        if let Some(Value::String(reference)) = object.get("reference") {
            return Ok(self.reference(reference, object.get("type")));
        }
        // A Coding's display is the vocabulary's text; anywhere else (a Reference's) it is free
        // text, often a person's name.
        let coding = object.contains_key("code") || object.contains_key("system");
        let mut out = Map::new();
        for (key, value) in object {
            match key.as_str() {
                "id" | "url" => {}
                "display" if !coding => {}
                "display" => {
                    if let Some(display) = value.as_str() {
                        out.insert(key.clone(), Value::from(display));
                    }
                }
                _ => {
                    if let Some((key, value)) = self.member(key, value, depth + 1)? {
                        out.insert(key, value);
                    }
                }
            }
        }
        cap_age(&mut out);
        Ok((!out.is_empty()).then_some(Value::Object(out)))
    }

    /// A Reference as `{reference, type}` with the target's pseudonym, or `None` when the
    /// target cannot be named within the release.
    fn reference(&self, reference: &str, type_hint: Option<&Value>) -> Option<Value> {
        let type_hint = type_hint
            .and_then(Value::as_str)
            .filter(|name| is_resource_type(name));
        let reference = match classify_reference(reference) {
            ReferenceKind::Contained => match &reference[1..] {
                "" => "#".to_owned(),
                id => format!("#{}", self.pseudonymizer.local(id)),
            },
            ReferenceKind::Relative {
                resource_type, id, ..
            } => format!(
                "{resource_type}/{}",
                self.pseudonymizer.pseudonym(resource_type, id)
            ),
            ReferenceKind::Uuid => {
                let (resource_type, id) = match self.full_urls.get(reference) {
                    Some(&target) => target,
                    None => (type_hint?, reference.strip_prefix("urn:uuid:")?),
                };
                format!(
                    "{resource_type}/{}",
                    self.pseudonymizer.pseudonym(resource_type, id)
                )
            }
            ReferenceKind::Conditional | ReferenceKind::Absolute | ReferenceKind::Malformed => {
                return None;
            }
        };
        let mut out = Map::new();
        out.insert("reference".to_owned(), Value::String(reference));
        if let Some(resource_type) = type_hint {
            out.insert("type".to_owned(), Value::from(resource_type));
        }
        Some(Value::Object(out))
    }

    /// Extensions: at the top level only [`EXTENSIONS_KEPT`]; inside a kept one, its parts.
    fn extensions(
        &self,
        value: &Value,
        top: bool,
        depth: usize,
    ) -> Result<Option<Value>, FhirError> {
        map_items(value, |item| {
            let Some(object) = item.as_object() else {
                return Ok(None);
            };
            let Some(url) = object.get("url").and_then(Value::as_str) else {
                return Ok(None);
            };
            if top && !EXTENSIONS_KEPT.contains(&url) {
                return Ok(None);
            }
            let mut out = Map::new();
            for (key, value) in object {
                let kept = match key.as_str() {
                    "url" | "id" => None,
                    "extension" => self
                        .extensions(value, false, depth + 1)?
                        .map(|parts| (key.clone(), parts)),
                    _ => self.member(key, value, depth + 1)?,
                };
                if let Some((key, value)) = kept {
                    out.insert(key, value);
                }
            }
            // An extension whose value was removed is removed too: R4 requires one or the other.
            if out.is_empty() {
                return Ok(None);
            }
            out.insert("url".to_owned(), Value::from(url));
            Ok(Some(Value::Object(out)))
        })
    }

    /// The year of birth, unless the person is or may be over 89 in the release's year: then
    /// nothing, since even the year would single out the very old.
    fn birth_date(&self, date: &str) -> Option<Value> {
        let year = date_year(date)?;
        let born: i32 = year.parse().ok()?;
        let age_max = self.reference_year.checked_sub(born)?;
        (age_max <= AGE_YEARS_MAX).then(|| Value::from(year))
    }
}

/// What the official R4 schema says about element names: every name some type defines, and the
/// names of date, dateTime and instant elements (a choice element shows its type only by its
/// pattern). Primitive extensions (`_birthDate`) are not elements here: they are removed.
#[derive(Default)]
struct Elements {
    all: BTreeSet<&'static str>,
    dates: BTreeSet<&'static str>,
}

static ELEMENTS: LazyLock<Elements> = LazyLock::new(|| {
    let definitions = &crate::validate::r4_schema()["definitions"];
    let date_types = ["date", "dateTime", "instant"];
    let date_refs = date_types.map(|name| format!("#/definitions/{name}"));
    let date_patterns = date_types.map(|name| &definitions[name]["pattern"]);
    let mut elements = Elements::default();
    for definition in definitions.as_object().into_iter().flat_map(Map::values) {
        for (name, property) in definition["properties"].as_object().into_iter().flatten() {
            if name.starts_with('_') {
                continue;
            }
            elements.all.insert(name);
            let reference = property
                .get("$ref")
                .or_else(|| property["items"].get("$ref"))
                .and_then(Value::as_str);
            if reference.is_some_and(|reference| date_refs.iter().any(|date| date == reference))
                || property
                    .get("pattern")
                    .is_some_and(|pattern| date_patterns.contains(&pattern))
            {
                elements.dates.insert(name);
            }
        }
    }
    elements
});

/// Whether `key` names an element of some R4 type, so that a made-up member (`"ssn":
/// 999342070`, a date as a key) is removed with whatever it holds.
fn is_element_name(key: &str) -> bool {
    ELEMENTS.all.contains(key)
}

/// A string of element `key`, if it may be kept: the year of a date element's value, or a code
/// (which is never shaped like a full date, so a date cannot hide there). Any other string, even
/// a four-digit one such as an AuditEvent's `altId`, is free text or an identifier.
fn string(key: &str, text: &str) -> Option<String> {
    let year = date_year(text);
    if ELEMENTS.dates.contains(key)
        && let Some(year) = year
    {
        return Some(year.to_owned());
    }
    let date_shaped = year.is_some() && text.len() > 4;
    (CODE_ELEMENTS.contains(&key) && !date_shaped).then(|| text.to_owned())
}

/// The year of a FHIR date, dateTime or instant (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a full
/// date followed by `T` and a time), or `None` for anything else.
fn date_year(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let dash = |at: usize| bytes.get(at) == Some(&b'-');
    let date = digits(0..4)
        && match bytes.len() {
            4 => true,
            7 => dash(4) && digits(5..7),
            10 => dash(4) && digits(5..7) && dash(7) && digits(8..10),
            _ => {
                dash(4)
                    && digits(5..7)
                    && dash(7)
                    && digits(8..10)
                    && bytes.get(10) == Some(&b'T')
                    && bytes[11..]
                        .iter()
                        .all(|&byte| byte.is_ascii_digit() || b":.+-Z".contains(&byte))
            }
        };
    date.then(|| &text[..4])
}

/// An Address reduced to what Safe Harbor allows: `state`, `country` and a three-digit ZIP.
fn address(value: &Value) -> Option<Value> {
    let object = value.as_object()?;
    let mut out = Map::new();
    for key in ["state", "country"] {
        if let Some(text) = object.get(key).and_then(Value::as_str) {
            out.insert(key.to_owned(), Value::from(text));
        }
    }
    if let Some(zip3) = object
        .get("postalCode")
        .and_then(Value::as_str)
        .and_then(zip3)
    {
        out.insert("postalCode".to_owned(), Value::from(zip3));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// The first three digits of a US ZIP code (`12345`, `12345-6789` or `123456789`), `000` for a
/// restricted area, or `None` for any other postal code, which Safe Harbor gives no rule to keep.
fn zip3(postal_code: &str) -> Option<&str> {
    let code = postal_code.trim();
    let bytes = code.as_bytes();
    let digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    let us = match bytes.len() {
        5 | 9 => digits(bytes),
        10 => digits(&bytes[..5]) && bytes[5] == b'-' && digits(&bytes[6..]),
        _ => false,
    };
    let prefix = code.get(..3).filter(|_| us)?;
    Some(if RESTRICTED_ZIP3.contains(&prefix) {
        "000"
    } else {
        prefix
    })
}

/// Ages in years of 90 or more become `>= 90`, Safe Harbor's single category for the very old.
/// An age is any Quantity (an `Age`, or a value) whose unit is the year.
fn cap_age(quantity: &mut Map<String, Value>) {
    let years = ["code", "unit"].iter().any(|key| {
        let unit = quantity.get(*key).and_then(Value::as_str);
        matches!(unit, Some("a" | "yr" | "year" | "years"))
    });
    let value = quantity.get("value").and_then(Value::as_f64);
    if years && value.is_some_and(|age| age >= f64::from(AGE_YEARS_MAX + 1)) {
        quantity.insert("value".to_owned(), Value::from(AGE_YEARS_MAX + 1));
        quantity.insert("comparator".to_owned(), Value::from(">="));
    }
}

/// Applies `item` to a value or to each item of an array, removing what it removes and an
/// array left empty.
fn map_items(
    value: &Value,
    mut item: impl FnMut(&Value) -> Result<Option<Value>, FhirError>,
) -> Result<Option<Value>, FhirError> {
    match value {
        Value::Array(items) => {
            let mut kept = Vec::new();
            for each in items {
                if let Some(value) = item(each)? {
                    kept.push(value);
                }
            }
            Ok((!kept.is_empty()).then_some(Value::Array(kept)))
        }
        _ => item(value),
    }
}

/// Refuses elements nested deeper than [`DEIDENTIFY_DEPTH_MAX`], which no R4 resource needs.
fn check_depth(key: &str, depth: usize) -> Result<(), FhirError> {
    if depth > DEIDENTIFY_DEPTH_MAX {
        return Err(FhirError::Unsupported {
            field: key.to_owned(),
            reason: "elements nested more than 64 levels deep",
        });
    }
    Ok(())
}

fn as_object(value: &Value) -> Result<&Map<String, Value>, FhirError> {
    value.as_object().ok_or(FhirError::NotAnObject {
        found: json_kind(value),
    })
}

fn shape(field: &str, expected: &'static str, found: &Value) -> FhirError {
    FhirError::FieldShape {
        field: field.to_owned(),
        expected,
        found: json_kind(found),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const YEAR: i32 = 2025;

    fn pseudonymizer() -> Pseudonymizer {
        Pseudonymizer::new([7; 32])
    }

    fn p(resource_type: &str, id: &str) -> String {
        pseudonymizer().pseudonym(resource_type, id)
    }

    /// De-identifies `input` and compares it with `expected`.
    fn check(input: Value, expected: Value) {
        let got = deidentify(&input, &pseudonymizer(), YEAR).expect("de-identifies");
        assert_eq!(got, expected, "input: {input:#}");
    }

    /// Pseudonyms are valid FHIR ids, stable for one key, and differ across keys and types.
    #[test]
    fn pseudonyms() {
        let id = p("Patient", "d5582579-7193-4866-5560-a01e723b6552");
        assert!(crate::is_id(&id), "{id}");
        assert_eq!(id, p("Patient", "d5582579-7193-4866-5560-a01e723b6552"));
        assert_ne!(id, p("Encounter", "d5582579-7193-4866-5560-a01e723b6552"));
        assert_ne!(
            id,
            Pseudonymizer::new([8; 32])
                .pseudonym("Patient", "d5582579-7193-4866-5560-a01e723b6552")
        );
        // The type and the id are length-prefixed, so moving a character across does not collide.
        assert_ne!(p("Patient", "ab"), p("Patienta", "b"));
        assert_eq!(
            format!("{:?}", pseudonymizer()),
            "Pseudonymizer { key: BlindKey(..) }"
        );
    }

    /// Ids and references become pseudonyms; references that cannot resolve are removed.
    #[test]
    fn ids_and_references() {
        let uuid = "urn:uuid:00000000-0000-4000-8000-000000000001";
        check(
            json!({"resourceType": "Observation", "id": "o1",
                   "subject": {"reference": "Patient/p1", "display": "Mr. Jo Smith",
                               "identifier": {"value": "MRN-1"}},
                   "encounter": {"reference": "Encounter/e1/_history/3"},
                   "performer": [{"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|99"},
                                 {"reference": "https://example.org/fhir/Practitioner/1"},
                                 {"reference": uuid, "type": "Practitioner"},
                                 {"reference": uuid},
                                 {"reference": "#c1"},
                                 {"display": "Dr. Who"}],
                   "basedOn": [{"reference": "Unknown/1"}]}),
            json!({"resourceType": "Observation", "id": p("Observation", "o1"),
                   "subject": {"reference": format!("Patient/{}", p("Patient", "p1"))},
                   "encounter": {"reference": format!("Encounter/{}", p("Encounter", "e1"))},
                   "performer": [
                       {"reference": format!("Practitioner/{}", p("Practitioner", &uuid[9..])),
                        "type": "Practitioner"},
                       {"reference": format!("#{}", pseudonymizer().local("c1"))}]}),
        );
        // A contained resource's id is local to its container, like the `#` references to it.
        check(
            json!({"resourceType": "ExplanationOfBenefit", "id": "x",
                   "contained": [{"resourceType": "Coverage", "id": "coverage", "status": "active",
                                  "payor": [{"display": "Cigna Health"}]}, 7],
                   "insurance": [{"focal": true, "coverage": {"reference": "#coverage"}}]}),
            json!({"resourceType": "ExplanationOfBenefit", "id": p("ExplanationOfBenefit", "x"),
                   "contained": [{"resourceType": "Coverage", "status": "active",
                                  "id": pseudonymizer().local("coverage")}],
                   "insurance": [{"focal": true,
                                  "coverage": {"reference": format!("#{}", pseudonymizer().local("coverage"))}}]}),
        );
    }

    /// Identifiers, names, contact details, narrative, notes and element ids are removed.
    #[test]
    fn identifying_elements() {
        check(
            json!({"resourceType": "Patient", "id": "p",
                   "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
                            "lastUpdated": "2020-01-01T00:00:00Z"},
                   "text": {"status": "generated", "div": "<div>Jo Smith</div>"},
                   "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-34-2070"}],
                   "name": [{"use": "official", "family": "Smith", "given": ["Jo"]}],
                   "telecom": [{"system": "phone", "value": "555-450-5873", "use": "home"}],
                   "photo": [{"contentType": "image/jpeg", "data": "AAAA"}],
                   "contact": [{"name": {"family": "Smith"}}],
                   "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                                 "valueDateTime": "1950-10-24T10:00:00Z"}]},
                   "gender": "male", "multipleBirthInteger": 2, "deceasedBoolean": false,
                   "maritalStatus": {"id": "m1", "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                                  "code": "M", "display": "Married"}], "text": "Married"}}),
            json!({"resourceType": "Patient", "id": p("Patient", "p"), "gender": "male",
                   "deceasedBoolean": false,
                   "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                                 "code": "M", "display": "Married"}]}}),
        );
        // Four digits outside a date element are no year, and a date is no code.
        check(
            json!({"resourceType": "AuditEvent", "agent": [{"altId": "6580", "requestor": true,
                   "type": {"coding": [{"code": "2019-02-03", "system": "http://x.org"}]}}],
                   "outcome": "0", "recorded": "2019-02-03T04:05:06Z",
                   "period": {"start": "2019"}, "entity": [{"name": "2019-02-03", "description": "1950"}],
                   "subtype": [{"code": "1234"}]}),
            json!({"resourceType": "AuditEvent", "agent": [{"requestor": true,
                   "type": {"coding": [{"system": "http://x.org"}]}}], "outcome": "0",
                   "period": {"start": "2019"}, "subtype": [{"code": "1234"}]}),
        );
        // Members no R4 type defines are removed with what they hold, numbers included.
        check(
            json!({"resourceType": "Patient", "gender": "male", "ssn": 999342070, "1950-10-24": true,
                   "mrn": {"value": 5}, "Gender": "Jo"}),
            json!({"resourceType": "Patient", "gender": "male"}),
        );
        check(
            json!({"resourceType": "Device", "status": "active", "serialNumber": "SN-1",
                   "lotNumber": "L1", "modelNumber": "M1", "distinctIdentifier": "D1",
                   "udiCarrier": [{"deviceIdentifier": "0123", "carrierHRF": "(01)0123", "entryType": "barcode"}],
                   "deviceName": [{"name": "Jo's pump", "type": "user-friendly-name"}],
                   "note": [{"text": "belongs to Jo", "time": "2020-01-01"}],
                   "url": "http://device.example/1",
                   "type": {"coding": [{"system": "http://snomed.info/sct", "code": "706180003"}]}}),
            json!({"resourceType": "Device", "status": "active",
                   "type": {"coding": [{"system": "http://snomed.info/sct", "code": "706180003"}]}}),
        );
        // Free text goes, codes stay; an attachment keeps only its content type and size.
        check(
            json!({"resourceType": "DocumentReference", "status": "current", "description": "Jo's note",
                   "masterIdentifier": {"value": "doc-1"}, "date": "2019-03-01T10:00:00Z",
                   "content": [{"attachment": {"contentType": "text/plain", "data": "Sm8gU21pdGg=",
                                               "url": "http://x.org/doc/1", "title": "Jo", "size": 12}}]}),
            json!({"resourceType": "DocumentReference", "status": "current",
                   "content": [{"attachment": {"contentType": "text/plain", "size": 12}}]}),
        );
        check(
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}],
                            "text": "Body Height"},
                   "component": [{"code": {"coding": [{"code": "x"}]}, "valueString": "Jo lives alone"},
                                 {"code": {"coding": [{"code": "y"}]}, "valueBoolean": true}],
                   "valueQuantity": {"value": 180.5, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}}),
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]},
                   "component": [{"code": {"coding": [{"code": "x"}]}},
                                 {"code": {"coding": [{"code": "y"}]}, "valueBoolean": true}],
                   "valueQuantity": {"value": 180.5, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}}),
        );
    }

    /// Addresses keep the state, the country and a three-digit ZIP, `000` where restricted.
    #[test]
    fn addresses() {
        fn check_address(address: Value, expected: Value) {
            check(
                json!({"resourceType": "Patient", "address": [address]}),
                if expected.is_null() {
                    json!({"resourceType": "Patient"})
                } else {
                    json!({"resourceType": "Patient", "address": [expected]})
                },
            );
        }
        check_address(
            json!({"use": "home", "line": ["690 Raynor Overpass"], "city": "Randolph", "district": "Norfolk",
                   "state": "MA", "postalCode": "02368", "country": "US",
                   "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/geolocation",
                                  "extension": [{"url": "latitude", "valueDecimal": 42.1}]}]}),
            json!({"state": "MA", "postalCode": "023", "country": "US"}),
        );
        check_address(json!({"postalCode": "03601"}), json!({"postalCode": "000"}));
        check_address(
            json!({"postalCode": "89301-1234"}),
            json!({"postalCode": "000"}),
        );
        check_address(
            json!({"postalCode": "100011234"}),
            json!({"postalCode": "100"}),
        );
        check_address(json!({"postalCode": "SW1A 1AA"}), Value::Null);
        check_address(json!({"postalCode": "1234"}), Value::Null);
        check_address(json!({"postalCode": "0236é-123"}), Value::Null);
        check_address(
            json!({"city": "Randolph", "line": ["1 Main St"]}),
            Value::Null,
        );
        // Any element of type Address, and a Location's single address, follow the same rule.
        check(
            json!({"resourceType": "Location", "address": {"city": "Boston", "state": "MA", "postalCode": "02115"},
                   "position": {"latitude": 42.3, "longitude": -71.1}}),
            json!({"resourceType": "Location", "address": {"state": "MA", "postalCode": "021"}}),
        );
    }

    /// Dates keep their year; instants, which cannot, are removed; the very old lose the year.
    #[test]
    fn dates() {
        check(
            json!({"resourceType": "Encounter", "status": "finished",
                   "period": {"start": "2019-02-03T04:05:06-05:00", "end": "2019-02-03T04:35:06.123Z"},
                   "hospitalization": {"preAdmissionIdentifier": {"value": "A1"}}}),
            json!({"resourceType": "Encounter", "status": "finished",
                   "period": {"start": "2019", "end": "2019"}}),
        );
        check(
            json!({"resourceType": "Observation", "status": "final", "issued": "2019-02-03T04:05:06.789Z",
                   "effectiveInstant": "2019-02-03T04:05:06.789Z", "valueDateTime": "2019-02",
                   "meta": {"lastUpdated": "2019-02-03T04:05:06.789Z"}}),
            json!({"resourceType": "Observation", "status": "final",
                   "effectiveDateTime": "2019", "valueDateTime": "2019"}),
        );
        check(
            json!({"resourceType": "Condition", "onsetDateTime": "1990-05-06", "recordedDate": "1990",
                   "abatementDateTime": "not a date", "onsetAge": {"value": 95, "unit": "years",
                   "system": "http://unitsofmeasure.org", "code": "a"}}),
            json!({"resourceType": "Condition", "onsetDateTime": "1990", "recordedDate": "1990",
                   "onsetAge": {"value": 90, "comparator": ">=", "unit": "years",
                                "system": "http://unitsofmeasure.org", "code": "a"}}),
        );
        check(
            json!({"resourceType": "Condition", "onsetAge": {"value": 89.9, "unit": "a"}}),
            json!({"resourceType": "Condition", "onsetAge": {"value": 89.9, "unit": "a"}}),
        );
        check(
            json!({"resourceType": "Provenance", "recorded": "2019-02-03T04:05:06.789Z",
                   "occurredDateTime": "2019-02-03"}),
            json!({"resourceType": "Provenance", "occurredDateTime": "2019"}),
        );
        // Born in 1936, the patient is 89 at most in 2025 and keeps the year; born in 1935, the
        // patient may be 90, and born in 1930 is 95: both lose it.
        for (birth_date, kept) in [
            ("1950-10-24", Some("1950")),
            ("1936-12-31", Some("1936")),
            ("1935-01-01", None),
            ("1930", None),
            ("24/10/1950", None),
        ] {
            let mut expected = json!({"resourceType": "Patient", "deceasedDateTime": "2024"});
            if let Some(year) = kept {
                expected["birthDate"] = json!(year);
            }
            check(
                json!({"resourceType": "Patient", "birthDate": birth_date,
                       "deceasedDateTime": "2024-01-02T03:04:05Z"}),
                expected,
            );
        }
    }

    /// Only the race, ethnicity and birth sex extensions stay, without their free text.
    #[test]
    fn extensions() {
        check(
            json!({"resourceType": "Patient", "extension": [
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                           "code": "2106-3", "display": "White"}},
                    {"url": "text", "valueString": "White"}]},
                {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                 "valueString": "Kittie678 Doyle959"},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "M"},
                {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                 "valueAddress": {"city": "Wayland", "state": "Massachusetts", "country": "US"}},
                {"url": "http://synthetichealth.github.io/synthea/disability-adjusted-life-years",
                 "valueDecimal": 2.0},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                 "extension": [{"url": "text", "valueString": "Jo"}]},
                {"valueCode": "M"}]}),
            json!({"resourceType": "Patient", "extension": [
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238",
                                                           "code": "2106-3", "display": "White"}}]},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "M"}]}),
        );
    }

    /// Input that is not a resource, and resources that cannot be de-identified safely, are
    /// refused with the reason.
    #[test]
    fn refusals() {
        let refused = |input: Value| {
            deidentify(&input, &pseudonymizer(), YEAR)
                .expect_err("refused")
                .to_string()
        };
        assert_eq!(
            refused(json!([1])),
            "a FHIR resource must be a JSON object, found an array"
        );
        assert_eq!(refused(json!({"id": "x"})), "`resourceType` is required");
        assert_eq!(
            refused(json!({"resourceType": 3})),
            "`resourceType` must be a string, found a number"
        );
        assert_eq!(
            refused(json!({"resourceType": "Patients"})),
            "unknown resource type \"Patients\": not a FHIR R4 resource"
        );
        assert!(refused(json!({"resourceType": "Bundle"})).contains("deidentify_bundle"));
        assert!(
            refused(
                json!({"resourceType": "Patient", "contact": [], "communication": [
            {"modifierExtension": [{"url": "x", "valueBoolean": true}]}]})
            )
            .contains("modifierExtension")
        );
        assert!(
            refused(json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]}))
                .contains("Nope")
        );
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!({"code": [deep]});
        }
        assert!(refused(json!({"resourceType": "Basic", "code": deep})).contains("64 levels"));
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        assert!(refused(json!({"resourceType": "Basic", "code": deep})).contains("64 levels"));
    }

    /// A Bundle's `urn:uuid:` references resolve to its entries' pseudonymised ids, also for an
    /// entry whose resource has no id.
    #[test]
    fn bundles() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient"}},
            {"fullUrl": "urn:uuid:bbbb", "resource": {"resourceType": "Encounter", "id": "e1",
                                                      "subject": {"reference": "urn:uuid:aaaa"}}},
            {"request": {"method": "DELETE", "url": "Patient/x"}},
            {"resource": {"resourceType": "Observation", "encounter": {"reference": "urn:uuid:bbbb"},
                          "subject": {"reference": "urn:uuid:cccc"}}}]});
        let got = deidentify_bundle(&bundle, &pseudonymizer(), YEAR).expect("de-identifies");
        assert_eq!(
            got,
            vec![
                json!({"resourceType": "Patient", "id": p("Patient", "aaaa")}),
                json!({"resourceType": "Encounter", "id": p("Encounter", "e1"),
                       "subject": {"reference": format!("Patient/{}", p("Patient", "aaaa"))}}),
                json!({"resourceType": "Observation",
                       "encounter": {"reference": format!("Encounter/{}", p("Encounter", "e1"))}}),
            ]
        );
        let error = deidentify_bundle(&json!({"resourceType": "Patient"}), &pseudonymizer(), YEAR)
            .expect_err("not a bundle");
        assert_eq!(
            error.to_string(),
            "expected a Bundle, found a Patient resource"
        );
        let error = deidentify_bundle(
            &json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Nope"}}]}),
            &pseudonymizer(),
            YEAR,
        )
        .expect_err("bad entry");
        assert_eq!(
            error.expression().as_deref(),
            Some("Bundle.entry[0].resource.resourceType")
        );
    }
}
