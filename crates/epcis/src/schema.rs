//! Validation against the official EPCIS 2.0 JSON Schema (draft-07, GS1's single-file version,
//! vendored byte for byte in `schema/EPCIS-JSON-Schema.json`), compiled once.

use std::sync::LazyLock;

use serde_json::Value;

/// The EPCIS 2.0 JSON Schema as GS1 publishes it.
pub const EPCIS_JSON_SCHEMA: &str = include_str!("../schema/EPCIS-JSON-Schema.json");

/// At most this many reasons are reported for one document: enough to fix it, without an
/// unbounded response for a document that is wrong everywhere.
pub const SCHEMA_REASONS_MAX: usize = 50;

/// The compiled schema. It is compiled in and a test compiles it, so `Err` is unreachable in a
/// released build; it is kept as a value rather than a panic, and reported on use.
static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(EPCIS_JSON_SCHEMA).map_err(|error| error.to_string())?;
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|error| error.to_string())
});

/// Every reason (instance path and message, up to [`SCHEMA_REASONS_MAX`]) why `document` does
/// not conform; empty if it does.
pub(crate) fn violations(document: &Value) -> Vec<String> {
    let validator = match &*VALIDATOR {
        Ok(validator) => validator,
        Err(error) => return vec![format!("the EPCIS schema does not compile: {error}")],
    };
    if validator.is_valid(document) {
        return Vec::new();
    }
    let mut reasons: Vec<String> = validator
        .iter_errors(document)
        .take(SCHEMA_REASONS_MAX)
        .map(|error| {
            let path = error.instance_path().to_string();
            let path = if path.is_empty() { "/" } else { path.as_str() };
            format!("{path}: {error}")
        })
        .collect();
    if reasons.is_empty() {
        reasons.push("/: does not conform to the schema".to_owned());
    }
    reasons
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_schema_compiles() {
        assert!(super::VALIDATOR.is_ok());
    }
}
