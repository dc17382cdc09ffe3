//! What a `Reference.reference` string points at, as far as a Bundle can tell.

use crate::types::{is_id, is_resource_type};

/// The kinds of literal reference FHIR allows, and what `resolve_bundle` does with each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceKind<'a> {
    /// `#id`: a resource contained in the same resource. Left alone.
    Contained,
    /// `Type?query`: resolved by the server at write time. Left alone.
    Conditional,
    /// `urn:uuid:...`: must match the `fullUrl` of an entry of the same Bundle.
    Uuid,
    /// `Type/id` or `Type/id/_history/version`: must match an entry or a stored resource.
    Relative {
        resource_type: &'a str,
        id: &'a str,
        version: Option<&'a str>,
    },
    /// An absolute URL (`http(s)://...`) or another scheme (`urn:oid:...`). Left alone.
    Absolute,
    /// Anything else, e.g. `Unknown/1`, `Patient/` or `Patient/a b`.
    Malformed,
}

/// Classifies a reference string.
pub fn classify_reference(reference: &str) -> ReferenceKind<'_> {
    if reference.starts_with('#') {
        return ReferenceKind::Contained;
    }
    if reference.starts_with("urn:uuid:") {
        return ReferenceKind::Uuid;
    }
    // A conditional reference's query may hold URLs (`Practitioner?identifier=http://...|1`), so
    // look for a scheme only in what comes before the first `?`.
    if has_scheme(reference) {
        return ReferenceKind::Absolute;
    }
    if let Some((resource_type, _query)) = reference.split_once('?') {
        return if is_resource_type(resource_type) {
            ReferenceKind::Conditional
        } else {
            ReferenceKind::Malformed
        };
    }
    let segments: Vec<&str> = reference.split('/').collect();
    let (resource_type, id, version) = match segments.as_slice() {
        [resource_type, id] => (*resource_type, *id, None),
        [resource_type, id, "_history", version] if is_id(version) => {
            (*resource_type, *id, Some(*version))
        }
        _ => return ReferenceKind::Malformed,
    };
    if is_resource_type(resource_type) && is_id(id) {
        ReferenceKind::Relative {
            resource_type,
            id,
            version,
        }
    } else {
        ReferenceKind::Malformed
    }
}

/// Whether `text` starts with a URI scheme (`[A-Za-z][A-Za-z0-9+.-]*:`) before any `/`, `?` or
/// `#`, i.e. is an absolute URI rather than a relative reference.
pub fn has_scheme(text: &str) -> bool {
    let Some((scheme, _)) = text.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reference form is recognised, including Synthea's conditional references whose query
    /// holds a URL.
    #[test]
    fn classify() {
        fn check(reference: &str, expected: ReferenceKind<'_>) {
            assert_eq!(classify_reference(reference), expected, "{reference:?}");
        }
        use ReferenceKind::*;
        check("#referral", Contained);
        check("urn:uuid:d5582579-7193-4866-5560-a01e723b6552", Uuid);
        check(
            "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999941599",
            Conditional,
        );
        check("Nonsense?identifier=x", Malformed);
        check("http://example.org/fhir/Patient/1", Absolute);
        check("https://example.org/fhir/Patient/1", Absolute);
        check("urn:oid:1.2.3", Absolute);
        check(
            "Patient/p-1.2",
            Relative {
                resource_type: "Patient",
                id: "p-1.2",
                version: None,
            },
        );
        check(
            "Observation/o/_history/3",
            Relative {
                resource_type: "Observation",
                id: "o",
                version: Some("3"),
            },
        );
        check("Observation/o/_history/", Malformed);
        check("Observation/o/history/3", Malformed);
        check("Patient/", Malformed);
        check("Patient", Malformed);
        check("Patient/a b", Malformed);
        check("Unknown/1", Malformed);
        check("patient/1", Malformed);
        check("", Malformed);
        check("1:2", Malformed);
    }
}
