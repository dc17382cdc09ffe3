//! `/v1/monitor`: device batches in, and readings out under consent.
//!
//! - `POST /v1/monitor/batches`: a device's signed batch, in the compact binary encoding
//!   (`application/octet-stream`: borsh, 17 bytes a reading, for devices on thin links and for
//!   the rate a fleet sends at) or in JSON (`application/json`, the same fields, for people and
//!   tools). The batch signs itself, so the request carries no other signature. Acknowledged
//!   once durable at this node.
//! - `GET /v1/monitor/devices/{device}`: a device's pairing and what its anchors covered.
//! - `GET /v1/monitor/readings?patient=&code=&from=&to=&limit=` and
//!   `GET /v1/monitor/proofs/{device}/{seq}/{index}?patient=`: signed requests naming their
//!   purpose (`X-Purpose-Of-Use`), decided by the patient's consent over the device's stream
//!   record, the decision committed as an access event before anything leaves the node.
//! - `POST /v1/monitor/anchor`: the organisation's root key or node anchors what is pending now.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use medledger_crypto::PublicKey;
use medledger_monitor::Code;
use medledger_monitor::readings::SignedBatch;
use medledger_node::monitor::Monitor;
use medledger_node::records::{ReadRequest, Records};
use medledger_records::Purpose;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState, blocking};

/// The most readings one page lists.
pub const READINGS_PAGE_MAX: usize = 5_000;

pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <MonitorDoc as utoipa::OpenApi>::openapi,
    consent: None,
    audit: None,
    fhir: None,
    fhir_source: Some(crate::FhirSource {
        kinds: &["Observation", "Device"],
        read: |state, caller, kind, id| {
            Box::pin(async move {
                match kind.as_str() {
                    "Device" => fhir_device_read(&state, &caller, &id).await,
                    _ => fhir_read(&state, &caller, &id).await,
                }
            })
        },
        search: |state, caller, search| {
            Box::pin(async move {
                match search.kind.as_str() {
                    "Device" => fhir_device_search(state, caller, search).await,
                    _ => fhir_search(state, caller, search).await,
                }
            })
        },
    }),
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    ingest,
    device,
    readings,
    proof,
    anchor,
    alerts,
    add_webhook,
    list_webhooks,
    remove_webhook,
    drafts
))]
struct MonitorDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/monitor/batches", post(ingest))
        .route("/v1/monitor/devices/{device}", get(device))
        .route("/v1/monitor/readings", get(readings))
        .route("/v1/monitor/proofs/{device}/{seq}/{index}", get(proof))
        .route("/v1/monitor/anchor", post(anchor))
        .route("/v1/monitor/alerts", get(alerts))
        .route("/v1/monitor/webhooks", post(add_webhook).get(list_webhooks))
        .route("/v1/monitor/adverse-event-drafts", get(drafts))
        .route(
            "/v1/monitor/webhooks/{id}",
            axum::routing::delete(remove_webhook),
        )
}

fn monitor(state: &AppState) -> ApiResult<Monitor> {
    crate::service(state, "monitoring")
}

fn records(state: &AppState) -> ApiResult<Records> {
    crate::service(state, "records")
}

fn key(what: &str, text: &str) -> ApiResult<PublicKey> {
    PublicKey::from_hex(text)
        .map_err(|error| ApiError::bad_request("malformed_key", format!("{what}: {error}")))
}

#[utoipa::path(post, path = "/v1/monitor/batches", tag = "monitor",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "A signed batch, borsh-encoded (or the same as JSON with Content-Type: application/json)"),
    responses((status = 200, description = "Kept durably: device, seq, readings, missing_batches"),
        (status = 400, description = "Malformed, badly signed, implausible, out of order or off the node's clock"),
        (status = 403, description = "Not an enrolled device, revoked, unpaired, or reporting to another organisation"),
        (status = 409, description = "A sequence number already received or earlier")))]
async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body.map_err(|rejection| {
        ApiError::new(rejection.status(), "bad_body", rejection.body_text())
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let batch = if json {
        SignedBatch::from_json(&body)
    } else {
        SignedBatch::from_bytes(&body)
    }
    .map_err(|error| ApiError::bad_request("malformed_batch", error.to_string()))?;
    let ingested = monitor(&state)?
        .ingest(batch, crate::fhir::now_ms())
        .await?;
    Ok(Json(json!(ingested)))
}

#[utoipa::path(get, path = "/v1/monitor/devices/{device}", tag = "monitor",
    params(("device" = String, Path, description = "The device's public key, hex")),
    responses((status = 200, description = "The pairing (patient id, organisation, the next batch anchors expect, readings and missing batches anchored) and the next batch this node takes"),
        (status = 404, description = "Never paired")))]
async fn device(
    State(state): State<AppState>,
    Path(device): Path<String>,
) -> ApiResult<Json<Value>> {
    let device = key("the device", &device)?;
    let node = state.node.clone();
    let monitor = monitor(&state)?;
    blocking(move || {
        let received = monitor.next_seq(&device)?;
        let (height, found) =
            node.read_head(|view| Ok(medledger_monitor::pairing(view, &device)?))?;
        let found = found.map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            )
        })?;
        match found {
            Some(pairing) => Ok(Json(json!({
                "height": height,
                "entry": pairing,
                "received": { "next_seq": received },
            }))),
            None => Err(ApiError::not_found(format!(
                "device {device} was never paired"
            ))),
        }
    })
    .await
}

/// A signed reader naming a purpose, and the patient named by FHIR id.
async fn reader(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    patient_fhir_id: &str,
) -> ApiResult<ReadRequest> {
    let signed = crate::signed_request(&state.node, method, uri, headers, b"")?;
    let purpose: Purpose = signed
        .access
        .purpose
        .as_deref()
        .ok_or_else(|| {
            ApiError::bad_request(
                "purpose_required",
                "a read of readings names its purpose of use (X-Purpose-Of-Use, e.g. TREAT)",
            )
        })?
        .parse()
        .map_err(|error: String| ApiError::bad_request("malformed_purpose", error))?;
    let records = records(state)?;
    let id = patient_fhir_id.to_string();
    let patient = blocking(move || Ok(records.patient_by_fhir(&id)?))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("Patient/{patient_fhir_id} is not held here"))
        })?;
    Ok(ReadRequest {
        request: signed.request,
        reader: signed.key,
        patient,
        records: Vec::new(),
        purpose,
        break_glass: signed.access.break_glass,
        wrap_to: None,
    })
}

fn denied(event: &medledger_records::AccessEvent) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "no_consent",
        format!(
            "the patient's consent does not allow this read; the denial is recorded (transaction {})",
            event.tx
        ),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingsQuery {
    /// The Patient's logical id at this node.
    patient: String,
    /// A LOINC code; every code when absent.
    code: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    from: Option<u64>,
    /// Milliseconds since the epoch, exclusive.
    to: Option<u64>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/monitor/readings", tag = "monitor", security(("medledger_signature" = [])),
    params(("patient" = String, Query), ("code" = Option<String>, Query, description = "LOINC"), ("from" = Option<u64>, Query), ("to" = Option<u64>, Query), ("limit" = Option<usize>, Query, description = "At most 5,000")),
    responses((status = 200, description = "The readings the patient's consent allows, oldest first, with the access event"),
        (status = 403, description = "Consent denies it; the denial is recorded on chain")))]
async fn readings(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<ReadingsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = crate::parse_query(query)?;
    let code = match query.code.as_deref() {
        Some(text) => Some(Code::from_loinc(text).ok_or_else(|| {
            ApiError::bad_request(
                "unknown_code",
                format!("{text} is not a monitored LOINC code"),
            )
        })?),
        None => None,
    };
    let request = reader(&state, &method, &uri, &headers, &query.patient).await?;
    let limit = query.limit.unwrap_or(1_000).clamp(1, READINGS_PAGE_MAX);
    let period = (query.from.unwrap_or(0), query.to.unwrap_or(u64::MAX));
    let filter = medledger_node::monitor::ReadingFilter {
        code,
        devices: None,
        period,
    };
    let (event, total, released) = monitor(&state)?.read(request, &filter, 0, limit).await?;
    if !event.allowed() {
        return Err(denied(&event));
    }
    let readings: Vec<Value> = released
        .iter()
        .map(|kept| {
            json!({
                "device": kept.device,
                "seq": kept.seq,
                "index": kept.index,
                "code": kept.reading.code,
                "unit": kept.reading.code.unit(),
                "value": kept.reading.code.value_text(kept.reading.value),
                "time_ms": kept.reading.time_ms,
                "anchor": kept.anchor,
            })
        })
        .collect();
    Ok(Json(
        json!({ "access_event": event.tx, "total": total, "readings": readings }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofQuery {
    patient: String,
}

#[utoipa::path(get, path = "/v1/monitor/proofs/{device}/{seq}/{index}", tag = "monitor", security(("medledger_signature" = [])),
    params(("device" = String, Path), ("seq" = u64, Path), ("index" = u16, Path), ("patient" = String, Query)),
    responses((status = 200, description = "The reading and its Merkle proof, with the state key of its anchor (prove it with /v1/state/{key}?proof=true)"),
        (status = 202, description = "Kept, not anchored yet"),
        (status = 403, description = "Consent denies it; the denial is recorded"),
        (status = 409, description = "The kept reading was changed: it no longer matches what was anchored")))]
async fn proof(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((device, seq, index)): Path<(String, u64, u16)>,
    query: Result<Query<ProofQuery>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let Query(query) = crate::parse_query(query)?;
    let device = key("the device", &device)?;
    let request = reader(&state, &method, &uri, &headers, &query.patient).await?;
    let (event, proof) = monitor(&state)?
        .read_proof(request, &device, seq, index)
        .await?;
    if !event.allowed() {
        return Err(denied(&event));
    }
    Ok(match proof {
        Some(proof) => Json(json!({
            "access_event": event.tx,
            "anchor_key": String::from_utf8_lossy(&medledger_monitor::key_anchor(&proof.org, proof.anchor)),
            "proof": proof,
        }))
        .into_response(),
        None => (
            StatusCode::ACCEPTED,
            Json(json!({ "access_event": event.tx, "anchored": false })),
        )
            .into_response(),
    })
}

#[utoipa::path(get, path = "/v1/monitor/alerts", tag = "monitor", security(("medledger_signature" = [])),
    params(("after" = Option<u64>, Query, description = "Sequence number to start from (default 0); Last-Event-ID resumes after the last alert received"),
        ("follow" = Option<bool>, Query, description = "false: one JSON page instead of a stream")),
    responses((status = 200, description = "text/event-stream of this organisation's alert feed as the signer may receive it (its care team and auditors: all; a patient: their own): each change (event `raised`, `escalated` or `acknowledged`) with its feed sequence number as the event id, as its block commits, and the alert as it stands (the patient, the rule, the device and the times, never a value)"),
        (status = 403, description = "Neither the organisation's people nor a patient")))]
async fn alerts(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<crate::feed::AlertsQuery>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    let monitor = monitor(&state)?;
    crate::feed::alerts(&state, monitor, (&method, &uri, &headers), query).await
}

#[utoipa::path(get, path = "/v1/monitor/adverse-event-drafts", tag = "monitor", security(("medledger_signature" = [])),
    responses((status = 200, description = "This organisation's adverse-event drafts: open alerts of a trial's monitored threshold (rule `trial:<study>:<index>`) for a participant on study here, not yet reported; each with its id, study, subject, threshold and alert. The site confirms one by POSTing a FHIR AdverseEvent whose identifier is {system: urn:medledger:adverse-event-draft, value: <id>}; acknowledging the alert dismisses it"),
        (status = 403, description = "Not this organisation's practitioners, node or root key")))]
async fn drafts(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (_, authority, _) = crate::signed_member(&state, &method, &uri, &headers, b"").await?;
    let monitor = monitor(&state)?;
    let drafts = blocking(move || Ok(monitor.drafts(&authority)?)).await?;
    Ok(Json(json!({ "drafts": drafts })))
}

#[utoipa::path(post, path = "/v1/monitor/webhooks", tag = "monitor", security(("medledger_signature" = [])),
    request_body(content = Object, description = r#"{"url": "https://...", "after"?: <feed sequence number>}"#),
    responses((status = 201, description = "The webhook: the node POSTs each change of the alert feed the signer may receive (as the stream's events) to the URL, in order, signed by the node (X-Medledger-Signature over \"medledger/monitor-alert-webhook/v1\" and the body, X-Medledger-Node, X-Medledger-Alert-Seq), retrying until a 2xx answer"),
        (status = 403, description = "The signer is not a member of this node's organisation")))]
async fn add_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::response::Response> {
    let monitor = monitor(&state)?;
    crate::feed::add_webhook(&state, monitor, (&method, &uri, &headers), body).await
}

#[utoipa::path(get, path = "/v1/monitor/webhooks", tag = "monitor", security(("medledger_signature" = [])),
    responses((status = 200, description = "The signer's monitoring webhooks at this node, with their cursors and the latest failure")))]
async fn list_webhooks(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let monitor = monitor(&state)?;
    crate::feed::list_webhooks(&state, monitor, (&method, &uri, &headers)).await
}

#[utoipa::path(delete, path = "/v1/monitor/webhooks/{id}", tag = "monitor", security(("medledger_signature" = [])),
    params(("id" = String, Path, description = "Webhook id, hex")),
    responses((status = 204, description = "Removed; delivery stops"), (status = 404, description = "Not a webhook of the signer's")))]
async fn remove_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let monitor = monitor(&state)?;
    crate::feed::remove_webhook(&state, monitor, (&method, &uri, &headers), &id).await
}

#[utoipa::path(post, path = "/v1/monitor/anchor", tag = "monitor", security(("medledger_signature" = [])),
    responses((status = 200, description = "The anchor committed, or null when nothing was pending"),
        (status = 403, description = "Not this organisation's root key or node")))]
async fn anchor(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let (_, authority, _) = crate::signed_member(&state, &method, &uri, &headers, b"").await?;
    let monitor = monitor(&state)?;
    let org = monitor.org()?;
    if medledger_module::custodian_of(&authority) != Some(org.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("only {org}'s root key or node anchors its readings"),
        ));
    }
    let anchored = monitor.anchor_now().await?;
    Ok(Json(match anchored {
        Some(anchored) => json!({ "anchored": anchored }),
        None => json!({
            "anchored": null,
            "note": "nothing was pending: every batch this node received is anchored",
        }),
    }))
}

/// A patient's device readings in a FHIR Observation search (the records module's search hands
/// this source its parsed query): the readings the caller's consent allows (previewed over each
/// device's stream record), narrowed by the patient index on code and date, then matched by the
/// search's own filters (code, category, status, date with any prefix, device, `_id`) exactly
/// as records are, in time order (newest first under `_sort=-date` or `-_lastUpdated`). The page
/// is released through [`Monitor::release`], its access event committed first. `_lastUpdated`
/// is not defined for readings: a search with it gets none.
async fn fhir_search(
    state: AppState,
    caller: crate::fhir::Caller,
    search: crate::SourceSearch,
) -> crate::fhir::FhirResult<crate::SourcePage> {
    use crate::fhir::FhirFailure;
    use medledger_fhir::search::{Prefix, SearchValue, SortField};
    let query = &search.query;
    if search.kind != "Observation" || !query.last_updated.is_empty() {
        return Ok(crate::SourcePage::default());
    }
    let service = monitor(&state).map_err(FhirFailure::from)?;
    let purpose = caller.purpose()?;
    let (reader, patient, break_glass) = (caller.key, search.patient, caller.access.break_glass);
    let previewer = service.clone();
    let (mut devices, withheld) = blocking(move || {
        Ok(previewer.permitted_devices(&reader, &patient, purpose, break_glass)?)
    })
    .await
    .map_err(FhirFailure::from)?;
    // Narrowing by the index: one code, a period, the devices named; the filters decide.
    let mut filter = medledger_node::monitor::ReadingFilter {
        code: None,
        devices: None,
        period: (0, u64::MAX),
    };
    for wanted in &query.filters {
        match (wanted.name.as_str(), wanted.values.as_slice()) {
            (
                "code",
                [
                    SearchValue::Token {
                        system,
                        code: Some(code),
                    },
                ],
            ) if system
                .as_deref()
                .is_none_or(|system| system == "http://loinc.org") =>
            {
                let Some(code) = Code::from_loinc(code) else {
                    return Ok(crate::SourcePage::default());
                };
                filter.code = Some(code);
            }
            ("device", values) => {
                let named: std::collections::BTreeSet<PublicKey> = values
                    .iter()
                    .filter_map(|value| match value {
                        SearchValue::Reference(text) => {
                            PublicKey::from_hex(text.strip_prefix("Device/").unwrap_or(text)).ok()
                        }
                        _ => None,
                    })
                    .collect();
                devices.retain(|device| named.contains(device));
            }
            ("date", [SearchValue::Date { prefix, range }]) => {
                let start = u64::try_from(range.start_ms.max(0)).unwrap_or(0);
                let end = u64::try_from(range.end_ms.max(0)).unwrap_or(0);
                match prefix {
                    Prefix::Ge | Prefix::Gt | Prefix::Sa => {
                        filter.period.0 = filter.period.0.max(start)
                    }
                    Prefix::Le | Prefix::Lt | Prefix::Eb => {
                        filter.period.1 = filter.period.1.min(end.saturating_add(1));
                    }
                    Prefix::Eq => {
                        filter.period.0 = filter.period.0.max(start);
                        filter.period.1 = filter.period.1.min(end.saturating_add(1));
                    }
                    Prefix::Ne | Prefix::Ap => {}
                }
            }
            _ => {}
        }
    }
    filter.devices = Some(devices);
    let (filters, ids) = (query.filters.clone(), query.ids.clone());
    let fhir_id = search.patient_fhir_id.clone();
    let selector = service.clone();
    let mut found = blocking(move || {
        Ok(selector.select(&patient, &filter, |found| {
            let id = reading_id(found.device, found.seq, found.index);
            if !ids.is_empty() && !ids.contains(&id) {
                return false;
            }
            // Matching reads no value: the filters are on code, category, status, date and
            // device, which the index holds.
            filters.is_empty()
                || medledger_fhir::search::matches(
                    "Observation",
                    &skeleton(found, &id, &fhir_id),
                    &filters,
                )
        })?)
    })
    .await
    .map_err(FhirFailure::from)?;
    if query.sort.first().is_some_and(|sort| {
        sort.descending && matches!(sort.field, SortField::Date | SortField::LastUpdated)
    }) {
        found.reverse();
    }
    let (total, page) = search.page(found);
    if page.is_empty() {
        return Ok(crate::SourcePage {
            total,
            withheld,
            ..Default::default()
        });
    }
    let request = source_request(&caller, &search, purpose);
    let (event, released) = service.release(request, &page).await?;
    // Streams consent refused between the preview and the decision count as withheld records.
    let asked: std::collections::BTreeSet<PublicKey> =
        page.iter().map(|found| found.device).collect();
    let allowed: std::collections::BTreeSet<PublicKey> =
        released.iter().map(|kept| kept.device).collect();
    let withheld = withheld + asked.difference(&allowed).count();
    let entries = released
        .iter()
        .map(|kept| {
            let id = reading_id(kept.device, kept.seq, kept.index);
            let observation = observation_of(kept, &id, &search.patient_fhir_id);
            (
                format!("{}/fhir/Observation/{id}", search.base),
                serde_json::to_vec(&observation).unwrap_or_default(),
            )
        })
        .collect();
    Ok(crate::SourcePage {
        total,
        withheld,
        entries,
        event: Some(event.tx),
    })
}

/// The read of a source's page in a search. Its access event takes an id derived from the
/// request's: the records of the same search take the request's own.
fn source_request(
    caller: &crate::fhir::Caller,
    search: &crate::SourceSearch,
    purpose: medledger_records::Purpose,
) -> ReadRequest {
    ReadRequest {
        request: medledger_crypto::hash_tagged(
            b"medledger/fhir-source/monitor",
            &[&caller.request.0],
        ),
        reader: caller.key,
        patient: search.patient,
        records: Vec::new(),
        purpose,
        break_glass: caller.access.break_glass,
        wrap_to: None,
    }
}

/// A paired device of `patient` (FHIR id) as a FHIR Device.
fn device_of(pairing: &medledger_monitor::Pairing, patient: &str) -> serde_json::Value {
    let reference = format!("Patient/{patient}");
    medledger_fhir::paired_device(&medledger_fhir::PairedDevice {
        key: &pairing.device.to_hex(),
        owner: &pairing.org,
        patient: pairing.active().then_some(reference.as_str()),
    })
}

fn fhir_denied(event: &medledger_crypto::Hash) -> crate::fhir::FhirFailure {
    crate::fhir::FhirFailure::new(
        StatusCode::FORBIDDEN,
        medledger_fhir::IssueType::Forbidden,
        format!(
            "the patient's consent does not allow this read; the denial is recorded (transaction {event})"
        ),
    )
}

/// `GET /fhir/Device/<key>`: a device paired at this organisation, under the patient's consent
/// over its readings (the access event first); `None` when the id is not a device key this node
/// knows, or a record holds it.
async fn fhir_device_read(
    state: &AppState,
    caller: &crate::fhir::Caller,
    id: &str,
) -> crate::fhir::FhirResult<Option<axum::response::Response>> {
    use crate::fhir::FhirFailure;
    let Ok(device) = PublicKey::from_hex(id) else {
        return Ok(None);
    };
    let records = records(state).map_err(FhirFailure::from)?;
    let service = monitor(state).map_err(FhirFailure::from)?;
    let (finder, wanted) = (records.clone(), id.to_string());
    let lookup = service.clone();
    let found = blocking(move || {
        if finder.record_by_fhir("Device", &wanted)?.is_some() {
            return Ok(None);
        }
        let Some(pairing) = lookup.pairing(&device)? else {
            return Ok(None);
        };
        if pairing.org != lookup.org()? {
            return Ok(None);
        }
        Ok(finder
            .patient_fhir_id(&pairing.patient)?
            .map(|fhir_id| (pairing, fhir_id)))
    })
    .await
    .map_err(FhirFailure::from)?;
    let Some((pairing, fhir_id)) = found else {
        return Ok(None);
    };
    caller.may("Device", crate::smart::Action::Read, Some(&fhir_id))?;
    let request = ReadRequest {
        request: caller.request,
        reader: caller.key,
        patient: pairing.patient,
        records: Vec::new(),
        purpose: caller.purpose()?,
        break_glass: caller.access.break_glass,
        wrap_to: None,
    };
    let (event, allowed) = service.decide_devices(request, &[device]).await?;
    if !allowed.contains(&device) {
        return Err(fhir_denied(&event.tx));
    }
    let mut response = crate::fhir::fhir_json(StatusCode::OK, &device_of(&pairing, &fhir_id));
    crate::fhir::add_event_header(&mut response, &event.tx);
    Ok(Some(response))
}

/// The patient's paired devices at this organisation in a FHIR Device search, after any Device
/// records: those the patient's consent over their readings allows, matched by the search's
/// filters, the page's access event committed first.
async fn fhir_device_search(
    state: AppState,
    caller: crate::fhir::Caller,
    search: crate::SourceSearch,
) -> crate::fhir::FhirResult<crate::SourcePage> {
    use crate::fhir::FhirFailure;
    let query = &search.query;
    if !query.last_updated.is_empty() {
        return Ok(crate::SourcePage::default());
    }
    let service = monitor(&state).map_err(FhirFailure::from)?;
    let purpose = caller.purpose()?;
    let (reader, patient, break_glass) = (caller.key, search.patient, caller.access.break_glass);
    let lookup = service.clone();
    let (pairings, withheld) = blocking(move || {
        let org = lookup.org()?;
        let (permitted, withheld) =
            lookup.permitted_devices(&reader, &patient, purpose, break_glass)?;
        let pairings: Vec<_> = lookup
            .pairings_of(&patient)?
            .into_iter()
            .filter(|pairing| {
                pairing.org == org
                    && pairing.patient == patient
                    && permitted.contains(&pairing.device)
            })
            .collect();
        Ok((pairings, withheld))
    })
    .await
    .map_err(FhirFailure::from)?;
    let matched: Vec<(medledger_monitor::Pairing, serde_json::Value)> = pairings
        .into_iter()
        .map(|pairing| {
            let resource = device_of(&pairing, &search.patient_fhir_id);
            (pairing, resource)
        })
        .filter(|(pairing, resource)| {
            (query.ids.is_empty() || query.ids.contains(&pairing.device.to_hex()))
                && medledger_fhir::search::matches("Device", resource, &query.filters)
        })
        .collect();
    let (total, page) = search.page(matched);
    if page.is_empty() {
        return Ok(crate::SourcePage {
            total,
            withheld,
            ..Default::default()
        });
    }
    let request = source_request(&caller, &search, purpose);
    let devices: Vec<PublicKey> = page.iter().map(|(pairing, _)| pairing.device).collect();
    let (event, allowed) = service.decide_devices(request, &devices).await?;
    // Devices consent refused between the preview and the decision count as withheld.
    let withheld = withheld
        + devices
            .iter()
            .filter(|device| !allowed.contains(device))
            .count();
    let entries = page
        .iter()
        .filter(|(pairing, _)| allowed.contains(&pairing.device))
        .map(|(pairing, resource)| {
            (
                format!("{}/fhir/Device/{}", search.base, pairing.device),
                serde_json::to_vec(resource).unwrap_or_default(),
            )
        })
        .collect();
    Ok(crate::SourcePage {
        total,
        withheld,
        entries,
        event: Some(event.tx),
    })
}

/// A reading as its Observation looks to a search's filters, without its value.
fn skeleton(
    found: &medledger_node::monitor::ReadingRef,
    id: &str,
    patient: &str,
) -> serde_json::Value {
    medledger_fhir::device_observation(&medledger_fhir::DeviceReading {
        id,
        patient: &format!("Patient/{patient}"),
        device: &format!("Device/{}", found.device),
        loinc: found.code.loinc(),
        display: found.code.display(),
        value: "null",
        unit: found.code.unit(),
        time_ms: found.time_ms,
    })
}

/// What a reading's FHIR id starts with: `rpm-<first 16 hex of the device>-<batch>-<index>`.
const READING_ID_PREFIX: &str = "rpm-";

fn reading_id(device: PublicKey, seq: u64, index: u16) -> String {
    format!(
        "{READING_ID_PREFIX}{}-{seq}-{index}",
        &device.to_hex()[..16]
    )
}

/// The device, batch and index a reading's FHIR id names.
fn parse_reading_id(id: &str) -> Option<([u8; 8], u64, u16)> {
    let mut parts = id.strip_prefix(READING_ID_PREFIX)?.split('-');
    let prefix: [u8; 8] = hex::decode(parts.next()?).ok()?.try_into().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((prefix, seq, index))
}

/// A kept reading as a PHD Observation of `Patient/<patient>`.
fn observation_of(
    kept: &medledger_node::monitor::KeptReading,
    id: &str,
    patient: &str,
) -> serde_json::Value {
    let code = kept.reading.code;
    let value = code.value_text(kept.reading.value);
    medledger_fhir::device_observation(&medledger_fhir::DeviceReading {
        id,
        patient: &format!("Patient/{patient}"),
        device: &format!("Device/{}", kept.device),
        loinc: code.loinc(),
        display: code.display(),
        value: &value,
        unit: code.unit(),
        time_ms: kept.reading.time_ms,
    })
}

/// `GET /fhir/Observation/rpm-...`: one device reading, under consent, the access event first;
/// `None` when the id is not a reading's (or a record holds it), for the records module.
pub(crate) async fn fhir_read(
    state: &AppState,
    caller: &crate::fhir::Caller,
    id: &str,
) -> crate::fhir::FhirResult<Option<axum::response::Response>> {
    use crate::fhir::FhirFailure;
    use medledger_fhir::IssueType;
    let Some((prefix, seq, index)) = parse_reading_id(id) else {
        return Ok(None);
    };
    let records = records(state).map_err(FhirFailure::from)?;
    let service = monitor(state).map_err(FhirFailure::from)?;
    let locator = service.clone();
    let (finder, wanted) = (records.clone(), id.to_string());
    let found = blocking(move || {
        if finder.record_by_fhir("Observation", &wanted)?.is_some() {
            return Ok(None);
        }
        let Some((device, patient)) = locator.locate(prefix, seq)? else {
            return Ok(Some(None));
        };
        let fhir_id = finder.patient_fhir_id(&patient)?;
        Ok(Some(Some((device, patient, fhir_id))))
    })
    .await
    .map_err(FhirFailure::from)?;
    let Some(found) = found else {
        return Ok(None);
    };
    let not_found = || {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            format!("Observation/{id} is not held by this node"),
        )
    };
    let (device, patient, fhir_id) = found.ok_or_else(not_found)?;
    let fhir_id = fhir_id.ok_or_else(not_found)?;
    caller.may("Observation", crate::smart::Action::Read, Some(&fhir_id))?;
    let request = ReadRequest {
        request: caller.request,
        reader: caller.key,
        patient,
        records: Vec::new(),
        purpose: caller.purpose()?,
        break_glass: caller.access.break_glass,
        wrap_to: None,
    };
    let (event, kept) = service.read_reading(request, &device, seq, index).await?;
    let Some(kept) = kept else {
        return Err(fhir_denied(&event.tx));
    };
    let mut response = crate::fhir::fhir_json(StatusCode::OK, &observation_of(&kept, id, &fhir_id));
    crate::fhir::add_event_header(&mut response, &event.tx);
    Ok(Some(response))
}
