//! OperationOutcome: how the server says what went wrong (or right) in FHIR terms.

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code`: the R4 IssueType value set, all 31 codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueType {
    pub const ALL: [IssueType; 31] = [
        IssueType::Invalid,
        IssueType::Structure,
        IssueType::Required,
        IssueType::Value,
        IssueType::Invariant,
        IssueType::Security,
        IssueType::Login,
        IssueType::Unknown,
        IssueType::Expired,
        IssueType::Forbidden,
        IssueType::Suppressed,
        IssueType::Processing,
        IssueType::NotSupported,
        IssueType::Duplicate,
        IssueType::MultipleMatches,
        IssueType::NotFound,
        IssueType::Deleted,
        IssueType::TooLong,
        IssueType::CodeInvalid,
        IssueType::Extension,
        IssueType::TooCostly,
        IssueType::BusinessRule,
        IssueType::Conflict,
        IssueType::Transient,
        IssueType::LockError,
        IssueType::NoStore,
        IssueType::Exception,
        IssueType::Timeout,
        IssueType::Incomplete,
        IssueType::Throttled,
        IssueType::Informational,
    ];

    /// The code as FHIR writes it, e.g. `not-found`.
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Unknown => "unknown",
            IssueType::Expired => "expired",
            IssueType::Forbidden => "forbidden",
            IssueType::Suppressed => "suppressed",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Extension => "extension",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::LockError => "lock-error",
            IssueType::NoStore => "no-store",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Incomplete => "incomplete",
            IssueType::Throttled => "throttled",
            IssueType::Informational => "informational",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// What happened, for a human reader.
    pub diagnostics: String,
    /// The element at fault, as a simple FHIRPath expression, when there is one.
    pub expression: Option<String>,
}

impl Issue {
    /// An issue of severity `error`.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    /// The same issue, located at `expression`.
    pub fn at(mut self, expression: impl Into<String>) -> Issue {
        self.expression = Some(expression.into());
        self
    }
}

/// An OperationOutcome holding `issues`. R4 requires at least one issue, so an empty list gives
/// one `informational` issue saying that all went well.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = if issues.is_empty() {
        vec![json!({
            "severity": Severity::Information.code(),
            "code": IssueType::Informational.code(),
            "diagnostics": "all OK",
        })]
    } else {
        issues
            .iter()
            .map(|issue| {
                let mut rendered = json!({
                    "severity": issue.severity.code(),
                    "code": issue.code.code(),
                });
                // FHIR strings may not be empty, so empty texts are left out.
                if !issue.diagnostics.trim().is_empty() {
                    rendered["diagnostics"] = json!(issue.diagnostics);
                }
                if let Some(expression) = issue
                    .expression
                    .as_deref()
                    .filter(|expression| !expression.trim().is_empty())
                {
                    rendered["expression"] = json!([expression]);
                }
                rendered
            })
            .collect()
    };
    json!({"resourceType": "OperationOutcome", "issue": issues})
}
