//! The FHIR R4 REST face (`/fhir/...`) and the records API (`/v1/records/...`), for EHR
//! integration engineers and patients' apps.
//!
//! Every request but `GET /fhir/metadata` names its caller: a SMART bearer token (see
//! [`crate::smart`]) or a signed request (see [`crate::auth`]). Reads name an HL7 PurposeOfUse
//! (`X-Purpose-Of-Use`, or the token's); each read commits an access event before any content
//! leaves the node, and answers 403 when the event denies it. A token's scopes are checked in
//! addition to consent. Errors are OperationOutcome resources with the matching HTTP status,
//! served as `application/fhir+json`; the server speaks FHIR JSON only (406 otherwise) and takes
//! only FHIR JSON bodies (415 otherwise).
//!
//! **Invariant:** a malformed or invalid resource or Bundle is refused whole: it is parsed,
//! validated against R4 and every reference checked before anything is staged, and a refused
//! transaction rolls the vault back.

pub(crate) mod binary;
pub(crate) mod search;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medledger_crypto::{Hash, PublicKey};
use medledger_fhir::{FhirError, Issue, IssueType, Severity};
use medledger_ledger::Authority;
use medledger_node::ServiceError;
use medledger_node::records::{ImportItem, ReadRequest, Records};
use medledger_records::{AccessRule, Purpose, RECORD_CATEGORIES};
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{self, AuthError};
use crate::smart::{Action, TokenGrant};

pub const FHIR_JSON: &str = "application/fhir+json";
/// The most access events `GET /v1/records/me` lists per patient id (the most recent ones).
pub const ME_EVENTS_MAX: u64 = 1_000;

/// An error answered as an OperationOutcome.
#[derive(Debug)]
pub struct FhirFailure {
    status: StatusCode,
    issue: Issue,
    /// More issues, e.g. every validation problem of a resource.
    more: Vec<Issue>,
    /// A refused bearer token: answered with a `WWW-Authenticate: Bearer` challenge.
    bearer_error: Option<&'static str>,
}

impl FhirFailure {
    pub(crate) fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> Self {
        FhirFailure {
            status,
            issue: Issue {
                severity: Severity::Error,
                code,
                diagnostics: diagnostics.into(),
                expression: None,
            },
            more: Vec::new(),
            bearer_error: None,
        }
    }

    /// A failure reporting every issue in `issues` (at least one).
    pub(crate) fn issues(status: StatusCode, mut issues: Vec<Issue>) -> Self {
        let first = if issues.is_empty() {
            Issue::error(IssueType::Invalid, "invalid")
        } else {
            issues.remove(0)
        };
        FhirFailure {
            status,
            issue: first,
            more: issues,
            bearer_error: None,
        }
    }
}

impl IntoResponse for FhirFailure {
    fn into_response(self) -> Response {
        let mut issues = vec![self.issue];
        issues.extend(self.more);
        let mut response = fhir_json(self.status, &medledger_fhir::operation_outcome(&issues));
        if let Some(error) = self.bearer_error
            && let Ok(value) =
                HeaderValue::from_str(&format!("Bearer realm=\"medledger\", error=\"{error}\""))
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

impl From<FhirError> for FhirFailure {
    fn from(error: FhirError) -> Self {
        let status = match error.issue_type() {
            IssueType::TooCostly => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        FhirFailure::issues(status, vec![error.issue()])
    }
}

impl From<AuthError> for FhirFailure {
    fn from(error: AuthError) -> Self {
        let (status, code) = match error {
            AuthError::Replayed => (StatusCode::CONFLICT, IssueType::Duplicate),
            AuthError::Busy => (StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient),
            _ => (StatusCode::UNAUTHORIZED, IssueType::Login),
        };
        FhirFailure::new(status, code, error.to_string())
    }
}

impl From<ServiceError> for FhirFailure {
    fn from(error: ServiceError) -> Self {
        let (status, code) = match &error {
            ServiceError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, IssueType::Login),
            ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, IssueType::Forbidden),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, IssueType::NotFound),
            ServiceError::Gone(_) => (StatusCode::GONE, IssueType::Deleted),
            ServiceError::Invalid(_) | ServiceError::InvalidDocument { .. } => {
                (StatusCode::BAD_REQUEST, IssueType::Invalid)
            }
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, IssueType::Conflict),
            ServiceError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, IssueType::Conflict)
            }
            ServiceError::Refused { code, .. } if code == "request_replayed" => {
                (StatusCode::CONFLICT, IssueType::Duplicate)
            }
            ServiceError::Refused { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule)
            }
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient),
            ServiceError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooCostly),
            ServiceError::Node(_) | ServiceError::Storage(_) => {
                tracing::error!(%error, "records request failed inside the node");
                (StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception)
            }
        };
        FhirFailure::new(status, code, error.to_string())
    }
}

impl From<crate::ApiError> for FhirFailure {
    fn from(error: crate::ApiError) -> Self {
        FhirFailure::new(error.status, IssueType::Exception, error.message)
    }
}

pub(crate) type FhirResult<T> = Result<T, FhirFailure>;

pub(crate) fn fhir_json(status: StatusCode, value: &Value) -> Response {
    fhir_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn fhir_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// Health records and consent: the FHIR face and the patient's own view.
pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <FhirDoc as utoipa::OpenApi>::openapi,
    consent: None,
    audit: None,
    fhir: None,
    fhir_source: None,
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    metadata,
    import_bundle,
    create,
    update,
    read,
    search::search_all,
    search::search_kind,
    operation,
    me,
    bind,
    ledger_id,
    binary::upload,
    binary::download
))]
struct FhirDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(import_bundle).get(search::search_all))
        .route("/fhir/", post(import_bundle).get(search::search_all))
        .route("/fhir/{kind}", post(create).get(search::search_kind))
        .route("/fhir/{kind}/", post(create).get(search::search_kind))
        .route("/fhir/Binary", post(binary::upload))
        .route("/fhir/Binary/{id}", get(binary::download))
        .route(
            "/fhir/{kind}/{id}",
            get(read).put(update).post(type_operation),
        )
        .route("/fhir/{kind}/{id}/{operation}", post(operation))
        .route("/v1/records/me", get(me))
        .route("/v1/records/patients/{id}/bind", post(bind))
        .route("/v1/records/ids/{kind}/{id}", get(ledger_id))
}

/// Whether a request is for the FHIR face, whose errors are OperationOutcomes.
pub(crate) fn is_fhir_path(uri: &Uri) -> bool {
    uri.path() == "/fhir" || uri.path().starts_with("/fhir/")
}

/// Media types the FHIR face reads and writes: FHIR JSON (and plain JSON, which clients send).
const JSON_TYPES: [&str; 3] = [FHIR_JSON, "application/json", "application/json+fhir"];

fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Content negotiation for the FHIR face (R4 §3.1.0.1.10): a request that asks for a format the
/// server does not speak (`Accept`, or `_format`) gets 406; a body that is not FHIR JSON gets
/// 415. Other paths pass through.
pub(crate) async fn negotiate(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri().clone();
    // A Binary travels in its own media type (R4 §3.1.0.1.10), in both directions.
    if !is_fhir_path(&uri) || uri.path().contains("/.well-known/") || binary::is_binary_path(&uri) {
        return next.run(request).await;
    }
    let format = uri.query().and_then(|query| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(name, _)| name == "_format")
            .map(|(_, value)| value)
    });
    let speaks = |wanted: &str| {
        let wanted = media_type(wanted);
        wanted == "json"
            || wanted == "*/*"
            || wanted == "application/*"
            || JSON_TYPES.contains(&wanted.as_str())
    };
    if let Some(format) = &format
        && !speaks(format)
    {
        return FhirFailure::new(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            format!("_format {format:?} is not served: this server speaks FHIR JSON (application/fhir+json) only"),
        )
        .into_response();
    }
    if format.is_none()
        && let Some(accept) = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
        && !accept.trim().is_empty()
        && !accept.split(',').any(speaks)
    {
        return FhirFailure::new(
            StatusCode::NOT_ACCEPTABLE,
            IssueType::NotSupported,
            format!("Accept {accept:?} names no format served here: this server speaks FHIR JSON (application/fhir+json) only"),
        )
        .into_response();
    }
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .is_some_and(|length| length > 0)
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    if has_body && matches!(*request.method(), Method::POST | Method::PUT) {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(media_type)
            .unwrap_or_default();
        if !JSON_TYPES.contains(&content_type.as_str()) {
            return FhirFailure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IssueType::NotSupported,
                format!("a body of type {content_type:?} is not taken: send FHIR JSON (Content-Type: application/fhir+json)"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// A method the FHIR face does not take on that path (e.g. DELETE: history is never removed).
pub(crate) fn method_not_allowed(method: &Method, uri: &Uri) -> FhirFailure {
    FhirFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        format!(
            "{method} is not supported on {}: records are never deleted (erase a patient with $erase); see /fhir/metadata",
            uri.path()
        ),
    )
}

/// Anything under `/fhir` that no route serves, answered as FHIR rather than as the JSON API.
pub(crate) fn fhir_not_found(method: &Method, uri: &Uri) -> FhirFailure {
    FhirFailure::new(
        StatusCode::NOT_FOUND,
        IssueType::NotSupported,
        format!(
            "{method} {} is not an interaction this server supports; see /fhir/metadata",
            uri.path()
        ),
    )
}

/// Runs blocking work (database reads, decryption) off the async workers, answering in FHIR terms.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> FhirResult<T> + Send + 'static,
) -> FhirResult<T> {
    crate::blocking(move || Ok(work())).await?
}

fn records(state: &AppState) -> FhirResult<Records> {
    state.services.get::<Records>().ok_or_else(|| {
        FhirFailure::new(
            StatusCode::NOT_IMPLEMENTED,
            IssueType::NotSupported,
            "this node keeps no health records",
        )
    })
}

#[allow(clippy::disallowed_methods)]
pub(crate) fn now_ms() -> u64 {
    // The API is a shell: the clock bounds how long a signed request stays valid, and how far a
    // device's readings may run ahead of this node, and never reaches the ledger.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> FhirResult<Bytes> {
    body.map_err(|rejection| {
        let status = rejection.status();
        FhirFailure::new(
            status,
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                IssueType::TooCostly
            } else {
                IssueType::Structure
            },
            rejection.body_text(),
        )
    })
}

/// Who is asking, by a bearer token or a signed request, checked against the head: an enrolled,
/// unrevoked member.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub key: PublicKey,
    pub authority: Authority,
    /// The access event's id: the signed request's hash, or a fresh random id for a token.
    pub request: Hash,
    pub access: auth::AccessHeaders,
    /// What a bearer token grants; `None` for a signed request, which is not scoped.
    pub grant: Option<TokenGrant>,
}

impl Caller {
    /// Refuses what the token's scopes do not cover (a signed request is not scoped).
    pub(crate) fn may(
        &self,
        resource_type: &str,
        action: Action,
        patient: Option<&str>,
    ) -> FhirResult<()> {
        match &self.grant {
            Some(grant) if !grant.allows(resource_type, action, patient) => {
                let mut failure = FhirFailure::new(
                    StatusCode::FORBIDDEN,
                    IssueType::Forbidden,
                    format!(
                        "the token's scopes do not allow {action:?} on {resource_type}{}",
                        match patient {
                            Some(id) => format!(" for Patient/{id}"),
                            None => String::new(),
                        }
                    ),
                );
                failure.bearer_error = Some("insufficient_scope");
                Err(failure)
            }
            _ => Ok(()),
        }
    }

    /// A signed write is used once; a token's requests are told apart by their random ids.
    pub(crate) fn check_replay(&self, state: &AppState) -> FhirResult<()> {
        if self.grant.is_none() {
            state.replay.check(&self.request, now_ms())?;
        }
        Ok(())
    }

    /// The purpose of use: `X-Purpose-Of-Use`, else the token's.
    pub(crate) fn purpose(&self) -> FhirResult<Purpose> {
        if let Some(text) = self.access.purpose.as_deref() {
            return text.parse().map_err(|error: String| {
                FhirFailure::new(StatusCode::BAD_REQUEST, IssueType::Value, error)
            });
        }
        self.grant
            .as_ref()
            .and_then(|grant| grant.purpose)
            .ok_or_else(|| {
                FhirFailure::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Required,
                    "a read must name its purpose of use (HL7 PurposeOfUse, e.g. TREAT): the X-Purpose-Of-Use header, or purpose_of_use when the token is requested",
                )
            })
    }

    fn wrap_to(&self) -> FhirResult<Option<[u8; 32]>> {
        let Some(text) = &self.access.wrap_to else {
            return Ok(None);
        };
        let bytes = hex::decode(text)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        bytes.map(Some).ok_or_else(|| {
            FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Value,
                "X-Wrap-To must be a 32-byte X25519 public key in hex",
            )
        })
    }
}

/// Authenticates a request: `Authorization: Bearer <token>` or a signed request, and the
/// member's standing at the head (so a revoked member's token stops working at once).
pub(crate) async fn caller(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> FhirResult<Caller> {
    caller_digest(state, method, uri, headers, &medledger_crypto::sha256(body)).await
}

/// [`caller`] for a body that is streamed: a signed request signs the SHA-256 it declares in
/// `X-Content-SHA256`, which the handler checks against the bytes once they have arrived.
pub(crate) async fn caller_digest(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body_sha256: &Hash,
) -> FhirResult<Caller> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let (key, request, access, grant) = match bearer {
        Some(token) => {
            let verified = state.smart.verify(token).map_err(|error| {
                let mut failure = FhirFailure::new(
                    StatusCode::UNAUTHORIZED,
                    IssueType::Login,
                    error.to_string(),
                );
                failure.bearer_error = Some("invalid_token");
                failure
            })?;
            let mut id = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            (
                verified.key,
                Hash(id),
                auth::AccessHeaders::from_headers(headers),
                Some(verified.grant),
            )
        }
        None => {
            let signed = auth::verify_request(&state.node, method, uri, headers, body_sha256)?;
            (signed.key, signed.request, signed.access, None)
        }
    };
    let records = records(state)?;
    let authority = crate::blocking(move || Ok(records.authenticate(&key)))
        .await?
        .map_err(|error| {
            let mut failure = FhirFailure::new(
                StatusCode::UNAUTHORIZED,
                IssueType::Security,
                format!("the requester is not an enrolled, unrevoked member: {error}"),
            );
            if grant.is_some() {
                failure.bearer_error = Some("invalid_token");
            }
            failure
        })?;
    Ok(Caller {
        key,
        authority,
        request,
        access,
        grant,
    })
}

#[utoipa::path(get, path = "/fhir/metadata", tag = "fhir", responses(
    (status = 200, description = "The CapabilityStatement (application/fhir+json); needs no signature")))]
async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let description = format!(
        "medledger node of chain {}: FHIR R4 records under patient consent",
        state.node.genesis().chain_id
    );
    let base = crate::smart::base_url(&headers);
    let fhir_base = format!("{base}/fhir");
    let token = format!("{base}/oauth/token");
    let authorize = format!("{base}/oauth/authorize");
    let statement = medledger_fhir::capability_statement(&medledger_fhir::CapabilityConfig {
        software_version: env!("CARGO_PKG_VERSION"),
        date_ms: state.node.genesis().genesis_time_ms,
        implementation_description: &description,
        base_url: Some(&fhir_base),
        resource_types: medledger_fhir::RESOURCE_TYPES,
        vread: false,
        oauth: Some((&token, &authorize)),
    });
    fhir_json(StatusCode::OK, &statement)
}

/// Validates every resource of a Bundle (or one resource) against R4, reporting every problem.
fn validate_all(resources: &[(Option<usize>, &[u8])]) -> FhirResult<()> {
    let mut issues = Vec::new();
    for (entry, bytes) in resources {
        let value: Value = serde_json::from_slice(bytes).map_err(|error| {
            FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Structure,
                error.to_string(),
            )
        })?;
        for mut issue in medledger_fhir::validate(&value) {
            if let Some(index) = entry {
                issue.expression = issue
                    .expression
                    .map(|at| format!("Bundle.entry[{index}].resource.{at}"));
                issue.diagnostics = format!("entry {index}: {}", issue.diagnostics);
            }
            issues.push(issue);
            if issues.len() >= medledger_fhir::VALIDATION_ISSUES_MAX {
                break;
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(FhirFailure::issues(
            StatusCode::UNPROCESSABLE_ENTITY,
            issues,
        ))
    }
}

/// Turns checked resources into import items, resolving each one's patient. An entry without a
/// logical id gets one here, written into its content; references to other entries by their
/// `fullUrl` (`urn:uuid:...`) are stored as `Type/id` (R4 §3.1.0.11.2), so a record read back
/// stands on its own.
fn import_items(
    bundle: &medledger_fhir::Bundle<'_>,
    records: &Records,
) -> FhirResult<Vec<ImportItem>> {
    let stored = |kind: &str, id: &str| -> bool {
        match kind {
            "Patient" => matches!(records.patient_by_fhir(id), Ok(Some(_))),
            _ => matches!(records.record_by_fhir(kind, id), Ok(Some(_))),
        }
    };
    let resolved = medledger_fhir::resolve_bundle(bundle, &stored)?;
    let ids: Vec<String> = resolved
        .iter()
        .map(|item| item.id.clone().unwrap_or_else(new_logical_id))
        .collect();
    let targets: std::collections::BTreeMap<String, String> = resolved
        .iter()
        .zip(&ids)
        .filter_map(|(item, id)| {
            let full_url = item.entry.full_url.clone()?;
            Some((full_url, format!("{}/{id}", item.resource.resource_type)))
        })
        .collect();
    let mut items = Vec::with_capacity(resolved.len());
    for (item, id) in resolved.iter().zip(&ids) {
        let patient_fhir_id = match &item.patient {
            medledger_fhir::PatientLink::Own => None,
            medledger_fhir::PatientLink::Entry(index) => Some(ids[*index].clone()),
            medledger_fhir::PatientLink::Stored(id) => Some(id.clone()),
        };
        let mut content = medledger_fhir::rewrite_references(item.resource.bytes, &targets);
        if item.resource.id.as_deref() != Some(id.as_str()) {
            content = medledger_fhir::with_id(&content, id)?;
        }
        items.push(ImportItem {
            resource_type: item.resource.resource_type.clone(),
            fhir_id: Some(id.clone()),
            patient_fhir_id,
            category: item
                .resource
                .category
                .clone()
                .filter(|code| RECORD_CATEGORIES.contains(&code.as_str())),
            content,
            expected_version: None,
            file: None,
        });
    }
    Ok(items)
}

#[utoipa::path(post, path = "/fhir", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])),
    request_body(content = String, content_type = "application/fhir+json", description = "A Bundle of type transaction, batch or collection"),
    responses(
    (status = 200, description = "A transaction-response (or batch-response) Bundle: every resource stored and its version on chain"),
    (status = 400, description = "Malformed or unresolvable Bundle (OperationOutcome); nothing stored"),
    (status = 401, description = "Unsigned, stale, or not an enrolled member"),
    (status = 403, description = "The signer may not write this custodian's records"),
    (status = 409, description = "A record is being written by another request, or a replayed request")))]
async fn import_bundle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult<Response> {
    let body = body_bytes(body)?;
    let caller = caller(&state, &method, &uri, &headers, &body).await?;
    caller.check_replay(&state)?;
    let records = records(&state)?;
    // Parsing, the scope checks, R4 validation and reference resolution are CPU work: off the
    // async workers, on the one parse of the body.
    let importer = records.clone();
    let checker = caller.clone();
    let parse_body = body.clone();
    let (batch, items) = blocking(move || {
        let bundle = medledger_fhir::parse_bundle(&parse_body)?;
        for entry in &bundle.entries {
            let action = match entry.request.as_ref().map(|request| request.method) {
                Some(medledger_fhir::Method::Put) => Action::Update,
                _ => Action::Create,
            };
            checker.may(&entry.resource.resource_type, action, None)?;
        }
        let resources: Vec<(Option<usize>, &[u8])> = bundle
            .entries
            .iter()
            .enumerate()
            .map(|(index, entry)| (Some(index), entry.resource.bytes))
            .collect();
        validate_all(&resources)?;
        let batch = bundle.bundle_type == medledger_fhir::BundleType::Batch;
        Ok((batch, import_items(&bundle, &importer)?))
    })
    .await?;
    let imported = records.import(&caller.key, items).await?;
    let kind = if batch {
        medledger_fhir::ResponseKind::Batch
    } else {
        medledger_fhir::ResponseKind::Transaction
    };
    let entries: Vec<medledger_fhir::EntryResponse> = imported
        .iter()
        .map(|record| medledger_fhir::EntryResponse {
            status: if record.version == 1 {
                "201 Created".into()
            } else {
                "200 OK".into()
            },
            location: Some(format!(
                "{}/{}/_history/{}",
                record.resource_type, record.fhir_id, record.version
            )),
            etag: Some(format!("W/\"{}\"", record.version)),
            outcome: None,
        })
        .collect();
    Ok(fhir_json(
        StatusCode::OK,
        &medledger_fhir::response_bundle(kind, &entries),
    ))
}

/// What `Prefer: return=...` asks a write to answer with (R4 §3.1.0.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

fn prefer_return(headers: &HeaderMap) -> Return {
    let prefer = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .find_map(|part| part.trim().strip_prefix("return="));
    match prefer {
        Some("minimal") => Return::Minimal,
        Some("OperationOutcome") => Return::OperationOutcome,
        _ => Return::Representation,
    }
}

/// The version an `If-Match` header asks for: `W/"3"` or `"3"`.
fn if_match(headers: &HeaderMap) -> FhirResult<Option<u32>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    let version = text
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u32>()
        .map_err(|_| {
            FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Value,
                format!("If-Match must be a version's ETag, e.g. W/\"1\", not {text:?}"),
            )
        })?;
    Ok(Some(version))
}

/// A fresh logical id for a created resource: 32 random hex digits.
fn new_logical_id() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Stores one resource, as `POST /fhir/{kind}` (create: the server assigns the logical id, and
/// any id in the body is ignored, R4 §3.1.0.8) or `PUT /fhir/{kind}/{id}` (update or create at
/// that id; the body's id must match; `If-Match` makes it version-aware).
async fn store_one(
    state: AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    kind: String,
    id: Option<String>,
) -> FhirResult<Response> {
    check_kind(&kind)?;
    let caller = caller(&state, &method, &uri, &headers, &body).await?;
    caller.may(
        &kind,
        if id.is_some() {
            Action::Update
        } else {
            Action::Create
        },
        None,
    )?;
    caller.check_replay(&state)?;
    let records = records(&state)?;
    let resource = medledger_fhir::parse_resource(&body)?;
    if resource.resource_type != kind {
        return Err(FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            format!(
                "the body is a {}, the URL names {kind}",
                resource.resource_type
            ),
        ));
    }
    if let Some(id) = &id
        && resource.id.as_deref() != Some(id.as_str())
    {
        return Err(FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            format!("an update's body must carry id {id:?}, as its URL does"),
        ));
    }
    validate_all(&[(None, resource.bytes)])?;
    let expected = if id.is_some() {
        if_match(&headers)?
    } else {
        None
    };
    let content;
    let resource = match &id {
        Some(_) => resource,
        None => {
            content = medledger_fhir::with_id(&body, &new_logical_id())?;
            medledger_fhir::parse_resource(&content)?
        }
    };
    // One resource is checked as a one-entry collection Bundle: same rules, same errors.
    let stored_bytes = resource.bytes.to_vec();
    let entry_bundle = medledger_fhir::Bundle::single(resource);
    let mut items = import_items(&entry_bundle, &records)?;
    // `If-Match` is checked where the version is handed out, under the vault's staging lock,
    // so two writers expecting the same version cannot both succeed.
    for item in &mut items {
        item.expected_version = expected;
    }
    let imported = records.import(&caller.key, items).await?;
    let record = imported.first().ok_or_else(|| {
        FhirFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            "nothing stored",
        )
    })?;
    let status = if record.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let base = crate::smart::base_url(&headers);
    let location = format!(
        "{base}/fhir/{}/{}/_history/{}",
        record.resource_type, record.fhir_id, record.version
    );
    let mut response = match prefer_return(&headers) {
        Return::Minimal => {
            let mut response = status.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
            response
        }
        Return::OperationOutcome => fhir_json(
            status,
            &medledger_fhir::operation_outcome(&[Issue {
                severity: Severity::Information,
                code: IssueType::Informational,
                diagnostics: format!(
                    "stored {location}; its version is on chain at height {}",
                    record.height
                ),
                expression: None,
            }]),
        ),
        Return::Representation => {
            let finder = records.clone();
            let handle = record.record;
            let version = record.version;
            let last_updated_ms = blocking(move || {
                let (_, versions) = finder.provenance(&handle)?;
                Ok(versions
                    .iter()
                    .find(|written| written.version == version)
                    .map_or(0, |written| written.time_ms))
            })
            .await?;
            fhir_bytes(
                status,
                medledger_fhir::served(&stored_bytes, &record.fhir_id, version, last_updated_ms)?,
            )
        }
    };
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
        if status == StatusCode::CREATED
            && let Ok(value) = HeaderValue::from_str(&location)
        {
            response
                .headers_mut()
                .insert(header::CONTENT_LOCATION, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&format!("W/\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[utoipa::path(post, path = "/fhir/{type}", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])), params(("type" = String, Path, description = "FHIR resource type")),
    request_body(content = String, content_type = "application/fhir+json"),
    responses((status = 201, description = "Stored; Location names the version"), (status = 400, description = "OperationOutcome")))]
async fn create(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult<Response> {
    let body = body_bytes(body)?;
    if let Some(view) = crate::fhir_view(&kind) {
        let caller = caller(&state, &method, &uri, &headers, &body).await?;
        return (view.create)(state, caller, kind, None, body).await;
    }
    store_one(state, method, uri, headers, body, kind, None).await
}

/// `POST /fhir/{type}/${operation}`: a type-level operation of a module's resource type (e.g.
/// `Claim/$submit`).
async fn type_operation(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path((kind, operation)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult<Response> {
    let body = body_bytes(body)?;
    match crate::fhir_view(&kind) {
        Some(view) if operation.starts_with('$') => {
            let caller = caller(&state, &method, &uri, &headers, &body).await?;
            (view.create)(state, caller, kind, Some(operation), body).await
        }
        _ => Err(FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            format!("{kind} has no operation {operation}"),
        )),
    }
}

#[utoipa::path(put, path = "/fhir/{type}/{id}", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])), params(("type" = String, Path), ("id" = String, Path)),
    request_body(content = String, content_type = "application/fhir+json"),
    responses((status = 200, description = "A new version"), (status = 201, description = "Created"), (status = 400, description = "OperationOutcome")))]
async fn update(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult<Response> {
    let body = body_bytes(body)?;
    if crate::fhir_view(&kind).is_some() {
        return Err(FhirFailure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            IssueType::NotSupported,
            format!("{kind} is not updated in place"),
        ));
    }
    store_one(state, method, uri, headers, body, kind, Some(id)).await
}

fn check_kind(kind: &str) -> FhirResult<()> {
    if medledger_fhir::is_resource_type(kind) {
        Ok(())
    } else {
        Err(FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            format!("{kind:?} is not a FHIR R4 resource type"),
        ))
    }
}

fn denied_diagnostics(rules: &[&AccessRule], height: u64) -> String {
    let rule = match rules.first() {
        Some(AccessRule::Deny(grant)) => format!("a deny provision of consent {grant}"),
        Some(AccessRule::NoConsent) => "no consent permits this reader and purpose".into(),
        Some(AccessRule::Erased) => "the patient's data was erased".into(),
        _ => "the patient's consent".into(),
    };
    format!("access denied by {rule}; the attempt is recorded on chain at height {height}")
}

#[utoipa::path(get, path = "/fhir/{type}/{id}", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])), params(("type" = String, Path), ("id" = String, Path), ("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code, e.g. TREAT, ETREAT, HPAYMT, HOPERAT, HRESCH"),
    ("X-Break-Glass" = Option<String>, Header, description = "true: emergency access (ETREAT, practitioners), flagged to the patient"),
    ("X-Wrap-To" = Option<String>, Header, description = "An X25519 public key (hex): answer with the ciphertext and its key sealed with HPKE")),
    responses(
    (status = 200, description = "The record as stored, with its id and meta (versionId, lastUpdated); X-Access-Event names the access event's transaction"),
    (status = 403, description = "Denied by consent; the denial is recorded on chain"),
    (status = 404, description = "Not held by this node"),
    (status = 410, description = "The patient was erased")))]
async fn read(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> FhirResult<Response> {
    check_kind(&kind)?;
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    if let Some(view) = crate::fhir_view(&kind) {
        return (view.read)(state, caller, kind, id).await;
    }
    match kind.as_str() {
        "Consent" => {
            caller.may("Consent", Action::Read, None)?;
            if let Some(view) = crate::consent_view(&id) {
                return (view.read)(state, caller, id).await;
            }
            return search::consent_one(&state, &caller, &id).await;
        }
        "Provenance" => {
            caller.may("Provenance", Action::Read, None)?;
            return search::provenance_one(&state, &caller, &headers, &id).await;
        }
        "AuditEvent" => {
            return Err(FhirFailure::new(
                StatusCode::METHOD_NOT_ALLOWED,
                IssueType::NotSupported,
                "AuditEvents are searched by patient: GET /fhir/AuditEvent?patient=[id]",
            ));
        }
        _ => {}
    }
    // A resource a module adds to this type (a device's reading), by an id of its own form.
    for source in crate::fhir_sources(&kind) {
        if let Some(response) =
            (source.read)(state.clone(), caller.clone(), kind.clone(), id.clone()).await?
        {
            return Ok(response);
        }
    }
    let wrap_to = caller.wrap_to()?;
    let (released, event_tx) = match release_one(&state, &caller, &kind, &id, wrap_to).await? {
        Ok(released) => released,
        Err(denied) => return Ok(denied),
    };
    let mut response = match &released.sealed {
        Some((sealed, wrapped)) => {
            let body = json!({
                "resource_type": released.resource_type,
                "id": released.fhir_id,
                "version": released.version,
                "record": released.record,
                "aad": hex::encode(medledger_node::records::record_aad(&released.record, released.version)),
                "nonce": hex::encode(sealed.nonce),
                "ciphertext": hex::encode(&sealed.ciphertext),
                "wrapped_key": wrapped,
                "hpke": "RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM",
            });
            (StatusCode::OK, Json(body)).into_response()
        }
        None => fhir_bytes(
            StatusCode::OK,
            medledger_fhir::served(
                &released.content,
                &released.fhir_id,
                released.version,
                released.last_updated_ms,
            )?,
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&format!("W/\"{}\"", released.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    add_event_header(&mut response, &event_tx);
    Ok(response)
}

/// Reads one record, `kind/id`, for the caller: commits the access event, then answers the
/// released version and the event's transaction, or the response that refuses it (403 or 410,
/// naming the event). Shared by reads of resources and of files (`Binary`).
pub(crate) async fn release_one(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    id: &str,
    wrap_to: Option<[u8; 32]>,
) -> FhirResult<Result<(medledger_node::records::Released, Hash), Response>> {
    let purpose = caller.purpose()?;
    let records = records(state)?;
    let finder = records.clone();
    let (kind_copy, id_copy) = (kind.to_string(), id.to_string());
    let found = crate::blocking(move || {
        Ok(match finder.record_by_fhir(&kind_copy, &id_copy) {
            Ok(Some(found)) => Ok(Ok(found)),
            Ok(None) => finder.erased_record_by_fhir(&kind_copy, &id_copy).map(Err),
            Err(error) => Err(error),
        })
    })
    .await??;
    let (record, patient) = match found {
        Ok(found) => found,
        Err(Some(_erased)) => {
            return Err(FhirFailure::new(
                StatusCode::GONE,
                IssueType::Deleted,
                format!("{kind}/{id} was erased at the patient's request; its audit trail stays"),
            ));
        }
        Err(None) => {
            return Err(FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("{kind}/{id} is not held by this node"),
            ));
        }
    };
    if caller.grant.is_some() {
        // A token's `patient/` scopes cover one patient, named by logical id.
        let patient_fhir_id = records.patient_fhir_id(&patient).ok().flatten();
        caller.may(kind, Action::Read, patient_fhir_id.as_deref())?;
    }
    let access = records
        .read(ReadRequest {
            request: caller.request,
            reader: caller.key,
            patient,
            records: vec![record],
            purpose,
            break_glass: caller.access.break_glass,
            wrap_to,
        })
        .await?;
    let event_tx = access.event.tx;
    let Some(released) = access.released.into_iter().next() else {
        let rules: Vec<&AccessRule> = access
            .event
            .decisions
            .iter()
            .map(|(_, rule)| rule)
            .collect();
        let (status, code) = if rules.iter().any(|rule| **rule == AccessRule::Erased) {
            (StatusCode::GONE, IssueType::Deleted)
        } else {
            (StatusCode::FORBIDDEN, IssueType::Forbidden)
        };
        let mut response = FhirFailure::new(
            status,
            code,
            denied_diagnostics(&rules, access.event.height),
        )
        .into_response();
        add_event_header(&mut response, &event_tx);
        return Ok(Err(response));
    };
    Ok(Ok((released, event_tx)))
}

pub(crate) fn add_event_header(response: &mut Response, tx: &Hash) {
    if let Ok(value) = HeaderValue::from_str(&tx.to_hex()) {
        response.headers_mut().insert("x-access-event", value);
    }
}

/// `POST /fhir/Patient/{id}/$erase`: crypto-shreds the patient's data everywhere.
#[utoipa::path(post, path = "/fhir/Patient/{id}/$erase", tag = "fhir", security(("medledger_signature" = []), ("smart_bearer" = [])),
    request_body(content = String, content_type = "application/fhir+json", description = "None needed"),
    params(("id" = String, Path)),
    responses((status = 200, description = "Erased on chain and shredded on this node"), (status = 403, description = "Not the patient or the custodian's root key")))]
async fn operation(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path((kind, id, operation)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult<Response> {
    let body = body_bytes(body)?;
    if kind != "Patient" || operation != "$erase" {
        return Err(FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            "the only operation is POST /fhir/Patient/{id}/$erase",
        ));
    }
    let caller = caller(&state, &method, &uri, &headers, &body).await?;
    caller.may("Patient", Action::Delete, Some(&id))?;
    caller.check_replay(&state)?;
    let records = records(&state)?;
    let finder = records.clone();
    let (key, authority_copy) = (caller.key, caller.authority.clone());
    let patient = blocking(move || {
            let patient = finder.patient_by_fhir(&id)?.ok_or_else(|| {
                FhirFailure::new(
                    StatusCode::NOT_FOUND,
                    IssueType::NotFound,
                    format!("Patient/{id} is not held by this node"),
                )
            })?;
            let entry = finder.patient(&patient)?.ok_or_else(|| {
                FhirFailure::new(StatusCode::NOT_FOUND, IssueType::NotFound, "no such patient")
            })?;
            let by_patient = entry.key == Some(key);
            let by_custodian = matches!(&authority_copy,
                Authority::Organisation { org } if *org == entry.custodian);
            if !by_patient && !by_custodian {
                return Err(FhirFailure::new(
                    StatusCode::FORBIDDEN,
                    IssueType::Forbidden,
                    "only the patient or the custodian organisation's root key may erase a patient's data",
                ));
            }
            Ok(patient)
    })
    .await?;
    let height = records.erase(patient).await?;
    Ok(fhir_json(
        StatusCode::OK,
        &medledger_fhir::operation_outcome(&[Issue {
            severity: Severity::Information,
            code: IssueType::Informational,
            diagnostics: format!(
                "erased at height {height}: the patient's keys, ciphertext and secret are destroyed on every node that follows the chain; the audit trail stays"
            ),
            expression: None,
        }]),
    ))
}

/// `GET /v1/records/me`: a patient's own view, for the signer's key: their patient ids, their
/// grants, and every access to their data.
#[utoipa::path(get, path = "/v1/records/me", tag = "records", security(("medledger_signature" = []), ("smart_bearer" = [])),
    responses((status = 200, description = "The signer's patient ids, their most recent accesses, and their grants")))]
async fn me(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, crate::ApiError> {
    let signed = signed_only(&state, &method, &uri, &headers, b"")
        .await
        .map_err(api_error)?;
    let records = records(&state).map_err(api_error)?;
    crate::blocking(move || {
        let (ids, grants, time_ms) = records
            .patient_view(&signed.key)
            .map_err(|e| api_error(e.into()))?;
        let mut patients = Vec::new();
        for id in ids {
            // The most recent events, bounded; the full log pages through the AuditEvent search.
            let total = records
                .access_log(&id, 0, 0)
                .map_err(|e| api_error(e.into()))?
                .1;
            let (events, total) = records
                .access_log(&id, total.saturating_sub(ME_EVENTS_MAX), ME_EVENTS_MAX)
                .map_err(|e| api_error(e.into()))?;
            let fhir_id = records.patient_fhir_id(&id).ok().flatten();
            patients.push(json!({
                "patient": id,
                "fhir_id": fhir_id,
                "accesses_total": total,
                "accesses": events,
            }));
        }
        let grants: Vec<Value> = grants
            .iter()
            .map(|grant| json!({"grant": grant, "active": grant.active_at(time_ms)}))
            .collect();
        // Research releases are accesses too: the patient sees them here, beside the reads.
        let key = signed.key;
        let (_, research) = state.node.read_head(|view| {
            let consent = medledger_research::consent(view, &key)?;
            let (total, releases) = medledger_research::access_log(view, &key, ME_EVENTS_MAX)?;
            Ok(json!({"consent": consent, "releases_total": total, "releases": releases}))
        })?;
        let research = research.map_err(|error| {
            crate::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?;
        Ok(Json(json!({
            "key": key,
            "patients": patients,
            "grants": grants,
            "research": research,
        }))
        .into_response())
    })
    .await
}

/// A caller of the records API (`/v1/records`), which takes signed requests only: it is
/// medledger's own, outside SMART's scopes.
async fn signed_only(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> FhirResult<Caller> {
    let caller = caller(state, method, uri, headers, body).await?;
    if caller.grant.is_some() {
        return Err(FhirFailure::new(
            StatusCode::UNAUTHORIZED,
            IssueType::Login,
            "the records API takes signed requests (Authorization: Medledger ...), not bearer tokens",
        ));
    }
    Ok(caller)
}

fn api_error(failure: FhirFailure) -> crate::ApiError {
    crate::ApiError::new(
        failure.status,
        failure.issue.code.code(),
        failure.issue.diagnostics,
    )
}

/// `GET /v1/records/ids/{type}/{id}`: the ledger id of a record held here, for what names
/// records on chain (an adherence attestation names its CarePlan). For the custodian's root key
/// and its practitioners only: the id links a FHIR id to the chain's records.
#[utoipa::path(get, path = "/v1/records/ids/{kind}/{id}", tag = "records", security(("medledger_signature" = [])),
    params(("kind" = String, Path, description = "The resource type"), ("id" = String, Path, description = "The logical id")),
    responses((status = 200, description = "The record's ledger id"), (status = 403, description = "Not the custodian's root key or a practitioner of it"), (status = 404, description = "Not held here")))]
async fn ledger_id(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, crate::ApiError> {
    let signed = signed_only(&state, &method, &uri, &headers, b"")
        .await
        .map_err(api_error)?;
    let records = records(&state).map_err(api_error)?;
    let custodian = records.custodian().map_err(|e| api_error(e.into()))?;
    let allowed = match &signed.authority {
        Authority::Organisation { org } => *org == custodian,
        Authority::Member { org, role } => {
            *org == custodian && *role == medledger_types::Role::Practitioner
        }
    };
    if !allowed {
        return Err(crate::ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("only {custodian}'s root key and practitioners resolve its records' ids"),
        ));
    }
    crate::blocking(move || {
        let (record, _) = records
            .record_by_fhir(&kind, &id)
            .map_err(|e| api_error(e.into()))?
            .ok_or_else(|| crate::ApiError::not_found(format!("{kind}/{id} is not held here")))?;
        // A Patient's opaque id, too: what the chain names a patient by.
        let patient = if kind == "Patient" {
            records
                .patient_by_fhir(&id)
                .map_err(|e| api_error(e.into()))?
        } else {
            None
        };
        Ok(Json(json!({
            "record": record,
            "resource_type": kind,
            "custodian": custodian,
            "patient": patient,
        }))
        .into_response())
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BindRequest {
    key: PublicKey,
}

/// `POST /v1/records/patients/{fhir id}/bind {"key": ...}`: the custodian binds a patient held
/// here to the patient's enrolled key.
#[utoipa::path(post, path = "/v1/records/patients/{id}/bind", tag = "records", security(("medledger_signature" = []), ("smart_bearer" = [])), params(("id" = String, Path, description = "The Patient's logical id")),
    request_body(content = String, content_type = "application/json", description = "{\"key\": \"<the patient's enrolled public key>\"}"),
    responses((status = 200, description = "Bound on chain"), (status = 403, description = "Not the custodian's root key")))]
async fn bind(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, crate::ApiError> {
    let body = body_bytes(body).map_err(api_error)?;
    let signed = signed_only(&state, &method, &uri, &headers, &body)
        .await
        .map_err(api_error)?;
    signed.check_replay(&state).map_err(api_error)?;
    let authority = signed.authority.clone();
    let request: BindRequest = serde_json::from_slice(&body)
        .map_err(|error| crate::ApiError::bad_request("malformed_json", error.to_string()))?;
    let records = records(&state).map_err(api_error)?;
    let custodian = records.custodian().map_err(|e| api_error(e.into()))?;
    // Binding hands the patient's consent, audit log and erasure to a key: the organisation
    // itself attests who its patient is, not any one practitioner.
    let allowed = matches!(&authority, Authority::Organisation { org } if *org == custodian);
    if !allowed {
        return Err(crate::ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("only {custodian}'s root key may bind its patients"),
        ));
    }
    let patient = records
        .patient_by_fhir(&id)
        .map_err(|e| api_error(e.into()))?
        .ok_or_else(|| crate::ApiError::not_found(format!("Patient/{id} is not held here")))?;
    let height = records
        .bind_patient(patient, request.key)
        .await
        .map_err(|e| api_error(e.into()))?;
    Ok(Json(json!({"patient": patient, "key": request.key, "height": height})).into_response())
}
