//! One FHIR R4 resource as the node receives it: checked strictly, with its exact bytes and the
//! few facts the ledger needs (type, id, patient, category, references).

use medledger_records::RECORD_CATEGORIES;
use serde_json::{Map, Value};

use crate::FhirError;
use crate::json::{kind, parse_strict, utf8};
use crate::types::{is_id, is_resource_type};

/// The largest resource accepted, alone or as one Bundle entry.
pub const RESOURCE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The elements, in order of preference, whose Reference names the patient a resource is about.
pub const PATIENT_FIELDS: [&str; 3] = ["subject", "patient", "beneficiary"];

/// Resource types whose `subject` is a list of References (0..*) rather than one Reference; a
/// test checks this against the R4 JSON Schema.
pub const SUBJECT_LIST_TYPES: &[&str] = &[
    "Account",
    "Contract",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductInteraction",
    "MedicinalProductPackaged",
    "MedicinalProductUndesirableEffect",
];

/// The code systems whose codes may become a record's on-chain category: HL7's observation and
/// condition categories, under their R4 and their older (STU3) URLs.
pub const CATEGORY_SYSTEMS: &[&str] = &[
    "http://terminology.hl7.org/CodeSystem/observation-category",
    "http://terminology.hl7.org/CodeSystem/condition-category",
    "http://hl7.org/fhir/observation-category",
    "http://hl7.org/fhir/condition-category",
];

/// A parsed FHIR resource. It borrows its exact input bytes, so a record read back is byte for
/// byte what came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource<'a> {
    /// The R4 resource type, e.g. `Observation`.
    pub resource_type: String,
    /// The logical id, when the resource carries one.
    pub id: Option<String>,
    /// Exactly the bytes of this resource's JSON object as they came in.
    pub bytes: &'a [u8],
    /// The `reference` of the first present of `subject`, `patient` and `beneficiary`, when that
    /// element is a Reference with a `reference` string (for a `subject` list, only when the list
    /// has exactly one Reference). Always `None` for a `Patient`.
    pub patient: Option<String>,
    /// The first `category[*].coding[*].code` that is one of `RECORD_CATEGORIES` (with a system
    /// from `CATEGORY_SYSTEMS`, or none).
    pub category: Option<String>,
    /// Every `"reference"` string anywhere in the resource, in document order.
    pub references: Vec<String>,
}

/// Parses one resource strictly: UTF-8 JSON holding exactly one object, a known R4
/// `resourceType` other than `Bundle`, a valid `id` if any, and well-shaped `subject`,
/// `patient`, `beneficiary` and `category` elements.
pub fn parse_resource(bytes: &[u8]) -> Result<Resource<'_>, FhirError> {
    if bytes.len() > RESOURCE_BYTES_MAX {
        return Err(FhirError::TooLarge {
            what: "the resource",
            got: bytes.len(),
            max: RESOURCE_BYTES_MAX,
        });
    }
    parse_text(utf8(bytes)?)
}

/// Parses a resource from text already known to be UTF-8 (and, in a Bundle, already known to be
/// one JSON value).
pub(crate) fn parse_text(text: &str) -> Result<Resource<'_>, FhirError> {
    let (value, references) = parse_strict(text)?;
    let Value::Object(object) = value else {
        return Err(FhirError::NotAnObject {
            found: kind(&value),
        });
    };
    let resource_type = resource_type(&object)?;
    if resource_type == "Bundle" {
        return Err(FhirError::BundleNotAllowed);
    }
    Ok(Resource {
        id: id(&object)?,
        bytes: text.as_bytes(),
        patient: patient(&resource_type, &object)?,
        category: category(&object)?,
        references,
        resource_type,
    })
}

/// The `resourceType`, which must be a string naming an R4 resource type.
pub(crate) fn resource_type(object: &Map<String, Value>) -> Result<String, FhirError> {
    match object.get("resourceType") {
        None => Err(FhirError::MissingField {
            field: "resourceType".to_owned(),
        }),
        Some(Value::String(name)) if is_resource_type(name) => Ok(name.clone()),
        Some(Value::String(name)) => Err(FhirError::UnknownResourceType { name: name.clone() }),
        Some(other) => Err(shape("resourceType", "a string", other)),
    }
}

/// The `id`, which must be a string satisfying the FHIR id rule when present.
pub(crate) fn id(object: &Map<String, Value>) -> Result<Option<String>, FhirError> {
    match object.get("id") {
        None => Ok(None),
        Some(Value::String(id)) if is_id(id) => Ok(Some(id.clone())),
        Some(Value::String(id)) => Err(FhirError::InvalidId { id: id.clone() }),
        Some(other) => Err(shape("id", "a string", other)),
    }
}

/// The patient reference: see `Resource::patient`. Every present patient element is checked for
/// shape, but only the first present one is read.
fn patient(resource_type: &str, object: &Map<String, Value>) -> Result<Option<String>, FhirError> {
    let mut patient = None;
    let mut decided = false;
    for field in PATIENT_FIELDS {
        let Some(value) = object.get(field) else {
            continue;
        };
        let reference = if field == "subject" && SUBJECT_LIST_TYPES.contains(&resource_type) {
            let Value::Array(items) = value else {
                return Err(shape(field, "an array of References", value));
            };
            let mut references = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                references.push(reference(&format!("{field}[{index}]"), item)?);
            }
            match references.as_slice() {
                [only] => only.clone(),
                _ => None,
            }
        } else {
            reference(field, value)?
        };
        if !decided {
            patient = reference;
            decided = true;
        }
    }
    Ok(if resource_type == "Patient" {
        None
    } else {
        patient
    })
}

/// The `reference` string of a Reference at `field`, which must be an object.
fn reference(field: &str, value: &Value) -> Result<Option<String>, FhirError> {
    let Value::Object(object) = value else {
        return Err(shape(field, "an object (a Reference)", value));
    };
    match object.get("reference") {
        None => Ok(None),
        Some(Value::String(reference)) => Ok(Some(reference.clone())),
        Some(other) => Err(shape(&format!("{field}.reference"), "a string", other)),
    }
}

/// The on-chain category: see `Resource::category`. `category` may be one CodeableConcept, a
/// list of them, a code, or a list of codes, depending on the resource type; all are checked
/// for shape.
fn category(object: &Map<String, Value>) -> Result<Option<String>, FhirError> {
    match object.get("category") {
        None | Some(Value::String(_)) => Ok(None),
        Some(concept @ Value::Object(_)) => concept_category("category", concept),
        Some(Value::Array(items)) => {
            let mut found = None;
            for (index, item) in items.iter().enumerate() {
                let field = format!("category[{index}]");
                let code = match item {
                    Value::Object(_) => concept_category(&field, item)?,
                    Value::String(_) => None,
                    other => {
                        return Err(shape(
                            &field,
                            "an object (a CodeableConcept) or a string (a code)",
                            other,
                        ));
                    }
                };
                found = found.or(code);
            }
            Ok(found)
        }
        Some(other) => Err(shape(
            "category",
            "an object (a CodeableConcept), an array or a string",
            other,
        )),
    }
}

/// The first record category among a CodeableConcept's codings.
fn concept_category(field: &str, concept: &Value) -> Result<Option<String>, FhirError> {
    let codings = match concept.get("coding") {
        None => return Ok(None),
        Some(Value::Array(codings)) => codings,
        Some(other) => return Err(shape(&format!("{field}.coding"), "an array", other)),
    };
    let mut found = None;
    for (index, coding) in codings.iter().enumerate() {
        let field = format!("{field}.coding[{index}]");
        let Value::Object(coding) = coding else {
            return Err(shape(&field, "an object (a Coding)", coding));
        };
        let system = match coding.get("system") {
            None => None,
            Some(Value::String(system)) => Some(system.as_str()),
            Some(other) => return Err(shape(&format!("{field}.system"), "a string", other)),
        };
        let code = match coding.get("code") {
            None => continue,
            Some(Value::String(code)) => code,
            Some(other) => return Err(shape(&format!("{field}.code"), "a string", other)),
        };
        if found.is_none()
            && RECORD_CATEGORIES.contains(&code.as_str())
            && system.is_none_or(|system| CATEGORY_SYSTEMS.contains(&system))
        {
            found = Some(code.clone());
        }
    }
    Ok(found)
}

pub(crate) fn shape(field: &str, expected: &'static str, found: &Value) -> FhirError {
    FhirError::FieldShape {
        field: field.to_owned(),
        expected,
        found: kind(found),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Summarises a parse as one line, so each case states its whole expected outcome.
    fn check(input: &str, expected: &str) {
        let got = match parse_resource(input.as_bytes()) {
            Ok(resource) => {
                assert_eq!(resource.bytes, input.as_bytes());
                format!(
                    "{} id={:?} patient={:?} category={:?} references={:?}",
                    resource.resource_type,
                    resource.id,
                    resource.patient,
                    resource.category,
                    resource.references
                )
            }
            Err(error) => format!("{}: {error}", error.issue_code()),
        };
        assert_eq!(got, expected, "input: {input}");
    }

    /// Well-formed resources yield their type, id, patient, category and references.
    #[test]
    fn accepts() {
        check(
            r#"{"resourceType": "Patient", "id": "p1"}"#,
            r#"Patient id=Some("p1") patient=None category=None references=[]"#,
        );
        check(
            r#"{"resourceType": "Observation", "subject": {"reference": "Patient/p1"},
                "performer": [{"reference": "Practitioner/x"}],
                "category": [{"coding": [{"system": "http://loinc.org", "code": "laboratory"},
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"},
                    {"code": "laboratory"}]}]}"#,
            r#"Observation id=None patient=Some("Patient/p1") category=Some("vital-signs") references=["Patient/p1", "Practitioner/x"]"#,
        );
        check(
            r#"{"resourceType": "Condition", "category": [{"text": "no coding"}, {"coding": [{"code": "problem-list-item"}]}]}"#,
            r#"Condition id=None patient=None category=Some("problem-list-item") references=[]"#,
        );
        check(
            r#"{"resourceType": "Procedure", "category": {"coding": [{"code": "therapy"}]}}"#,
            r#"Procedure id=None patient=None category=Some("therapy") references=[]"#,
        );
        check(
            r#"{"resourceType": "Observation", "category": [{"coding": [{"code": "not-a-record-category"}]}]}"#,
            r#"Observation id=None patient=None category=None references=[]"#,
        );
        check(
            r#"{"resourceType": "AllergyIntolerance", "category": ["food"], "patient": {"reference": "urn:uuid:d5582579-7193-4866-5560-a01e723b6552"}}"#,
            r#"AllergyIntolerance id=None patient=Some("urn:uuid:d5582579-7193-4866-5560-a01e723b6552") category=None references=["urn:uuid:d5582579-7193-4866-5560-a01e723b6552"]"#,
        );
        check(
            r#"{"resourceType": "DeviceMetric", "category": "measurement"}"#,
            r#"DeviceMetric id=None patient=None category=None references=[]"#,
        );
        check(
            r#"{"resourceType": "Coverage", "beneficiary": {"reference": "Patient/b"}}"#,
            r#"Coverage id=None patient=Some("Patient/b") category=None references=["Patient/b"]"#,
        );
        check(
            r#"{"resourceType": "Account", "subject": [{"reference": "Patient/a"}]}"#,
            r#"Account id=None patient=Some("Patient/a") category=None references=["Patient/a"]"#,
        );
        check(
            r#"{"resourceType": "Account", "subject": [{"reference": "Patient/a"}, {"reference": "Patient/b"}]}"#,
            r#"Account id=None patient=None category=None references=["Patient/a", "Patient/b"]"#,
        );
        // The first present element decides, even when it holds no reference string.
        check(
            r#"{"resourceType": "Observation", "subject": {"identifier": {"value": "x"}}, "patient": {"reference": "Patient/p"}}"#,
            r#"Observation id=None patient=None category=None references=["Patient/p"]"#,
        );
        check(
            " \n{\"resourceType\": \"Basic\"}\n ",
            r#"Basic id=None patient=None category=None references=[]"#,
        );
    }

    /// Each kind of malformed input gets its own precise error and issue type.
    #[test]
    fn refuses() {
        check(
            "{\"resourceType\": \"Patient\",",
            "structure: not valid JSON at line 1 column 27: EOF while parsing a value",
        );
        check(
            r#"{"resourceType": "Patient"} x"#,
            "structure: not valid JSON at line 1 column 29: trailing characters",
        );
        check(
            r#"{"resourceType": "Patient", "resourceType": "Patient"}"#,
            r#"structure: not valid JSON at line 1 column 42: duplicate key "resourceType""#,
        );
        check(
            "[]",
            "structure: a FHIR resource must be a JSON object, found an array",
        );
        check(
            r#""Patient""#,
            "structure: a FHIR resource must be a JSON object, found a string",
        );
        check(r#"{"id": "a"}"#, "required: `resourceType` is required");
        check(
            r#"{"resourceType": 7}"#,
            "structure: `resourceType` must be a string, found a number",
        );
        check(
            r#"{"resourceType": "Patiant"}"#,
            r#"value: unknown resource type "Patiant": not a FHIR R4 resource"#,
        );
        check(
            r#"{"resourceType": "Bundle", "type": "transaction"}"#,
            "not-supported: a Bundle is not accepted as a single resource; submit it as a transaction or batch",
        );
        check(
            r#"{"resourceType": "Patient", "id": "a_b"}"#,
            r#"value: invalid id "a_b": a FHIR id is 1 to 64 ASCII letters, digits, '-' or '.'"#,
        );
        check(
            r#"{"resourceType": "Patient", "id": ""}"#,
            r#"value: invalid id "": a FHIR id is 1 to 64 ASCII letters, digits, '-' or '.'"#,
        );
        check(
            r#"{"resourceType": "Patient", "id": 12}"#,
            "structure: `id` must be a string, found a number",
        );
        check(
            r#"{"resourceType": "Observation", "subject": "Patient/1"}"#,
            "structure: `subject` must be an object (a Reference), found a string",
        );
        check(
            r#"{"resourceType": "Observation", "subject": {"reference": ["Patient/1"]}}"#,
            "structure: `subject.reference` must be a string, found an array",
        );
        check(
            r#"{"resourceType": "Claim", "patient": null}"#,
            "structure: `patient` must be an object (a Reference), found null",
        );
        check(
            r#"{"resourceType": "Coverage", "beneficiary": [{"reference": "Patient/1"}]}"#,
            "structure: `beneficiary` must be an object (a Reference), found an array",
        );
        check(
            r#"{"resourceType": "Account", "subject": {"reference": "Patient/1"}}"#,
            "structure: `subject` must be an array of References, found an object",
        );
        check(
            r#"{"resourceType": "Account", "subject": [true]}"#,
            "structure: `subject[0]` must be an object (a Reference), found a boolean",
        );
        check(
            r#"{"resourceType": "Observation", "subject": {"reference": "Patient/1"}, "patient": 3}"#,
            "structure: `patient` must be an object (a Reference), found a number",
        );
        check(
            r#"{"resourceType": "Observation", "category": 5}"#,
            "structure: `category` must be an object (a CodeableConcept), an array or a string, found a number",
        );
        check(
            r#"{"resourceType": "Observation", "category": [{}, 5]}"#,
            "structure: `category[1]` must be an object (a CodeableConcept) or a string (a code), found a number",
        );
        check(
            r#"{"resourceType": "Observation", "category": [{"coding": {"code": "laboratory"}}]}"#,
            "structure: `category[0].coding` must be an array, found an object",
        );
        check(
            r#"{"resourceType": "Observation", "category": [{"coding": ["laboratory"]}]}"#,
            "structure: `category[0].coding[0]` must be an object (a Coding), found a string",
        );
        check(
            r#"{"resourceType": "Observation", "category": [{"coding": [{"code": 1}]}]}"#,
            "structure: `category[0].coding[0].code` must be a string, found a number",
        );
        check(
            r#"{"resourceType": "Observation", "category": {"coding": [{"system": false, "code": "exam"}]}}"#,
            "structure: `category.coding[0].system` must be a string, found a boolean",
        );
    }

    /// Input that is not UTF-8, or too large, is refused before it is parsed.
    #[test]
    fn refuses_bytes() {
        let error = parse_resource(b"{\"resourceType\": \"Patient\", \"id\": \"\xc3\x28\"}").err();
        assert_eq!(
            error.map(|error| error.to_string()),
            Some("not valid JSON at line 1 column 36: invalid UTF-8".to_owned())
        );
        let large = vec![b' '; RESOURCE_BYTES_MAX + 1];
        let error = parse_resource(&large).err();
        assert_eq!(
            error,
            Some(FhirError::TooLarge {
                what: "the resource",
                got: RESOURCE_BYTES_MAX + 1,
                max: RESOURCE_BYTES_MAX
            })
        );
        assert_eq!(error.map(|error| error.issue_code()), Some("too-costly"));
    }
}
