//! Research data sharing over HTTP: a request's public view and cohort sizes, matching at this
//! custodian (its organisation's root key), a patient's research consent and access log, and the
//! FHIR Bulk Data export of the request's cohort (`Group/{request}/$export`, asynchronous: a
//! status URL, then a manifest of sealed NDJSON files).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medledger_crypto::Hash;
use medledger_fhir::IssueType;
use medledger_ledger::Authority;
use medledger_node::research::{Job, Research};
use medledger_types::Role;
use serde_json::{Value, json};

use crate::fhir::{FhirFailure, FhirResult, caller, fhir_json};
use crate::{ApiError, ApiResult, AppState, blocking};

/// Research data sharing's part of the API.
pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <ResearchDoc as utoipa::OpenApi>::openapi,
    consent: None,
    audit: Some(crate::AuditView {
        events: release_events,
    }),
    fhir: None,
    fhir_source: None,
};

/// The most research releases a patient's AuditEvent log lists (the latest).
pub const AUDIT_RELEASES_MAX: u64 = 1_000;

/// A patient's research releases by `custodian`, as AuditEvents in their FHIR access log.
fn release_events(
    node: &medledger_node::Node,
    patient: &medledger_crypto::PublicKey,
    custodian: &str,
    patient_reference: &str,
) -> Result<Vec<Value>, medledger_node::ServiceError> {
    let (_, found) = node.read_head(|state| {
        Ok(medledger_research::access_log(state, patient, AUDIT_RELEASES_MAX)?.1)
    })?;
    let entries =
        found.map_err(|error| medledger_node::ServiceError::NotFound(error.to_string()))?;
    Ok(entries
        .iter()
        .filter(|entry| entry.custodian == custodian)
        .map(|entry| {
            medledger_fhir::research_release_event(
                &medledger_fhir::ResearchRelease {
                    request: &entry.request,
                    release: entry.release,
                    researcher: &entry.researcher,
                    researcher_org: &entry.researcher_org,
                    custodian: &entry.custodian,
                    height: entry.height,
                    time_ms: entry.time_ms,
                },
                patient_reference,
            )
        })
        .collect())
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(request, match_request, me, group, export, export_status, export_file))]
struct ResearchDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/research/me", get(me))
        .route("/v1/research/requests/{id}", get(request))
        .route("/v1/research/requests/{id}/match", post(match_request))
        .route("/fhir/Group/{id}", get(group))
        .route("/fhir/Group/{id}/$export", get(export))
        .route("/fhir/bulkstatus/{job}", get(export_status))
        .route("/fhir/bulkfiles/{job}/{file}", get(export_file))
}

fn research(state: &AppState) -> ApiResult<Research> {
    state.services.get::<Research>().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_research_service",
            "this node serves no research data",
        )
    })
}

fn parse_id(text: &str) -> ApiResult<Hash> {
    Hash::from_hex(text).map_err(|error| {
        ApiError::bad_request("malformed_id", format!("an id is 32 bytes in hex: {error}"))
    })
}

#[utoipa::path(get, path = "/v1/research/requests/{id}", tag = "research",
    params(("id" = String, Path, description = "Request id (its transaction's id), hex")),
    responses((status = 200, description = "The request (researcher, DUO terms, record types), its releases and the size of each organisation's matched cohort; public")))]
async fn request(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let node = state.node.clone();
    blocking(move || {
        let orgs: Vec<String> = node
            .genesis()
            .organisations
            .iter()
            .map(|org| org.id.clone())
            .collect();
        let (height, found) = node.read_head(|view| {
            let found = medledger_research::request(view, &id)?
                .ok_or_else(|| medledger_research::ResearchError::UnknownRequest(id.to_string()))?;
            let mut cohorts = serde_json::Map::new();
            for org in &orgs {
                let size = medledger_research::cohort_size(view, &id, org)?;
                if size > 0 {
                    cohorts.insert(org.clone(), json!(size));
                }
            }
            let mut releases = Vec::new();
            for seq in 0..found.releases {
                if let Some(release) = medledger_research::release(view, &id, seq)? {
                    releases.push(json!({
                        "custodian": release.custodian,
                        "patients": release.patients.len(),
                        "resources": release.resources,
                        "sealed": release.sealed,
                        "height": release.height,
                    }));
                }
            }
            Ok(json!({ "request": found, "cohorts": cohorts, "releases": releases }))
        })?;
        let mut view = found.map_err(|error| ApiError::not_found(error.to_string()))?;
        view["height"] = json!(height);
        Ok(Json(view))
    })
    .await
}

#[utoipa::path(post, path = "/v1/research/requests/{id}/match", tag = "research",
    params(("id" = String, Path, description = "Request id, hex")),
    responses((status = 200, description = "How many of this node's patients were checked and how many matched (recorded on chain); only counts, never who"),
        (status = 403, description = "Not this node's organisation's root key")))]
async fn match_request(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let (_, signer, _) = crate::signed_member(&state, &method, &uri, &headers, b"").await?;
    let node = state.node.clone();
    let own = blocking(move || Ok(node.account(&node.key())?.0)).await?;
    let is_root = matches!(
        (&signer, &own),
        (Authority::Organisation { org }, Ok(Authority::Member { org: ours, .. } | Authority::Organisation { org: ours }))
            if org == ours
    );
    if !is_root {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only this node's organisation (its root key) runs matching against its patients",
        ));
    }
    let research = research(&state)?;
    let report = research.match_request(id).await?;
    Ok(Json(json!(report)))
}

#[utoipa::path(get, path = "/v1/research/me", tag = "research",
    responses((status = 200, description = "The signing patient's research consent, how many releases named them, and the latest 1,000")))]
async fn me(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (key, _, _) = crate::signed_member(&state, &method, &uri, &headers, b"").await?;
    let node = state.node.clone();
    blocking(move || {
        let (height, found) = node.read_head(|view| {
            let consent = medledger_research::consent(view, &key)?;
            // The latest releases, bounded as the records view bounds its accesses.
            let (total, log) =
                medledger_research::access_log(view, &key, crate::fhir::ME_EVENTS_MAX)?;
            Ok(json!({ "patient": key, "consent": consent, "releases_total": total, "releases": log }))
        })?;
        let mut view = found.map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?;
        view["height"] = json!(height);
        Ok(Json(view))
    })
    .await
}

fn fhir_research(state: &AppState) -> FhirResult<Research> {
    research(state).map_err(FhirFailure::from)
}

fn fhir_id(text: &str) -> FhirResult<Hash> {
    Hash::from_hex(text).map_err(|_| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no such resource",
        )
    })
}

#[utoipa::path(get, path = "/fhir/Group/{id}", tag = "fhir",
    params(("id" = String, Path, description = "Request id, hex")),
    responses((status = 200, description = "The request's cohort at this node as a FHIR Group (its size, never its members)")))]
async fn group(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let id = fhir_id(&id)?;
    let research = fhir_research(&state)?;
    let node = state.node.clone();
    let group = crate::blocking(move || {
        let request = research.request(&id)?;
        let own = match node.account(&node.key())?.0 {
            Ok(Authority::Member { org, .. } | Authority::Organisation { org }) => org,
            Err(reason) => return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", reason)),
        };
        let may = request.researcher == caller.key
            || matches!(&caller.authority, Authority::Member { role: Role::Auditor, .. })
            || matches!(&caller.authority, Authority::Organisation { org } if *org == own);
        if !may {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only the researcher, this custodian and auditors see the cohort"));
        }
        let (_, size) = node.read_head(|view| Ok(medledger_research::cohort_size(view, &id, &own)?))?;
        let size = size.map_err(|error| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string()))?;
        Ok(json!({
            "resourceType": "Group",
            "id": id.to_hex(),
            "type": "person",
            "actual": true,
            "name": request.title,
            "quantity": size,
            "managingEntity": { "identifier": { "system": "urn:medledger:organisation", "value": own }, "display": own },
            "characteristic": request.terms.codes.iter().map(|code| json!({
                "code": { "coding": [{ "system": "http://purl.obolibrary.org/obo/duo.owl", "code": code }] },
                "valueBoolean": true,
                "exclude": false,
            })).collect::<Vec<_>>(),
        }))
    })
    .await?;
    Ok(fhir_json(StatusCode::OK, &group))
}

#[utoipa::path(get, path = "/fhir/Group/{id}/$export", tag = "fhir",
    params(("id" = String, Path, description = "Request id, hex")),
    responses((status = 202, description = "Export started (FHIR Bulk Data kick-off; needs Prefer: respond-async): Content-Location is the status URL"),
        (status = 403, description = "Not the request's researcher")))]
async fn export(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let prefer = headers
        .get("prefer")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !prefer.contains("respond-async") {
        return Err(FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "a Bulk Data export needs the header Prefer: respond-async",
        ));
    }
    let id = fhir_id(&id)?;
    let research = fhir_research(&state)?;
    let job = research.start_export(caller.key, id)?;
    let base = crate::smart::base_url(&headers);
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{base}/fhir/bulkstatus/{job}")) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/fhir/bulkstatus/{job}", tag = "fhir",
    params(("job" = String, Path, description = "Export job id")),
    responses((status = 202, description = "Still running (X-Progress)"),
        (status = 200, description = "The Bulk Data manifest: one sealed NDJSON file per resource type")))]
async fn export_status(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> FhirResult<Response> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let job_id = fhir_id(&job)?;
    let research = fhir_research(&state)?;
    let found = research.job(&caller.key, &job_id)?;
    let base = crate::smart::base_url(&headers);
    match found {
        Job::Running { .. } => {
            let mut response = StatusCode::ACCEPTED.into_response();
            response
                .headers_mut()
                .insert("x-progress", HeaderValue::from_static("in progress"));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(response)
        }
        Job::Failed { error, .. } => Err(FhirFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            format!("the export failed: {error}"),
        )),
        Job::Done {
            request,
            height,
            time_ms,
            patients,
            outputs,
            withheld,
            ..
        } => {
            let url = |output: &medledger_node::research::Output| {
                format!("{base}/fhir/bulkfiles/{job_id}/{}", output.file)
            };
            let genomic = medledger_node::research::GENOMIC_OUTPUT_TYPE;
            let manifest = json!({
                "transactionTime": medledger_fhir::time::instant(time_ms),
                "request": format!("{base}/fhir/Group/{request}/$export"),
                "requiresAccessToken": true,
                "output": outputs.iter().filter(|output| output.resource_type != genomic).map(|output| json!({
                    "type": output.resource_type,
                    "url": url(output),
                    "count": output.count,
                })).collect::<Vec<_>>(),
                "error": [],
                "extension": {
                    "https://medledger.dev/research/release-height": height,
                    "https://medledger.dev/research/patients": patients,
                    "https://medledger.dev/research/sealed": "each NDJSON file is JSON sealing NDJSON to the request's X25519 key (HPKE, AES-256-GCM); each genomic file is a sealed stream (MLSEALED-STREAM1: header, then STREAM AES-256-GCM chunks)",
                    "https://medledger.dev/research/genomic-files": outputs.iter().filter(|output| output.resource_type == genomic).map(|output| json!({
                        "url": url(output),
                        "contentType": output.media_type,
                    })).collect::<Vec<_>>(),
                    "https://medledger.dev/research/withheld": withheld,
                },
            });
            Ok((StatusCode::OK, Json(manifest)).into_response())
        }
    }
}

#[utoipa::path(get, path = "/fhir/bulkfiles/{job}/{file}", tag = "fhir",
    params(("job" = String, Path, description = "Export job id"), ("file" = String, Path, description = "<resource type>.<part>, as the manifest names it")),
    responses((status = 200, description = "The sealed NDJSON file, for the request's researcher only")))]
async fn export_file(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((job, file)): Path<(String, String)>,
) -> FhirResult<Response> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let job = fhir_id(&job)?;
    let research = fhir_research(&state)?;
    let (opened, length, media_type) =
        crate::blocking(move || Ok(research.file(&caller.key, &job, &file)?)).await?;
    let mut response = (
        StatusCode::OK,
        crate::fhir::binary::streamed_body(std::io::BufReader::new(opened)),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}
