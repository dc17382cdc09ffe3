//! The node operator's endpoints, signed by the node's own key (which only its operator holds,
//! in the node's home): `POST /v1/admin/backup` makes a consistent copy of the running node's data
//! directory under `<data dir>/backups/` and answers its manifest; `medledger backup` packs it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use medledger_node::backup::Backup;

use crate::{ApiError, ApiResult, AppState, auth, blocking};

/// Checks that the request is signed by this node's own key.
fn operator(state: &AppState, method: &Method, uri: &Uri, headers: &HeaderMap) -> ApiResult<()> {
    let signed = auth::verify_request(
        &state.node,
        method,
        uri,
        headers,
        &medledger_crypto::sha256(b""),
    )
    .map_err(|error| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            error.to_string(),
        )
    })?;
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
