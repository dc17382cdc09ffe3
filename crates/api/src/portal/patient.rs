//! The patient's pages: every access to their records (who, for what purpose, when, allowed or
//! not, break-glass standing out, and research releases), and their consents, which they grant
//! and revoke here. Each grant and revocation is a transaction signed with the patient's key.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medledger_crypto::{Hash, PublicKey};
use medledger_node::records::Records;
use medledger_records::{
    ConsentGrant, Grantee, Provision, ProvisionKind, Purpose, RecordsOp, Scope,
};
use medledger_types::Role;
use serde::Deserialize;

use super::session::{Audience, Member, MemberForm, now_s, outcome, sign_and_submit};
use super::{Notice, Shell, page, service, short, unreadable, utc};
use crate::AppState;

/// Accesses the page lists, newest first.
pub const ACCESSES_SHOWN: u64 = 200;
/// Resource types a patient picks from when granting (or "everything").
pub const GRANTABLE_TYPES: [&str; 8] = [
    "Observation",
    "Condition",
    "MedicationRequest",
    "Immunization",
    "AllergyIntolerance",
    "DiagnosticReport",
    "DocumentReference",
    "Procedure",
];

/// A patient's own pages.
pub(crate) struct Patients;

impl Audience for Patients {
    const ROLES: &'static [Role] = &[Role::Patient];
    const WHAT: &'static str = "These pages show a patient their own records, consents and claims.";
}

struct AccessRow {
    time: String,
    reader_org: String,
    reader_role: String,
    reader: String,
    purpose: String,
    allowed: bool,
    break_glass: bool,
    custodian: String,
    records: usize,
}

struct ReleaseRow {
    time: String,
    researcher_org: String,
    custodian: String,
    release: u32,
}

#[derive(Template)]
#[template(path = "portal/patient_access.html")]
struct AccessPage {
    shell: Shell,
    total: u64,
    accesses: Vec<AccessRow>,
    break_glass: usize,
    releases_total: u64,
    releases: Vec<ReleaseRow>,
}

/// The records service, or the page that says this node keeps none.
fn records(state: &AppState, shell: &Shell) -> Result<Records, Response> {
    service(
        state,
        shell,
        "health records",
        "Open the portal of the organisation that holds your records.",
    )
}

pub(crate) async fn access(
    State(state): State<AppState>,
    Member { who, .. }: Member<Patients>,
) -> Response {
    let shell = Shell::signed_in(&state, &who);
    let records = match records(&state, &shell) {
        Ok(records) => records,
        Err(response) => return response,
    };
    let node = state.node.clone();
    let key = who.member;
    let found = tokio::task::spawn_blocking(move || {
        let (ids, _, _) = records.patient_view(&key).map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        let mut total = 0;
        for id in ids {
            let count = records.access_log(&id, 0, 0).map_err(|e| e.to_string())?.1;
            total += count;
            let (mut found, _) = records
                .access_log(&id, count.saturating_sub(ACCESSES_SHOWN), ACCESSES_SHOWN)
                .map_err(|e| e.to_string())?;
            events.append(&mut found);
        }
        let (_, research) = node
            .read_head(|view| Ok(medledger_research::access_log(view, &key, ACCESSES_SHOWN)?))
            .map_err(|e| e.to_string())?;
        let research = research.map_err(|e| e.to_string())?;
        Ok::<_, String>((total, events, research))
    })
    .await;
    let Ok(Ok((total, mut events, (releases_total, releases)))) = found else {
        return unreadable(shell, "your records");
    };
    events.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then(b.height.cmp(&a.height)));
    events.truncate(ACCESSES_SHOWN as usize);
    let accesses: Vec<AccessRow> = events
        .iter()
        .map(|event| AccessRow {
            time: utc(event.time_ms),
            reader_org: event.reader_org.clone(),
            reader_role: event.reader_role.map_or_else(
                || "organisation".to_string(),
                |role| role.as_str().to_string(),
            ),
            reader: short(&event.reader.to_string()),
            purpose: event.purpose.display().to_string(),
            allowed: event.allowed(),
            break_glass: event.break_glass,
            custodian: event.custodian.clone(),
            records: event.decisions.len(),
        })
        .collect();
    let releases = releases
        .iter()
        .rev()
        .map(|release| ReleaseRow {
            time: utc(release.time_ms),
            researcher_org: release.researcher_org.clone(),
            custodian: release.custodian.clone(),
            release: release.release,
        })
        .collect();
    page(
        StatusCode::OK,
        &AccessPage {
            break_glass: accesses.iter().filter(|row| row.break_glass).count(),
            shell,
            total,
            accesses,
            releases_total,
            releases,
        },
    )
}

struct GrantRow {
    id: String,
    id_short: String,
    kind: &'static str,
    to: String,
    data: String,
    purposes: String,
    from: String,
    until: String,
    active: bool,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "portal/patient_consents.html")]
struct ConsentsPage {
    shell: Shell,
    csrf: String,
    grants: Vec<GrantRow>,
    purposes: Vec<(&'static str, &'static str)>,
    types: [&'static str; 8],
    notice: Option<Notice>,
    /// Who may grant and revoke consent for the patient.
    delegates: Vec<String>,
    /// What the person typed, shown again when the chain refused it.
    kept: BTreeMap<String, String>,
}

impl ConsentsPage {
    /// A field as the person typed it ("" if they did not).
    fn typed(&self, name: &str) -> &str {
        self.kept.get(name).map_or("", String::as_str)
    }

    /// Whether the person chose `value` for a field.
    fn is(&self, name: &str, value: &str) -> bool {
        self.typed(name) == value
    }
}

fn grantee_text(grantee: &Grantee) -> String {
    match grantee {
        Grantee::Key(key) => format!("the member {}", short(&key.to_string())),
        Grantee::Organisation(org) => format!("everyone at {org}"),
        Grantee::Role(role) => format!("every {}", role.as_str()),
    }
}

fn scope_text(scope: &[Scope]) -> String {
    if scope.is_empty() {
        return "all your records".into();
    }
    scope
        .iter()
        .map(|scope| match scope {
            Scope::ResourceType(kind) => kind.clone(),
            Scope::Category(code) => format!("category {code}"),
            Scope::Record(id) => format!("record {}", short(&id.to_string())),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

async fn consents_page(
    state: &AppState,
    who: &super::Who,
    notice: Option<Notice>,
    typed: BTreeMap<String, String>,
    status: StatusCode,
) -> Response {
    let shell = Shell::signed_in(state, who);
    let records = match records(state, &shell) {
        Ok(records) => records,
        Err(response) => return response,
    };
    let key = who.member;
    let Ok(Ok(((_, grants, time_ms), delegates))) = tokio::task::spawn_blocking(move || {
        Ok::<_, medledger_node::ServiceError>((
            records.patient_view(&key)?,
            records.delegates(&key)?,
        ))
    })
    .await
    else {
        return unreadable(shell, "your records");
    };
    let mut rows: Vec<GrantRow> = grants
        .iter()
        .flat_map(|entry| {
            entry
                .grant
                .provisions
                .iter()
                .map(move |provision| GrantRow {
                    id: entry.id.to_string(),
                    id_short: short(&entry.id.to_string()),
                    kind: match provision.kind {
                        ProvisionKind::Permit => "allows",
                        ProvisionKind::Deny => "refuses",
                    },
                    to: if provision.actors.is_empty() {
                        "anyone".into()
                    } else {
                        provision
                            .actors
                            .iter()
                            .map(grantee_text)
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    data: scope_text(&provision.scope),
                    purposes: if provision.purposes.is_empty() {
                        "any purpose".into()
                    } else {
                        provision
                            .purposes
                            .iter()
                            .map(|purpose| purpose.display())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                    from: utc(entry.grant.start_ms),
                    until: entry
                        .grant
                        .end_ms
                        .map_or_else(|| "until you revoke it".into(), utc),
                    active: entry.active_at(time_ms),
                    revoked: entry.revoked_at.is_some(),
                })
        })
        .collect();
    rows.sort_by_key(|row| (!row.active, row.revoked));
    page(
        status,
        &ConsentsPage {
            shell,
            csrf: who.csrf.clone(),
            grants: rows,
            purposes: Purpose::ALL
                .iter()
                .filter(|purpose| **purpose != Purpose::EmergencyTreat)
                .map(|purpose| (purpose.code(), purpose.display()))
                .collect(),
            types: GRANTABLE_TYPES,
            notice,
            delegates: delegates.iter().map(ToString::to_string).collect(),
            kept: typed,
        },
    )
}

pub(crate) async fn consents(
    State(state): State<AppState>,
    Member { who, .. }: Member<Patients>,
) -> Response {
    consents_page(&state, &who, None, BTreeMap::new(), StatusCode::OK).await
}

/// Reads the grant form into a grant, or says in plain words what is wrong with it.
fn grant_from(
    patient: PublicKey,
    fields: &BTreeMap<String, String>,
    now_ms: u64,
) -> Result<ConsentGrant, String> {
    let field = |name: &str| fields.get(name).map(|value| value.trim()).unwrap_or("");
    let who = field("who");
    let grantee = match field("grantee_kind") {
        "key" => Grantee::Key(PublicKey::from_hex(who).map_err(|_| {
            "a member is named by their public key: 64 hexadecimal characters".to_string()
        })?),
        "org" if !who.is_empty() && who.len() <= 64 => Grantee::Organisation(who.to_string()),
        "org" => return Err("name the organisation (its id, such as hospital-a)".into()),
        "role" => Grantee::Role(who.parse::<Role>().map_err(|_| {
            format!(
                "{who:?} is not a role; roles are {}",
                Role::ALL.map(Role::as_str).join(", ")
            )
        })?),
        _ => return Err("choose whom the consent is for".into()),
    };
    let purpose = field("purpose")
        .parse::<Purpose>()
        .map_err(|_| "choose a purpose".to_string())?;
    if purpose == Purpose::EmergencyTreat {
        return Err("emergency access needs no consent; it is always shown to you".into());
    }
    let scope = match field("data") {
        "" | "all" => Vec::new(),
        kind if GRANTABLE_TYPES.contains(&kind) => vec![Scope::ResourceType(kind.to_string())],
        _ => return Err("choose which records the consent covers".into()),
    };
    let end_ms = match field("until") {
        "" => None,
        date => Some(date_ms(date).ok_or_else(|| {
            format!("{date:?} is not a date; write it as year-month-day, such as 2027-06-30")
        })?),
    };
    if end_ms.is_some_and(|end| end <= now_ms) {
        return Err("the end date has passed; choose a later one".into());
    }
    Ok(ConsentGrant {
        patient,
        provisions: vec![Provision {
            kind: if field("deny") == "yes" {
                ProvisionKind::Deny
            } else {
                ProvisionKind::Permit
            },
            actors: vec![grantee],
            scope,
            purposes: vec![purpose],
        }],
        // A minute's slack, so the grant is in force in the block that carries it.
        start_ms: now_ms.saturating_sub(60_000),
        end_ms,
    })
}

/// `YYYY-MM-DD` to the start of that day, UTC, in milliseconds.
fn date_ms(text: &str) -> Option<u64> {
    let mut parts = text.split('-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: i64 = parts.next()?.parse().ok()?;
    let day: i64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if day < 1 || day > days_in_month[(month - 1) as usize] {
        return None;
    }
    // Civil date to days since 1970 (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).ok().map(|days| days * 86_400_000)
}

pub(crate) async fn grant(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Patients>,
) -> Response {
    let now_ms = now_s() * 1_000;
    let mut typed = fields.clone();
    typed.remove("csrf");
    let grant = match grant_from(who.member, &fields, now_ms) {
        Ok(grant) => grant,
        Err(reason) => {
            let notice = Notice {
                good: false,
                text: format!("Nothing was granted: {reason}."),
            };
            return consents_page(&state, &who, Some(notice), typed, StatusCode::BAD_REQUEST).await;
        }
    };
    let result = sign_and_submit(&state, &session, RecordsOp::GrantConsent { grant }.into()).await;
    let (notice, status) = outcome(result, "Your consent is granted and in force", None);
    // What was typed stays in the form unless it reached the chain.
    let typed = if status.is_success() {
        BTreeMap::new()
    } else {
        typed
    };
    consents_page(&state, &who, Some(notice), typed, status).await
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Patients>,
) -> Response {
    let Some(grant) = fields
        .get("grant")
        .and_then(|text| Hash::from_hex(text.trim()).ok())
    else {
        return Redirect::to("/portal/patient/consents").into_response();
    };
    let result = sign_and_submit(&state, &session, RecordsOp::RevokeConsent { grant }.into()).await;
    let (notice, status) = outcome(
        result,
        "The consent is revoked: from now on it allows nothing",
        None,
    );
    consents_page(&state, &who, Some(notice), BTreeMap::new(), status).await
}

#[derive(Template)]
#[template(path = "portal/patient_erase.html")]
struct ErasePage {
    shell: Shell,
    csrf: String,
    /// The patients held here under this key (usually one).
    held: usize,
    notice: Option<Notice>,
}

/// The patient ids this node holds for the member, each checked to be bound to their key.
fn held_patients(records: &Records, key: &PublicKey) -> Result<Vec<Hash>, String> {
    let (ids, _, _) = records.patient_view(key).map_err(|e| e.to_string())?;
    let mut held = Vec::new();
    for id in ids {
        let entry = records.patient(&id).map_err(|e| e.to_string())?;
        let custodian = records.custodian().map_err(|e| e.to_string())?;
        if entry.is_some_and(|entry| entry.key == Some(*key) && entry.custodian == custodian) {
            held.push(id);
        }
    }
    Ok(held)
}

async fn erase_page(
    state: &AppState,
    who: &super::Who,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let shell = Shell::signed_in(state, who);
    let records = match records(state, &shell) {
        Ok(records) => records,
        Err(response) => return response,
    };
    let key = who.member;
    let Ok(Ok(held)) = tokio::task::spawn_blocking(move || held_patients(&records, &key)).await
    else {
        return unreadable(shell, "your records");
    };
    page(
        status,
        &ErasePage {
            shell,
            csrf: who.csrf.clone(),
            held: held.len(),
            notice,
        },
    )
}

pub(crate) async fn erasure(
    State(state): State<AppState>,
    Member { who, .. }: Member<Patients>,
) -> Response {
    erase_page(&state, &who, None, StatusCode::OK).await
}

/// Erases every patient this node holds under the member's key, once they confirmed they
/// understand. The node signs the erasure, as it does for a patient's signed `$erase`.
pub(crate) async fn erase(
    State(state): State<AppState>,
    MemberForm { who, fields, .. }: MemberForm<Patients>,
) -> Response {
    if fields.get("understood").map(String::as_str) != Some("yes") {
        let notice = Notice {
            good: false,
            text: "Nothing was erased: tick the box to say you understand what erasure means."
                .into(),
        };
        return erase_page(&state, &who, Some(notice), StatusCode::BAD_REQUEST).await;
    }
    let shell = Shell::signed_in(&state, &who);
    let records = match records(&state, &shell) {
        Ok(records) => records,
        Err(response) => return response,
    };
    let key = who.member;
    let finder = records.clone();
    let Ok(Ok(held)) = tokio::task::spawn_blocking(move || held_patients(&finder, &key)).await
    else {
        return unreadable(shell, "your records");
    };
    if held.is_empty() {
        let notice = Notice {
            good: false,
            text: "This node holds no records of yours, so there is nothing here to erase.".into(),
        };
        return erase_page(&state, &who, Some(notice), StatusCode::NOT_FOUND).await;
    }
    let mut heights = Vec::new();
    for patient in held {
        match records.erase(patient).await {
            Ok(height) => heights.push(height),
            Err(error) => {
                let notice = Notice {
                    good: false,
                    text: format!(
                        "The erasure did not finish: {error}. Try again; erasing twice is harmless."
                    ),
                };
                return erase_page(&state, &who, Some(notice), StatusCode::SERVICE_UNAVAILABLE)
                    .await;
            }
        }
    }
    let notice = Notice {
        good: true,
        text: format!(
            "Your records are erased (block {}): their keys and encrypted content are destroyed \
             on every node. The record of who accessed them stays, as the law requires.",
            heights.iter().max().copied().unwrap_or_default()
        ),
    };
    erase_page(&state, &who, Some(notice), StatusCode::OK).await
}

/// Names or drops a delegate, who may then grant and revoke consent for the patient.
pub(crate) async fn delegate(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Patients>,
) -> Response {
    let text = fields.get("delegate").map(|text| text.trim()).unwrap_or("");
    let Ok(delegate) = PublicKey::from_hex(text) else {
        let notice = Notice {
            good: false,
            text: "Nothing changed: a delegate is named by their member key, 64 hexadecimal \
                   characters."
                .into(),
        };
        return consents_page(
            &state,
            &who,
            Some(notice),
            BTreeMap::new(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let active = fields.get("remove").map(String::as_str) != Some("yes");
    let op = RecordsOp::SetDelegate { delegate, active };
    let done = if active {
        "They may now grant and revoke consent for you"
    } else {
        "They may no longer act for you"
    };
    let (notice, status) = outcome(
        sign_and_submit(&state, &session, op.into()).await,
        done,
        None,
    );
    consents_page(&state, &who, Some(notice), BTreeMap::new(), status).await
}

struct ClaimRow {
    submitted: String,
    provider: String,
    plan: String,
    state: &'static str,
    charged: String,
    plan_pays: String,
    you_owe: String,
    reasons: Vec<String>,
}

#[derive(Template)]
#[template(path = "portal/patient_claims.html")]
struct ClaimsPage {
    shell: Shell,
    claims: Vec<ClaimRow>,
}

/// The patient's claims and what each paid: their explanation of benefits.
pub(crate) async fn claims(
    State(state): State<AppState>,
    Member { who, .. }: Member<Patients>,
) -> Response {
    let shell = Shell::signed_in(&state, &who);
    let claims: medledger_node::claims::Claims = match service(
        &state,
        &shell,
        "claims",
        "Your claims are shown by the node of the organisation that sent them.",
    ) {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let node = state.node.clone();
    let key = who.member;
    let found = tokio::task::spawn_blocking(move || {
        let (_, _, entries) = claims
            .list_for(&key, &medledger_claims::Listing::Member(key), 0, 1_000)
            .map_err(|e| e.to_string())?;
        let units = super::payer::token_units(&node, &entries)?;
        Ok::<_, String>((entries, units))
    })
    .await;
    let Ok(Ok((entries, units))) = found else {
        return unreadable(shell, "your claims");
    };
    let mut rows: Vec<ClaimRow> = entries
        .iter()
        .zip(units)
        .map(|(entry, (symbol, decimals))| {
            use medledger_claims::ClaimStatus;
            let totals = entry.totals();
            let money = |units| super::payer::amount(units, decimals, &symbol);
            ClaimRow {
                submitted: utc(entry.submitted.time_ms),
                provider: entry.provider_org.clone(),
                plan: entry.plan.clone(),
                state: match entry.status {
                    ClaimStatus::Pending => "waiting for the payer's review",
                    ClaimStatus::Adjudicated => "decided",
                    ClaimStatus::Authorised => "authorised in advance",
                    ClaimStatus::Denied => "denied",
                    ClaimStatus::Appealed => "appealed",
                },
                charged: money(totals.charged),
                plan_pays: money(totals.payer),
                you_owe: money(totals.patient),
                reasons: entry
                    .findings
                    .iter()
                    .map(|finding| super::payer::check_words(finding.check).to_string())
                    .collect(),
            }
        })
        .collect();
    rows.reverse();
    page(
        StatusCode::OK,
        &ClaimsPage {
            shell,
            claims: rows,
        },
    )
}

struct BalanceRow {
    symbol: String,
    name: String,
    balance: String,
}

struct MovementRow {
    time: String,
    what: &'static str,
    amount: String,
    incoming: bool,
}

#[derive(Template)]
#[template(path = "portal/patient_tokens.html")]
struct TokensPage {
    shell: Shell,
    balances: Vec<BalanceRow>,
    movements: Vec<MovementRow>,
    total: u64,
}

/// Movements the tokens page lists, newest first.
pub const MOVEMENTS_SHOWN: u64 = 50;

fn reason_words(reason: medledger_tokens::Reason) -> &'static str {
    use medledger_tokens::Reason;
    match reason {
        Reason::Issuance => "issued",
        Reason::Redemption => "redeemed",
        Reason::Settlement => "claim settlement",
        Reason::PatientShare => "your share of a claim",
        Reason::Refund => "refund",
        Reason::Reward => "reward",
        Reason::Adjustment => "correction",
        Reason::Fee => "fee",
        Reason::Transfer => "transfer",
        Reason::Escrow => "escrow",
    }
}

/// The patient's token balances, their rewards and other movements, newest first.
pub(crate) async fn tokens(
    State(state): State<AppState>,
    Member { who, .. }: Member<Patients>,
) -> Response {
    let shell = Shell::signed_in(&state, &who);
    let key = who.member;
    let node = state.node.clone();
    let found = tokio::task::spawn_blocking(move || {
        node.read_head(|view| {
            let mut classes = BTreeMap::new();
            for symbol in medledger_tokens::classes(view)? {
                if let Some(class) = medledger_tokens::class(view, &symbol)? {
                    let balance = medledger_tokens::balance(view, &symbol, &key)?;
                    classes.insert(symbol, (class, balance));
                }
            }
            Ok(classes)
        })
    })
    .await;
    let Ok(Ok((_, Ok(classes)))) = found else {
        return unreadable(shell, "your tokens");
    };
    let (total, movements) = match state.services.get::<medledger_node::tokens::Tokens>() {
        Some(service) => {
            let count = match service.statement(&key, 0, 0).await {
                Ok(statement) => statement.total,
                Err(_) => return unreadable(shell, "your tokens"),
            };
            match service
                .statement(&key, count.saturating_sub(MOVEMENTS_SHOWN), MOVEMENTS_SHOWN)
                .await
            {
                Ok(statement) => (count, statement.movements),
                Err(_) => return unreadable(shell, "your tokens"),
            }
        }
        None => (0, Vec::new()),
    };
    let money = |symbol: &str, units: u128| {
        let decimals = classes.get(symbol).map_or(0, |(class, _)| class.decimals);
        super::payer::amount(units, decimals, symbol)
    };
    let mut rows: Vec<MovementRow> = movements
        .iter()
        .map(|movement| MovementRow {
            time: utc(movement.time_ms),
            what: reason_words(movement.reason),
            amount: money(&movement.symbol, movement.amount.0),
            incoming: movement.to == Some(key),
        })
        .collect();
    rows.reverse();
    let balances = classes
        .iter()
        .map(|(symbol, (class, balance))| BalanceRow {
            symbol: symbol.clone(),
            name: class.name.clone(),
            balance: money(symbol, *balance),
        })
        .collect();
    page(
        StatusCode::OK,
        &TokensPage {
            shell,
            balances,
            movements: rows,
            total,
        },
    )
}

/// The research uses a patient may allow from the portal, as DUO permission codes.
const RESEARCH_USES: [(&str, &str); 3] = [
    ("DUO:0000042", "any research (general research use)"),
    ("DUO:0000006", "health, medical or biomedical research"),
    ("DUO:0000007", "research on one disease only"),
];

/// The conditions a patient may add, as DUO modifier codes.
const RESEARCH_CONDITIONS: [(&str, &str); 3] = [
    ("DUO:0000046", "not for commercial use"),
    ("DUO:0000019", "the results must be published"),
    ("DUO:0000021", "an ethics committee must approve the study"),
];

#[derive(Template)]
#[template(path = "portal/patient_research.html")]
struct ResearchPage {
    shell: Shell,
    csrf: String,
    /// The consent in force, in words, if any.
    current: Option<Vec<String>>,
    uses: [(&'static str, &'static str); 3],
    conditions: [(&'static str, &'static str); 3],
    notice: Option<Notice>,
}

fn code_words(code: &str) -> String {
    RESEARCH_USES
        .iter()
        .chain(RESEARCH_CONDITIONS.iter())
        .find(|(known, _)| *known == code)
        .map_or_else(|| code.to_string(), |(_, words)| (*words).to_string())
}

async fn research_page(
    state: &AppState,
    who: &super::Who,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let shell = Shell::signed_in(state, who);
    let node = state.node.clone();
    let key = who.member;
    let found =
        tokio::task::spawn_blocking(move || {
            node.read_head(|view| {
                let time_ms = medledger_ledger::chain_head(view)?.time_ms;
                Ok(medledger_research::consent(view, &key)?
                    .filter(|consent| consent.in_force(time_ms)))
            })
        })
        .await;
    let Ok(Ok((_, Ok(consent)))) = found else {
        return unreadable(shell, "your research consent");
    };
    let current = consent.map(|consent| {
        let mut lines: Vec<String> = consent.terms.codes.iter().map(|c| code_words(c)).collect();
        if let Some(disease) = &consent.terms.disease {
            lines.push(format!("the disease: {disease}"));
        }
        lines.push(match consent.end_ms {
            Some(end) => format!("until {}", utc(end)),
            None => "until you stop it".into(),
        });
        lines
    });
    page(
        status,
        &ResearchPage {
            shell,
            csrf: who.csrf.clone(),
            current,
            uses: RESEARCH_USES,
            conditions: RESEARCH_CONDITIONS,
            notice,
        },
    )
}

pub(crate) async fn research(
    State(state): State<AppState>,
    Member { who, .. }: Member<Patients>,
) -> Response {
    research_page(&state, &who, None, StatusCode::OK).await
}

/// Shares (or stops sharing) the patient's data for research on the terms they chose.
pub(crate) async fn set_research(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Patients>,
) -> Response {
    let op = if fields.get("stop").map(String::as_str) == Some("yes") {
        medledger_research::ResearchOp::RevokeResearchConsent
    } else {
        let field = |name: &str| fields.get(name).map(|v| v.trim()).unwrap_or("");
        let refuse = |text: &str| Notice {
            good: false,
            text: format!("Nothing changed: {text}."),
        };
        let permission = field("use");
        if !RESEARCH_USES.iter().any(|(code, _)| *code == permission) {
            let notice = refuse("choose which research your data may serve");
            return research_page(&state, &who, Some(notice), StatusCode::BAD_REQUEST).await;
        }
        let disease = field("disease");
        let disease = match (permission == "DUO:0000007", disease.is_empty()) {
            (true, true) => {
                let notice = refuse("name the disease the research must be about");
                return research_page(&state, &who, Some(notice), StatusCode::BAD_REQUEST).await;
            }
            (true, false) => Some(disease.chars().take(100).collect()),
            (false, _) => None,
        };
        let mut codes = vec![permission.to_string()];
        codes.extend(
            RESEARCH_CONDITIONS
                .iter()
                .filter(|(code, _)| fields.contains_key(*code))
                .map(|(code, _)| (*code).to_string()),
        );
        medledger_research::ResearchOp::GrantResearchConsent {
            terms: medledger_research::duo::DuoTerms {
                codes,
                disease,
                institutions: Vec::new(),
            },
            resource_types: Vec::new(),
            end_ms: None,
        }
    };
    let stopping = matches!(op, medledger_research::ResearchOp::RevokeResearchConsent);
    let done = if stopping {
        "Your data is no longer shared for research; nothing more will be released"
    } else {
        "Your data may be shared for research on these terms; every release is shown on your \
         access page"
    };
    let (notice, status) = outcome(
        sign_and_submit(&state, &session, op.into()).await,
        done,
        None,
    );
    research_page(&state, &who, Some(notice), status).await
}

/// A trial the patient takes part in, as its page shows it.
struct Participation {
    study: String,
    title: String,
    sponsor: String,
    subject: String,
    status: &'static str,
    consented: Option<u32>,
    /// The version in force, its reason for amendment, its documents' hashes.
    current: u32,
    reason: String,
    protocol_hash: String,
    /// The participant must consent to the version in force before more data is captured.
    reconsent_needed: bool,
    withdrawn: bool,
}

#[derive(Template)]
#[template(path = "portal/patient_trial.html")]
struct TrialPage {
    shell: Shell,
    csrf: String,
    asked: String,
    participation: Option<Participation>,
    notice: Option<Notice>,
}

async fn trial_page(
    state: &AppState,
    who: &super::Who,
    study: String,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let shell = Shell::signed_in(state, who);
    let study = study.trim().to_string();
    let mut page_data = TrialPage {
        shell,
        csrf: who.csrf.clone(),
        asked: study.clone(),
        participation: None,
        notice,
    };
    if study.is_empty() {
        return page(status, &page_data);
    }
    let node = state.node.clone();
    let key = who.member;
    let id = study.clone();
    let found = tokio::task::spawn_blocking(move || {
        node.read_head(|view| {
            let Some(record) = medledger_trials::study(view, &id)? else {
                return Ok(None);
            };
            let Some(subject_id) = medledger_trials::participant(view, &id, &key)? else {
                return Ok(None);
            };
            let subject = medledger_trials::subject(view, &id, &subject_id)?;
            let version = medledger_trials::protocol_version(view, &id, record.version)?;
            Ok(subject.map(|subject| (record, subject, version)))
        })
    })
    .await;
    let Ok(Ok((_, Ok(found)))) = found else {
        return unreadable(page_data.shell, "the trial");
    };
    let Some((record, subject, version)) = found else {
        page_data.notice = Some(Notice {
            good: false,
            text: format!(
                "You take part in no trial with the id {study:?}. The id is on the information \
                 sheet the trial site gave you."
            ),
        });
        return page(StatusCode::NOT_FOUND, &page_data);
    };
    use medledger_trials::SubjectStatus;
    let withdrawn = subject.status == SubjectStatus::Withdrawn;
    page_data.participation = Some(Participation {
        title: record.title.clone(),
        sponsor: record.sponsor.clone(),
        subject: subject.id.clone(),
        status: match subject.status {
            SubjectStatus::Candidate => "enrolled; your consent is awaited",
            SubjectStatus::OnStudy => "taking part",
            SubjectStatus::Withdrawn => "withdrawn",
        },
        consented: subject.consented_version,
        current: record.version,
        reason: version
            .as_ref()
            .and_then(|version| version.reason.clone())
            .unwrap_or_default(),
        protocol_hash: version
            .as_ref()
            .map(|version| version.protocol_hash.to_string())
            .unwrap_or_default(),
        reconsent_needed: !withdrawn
            && subject
                .consented_version
                .is_none_or(|consented| consented < record.consent_required),
        withdrawn,
        study,
    });
    page(status, &page_data)
}

#[derive(Deserialize)]
pub(crate) struct StudyQuery {
    study: Option<String>,
}

/// A trial the patient takes part in: the protocol version in force, what they consented to,
/// and the eConsent to sign when a new version needs it.
pub(crate) async fn trial(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<StudyQuery>, axum::extract::rejection::QueryRejection>,
    Member { who, .. }: Member<Patients>,
) -> Response {
    let study = query
        .ok()
        .and_then(|axum::extract::Query(query)| query.study)
        .unwrap_or_default();
    trial_page(&state, &who, study, None, StatusCode::OK).await
}

/// Signs the eConsent to the protocol version in force, or withdraws from the trial.
pub(crate) async fn trial_decision(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Patients>,
) -> Response {
    let study = fields.get("study").cloned().unwrap_or_default();
    let version = fields
        .get("version")
        .and_then(|text| text.parse::<u32>().ok());
    let (op, done) = match (fields.get("decision").map(String::as_str), version) {
        (Some("consent"), Some(version)) => (
            medledger_trials::TrialsOp::Consent {
                study: study.clone(),
                version,
            },
            format!("You consented to version {version} of the protocol"),
        ),
        (Some("withdraw"), _) => (
            medledger_trials::TrialsOp::Withdraw {
                study: study.clone(),
                subject: fields.get("subject").cloned().unwrap_or_default(),
            },
            "You have withdrawn from the trial; no more data of yours will be captured".into(),
        ),
        _ => {
            let notice = Notice {
                good: false,
                text: "Nothing changed: the form did not say what to do.".into(),
            };
            return trial_page(&state, &who, study, Some(notice), StatusCode::BAD_REQUEST).await;
        }
    };
    let (notice, status) = outcome(
        sign_and_submit(&state, &session, op.into()).await,
        &done,
        None,
    );
    trial_page(&state, &who, study, Some(notice), status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_the_start_of_their_day() {
        for (text, expected) in [
            ("1970-01-01", Some(0)),
            ("2000-02-29", Some(951_782_400_000)),
            ("2026-12-08", Some(1_796_688_000_000)),
            ("2027-02-29", None),
            ("2026-13-01", None),
            ("2026-12", None),
            ("2026-12-08-01", None),
            ("tomorrow", None),
            ("1969-12-31", None),
        ] {
            assert_eq!(date_ms(text), expected, "{text}");
            if let Some(ms) = expected {
                assert_eq!(&utc(ms)[..10], text);
            }
        }
    }

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn the_grant_form_reads_into_one_provision_or_a_plain_refusal() {
        let patient = medledger_crypto::SecretKey::from_seed(1).public_key();
        let doctor = medledger_crypto::SecretKey::from_seed(2).public_key();
        let now = 1_796_688_000_000;
        let grant = grant_from(
            patient,
            &form(&[
                ("grantee_kind", "key"),
                ("who", &doctor.to_string()),
                ("purpose", "TREAT"),
                ("data", "Observation"),
                ("until", "2027-06-30"),
            ]),
            now,
        )
        .expect("a grant");
        assert_eq!(grant.patient, patient);
        assert_eq!(grant.provisions[0].actors, vec![Grantee::Key(doctor)]);
        assert_eq!(
            grant.provisions[0].scope,
            vec![Scope::ResourceType("Observation".into())]
        );
        assert_eq!(grant.provisions[0].purposes, vec![Purpose::Treat]);
        assert_eq!(grant.provisions[0].kind, ProvisionKind::Permit);
        assert_eq!(grant.start_ms, now - 60_000);
        assert_eq!(grant.end_ms, date_ms("2027-06-30"));
        for (pairs, refusal) in [
            (
                vec![
                    ("grantee_kind", "key"),
                    ("who", "abc"),
                    ("purpose", "TREAT"),
                ],
                "public key",
            ),
            (
                vec![
                    ("grantee_kind", "role"),
                    ("who", "wizard"),
                    ("purpose", "TREAT"),
                ],
                "is not a role",
            ),
            (
                vec![("grantee_kind", "org"), ("who", "h"), ("purpose", "ETREAT")],
                "emergency",
            ),
            (
                vec![
                    ("grantee_kind", "org"),
                    ("who", "h"),
                    ("purpose", "TREAT"),
                    ("until", "2020-01-01"),
                ],
                "has passed",
            ),
            (
                vec![
                    ("grantee_kind", "org"),
                    ("who", "h"),
                    ("purpose", "TREAT"),
                    ("data", "Secrets"),
                ],
                "which records",
            ),
            (vec![("purpose", "TREAT")], "whom"),
        ] {
            let error = grant_from(patient, &form(&pairs), now).expect_err("refused");
            assert!(error.contains(refusal), "{error}");
        }
    }
}
