//! The auditor's and regulator's pages: a patient's access trail (as the FHIR AuditEvent search
//! allows auditors), a unit's custody trail, and a trial's audit trail; each downloadable as CSV,
//! and the access trail as a FHIR Bundle of AuditEvents. The chain explorer is public.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use medledger_fhir::OutputBundleType;
use medledger_ledger::Authority;
use medledger_node::records::Records;
use medledger_node::supply::Supply;
use medledger_node::trials::Trials;
use medledger_supply::Item;
use medledger_types::Role;
use serde::Deserialize;
use serde_json::Value;

use super::session::{Audience, Member};
use super::{Shell, page, short, utc};
use crate::AppState;

/// Access events one trail page reads (and one download holds).
pub const ACCESS_EVENTS_MAX: u64 = 10_000;

/// Auditors and regulators.
pub(crate) struct Auditors;

impl Audience for Auditors {
    const ROLES: &'static [Role] = &[Role::Auditor];
    const WHAT: &'static str = "The audit trails are for auditors and regulators.";
}

#[derive(Deserialize)]
pub(crate) struct TrailQuery {
    patient: Option<String>,
    code: Option<String>,
    study: Option<String>,
    format: Option<String>,
}

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn csv(name: &str, header_row: &[&str], rows: &[Vec<String>]) -> Response {
    let mut text = header_row.join(",");
    text.push_str("\r\n");
    for row in rows {
        let fields: Vec<String> = row.iter().map(|field| csv_field(field)).collect();
        text.push_str(&fields.join(","));
        text.push_str("\r\n");
    }
    download(name, "text/csv; charset=utf-8", text)
}

fn download(name: &str, content_type: &'static str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "portal/audit.html")]
struct AuditPage {
    shell: Shell,
    /// Which trail: "access", "unit", "trial" or "" (the forms only).
    kind: &'static str,
    asked: String,
    error: Option<String>,
    columns: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    summary: String,
    export: String,
}

fn form_page(shell: Shell, status: StatusCode, error: Option<String>, asked: String) -> Response {
    page(
        status,
        &AuditPage {
            shell,
            kind: "",
            asked,
            error,
            columns: Vec::new(),
            rows: Vec::new(),
            summary: String::new(),
            export: String::new(),
        },
    )
}

const ACCESS_COLUMNS: [&str; 9] = [
    "time_utc",
    "reader_org",
    "reader_role",
    "reader_key",
    "purpose",
    "break_glass",
    "outcome",
    "custodian",
    "block",
];

const UNIT_COLUMNS: [&str; 6] = ["time_utc", "step", "org", "item", "location", "block"];

const TRIAL_COLUMNS: [&str; 3] = ["entry", "state_key", "detail"];

pub(crate) async fn trails(
    State(state): State<AppState>,
    query: Result<Query<TrailQuery>, axum::extract::rejection::QueryRejection>,
    Member { who, .. }: Member<Auditors>,
) -> Response {
    let shell = Shell::signed_in(&state, &who);
    let Ok(Query(query)) = query else {
        return form_page(
            shell,
            StatusCode::BAD_REQUEST,
            Some("The address asks for something these pages do not know.".into()),
            String::new(),
        );
    };
    let format = query.format.clone().unwrap_or_default();
    if let Some(patient) = query.patient.filter(|text| !text.trim().is_empty()) {
        return access_trail(&state, shell, patient, &format).await;
    }
    if let Some(code) = query.code.filter(|text| !text.trim().is_empty()) {
        return unit_trail(&state, shell, who.member, code, &format).await;
    }
    if let Some(study) = query.study.filter(|text| !text.trim().is_empty()) {
        return trial_trail(&state, shell, who.member, study, &format).await;
    }
    form_page(shell, StatusCode::OK, None, String::new())
}

async fn access_trail(state: &AppState, shell: Shell, patient: String, format: &str) -> Response {
    let fhir_id = patient.trim().trim_start_matches("Patient/").to_string();
    let Some(records) = state.services.get::<Records>() else {
        return form_page(
            shell,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("This node keeps no health records.".into()),
            patient,
        );
    };
    let id = fhir_id.clone();
    let found = tokio::task::spawn_blocking(move || {
        let hash = match records.patient_by_fhir(&id)? {
            Some(hash) => Some(hash),
            None => records.erased_patient_by_fhir(&id)?,
        };
        let Some(hash) = hash else {
            return Ok(None);
        };
        let (events, total) = records.access_log(&hash, 0, ACCESS_EVENTS_MAX)?;
        Ok::<_, medledger_node::ServiceError>(Some((events, total)))
    })
    .await;
    let (events, total) = match found {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => {
            return form_page(
                shell,
                StatusCode::NOT_FOUND,
                Some(format!("This node holds no patient Patient/{fhir_id}.")),
                patient,
            );
        }
        _ => {
            return form_page(
                shell,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The node could not read the trail just now. Try again in a moment.".into()),
                patient,
            );
        }
    };
    let reference = format!("Patient/{fhir_id}");
    if format == "fhir" {
        let resources: Vec<Value> = events
            .iter()
            .map(|event| medledger_fhir::audit_event(event, &reference))
            .collect();
        let bundle = medledger_fhir::bundle(OutputBundleType::Collection, resources);
        return download(
            &format!("access-trail-{fhir_id}.json"),
            "application/fhir+json",
            bundle.to_string(),
        );
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|event| {
            vec![
                utc(event.time_ms),
                event.reader_org.clone(),
                event
                    .reader_role
                    .map_or_else(|| "organisation".to_string(), |role| role.as_str().into()),
                event.reader.to_string(),
                event.purpose.code().to_string(),
                event.break_glass.to_string(),
                if event.allowed() {
                    "allowed"
                } else {
                    "refused"
                }
                .to_string(),
                event.custodian.clone(),
                event.height.to_string(),
            ]
        })
        .collect();
    if format == "csv" {
        return csv(
            &format!("access-trail-{fhir_id}.csv"),
            &ACCESS_COLUMNS,
            &rows,
        );
    }
    let shown = rows.len();
    page(
        StatusCode::OK,
        &AuditPage {
            shell,
            kind: "access",
            summary: format!(
                "{total} access request{} to {reference}'s records{}.",
                if total == 1 { "" } else { "s" },
                if (shown as u64) < total {
                    format!("; the first {shown} are shown")
                } else {
                    String::new()
                }
            ),
            export: format!("patient={fhir_id}"),
            asked: patient,
            error: None,
            columns: ACCESS_COLUMNS.to_vec(),
            rows,
        },
    )
}

async fn unit_trail(
    state: &AppState,
    shell: Shell,
    key: medledger_crypto::PublicKey,
    code: String,
    format: &str,
) -> Response {
    let Some(supply) = state.services.get::<Supply>() else {
        return form_page(
            shell,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("This node does not follow the supply chain.".into()),
            code,
        );
    };
    let scanned = code.clone();
    let found = tokio::task::spawn_blocking(move || {
        let (unit, _) = medledger_node::supply::parse_unit_code(&scanned)?;
        let (_, verified) = supply.verify(&key, &scanned)?;
        let (_, steps) = supply.trace(&Item::Unit(unit.clone()))?;
        Ok::<_, medledger_node::ServiceError>((unit, verified, steps))
    })
    .await;
    let (unit, verified, steps) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(medledger_node::ServiceError::Invalid(reason))) => {
            return form_page(
                shell,
                StatusCode::BAD_REQUEST,
                Some(format!("That is not a pack's code: {reason}.")),
                code,
            );
        }
        _ => {
            return form_page(
                shell,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The node could not read the trail just now. Try again in a moment.".into()),
                code,
            );
        }
    };
    let rows: Vec<Vec<String>> = steps
        .iter()
        .map(|step| {
            vec![
                utc(step.step.time_ms),
                super::pharmacy::step_text(&step.step.kind),
                step.step.org.clone(),
                match &step.item {
                    Item::Unit(_) => "this pack".to_string(),
                    Item::Container(sscc) => format!("case {sscc}"),
                },
                step.step.location.clone().unwrap_or_default(),
                step.step.height.to_string(),
            ]
        })
        .collect();
    let safe_name: String = unit
        .to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    if format == "csv" {
        return csv(&format!("custody-{safe_name}.csv"), &UNIT_COLUMNS, &rows);
    }
    let verdict = match &verified {
        medledger_node::supply::Verified::Full(verdict) => {
            let reasons: Vec<&str> = verdict.reasons.iter().map(|reason| reason.code()).collect();
            if reasons.is_empty() {
                "genuine".to_string()
            } else {
                format!("suspect: {}", reasons.join(", "))
            }
        }
        medledger_node::supply::Verified::Patient(_) => String::new(),
    };
    page(
        StatusCode::OK,
        &AuditPage {
            shell,
            kind: "unit",
            summary: format!(
                "{} steps in the custody of {unit}; verified now: {verdict}.",
                rows.len()
            ),
            export: format!("code={}", urlencode(&code)),
            asked: code,
            error: None,
            columns: UNIT_COLUMNS.to_vec(),
            rows,
        },
    )
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn trial_trail(
    state: &AppState,
    shell: Shell,
    key: medledger_crypto::PublicKey,
    study: String,
    format: &str,
) -> Response {
    let Some(trials) = state.services.get::<Trials>() else {
        return form_page(
            shell,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("This node does not follow clinical trials.".into()),
            study,
        );
    };
    let node = state.node.clone();
    let id = study.trim().to_string();
    let found = tokio::task::spawn_blocking(move || {
        let (authority, _) = node.account(&key).map_err(|e| e.to_string())?;
        let authority: Authority = authority?;
        trials.audit(&authority, &id, 0).map_err(|e| e.to_string())
    })
    .await;
    let trail = match found {
        Ok(Ok(trail)) => trail,
        Ok(Err(reason)) => {
            return form_page(
                shell,
                StatusCode::NOT_FOUND,
                Some(format!("No trail of trial {:?}: {reason}.", study.trim())),
                study,
            );
        }
        Err(_) => {
            return form_page(
                shell,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The node could not read the trail just now. Try again in a moment.".into()),
                study,
            );
        }
    };
    // Each entry of the trail with the state key that proves it.
    let mut rows = Vec::new();
    for (section, label) in [
        ("versions", "protocol version"),
        ("subjects", "participant"),
        ("signatures", "signature"),
        ("adverse_events", "adverse event"),
        ("captures", "data capture"),
    ] {
        for entry in trail[section].as_array().into_iter().flatten() {
            let key = entry["key"].as_str().unwrap_or_default().to_string();
            let mut detail = entry.clone();
            if let Some(object) = detail.as_object_mut() {
                object.remove("key");
            }
            rows.push(vec![label.to_string(), key, detail.to_string()]);
        }
    }
    let safe_name: String = study
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    if format == "csv" {
        return csv(&format!("trial-{safe_name}.csv"), &TRIAL_COLUMNS, &rows);
    }
    let title = trail["study"]["title"].as_str().unwrap_or_default();
    page(
        StatusCode::OK,
        &AuditPage {
            shell,
            kind: "trial",
            summary: format!(
                "Trial {} ({title}): {} entries, each provable by its state key against a certified header.",
                study.trim(),
                rows.len()
            ),
            export: format!("study={}", urlencode(study.trim())),
            asked: study,
            error: None,
            columns: TRIAL_COLUMNS.to_vec(),
            rows: rows
                .into_iter()
                .map(|mut row| {
                    row[1] = short(&row[1]);
                    row
                })
                .collect(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        for (text, field) in [
            ("plain", "plain"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("", ""),
        ] {
            assert_eq!(csv_field(text), field, "{text:?}");
        }
        assert_eq!(
            urlencode("(01)09506000134352\u{1d}21x"),
            "%2801%2909506000134352%1D21x"
        );
    }
}
