//! `FhirError`: why FHIR input was refused, with the OperationOutcome issue type to report it as.

use crate::outcome::{Issue, IssueType, Severity};

/// Why a resource or Bundle was refused. Every variant names what was wrong and where: the
/// field, the entry (0-based) or the reference.
///
/// Field paths are written the way OperationOutcome expressions are: relative to the resource
/// (`subject.reference`, `category[1].coding[0].code`), or, inside a Bundle entry, relative to
/// the entry (`request.url`, `resource.subject`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    #[error("{what} is {got} bytes, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("not valid JSON at line {line} column {column}: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("a FHIR resource must be a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("`{field}` is required")]
    MissingField { field: String },
    #[error("`{field}` must be {expected}, found {found}")]
    FieldShape {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("`{field}` is not allowed {reason}")]
    FieldNotAllowed { field: String, reason: &'static str },
    #[error("`{field}` is not supported: {reason}")]
    Unsupported { field: String, reason: &'static str },
    #[error("unknown resource type {name:?}: not a FHIR R4 resource")]
    UnknownResourceType { name: String },
    #[error("a Bundle is not accepted as a single resource; submit it as a transaction or batch")]
    BundleNotAllowed,
    #[error("expected a Bundle, found a {found} resource")]
    NotABundle { found: String },
    #[error("invalid id {id:?}: a FHIR id is 1 to 64 ASCII letters, digits, '-' or '.'")]
    InvalidId { id: String },
    #[error("bundle type {found:?} is not accepted; expected transaction, batch or collection")]
    BundleTypeRefused { found: String },
    #[error("the bundle has more than {max} entries")]
    TooManyEntries { max: usize },
    #[error(
        "request method {method:?} is not accepted: this server stores records and takes only POST and PUT"
    )]
    MethodRefused { method: String },
    #[error("request url {url:?} {reason}")]
    RequestUrl { url: String, reason: String },
    #[error("fullUrl {full_url:?} {reason}")]
    FullUrl {
        full_url: String,
        reason: &'static str,
    },
    /// Something about entry `index` other than its resource, e.g. its `request`.
    #[error("entry {index}: {error}")]
    Entry { index: usize, error: Box<FhirError> },
    /// The `resource` of entry `index` was refused by the rules of `parse_resource`.
    #[error("entry {index}: {error}")]
    EntryResource { index: usize, error: Box<FhirError> },
    #[error("entry {entry} repeats the fullUrl {full_url:?} of entry {first}")]
    DuplicateFullUrl {
        entry: usize,
        first: usize,
        full_url: String,
    },
    #[error("entry {entry} repeats {resource_type}/{id}, already given by entry {first}")]
    DuplicateResource {
        entry: usize,
        first: usize,
        resource_type: String,
        id: String,
    },
    #[error(
        "entry {entry}: reference {reference:?} matches no entry of the bundle and no stored resource"
    )]
    MissingReference { entry: usize, reference: String },
    #[error("entry {entry}: reference {reference:?} is not a valid literal reference")]
    MalformedReference { entry: usize, reference: String },
    #[error("cannot attribute {resource_type} entry {entry} to a patient: {reason}")]
    Unattributed {
        entry: usize,
        resource_type: String,
        reason: String,
    },
}

impl FhirError {
    /// The R4 IssueType that an OperationOutcome reporting this error should carry.
    pub fn issue_type(&self) -> IssueType {
        match self {
            FhirError::TooLarge { .. } | FhirError::TooManyEntries { .. } => IssueType::TooCostly,
            FhirError::Json { .. }
            | FhirError::NotAnObject { .. }
            | FhirError::FieldShape { .. } => IssueType::Structure,
            FhirError::MissingField { .. } => IssueType::Required,
            FhirError::FieldNotAllowed { .. }
            | FhirError::DuplicateFullUrl { .. }
            | FhirError::DuplicateResource { .. } => IssueType::Invariant,
            FhirError::Unsupported { .. }
            | FhirError::BundleNotAllowed
            | FhirError::BundleTypeRefused { .. }
            | FhirError::MethodRefused { .. } => IssueType::NotSupported,
            FhirError::UnknownResourceType { .. }
            | FhirError::InvalidId { .. }
            | FhirError::RequestUrl { .. }
            | FhirError::FullUrl { .. }
            | FhirError::MalformedReference { .. } => IssueType::Value,
            FhirError::NotABundle { .. } => IssueType::Invalid,
            FhirError::MissingReference { .. } => IssueType::NotFound,
            FhirError::Unattributed { .. } => IssueType::BusinessRule,
            FhirError::Entry { error, .. } | FhirError::EntryResource { error, .. } => {
                error.issue_type()
            }
        }
    }

    /// The R4 IssueType code, e.g. `structure` or `not-found`.
    pub fn issue_code(&self) -> &'static str {
        self.issue_type().code()
    }

    /// Where the problem is, as a simple FHIRPath-like expression, when one element can be named:
    /// `subject.reference` for a single resource, `Bundle.entry[3].resource.subject` in a Bundle.
    pub fn expression(&self) -> Option<String> {
        match self {
            FhirError::MissingField { field }
            | FhirError::FieldShape { field, .. }
            | FhirError::FieldNotAllowed { field, .. }
            | FhirError::Unsupported { field, .. } => Some(field.clone()),
            FhirError::InvalidId { .. } => Some("id".to_owned()),
            FhirError::UnknownResourceType { .. } | FhirError::NotABundle { .. } => {
                Some("resourceType".to_owned())
            }
            FhirError::BundleTypeRefused { .. } => Some("type".to_owned()),
            FhirError::TooManyEntries { .. } => Some("entry".to_owned()),
            FhirError::MethodRefused { .. } => Some("request.method".to_owned()),
            FhirError::RequestUrl { .. } => Some("request.url".to_owned()),
            FhirError::FullUrl { .. } => Some("fullUrl".to_owned()),
            FhirError::Entry { index, error } => Some(match error.expression() {
                Some(inner) => format!("Bundle.entry[{index}].{inner}"),
                None => format!("Bundle.entry[{index}]"),
            }),
            FhirError::EntryResource { index, error } => Some(match error.expression() {
                Some(inner) => format!("Bundle.entry[{index}].resource.{inner}"),
                None => format!("Bundle.entry[{index}].resource"),
            }),
            FhirError::DuplicateFullUrl { entry, .. } => {
                Some(format!("Bundle.entry[{entry}].fullUrl"))
            }
            FhirError::DuplicateResource { entry, .. }
            | FhirError::MissingReference { entry, .. }
            | FhirError::MalformedReference { entry, .. }
            | FhirError::Unattributed { entry, .. } => {
                Some(format!("Bundle.entry[{entry}].resource"))
            }
            FhirError::TooLarge { .. }
            | FhirError::Json { .. }
            | FhirError::NotAnObject { .. }
            | FhirError::BundleNotAllowed => None,
        }
    }

    /// This error as one OperationOutcome issue of severity `error`.
    pub fn issue(&self) -> Issue {
        Issue {
            severity: Severity::Error,
            code: self.issue_type(),
            diagnostics: self.to_string(),
            expression: self.expression(),
        }
    }

    /// Wraps an error about entry `index` of a Bundle.
    pub(crate) fn in_entry(self, index: usize) -> FhirError {
        FhirError::Entry {
            index,
            error: Box::new(self),
        }
    }

    /// Wraps an error about the `resource` of entry `index` of a Bundle.
    pub(crate) fn in_entry_resource(self, index: usize) -> FhirError {
        FhirError::EntryResource {
            index,
            error: Box::new(self),
        }
    }
}
