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
        .with_format("uri", is_iri)
        .build(&schema)
        .map_err(|error| error.to_string())
});

/// The schema's `uri` values are JSON-LD node identifiers: an absolute IRI (a scheme, `:`, and
/// no spaces or control characters; non-ASCII allowed, as in any IRI), a CURIE (which has the
/// same shape), or a blank node identifier `_:name`, which GS1's own examples use for document
/// ids. The strict RFC 3986 check would refuse both non-ASCII IRIs and blank nodes.
fn is_iri(text: &str) -> bool {
    // JSON-LD keywords and the context's aliases for them: the schema also checks member names
    // with this format (extension members must be IRIs or CURIEs), and GS1's own examples type a
    // sensor element with `type`, which the standard context defines there.
    if matches!(text, "id" | "type" | "@id" | "@type" | "@context") {
        return true;
    }
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme == "_"
        || (scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')));
    scheme_ok
        && !rest.is_empty()
        && !text.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | '"' | '{' | '}' | '|' | '\\' | '^' | '`')
        })
}

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

    #[test]
    fn iris() {
        for good in [
            "urn:epc:id:sgtin:0614141.107346.2017",
            "https://example.com/a?b#c",
            "_:document1",
            "geo:47.5,11.1",
            "https://例え.jp/x",
        ] {
            assert!(super::is_iri(good), "{good}");
        }
        for bad in [
            "",
            "document1",
            ":x",
            "_:",
            "1ab:x",
            "https://a b",
            "http://x/<y>",
        ] {
            assert!(!super::is_iri(bad), "{bad}");
        }
    }
}
