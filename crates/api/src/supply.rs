//! The supply chain over HTTP: verification of scanned packs, recall reports, traces and labels
//! under `/v1/supply`, and the EPCIS 2.0 capture and query interface under `/epcis`. Every
//! endpoint takes a signed request from an enrolled member; errors are the JSON error body, with
//! every schema reason listed for a refused EPCIS document.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medledger_crypto::PublicKey;
use medledger_node::ServiceError;
use medledger_node::supply::{EventQuery, Supply, parse_unit_code};
use medledger_supply::{Gtin, Item, Sscc};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::{ApiError, ApiResult, AppState, blocking};

/// The supply chain's part of the API.
pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <SupplyDoc as utoipa::OpenApi>::openapi,
    consent: None,
    audit: None,
    fhir: None,
    fhir_source: None,
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(verify, recall_report, trace, label, product, capture, events))]
struct SupplyDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/supply/verify", post(verify))
        .route("/v1/supply/recall-report", get(recall_report))
        .route("/v1/supply/trace", get(trace))
        .route("/v1/supply/label", get(label))
        .route("/v1/supply/products/{gtin}", get(product))
        .route("/epcis/capture", post(capture))
        .route("/epcis/events", get(events))
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        let (status, code) = match error {
            ServiceError::Node(node_error) => return ApiError::from(node_error),
            ServiceError::Refused { code, .. } => {
                return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, &code, message);
            }
            ServiceError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Gone(_) => (StatusCode::GONE, "gone"),
            ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ServiceError::InvalidDocument { .. } => (StatusCode::BAD_REQUEST, "invalid_document"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ServiceError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ServiceError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, message)
    }
}

fn supply(state: &AppState) -> ApiResult<Supply> {
    state.services.get::<Supply>().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_supply_service",
            "this node serves no supply-chain repository",
        )
    })
}

/// Checks the request's signature and that the signer is an enrolled, unrevoked member.
async fn signer(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<PublicKey> {
    let (key, authority, _) = crate::signed_member(state, method, uri, headers, body).await?;
    // Custody, locations and recalls are the trading partners' business (and auditors'), not a
    // patient's: patients verify a pack at the pharmacy through it, not through this API.
    if matches!(
        authority,
        medledger_ledger::Authority::Member {
            role: medledger_types::Role::Patient,
            ..
        }
    ) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "patients have no access to supply-chain records",
        ));
    }
    Ok(key)
}

/// What every signed GET here starts with: the signer checked, the query parsed, the service.
async fn signed_get<Q>(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: Result<Query<Q>, QueryRejection>,
) -> ApiResult<(Supply, Q)> {
    signer(state, method, uri, headers, b"").await?;
    let Query(query) =
        query.map_err(|error| ApiError::bad_request("malformed_query", error.body_text()))?;
    Ok((supply(state)?, query))
}

/// A scanned code to verify.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct VerifyRequest {
    /// A GS1 DataMatrix payload as scanned (GS separators, optional `]d2`), a bracketed element
    /// string, or a GS1 Digital Link URI.
    code: String,
}

#[utoipa::path(post, path = "/v1/supply/verify", request_body = VerifyRequest,
    security(("medledger_signature" = [])),
    responses(
        (status = 200, description = "`genuine`, or `suspect` with every reason that applies, judged at the head; for a patient, the verdict and the reasons' codes only"),
        (status = 400, description = "Not a GS1 code naming a serialised unit", body = crate::ErrorBody),
        (status = 401, description = "Unsigned, or not an enrolled member", body = crate::ErrorBody)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    // Verification is the hot path: one state read checks the verifier and the unit together.
    let signed = crate::signed_request(&state.node, &method, &uri, &headers, &body)?;
    let request: VerifyRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request("malformed_body", format!("body: {error}")))?;
    let supply = supply(&state)?;
    blocking(move || {
        let (height, verdict) = supply.verify(&signed.key, &request.code)?;
        let mut answer = serde_json::to_value(verdict).map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?;
        answer["height"] = json!(height);
        Ok(Json(answer))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct LotQuery {
    gtin: String,
    lot: String,
    /// The `next_batch` of the previous page.
    from_batch: Option<u32>,
}

#[utoipa::path(get, path = "/v1/supply/recall-report",
    params(("gtin" = String, Query, description = "GTIN of the product"), ("lot" = String, Query, description = "Lot (AI 10)"),
        ("from_batch" = Option<u32>, Query, description = "Continue from the previous page's next_batch (pages hold about 250,000 units)")),
    security(("medledger_signature" = [])),
    responses(
        (status = 200, description = "Every unit of the lot with its status, custodian, location and the containers around it"),
        (status = 404, description = "No such lot", body = crate::ErrorBody)))]
pub(crate) async fn recall_report(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<LotQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (supply, query) = signed_get(&state, &method, &uri, &headers, query).await?;
    let gtin = parse_gtin(&query.gtin)?;
    blocking(move || {
        let (height, report) =
            supply.recall_report(&gtin, &query.lot, query.from_batch.unwrap_or(0))?;
        Ok(Json(json!({"height": height, "report": report})))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct ItemQuery {
    /// A scanned code of a unit.
    code: Option<String>,
    /// Or a container's SSCC.
    sscc: Option<String>,
}

fn item_of(query: &ItemQuery) -> ApiResult<Item> {
    match (&query.code, &query.sscc) {
        (Some(code), None) => Ok(Item::Unit(parse_unit_code(code)?.0)),
        (None, Some(sscc)) => Sscc::parse(sscc)
            .map(Item::Container)
            .map_err(|error| ApiError::bad_request("invalid_sscc", error.to_string())),
        _ => Err(ApiError::bad_request(
            "malformed_query",
            "name exactly one of code= (a unit's GS1 code) or sscc=",
        )),
    }
}

fn parse_gtin(text: &str) -> ApiResult<Gtin> {
    Gtin::parse(text).map_err(|error| ApiError::bad_request("invalid_gtin", error.to_string()))
}

#[utoipa::path(get, path = "/v1/supply/trace",
    params(("code" = Option<String>, Query, description = "A unit's GS1 code"), ("sscc" = Option<String>, Query, description = "A container's SSCC")),
    security(("medledger_signature" = [])),
    responses(
        (status = 200, description = "The custody timeline, each step with its block height, transaction and operation; prove the item's state entry with /v1/state/{key}"),
        (status = 404, description = "Not on the chain", body = crate::ErrorBody)))]
pub(crate) async fn trace(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ItemQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (supply, query) = signed_get(&state, &method, &uri, &headers, query).await?;
    let item = item_of(&query)?;
    blocking(move || {
        let (height, steps) = supply.trace(&item)?;
        let state_key = String::from_utf8_lossy(&match &item {
            Item::Unit(id) => medledger_supply::key_unit(id),
            Item::Container(sscc) => medledger_supply::key_container(sscc),
        })
        .into_owned();
        Ok(Json(
            json!({"height": height, "item": item, "state_key": state_key, "steps": steps}),
        ))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct LabelQuery {
    code: String,
    /// `datamatrix` (default) or `qr` (of the Digital Link).
    symbol: Option<String>,
    /// `png` (default) or `svg`.
    format: Option<String>,
}

#[utoipa::path(get, path = "/v1/supply/label",
    params(("code" = String, Query, description = "A unit's GS1 code"),
        ("symbol" = Option<String>, Query, description = "datamatrix (GS1 DataMatrix of the element string) or qr (QR of the GS1 Digital Link)"),
        ("format" = Option<String>, Query, description = "png or svg")),
    security(("medledger_signature" = [])),
    responses((status = 200, description = "The label image"), (status = 404, description = "Unit not on the chain", body = crate::ErrorBody)))]
pub(crate) async fn label(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<LabelQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (supply, query) = signed_get(&state, &method, &uri, &headers, query).await?;
    let (id, _) = parse_unit_code(&query.code)?;
    blocking(move || {
        // The label carries what the chain holds for the unit, not what the request claimed.
        let unit = supply.unit(&id)?;
        let expiry = format!("{:06}", unit.expiry % 1_000_000);
        let element_string = medledger_gs1::ElementString {
            ais: vec![
                ("01".into(), id.gtin.to_string()),
                ("17".into(), expiry),
                ("10".into(), unit.lot.clone()),
                ("21".into(), id.serial.clone()),
            ],
        };
        let symbol = match query.symbol.as_deref().unwrap_or("datamatrix") {
            "datamatrix" => medledger_label::gs1_datamatrix(&element_string.to_scanner()),
            "qr" => {
                let uri = element_string
                    .to_digital_link("https://id.gs1.org")
                    .map_err(|error| ApiError::bad_request("invalid", error.to_string()))?;
                medledger_label::qr(&uri)
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_symbol",
                    format!("symbol {other:?} is not datamatrix or qr"),
                ));
            }
        }
        .map_err(|error| ApiError::bad_request("label_refused", error.to_string()))?;
        match query.format.as_deref().unwrap_or("png") {
            "png" => {
                let png = symbol.to_png(8, 2).map_err(|error| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        error.to_string(),
                    )
                })?;
                Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
            }
            "svg" => Ok((
                [(header::CONTENT_TYPE, "image/svg+xml")],
                symbol.to_svg(8, 2),
            )
                .into_response()),
            other => Err(ApiError::bad_request(
                "invalid_format",
                format!("format {other:?} is not png or svg"),
            )),
        }
    })
    .await
}

#[utoipa::path(get, path = "/v1/supply/products/{gtin}", params(("gtin" = String, Path, description = "GTIN")),
    security(("medledger_signature" = [])),
    responses((status = 200, description = "The product, its manufacturer and storage range"), (status = 404, description = "Not registered", body = crate::ErrorBody)))]
pub(crate) async fn product(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    axum::extract::Path(gtin): axum::extract::Path<String>,
) -> ApiResult<Json<Value>> {
    signer(&state, &method, &uri, &headers, b"").await?;
    let gtin = parse_gtin(&gtin)?;
    let supply = supply(&state)?;
    blocking(move || Ok(Json(json!(supply.product(&gtin)?)))).await
}

#[utoipa::path(post, path = "/epcis/capture", request_body(content = String, content_type = "application/ld+json", description = "An EPCIS 2.0 EPCISDocument (JSON-LD)"),
    security(("medledger_signature" = [])),
    responses(
        (status = 201, description = "Captured: each event's GS1 event hash, the ledger steps it maps to, and whether it was already on record"),
        (status = 400, description = "Not valid against the EPCIS 2.0 schema, with every reason; nothing stored", body = crate::ErrorBody),
        (status = 403, description = "The capturer is not a member of this node's organisation", body = crate::ErrorBody),
        (status = 422, description = "The ledger refused a step (e.g. shipping goods not in the capturer's custody); nothing of that transaction stored", body = crate::ErrorBody)))]
pub(crate) async fn capture(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result: ApiResult<Response> = async {
        let key = signer(&state, &method, &uri, &headers, &body).await?;
        let supply = supply(&state)?;
        match supply.capture(key, &body).await {
            Ok(report) => Ok((StatusCode::CREATED, Json(json!(report))).into_response()),
            Err(ServiceError::InvalidDocument { message, reasons }) => Ok((
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"code": "epcis_invalid", "message": message, "reasons": reasons}})),
            )
                .into_response()),
            Err(error) => Err(error.into()),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(rename = "MATCH_epc")]
    match_epc: Option<String>,
    #[serde(rename = "EQ_bizStep")]
    eq_biz_step: Option<String>,
    #[serde(rename = "GE_eventTime")]
    ge_event_time: Option<String>,
    #[serde(rename = "LT_eventTime")]
    lt_event_time: Option<String>,
    #[serde(rename = "perPage")]
    per_page: Option<usize>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<u64>,
}

fn event_time(name: &str, text: &Option<String>) -> ApiResult<Option<i64>> {
    text.as_deref()
        .map(|text| {
            medledger_epcis::parse_time_ms(text).ok_or_else(|| {
                ApiError::bad_request(
                    "malformed_query",
                    format!("{name}: {text:?} is not an RFC 3339 date-time"),
                )
            })
        })
        .transpose()
}

#[utoipa::path(get, path = "/epcis/events",
    params(("MATCH_epc" = Option<String>, Query, description = "An EPC URN or Digital Link"),
        ("EQ_bizStep" = Option<String>, Query, description = "A CBV business step (short name or URI)"),
        ("GE_eventTime" = Option<String>, Query, description = "From this time (RFC 3339)"),
        ("LT_eventTime" = Option<String>, Query, description = "Before this time (RFC 3339)"),
        ("perPage" = Option<usize>, Query, description = "At most 1000"),
        ("nextPageToken" = Option<u64>, Query, description = "From the previous page's Link header")),
    security(("medledger_signature" = [])),
    responses((status = 200, description = "An EPCISQueryDocument (application/ld+json) of the matching events, each exactly as captured")))]
pub(crate) async fn events(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let (supply, query) = signed_get(&state, &method, &uri, &headers, query).await?;
    let request = EventQuery {
        epc: query.match_epc.clone(),
        biz_step: query.eq_biz_step.clone(),
        from_ms: event_time("GE_eventTime", &query.ge_event_time)?,
        until_ms: event_time("LT_eventTime", &query.lt_event_time)?,
        per_page: query.per_page.unwrap_or(100),
        after: query.next_page_token,
    };
    // Answer from an index that covers at least the head when the request arrived.
    let head = state.node.status()?.height;
    supply.indexed(head).await?;
    blocking(move || {
        let page = supply.events(&request)?;
        let document = medledger_epcis::query_document(&page.events, "medledger-events", None);
        let mut response = (
            [(header::CONTENT_TYPE, "application/ld+json")],
            Json(document),
        )
            .into_response();
        // The next page keeps this request's filters.
        let filters: Vec<&str> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|part| !part.is_empty() && !part.starts_with("nextPageToken="))
            .collect();
        if let Some(next) = page.next
            && let Ok(value) = format!(
                "</epcis/events?{}nextPageToken={next}>; rel=\"next\"",
                filters
                    .iter()
                    .map(|part| format!("{part}&"))
                    .collect::<String>()
            )
            .parse()
        {
            response.headers_mut().insert(header::LINK, value);
        }
        Ok(response)
    })
    .await
}
