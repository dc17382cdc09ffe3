//! The care team's pages: the monitoring alerts of their organisation, live (the page's script
//! listens to the alert feed's server-sent events and redraws the table from the server when an
//! alert changes; without the script the page is the same, one reload behind), acknowledged with
//! one button; and a patient's device readings under the patient's consent, each view committed
//! on chain as an access event before any reading is shown.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use medledger_crypto::hash_tagged;
use medledger_monitor::{AlertState, MonitorOp};
use medledger_node::monitor::{Monitor, ReadingFilter};
use medledger_node::records::{ReadRequest, Records};
use medledger_records::Purpose;
use medledger_types::Role;
use serde::Deserialize;

use super::session::{Audience, Member, MemberForm, outcome, sign_and_submit, signed_in};
use super::{Notice, Shell, page, service, short, unreadable, utc};
use crate::AppState;

/// Alert changes the page reads back to draw the current alerts.
pub const ALERT_CHANGES_SHOWN: u64 = 500;
/// Readings one page shows.
pub const READINGS_SHOWN: usize = 200;

/// The alerts' readers: the care team and auditors.
pub(crate) struct CareTeam;

impl Audience for CareTeam {
    const ROLES: &'static [Role] = &CARE_ROLES;
    const WHAT: &'static str = "The alerts are for the care team (practitioners) and auditors.";
}

/// Who acknowledges alerts and reads a patient's readings: the care team's practitioners.
pub(crate) struct Practitioners;

impl Audience for Practitioners {
    const ROLES: &'static [Role] = &[Role::Practitioner];
    const WHAT: &'static str =
        "This is for the practitioners of a patient's care team, as far as the patient allows.";
}
const CARE_ROLES: [Role; 2] = [Role::Practitioner, Role::Auditor];

struct AlertRow {
    org: String,
    seq: u64,
    raised: String,
    patient: String,
    rule: String,
    state: String,
    open: bool,
    urgent: bool,
}

#[derive(Template)]
#[template(path = "portal/care_alerts.html")]
struct AlertsPage {
    shell: Shell,
    csrf: String,
    alerts: Vec<AlertRow>,
    /// The feed number the live stream continues from.
    next: u64,
    may_acknowledge: bool,
    notice: Option<Notice>,
}

async fn alerts_page(
    state: &AppState,
    who: &super::Who,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let shell = Shell::signed_in(state, who);
    let monitor: Monitor = match service(
        state,
        &shell,
        "remote monitoring",
        "Open the portal of the organisation whose devices watch your patients.",
    ) {
        Ok(monitor) => monitor,
        Err(response) => return response,
    };
    let records = state.services.get::<Records>();
    let node = state.node.clone();
    let key = who.member;
    let found = tokio::task::spawn_blocking(move || {
        let org = monitor.org().map_err(|e| e.to_string())?;
        let (authority, _) = node.account(&key).map_err(|e| e.to_string())?;
        let authority = authority?;
        let (_, count) = node
            .read_head(|view| Ok(medledger_monitor::alert_event_count(view, &org)?))
            .map_err(|e| e.to_string())?;
        let count = count.map_err(|e| e.to_string())?;
        // The feed numbers changes from 1; read the latest ones, a page at a time.
        let mut cursor = count.saturating_sub(ALERT_CHANGES_SHOWN);
        let mut latest = BTreeMap::new();
        loop {
            let (notices, next) = monitor
                .alerts(&key, &authority, cursor)
                .map_err(|e| e.to_string())?;
            for notice in notices {
                latest.insert((notice.alert.org.clone(), notice.alert.seq), notice.alert);
            }
            if next <= cursor || next >= count {
                break;
            }
            cursor = next;
        }
        let patients: BTreeMap<_, _> = latest
            .values()
            .map(|alert| {
                let id = records
                    .as_ref()
                    .and_then(|records| records.patient_fhir_id(&alert.patient).ok().flatten())
                    .map_or_else(
                        || short(&alert.patient.to_string()),
                        |id| format!("Patient/{id}"),
                    );
                (alert.patient, id)
            })
            .collect();
        // The stream continues from the feed's length as this page saw it.
        Ok::<_, String>((latest, patients, count))
    })
    .await;
    let Ok(Ok((latest, patients, next))) = found else {
        return unreadable(shell, "the alerts");
    };
    let mut alerts: Vec<AlertRow> = latest
        .into_values()
        .map(|alert| {
            let (state, open, urgent) = match alert.state {
                AlertState::Open => ("open".to_string(), true, false),
                AlertState::Escalated { time_ms, .. } => {
                    (format!("escalated at {}", utc(time_ms)), true, true)
                }
                AlertState::Acknowledged { by, time_ms, .. } => (
                    format!(
                        "acknowledged at {} by {}",
                        utc(time_ms),
                        short(&by.to_string())
                    ),
                    false,
                    false,
                ),
            };
            AlertRow {
                patient: patients.get(&alert.patient).cloned().unwrap_or_default(),
                org: alert.org,
                seq: alert.seq,
                raised: utc(alert.raised_ms),
                rule: alert.rule,
                state,
                open,
                urgent,
            }
        })
        .collect();
    alerts.sort_by(|a, b| b.open.cmp(&a.open).then(b.seq.cmp(&a.seq)));
    page(
        status,
        &AlertsPage {
            shell,
            csrf: who.csrf.clone(),
            alerts,
            next,
            may_acknowledge: who.role == Some(Role::Practitioner),
            notice,
        },
    )
}

pub(crate) async fn alerts(
    State(state): State<AppState>,
    Member { who, .. }: Member<CareTeam>,
) -> Response {
    alerts_page(&state, &who, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub(crate) struct After {
    after: Option<u64>,
}

/// How often a quiet stream checks that its session is still live.
pub const STREAM_SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// Server-sent events for the alerts page's script: an event named `changed` (its id the feed's
/// length) whenever the organisation's alert feed grows, and nothing else: the script then
/// redraws the table from the server. The stream ends when the session does.
pub(crate) async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<After>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok((_, who)) = signed_in(&state, &headers, &uri).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    if !who.role.is_some_and(|role| CARE_ROLES.contains(&role)) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(monitor) = state.services.get::<Monitor>() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Ok(Ok(org)) = tokio::task::spawn_blocking(move || monitor.org()).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    // A reconnecting browser says the feed length it had seen.
    let resumed = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    let seen = resumed
        .or_else(|| query.ok().and_then(|Query(after)| after.after))
        .unwrap_or(0);
    let watch = Watch {
        head: state.node.subscribe_head(),
        closing: state.closing.clone(),
        state,
        headers,
        org,
        seen,
    };
    let events = futures_util::stream::unfold(watch, |mut watch| async move {
        let count = watch.next().await?;
        // A browser drops an event without data, so the length is its data too.
        let event = Event::default()
            .event("changed")
            .id(count.to_string())
            .data(count.to_string());
        Some((Ok::<Event, std::convert::Infallible>(event), watch))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One alerts page's watch on its organisation's alert feed.
struct Watch {
    state: AppState,
    headers: HeaderMap,
    org: String,
    /// The feed length the page has.
    seen: u64,
    head: tokio::sync::watch::Receiver<medledger_types::Height>,
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Watch {
    /// The feed's new length once it grows; `None` when the session or the server ends.
    async fn next(&mut self) -> Option<u64> {
        loop {
            if *self.closing.borrow() || !super::session::session_live(&self.state, &self.headers) {
                return None;
            }
            // Seen before reading, so a block committed during the read wakes the next wait.
            self.head.borrow_and_update();
            let (node, org) = (self.state.node.clone(), self.org.clone());
            let count = tokio::task::spawn_blocking(move || {
                node.read_head(|view| Ok(medledger_monitor::alert_event_count(view, &org)?))
            })
            .await;
            if let Ok(Ok((_, Ok(count)))) = count
                && count > self.seen
            {
                self.seen = count;
                return Some(count);
            }
            tokio::select! {
                changed = self.head.changed() => if changed.is_err() {
                    return None;
                },
                _ = self.closing.changed() => {},
                () = tokio::time::sleep(STREAM_SESSION_CHECK) => {},
            }
        }
    }
}

pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Practitioners>,
) -> Response {
    let (Some(org), Some(seq)) = (
        fields.get("org").cloned(),
        fields.get("seq").and_then(|seq| seq.parse::<u64>().ok()),
    ) else {
        let notice = Notice {
            good: false,
            text: "Nothing was acknowledged: the form did not name an alert.".into(),
        };
        return alerts_page(&state, &who, Some(notice), StatusCode::BAD_REQUEST).await;
    };
    let result = sign_and_submit(
        &state,
        &session,
        MonitorOp::AcknowledgeAlert { org, seq }.into(),
    )
    .await;
    let done = format!("Alert {seq} is acknowledged in your name");
    let (notice, status) = outcome(result, &done, None);
    alerts_page(&state, &who, Some(notice), status).await
}

#[derive(Deserialize)]
pub(crate) struct ReadingsQuery {
    patient: Option<String>,
}

struct ReadingRow {
    time: String,
    what: String,
    value: String,
}

#[derive(Template)]
#[template(path = "portal/care_readings.html")]
struct ReadingsPage {
    shell: Shell,
    csrf: String,
    patient: String,
    /// Whether a read was made (a patient was named).
    asked: bool,
    allowed: bool,
    total: usize,
    readings: Vec<ReadingRow>,
    error: Option<String>,
}

/// A reading's value in its unit, from its fixed decimals.
fn reading_value(code: medledger_monitor::Code, value: i64) -> String {
    let decimals = u32::from(code.decimals());
    let scale = 10i64.pow(decimals);
    let sign = if value < 0 { "-" } else { "" };
    let value = value.unsigned_abs();
    let whole = value / scale.unsigned_abs();
    let text = if decimals == 0 {
        whole.to_string()
    } else {
        let fraction = value % scale.unsigned_abs();
        format!("{whole}.{fraction:0width$}", width = decimals as usize)
    };
    format!("{sign}{text} {}", code.unit())
}

/// The readings form, filled in with the patient a link names. Showing it reads nothing: a
/// read is the form's post, so no link can make a practitioner read a patient's data.
pub(crate) async fn readings_form(
    State(state): State<AppState>,
    query: Result<Query<ReadingsQuery>, axum::extract::rejection::QueryRejection>,
    Member { who, .. }: Member<Practitioners>,
) -> Response {
    let patient = query
        .ok()
        .and_then(|Query(query)| query.patient)
        .unwrap_or_default();
    page(
        StatusCode::OK,
        &ReadingsPage {
            shell: Shell::signed_in(&state, &who),
            csrf: who.csrf.clone(),
            patient,
            asked: false,
            allowed: false,
            total: 0,
            readings: Vec::new(),
            error: None,
        },
    )
}

/// Reads a patient's device readings for treatment: the decision is committed on chain as an
/// access event first, and only what it allows is shown.
pub(crate) async fn readings(
    State(state): State<AppState>,
    MemberForm { who, fields, .. }: MemberForm<Practitioners>,
) -> Response {
    let shell = Shell::signed_in(&state, &who);
    let patient = fields.get("patient").cloned().unwrap_or_default();
    let fhir_id = patient.trim().trim_start_matches("Patient/").to_string();
    let blank = ReadingsPage {
        shell: shell.clone(),
        csrf: who.csrf.clone(),
        patient: patient.clone(),
        asked: false,
        allowed: false,
        total: 0,
        readings: Vec::new(),
        error: None,
    };
    if fhir_id.is_empty() {
        return page(StatusCode::BAD_REQUEST, &blank);
    }
    let (Some(monitor), Some(records)) = (
        state.services.get::<Monitor>(),
        state.services.get::<Records>(),
    ) else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            &ReadingsPage {
                error: Some("This node keeps no device readings.".into()),
                ..blank
            },
        );
    };
    let lookup = fhir_id.clone();
    let found = tokio::task::spawn_blocking(move || records.patient_by_fhir(&lookup)).await;
    let Ok(Ok(Some(patient_hash))) = found else {
        return page(
            StatusCode::NOT_FOUND,
            &ReadingsPage {
                error: Some(format!(
                    "This node holds no patient Patient/{fhir_id}. Check the id and try again."
                )),
                ..blank
            },
        );
    };
    // Each view is its own access request: a fresh id, committed with the decision.
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let request = ReadRequest {
        request: hash_tagged(b"medledger/portal-read/v1", &[&nonce, &who.member.0]),
        reader: who.member,
        patient: patient_hash,
        records: Vec::new(),
        purpose: Purpose::Treat,
        break_glass: false,
        wrap_to: None,
    };
    let filter = ReadingFilter {
        code: None,
        devices: None,
        period: (0, u64::MAX),
    };
    let (event, total, kept) = match monitor.read(request, &filter, 0, READINGS_SHOWN).await {
        Ok(found) => found,
        Err(error) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                &ReadingsPage {
                    error: Some(format!("The readings could not be read: {error}.")),
                    ..blank
                },
            );
        }
    };
    let mut rows: Vec<ReadingRow> = kept
        .iter()
        .map(|kept| ReadingRow {
            time: utc(kept.reading.time_ms),
            what: kept.reading.code.display().to_string(),
            value: reading_value(kept.reading.code, kept.reading.value),
        })
        .collect();
    rows.reverse();
    let allowed = event.allowed() && !event.decisions.is_empty();
    page(
        StatusCode::OK,
        &ReadingsPage {
            asked: true,
            allowed,
            total,
            readings: rows,
            ..blank
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_monitor::Code;

    #[test]
    fn readings_read_in_their_units() {
        for (code, value, text) in [
            (Code::HeartRate, 72, "72 /min"),
            (Code::OxygenSaturation, 88, "88 %"),
            (Code::BodyTemperature, 3_712, "37.12 Cel"),
            (Code::BodyTemperature, 3_705, "37.05 Cel"),
            (Code::BodyTemperature, -5, "-0.05 Cel"),
        ] {
            assert_eq!(reading_value(code, value), text, "{code:?} {value}");
        }
    }
}
