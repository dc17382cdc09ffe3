//! Signed requests: how a member proves who is asking, for the FHIR face and the records API.
//!
//! A request carries `Authorization: Medledger key=<hex>, ts=<ms>, sig=<hex>`. The signature is
//! Ed25519 over [`sign_bytes`]: a domain tag, the chain id, the method, the path and query, the
//! timestamp, the SHA-256 of the body and the request's access headers (purpose, break-glass,
//! wrap-to). So a signature covers exactly one request, which cannot be altered, moved to another
//! chain or replayed after the clock window; its hash is the id of the access event it causes,
//! which the ledger accepts once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, Method};
use medledger_crypto::{Hash, PublicKey, SecretKey, Signature, sha256};

pub const AUTHORIZATION_SCHEME: &str = "Medledger";
pub const HEADER_PURPOSE: &str = "x-purpose-of-use";
pub const HEADER_BREAK_GLASS: &str = "x-break-glass";
pub const HEADER_WRAP_TO: &str = "x-wrap-to";
/// The SHA-256 (hex) of a body that is streamed (a genomic file): signed in place of the body,
/// and checked against the bytes once they have all arrived.
pub const HEADER_CONTENT_SHA256: &str = "x-content-sha256";
/// How far a request's timestamp may be from the node's clock.
pub const REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;
/// The most request ids remembered for replay protection of writes.
pub const REQUESTS_REMEMBERED_MAX: usize = 1_000_000;

const DOMAIN: &[u8] = b"medledger/http-request/v1";

/// What a signature covers, besides the method and path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessHeaders {
    pub purpose: Option<String>,
    pub break_glass: bool,
    pub wrap_to: Option<String>,
}

impl AccessHeaders {
    pub fn from_headers(headers: &HeaderMap) -> AccessHeaders {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        AccessHeaders {
            purpose: text(HEADER_PURPOSE),
            break_glass: text(HEADER_BREAK_GLASS).is_some_and(|value| value == "true"),
            wrap_to: text(HEADER_WRAP_TO),
        }
    }
}

/// The bytes a requester signs.
pub fn sign_bytes(
    chain_id: &str,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    body: &[u8],
    access: &AccessHeaders,
) -> Vec<u8> {
    sign_bytes_digest(
        chain_id,
        method,
        path_and_query,
        time_ms,
        &sha256(body),
        access,
    )
}

/// The bytes a requester signs, given the body's SHA-256 (for a body streamed, not held).
pub fn sign_bytes_digest(
    chain_id: &str,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    body_sha256: &Hash,
    access: &AccessHeaders,
) -> Vec<u8> {
    let mut bytes = DOMAIN.to_vec();
    for part in [
        chain_id,
        method,
        path_and_query,
        &time_ms.to_string(),
        &body_sha256.to_hex(),
        access.purpose.as_deref().unwrap_or(""),
        if access.break_glass { "true" } else { "" },
        access.wrap_to.as_deref().unwrap_or(""),
    ] {
        bytes.push(b'\n');
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

/// The `Authorization` header value for a request, as a client builds it.
pub fn authorization(key: &SecretKey, time_ms: u64, signed: &[u8]) -> String {
    format!(
        "{AUTHORIZATION_SCHEME} key={}, ts={time_ms}, sig={}",
        key.public_key(),
        key.sign(signed).to_hex()
    )
}

/// A verified requester.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub key: PublicKey,
    /// The hash of the signer's key and the signed bytes: this request's id.
    pub request: Hash,
    pub access: AccessHeaders,
}

/// Why a request's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "this endpoint needs a signed request: Authorization: Medledger key=<hex>, ts=<ms>, sig=<hex>"
    )]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(String),
    #[error("the request's timestamp is more than five minutes from the node's clock")]
    Stale,
    #[error("the request's signature does not verify")]
    BadSignature,
    #[error("this signed request was already used")]
    Replayed,
    #[error("too many signed writes in the last ten minutes; retry shortly")]
    Busy,
}

/// Checks a request's signature and timestamp.
pub fn verify(
    chain_id: &str,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
) -> Result<Signed, AuthError> {
    verify_digest(
        chain_id,
        method,
        path_and_query,
        headers,
        &sha256(body),
        now_ms,
    )
}

/// Checks a request's signature and timestamp, given its body's SHA-256.
pub fn verify_digest(
    chain_id: &str,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body_sha256: &Hash,
    now_ms: u64,
) -> Result<Signed, AuthError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed("not ASCII".into()))?;
    let rest = value
        .strip_prefix(AUTHORIZATION_SCHEME)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| {
            AuthError::Malformed(format!("the scheme must be {AUTHORIZATION_SCHEME}"))
        })?;
    let mut fields = BTreeMap::new();
    for part in rest.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| AuthError::Malformed(format!("{part:?} is not name=value")))?;
        fields.insert(name, value);
    }
    let field = |name: &str| {
        fields
            .get(name)
            .copied()
            .ok_or_else(|| AuthError::Malformed(format!("{name}= is missing")))
    };
    let key = PublicKey::from_hex(field("key")?)
        .map_err(|error| AuthError::Malformed(format!("key: {error}")))?;
    let time_ms: u64 = field("ts")?
        .parse()
        .map_err(|_| AuthError::Malformed("ts must be milliseconds since the epoch".into()))?;
    let signature = Signature::from_hex(field("sig")?)
        .map_err(|error| AuthError::Malformed(format!("sig: {error}")))?;
    if time_ms.abs_diff(now_ms) > REQUEST_SKEW_MS {
        return Err(AuthError::Stale);
    }
    let access = AccessHeaders::from_headers(headers);
    let signed = sign_bytes_digest(
        chain_id,
        method.as_str(),
        path_and_query,
        time_ms,
        body_sha256,
        &access,
    );
    key.verify(&signed, &signature)
        .map_err(|_| AuthError::BadSignature)?;
    // The id covers the signer too: two members sending the same request get two ids, so
    // nobody can use up another's.
    let mut id_bytes = key.0.to_vec();
    id_bytes.extend_from_slice(&signed);
    Ok(Signed {
        key,
        request: sha256(&id_bytes),
        access,
    })
}

/// Request ids seen within the clock window, so a signed write cannot be replayed. Reads need
/// no such memory: their id is the access event's, which the ledger accepts once.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    ids: std::collections::BTreeSet<Hash>,
    /// The same ids in arrival order, so expired ones leave from the front.
    order: std::collections::VecDeque<(u64, Hash)>,
}

impl ReplayGuard {
    pub fn check(&self, request: &Hash, now_ms: u64) -> Result<(), AuthError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // A request older than twice the skew window can no longer verify, so it is forgotten.
        while let Some((time, id)) = seen.order.front().copied() {
            if now_ms.saturating_sub(time) <= 2 * REQUEST_SKEW_MS {
                break;
            }
            seen.order.pop_front();
            seen.ids.remove(&id);
        }
        if seen.ids.contains(request) {
            return Err(AuthError::Replayed);
        }
        if seen.ids.len() >= REQUESTS_REMEMBERED_MAX {
            // Forgetting would reopen the window for replays; refusing is the safe side.
            return Err(AuthError::Busy);
        }
        seen.ids.insert(*request);
        seen.order.push_back((now_ms, *request));
        Ok(())
    }
}

/// Checks a request to this node: [`verify`] against the node's chain id, the request's path and
/// query, and the node's clock.
pub(crate) fn verify_request(
    node: &medledger_node::Node,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body_sha256: &Hash,
) -> Result<Signed, AuthError> {
    let path = uri.path_and_query().map_or("/", |value| value.as_str());
    verify_digest(
        &node.genesis().chain_id,
        method,
        path,
        headers,
        body_sha256,
        crate::fhir::now_ms(),
    )
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn signed_headers(key: &SecretKey, time_ms: u64, path: &str, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_PURPOSE, HeaderValue::from_static("TREAT"));
        let access = AccessHeaders::from_headers(&headers);
        let bytes = sign_bytes("chain", "GET", path, time_ms, body, &access);
        let value = authorization(key, time_ms, &bytes);
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(&value).expect("ascii"),
        );
        headers
    }

    /// A signature verifies for exactly the request it was made for: another path, body,
    /// purpose, chain or an old timestamp fails, and a missing or garbled header is named.
    #[test]
    fn a_signature_covers_exactly_one_request() {
        let key = SecretKey::from_seed(1);
        let headers = signed_headers(&key, 1_000_000, "/fhir/Patient/p", b"");
        let ok = verify(
            "chain",
            &Method::GET,
            "/fhir/Patient/p",
            &headers,
            b"",
            1_000_000,
        )
        .expect("verifies");
        assert_eq!(ok.key, key.public_key());
        assert_eq!(ok.access.purpose.as_deref(), Some("TREAT"));
        let check = |chain: &str, path: &str, body: &[u8], now: u64, headers: &HeaderMap| {
            verify(chain, &Method::GET, path, headers, body, now).map(|_| ())
        };
        assert_eq!(
            check("chain", "/fhir/Patient/q", b"", 1_000_000, &headers),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check("chain", "/fhir/Patient/p", b"x", 1_000_000, &headers),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check("other", "/fhir/Patient/p", b"", 1_000_000, &headers),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check(
                "chain",
                "/fhir/Patient/p",
                b"",
                1_000_000 + REQUEST_SKEW_MS + 1,
                &headers
            ),
            Err(AuthError::Stale)
        );
        let mut changed = headers.clone();
        changed.insert(HEADER_PURPOSE, HeaderValue::from_static("HRESCH"));
        assert_eq!(
            check("chain", "/fhir/Patient/p", b"", 1_000_000, &changed),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check(
                "chain",
                "/fhir/Patient/p",
                b"",
                1_000_000,
                &HeaderMap::new()
            ),
            Err(AuthError::Missing)
        );
        let mut garbled = HeaderMap::new();
        garbled.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_static("Medledger key=zz, ts=1, sig=00"),
        );
        assert!(matches!(
            check("chain", "/fhir/Patient/p", b"", 1, &garbled),
            Err(AuthError::Malformed(_))
        ));
    }

    /// A write's request id is accepted once within the window.
    #[test]
    fn replayed_requests_are_refused() {
        let guard = ReplayGuard::default();
        let id = Hash([1; 32]);
        assert_eq!(guard.check(&id, 1_000), Ok(()));
        assert_eq!(guard.check(&id, 2_000), Err(AuthError::Replayed));
        assert_eq!(guard.check(&Hash([2; 32]), 2_000), Ok(()));
    }
}
