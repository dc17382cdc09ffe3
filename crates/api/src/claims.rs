//! Claims over FHIR and JSON. `POST /fhir/Claim` (and `POST /fhir/Claim/$submit`) at the
//! provider's node submits a Claim, adjudicated in the block that commits it; the answer is its
//! ClaimResponse. `ClaimResponse`, `ExplanationOfBenefit` and `Coverage` are read by id, and
//! `PaymentReconciliation` is searched by provider, payer and period, each by the parties who
//! may: the provider, the payer, the patient for their own, auditors. `/v1/claims` answers the
//! same in JSON, and a plan's published policy to anyone. Every other claims operation (publish
//! a policy, cover a member, decide, appeal) is a transaction sent to `/v1/txs`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use medledger_claims::{Date, Listing};
use medledger_crypto::{Hash, PublicKey};
use medledger_fhir::claim as render;
use medledger_fhir::{IssueType, SearchEntry};
use medledger_node::claims::Claims;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fhir::{Caller, FhirFailure, FhirResult, blocking, caller, fhir_json};
use crate::{ApiError, ApiResult, AppState};

pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <ClaimsDoc as utoipa::OpenApi>::openapi,
    consent: None,
    audit: None,
    fhir: Some(crate::FhirView {
        kinds: &[
            "Claim",
            "ClaimResponse",
            "ExplanationOfBenefit",
            "Coverage",
            "PaymentReconciliation",
        ],
        create: |state, caller, kind, operation, body| {
            Box::pin(create(state, caller, kind, operation, body))
        },
        read: |state, caller, kind, id| Box::pin(read(state, caller, kind, id)),
        search: |state, caller, kind, query| Box::pin(search(state, caller, kind, query)),
    }),
    fhir_source: None,
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(claim, list, plan))]
struct ClaimsDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/claims", get(list))
        .route("/v1/claims/plans/{plan}", get(plan))
        .route("/v1/claims/{id}", get(claim))
}

fn service(state: &AppState) -> Result<Claims, ApiError> {
    state.services.get::<Claims>().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_claims",
            "this node keeps no claims service",
        )
    })
}

fn not_supported(message: impl Into<String>) -> FhirFailure {
    FhirFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        IssueType::NotSupported,
        message,
    )
}

fn id_of(text: &str, kind: &str) -> FhirResult<Hash> {
    Hash::from_hex(text).map_err(|_| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("no {kind}/{text}"),
        )
    })
}

/// The Claim in a `$submit` body: a Claim, or a Bundle whose first entry is one.
fn submitted_claim(body: &[u8]) -> FhirResult<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            format!("not valid JSON: {error}"),
        )
    })?;
    if value["resourceType"] == "Bundle" {
        let claim = &value["entry"][0]["resource"];
        if claim["resourceType"] != "Claim" {
            return Err(FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Invalid,
                "the Bundle's first entry must be the Claim",
            ));
        }
        return Ok(serde_json::to_vec(claim).unwrap_or_default());
    }
    Ok(body.to_vec())
}

async fn create(
    state: AppState,
    caller: Caller,
    kind: String,
    operation: Option<String>,
    body: Bytes,
) -> FhirResult<Response> {
    match (kind.as_str(), operation.as_deref()) {
        ("Claim", None | Some("$submit")) => {}
        ("Claim", Some(other)) => {
            return Err(not_supported(format!(
                "Claim has no operation {other}; use $submit"
            )));
        }
        _ => {
            return Err(not_supported(format!(
                "{kind} is written by the ledger (adjudication, coverage, settlement), not posted"
            )));
        }
    }
    caller.check_replay(&state)?;
    let claims = service(&state)?;
    let bytes = submitted_claim(&body)?;
    let submitted = claims.submit(caller.key, &bytes).await?;
    let response = render::claim_response(&submitted.view.entry, &submitted.view.parties());
    let status = if operation.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut answer = fhir_json(status, &response);
    if let Ok(location) = format!("Claim/{}", submitted.view.entry.claim.id).parse() {
        answer.headers_mut().insert(header::LOCATION, location);
    }
    if let Ok(tx) = submitted.tx.to_string().parse() {
        answer.headers_mut().insert("x-transaction", tx);
    }
    Ok(answer)
}

async fn read(state: AppState, caller: Caller, kind: String, id: String) -> FhirResult<Response> {
    let claims = service(&state)?;
    let key = caller.key;
    let resource = match kind.as_str() {
        "Claim" | "ClaimResponse" | "ExplanationOfBenefit" => {
            let claim = id_of(&id, &kind)?;
            let view =
                blocking(move || Ok::<_, FhirFailure>(claims.claim_for(&key, &claim)?)).await?;
            match kind.as_str() {
                "Claim" if view.resource.is_null() => {
                    return Err(FhirFailure::new(
                        StatusCode::NOT_FOUND,
                        IssueType::NotFound,
                        format!(
                            "Claim/{id} is kept only at the provider's node, for the provider; read its ClaimResponse"
                        ),
                    ));
                }
                "Claim" => view.resource.clone(),
                "ClaimResponse" => render::claim_response(&view.entry, &view.parties()),
                _ => render::explanation_of_benefit(&view.entry, &view.parties()),
            }
        }
        "Coverage" => {
            let coverage = id_of(&id, &kind)?;
            let (found, today, patient) =
                blocking(move || Ok::<_, FhirFailure>(claims.coverage_for(&key, &coverage)?))
                    .await?;
            render::coverage_resource(&found, today, patient.as_deref())
        }
        _ => {
            return Err(not_supported(
                "PaymentReconciliation is searched: ?requestor=[org]&payment-issuer=[org]&created=ge[date]&created=lt[date]",
            ));
        }
    };
    Ok(fhir_json(StatusCode::OK, &resource))
}

/// `ge`/`lt` bounds of `created` as block milliseconds; a whole day, a year by default.
fn period(query: &[(String, String)]) -> FhirResult<(u64, u64)> {
    let mut from = 0u64;
    let mut to = u64::MAX;
    for (name, value) in query.iter().filter(|(name, _)| name == "created") {
        let (prefix, date) = value.split_at(value.len().min(2));
        let day: Date = date.parse().map_err(|error: String| {
            FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Invalid,
                format!("{name}: {error}"),
            )
        })?;
        let ms = u64::from(day.0) * 86_400_000;
        match prefix {
            "ge" => from = ms,
            "lt" => to = ms,
            _ => {
                return Err(FhirFailure::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Invalid,
                    "created takes ge[date] and lt[date]",
                ));
            }
        }
    }
    Ok((from, to))
}

fn searchset(resources: &[(String, Value)]) -> Response {
    let entries: Vec<SearchEntry<'_>> = resources
        .iter()
        .map(|(url, resource)| SearchEntry {
            full_url: url.clone(),
            resource: std::borrow::Cow::Owned(serde_json::to_vec(resource).unwrap_or_default()),
            include: false,
        })
        .collect();
    let bytes = medledger_fhir::searchset(&entries, entries.len(), &[]);
    let mut response = (StatusCode::OK, bytes).into_response();
    if let Ok(value) = "application/fhir+json".parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

async fn search(
    state: AppState,
    caller: Caller,
    kind: String,
    query: Vec<(String, String)>,
) -> FhirResult<Response> {
    let claims = service(&state)?;
    let key = caller.key;
    let param = |name: &str| {
        query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    match kind.as_str() {
        "PaymentReconciliation" => {
            let (Some(provider), Some(payer)) = (param("requestor"), param("payment-issuer"))
            else {
                return Err(FhirFailure::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Required,
                    "PaymentReconciliation is searched by requestor (the provider) and payment-issuer (the payer)",
                ));
            };
            let window = period(&query)?;
            let (p, q) = (provider.clone(), payer.clone());
            let (now, symbol, decimals, payments) =
                blocking(move || Ok::<_, FhirFailure>(claims.payments_for(&key, &p, &q, window)?))
                    .await?;
            let id = format!(
                "{provider}.{payer}.{}.{}",
                window.0,
                window.1.min(now.max(window.0))
            );
            let resource = render::payment_reconciliation(
                &id,
                &payer,
                &provider,
                (window.0, window.1.min(now)),
                &payments,
                now,
                &symbol,
                decimals,
            );
            Ok(searchset(&[(
                format!("PaymentReconciliation/{id}"),
                resource,
            )]))
        }
        "ExplanationOfBenefit" | "ClaimResponse" => {
            // A patient's own; a provider's by `requestor`; a payer's queue by `insurer`.
            let listing = match (param("requestor"), param("insurer")) {
                (Some(org), _) => Listing::Provider(org),
                (_, Some(org)) => Listing::Review(org),
                _ => Listing::Member(key),
            };
            let offset = param("_offset").and_then(|v| v.parse().ok()).unwrap_or(0);
            let count = param("_count").and_then(|v| v.parse().ok()).unwrap_or(100);
            let lister = claims.clone();
            let (_, _, entries) = blocking(move || {
                Ok::<_, FhirFailure>(lister.list_for(&key, &listing, offset, count)?)
            })
            .await?;
            let mut resources = Vec::with_capacity(entries.len());
            for entry in entries {
                let id = entry.claim.id;
                let viewer = claims.clone();
                let view =
                    blocking(move || Ok::<_, FhirFailure>(viewer.claim_for(&key, &id)?)).await?;
                let resource = if kind == "ClaimResponse" {
                    render::claim_response(&view.entry, &view.parties())
                } else {
                    render::explanation_of_benefit(&view.entry, &view.parties())
                };
                resources.push((format!("{kind}/{id}"), resource));
            }
            Ok(searchset(&resources))
        }
        _ => Err(not_supported(format!("{kind} is read by id"))),
    }
}

#[utoipa::path(get, path = "/v1/claims/{id}", tag = "claims", security(("medledger_signature" = [])),
    params(("id" = String, Path, description = "The claim's id, hex")),
    responses((status = 200, description = "The claim's adjudication: items, findings, status, outcome, totals, what was paid; the FHIR Claim itself at the provider's node, with whether it matches the chain's commitment"),
        (status = 403, description = "Not the provider, the payer, the patient or an auditor"), (status = 404, description = "No such claim")))]
async fn claim(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> FhirResult<Json<Value>> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let claims = service(&state)?;
    let id = id_of(&id, "Claim")?;
    let key = caller.key;
    let view = blocking(move || Ok::<_, FhirFailure>(claims.claim_for(&key, &id)?)).await?;
    let mut body = serde_json::to_value(&view).unwrap_or_default();
    body["claim_fhir"] = view.resource.clone();
    body["key"] = json!(format!("claim/{id}"));
    Ok(Json(body))
}

#[derive(Deserialize)]
struct ListQuery {
    provider: Option<String>,
    member: Option<String>,
    review: Option<String>,
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/v1/claims", tag = "claims", security(("medledger_signature" = [])),
    params(("provider" = Option<String>, Query, description = "A provider organisation's claims"), ("member" = Option<String>, Query, description = "A patient's claims, by their key"), ("review" = Option<String>, Query, description = "A payer's review queue (decided entries included)"), ("offset" = Option<u64>, Query), ("limit" = Option<u64>, Query, description = "At most 1,000")),
    responses((status = 200, description = "A page of claims, oldest first, and their total")))]
async fn list(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> FhirResult<Json<Value>> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let Query(query) = crate::parse_query(query)?;
    let listing = match (query.provider, query.member, query.review) {
        (Some(org), None, None) => Listing::Provider(org),
        (None, Some(member), None) => {
            Listing::Member(PublicKey::from_hex(&member).map_err(|error| {
                FhirFailure::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Invalid,
                    format!("member: {error}"),
                )
            })?)
        }
        (None, None, Some(org)) => Listing::Review(org),
        _ => {
            return Err(FhirFailure::new(
                StatusCode::BAD_REQUEST,
                IssueType::Required,
                "name exactly one of provider, member or review",
            ));
        }
    };
    let claims = service(&state)?;
    let key = caller.key;
    let limit = query.limit.unwrap_or(100);
    let offset = query.offset;
    let (height, total, entries) =
        blocking(move || Ok::<_, FhirFailure>(claims.list_for(&key, &listing, offset, limit)?))
            .await?;
    let claims: Vec<Value> = entries
        .iter()
        .map(|entry| {
            json!({
                "id": entry.claim.id,
                "status": entry.status,
                "outcome": entry.outcome().code(),
                "totals": entry.totals(),
                "paid": entry.paid,
                "findings": entry.findings,
            })
        })
        .collect();
    Ok(Json(
        json!({ "height": height, "total": total, "claims": claims }),
    ))
}

#[utoipa::path(get, path = "/v1/claims/plans/{plan}", tag = "claims",
    params(("plan" = String, Path)),
    responses((status = 200, description = "The plan's payer and versions, and its latest policy (the service rules are state entries claim-rule/{plan}/{version}/{code}, provable like any other)"), (status = 404, description = "No such plan")))]
async fn plan(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let node = state.node.clone();
    crate::blocking(move || {
        let (height, found) = node.read_head(|view| {
            let Some(plan) = medledger_claims::plan(view, &id)? else {
                return Ok(None);
            };
            let version = plan.versions.last().map_or(1, |(v, _)| *v);
            let policy = medledger_claims::policy(view, &id, version)?;
            Ok(Some(json!({ "plan": plan, "latest": policy })))
        })?;
        let found = found.map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?;
        match found {
            Some(value) => Ok(Json(json!({ "height": height, "entry": value }))),
            None => Err(ApiError::not_found("no such plan".to_string())),
        }
    })
    .await
}
