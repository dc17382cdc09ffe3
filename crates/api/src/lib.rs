//! The node's versioned HTTP JSON API (`/v1/...`), plus `/health`, `/metrics` and
//! `/openapi.json`. This is the only crate that speaks HTTP.
//!
//! **Invariant:** every error is a 4xx or 5xx status with a JSON body
//! `{"error": {"code": "...", "message": "..."}}`; nothing a client sends can panic a handler,
//! and a refused request changes nothing.
//! **Invariant:** every request body is bounded by [`API_BODY_BYTES_MAX`] and every batch by
//! [`TXS_PER_REQUEST_MAX`].

mod admin;
pub mod auth;
mod claims;
mod contracts;
mod feed;
pub mod fhir;
mod monitor;
pub mod observe;
mod portal;
mod research;
pub mod smart;
mod supply;
pub mod sync;
mod tokens;
mod trials;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRef, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::Tx;
use medledger_ledger::TxError;
use medledger_ledger::light::LightProof;
use medledger_node::{Inserted, MempoolError, Node, NodeError, Services, SubmitError, TxStatus};
use medledger_types::Height;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

/// The largest request body the API reads.
pub const API_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The most transactions one submission may carry.
pub const TXS_PER_REQUEST_MAX: usize = 20_000;

/// An API error: a status and a JSON body.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable reason, e.g. `bad_signature` or `nonce_used`.
    code: String,
    /// A sentence for people.
    message: String,
    /// The request's id, also in the `X-Request-Id` header and the node's log line for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn body(&self) -> Value {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some(id) = observe::current_request_id() {
            body["error"]["request_id"] = Value::String(id);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> Self {
        match &error {
            NodeError::Tampered { .. } => {
                tracing::error!(%error, "refusing to serve data that fails its integrity check");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_integrity",
                    error.to_string(),
                )
            }
            NodeError::Stopped(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_stopped",
                error.to_string(),
            ),
            NodeError::NotKept { .. } => {
                ApiError::new(StatusCode::GONE, "height_not_kept", error.to_string())
            }
            _ => {
                tracing::error!(%error, "request failed inside the node");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    error.to_string(),
                )
            }
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        // A node-side failure keeps its own mapping: 503 if the node stopped, 500 otherwise.
        let error = match error {
            SubmitError::Node(node_error) => return ApiError::from(node_error),
            other => other,
        };
        let status = match &error {
            SubmitError::Tx(tx_error) => match tx_error {
                TxError::WrongChain { .. } => StatusCode::BAD_REQUEST,
                TxError::BadSignature(_) => StatusCode::UNAUTHORIZED,
                TxError::UnknownSender(_) | TxError::RevokedSender { .. } => StatusCode::FORBIDDEN,
                TxError::NonceUsed { .. } | TxError::NonceGap { .. } => StatusCode::CONFLICT,
                TxError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            SubmitError::Mempool(MempoolError::Full(_)) => StatusCode::SERVICE_UNAVAILABLE,
            SubmitError::Mempool(MempoolError::NonceTaken { .. }) => StatusCode::CONFLICT,
            SubmitError::Mempool(MempoolError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            SubmitError::Node(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.code(), error.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// What the handlers share: the node, its modules' services (found by type), and the replay
/// memory of signed writes.
#[derive(Clone, Debug)]
pub struct AppState {
    pub node: Node,
    pub services: Services,
    pub replay: Arc<auth::ReplayGuard>,
    /// The SMART on FHIR token authority.
    pub smart: Arc<smart::Smart>,
    /// SMART App Launch: registered apps and authorizations in flight.
    pub launch: Arc<smart::launch::Launch>,
    /// Becomes true when the server starts shutting down, so long-lived responses (the trial
    /// alert streams) end and the graceful shutdown does not wait on them.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// The bounds on the full nodes this node serves blocks to.
    pub sync: Arc<sync::Admission>,
    /// The portal's accounts (passkeys, sessions, the members' keys held for them), or why the
    /// node cannot sign people in.
    pub portal: Result<Arc<portal::accounts::Accounts>, String>,
}

/// What a module adds to the HTTP API: its routes and the OpenAPI description of their paths,
/// and the FHIR Consent resources it serves, if any.
#[derive(Clone, Copy)]
pub(crate) struct ModuleApi {
    pub routes: fn() -> Router<AppState>,
    pub openapi: fn() -> utoipa::openapi::OpenApi,
    pub consent: Option<ConsentView>,
    pub audit: Option<AuditView>,
    pub fhir: Option<FhirView>,
    pub fhir_source: Option<FhirSource>,
}

/// Resources a module adds to resource types the records module serves on the FHIR face (a
/// device's readings are Observations beside the records' Observations): read by their own ids,
/// and added after the records in a search by patient, with their own consent decision and
/// access event. The records keep their ids: a source answers a read only for ids of its own
/// form that no record holds.
#[derive(Clone, Copy)]
pub(crate) struct FhirSource {
    pub kinds: &'static [&'static str],
    /// One resource of the kind by id, or `None` when the id is not one of this source's.
    pub read: fn(AppState, fhir::Caller, String, String) -> FhirSourceRead,
    /// A page of the patient's resources of the kind that match the search.
    pub search: fn(AppState, fhir::Caller, SourceSearch) -> FhirSourceSearch,
}

/// A search by patient, as a source is asked for its part of it.
pub(crate) struct SourceSearch {
    pub kind: String,
    /// The patient, by their id on chain and their FHIR id.
    pub patient: Hash,
    pub patient_fhir_id: String,
    pub query: medledger_fhir::search::SearchQuery,
    /// The source's own offset and page size within its matches.
    pub offset: usize,
    pub count: usize,
    /// The server's base URL, for the entries' full URLs.
    pub base: String,
}

impl SourceSearch {
    /// A source's matches, in order: how many there are, and this search's page of them.
    pub fn page<T>(&self, matched: Vec<T>) -> (usize, Vec<T>) {
        let total = matched.len();
        let page = matched
            .into_iter()
            .skip(self.offset)
            .take(self.count)
            .collect();
        (total, page)
    }
}

/// A source's part of a search: how many of its resources match (after consent), how many
/// consent withheld, the page (full URL and resource), and the access event that released it.
#[derive(Default)]
pub(crate) struct SourcePage {
    pub total: usize,
    pub withheld: usize,
    pub entries: Vec<(String, Vec<u8>)>,
    pub event: Option<Hash>,
}

pub(crate) type FhirSourceRead = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = fhir::FhirResult<Option<axum::response::Response>>> + Send,
    >,
>;
pub(crate) type FhirSourceSearch =
    std::pin::Pin<Box<dyn std::future::Future<Output = fhir::FhirResult<SourcePage>> + Send>>;

/// The sources that add resources to resource type `kind`.
pub(crate) fn fhir_sources(kind: &str) -> impl Iterator<Item = FhirSource> + '_ {
    MODULE_APIS
        .iter()
        .filter_map(|module| module.fhir_source)
        .filter(move |source| source.kinds.contains(&kind))
}

/// FHIR resource types a module serves on the FHIR face (`/fhir/{type}`) instead of the records
/// module: create (and type-level operations such as `$submit`), read and search, each with the
/// authenticated caller.
#[derive(Clone, Copy)]
pub(crate) struct FhirView {
    pub kinds: &'static [&'static str],
    pub create: fn(AppState, fhir::Caller, String, Option<String>, axum::body::Bytes) -> FhirAnswer,
    pub read: fn(AppState, fhir::Caller, String, String) -> FhirAnswer,
    pub search: fn(AppState, fhir::Caller, String, SearchParams) -> FhirAnswer,
}

/// A search's parameters, in order.
pub(crate) type SearchParams = Vec<(String, String)>;

/// A module's answer on the FHIR face.
pub(crate) type FhirAnswer = std::pin::Pin<
    Box<dyn std::future::Future<Output = fhir::FhirResult<axum::response::Response>> + Send>,
>;

/// The module's FHIR view that serves resource type `kind`, if one does.
pub(crate) fn fhir_view(kind: &str) -> Option<FhirView> {
    MODULE_APIS
        .iter()
        .filter_map(|module| module.fhir)
        .find(|view| view.kinds.contains(&kind))
}

/// A module's entries in a patient's FHIR AuditEvent log, after the records module's access
/// events: given the patient's bound key, the custodian of the patient id searched and the
/// `Patient/{id}` reference, the module's events for that patient at that custodian as R4
/// AuditEvents, oldest first (a bounded number, the latest).
#[derive(Clone, Copy)]
pub(crate) struct AuditView {
    pub events: AuditEvents,
}

/// (node, the patient's key, the custodian, `Patient/{id}`) → the module's AuditEvents.
pub(crate) type AuditEvents = fn(
    &medledger_node::Node,
    &medledger_crypto::PublicKey,
    &str,
    &str,
) -> Result<Vec<serde_json::Value>, medledger_node::ServiceError>;

/// Every module's audit view.
pub(crate) fn audit_views() -> impl Iterator<Item = AuditView> {
    MODULE_APIS.iter().filter_map(|module| module.audit)
}

/// A module's consents, served as FHIR `Consent/{id}` beside the records module's grants: the
/// ids it claims (which no other module's may match) and how to read one for a caller.
#[derive(Clone, Copy)]
pub(crate) struct ConsentView {
    pub claims: fn(&str) -> bool,
    pub read: fn(AppState, fhir::Caller, String) -> ConsentRead,
}

/// A module's answer to a read of one of its consents.
pub(crate) type ConsentRead = std::pin::Pin<
    Box<dyn std::future::Future<Output = fhir::FhirResult<axum::response::Response>> + Send>,
>;

/// The consent view that claims `id`, if a module's does.
pub(crate) fn consent_view(id: &str) -> Option<ConsentView> {
    MODULE_APIS
        .iter()
        .filter_map(|module| module.consent)
        .find(|view| (view.claims)(id))
}

/// Every module's API, one line each: health records and consent over FHIR, the supply chain
/// and EPCIS, clinical trials, research data sharing, tokens, claims.
const MODULE_APIS: &[ModuleApi] = &[
    fhir::API,
    supply::API,
    trials::API,
    research::API,
    tokens::API,
    claims::API,
    monitor::API,
    contracts::API,
];

/// The node's OpenAPI description: the ledger's own paths and every module's.
pub fn openapi_doc() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for module in MODULE_APIS {
        doc.merge((module.openapi)());
    }
    doc
}

impl FromRef<AppState> for Node {
    fn from_ref(state: &AppState) -> Node {
        state.node.clone()
    }
}

/// Builds the router over a running node and the module services it runs.
pub fn router(node: Node, services: Services) -> Router {
    // A router built alone is never told to close (the sender is gone, which the streams read
    // as "never"); its streams end with their connections.
    let (_, closed) = tokio::sync::watch::channel(false);
    router_closing(node, services, closed, PORTAL_ORIGIN_DEFAULT)
}

/// Where the portal is opened when nothing else is said: passkeys are bound to this host.
pub const PORTAL_ORIGIN_DEFAULT: &str = "http://localhost";

/// Builds the router; its long-lived responses end when `closing` becomes true.
fn router_closing(
    node: Node,
    services: Services,
    closing: tokio::sync::watch::Receiver<bool>,
    portal_origin: &str,
) -> Router {
    let smart = smart::Smart::new(
        &node.genesis().chain_id,
        &node.key(),
        node.derive_secret("smart-on-fhir/token-signing"),
    );
    let launch =
        smart::launch::Launch::open(Some(&node.data_dir().join("oauth"))).unwrap_or_else(|error| {
            // A damaged registry must not stop the node: apps are re-registered, and the error
            // says why.
            tracing::error!(%error, "the SMART app registry cannot be read; starting with none");
            smart::launch::Launch::open(None).unwrap_or_else(|_| unreachable!("in memory"))
        });
    let portal_file = node.data_dir().join("portal.redb");
    let portal = portal::accounts::Accounts::open(
        &portal_file,
        medledger_crypto::envelope::DataKey(node.derive_secret("portal/custody/v1")),
        portal_origin,
    )
    .map(|accounts| {
        node.register_database(&portal_file, accounts.database());
        Arc::new(accounts)
    })
    .map_err(|error| {
        tracing::warn!(%error, "the portal cannot sign people in");
        error.to_string()
    });
    let observed = node.clone();
    let app = AppState {
        node,
        services,
        replay: Arc::new(auth::ReplayGuard::default()),
        smart: Arc::new(smart),
        launch: Arc::new(launch),
        closing,
        sync: Arc::new(sync::Admission::default()),
        portal,
    };
    let mut routes = smart::routes().merge(portal::routes());
    for module in MODULE_APIS {
        routes = routes.merge((module.routes)());
    }
    routes
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/status", get(status))
        .route("/v1/txs", post(submit))
        .route("/v1/txs/{id}", get(tx))
        .route("/v1/txs/{id}/receipt", get(receipt))
        .route("/v1/txs/{id}/proof", get(tx_proof))
        .route("/v1/blocks/head", get(head_block))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/blocks/hash/{hash}", get(block_by_hash))
        .route("/v1/state/{*key}", get(state))
        .route("/v1/accounts/{key}", get(account))
        .route("/v1/sync/blocks", get(sync::sync_blocks))
        .route("/v1/admin/backup", post(admin::backup))
        .route("/v1/admin/snapshot", post(admin::snapshot))
        .route("/v1/snapshots", get(sync::snapshots))
        .route("/v1/snapshots/{height}", get(sync::snapshot_manifest))
        .route(
            "/v1/snapshots/{height}/chunks/{index}",
            get(sync::snapshot_chunk),
        )
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                // Under /fhir, a FHIR client gets an OperationOutcome; elsewhere the JSON error.
                if fhir::is_fhir_path(&uri) {
                    fhir::fhir_not_found(&method, &uri).into_response()
                } else {
                    ApiError::not_found("no such endpoint; see /openapi.json").into_response()
                }
            },
        )
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                if fhir::is_fhir_path(&uri) {
                    return fhir::method_not_allowed(&method, &uri).into_response();
                }
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "this endpoint does not take that method",
                )
                .into_response()
            },
        )
        .layer(DefaultBodyLimit::max(API_BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(fhir::negotiate))
        .layer(axum::middleware::from_fn(refuse_declared_oversize))
        .layer(axum::middleware::from_fn_with_state(
            observed,
            observe::observe,
        ))
        .with_state(app)
}

/// Refuses a body whose declared length is over the limit before reading any of it, so the
/// client gets its 413 at once instead of after uploading megabytes (and without the race of a
/// connection closed under a client still sending). Bodies without a declared length are still
/// bounded while they are read.
async fn refuse_declared_oversize(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    // A genomic file is streamed to disk, bounded by the node's file limit instead.
    let streamed = request.method() == axum::http::Method::POST
        && matches!(request.uri().path(), "/fhir/Binary" | "/fhir/Binary/");
    match declared {
        Some(length) if length > API_BODY_BYTES_MAX as u64 && !streamed => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body declares {length} bytes; the limit is {API_BODY_BYTES_MAX} bytes"),
        )
        .into_response(),
        _ => next.run(request).await,
    }
}

/// Runs blocking node work (signature checks, database reads) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            error.to_string(),
        )
    })?
}

/// A query string, or a 400 that says what is wrong with it.
/// A member's signed request to the JSON API: the signature checked, and the signer an enrolled,
/// unrevoked member at the head. Returns the signer, who they act as, and the request's id (for
/// the replay guard of a write).
/// A signed write with a JSON body: the signing member, whose request is used once (its id goes
/// into the replay memory), and the body parsed as `T`.
pub(crate) async fn signed_json_write<T: serde::de::DeserializeOwned>(
    state: &AppState,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(PublicKey, T)> {
    let body = body.map_err(|rejection| {
        ApiError::new(rejection.status(), "bad_body", rejection.body_text())
    })?;
    let (key, _, request) = signed_member(state, method, uri, headers, &body).await?;
    state
        .replay
        .check(&request, fhir::now_ms())
        .map_err(|error| {
            ApiError::new(StatusCode::CONFLICT, "request_replayed", error.to_string())
        })?;
    let parsed = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request("malformed_body", error.to_string()))?;
    Ok((key, parsed))
}

/// A request's signature and timestamp checked against this node's chain, or 401.
pub(crate) fn signed_request(
    node: &Node,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> ApiResult<auth::Signed> {
    auth::verify_request(node, method, uri, headers, &medledger_crypto::sha256(body)).map_err(
        |error| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                error.to_string(),
            )
        },
    )
}

pub(crate) async fn signed_member(
    state: &AppState,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> ApiResult<(PublicKey, medledger_ledger::Authority, Hash)> {
    let signed = signed_request(&state.node, method, uri, headers, body)?;
    let node = state.node.clone();
    let key = signed.key;
    let (authority, _) = blocking(move || Ok(node.account(&key)?)).await?;
    let authority = authority.map_err(|reason| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            format!("the requester is not an enrolled, unrevoked member: {reason}"),
        )
    })?;
    Ok((key, authority, signed.request))
}

/// Reads the committed head on a blocking thread: the height read and what `read` found there. A
/// state failure is a 500.
pub(crate) async fn read_at_head<T: Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&dyn medledger_state::StateRead) -> Result<T, medledger_state::StateError>
    + Send
    + 'static,
) -> ApiResult<(Height, T)> {
    let node = state.node.clone();
    blocking(move || {
        let (height, found) = node.read_head(|view| Ok(read(view)?))?;
        let found = found.map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?;
        Ok((height, found))
    })
    .await
}

/// This node's service of type `S`; 503 naming `what` when the node does not run it.
pub(crate) fn service<S: medledger_node::Service>(state: &AppState, what: &str) -> ApiResult<S> {
    state.services.get::<S>().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_service",
            format!("this node runs no {what} service"),
        )
    })
}

pub(crate) fn parse_query<T>(query: Result<Query<T>, QueryRejection>) -> ApiResult<Query<T>> {
    query.map_err(|error| ApiError::bad_request("malformed_query", error.body_text()))
}

pub(crate) fn parse_hash(text: &str, what: &str) -> ApiResult<Hash> {
    Hash::from_hex(text).map_err(|error| {
        ApiError::bad_request(
            "malformed_id",
            format!("{what} must be 64 hex digits: {error}"),
        )
    })
}

#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "The node is producing blocks"),
    (status = 503, description = "The node stopped after an IO failure", body = ErrorBody)))]
async fn health(State(node): State<Node>) -> ApiResult<Json<Value>> {
    if let Some(failure) = node.failure() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_stopped",
            failure,
        ));
    }
    Ok(Json(
        json!({"status": "ok", "height": *node.subscribe_head().borrow()}),
    ))
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(node): State<Node>) -> Response {
    let mut response = node.metrics().render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_doc())
}

#[utoipa::path(get, path = "/v1/status", responses((status = 200, description = "Chain id, genesis hash, head header, mempool size")))]
async fn status(State(node): State<Node>) -> ApiResult<Json<Value>> {
    let status = blocking(move || Ok(node.status()?)).await?;
    Ok(Json(json!(status)))
}

/// A submission: one transaction or a batch, each the hex of its canonical (borsh) encoding.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    tx: Option<String>,
    txs: Option<Vec<String>>,
}

fn decode_tx(text: &str) -> Result<Tx, ApiError> {
    let bytes = hex::decode(text.trim()).map_err(|error| {
        ApiError::bad_request("malformed_tx", format!("transaction is not hex: {error}"))
    })?;
    Tx::from_bytes(&bytes).map_err(|error| ApiError::bad_request("malformed_tx", error.to_string()))
}

fn submitted(result: Result<(Hash, Inserted), SubmitError>) -> Result<Value, ApiError> {
    let (id, inserted) = result?;
    let note = match inserted {
        Inserted::New => "pending",
        Inserted::AlreadyPending => "already_known",
    };
    Ok(json!({"id": id, "status": note}))
}

#[utoipa::path(post, path = "/v1/txs", request_body = SubmitRequest, responses(
    (status = 202, description = "One transaction admitted: `{id, status}`"),
    (status = 200, description = "A batch: one `{id, status}` or `{error}` per transaction, in order"),
    (status = 400, description = "Malformed JSON, hex or transaction, or the wrong chain", body = ErrorBody),
    (status = 401, description = "Bad signature", body = ErrorBody),
    (status = 403, description = "Sender not enrolled, or revoked", body = ErrorBody),
    (status = 409, description = "Nonce already used, too far ahead, or taken by another pending transaction", body = ErrorBody),
    (status = 413, description = "Body over the size limit", body = ErrorBody),
    (status = 503, description = "Mempool full; retry later", body = ErrorBody)))]
async fn submit(
    State(node): State<Node>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "unreadable_body"
        };
        ApiError::new(
            status,
            code,
            format!(
                "{} (the limit is {API_BODY_BYTES_MAX} bytes)",
                rejection.body_text()
            ),
        )
    })?;
    let request: SubmitRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request(
            "malformed_json",
            format!("expected {{\"tx\": hex}} or {{\"txs\": [hex, ...]}}: {error}"),
        )
    })?;
    match (request.tx, request.txs) {
        (Some(text), None) => {
            let tx = decode_tx(&text)?;
            let result = blocking(move || Ok(node.submit(vec![tx]))).await?.pop();
            let result = result.ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no result")
            })?;
            Ok((StatusCode::ACCEPTED, Json(submitted(result)?)).into_response())
        }
        (None, Some(texts)) => {
            if texts.len() > TXS_PER_REQUEST_MAX {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_txs",
                    format!(
                        "{} transactions in one request; the limit is {TXS_PER_REQUEST_MAX}",
                        texts.len()
                    ),
                ));
            }
            // A malformed entry refuses the whole request, so nothing is half-submitted.
            let txs = texts
                .iter()
                .enumerate()
                .map(|(index, text)| {
                    decode_tx(text).map_err(|error| {
                        ApiError::bad_request(
                            "malformed_tx",
                            format!("transaction {index}: {}", error.message),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let results = blocking(move || Ok(node.submit(txs))).await?;
            let results: Vec<Value> = results
                .into_iter()
                .map(|result| submitted(result).unwrap_or_else(|error| error.body()))
                .collect();
            Ok(Json(json!({"results": results})).into_response())
        }
        _ => Err(ApiError::bad_request(
            "malformed_json",
            "give exactly one of \"tx\" or \"txs\"",
        )),
    }
}

#[utoipa::path(get, path = "/v1/txs/{id}", params(("id" = String, Path, description = "Transaction id, hex")), responses(
    (status = 200, description = "Status, and the transaction once committed"),
    (status = 404, description = "Unknown to this node", body = ErrorBody)))]
async fn tx(State(node): State<Node>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_hash(&id, "transaction id")?;
    blocking(move || {
        let status = node.tx_status(&id)?.ok_or_else(|| {
            ApiError::not_found(format!("transaction {id} is unknown to this node"))
        })?;
        let mut body = status_json(&id, &status);
        if let TxStatus::Committed { .. } = status
            && let Some(tx) = node.committed_tx(&id)?
        {
            body["tx"] = json!(tx);
        }
        Ok(Json(body))
    })
    .await
}

/// One flat view of a transaction's state: `pending`, `committed`, or `rejected` (with
/// `on_chain` saying whether the rejection is itself recorded in a block, using the nonce).
fn status_json(id: &Hash, status: &TxStatus) -> Value {
    match status {
        TxStatus::Pending => json!({"id": id, "status": "pending", "on_chain": false}),
        TxStatus::Committed { receipt } => match &receipt.outcome {
            medledger_types::Outcome::Committed => {
                json!({"id": id, "status": "committed", "on_chain": true, "height": receipt.height, "index": receipt.index})
            }
            medledger_types::Outcome::Rejected { code, reason } => json!({
                "id": id, "status": "rejected", "on_chain": true, "height": receipt.height,
                "index": receipt.index, "code": code, "reason": reason,
            }),
        },
        TxStatus::Rejected { code, reason } => {
            json!({"id": id, "status": "rejected", "on_chain": false, "code": code, "reason": reason})
        }
    }
}

#[derive(Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

#[utoipa::path(get, path = "/v1/txs/{id}/receipt", params(
    ("id" = String, Path, description = "Transaction id, hex"),
    ("wait_ms" = Option<u64>, Query, description = "Wait up to this long (at most 60000) for the transaction to leave the mempool")),
    responses((status = 200, description = "pending, committed with its receipt, or rejected with a reason"),
    (status = 404, description = "Unknown to this node", body = ErrorBody)))]
async fn receipt(
    State(node): State<Node>,
    Path(id): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let id = parse_hash(&id, "transaction id")?;
    let Query(query) = parse_query(query)?;
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0));
    let status = node.wait_tx(&id, wait).await?;
    let status = status
        .ok_or_else(|| ApiError::not_found(format!("transaction {id} is unknown to this node")))?;
    Ok(Json(status_json(&id, &status)))
}

#[utoipa::path(get, path = "/v1/txs/{id}/proof", params(("id" = String, Path, description = "Transaction id, hex")), responses(
    (status = 200, description = "A light-client proof: certified header, transaction and receipt with their Merkle paths"),
    (status = 404, description = "Not committed", body = ErrorBody)))]
async fn tx_proof(State(node): State<Node>, Path(id): Path<String>) -> ApiResult<Json<LightProof>> {
    let id = parse_hash(&id, "transaction id")?;
    blocking(move || {
        node.tx_proof(&id)?
            .map(Json)
            .ok_or_else(|| ApiError::not_found(format!("transaction {id} is not committed")))
    })
    .await
}

#[utoipa::path(get, path = "/v1/blocks/head", responses((status = 200, description = "The last committed block and its certificate"), (status = 404, description = "No block yet", body = ErrorBody)))]
async fn head_block(State(node): State<Node>) -> ApiResult<Json<Value>> {
    blocking(move || {
        let height = node.status()?.height;
        found_block(node.block(height)?, height)
    })
    .await
}

fn found_block(
    block: Option<medledger_node::CertifiedBlock>,
    height: Height,
) -> ApiResult<Json<Value>> {
    let block = block.ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    Ok(Json(
        json!({"hash": block.block.hash(), "block": block.block, "certificate": block.certificate}),
    ))
}

#[utoipa::path(get, path = "/v1/blocks/{height}", params(("height" = u64, Path, description = "Block height, from 1")), responses(
    (status = 200, description = "The block and its certificate, checked against each other"),
    (status = 404, description = "No such block", body = ErrorBody)))]
async fn block(State(node): State<Node>, Path(height): Path<String>) -> ApiResult<Json<Value>> {
    let height: Height = height.parse().map_err(|_| {
        ApiError::bad_request(
            "malformed_height",
            format!("height {height:?} is not a whole number"),
        )
    })?;
    blocking(move || found_block(node.block(height)?, height)).await
}

#[utoipa::path(get, path = "/v1/blocks/hash/{hash}", params(("hash" = String, Path, description = "Block hash, hex")), responses(
    (status = 200, description = "The block and its certificate"), (status = 404, description = "No such block", body = ErrorBody)))]
async fn block_by_hash(
    State(node): State<Node>,
    Path(hash): Path<String>,
) -> ApiResult<Json<Value>> {
    let hash = parse_hash(&hash, "block hash")?;
    blocking(move || {
        let block = node
            .block_by_hash(&hash)?
            .ok_or_else(|| ApiError::not_found(format!("no block with hash {hash}")))?;
        let height = block.block.header.height;
        found_block(Some(block), height)
    })
    .await
}

#[derive(Deserialize)]
struct HeightQuery {
    height: Option<Height>,
}

#[utoipa::path(get, path = "/v1/state/{key}", params(
    ("key" = String, Path, description = "A state key, e.g. `member/<public key hex>` or `chain/validators`"),
    ("height" = Option<u64>, Query, description = "Read the state after this block (default: the head)")),
    responses((status = 200, description = "The value (or null), its decoded record, and a light-client proof"),
    (status = 404, description = "No such height", body = ErrorBody)))]
async fn state(
    State(node): State<Node>,
    Path(key): Path<String>,
    query: Result<Query<HeightQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = parse_query(query)?;
    if key.len() > medledger_state::KEY_BYTES_MAX {
        return Err(ApiError::bad_request(
            "key_too_long",
            format!(
                "state keys are at most {} bytes",
                medledger_state::KEY_BYTES_MAX
            ),
        ));
    }
    blocking(move || {
        let proof = node
            .state(key.as_bytes(), query.height)?
            .ok_or_else(|| ApiError::not_found("no such height"))?;
        let LightProof::State {
            proof: state_proof, ..
        } = &proof
        else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "unexpected proof kind",
            ));
        };
        let value = state_proof.value.as_ref();
        let entry = value.and_then(|value| medledger_ledger::decode_entry(key.as_bytes(), value));
        Ok(Json(json!({
            "key": key,
            "height": proof.header().height,
            "value": value.map(hex::encode),
            "entry": entry,
            "proof": proof,
        })))
    })
    .await
}

#[utoipa::path(get, path = "/v1/accounts/{key}", params(("key" = String, Path, description = "Public key, hex")), responses(
    (status = 200, description = "Who the key acts as, and its next nonce")))]
async fn account(State(node): State<Node>, Path(key): Path<String>) -> ApiResult<Json<Value>> {
    let key = PublicKey::from_hex(&key)
        .map_err(|error| ApiError::bad_request("malformed_key", format!("public key: {error}")))?;
    blocking(move || {
        let (authority, next_nonce) = node.account(&key)?;
        Ok(Json(match authority {
            Ok(authority) => json!({"key": key, "authority": authority, "next_nonce": next_nonce}),
            Err(reason) => {
                json!({"key": key, "authority": null, "refused": reason, "next_nonce": next_nonce})
            }
        }))
    })
    .await
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "medledger node API",
        description = "Submit signed transactions; read blocks, receipts and state with light-client proofs; FHIR R4 records under patient consent (/fhir), every read audited on chain first; the drug supply chain (/v1/supply: verification, recall reports, traces, labels) and EPCIS 2.0 capture and query (/epcis)."
    ),
    paths(
        health,
        metrics,
        status,
        submit,
        tx,
        receipt,
        tx_proof,
        head_block,
        block,
        block_by_hash,
        state,
        account,
        sync::sync_blocks,
        sync::snapshots,
        sync::snapshot_manifest,
        sync::snapshot_chunk,
        admin::backup,
        admin::snapshot,
        portal::session::invite
    ),
    components(schemas(ErrorBody, ErrorDetail, SubmitRequest)),
    modifiers(&SignedRequests)
)]
struct ApiDoc;

/// Declares the signed-request scheme once, for the paths that name it.
struct SignedRequests;

impl utoipa::Modify for SignedRequests {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
                "medledger_signature",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Authorization",
                    "Medledger key=<hex>, ts=<ms>, sig=<hex>: Ed25519 over the chain id, method, \
                     path and query, timestamp, body hash and access headers; valid for five minutes",
                ))),
            );
        components.add_security_scheme(
            "smart_bearer",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A SMART on FHIR access token from POST /oauth/token (Backend \
                             Services: client_credentials with a private_key_jwt assertion)",
                    ))
                    .build(),
            ),
        );
    }
}

/// Serves the API on `listener` until `shutdown` completes. The portal's passkeys are bound to
/// `portal_origin` (by default `http://localhost:<port>`, which browsers accept without TLS).
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    services: Services,
    portal_origin: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let origin = match portal_origin {
        Some(origin) => origin,
        None => format!("{PORTAL_ORIGIN_DEFAULT}:{}", listener.local_addr()?.port()),
    };
    let (closing, closed) = tokio::sync::watch::channel(false);
    axum::serve(listener, router_closing(node, services, closed, &origin))
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = closing.send(true);
        })
        .await
}
