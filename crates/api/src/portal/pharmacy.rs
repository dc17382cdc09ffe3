//! The pharmacist's scan page: one field that takes what a keyboard-wedge scanner types (a GS1
//! element string with its group separators and symbology identifier, a bracketed element string,
//! or a Digital Link URL), and the verdict in large, plain words (genuine, recalled, expired,
//! suspect, already dispensed, unknown) with its reasons and the unit's custody trail beneath.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use medledger_node::supply::{Supply, Verified};
use medledger_supply::{Item, StepKind, SupplyOp, SupplyPayload, Suspect, UnitStatus};
use medledger_types::Role;
use serde::Deserialize;

use super::session::{Audience, Member, MemberForm, outcome};
use super::{Shell, page, short, utc};
use crate::AppState;

/// The longest scan read (a Digital Link with every attribute is well under this).
pub const SCAN_CHARS_MAX: usize = 512;

/// Who scans packs: pharmacists, manufacturers and distributors.
pub(crate) struct GoodsHandlers;

impl Audience for GoodsHandlers {
    const ROLES: &'static [Role] = &[Role::Pharmacy, Role::Manufacturer, Role::Distributor];
    const WHAT: &'static str = "The scan page is for pharmacists, manufacturers and distributors.";
}

/// Who dispenses: pharmacists.
pub(crate) struct Pharmacists;

impl Audience for Pharmacists {
    const ROLES: &'static [Role] = &[Role::Pharmacy];
    const WHAT: &'static str = "Pharmacists dispense.";
}

#[derive(Deserialize)]
pub(crate) struct Scan {
    code: Option<String>,
}

struct TrailRow {
    time: String,
    what: String,
    org: String,
    item: String,
    location: String,
}

/// A verdict in plain words: the word, whether it is good, and what it means.
struct Verdict {
    word: &'static str,
    good: bool,
    unit: String,
    lot: String,
    expiry: String,
    reasons: Vec<String>,
}

#[derive(Template)]
#[template(path = "portal/scan.html")]
struct ScanPage {
    shell: Shell,
    code: String,
    verdict: Option<Verdict>,
    error: Option<String>,
    trail: Vec<TrailRow>,
    /// A pharmacist may dispense a genuine pack their pharmacy holds.
    may_dispense: bool,
    csrf: String,
    notice: Option<super::Notice>,
}

fn reason_text(reason: &Suspect) -> String {
    match reason {
        Suspect::UnknownGtin => "No product with this GTIN is registered on the chain.".into(),
        Suspect::UnknownSerial => {
            "The product is known, but no pack with this serial number was ever made.".into()
        }
        Suspect::LotMismatch { on_chain } => {
            format!("The lot printed on the pack differs from the lot on the chain ({on_chain}).")
        }
        Suspect::ExpiryMismatch { on_chain } => format!(
            "The expiry printed on the pack differs from the one on the chain ({}).",
            date(*on_chain)
        ),
        Suspect::Expired { expiry } => format!("The pack expired on {}.", date(*expiry)),
        Suspect::Dispensed => "This pack was already dispensed to a patient.".into(),
        Suspect::Destroyed => "This pack was recorded as destroyed.".into(),
        Suspect::Recalled { reason, height } => {
            format!("Its lot was recalled (block {height}): {reason}")
        }
        Suspect::NotInCustody { custodian } => {
            format!("The chain says {custodian} holds this pack, not your pharmacy.")
        }
        Suspect::ColdChainExcursion { excursions } => format!(
            "It was kept outside its storage temperature ({} excursion{}).",
            excursions.len(),
            if excursions.len() == 1 { "" } else { "s" }
        ),
    }
}

fn date(yyyymmdd: u32) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        yyyymmdd / 10_000,
        yyyymmdd / 100 % 100,
        yyyymmdd % 100
    )
}

/// The one word a pharmacist reads first: the gravest reason decides it.
fn word(verdict: &medledger_supply::Verdict) -> (&'static str, bool) {
    if verdict.reasons.is_empty() {
        return ("Genuine", true);
    }
    let has = |code: &str| verdict.reasons.iter().any(|reason| reason.code() == code);
    let word = if has("recalled") {
        "Recalled"
    } else if has("unknown_gtin") || has("unknown_serial") {
        "Unknown"
    } else if has("dispensed") {
        "Already dispensed"
    } else if has("expired") {
        "Expired"
    } else {
        "Suspect"
    };
    (word, false)
}

pub(crate) fn step_text(kind: &StepKind) -> String {
    match kind {
        StepKind::Commissioned => "made and serialised".into(),
        StepKind::Packed { into } => format!("packed into case {into}"),
        StepKind::Unpacked { from } => format!("unpacked from case {from}"),
        StepKind::Shipped { to, .. } => format!("shipped to {to}"),
        StepKind::Received { .. } => "received".into(),
        StepKind::Dispensed => "dispensed".into(),
        StepKind::ReturnedToStock => "returned to stock".into(),
        StepKind::Destroyed => "destroyed".into(),
    }
}

pub(crate) async fn scan(
    State(state): State<AppState>,
    query: Result<Query<Scan>, axum::extract::rejection::QueryRejection>,
    Member { who, .. }: Member<GoodsHandlers>,
) -> Response {
    let code = query
        .ok()
        .and_then(|Query(scan)| scan.code)
        .unwrap_or_default();
    scan_page(&state, &who, code, None).await
}

/// The scan page for `code` (blank if empty), with the notice of what was just done.
async fn scan_page(
    state: &AppState,
    who: &super::Who,
    code: String,
    notice: Option<super::Notice>,
) -> Response {
    let shell = Shell::signed_in(state, who);
    let blank = ScanPage {
        shell,
        code: String::new(),
        verdict: None,
        error: None,
        trail: Vec::new(),
        may_dispense: false,
        csrf: who.csrf.clone(),
        notice,
    };
    if code.trim().is_empty() {
        return page(StatusCode::OK, &blank);
    }
    if code.chars().count() > SCAN_CHARS_MAX {
        return page(
            StatusCode::BAD_REQUEST,
            &ScanPage {
                error: Some(format!(
                    "That is longer than any pack's code ({SCAN_CHARS_MAX} characters at most). \
                     Scan again."
                )),
                ..blank
            },
        );
    }
    let Some(supply) = state.services.get::<Supply>() else {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            &ScanPage {
                error: Some("This node does not follow the supply chain.".into()),
                ..blank
            },
        );
    };
    let key = who.member;
    let scanned = code.clone();
    let found = tokio::task::spawn_blocking(move || {
        let (_, verified) = supply.verify(&key, &scanned)?;
        let trail = match &verified {
            Verified::Full(verdict) => supply.trace(&Item::Unit(verdict.unit.clone()))?.1,
            Verified::Patient(_) => Vec::new(),
        };
        Ok::<_, medledger_node::ServiceError>((verified, trail))
    })
    .await;
    let (verified, trail) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            let text = match error {
                medledger_node::ServiceError::Invalid(reason) => format!(
                    "That scan could not be read as a pack's code: {reason}. Scan the pack's \
                     DataMatrix again, or type its code as printed, such as \
                     (01)09506000134376(17)271231(10)LOT1(21)SERIAL1."
                ),
                _ => "The node could not check the pack just now. Try again in a moment.".into(),
            };
            return page(
                StatusCode::BAD_REQUEST,
                &ScanPage {
                    code,
                    error: Some(text),
                    ..blank
                },
            );
        }
        Err(_) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                &ScanPage {
                    code,
                    error: Some("The node could not check the pack just now.".into()),
                    ..blank
                },
            );
        }
    };
    let Verified::Full(verdict) = verified else {
        // Only pharmacy roles reach here, and they get the whole verdict.
        return page(StatusCode::OK, &blank);
    };
    let (word, good) = word(&verdict);
    let rows = trail
        .iter()
        .map(|step| TrailRow {
            time: utc(step.step.time_ms),
            what: step_text(&step.step.kind),
            org: step.step.org.clone(),
            item: match &step.item {
                Item::Unit(_) => "this pack".into(),
                Item::Container(sscc) => format!("case {}", short(&sscc.to_string())),
            },
            location: step.step.location.clone().unwrap_or_default(),
        })
        .collect();
    page(
        StatusCode::OK,
        &ScanPage {
            shell: blank.shell,
            code,
            may_dispense: good && who.role == Some(Role::Pharmacy),
            verdict: Some(Verdict {
                word,
                good,
                unit: verdict.unit.to_string(),
                lot: verdict.lot.clone().unwrap_or_default(),
                expiry: verdict.expiry.map(date).unwrap_or_default(),
                reasons: verdict.reasons.iter().map(reason_text).collect(),
            }),
            error: None,
            trail: rows,
            csrf: blank.csrf,
            notice: blank.notice,
        },
    )
}

/// Dispenses the scanned pack: a status change signed by the pharmacist, which the chain
/// refuses unless their pharmacy holds the pack, loose, and it is active.
pub(crate) async fn dispense(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Pharmacists>,
) -> Response {
    let code = fields.get("code").cloned().unwrap_or_default();
    let Ok((unit, _)) = medledger_node::supply::parse_unit_code(&code) else {
        return scan_page(&state, &who, code, None).await;
    };
    let op = SupplyPayload::Supply {
        ops: vec![SupplyOp::SetStatus {
            units: vec![unit],
            status: UnitStatus::Dispensed,
        }],
    };
    let result = super::session::sign_and_submit(&state, &session, op.into()).await;
    let (notice, _) = outcome(
        result,
        "Dispensed: the chain now records this pack as dispensed by your pharmacy",
        Some(
            "The dispense is sent but the chain has not decided it yet: do not hand the pack \
             out until this page, reloaded, says it is dispensed.",
        ),
    );
    scan_page(&state, &who, code, Some(notice)).await
}
