//! Validation of resources a client writes against FHIR R4: the official R4 JSON Schema
//! (vendored in `schema/fhir.schema.json.gz`, see `tests/data/README.md`), which checks structure
//! (every element's type and cardinality, no unknown elements) and the required value-set
//! bindings of `code` elements (e.g. `Observation.status`), plus the primitive rules the schema
//! cannot express that matter here.
//!
//! Every problem is reported, each as one OperationOutcome issue whose expression names the
//! element (`Observation.code`), so a client can fix everything in one round trip.

use std::io::Read;
use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::{Value, json};

use crate::outcome::{Issue, IssueType, Severity};

/// The most issues one validation reports.
pub const VALIDATION_ISSUES_MAX: usize = 50;

static SCHEMA_GZ: &[u8] = include_bytes!("../schema/fhir.schema.json.gz");

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(SCHEMA_GZ)
        .read_to_end(&mut bytes)
        .expect("the vendored R4 schema is gzip");
    serde_json::from_slice(&bytes).expect("the vendored R4 schema is JSON")
});

/// The schema as validation uses it. HL7's schema gives its complex types (`CodeableConcept`,
/// `Reference`, every resource) `properties` but no `"type": "object"`, so under JSON Schema
/// rules a bare string would pass where a CodeableConcept belongs. The JSON format requires an
/// object there (R4 §2.6.2), so each definition with properties is required to be one.
static STRICT_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let mut schema = SCHEMA.clone();
    if let Some(definitions) = schema.get_mut("definitions").and_then(Value::as_object_mut) {
        for definition in definitions.values_mut() {
            if let Some(object) = definition.as_object_mut()
                && object.contains_key("properties")
                && !object.contains_key("type")
            {
                object.insert("type".to_owned(), json!("object"));
            }
        }
    }
    schema
});

/// One validator for every resource type, compiled and held once. The schema's root `oneOf` over
/// all types would check a resource against each of 146 definitions; instead, for each type, "if
/// `resourceType` is T then T's definition" (draft-07 conditionals), so a resource is checked
/// against its own definition only and its errors name paths inside it.
static VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let mut schema = STRICT_SCHEMA.clone();
    let types: Vec<&str> = crate::RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|name| schema["definitions"].get(*name).is_some())
        .collect();
    let conditions: Vec<Value> = types
        .iter()
        .map(|name| {
            json!({
                "if": {"properties": {"resourceType": {"const": name}}, "required": ["resourceType"]},
                "then": {"$ref": format!("#/definitions/{name}")},
            })
        })
        .collect();
    let root = schema
        .as_object_mut()
        .expect("the vendored R4 schema is an object");
    root.remove("oneOf");
    root.remove("discriminator");
    root.remove("$schema");
    root.insert("allOf".to_owned(), Value::Array(conditions));
    jsonschema::draft7::options()
        .build(&schema)
        .expect("the vendored R4 schema compiles")
});

/// The official FHIR R4 JSON Schema (draft-06).
pub fn r4_schema() -> &'static Value {
    &SCHEMA
}

/// `/code/coding/0/system` as `Observation.code.coding[0].system`.
fn expression(resource_type: &str, pointer: &str) -> String {
    let mut out = resource_type.to_owned();
    for part in pointer.split('/').filter(|part| !part.is_empty()) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if part.bytes().all(|byte| byte.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            out.push('.');
            out.push_str(&part);
        }
    }
    out
}

/// Every problem with `resource` as an R4 resource of its `resourceType`; empty when valid.
pub fn validate(resource: &Value) -> Vec<Issue> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return vec![
            Issue::error(IssueType::Required, "resourceType is required").at("resourceType"),
        ];
    };
    if STRICT_SCHEMA["definitions"].get(resource_type).is_none()
        || !crate::is_resource_type(resource_type)
    {
        return vec![
            Issue::error(
                IssueType::NotSupported,
                format!("{resource_type:?} is not a FHIR R4 resource type"),
            )
            .at("resourceType"),
        ];
    }
    let validator = &*VALIDATOR;
    // The common case, valid, takes the fast path that stops at nothing to report.
    if validator.is_valid(resource) {
        return Vec::new();
    }
    let mut issues: Vec<Issue> = Vec::new();
    for error in validator.iter_errors(resource) {
        if issues.len() >= VALIDATION_ISSUES_MAX {
            break;
        }
        let code = match error.kind() {
            ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. } => {
                IssueType::CodeInvalid
            }
            ValidationErrorKind::Required { .. } => IssueType::Required,
            ValidationErrorKind::Pattern { .. } => IssueType::Value,
            _ => IssueType::Structure,
        };
        let path = error.instance_path().to_string();
        let at = expression(resource_type, &path);
        let diagnostics = match error.kind() {
            ValidationErrorKind::Enum { options } => {
                format!(
                    "{at}: {} is not one of the required codes {options}",
                    error.instance()
                )
            }
            _ => format!("{at}: {error}"),
        };
        issues.push(Issue {
            severity: Severity::Error,
            code,
            diagnostics,
            expression: Some(at),
        });
    }
    issues.sort_by(|a, b| (&a.expression, &a.diagnostics).cmp(&(&b.expression, &b.diagnostics)));
    issues
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(resource: Value, expected: &[(&str, IssueType)]) {
        let issues = validate(&resource);
        let got: Vec<(&str, IssueType)> = issues
            .iter()
            .map(|issue| (issue.expression.as_deref().unwrap_or(""), issue.code))
            .collect();
        assert_eq!(got, expected, "{issues:#?}");
    }

    #[test]
    fn resources_are_checked_for_structure_and_required_codes() {
        check(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
            &[],
        );
        check(
            json!({"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}),
            &[("Observation.status", IssueType::CodeInvalid)],
        );
        check(
            json!({"resourceType": "Observation", "status": "final", "code": "8302-2"}),
            &[("Observation.code", IssueType::Structure)],
        );
        check(
            json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": 5}]}, "colour": "red"}),
            &[
                ("Observation", IssueType::Structure),
                ("Observation.code.coding[0].system", IssueType::Structure),
            ],
        );
        check(
            json!({"resourceType": "Nope"}),
            &[("resourceType", IssueType::NotSupported)],
        );
    }
}
