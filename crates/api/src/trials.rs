//! Clinical trials over HTTP. Under `/v1/trials`: a study's public registration and the check of
//! a document against it, the regulator's view, data capture and its history, adverse events, and
//! the alert stream (server-sent events, resumable from a cursor). On the FHIR face:
//! `ResearchStudy`, `ResearchSubject` and `AdverseEvent` (read, and a site's report as a FHIR
//! AdverseEvent).
//!
//! Registration, amendments, enrolment, consent, withdrawal, acknowledgement, reports to the
//! regulator and signatures are transactions the signer sends to `/v1/txs` (the CLI's
//! `medledger trial ...`); what goes through the node is what leaves data at the site: captured
//! forms and adverse-event reports.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medledger_crypto::Hash;
use medledger_fhir::IssueType;
use medledger_node::trials::{AdverseEventReport, FormInput, Trials, VersionEntry};
use medledger_trials::{
    AdverseEvent, ClockStatus, ESignature, Meaning, OutcomeChange, OutcomeKind, Seriousness, Study,
    Subject, SubjectStatus,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fhir::{Caller, FhirFailure, FhirResult, caller, fhir_json};
use crate::{ApiError, ApiResult, AppState, blocking};

/// The trials' part of the API.
pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <TrialsDoc as utoipa::OpenApi>::openapi,
    consent: Some(crate::ConsentView {
        // A grant's id is 64 hex digits; a participant's eConsent is `<study>.<subject>`.
        claims: |id| id.contains('.'),
        read: |state, caller, id| Box::pin(fhir_consent(state, caller, id)),
    }),
    audit: None,
    fhir: None,
    fhir_source: None,
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    study,
    document,
    audit,
    capture,
    capture_history,
    adverse_event,
    alerts,
    fhir_research_study,
    fhir_research_subject,
    fhir_adverse_event,
    fhir_report_adverse_event,
    add_webhook,
    list_webhooks,
    remove_webhook
))]
struct TrialsDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/trials/alerts", get(alerts))
        .route("/v1/trials/webhooks", post(add_webhook).get(list_webhooks))
        .route(
            "/v1/trials/webhooks/{id}",
            axum::routing::delete(remove_webhook),
        )
        .route("/v1/trials/adverse-events/{event}", get(adverse_event))
        .route("/v1/trials/{study}", get(study))
        .route("/v1/trials/{study}/documents/{sha256}", get(document))
        .route("/v1/trials/{study}/audit", get(audit))
        .route("/v1/trials/{study}/captures", post(capture))
        .route(
            "/v1/trials/{study}/captures/{capture}",
            get(capture_history),
        )
        .route("/fhir/ResearchStudy/{id}", get(fhir_research_study))
        .route("/fhir/ResearchSubject/{id}", get(fhir_research_subject))
        .route("/fhir/AdverseEvent", post(fhir_report_adverse_event))
        .route("/fhir/AdverseEvent/{id}", get(fhir_adverse_event))
}

/// The system under which a ResearchSubject's or AdverseEvent's subject is named by its study's
/// subject id.
pub const SUBJECT_SYSTEM: &str = "urn:medledger:trial-subject";
const CLOCK_URL: &str = "https://medledger.dev/fhir/StructureDefinition/regulatory-clock";
const PROTOCOL_URL: &str = "https://medledger.dev/fhir/StructureDefinition/protocol-version";

fn trials(state: &AppState) -> ApiResult<Trials> {
    state.services.get::<Trials>().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_trials_service",
            "this node serves no trial data",
        )
    })
}

fn parse_hash(what: &str, text: &str) -> ApiResult<Hash> {
    Hash::from_hex(text).map_err(|error| {
        ApiError::bad_request(
            "malformed_id",
            format!("{what} must be 32 bytes in hex: {error}"),
        )
    })
}

#[utoipa::path(get, path = "/v1/trials/{study}", tag = "trials",
    params(("study" = String, Path, description = "Study id")),
    responses((status = 200, description = "The study's registration and every protocol version, with its documents' SHA-256, outcomes and outcome changes; public"),
        (status = 404, description = "No such study")))]
async fn study(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let trials = trials(&state)?;
    blocking(move || Ok(Json(json!(trials.study(&id)?)))).await
}

#[utoipa::path(get, path = "/v1/trials/{study}/documents/{sha256}", tag = "trials",
    params(("study" = String, Path, description = "Study id"),
        ("sha256" = String, Path, description = "The document's SHA-256, hex")),
    responses((status = 200, description = "Whether the document is a registered protocol or analysis plan of the study, and of which versions; public")))]
async fn document(
    State(state): State<AppState>,
    Path((id, sha256)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let trials = trials(&state)?;
    let hash = parse_hash("the SHA-256", &sha256)?;
    blocking(move || Ok(Json(trials.document(&id, &hash)?))).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    captures_from: u64,
}

#[utoipa::path(get, path = "/v1/trials/{study}/audit", tag = "trials",
    params(("study" = String, Path, description = "Study id"),
        ("captures_from" = Option<u64>, Query, description = "First entry of the capture log to list")),
    responses((status = 200, description = "The regulator's view: registration, amendments, subjects, consents and withdrawals, signatures, adverse events with their clocks and a page of the capture history, each with its state key"),
        (status = 403, description = "Not the sponsor, a site or a regulator")))]
async fn audit(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = crate::parse_query(query)?;
    let (_, authority, _) = crate::signed_member(&state, &method, &uri, &headers, b"").await?;
    let trials = trials(&state)?;
    blocking(move || Ok(Json(trials.audit(&authority, &id, query.captures_from)?))).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    forms: Vec<FormInput>,
}

#[utoipa::path(post, path = "/v1/trials/{study}/captures", tag = "trials",
    params(("study" = String, Path, description = "Study id")),
    request_body(content = Object, description = r#"{"forms": [{"subject", "form", "visit", "data": {...}, "capture"?, "reason"?}]}: up to 256 forms, kept at this site and committed on chain as keyed commitments, all or none"#),
    responses((status = 201, description = "The captures, their versions and commitments, and the block"),
        (status = 422, description = "Refused: no consent, outdated consent, withdrawn, not this site's subject, ...")))]
async fn capture(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (key, parsed): (_, CaptureBody) =
        crate::signed_json_write(&state, &method, &uri, &headers, body).await?;
    let trials = trials(&state)?;
    let receipt = trials.capture(key, id, parsed.forms).await?;
    Ok((StatusCode::CREATED, Json(receipt)).into_response())
}

#[utoipa::path(get, path = "/v1/trials/{study}/captures/{capture}", tag = "trials",
    params(("study" = String, Path, description = "Study id"),
        ("capture" = String, Path, description = "Capture id, hex")),
    responses((status = 200, description = "Every version of the capture with its reason, and its content where this node holds it, checked against the chain's commitment")))]
async fn capture_history(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path((id, capture)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let capture = parse_hash("the capture id", &capture)?;
    let (_, authority, _) = crate::signed_member(&state, &method, &uri, &headers, b"").await?;
    let trials = trials(&state)?;
    blocking(move || Ok(Json(trials.capture_history(&authority, &id, &capture)?))).await
}

#[utoipa::path(get, path = "/v1/trials/adverse-events/{event}", tag = "trials",
    params(("event" = String, Path, description = "Adverse event id, hex")),
    responses((status = 200, description = "The event's classification, its regulatory clock and, where this node holds it, the site's report")))]
async fn adverse_event(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(event): Path<String>,
) -> ApiResult<Json<Value>> {
    let event = parse_hash("the adverse event id", &event)?;
    let (_, authority, _) = crate::signed_member(&state, &method, &uri, &headers, b"").await?;
    let trials = trials(&state)?;
    blocking(move || Ok(Json(json!(trials.adverse_event(&authority, &event)?)))).await
}

#[utoipa::path(get, path = "/v1/trials/alerts", tag = "trials",
    params(("after" = Option<u64>, Query, description = "Sequence number to start from (default 0); the Last-Event-ID header resumes after the last alert received"),
        ("follow" = Option<bool>, Query, description = "false: one JSON page instead of a stream")),
    responses((status = 200, description = "text/event-stream of the alerts the signer may receive (its studies as sponsor; all as a regulator), each with its sequence number as the event id, as their blocks commit")))]
async fn alerts(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<crate::feed::AlertsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let trials = trials(&state)?;
    crate::feed::alerts(&state, trials, (&method, &uri, &headers), query).await
}

#[utoipa::path(post, path = "/v1/trials/webhooks", tag = "trials",
    request_body(content = Object, description = r#"{"url": "https://...", "after"?: <alert sequence number>}"#),
    responses((status = 201, description = "The webhook: the node POSTs each alert the signer may receive to the URL, in order, signed by the node (X-Medledger-Signature over \"medledger/trial-alert-webhook/v1\" and the body, X-Medledger-Node, X-Medledger-Alert-Seq), retrying until a 2xx answer"),
        (status = 403, description = "The signer is not a member of this node's organisation")))]
async fn add_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let trials = trials(&state)?;
    crate::feed::add_webhook(&state, trials, (&method, &uri, &headers), body).await
}

#[utoipa::path(get, path = "/v1/trials/webhooks", tag = "trials",
    responses((status = 200, description = "The signer's webhooks at this node, with their cursors and the latest failure")))]
async fn list_webhooks(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let trials = trials(&state)?;
    crate::feed::list_webhooks(&state, trials, (&method, &uri, &headers)).await
}

#[utoipa::path(delete, path = "/v1/trials/webhooks/{id}", tag = "trials",
    params(("id" = String, Path, description = "Webhook id, hex")),
    responses((status = 204, description = "Removed; delivery stops"), (status = 404, description = "Not a webhook of the signer's")))]
async fn remove_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let trials = trials(&state)?;
    crate::feed::remove_webhook(&state, trials, (&method, &uri, &headers), &id).await
}

// The FHIR face of trials.

fn fhir_trials(state: &AppState) -> FhirResult<Trials> {
    trials(state).map_err(FhirFailure::from)
}

fn time_text(time_ms: u64) -> String {
    medledger_fhir::time::instant(time_ms)
}

fn org_reference(org: &str) -> Value {
    json!({ "identifier": { "system": "urn:medledger:organisation", "value": org }, "display": org })
}

/// A study as a FHIR R4 ResearchStudy: its registry id, title, sponsor and sites, the objectives
/// of its current version, and every version with its documents' hashes, reason and outcome
/// changes (an extension, as R4 has no element for them).
fn research_study(record: &Study, versions: &[VersionEntry]) -> Value {
    let kind = |kind: OutcomeKind| match kind {
        OutcomeKind::Primary => "primary",
        OutcomeKind::Secondary => "secondary",
    };
    let objectives: Vec<Value> = versions
        .iter()
        .find(|entry| entry.version.version == record.version)
        .map(|entry| {
            entry
                .version
                .outcomes
                .iter()
                .map(|outcome| {
                    json!({
                        "name": format!("{} ({})", outcome.measure, outcome.time_frame),
                        "type": { "coding": [{
                            "system": "http://terminology.hl7.org/CodeSystem/research-study-objective-type",
                            "code": kind(outcome.kind),
                        }]},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let protocol_versions: Vec<Value> = versions
        .iter()
        .map(|entry| {
            let version = &entry.version;
            let mut parts = vec![
                json!({"url": "version", "valueInteger": version.version}),
                json!({"url": "protocolSha256", "valueString": version.protocol_hash}),
                json!({"url": "sapSha256", "valueString": version.sap_hash}),
                json!({"url": "recorded", "valueDateTime": time_text(version.time_ms)}),
                json!({"url": "reconsent", "valueBoolean": version.reconsent}),
            ];
            if let Some(reason) = &version.reason {
                parts.push(json!({"url": "reason", "valueString": reason}));
            }
            for change in &version.outcome_changes {
                parts.push(json!({"url": "outcomeChange", "valueString": describe_change(change)}));
            }
            json!({ "url": PROTOCOL_URL, "extension": parts })
        })
        .collect();
    let mut resource = json!({
        "resourceType": "ResearchStudy",
        "id": record.id,
        "meta": { "versionId": record.version.to_string() },
        "extension": protocol_versions,
        "title": record.title,
        "status": "active",
        "period": { "start": time_text(record.registered_time_ms) },
        "sponsor": org_reference(&record.sponsor),
        "site": record.sites.iter().map(|site| org_reference(site)).collect::<Vec<_>>(),
        "objective": objectives,
    });
    if let Some(registry_id) = &record.registry_id {
        let system = if registry_id.starts_with("NCT") {
            "https://clinicaltrials.gov"
        } else {
            "urn:medledger:trial-registry"
        };
        resource["identifier"] = json!([{ "system": system, "value": registry_id }]);
    }
    resource
}

fn describe_change(change: &OutcomeChange) -> String {
    let kind = |kind: OutcomeKind| match kind {
        OutcomeKind::Primary => "primary",
        OutcomeKind::Secondary => "secondary",
    };
    match change {
        OutcomeChange::Added { outcome } => {
            format!("added {} outcome: {}", kind(outcome.kind), outcome.measure)
        }
        OutcomeChange::Removed { outcome } => {
            format!(
                "removed {} outcome: {}",
                kind(outcome.kind),
                outcome.measure
            )
        }
        OutcomeChange::Modified { before, after } => format!(
            "changed outcome {}: {} ({}) became {} ({})",
            before.measure,
            kind(before.kind),
            before.time_frame,
            kind(after.kind),
            after.time_frame
        ),
    }
}

fn research_subject(record: &Study, subject: &Subject) -> Value {
    let status = match subject.status {
        SubjectStatus::Candidate => "candidate",
        SubjectStatus::OnStudy => "on-study",
        SubjectStatus::Withdrawn => "withdrawn",
    };
    let mut period = json!({ "start": time_text(subject.enrolled_time_ms) });
    if let Some(end) = subject.withdrawn_time_ms {
        period["end"] = json!(time_text(end));
    }
    let mut resource = json!({
        "resourceType": "ResearchSubject",
        "id": format!("{}.{}", record.id, subject.id),
        "identifier": [{ "system": format!("{SUBJECT_SYSTEM}:{}", record.id), "value": subject.id }],
        "status": status,
        "period": period,
        "study": { "reference": format!("ResearchStudy/{}", record.id) },
        "individual": { "identifier": { "system": "urn:medledger:patient-key", "value": subject.patient.to_hex() } },
    });
    if let Some(version) = subject.consented_version {
        resource["extension"] = json!([{
            "url": CONSENTED_VERSION_URL,
            "valueInteger": version,
        }]);
    }
    resource["consent"] = json!({ "reference": format!("Consent/{}.{}", record.id, subject.id) });
    resource
}

const CONSENTED_VERSION_URL: &str =
    "https://medledger.dev/fhir/StructureDefinition/consented-protocol-version";
/// HL7's extension naming the study a research Consent is for (on `Consent.provision`).
const RESEARCH_STUDY_CONTEXT_URL: &str =
    "http://hl7.org/fhir/StructureDefinition/consent-ResearchStudyContext";

/// A participant's eConsent as a FHIR R4 Consent of research scope, for the study (HL7's
/// `consent-ResearchStudyContext`): `active` while they have consented to the protocol version
/// in force, `proposed` while an amendment awaits their re-consent (or before they first
/// consent), `inactive` with a `deny` provision once they withdrew. The protocol version they
/// consented to is its policy; each consent signature of theirs is a verification, at its block
/// time (21 CFR Part 11: who, when, and that it means consent).
fn econsent(record: &Study, subject: &Subject, signatures: &[ESignature]) -> Value {
    let withdrawn = subject.status == SubjectStatus::Withdrawn;
    let status = if withdrawn {
        "inactive"
    } else if subject.consented_version == Some(record.version) {
        "active"
    } else {
        "proposed"
    };
    let mut period = json!({ "start": time_text(subject.enrolled_time_ms) });
    if let Some(end) = subject.withdrawn_time_ms {
        period["end"] = json!(time_text(end));
    }
    let version = subject.consented_version.unwrap_or(record.version);
    let consents: Vec<&ESignature> = signatures
        .iter()
        .filter(|signature| signature.meaning == Meaning::Consent)
        .collect();
    let mut resource = json!({
        "resourceType": "Consent",
        "id": format!("{}.{}", record.id, subject.id),
        "status": status,
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research", "display": "Research" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent" }] }],
        "patient": { "identifier": { "system": "urn:medledger:patient-key", "value": subject.patient.to_hex() } },
        "organization": [org_reference(&subject.site)],
        "policy": [{ "uri": format!("urn:medledger:trial:{}:protocol-version:{version}", record.id) }],
        "provision": {
            "type": if withdrawn { "deny" } else { "permit" },
            "period": period,
            "purpose": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "CLINTRCH", "display": "clinical trial research" }],
            "extension": [{ "url": RESEARCH_STUDY_CONTEXT_URL, "valueReference": { "reference": format!("ResearchStudy/{}", record.id) } }],
        },
    });
    if let Some(consented) = subject.consented_version {
        resource["extension"] =
            json!([{ "url": CONSENTED_VERSION_URL, "valueInteger": consented }]);
    }
    if let Some(latest) = consents.last() {
        resource["dateTime"] = json!(time_text(latest.time_ms));
    }
    if !consents.is_empty() {
        resource["verification"] = consents
            .iter()
            .map(|signature| {
                let mut verification = json!({
                    "verified": true,
                    "verifiedWith": { "identifier": { "system": "urn:medledger:member-key", "value": signature.signer.to_hex() } },
                    "verificationDate": time_text(signature.time_ms),
                });
                if let medledger_trials::Signed::ProtocolVersion { version } = signature.on {
                    verification["extension"] =
                        json!([{ "url": CONSENTED_VERSION_URL, "valueInteger": version }]);
                }
                verification
            })
            .collect();
    }
    resource
}

/// The study and subject of a participant's FHIR id, `<study id>.<subject id>` (a
/// ResearchSubject's and its eConsent's alike); anything else is not found.
fn subject_id(kind: &str, id: &str) -> FhirResult<(String, String)> {
    id.split_once('.')
        .map(|(study, subject)| (study.to_string(), subject.to_string()))
        .ok_or_else(|| {
            FhirFailure::new(
                StatusCode::NOT_FOUND,
                IssueType::NotFound,
                format!("a trial {kind} id is <study id>.<subject id>"),
            )
        })
}

/// `GET /fhir/Consent/{study}.{subject}`: a participant's eConsent (see [`econsent`]), for the
/// participant, the study's sponsor, its sites and regulators.
async fn fhir_consent(state: AppState, caller: Caller, id: String) -> FhirResult<Response> {
    let (study, subject) = subject_id("Consent", &id)?;
    let trials = fhir_trials(&state)?;
    let (record, found, signatures) = crate::blocking(move || {
        Ok(trials.subject_consent(&caller.key, &caller.authority, &study, &subject)?)
    })
    .await?;
    Ok(fhir_json(
        StatusCode::OK,
        &econsent(&record, &found, &signatures),
    ))
}

fn seriousness_code(seriousness: Seriousness) -> (&'static str, &'static str) {
    match seriousness {
        Seriousness::NonSerious => ("Non-serious", "Non-serious"),
        Seriousness::Serious => ("Serious", "Serious"),
        Seriousness::LifeThreatening => ("SeriousIsLifeThreatening", "Is Life-threatening"),
        Seriousness::Fatal => ("SeriousResultsInDeath", "Results in death"),
    }
}

fn clock_text(clock: ClockStatus) -> &'static str {
    match clock {
        ClockStatus::NotExpedited => "not-expedited",
        ClockStatus::Running => "running",
        ClockStatus::Overdue => "overdue",
        ClockStatus::ReportedOnTime => "reported-on-time",
        ClockStatus::ReportedLate => "reported-late",
    }
}

/// An adverse event as a FHIR R4 AdverseEvent: the site's report where this node holds it, else
/// what the chain knows; either way with the chain's classification and regulatory clock.
fn adverse_event_resource(
    study: &str,
    event: &AdverseEvent,
    clock: ClockStatus,
    report: &Value,
) -> Value {
    let mut resource = if report.is_object() {
        report.clone()
    } else {
        json!({
            "resourceType": "AdverseEvent",
            "actuality": "actual",
            "subject": { "identifier": { "system": format!("{SUBJECT_SYSTEM}:{study}"), "value": event.subject } },
            "study": [{ "reference": format!("ResearchStudy/{study}") }],
        })
    };
    let (code, display) = seriousness_code(event.seriousness);
    resource["id"] = json!(event.id.to_hex());
    resource["recordedDate"] = json!(time_text(event.reported_time_ms));
    resource["seriousness"] = json!({ "coding": [{ "system": medledger_fhir::SERIOUSNESS_SYSTEM, "code": code, "display": display }] });
    let mut clock_parts = vec![json!({"url": "status", "valueCode": clock_text(clock)})];
    if let Some(deadline) = event.deadline_ms {
        clock_parts.push(json!({"url": "deadline", "valueDateTime": time_text(deadline)}));
    }
    if let Some(time) = event.acknowledged_time_ms {
        clock_parts.push(json!({"url": "acknowledged", "valueDateTime": time_text(time)}));
    }
    if let Some(time) = event.regulator_report_time_ms {
        clock_parts.push(json!({"url": "reportedToRegulator", "valueDateTime": time_text(time)}));
    }
    let mut extensions: Vec<Value> = resource["extension"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|extension| extension["url"] != json!(CLOCK_URL))
        .collect();
    extensions.push(json!({ "url": CLOCK_URL, "extension": clock_parts }));
    resource["extension"] = Value::Array(extensions);
    resource
}

#[utoipa::path(get, path = "/fhir/ResearchStudy/{id}", tag = "fhir",
    params(("id" = String, Path, description = "Study id")),
    responses((status = 200, description = "The study as a FHIR ResearchStudy, with every protocol version (hashes, reason, outcome changes) as extensions")))]
async fn fhir_research_study(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    let trials = fhir_trials(&state)?;
    let view = crate::blocking(move || Ok(trials.study(&id)?)).await?;
    Ok(fhir_json(
        StatusCode::OK,
        &research_study(&view.study, &view.versions),
    ))
}

#[utoipa::path(get, path = "/fhir/ResearchSubject/{id}", tag = "fhir",
    params(("id" = String, Path, description = "<study id>.<subject id>")),
    responses((status = 200, description = "The subject as a FHIR ResearchSubject, for the study's sponsor, its sites and regulators")))]
async fn fhir_research_subject(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let (study, subject) = subject_id("ResearchSubject", &id)?;
    let trials = fhir_trials(&state)?;
    let (record, found) =
        crate::blocking(move || Ok(trials.subject(&caller.authority, &study, &subject)?)).await?;
    Ok(fhir_json(
        StatusCode::OK,
        &research_subject(&record, &found),
    ))
}

#[utoipa::path(get, path = "/fhir/AdverseEvent/{id}", tag = "fhir",
    params(("id" = String, Path, description = "Adverse event id (hex)")),
    responses((status = 200, description = "The event as a FHIR AdverseEvent with its regulatory clock, for the study's sponsor, its sites and regulators")))]
async fn fhir_adverse_event(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> FhirResult<Response> {
    let caller = caller(&state, &method, &uri, &headers, b"").await?;
    let event = Hash::from_hex(&id).map_err(|_| {
        FhirFailure::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no such AdverseEvent",
        )
    })?;
    let trials = fhir_trials(&state)?;
    let view =
        crate::blocking(move || Ok(trials.adverse_event(&caller.authority, &event)?)).await?;
    Ok(fhir_json(
        StatusCode::OK,
        &adverse_event_resource(&view.study, &view.event, view.clock, &view.report),
    ))
}

fn invalid(diagnostics: impl Into<String>) -> FhirFailure {
    FhirFailure::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        IssueType::Required,
        diagnostics,
    )
}

#[utoipa::path(post, path = "/fhir/AdverseEvent", tag = "fhir",
    request_body(content = Object, description = "A FHIR R4 AdverseEvent naming its ResearchStudy, the study's subject id, seriousness, a causality assessment and the expectedness extension"),
    responses((status = 201, description = "Reported: kept at this site, its classification and commitment on chain; the regulatory clock runs from its block"),
        (status = 422, description = "Invalid or refused (not a site of the study, unknown subject, ...)")))]
async fn fhir_report_adverse_event(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> FhirResult<Response> {
    let body = body.map_err(|rejection| {
        FhirFailure::new(
            rejection.status(),
            IssueType::Structure,
            rejection.body_text(),
        )
    })?;
    let caller = caller(&state, &method, &uri, &headers, &body).await?;
    caller.check_replay(&state)?;
    let resource: Value = serde_json::from_slice(&body).map_err(|error| {
        FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("not JSON: {error}"),
        )
    })?;
    if resource["resourceType"] != json!("AdverseEvent") {
        return Err(FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            "the body must be a FHIR AdverseEvent",
        ));
    }
    let issues = medledger_fhir::validate(&resource);
    if !issues.is_empty() {
        return Err(FhirFailure::issues(
            StatusCode::UNPROCESSABLE_ENTITY,
            issues,
        ));
    }
    let class = medledger_fhir::classify_adverse_event(&resource).map_err(invalid)?;
    let seriousness = match class.seriousness {
        medledger_fhir::AdverseEventSeriousness::NonSerious => Seriousness::NonSerious,
        medledger_fhir::AdverseEventSeriousness::Serious => Seriousness::Serious,
        medledger_fhir::AdverseEventSeriousness::LifeThreatening => Seriousness::LifeThreatening,
        medledger_fhir::AdverseEventSeriousness::Fatal => Seriousness::Fatal,
    };
    let (study, subject, expected, related) =
        (class.study, class.subject, class.expected, class.related);
    let trials = fhir_trials(&state)?;
    let report = serde_json::to_vec(&resource).map_err(|error| {
        FhirFailure::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            error.to_string(),
        )
    })?;
    let report = AdverseEventReport {
        study,
        subject,
        seriousness,
        expected,
        related,
        report,
    };
    // An event confirming a draft (from an alert of a monitored threshold) takes its id.
    let draft = &resource["identifier"];
    let (event, _) = if draft["system"] == json!(medledger_node::monitor::DRAFT_SYSTEM) {
        let draft = draft["value"]
            .as_str()
            .and_then(|text| Hash::from_hex(text).ok())
            .ok_or_else(|| {
                FhirFailure::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Value,
                    "a draft's identifier value is its id, 64 hex digits",
                )
            })?;
        let monitor: medledger_node::monitor::Monitor =
            crate::service(&state, "monitoring").map_err(FhirFailure::from)?;
        let authority = caller.authority.clone();
        let lister = monitor.clone();
        let open = blocking(move || Ok(lister.drafts(&authority)?))
            .await
            .map_err(FhirFailure::from)?
            .into_iter()
            .find(|open| open.draft == draft)
            .ok_or_else(|| {
                FhirFailure::new(
                    StatusCode::NOT_FOUND,
                    IssueType::NotFound,
                    format!(
                        "no open adverse-event draft {draft} here (reported, dismissed or unknown)"
                    ),
                )
            })?;
        if (open.study.as_str(), open.subject.as_str())
            != (report.study.as_str(), report.subject.as_str())
        {
            return Err(invalid(format!(
                "draft {draft} is of subject {} in study {}",
                open.subject, open.study
            )));
        }
        let reported = trials
            .report_adverse_event_as(caller.key, report, draft)
            .await?;
        // The alert the draft came from is closed, so the next crossing opens a new draft.
        monitor.close_draft(&open).await?;
        reported
    } else {
        trials.report_adverse_event(caller.key, report).await?
    };
    let base = crate::smart::base_url(&headers);
    let mut response = fhir_json(
        StatusCode::CREATED,
        &json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "information",
                "code": "informational",
                "diagnostics": format!("AdverseEvent/{event} reported"),
            }],
        }),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("{base}/fhir/AdverseEvent/{event}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}
