//! Certified blocks and state snapshots for full nodes: `GET /v1/sync/blocks?from=H&wait_ms=W`,
//! `GET /v1/snapshots`, `/v1/snapshots/{height}` (the manifest) and
//! `/v1/snapshots/{height}/chunks/{index}`.
//!
//! A full node signs each request with its node key, which must be enrolled with role `node`.
//! Admission is bounded so followers cannot slow the validator: at most [`FOLLOWERS_MAX`]
//! distinct followers at a time, each at most [`FOLLOWER_REQUESTS_PER_SECOND`] requests a second
//! (a token bucket of [`FOLLOWER_BURST`]), and at most [`FOLLOWER_REQUESTS_IN_FLIGHT_MAX`]
//! requests answered at once; a refusal is a 429 or 503 with `Retry-After`. The answer is a
//! borsh [`SyncBatch`] the follower verifies block by block; nothing in it is trusted.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use medledger_crypto::PublicKey;
use medledger_ledger::Authority;
use medledger_node::follower::SyncBatch;
use medledger_types::{Height, Role};
use serde::Deserialize;

use crate::{ApiError, ApiResult, AppState, blocking};

/// The most distinct full nodes served at once.
pub const FOLLOWERS_MAX: usize = 32;
/// A follower not heard from for this long frees its place.
pub const FOLLOWER_IDLE_MS: u64 = 60_000;
/// Requests a follower may make per second, on average.
pub const FOLLOWER_REQUESTS_PER_SECOND: u64 = 20;
/// Requests a follower may make at once after a quiet spell.
pub const FOLLOWER_BURST: u64 = 40;
/// The most follower requests answered at once (long polls included).
pub const FOLLOWER_REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// The longest a follower at the head may be held waiting for the next block.
pub const SYNC_WAIT_MS_MAX: u64 = 10_000;

/// One follower's place and token bucket (tokens in thousandths).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens_milli: u64,
    last_ms: u64,
}

/// Why a follower's request was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Every place is taken by followers active within [`FOLLOWER_IDLE_MS`].
    Full,
    /// The follower's bucket is empty; a token comes back after this long.
    RateLimited { retry_after_ms: u64 },
}

/// The validator's bounds on the followers it serves.
#[derive(Debug)]
pub struct Admission {
    followers: Mutex<BTreeMap<PublicKey, Bucket>>,
    in_flight: tokio::sync::Semaphore,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission {
            followers: Mutex::new(BTreeMap::new()),
            in_flight: tokio::sync::Semaphore::new(FOLLOWER_REQUESTS_IN_FLIGHT_MAX),
        }
    }
}

impl Admission {
    /// Takes a token of `key`'s bucket at `now_ms`, giving it a place if one is free.
    pub fn admit(&self, key: &PublicKey, now_ms: u64) -> Result<(), Refusal> {
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !followers.contains_key(key) {
            followers.retain(|_, bucket| now_ms.saturating_sub(bucket.last_ms) < FOLLOWER_IDLE_MS);
            if followers.len() >= FOLLOWERS_MAX {
                return Err(Refusal::Full);
            }
            followers.insert(
                *key,
                Bucket {
                    tokens_milli: FOLLOWER_BURST * 1_000,
                    last_ms: now_ms,
                },
            );
        }
        let bucket = followers.get_mut(key).expect("inserted above");
        let earned = now_ms
            .saturating_sub(bucket.last_ms)
            .saturating_mul(FOLLOWER_REQUESTS_PER_SECOND);
        bucket.tokens_milli = bucket
            .tokens_milli
            .saturating_add(earned)
            .min(FOLLOWER_BURST * 1_000);
        bucket.last_ms = now_ms.max(bucket.last_ms);
        if bucket.tokens_milli < 1_000 {
            let retry_after_ms =
                (1_000 - bucket.tokens_milli).div_ceil(FOLLOWER_REQUESTS_PER_SECOND);
            return Err(Refusal::RateLimited { retry_after_ms });
        }
        bucket.tokens_milli -= 1_000;
        Ok(())
    }
}

#[derive(Deserialize)]
pub(crate) struct SyncQuery {
    from: Height,
    wait_ms: Option<u64>,
}

fn retry_after(mut error: ApiError, seconds: u64) -> Response {
    error
        .message
        .push_str(&format!("; retry after {seconds} s"));
    let mut response = error.into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Checks a follower's signed request: enrolled with role node, and admitted; the permit it
/// returns counts the request among those answered at once until it is dropped.
async fn admit_follower<'a>(
    state: &'a AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<tokio::sync::SemaphorePermit<'a>, Response> {
    let (key, authority, _) = crate::signed_member(state, method, uri, headers, b"")
        .await
        .map_err(IntoResponse::into_response)?;
    if !matches!(
        authority,
        Authority::Member {
            role: Role::Node,
            ..
        }
    ) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_full_node",
            "only a key enrolled with role node may follow the chain from a validator",
        )
        .into_response());
    }
    match state.sync.admit(&key, crate::fhir::now_ms()) {
        Ok(()) => state.sync.in_flight.try_acquire().map_err(|_| {
            retry_after(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "this validator is answering as many full nodes as it will at once",
                ),
                1,
            )
        }),
        Err(Refusal::Full) => Err(retry_after(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "followers_full",
                format!("this validator serves {FOLLOWERS_MAX} full nodes already"),
            ),
            FOLLOWER_IDLE_MS / 1_000,
        )),
        Err(Refusal::RateLimited { retry_after_ms }) => Err(retry_after(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("a full node may ask {FOLLOWER_REQUESTS_PER_SECOND} times a second"),
            ),
            retry_after_ms.div_ceil(1_000),
        )),
    }
}

#[utoipa::path(get, path = "/v1/snapshots", responses(
    (status = 200, description = "The heights of the state snapshots this node serves"),
    (status = 401, description = "Not signed, or not by an enrolled member", body = crate::ErrorBody),
    (status = 403, description = "The signer is not enrolled with role node", body = crate::ErrorBody)),
    security(("medledger_signature" = [])))]
pub(crate) async fn snapshots(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let _permit = match admit_follower(&state, &method, &uri, &headers).await {
        Ok(permit) => permit,
        Err(refused) => return Ok(refused),
    };
    let node = state.node.clone();
    let heights = blocking(move || Ok(node.snapshot_heights()?)).await?;
    Ok(axum::Json(serde_json::json!({ "heights": heights })).into_response())
}

#[utoipa::path(get, path = "/v1/snapshots/{height}", params(("height" = u64, Path, description = "The snapshot's height")), responses(
    (status = 200, description = "The snapshot's manifest (JSON): certified state root, chunks with their SHA-256, and the light proof binding it to the certified header"),
    (status = 404, description = "No snapshot at that height", body = crate::ErrorBody)),
    security(("medledger_signature" = [])))]
pub(crate) async fn snapshot_manifest(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    axum::extract::Path(height): axum::extract::Path<String>,
) -> ApiResult<Response> {
    let height: Height = height
        .parse()
        .map_err(|_| ApiError::bad_request("malformed_height", "height must be a whole number"))?;
    let _permit = match admit_follower(&state, &method, &uri, &headers).await {
        Ok(permit) => permit,
        Err(refused) => return Ok(refused),
    };
    let node = state.node.clone();
    let manifest = blocking(move || Ok(node.snapshot_manifest(height)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no snapshot at height {height} here")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], manifest).into_response())
}

#[utoipa::path(get, path = "/v1/snapshots/{height}/chunks/{index}", params(
    ("height" = u64, Path, description = "The snapshot's height"),
    ("index" = usize, Path, description = "The chunk's index, from 0")), responses(
    (status = 200, description = "The chunk (application/octet-stream, borsh): leaves in key-hash order and the range proof of the last"),
    (status = 404, description = "No such chunk", body = crate::ErrorBody)),
    security(("medledger_signature" = [])))]
pub(crate) async fn snapshot_chunk(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    axum::extract::Path((height, index)): axum::extract::Path<(String, String)>,
) -> ApiResult<Response> {
    let (Ok(height), Ok(index)) = (height.parse::<Height>(), index.parse::<usize>()) else {
        return Err(ApiError::bad_request(
            "malformed_path",
            "height and index must be whole numbers",
        ));
    };
    let _permit = match admit_follower(&state, &method, &uri, &headers).await {
        Ok(permit) => permit,
        Err(refused) => return Ok(refused),
    };
    let node = state.node.clone();
    let chunk = blocking(move || Ok(node.snapshot_chunk(height, index)?))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no chunk {index} of a snapshot at {height} here"))
        })?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], chunk).into_response())
}

#[utoipa::path(get, path = "/v1/sync/blocks", params(
    ("from" = u64, Query, description = "The first height wanted"),
    ("wait_ms" = Option<u64>, Query, description = "When `from` is past the head, wait up to this long (at most 10000) for it")),
    responses(
    (status = 200, description = "A borsh SyncBatch (application/octet-stream): consecutive decided blocks from `from` with their certificates, at most 64 heights and 8 MiB; empty when `from` is past the head"),
    (status = 401, description = "Not signed, or not by an enrolled member", body = crate::ErrorBody),
    (status = 403, description = "The signer is not enrolled with role node", body = crate::ErrorBody),
    (status = 429, description = "This follower is over its request rate", body = crate::ErrorBody),
    (status = 503, description = "Every follower place is taken, or the validator is busy", body = crate::ErrorBody)),
    security(("medledger_signature" = [])))]
pub(crate) async fn sync_blocks(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<SyncQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    let Query(query) = crate::parse_query(query)?;
    let _permit = match admit_follower(&state, &method, &uri, &headers).await {
        Ok(permit) => permit,
        Err(refused) => return Ok(refused),
    };
    let from = query.from.max(1);
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0).min(SYNC_WAIT_MS_MAX));
    let mut head = state.node.subscribe_head();
    if *head.borrow() < from && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, head.wait_for(|height| *height >= from)).await;
    }
    let node = state.node.clone();
    let batch: SyncBatch = blocking(move || Ok(node.sync_batch(from)?)).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        batch.to_bytes(),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower gets its burst, then its rate; a new follower is refused while every place is
    /// taken and admitted once one falls idle.
    #[test]
    fn admission_is_bounded() {
        let admission = Admission::default();
        let key = |seed: u64| medledger_crypto::SecretKey::from_seed(seed).public_key();
        for _ in 0..FOLLOWER_BURST {
            assert_eq!(admission.admit(&key(1), 1_000), Ok(()));
        }
        assert_eq!(
            admission.admit(&key(1), 1_000),
            Err(Refusal::RateLimited { retry_after_ms: 50 })
        );
        // A twentieth of a second later, one more.
        assert_eq!(admission.admit(&key(1), 1_050), Ok(()));
        assert!(admission.admit(&key(1), 1_050).is_err());
        for seed in 2..=FOLLOWERS_MAX as u64 {
            assert_eq!(admission.admit(&key(seed), 2_000), Ok(()));
        }
        let newcomer = key(1_000);
        assert_eq!(admission.admit(&newcomer, 2_000), Err(Refusal::Full));
        // Follower 1 was last heard at 1,050 ms; a minute later its place is free.
        assert_eq!(
            admission.admit(&newcomer, 1_050 + FOLLOWER_IDLE_MS - 1),
            Err(Refusal::Full)
        );
        let later = 2_000 + FOLLOWER_IDLE_MS;
        assert_eq!(admission.admit(&newcomer, later), Ok(()));
    }
}
