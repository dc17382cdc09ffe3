//! What the node records of each HTTP request: a request id, a log line and the metrics.
//!
//! Every response carries `X-Request-Id` (the client's own, when it sent a well-formed one, or a
//! fresh one), every JSON error body names it (`error.request_id`), and the request's log line
//! carries it, so an operator can match a client's complaint to the log. The log line and the
//! metrics name the route's pattern (`/v1/records/{id}`), the method, the status and the time,
//! never the path itself or its query: paths hold patient ids and record ids, and no PHI goes to
//! the log.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use medledger_node::Node;
use rand_core::RngCore;

/// The request id header, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The longest request id taken from a client.
pub const REQUEST_ID_BYTES_MAX: usize = 64;

tokio::task_local! {
    /// The id of the request being answered, for error bodies.
    static REQUEST_ID: String;
}

/// The id of the request this task answers, if it runs inside [`observe`].
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A client's request id is kept only if it is short and plain (letters, digits, `-`, `_`, `.`),
/// so nothing a client sends reaches a log line or a header unchecked.
fn client_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= REQUEST_ID_BYTES_MAX
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    plain.then(|| value.to_string())
}

fn fresh_request_id() -> String {
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Runs one request with its id, then logs and counts it.
pub async fn observe(State(node): State<Node>, request: Request, next: Next) -> Response {
    let id = client_request_id(&request).unwrap_or_else(fresh_request_id);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().clone();
    #[allow(clippy::disallowed_methods)] // Edge: request latency for the log and the metrics.
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request)).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    // A label per method name a client invents would grow the metrics without bound.
    let method_label = match method.as_str() {
        known @ ("GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS") => known,
        _ => "other",
    };
    node.metrics()
        .http_request(&route, method_label, status, seconds);
    let millis = seconds * 1_000.0;
    // Scrapes and health checks arrive every few seconds; they are counted, not logged.
    if matches!(route.as_str(), "/metrics" | "/health") {
        tracing::debug!(request_id = %id, %method, %route, status, millis, "request");
    } else if status >= 500 {
        tracing::warn!(request_id = %id, %method, %route, status, millis, "request");
    } else {
        tracing::info!(request_id = %id, %method, %route, status, millis, "request");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: Option<&str>, kept: bool) {
        let mut builder = axum::http::Request::builder();
        if let Some(value) = header {
            builder = builder.header(REQUEST_ID_HEADER, value);
        }
        let request = builder.body(axum::body::Body::empty()).expect("request");
        assert_eq!(client_request_id(&request).is_some(), kept, "{header:?}");
    }

    /// A client's plain, short id is kept; anything else is replaced.
    #[test]
    fn client_request_ids_are_kept_only_when_plain() {
        check(Some("abc-123_x.y"), true);
        check(Some(&"a".repeat(REQUEST_ID_BYTES_MAX)), true);
        check(None, false);
        check(Some(""), false);
        check(Some(&"a".repeat(REQUEST_ID_BYTES_MAX + 1)), false);
        for bad in ["a b", "a\"b", "patient/123", "x;y", "é"] {
            check(Some(bad), false);
        }
        assert_eq!(fresh_request_id().len(), 16);
        assert_ne!(fresh_request_id(), fresh_request_id());
    }
}
