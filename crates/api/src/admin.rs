//! The node operator's endpoints, signed by the node's own key (which only its operator holds,
//! in the node's home): `POST /v1/admin/backup` makes a consistent copy of the running node's data
//! directory under `<data dir>/backups/` and answers its manifest; `medledger backup` packs it.
//! `POST /v1/admin/snapshot` exports a state snapshot at the head for full nodes to start from.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use medledger_node::backup::Backup;
use medledger_node::snapshot::{CHUNK_LEAVES_DEFAULT, SnapshotManifest};
use serde::Deserialize;

use crate::{ApiError, ApiResult, AppState, blocking};

/// Checks that the request is signed by this node's own key.
fn operator(state: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap) -> ApiResult<()> {
    let signed = crate::signed_request(&state.node, method, uri, headers, b"")?;
    if signed.key != state.node.key() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_the_operator",
            "only this node's own key (its operator's) may ask for a backup",
        ));
    }
    state
        .replay
        .check(&signed.request, crate::fhir::now_ms())
        .map_err(|error| {
            ApiError::new(StatusCode::CONFLICT, "request_replayed", error.to_string())
        })?;
    Ok(())
}

#[utoipa::path(post, path = "/v1/admin/backup", responses(
    (status = 200, description = "The backup's manifest: where it is under the data directory, the chain, the head it holds, and every file with its size and SHA-256"),
    (status = 401, description = "Not signed", body = crate::ErrorBody),
    (status = 403, description = "Not signed by this node's own key", body = crate::ErrorBody)),
    security(("medledger_signature" = [])))]
pub(crate) async fn backup(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Backup>> {
    operator(&state, &method, &uri, &headers)?;
    let node = state.node.clone();
    let backup = blocking(move || Ok(node.backup()?)).await?;
    tracing::info!(
        height = backup.height,
        files = backup.files.len(),
        "backup made"
    );
    Ok(Json(backup))
}

#[derive(Deserialize)]
pub(crate) struct SnapshotQuery {
    chunk_leaves: Option<usize>,
}

#[utoipa::path(post, path = "/v1/admin/snapshot", params(
    ("chunk_leaves" = Option<usize>, Query, description = "Leaves per chunk (default 10000, at most 100000)")),
    responses(
    (status = 200, description = "The snapshot's manifest: height, certified state root, chunks with their SHA-256, and the light proof binding it to the certified header"),
    (status = 401, description = "Not signed", body = crate::ErrorBody),
    (status = 403, description = "Not signed by this node's own key", body = crate::ErrorBody)),
    security(("medledger_signature" = [])))]
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<SnapshotManifest>> {
    let Query(query) = crate::parse_query(query)?;
    operator(&state, &method, &uri, &headers)?;
    let node = state.node.clone();
    let chunk_leaves = query.chunk_leaves.unwrap_or(CHUNK_LEAVES_DEFAULT);
    let manifest = blocking(move || Ok(node.export_snapshot(chunk_leaves)?)).await?;
    Ok(Json(manifest))
}
