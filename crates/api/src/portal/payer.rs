//! The payer's review queue: the claims its plans' checks sent for review, each with the reasons
//! it was flagged, and a decision (pay or deny) that is a transaction signed by the reviewer.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medledger_claims::{Check, ClaimStatus, ClaimsOp, Listing};
use medledger_crypto::Hash;
use medledger_ledger::Authority;
use medledger_node::claims::Claims;
use medledger_types::Role;

use super::session::{Audience, Member, MemberForm, outcome, sign_and_submit};
use super::{Notice, Shell, page, service, short, unreadable, utc};
use crate::AppState;

/// Claims the queue reads (oldest first, decided ones skipped).
pub const QUEUE_READ_MAX: u64 = 1_000;

/// A payer's claims reviewers.
pub(crate) struct Payers;

impl Audience for Payers {
    const ROLES: &'static [Role] = &[Role::Insurer];
    const WHAT: &'static str = "The review queue is for a payer's claims reviewers.";
}

/// Why a check sends a claim (or a line) for review, in words.
pub(crate) fn check_words(check: Check) -> &'static str {
    match check {
        Check::Duplicate => "the same service was billed before for this patient and day",
        Check::NotInsured => "the patient is not the coverage's member",
        Check::NotCoveredOnDate => "the date of service is outside the coverage",
        Check::NoEncounter => "the provider holds no record of this service for the patient",
        Check::NoPaymentConsent => "the patient has not consented to share data for payment",
        Check::ProviderNotEligible => "the rendering provider is not an enrolled member",
        Check::AboveAllowed => "the charge is far above the allowed amount",
        Check::ImpossibleQuantity => "more units than one day allows",
        Check::CodePair => "a code pair that is not billed together",
        Check::CodeNotCovered => "the plan does not cover the code",
        Check::NoAuthorisation => "the service needs prior authorisation",
        Check::BenefitMaximum => "the benefit maximum is reached",
        Check::RuleContract => "the plan's rule contract could not decide it",
    }
}

/// Each claim's token: the symbol its plan pays in and the token's decimals.
pub(crate) fn token_units(
    node: &medledger_node::Node,
    entries: &[medledger_claims::ClaimEntry],
) -> Result<Vec<(String, u8)>, String> {
    let (_, units) = node
        .read_head(|view| {
            let mut units = Vec::with_capacity(entries.len());
            for entry in entries {
                let version = entry.items.iter().find_map(|item| item.version);
                let symbol = match version {
                    Some(version) => medledger_claims::policy(view, &entry.plan, version)?
                        .map(|policy| policy.symbol),
                    None => None,
                };
                let decimals = match &symbol {
                    Some(symbol) => {
                        medledger_tokens::class(view, symbol)?.map(|class| class.decimals)
                    }
                    None => None,
                };
                units.push((symbol.unwrap_or_default(), decimals.unwrap_or(0)));
            }
            Ok(units)
        })
        .map_err(|e| e.to_string())?;
    units.map_err(|e| e.to_string())
}

/// An amount in a token's smallest units as the token writes it: `15000`, 2 decimals, `USD` is
/// `150.00 USD`.
pub(crate) fn amount(units: u128, decimals: u8, symbol: &str) -> String {
    let scale = 10u128.pow(u32::from(decimals));
    let text = if decimals == 0 {
        units.to_string()
    } else {
        format!(
            "{}.{:0width$}",
            units / scale,
            units % scale,
            width = decimals as usize
        )
    };
    format!("{text} {symbol}").trim_end().to_string()
}

struct ClaimRow {
    id: String,
    id_short: String,
    provider: String,
    plan: String,
    submitted: String,
    charged: String,
    allowed: String,
    reasons: Vec<String>,
    appeal: bool,
}

#[derive(Template)]
#[template(path = "portal/payer_review.html")]
struct ReviewPage {
    shell: Shell,
    csrf: String,
    org: String,
    claims: Vec<ClaimRow>,
    notice: Option<Notice>,
}

async fn review_page(
    state: &AppState,
    who: &super::Who,
    notice: Option<Notice>,
    status: StatusCode,
) -> Response {
    let shell = Shell::signed_in(state, who);
    let claims: Claims = match service(state, &shell, "claims", "Open your payer's node's portal.")
    {
        Ok(claims) => claims,
        Err(response) => return response,
    };
    let node = state.node.clone();
    let key = who.member;
    let found = tokio::task::spawn_blocking(move || {
        let (authority, _) = node.account(&key).map_err(|e| e.to_string())?;
        let org = match authority? {
            Authority::Member { org, .. } | Authority::Organisation { org } => org,
        };
        let (_, _, entries) = claims
            .list_for(&key, &Listing::Review(org.clone()), 0, QUEUE_READ_MAX)
            .map_err(|e| e.to_string())?;
        let units = token_units(&node, &entries)?;
        Ok::<_, String>((org, entries, units))
    })
    .await;
    let Ok(Ok((org, entries, units))) = found else {
        return unreadable(shell, "the review queue");
    };
    let claims = entries
        .iter()
        .zip(units)
        .filter(|(entry, _)| matches!(entry.status, ClaimStatus::Pending | ClaimStatus::Appealed))
        .map(|(entry, (symbol, decimals))| {
            let totals = entry.totals();
            ClaimRow {
                id: entry.claim.id.to_string(),
                id_short: short(&entry.claim.id.to_string()),
                provider: entry.provider_org.clone(),
                plan: entry.plan.clone(),
                submitted: utc(entry.submitted.time_ms),
                charged: amount(totals.charged, decimals, &symbol),
                allowed: amount(totals.allowed, decimals, &symbol),
                reasons: entry
                    .findings
                    .iter()
                    .filter(|finding| finding.check.reviewed())
                    .map(|finding| match finding.sequence {
                        Some(line) => format!("line {line}: {}", check_words(finding.check)),
                        None => check_words(finding.check).to_string(),
                    })
                    .collect(),
                appeal: entry.status == ClaimStatus::Appealed,
            }
        })
        .collect();
    page(
        status,
        &ReviewPage {
            shell,
            csrf: who.csrf.clone(),
            org,
            claims,
            notice,
        },
    )
}

pub(crate) async fn review(
    State(state): State<AppState>,
    Member { who, .. }: Member<Payers>,
) -> Response {
    review_page(&state, &who, None, StatusCode::OK).await
}

/// Pays or denies a claim in review (an appeal, if it is one), signed by the reviewer.
pub(crate) async fn decide(
    State(state): State<AppState>,
    MemberForm {
        session,
        who,
        fields,
        ..
    }: MemberForm<Payers>,
) -> Response {
    let claim = fields
        .get("claim")
        .and_then(|text| Hash::from_hex(text.trim()).ok());
    let approve = match fields.get("decision").map(String::as_str) {
        Some("pay") => Some(true),
        Some("deny") => Some(false),
        _ => None,
    };
    let (Some(claim), Some(approve)) = (claim, approve) else {
        let notice = Notice {
            good: false,
            text: "Nothing was decided: the form did not name a claim and a decision.".into(),
        };
        return review_page(&state, &who, Some(notice), StatusCode::BAD_REQUEST).await;
    };
    let op = if fields.get("appeal").map(String::as_str) == Some("yes") {
        ClaimsOp::DecideAppeal { claim, approve }
    } else {
        ClaimsOp::Decide { claim, approve }
    };
    let done = if approve {
        "paid: the payment settled in the same block"
    } else {
        "denied"
    };
    let done = format!("Claim {} is {done}", short(&claim.to_string()));
    let (notice, status) = outcome(
        sign_and_submit(&state, &session, op.into()).await,
        &done,
        None,
    );
    review_page(&state, &who, Some(notice), status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_in_their_token() {
        assert_eq!(amount(15_000, 2, "USD"), "150.00 USD");
        assert_eq!(amount(5, 2, "USD"), "0.05 USD");
        assert_eq!(amount(7, 0, "PTS"), "7 PTS");
        assert_eq!(amount(7, 0, ""), "7");
    }
}
