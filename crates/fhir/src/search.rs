//! FHIR R4 search over the records a node holds for one patient: which parameters it
//! understands, how a query string becomes a [`SearchQuery`], and how a decrypted resource is
//! matched and sorted.
//!
//! The parameters are those the US Core profiles need for the types Synthea writes: `code`,
//! `category`, `status`, `clinical-status`, `verification-status`, `intent`, `type`,
//! `vaccine-code` (tokens), `date` and the per-type dates such as `authoredon` and `onset-date`,
//! plus `_id`, `_lastUpdated`, `_sort`, `_count`, `_offset`, `_include` and `_revinclude` of the
//! patient and subject references. A parameter this module does not know is reported in
//! [`SearchQuery::ignored`]; the caller ignores it (leaving it out of the `self` link), or refuses
//! the search under `Prefer: handling=strict`.
//!
//! Dates follow R4 §3.1.1.5.6: a value stands for the range its precision implies (`2019` is the
//! whole year), and each prefix compares that range with the resource's. Dates without a time
//! zone are taken as UTC. `ap` (approximately) is taken as "the ranges overlap".

use serde_json::Value;

use crate::time::{days_from_civil, days_in_month};

/// The most records one search page returns.
pub const SEARCH_COUNT_MAX: usize = 1_000;
/// The page size when `_count` is not given.
pub const SEARCH_COUNT_DEFAULT: usize = 100;
/// The furthest a search may page.
pub const SEARCH_OFFSET_MAX: usize = 1_000_000_000;
/// The most values (comma-separated, across repeats) one search may give.
pub const SEARCH_VALUES_MAX: usize = 100;

/// What a parameter's values are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A code, Coding or CodeableConcept: `[system]|[code]`, `|[code]`, `[system]|` or `[code]`.
    Token,
    /// A date, dateTime, instant or Period.
    Date,
    /// A Reference: `Type/id`, or `id` for any type.
    Reference,
}

/// One search parameter: its name, the types it applies to (empty: every type) and the
/// elements it reads. An element ending in `[x]` is a choice (`effective[x]` reads
/// `effectiveDateTime`, `effectivePeriod`, ...).
#[derive(Debug)]
struct Definition {
    name: &'static str,
    kind: Kind,
    types: &'static [&'static str],
    elements: &'static [&'static str],
}

const DEFINITIONS: &[Definition] = &[
    Definition {
        name: "device",
        kind: Kind::Reference,
        types: &["Observation"],
        elements: &["device"],
    },
    Definition {
        name: "code",
        kind: Kind::Token,
        types: &[
            "AllergyIntolerance",
            "Condition",
            "DiagnosticReport",
            "Observation",
            "Procedure",
        ],
        elements: &["code"],
    },
    Definition {
        name: "code",
        kind: Kind::Token,
        types: &["MedicationRequest", "MedicationAdministration"],
        elements: &["medicationCodeableConcept"],
    },
    Definition {
        name: "vaccine-code",
        kind: Kind::Token,
        types: &["Immunization"],
        elements: &["vaccineCode"],
    },
    Definition {
        name: "type",
        kind: Kind::Token,
        types: &["Encounter", "DocumentReference", "Device"],
        elements: &["type"],
    },
    Definition {
        name: "category",
        kind: Kind::Token,
        types: &[
            "AllergyIntolerance",
            "CarePlan",
            "Condition",
            "DiagnosticReport",
            "DocumentReference",
            "Observation",
        ],
        elements: &["category"],
    },
    Definition {
        name: "status",
        kind: Kind::Token,
        types: &[],
        elements: &["status"],
    },
    Definition {
        name: "clinical-status",
        kind: Kind::Token,
        types: &["AllergyIntolerance", "Condition"],
        elements: &["clinicalStatus"],
    },
    Definition {
        name: "verification-status",
        kind: Kind::Token,
        types: &["AllergyIntolerance", "Condition"],
        elements: &["verificationStatus"],
    },
    Definition {
        name: "intent",
        kind: Kind::Token,
        types: &["CarePlan", "MedicationRequest"],
        elements: &["intent"],
    },
    Definition {
        name: "date",
        kind: Kind::Date,
        types: &[
            "DiagnosticReport",
            "MedicationAdministration",
            "Observation",
        ],
        elements: &["effective[x]"],
    },
    Definition {
        name: "date",
        kind: Kind::Date,
        types: &["CarePlan", "CareTeam", "Encounter"],
        elements: &["period"],
    },
    Definition {
        name: "date",
        kind: Kind::Date,
        types: &["Procedure"],
        elements: &["performed[x]"],
    },
    Definition {
        name: "date",
        kind: Kind::Date,
        types: &["Immunization"],
        elements: &["occurrence[x]"],
    },
    Definition {
        name: "date",
        kind: Kind::Date,
        types: &["DocumentReference"],
        elements: &["date"],
    },
    Definition {
        name: "date",
        kind: Kind::Date,
        types: &["AllergyIntolerance"],
        elements: &["recordedDate"],
    },
    Definition {
        name: "date",
        kind: Kind::Date,
        types: &["ImagingStudy"],
        elements: &["started"],
    },
    Definition {
        name: "onset-date",
        kind: Kind::Date,
        types: &["Condition"],
        elements: &["onset[x]"],
    },
    Definition {
        name: "recorded-date",
        kind: Kind::Date,
        types: &["Condition"],
        elements: &["recordedDate"],
    },
    Definition {
        name: "authoredon",
        kind: Kind::Date,
        types: &["MedicationRequest"],
        elements: &["authoredOn"],
    },
    Definition {
        name: "created",
        kind: Kind::Date,
        types: &["Claim", "ExplanationOfBenefit"],
        elements: &["created"],
    },
];

/// The reference elements `_include` and `_revinclude` follow: the patient and subject.
const PATIENT_REFERENCES: [&str; 3] = ["patient", "subject", "beneficiary"];

fn definitions_for<'a>(
    name: &'a str,
    resource_type: Option<&'a str>,
) -> impl Iterator<Item = &'static Definition> + 'a {
    DEFINITIONS.iter().filter(move |definition| {
        definition.name == name
            && match resource_type {
                Some(kind) => definition.types.is_empty() || definition.types.contains(&kind),
                // A search across types applies a parameter that some type defines.
                None => true,
            }
    })
}

/// The search parameters a resource type supports (for the CapabilityStatement), sorted.
pub fn parameters_of(resource_type: &str) -> Vec<(&'static str, &'static str)> {
    let mut names: Vec<(&'static str, &'static str)> = DEFINITIONS
        .iter()
        .filter(|definition| {
            definition.types.is_empty() || definition.types.contains(&resource_type)
        })
        .map(|definition| {
            (
                definition.name,
                match definition.kind {
                    Kind::Token => "token",
                    Kind::Date => "date",
                    Kind::Reference => "reference",
                },
            )
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A date range, half open, in milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A search prefix for ordered values (R4 §3.1.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One value of a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchValue {
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    Date {
        prefix: Prefix,
        range: DateRange,
    },
    /// `Type/id`, or a bare `id`.
    Reference(String),
}

/// One parameter of a search: its values are alternatives (any may match); several filters
/// must all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<SearchValue>,
}

/// A sort key: `date` (the resource type's `date` parameter), `_lastUpdated` or `_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    Date,
    LastUpdated,
    Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub field: SortField,
    pub descending: bool,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchQuery {
    /// The patient's logical id (`patient`, `subject` or, on Patient, `_id`).
    pub patient: Option<String>,
    /// Provenance: the target `Type/id`.
    pub target: Option<String>,
    /// Filters on the resources' content.
    pub filters: Vec<Filter>,
    /// `_id` values.
    pub ids: Vec<String>,
    /// `_lastUpdated` comparisons.
    pub last_updated: Vec<(Prefix, DateRange)>,
    pub sort: Vec<Sort>,
    pub count: usize,
    pub offset: usize,
    /// `_include` of the patient (or subject) reference.
    pub include_patient: bool,
    /// `_revinclude=Provenance:target`.
    pub revinclude_provenance: bool,
    /// The parameters understood, as given, for the `self` link.
    pub understood: Vec<(String, String)>,
    /// Parameters this server does not know or cannot apply, with why.
    pub ignored: Vec<(String, String)>,
}

impl SearchQuery {
    /// Whether matching needs the resources' content (their filters or their dates to sort by).
    pub fn reads_content(&self) -> bool {
        !self.filters.is_empty() || self.sort.iter().any(|sort| sort.field == SortField::Date)
    }
}

/// Why a search is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("search parameter {name}: {message}")]
pub struct SearchError {
    pub name: String,
    pub message: String,
}

fn error(name: &str, message: impl Into<String>) -> SearchError {
    SearchError {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Parses a search's query parameters for `resource_type` (`None`: a search across types at
/// the base). A malformed value of a known parameter is an error; an unknown parameter is
/// listed in `ignored`.
pub fn parse_search(
    resource_type: Option<&str>,
    params: &[(String, String)],
) -> Result<SearchQuery, SearchError> {
    let mut query = SearchQuery {
        count: SEARCH_COUNT_DEFAULT,
        ..SearchQuery::default()
    };
    let mut values_total = 0;
    for (name, value) in params {
        let understood = parse_one(resource_type, name, value, &mut query)?;
        if understood {
            values_total += value.split(',').count();
            if values_total > SEARCH_VALUES_MAX {
                return Err(error(
                    name,
                    format!("a search gives at most {SEARCH_VALUES_MAX} values"),
                ));
            }
            query.understood.push((name.clone(), value.clone()));
        }
    }
    Ok(query)
}

fn number(name: &str, value: &str) -> Result<usize, SearchError> {
    value
        .parse::<usize>()
        .map_err(|_| error(name, "must be a whole number"))
}

/// Parses one parameter into `query`; returns whether it was understood.
fn parse_one(
    resource_type: Option<&str>,
    name: &str,
    value: &str,
    query: &mut SearchQuery,
) -> Result<bool, SearchError> {
    let ignore = |query: &mut SearchQuery, why: &str| {
        query.ignored.push((name.to_string(), why.to_string()));
        Ok(false)
    };
    match name {
        "patient" | "subject" | "beneficiary" => {
            query.patient = Some(patient_id(value).to_string());
        }
        "_id" if resource_type == Some("Patient") => {
            query.patient = Some(value.to_string());
        }
        "_id" => query.ids.extend(value.split(',').map(str::to_string)),
        "target" if resource_type == Some("Provenance") => {
            query.target = Some(value.to_string());
        }
        "_count" => query.count = number(name, value)?.min(SEARCH_COUNT_MAX),
        "_offset" => query.offset = number(name, value)?.min(SEARCH_OFFSET_MAX),
        "_lastUpdated" => {
            for part in value.split(',') {
                let (prefix, range) = parse_date_value(part).ok_or_else(|| {
                    error(
                        name,
                        format!("{part:?} is not a FHIR date with an optional prefix"),
                    )
                })?;
                query.last_updated.push((prefix, range));
            }
        }
        "_sort" => {
            for part in value.split(',') {
                let (descending, field) = match part.strip_prefix('-') {
                    Some(field) => (true, field),
                    None => (false, part),
                };
                let field = match field {
                    "date" => SortField::Date,
                    "_lastUpdated" => SortField::LastUpdated,
                    "_id" => SortField::Id,
                    _ => return ignore(query, "only date, _lastUpdated and _id sort"),
                };
                query.sort.push(Sort { field, descending });
            }
        }
        "_include" => {
            let Some((source, reference)) = value.split_once(':') else {
                return ignore(query, "an include is [type]:[reference]");
            };
            let source_ok = source == "*" || resource_type.is_none_or(|kind| kind == source);
            if !source_ok
                || !PATIENT_REFERENCES.contains(&reference.split(':').next().unwrap_or(""))
            {
                return ignore(
                    query,
                    "only the patient and subject references are included",
                );
            }
            query.include_patient = true;
        }
        "_revinclude" => {
            if value != "Provenance:target" {
                return ignore(query, "only Provenance:target is reverse-included");
            }
            query.revinclude_provenance = true;
        }
        "_format" | "_total" | "_pretty" => {}
        _ => {
            let definitions: Vec<&Definition> = definitions_for(name, resource_type).collect();
            let Some(definition) = definitions.first() else {
                return ignore(query, "not a search parameter of this server for this type");
            };
            let mut values = Vec::new();
            for part in value.split(',') {
                values.push(match definition.kind {
                    Kind::Token => parse_token(part),
                    Kind::Reference => SearchValue::Reference(part.to_string()),
                    Kind::Date => {
                        let (prefix, range) = parse_date_value(part).ok_or_else(|| {
                            error(
                                name,
                                format!("{part:?} is not a FHIR date with an optional prefix"),
                            )
                        })?;
                        SearchValue::Date { prefix, range }
                    }
                });
            }
            query.filters.push(Filter {
                name: name.to_string(),
                values,
            });
        }
    }
    Ok(true)
}

/// The logical id of a patient reference given as `X`, `Patient/X` or `[base]/Patient/X`.
pub fn patient_id(reference: &str) -> &str {
    match reference.rfind("Patient/") {
        Some(at) => &reference[at + "Patient/".len()..],
        None => reference,
    }
}

fn parse_token(text: &str) -> SearchValue {
    let some = |part: &str| (!part.is_empty()).then(|| part.to_string());
    match text.split_once('|') {
        // `|code`: a code with no system; `system|`: any code of the system.
        Some(("", code)) => SearchValue::Token {
            system: Some(String::new()),
            code: some(code),
        },
        Some((system, code)) => SearchValue::Token {
            system: Some(system.to_string()),
            code: some(code),
        },
        None => SearchValue::Token {
            system: None,
            code: some(text),
        },
    }
}

/// Parses `[prefix]date`, e.g. `ge2019-01`, `lt2020-03-01T10:00:00Z`.
pub fn parse_date_value(text: &str) -> Option<(Prefix, DateRange)> {
    let prefixes = [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
        ("ap", Prefix::Ap),
    ];
    let (prefix, rest) = prefixes
        .iter()
        .find_map(|(code, prefix)| text.strip_prefix(code).map(|rest| (*prefix, rest)))
        .unwrap_or((Prefix::Eq, text));
    Some((prefix, parse_date(rest)?))
}

/// The range a FHIR date, dateTime or instant stands for at its precision.
pub fn parse_date(text: &str) -> Option<DateRange> {
    let digits = |part: &str, count: usize| -> Option<i64> {
        (part.len() == count && part.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year = digits(parts.next()?, 4)?;
    let month = match parts.next() {
        Some(part) => Some(digits(part, 2)?),
        None => None,
    };
    let day = match parts.next() {
        Some(part) => Some(digits(part, 2)?),
        None => None,
    };
    if parts.next().is_some() || month.is_some_and(|m| !(1..=12).contains(&m)) {
        return None;
    }
    if let (Some(month), Some(day)) = (month, day)
        && !(1..=days_in_month(year, month)).contains(&day)
    {
        return None;
    }
    const DAY_MS: i64 = 86_400_000;
    let start_day = days_from_civil(year, month.unwrap_or(1), day.unwrap_or(1));
    let Some(time) = time else {
        let end_day = match (month, day) {
            (Some(month), Some(day)) => days_from_civil(year, month, day) + 1,
            (Some(12), None) => days_from_civil(year + 1, 1, 1),
            (Some(month), None) => days_from_civil(year, month + 1, 1),
            _ => days_from_civil(year + 1, 1, 1),
        };
        return Some(DateRange {
            start_ms: start_day * DAY_MS,
            end_ms: end_day * DAY_MS,
        });
    };
    day?;
    // hh:mm[:ss[.fff...]] then Z or ±hh:mm (taken as UTC when absent).
    let (clock, offset_ms) = if let Some(clock) = time.strip_suffix('Z') {
        (clock, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let offset = digits(hours, 2)? * 3_600_000 + digits(minutes, 2)? * 60_000;
        (clock, sign * offset)
    } else {
        (time, 0)
    };
    let mut fields = clock.split(':');
    let hours = digits(fields.next()?, 2)?;
    let minutes = digits(fields.next()?, 2)?;
    let (seconds, fraction, precision_ms) = match fields.next() {
        None => (0, 0, 60_000),
        Some(seconds) => match seconds.split_once('.') {
            None => (digits(seconds, 2)?, 0, 1_000),
            Some((whole, fraction)) => {
                if fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
                (digits(whole, 2)?, millis.parse::<i64>().ok()?, 1)
            }
        },
    };
    if fields.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    let start_ms =
        start_day * DAY_MS + hours * 3_600_000 + minutes * 60_000 + seconds * 1_000 + fraction
            - offset_ms;
    Some(DateRange {
        start_ms,
        end_ms: start_ms + precision_ms,
    })
}

/// Whether a resource's range satisfies `prefix` against the search's range.
pub fn compare_dates(prefix: Prefix, search: DateRange, resource: DateRange) -> bool {
    let within = search.start_ms <= resource.start_ms && resource.end_ms <= search.end_ms;
    match prefix {
        Prefix::Eq => within,
        Prefix::Ne => !within,
        Prefix::Gt => resource.end_ms > search.end_ms,
        Prefix::Ge => resource.end_ms > search.end_ms || within,
        Prefix::Lt => resource.start_ms < search.start_ms,
        Prefix::Le => resource.start_ms < search.start_ms || within,
        Prefix::Sa => resource.start_ms >= search.end_ms,
        Prefix::Eb => resource.end_ms <= search.start_ms,
        Prefix::Ap => resource.start_ms < search.end_ms && search.start_ms < resource.end_ms,
    }
}

/// The values of `element` in `resource`, expanding a choice `name[x]`.
fn element_values<'a>(resource: &'a Value, element: &str) -> Vec<&'a Value> {
    let Some(object) = resource.as_object() else {
        return Vec::new();
    };
    match element.strip_suffix("[x]") {
        Some(stem) => object
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(stem)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            })
            .map(|(_, value)| value)
            .collect(),
        None => object.get(element).into_iter().collect(),
    }
}

/// Every `(system, code)` a code, Coding, CodeableConcept or list of them holds.
fn codes(value: &Value, out: &mut Vec<(Option<String>, String)>) {
    match value {
        Value::String(code) => out.push((None, code.clone())),
        Value::Array(items) => items.iter().for_each(|item| codes(item, out)),
        Value::Object(object) => {
            if let Some(codings) = object.get("coding") {
                codes(codings, out);
            } else if let Some(Value::String(code)) = object.get("code") {
                let system = object
                    .get("system")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                out.push((system, code.clone()));
            }
        }
        _ => {}
    }
}

/// The ranges a date, dateTime, instant, Period or list of them covers.
fn date_ranges(value: &Value, out: &mut Vec<DateRange>) {
    match value {
        Value::String(text) => out.extend(parse_date(text)),
        Value::Array(items) => items.iter().for_each(|item| date_ranges(item, out)),
        Value::Object(object) if object.contains_key("start") || object.contains_key("end") => {
            let start = object
                .get("start")
                .and_then(Value::as_str)
                .and_then(parse_date);
            let end = object
                .get("end")
                .and_then(Value::as_str)
                .and_then(parse_date);
            if start.is_some() || end.is_some() {
                out.push(DateRange {
                    start_ms: start.map_or(i64::MIN, |range| range.start_ms),
                    end_ms: end.map_or(i64::MAX, |range| range.end_ms),
                });
            }
        }
        _ => {}
    }
}

fn token_matches(wanted: &SearchValue, found: &[(Option<String>, String)]) -> bool {
    let SearchValue::Token { system, code } = wanted else {
        return false;
    };
    found.iter().any(|(found_system, found_code)| {
        let system_ok = match system.as_deref() {
            None => true,
            Some("") => found_system.is_none(),
            // A bare code (e.g. `status`) has its system implied by the element.
            Some(wanted) => found_system.as_deref().is_none_or(|found| found == wanted),
        };
        system_ok && code.as_ref().is_none_or(|code| code == found_code)
    })
}

/// Whether `resource` (of type `resource_type`) matches every filter.
pub fn matches(resource_type: &str, resource: &Value, filters: &[Filter]) -> bool {
    filters.iter().all(|filter| {
        let definitions: Vec<&Definition> =
            definitions_for(&filter.name, Some(resource_type)).collect();
        if definitions.is_empty() {
            // A parameter another type defines, in a search across types: no match here.
            return false;
        }
        filter.values.iter().any(|wanted| {
            definitions.iter().any(|definition| {
                definition.elements.iter().any(|element| {
                    let values = element_values(resource, element);
                    match wanted {
                        SearchValue::Token { .. } => {
                            let mut found = Vec::new();
                            values.iter().for_each(|value| codes(value, &mut found));
                            token_matches(wanted, &found)
                        }
                        SearchValue::Reference(wanted) => values.iter().any(|value| {
                            value["reference"].as_str().is_some_and(|found| {
                                found == wanted
                                    || (!wanted.contains('/')
                                        && found.rsplit('/').next() == Some(wanted.as_str()))
                            })
                        }),
                        SearchValue::Date { prefix, range } => {
                            let mut found = Vec::new();
                            values
                                .iter()
                                .for_each(|value| date_ranges(value, &mut found));
                            found.iter().any(|resource_range| {
                                compare_dates(*prefix, *range, *resource_range)
                            })
                        }
                    }
                })
            })
        })
    })
}

/// The start of a resource's clinical date (its type's `date` parameter), for `_sort=date`.
pub fn date_of(resource_type: &str, resource: &Value) -> Option<i64> {
    let mut found = Vec::new();
    for definition in definitions_for("date", Some(resource_type)) {
        for element in definition.elements {
            element_values(resource, element)
                .iter()
                .for_each(|value| date_ranges(value, &mut found));
        }
    }
    found.iter().map(|range| range.start_ms).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(kind: Option<&str>, text: &str) -> SearchQuery {
        let params: Vec<(String, String)> = text
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (name, value) = part.split_once('=').expect("name=value");
                (name.to_string(), value.to_string())
            })
            .collect();
        parse_search(kind, &params).expect("parses")
    }

    fn check(kind: &str, resource: Value, search: &str, expected: bool) {
        let parsed = query(Some(kind), search);
        assert!(parsed.ignored.is_empty(), "{search}: {:?}", parsed.ignored);
        assert_eq!(
            matches(kind, &resource, &parsed.filters),
            expected,
            "{search} against {resource}"
        );
    }

    #[test]
    fn tokens_match_codes_codings_and_concepts_by_system_and_code() {
        let observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}], "text": "Body Height"},
            "effectiveDateTime": "2019-05-01T10:15:00+02:00",
        });
        for (search, expected) in [
            ("code=8302-2", true),
            ("code=http://loinc.org|8302-2", true),
            ("code=http://snomed.info/sct|8302-2", false),
            ("code=http://loinc.org|", true),
            ("code=|8302-2", false),
            ("code=1234-5,8302-2", true),
            ("code=1234-5", false),
            ("status=final", true),
            ("status=preliminary", false),
            ("category=vital-signs", true),
            ("category=laboratory", false),
            ("status=final&category=laboratory", false),
        ] {
            check("Observation", observation.clone(), search, expected);
        }
        let measured = json!({
            "resourceType": "Observation",
            "device": {"reference": "Device/ab12"},
        });
        for (search, expected) in [
            ("device=Device/ab12", true),
            ("device=ab12", true),
            ("device=Device/ab1", false),
            ("device=b12", false),
            ("device=Device/cd34,Device/ab12", true),
            ("device=Patient/ab12", false),
        ] {
            check("Observation", measured.clone(), search, expected);
        }
        check("Observation", observation.clone(), "device=ab12", false);
        let condition = json!({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
            "onsetDateTime": "2001-02-03",
        });
        check(
            "Condition",
            condition.clone(),
            "clinical-status=resolved",
            true,
        );
        check(
            "Condition",
            condition.clone(),
            "clinical-status=active",
            false,
        );
        check("Condition", condition, "onset-date=2001", true);
    }

    #[test]
    fn dates_compare_as_ranges_at_their_precision() {
        let at = |text: &str| json!({"resourceType": "Observation", "effectiveDateTime": text});
        for (value, search, expected) in [
            ("2019-05-01T10:15:00Z", "date=2019", true),
            ("2019-05-01T10:15:00Z", "date=2019-05-01", true),
            ("2019-05-01T10:15:00Z", "date=2019-05-02", false),
            // 00:30 in +02:00 is the previous day in UTC.
            ("2019-05-01T00:30:00+02:00", "date=2019-04-30", true),
            ("2019-05-01", "date=ge2019-05-01", true),
            ("2019-05-01", "date=gt2019-05-01", false),
            ("2019-05-01", "date=lt2019-05-01", false),
            ("2019-05-01", "date=le2019-05-01", true),
            ("2019-05-01", "date=lt2019-06", true),
            ("2019-05-01", "date=gt2018", true),
            ("2019-05-01", "date=ne2019-05-01", false),
            ("2019-05-01", "date=sa2019-04-30", true),
            ("2019-05-01", "date=eb2019-05-02", true),
            ("2019-05-01", "date=ap2019-05", true),
            ("2019-05-01", "date=ge2019-01-01&date=lt2020-01-01", true),
            ("2020-01-01", "date=ge2019-01-01&date=lt2020-01-01", false),
        ] {
            check("Observation", at(value), search, expected);
        }
        let encounter = json!({"resourceType": "Encounter", "period": {"start": "2019-05-01T10:00:00Z", "end": "2019-05-01T11:00:00Z"}});
        check("Encounter", encounter.clone(), "date=2019-05-01", true);
        check("Encounter", encounter, "date=gt2019-05-02", false);
        let open =
            json!({"resourceType": "Encounter", "period": {"start": "2019-05-01T10:00:00Z"}});
        check("Encounter", open, "date=gt2030", true);
    }

    #[test]
    fn malformed_dates_are_refused_and_unknown_parameters_are_reported() {
        for bad in [
            "date=2019-13",
            "date=2019-02-30",
            "date=19",
            "date=2019-05-01T25:00:00Z",
            "date=2019-05-01T10",
            "date=xx2019",
            "_lastUpdated=yesterday",
            "_count=-1",
            "_count=ten",
        ] {
            let (name, value) = bad.split_once('=').expect("pair");
            assert!(
                parse_search(
                    Some("Observation"),
                    &[(name.to_string(), value.to_string())]
                )
                .is_err(),
                "{bad}"
            );
        }
        let parsed = query(
            Some("Observation"),
            "_sort=-date&foo=1&_include=Observation:performer&_count=0&_totalMethod=x&clinical-status=active",
        );
        assert_eq!(parsed.count, 0);
        assert_eq!(
            parsed.sort,
            [Sort {
                field: SortField::Date,
                descending: true
            }]
        );
        let ignored: Vec<&str> = parsed
            .ignored
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(
            ignored,
            ["foo", "_include", "_totalMethod", "clinical-status"]
        );
        assert_eq!(
            parsed.understood,
            [
                ("_sort".to_string(), "-date".to_string()),
                ("_count".to_string(), "0".to_string())
            ]
        );
    }

    #[test]
    fn patients_are_named_by_id_reference_or_url() {
        for text in ["abc", "Patient/abc", "http://x/fhir/Patient/abc"] {
            assert_eq!(
                query(Some("Observation"), &format!("patient={text}"))
                    .patient
                    .as_deref(),
                Some("abc")
            );
        }
        assert_eq!(
            query(Some("Patient"), "_id=abc").patient.as_deref(),
            Some("abc")
        );
        let includes = query(
            Some("Observation"),
            "_include=Observation:patient&_revinclude=Provenance:target",
        );
        assert!(includes.include_patient && includes.revinclude_provenance);
    }

    #[test]
    fn sort_dates_come_from_the_types_date_element() {
        let observation =
            json!({"resourceType": "Observation", "effectivePeriod": {"start": "2019-01-01"}});
        assert_eq!(
            date_of("Observation", &observation),
            parse_date("2019-01-01").map(|r| r.start_ms)
        );
        assert_eq!(
            date_of("Patient", &json!({"resourceType": "Patient"})),
            None
        );
    }
}
