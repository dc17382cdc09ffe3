//! `EpcisError`: why an EPCIS document was refused.

/// Why a capture document was refused. Messages are lowercase and name what was wrong and where,
/// so that the API can pass them on to the client as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpcisError {
    #[error("the document is {got} bytes, over the limit of {max}")]
    TooLarge { got: usize, max: usize },
    #[error("not valid JSON at line {line} column {column}: {reason}")]
    Json {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("the document nests deeper than {max} levels at line {line} column {column}")]
    TooDeep {
        line: usize,
        column: usize,
        max: usize,
    },
    #[error("the document does not conform to the EPCIS 2.0 JSON schema: {}", reasons.join("; "))]
    Schema { reasons: Vec<String> },
    #[error("`{path}`: {reason}")]
    Invalid { path: String, reason: String },
    #[error(
        "`{path}`: event type {found:?} is not supported; expected ObjectEvent, AggregationEvent, TransactionEvent, TransformationEvent or AssociationEvent"
    )]
    UnsupportedEventType { path: String, found: String },
}
