//! Bundles the server returns: search results (with stored records embedded byte for byte),
//! transaction and batch responses, and plain collections of rendered resources.

use serde_json::{Value, json};

/// One entry of a searchset: a resource's full URL and its bytes (stored bytes verbatim, or a
/// rendered resource), and whether it matched the search or was included alongside a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchEntry<'a> {
    pub full_url: String,
    pub resource: std::borrow::Cow<'a, [u8]>,
    pub include: bool,
}

/// Writes a `searchset` Bundle as bytes, embedding each resource's bytes verbatim so that
/// records reach the reader exactly as they are served.
///
/// Each entry's bytes must be one JSON object, as `parse_resource` accepted it. `total` is the
/// number of matches (it exceeds the entries returned when results are paged) and `links` the
/// paging links in order, `self` first (`("self", url)`, `("next", url)`, ...).
pub fn searchset(entries: &[SearchEntry<'_>], total: usize, links: &[(&str, String)]) -> Vec<u8> {
    let capacity = entries
        .iter()
        .map(|entry| entry.full_url.len() + entry.resource.len() + 64)
        .sum::<usize>()
        + links.iter().map(|(_, url)| url.len() + 32).sum::<usize>()
        + 128;
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(br#"{"resourceType":"Bundle","type":"searchset","total":"#);
    out.extend_from_slice(total.to_string().as_bytes());
    if !links.is_empty() {
        out.extend_from_slice(br#","link":["#);
        for (position, (relation, url)) in links.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"relation":"#);
            push_string(&mut out, relation);
            out.extend_from_slice(br#","url":"#);
            push_string(&mut out, url);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !entries.is_empty() {
        out.extend_from_slice(br#","entry":["#);
        for (position, entry) in entries.iter().enumerate() {
            debug_assert!(
                serde_json::from_slice::<serde::de::IgnoredAny>(&entry.resource).is_ok(),
                "searchset entry {position} is not one JSON value"
            );
            if position > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"fullUrl":"#);
            push_string(&mut out, &entry.full_url);
            out.extend_from_slice(br#","resource":"#);
            out.extend_from_slice(&entry.resource);
            if entry.include {
                out.extend_from_slice(br#","search":{"mode":"include"}}"#);
            } else {
                out.extend_from_slice(br#","search":{"mode":"match"}}"#);
            }
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// Appends `text` as a JSON string.
fn push_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(Value::from(text).to_string().as_bytes());
}

/// Which kind of request a response Bundle answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseKind {
    Transaction,
    Batch,
}

impl ResponseKind {
    /// The R4 `Bundle.type` of the response.
    pub fn code(self) -> &'static str {
        match self {
            ResponseKind::Transaction => "transaction-response",
            ResponseKind::Batch => "batch-response",
        }
    }
}

/// The outcome of one entry of a transaction or batch (`Bundle.entry.response`).
#[derive(Debug, Clone, PartialEq)]
pub struct EntryResponse {
    /// The HTTP status line, e.g. `201 Created`.
    pub status: String,
    /// Where the resource now is, e.g. `Observation/abc/_history/1`.
    pub location: Option<String>,
    /// The version's ETag, e.g. `W/"1"`.
    pub etag: Option<String>,
    /// An OperationOutcome, for an entry of a batch that failed.
    pub outcome: Option<Value>,
}

impl EntryResponse {
    /// A response with just a status.
    pub fn new(status: impl Into<String>) -> EntryResponse {
        EntryResponse {
            status: status.into(),
            location: None,
            etag: None,
            outcome: None,
        }
    }
}

/// A `transaction-response` or `batch-response` Bundle, one entry per request entry in order.
pub fn response_bundle(kind: ResponseKind, entries: &[EntryResponse]) -> Value {
    let entries: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut response = json!({"status": entry.status});
            if let Some(location) = &entry.location {
                response["location"] = json!(location);
            }
            if let Some(etag) = &entry.etag {
                response["etag"] = json!(etag);
            }
            if let Some(outcome) = &entry.outcome {
                response["outcome"] = outcome.clone();
            }
            json!({"response": response})
        })
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": kind.code()});
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    bundle
}

/// The type of a Bundle of rendered resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputBundleType {
    /// Search results: gets `total` and each entry `search.mode` `match`.
    Searchset,
    Collection,
}

/// A Bundle of rendered resources, e.g. the Consents or AuditEvents of a patient. Entries carry
/// no fullUrl, since the server's base URL is not known here.
pub fn bundle(bundle_type: OutputBundleType, resources: Vec<Value>) -> Value {
    let total = resources.len();
    let searchset = bundle_type == OutputBundleType::Searchset;
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            if searchset {
                json!({"resource": resource, "search": {"mode": "match"}})
            } else {
                json!({"resource": resource})
            }
        })
        .collect();
    let mut bundle = match bundle_type {
        OutputBundleType::Searchset => {
            json!({"resourceType": "Bundle", "type": "searchset", "total": total})
        }
        OutputBundleType::Collection => json!({"resourceType": "Bundle", "type": "collection"}),
    };
    if !entries.is_empty() {
        bundle["entry"] = json!(entries);
    }
    bundle
}
