//! The FHIR R4 REST face (`/fhir/...`) and the records API (`/v1/records/...`), for EHR
//! integration engineers and patients' apps.
//!
//! Every request but `GET /fhir/metadata` is signed (see [`crate::auth`]). Reads name an HL7
//! PurposeOfUse in `X-Purpose-Of-Use`; each read commits an access event before any content
//! leaves the node, and answers 403 when the event denies it. Errors are OperationOutcome
//! resources with the matching HTTP status, served as `application/fhir+json`.
//!
//! **Invariant:** a malformed resource or Bundle is refused whole: it is parsed and every
//! reference checked before anything is staged, and a refused transaction rolls the vault back.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
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
use medledger_types::Role;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{self, AuthError, Signed};

pub const FHIR_JSON: &str = "application/fhir+json";
/// The most records one search returns (its page size limit).
pub const SEARCH_COUNT_MAX: usize = 1_000;
pub const SEARCH_COUNT_DEFAULT: usize = 100;
/// The furthest a search may page.
pub const SEARCH_OFFSET_MAX: usize = 1_000_000_000;
/// The most access events `GET /v1/records/me` lists per patient id (the most recent ones).
pub const ME_EVENTS_MAX: u64 = 1_000;

/// An error answered as an OperationOutcome.
#[derive(Debug)]
pub struct FhirFailure {
    status: StatusCode,
    issue: Issue,
}

impl FhirFailure {
    fn new(status: StatusCode, code: IssueType, diagnostics: impl Into<String>) -> Self {
        FhirFailure {
            status,
            issue: Issue {
                severity: Severity::Error,
                code,
                diagnostics: diagnostics.into(),
                expression: None,
            },
        }
    }
}

impl IntoResponse for FhirFailure {
    fn into_response(self) -> Response {
        fhir_json(
            self.status,
            &medledger_fhir::operation_outcome(&[self.issue]),
        )
    }
}

impl From<FhirError> for FhirFailure {
    fn from(error: FhirError) -> Self {
        let status = match error.issue_type() {
            IssueType::TooCostly => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        FhirFailure {
            status,
            issue: error.issue(),
        }
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
            ServiceError::Refused { code, .. } if code == "request_replayed" => {
                (StatusCode::CONFLICT, IssueType::Duplicate)
            }
            ServiceError::Refused { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, IssueType::BusinessRule)
            }
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient),
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

type FhirResult<T> = Result<T, FhirFailure>;

fn fhir_json(status: StatusCode, value: &Value) -> Response {
    fhir_bytes(status, serde_json::to_vec(value).unwrap_or_default())
}

fn fhir_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
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
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    metadata,
    import_bundle,
    create,
    update,
    read,
    search_all,
    search_kind,
    operation,
    me,
    bind
))]
struct FhirDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(import_bundle).get(search_all))
        .route("/fhir/{kind}", post(create).get(search_kind))
        .route("/fhir/{kind}/{id}", get(read).put(update))
        .route("/fhir/{kind}/{id}/{operation}", post(operation))
        .route("/v1/records/me", get(me))
        .route("/v1/records/patients/{id}/bind", post(bind))
}

/// Whether a request is for the FHIR face, whose errors are OperationOutcomes.
pub(crate) fn is_fhir_path(uri: &Uri) -> bool {
    uri.path() == "/fhir" || uri.path().starts_with("/fhir/")
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
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> FhirResult<T> + Send + 'static,
) -> FhirResult<T> {
    crate::blocking(move || Ok(work())).await?
}

/// A search parameter the request must give.
fn required(value: &Option<String>, message: &str) -> FhirResult<String> {
    value
        .clone()
        .ok_or_else(|| FhirFailure::new(StatusCode::BAD_REQUEST, IssueType::Required, message))
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
    // The API is a shell: the clock bounds how long a signed request stays valid, and never
    // reaches the ledger.
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

/// Checks a request's signature and that its key is an enrolled, unrevoked member.
async fn signed(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> FhirResult<(Signed, Authority)> {
    let signed = auth::verify_request(&state.node, method, uri, headers, body)?;
    let records = records(state)?;
    let key = signed.key;
    let authority = crate::blocking(move || Ok(records.authenticate(&key)))
        .await?
        .map_err(|error| {
            FhirFailure::new(
                StatusCode::UNAUTHORIZED,
                IssueType::Security,
                format!("the requester is not an enrolled, unrevoked member: {error}"),
            )
        })?;
    Ok((signed, authority))
}

fn purpose(signed: &Signed) -> FhirResult<Purpose> {
    let text = signed.access.purpose.as_deref().ok_or_else(|| {
        FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "a read must name its purpose in X-Purpose-Of-Use (HL7 PurposeOfUse, e.g. TREAT)",
        )
    })?;
    text.parse()
        .map_err(|error: String| FhirFailure::new(StatusCode::BAD_REQUEST, IssueType::Value, error))
}

fn wrap_to(signed: &Signed) -> FhirResult<Option<[u8; 32]>> {
    let Some(text) = &signed.access.wrap_to else {
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

#[utoipa::path(get, path = "/fhir/metadata", tag = "fhir", responses(
    (status = 200, description = "The CapabilityStatement (application/fhir+json); needs no signature")))]
async fn metadata(State(state): State<AppState>) -> Response {
    let description = format!(
        "medledger node of chain {}: FHIR R4 records under patient consent",
        state.node.genesis().chain_id
    );
    let statement = medledger_fhir::capability_statement(&medledger_fhir::CapabilityConfig {
        software_version: env!("CARGO_PKG_VERSION"),
        date_ms: state.node.genesis().genesis_time_ms,
        implementation_description: &description,
        base_url: None,
        resource_types: medledger_fhir::RESOURCE_TYPES,
        vread: false,
    });
    fhir_json(StatusCode::OK, &statement)
}

/// Turns checked resources into import items, resolving each one's patient.
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
    let mut items = Vec::with_capacity(resolved.len());
    for item in &resolved {
        let patient_fhir_id = match &item.patient {
            medledger_fhir::PatientLink::Own => None,
            medledger_fhir::PatientLink::Entry(index) => {
                Some(resolved[*index].id.clone().ok_or_else(|| {
                    FhirFailure::new(
                        StatusCode::BAD_REQUEST,
                        IssueType::Required,
                        format!(
                            "the Patient in entry {index} needs an id or a urn:uuid fullUrl, so its records can name it"
                        ),
                    )
                })?)
            }
            medledger_fhir::PatientLink::Stored(id) => Some(id.clone()),
        };
        if patient_fhir_id.is_none() && item.id.is_none() {
            return Err(FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Required,
                format!("the Patient in entry {} needs an id", item.index),
            ));
        }
        items.push(ImportItem {
            resource_type: item.resource.resource_type.clone(),
            fhir_id: item.id.clone(),
            patient_fhir_id,
            category: item
                .resource
                .category
                .clone()
                .filter(|code| RECORD_CATEGORIES.contains(&code.as_str())),
            content: item.resource.bytes.to_vec(),
        });
    }
    Ok(items)
}

#[utoipa::path(post, path = "/fhir", tag = "fhir", security(("medledger_signature" = [])),
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
    let (signed, _) = signed(&state, &method, &uri, &headers, &body).await?;
    state.replay.check(&signed.request, now_ms())?;
    let records = records(&state)?;
    let batch = {
        let bundle = medledger_fhir::parse_bundle(&body)?;
        bundle.bundle_type == medledger_fhir::BundleType::Batch
    };
    let importer = records.clone();
    let parse_body = body.clone();
    let items = crate::blocking(move || {
        let bundle = medledger_fhir::parse_bundle(&parse_body).map_err(FhirFailure::from);
        Ok(bundle.and_then(|bundle| import_items(&bundle, &importer)))
    })
    .await??;
    let imported = records.import(&signed.key, items).await?;
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

/// Stores one resource, as `POST /fhir/{kind}` (logical id from the body, else assigned) or
/// `PUT /fhir/{kind}/{id}` (the body's id must match).
async fn store_one(
    state: AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    kind: String,
    id: Option<String>,
) -> FhirResult<Response> {
    let (signed, _) = signed(&state, &method, &uri, &headers, &body).await?;
    state.replay.check(&signed.request, now_ms())?;
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
    // One resource is checked as a one-entry collection Bundle: same rules, same errors.
    let entry_bundle = medledger_fhir::Bundle::single(resource);
    let importer = records.clone();
    let items = import_items(&entry_bundle, &importer)?;
    let imported = records.import(&signed.key, items).await?;
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
    let location = format!(
        "{}/{}/_history/{}",
        record.resource_type, record.fhir_id, record.version
    );
    let mut response = fhir_json(
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
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("W/\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

#[utoipa::path(post, path = "/fhir/{type}", tag = "fhir", security(("medledger_signature" = [])), params(("type" = String, Path, description = "FHIR resource type")),
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
    store_one(state, method, uri, headers, body, kind, None).await
}

#[utoipa::path(put, path = "/fhir/{type}/{id}", tag = "fhir", security(("medledger_signature" = [])), params(("type" = String, Path), ("id" = String, Path)),
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

#[utoipa::path(get, path = "/fhir/{type}/{id}", tag = "fhir", security(("medledger_signature" = [])), params(("type" = String, Path), ("id" = String, Path), ("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code, e.g. TREAT, ETREAT, HPAYMT, HOPERAT, HRESCH"),
    ("X-Break-Glass" = Option<String>, Header, description = "true: emergency access (ETREAT, practitioners), flagged to the patient"),
    ("X-Wrap-To" = Option<String>, Header, description = "An X25519 public key (hex): answer with the ciphertext and its key sealed with HPKE")),
    responses(
    (status = 200, description = "The record, byte for byte as stored; X-Access-Event names the access event's transaction"),
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
    let (signed, _) = signed(&state, &method, &uri, &headers, b"").await?;
    if kind == "Consent" {
        return consent_one(&state, &id).await;
    }
    let purpose = purpose(&signed)?;
    let wrap_to = wrap_to(&signed)?;
    let records = records(&state)?;
    let finder = records.clone();
    let (kind_copy, id_copy) = (kind.clone(), id.clone());
    let found = crate::blocking(move || Ok(finder.record_by_fhir(&kind_copy, &id_copy)))
        .await??
        .ok_or_else(|| {
            FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("{kind}/{id} is not held by this node"),
            )
        })?;
    let (record, patient) = found;
    let access = records
        .read(ReadRequest {
            request: signed.request,
            reader: signed.key,
            patient,
            records: vec![record],
            purpose,
            break_glass: signed.access.break_glass,
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
        let status = if rules.iter().any(|rule| **rule == AccessRule::Erased) {
            StatusCode::GONE
        } else {
            StatusCode::FORBIDDEN
        };
        let mut response = FhirFailure::new(
            status,
            IssueType::Forbidden,
            denied_diagnostics(&rules, access.event.height),
        )
        .into_response();
        add_event_header(&mut response, &event_tx);
        return Ok(response);
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
        None => fhir_bytes(StatusCode::OK, released.content),
    };
    if let Ok(value) = HeaderValue::from_str(&format!("W/\"{}\"", released.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    add_event_header(&mut response, &event_tx);
    Ok(response)
}

fn add_event_header(response: &mut Response, tx: &Hash) {
    if let Ok(value) = HeaderValue::from_str(&tx.to_hex()) {
        response.headers_mut().insert("x-access-event", value);
    }
}

/// The search parameters this server understands.
#[derive(Debug, Default)]
struct SearchParams {
    patient: Option<String>,
    target: Option<String>,
    count: usize,
    offset: usize,
}

fn search_params(query: &[(String, String)]) -> FhirResult<SearchParams> {
    let mut params = SearchParams {
        count: SEARCH_COUNT_DEFAULT,
        ..SearchParams::default()
    };
    let number = |name: &str, value: &str| {
        value.parse::<usize>().map_err(|_| {
            FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Value,
                format!("{name} must be a whole number"),
            )
        })
    };
    for (name, value) in query {
        match name.as_str() {
            "patient" | "subject" => {
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                params.patient = Some(id.to_string());
            }
            "target" => params.target = Some(value.clone()),
            "_count" => params.count = number(name, value)?.clamp(1, SEARCH_COUNT_MAX),
            "_offset" => params.offset = number(name, value)?.min(SEARCH_OFFSET_MAX),
            "_format" => {}
            other => {
                return Err(FhirFailure::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::NotSupported,
                    format!(
                        "search parameter {other:?} is not supported; use patient (or subject), _count and _offset"
                    ),
                ));
            }
        }
    }
    Ok(params)
}

#[utoipa::path(get, path = "/fhir", tag = "fhir", security(("medledger_signature" = [])), params(("patient" = String, Query, description = "The Patient's logical id"), ("_count" = Option<usize>, Query), ("_offset" = Option<usize>, Query), ("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code, e.g. TREAT, ETREAT, HPAYMT, HOPERAT, HRESCH")),
    responses((status = 200, description = "A searchset Bundle of what consent allows; X-Withheld-Records counts the rest")))]
async fn search_all(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> FhirResult<Response> {
    search(state, method, uri, headers, query, None).await
}

#[utoipa::path(get, path = "/fhir/{type}", tag = "fhir", security(("medledger_signature" = [])), params(("type" = String, Path, description = "A resource type, or Consent, AuditEvent or Provenance"), ("patient" = Option<String>, Query), ("target" = Option<String>, Query, description = "Provenance only: Type/id"), ("_count" = Option<usize>, Query), ("_offset" = Option<usize>, Query)),
    responses((status = 200, description = "A searchset Bundle"), (status = 403, description = "Not the patient, the custodian or an auditor (AuditEvent, Provenance, Consent)")))]
async fn search_kind(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    Path(kind): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> FhirResult<Response> {
    check_kind(&kind)?;
    search(state, method, uri, headers, query, Some(kind)).await
}

async fn search(
    state: AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    kind: Option<String>,
) -> FhirResult<Response> {
    let params = search_params(&query)?;
    let (signed, authority) = signed(&state, &method, &uri, &headers, b"").await?;
    let self_link = uri.to_string();
    match kind.as_deref() {
        Some("Consent") => return consent_search(&state, &signed, &authority, &params).await,
        Some("AuditEvent") => {
            return audit_search(&state, &signed, &authority, &params).await;
        }
        Some("Provenance") => {
            return provenance_search(&state, &signed, &authority, &params).await;
        }
        _ => {}
    }
    let fhir_patient = required(
        &params.patient,
        "searches are by patient: give patient=<id> (optionally with a resource type)",
    )?;
    let purpose = purpose(&signed)?;
    let records = records(&state)?;
    let finder = records.clone();
    let (count, offset) = (params.count, params.offset);
    let found = blocking(move || {
        let Some(patient) = finder.patient_by_fhir(&fhir_patient)? else {
            return Ok(None);
        };
        let (hits, total) = finder.search(&patient, kind.as_deref(), offset, count)?;
        Ok(Some((patient, (finder.committed(hits)?, total))))
    })
    .await?;
    let Some((patient, (hits, _total))) = found else {
        return Ok(fhir_bytes(
            StatusCode::OK,
            medledger_fhir::searchset(&[], 0, &self_link),
        ));
    };
    let access = records
        .read(ReadRequest {
            request: signed.request,
            reader: signed.key,
            patient,
            records: hits.iter().map(|hit| hit.record).collect(),
            purpose,
            break_glass: signed.access.break_glass,
            wrap_to: None,
        })
        .await?;
    let withheld = access.event.decisions.len() - access.released.len();
    let entries: Vec<(String, &[u8])> = access
        .released
        .iter()
        .map(|released| {
            (
                format!("{}/{}", released.resource_type, released.fhir_id),
                released.content.as_slice(),
            )
        })
        .collect();
    let mut response = fhir_bytes(
        StatusCode::OK,
        medledger_fhir::searchset(&entries, entries.len(), &self_link),
    );
    if let Ok(value) = HeaderValue::from_str(&withheld.to_string()) {
        response.headers_mut().insert("x-withheld-records", value);
    }
    add_event_header(&mut response, &access.event.tx);
    Ok(response)
}

/// The FHIR reference of a patient id: its `Patient` resource here, or the opaque id.
fn patient_reference(records: &Records, patient: &Hash) -> String {
    match records.patient_fhir_id(patient) {
        Ok(Some(id)) => format!("Patient/{id}"),
        _ => format!("urn:medledger:patient:{patient}"),
    }
}

async fn consent_search(
    state: &AppState,
    signed: &Signed,
    authority: &Authority,
    params: &SearchParams,
) -> FhirResult<Response> {
    let (key, authority) = (signed.key, authority.clone());
    let records = records(state)?;
    let fhir_patient = required(&params.patient, "Consent searches are by patient=<id>")?;
    let resources = blocking(move || {
        let Some(patient) = records.patient_by_fhir(&fhir_patient)? else {
            return Ok(Vec::new());
        };
        may_audit(&records, &key, &authority, &patient)?;
        let Some(entry) = records.patient(&patient)? else {
            return Ok(Vec::new());
        };
        let Some(key) = entry.key else {
            return Ok(Vec::new());
        };
        let (_, grants, time_ms) = records.patient_view(&key)?;
        let reference = patient_reference(&records, &patient);
        Ok(grants
            .iter()
            .map(|grant| medledger_fhir::consent(grant, &reference, time_ms))
            .collect())
    })
    .await?;
    Ok(fhir_json(
        StatusCode::OK,
        &medledger_fhir::bundle(medledger_fhir::OutputBundleType::Searchset, resources),
    ))
}

async fn consent_one(state: &AppState, id: &str) -> FhirResult<Response> {
    let grant = Hash::from_hex(id).map_err(|_| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "a Consent id is the 64-hex-digit id of a grant",
        )
    })?;
    let node = state.node.clone();
    crate::blocking(move || {
        let (_, found) = node.read_head(|state| {
            let entry = medledger_records::grant(state, &grant)?;
            let time = medledger_ledger::chain_head(state)?.time_ms;
            Ok((entry, time))
        })?;
        let found = found.ok();
        Ok(match found {
            Some((Some(entry), time)) => {
                let key = entry.grant.patient;
                let reference = format!("urn:medledger:key:{key}");
                Ok(fhir_json(
                    StatusCode::OK,
                    &medledger_fhir::consent(&entry, &reference, time),
                ))
            }
            _ => Err(FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("no consent grant {grant}"),
            )),
        })
    })
    .await?
}

/// May `requester` see the audit trail, grants and provenance of `patient`? The patient (the
/// bound key), the custodian's root key, node and practitioners, and auditors may.
fn may_audit(
    records: &Records,
    requester: &PublicKey,
    authority: &Authority,
    patient: &Hash,
) -> FhirResult<()> {
    let entry = records.patient(patient)?.ok_or_else(|| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no such patient",
        )
    })?;
    let is_patient = entry.key == Some(*requester);
    let allowed = is_patient
        || match authority {
            Authority::Organisation { org } => *org == entry.custodian,
            Authority::Member {
                role: Role::Auditor,
                ..
            } => true,
            Authority::Member {
                org,
                role: Role::Practitioner | Role::Validator,
            } => *org == entry.custodian,
            Authority::Member { .. } => false,
        };
    if allowed {
        Ok(())
    } else {
        Err(FhirFailure::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "only the patient, the custodian's members and auditors may see this audit trail",
        ))
    }
}

async fn audit_search(
    state: &AppState,
    signed: &Signed,
    authority: &Authority,
    params: &SearchParams,
) -> FhirResult<Response> {
    let records = records(state)?;
    let fhir_patient = required(&params.patient, "AuditEvent searches are by patient=<id>")?;
    let (key, authority) = (signed.key, authority.clone());
    let (offset, count) = (params.offset as u64, params.count as u64);
    let bundle = blocking(move || {
        let patient = records.patient_by_fhir(&fhir_patient)?.ok_or_else(|| {
            FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("Patient/{fhir_patient} is not held by this node"),
            )
        })?;
        may_audit(&records, &key, &authority, &patient)?;
        let (events, _) = records.access_log(&patient, offset, count)?;
        let reference = patient_reference(&records, &patient);
        Ok(medledger_fhir::bundle(
            medledger_fhir::OutputBundleType::Searchset,
            events
                .iter()
                .map(|event| medledger_fhir::audit_event(event, &reference))
                .collect(),
        ))
    })
    .await?;
    Ok(fhir_json(StatusCode::OK, &bundle))
}

async fn provenance_search(
    state: &AppState,
    signed: &Signed,
    authority: &Authority,
    params: &SearchParams,
) -> FhirResult<Response> {
    let records = records(state)?;
    let target = required(
        &params.target,
        "Provenance searches are by target=<Type>/<id>",
    )?;
    let (key, authority) = (signed.key, authority.clone());
    let bundle = blocking(move || {
        let (kind, id) = target.split_once('/').ok_or_else(|| {
            FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Value,
                "target must be <Type>/<id>",
            )
        })?;
        let (record, patient) = records.record_by_fhir(kind, id)?.ok_or_else(|| {
            FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("{target} is not held by this node"),
            )
        })?;
        may_audit(&records, &key, &authority, &patient)?;
        let (head, versions) = records.provenance(&record)?;
        Ok(medledger_fhir::bundle(
            medledger_fhir::OutputBundleType::Searchset,
            medledger_fhir::provenance(&format!("{kind}/{id}"), &versions, &head.custodian),
        ))
    })
    .await?;
    Ok(fhir_json(StatusCode::OK, &bundle))
}

/// `POST /fhir/Patient/{id}/$erase`: crypto-shreds the patient's data everywhere.
#[utoipa::path(post, path = "/fhir/Patient/{id}/$erase", tag = "fhir", security(("medledger_signature" = [])),
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
    let (signed, authority) = signed(&state, &method, &uri, &headers, &body).await?;
    state.replay.check(&signed.request, now_ms())?;
    let records = records(&state)?;
    let finder = records.clone();
    let (key, authority_copy) = (signed.key, authority.clone());
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
#[utoipa::path(get, path = "/v1/records/me", tag = "records", security(("medledger_signature" = [])),
    responses((status = 200, description = "The signer's patient ids, their most recent accesses, and their grants")))]
async fn me(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, crate::ApiError> {
    let (signed, _) = signed(&state, &method, &uri, &headers, b"")
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
        Ok(
            Json(json!({"key": signed.key, "patients": patients, "grants": grants}))
                .into_response(),
        )
    })
    .await
}

fn api_error(failure: FhirFailure) -> crate::ApiError {
    crate::ApiError::new(
        failure.status,
        failure.issue.code.code(),
        failure.issue.diagnostics,
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BindRequest {
    key: PublicKey,
}

/// `POST /v1/records/patients/{fhir id}/bind {"key": ...}`: the custodian binds a patient held
/// here to the patient's enrolled key.
#[utoipa::path(post, path = "/v1/records/patients/{id}/bind", tag = "records", security(("medledger_signature" = [])), params(("id" = String, Path, description = "The Patient's logical id")),
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
    let (signed, authority) = signed(&state, &method, &uri, &headers, &body)
        .await
        .map_err(api_error)?;
    state
        .replay
        .check(&signed.request, now_ms())
        .map_err(|error| api_error(error.into()))?;
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
