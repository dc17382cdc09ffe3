//! `/portal`: the web portal, server-rendered (askama templates in `templates/portal`, one
//! stylesheet in `static/portal.css`), with nothing fetched from anywhere but this node, a strict
//! Content-Security-Policy, and one small script (`static/portal.js`) for the passkey ceremonies
//! only: every other page is plain HTML forms.
//!
//! - [`session`]: invitations, passkeys, sessions, CSRF, sign-out; [`accounts`] keeps them and
//!   the members' keys this node holds for them.
//! - [`explorer`]: the chain explorer, open to everyone.
//! - [`patient`]: who read my records, my consents (grant, revoke).
//! - [`pharmacy`]: scan a pack, the verdict in plain words and its custody trail.
//!
//! Every page answers in plain words, never a raw error.

// A page's refusal is the page itself (a `Response`), returned up to the handler; boxing each
// one would only add an allocation to the error path.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use medledger_crypto::PublicKey;
use medledger_ledger::Authority;
use medledger_node::Node;
use medledger_types::Role;

use crate::AppState;

pub mod accounts;
mod audit;
mod care;
mod explorer;
mod patient;
mod payer;
mod pharmacy;
pub(crate) mod session;

/// Blocks the explorer's front page lists.
pub const LATEST_BLOCKS: u64 = 20;
/// Transactions a block page lists (the API lists them all).
pub const BLOCK_TXS_SHOWN: usize = 200;

const STYLESHEET: &str = include_str!("../../static/portal.css");
const SCRIPT: &str = include_str!("../../static/portal.js");

/// Scripts and styles only from this node, requests only to it, no frames, forms only to it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal", get(home))
        .route("/portal/sign-in", get(session::sign_in))
        .route("/portal/welcome", get(session::welcome))
        .route("/portal/sign-out", post(session::sign_out))
        .route(
            "/portal/passkey/sign-in/options",
            post(session::sign_in_options),
        )
        .route("/portal/passkey/sign-in", post(session::sign_in_finish))
        .route(
            "/portal/passkey/register/options",
            post(session::register_options),
        )
        .route("/portal/passkey/register", post(session::register_finish))
        .route("/portal/patient/access", get(patient::access))
        .route(
            "/portal/patient/consents",
            get(patient::consents).post(patient::grant),
        )
        .route("/portal/patient/consents/revoke", post(patient::revoke))
        .route("/portal/patient/delegates", post(patient::delegate))
        .route("/portal/patient/claims", get(patient::claims))
        .route("/portal/patient/tokens", get(patient::tokens))
        .route(
            "/portal/patient/trials",
            get(patient::trial).post(patient::trial_decision),
        )
        .route(
            "/portal/patient/research",
            get(patient::research).post(patient::set_research),
        )
        .route(
            "/portal/patient/erase",
            get(patient::erasure).post(patient::erase),
        )
        .route("/portal/pharmacy/scan", get(pharmacy::scan))
        .route("/portal/pharmacy/dispense", post(pharmacy::dispense))
        .route("/portal/care/alerts", get(care::alerts))
        .route("/portal/care/alerts/stream", get(care::stream))
        .route("/portal/care/alerts/acknowledge", post(care::acknowledge))
        .route(
            "/portal/care/readings",
            get(care::readings_form).post(care::readings),
        )
        .route(
            "/portal/payer/review",
            get(payer::review).post(payer::decide),
        )
        .route("/portal/audit", get(audit::trails))
        .route("/portal/explorer", get(explorer::explorer))
        .route("/portal/explorer/block", get(explorer::jump))
        .route("/portal/explorer/blocks/{height}", get(explorer::block))
        .route("/portal/static/portal.css", get(stylesheet))
        .route("/portal/static/portal.js", get(script))
        .layer(axum::middleware::map_response(secure))
        .route("/v1/portal/invitations", post(session::invite))
}

/// The headers every portal answer carries. Pages are personal once signed in: never cached.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The signed-in member as the pages show them.
#[derive(Clone, Debug)]
pub(crate) struct Who {
    pub member: PublicKey,
    pub role: Option<Role>,
    /// "a patient of hospital-a": organisation and role, never a name.
    pub label: String,
    pub csrf: String,
    pub is_patient: bool,
    pub is_pharmacy: bool,
    pub is_care: bool,
    pub is_payer: bool,
    pub is_auditor: bool,
}

impl Who {
    pub(crate) fn new(session: &accounts::Session, authority: &Authority) -> Who {
        let (role, label) = match authority {
            Authority::Member { org, role } => (Some(*role), format!("{} at {org}", person(*role))),
            Authority::Organisation { org } => (None, format!("the operator of {org}")),
        };
        Who {
            member: session.member,
            label,
            csrf: session.csrf.clone(),
            is_patient: role == Some(Role::Patient),
            is_pharmacy: matches!(
                role,
                Some(Role::Pharmacy | Role::Manufacturer | Role::Distributor)
            ),
            is_care: matches!(role, Some(Role::Practitioner | Role::Auditor)),
            is_payer: role == Some(Role::Insurer),
            is_auditor: role == Some(Role::Auditor),
            role,
        }
    }
}

/// A member of `role`, in words.
fn person(role: Role) -> &'static str {
    match role {
        Role::Practitioner => "a practitioner",
        Role::Patient => "a patient",
        Role::Pharmacy => "a pharmacist",
        Role::Manufacturer => "a manufacturer",
        Role::Distributor => "a distributor",
        Role::Insurer => "a payer",
        Role::Sponsor => "a trial sponsor",
        Role::Device => "a device",
        Role::Auditor => "an auditor",
        Role::Validator => "a validator",
        Role::Researcher => "a researcher",
        Role::Node => "a node",
    }
}

/// The outcome of the last form, in plain words.
pub(crate) struct Notice {
    pub good: bool,
    pub text: String,
}

/// What every page's frame shows: the chain, and who is signed in.
#[derive(Clone, Debug)]
pub(crate) struct Shell {
    pub chain_id: String,
    pub who: Option<Who>,
}

impl Shell {
    pub(crate) fn public(state: &AppState) -> Shell {
        Shell {
            chain_id: state.node.chain_id().to_string(),
            who: None,
        }
    }

    pub(crate) fn signed_in(state: &AppState, who: &Who) -> Shell {
        Shell {
            chain_id: state.node.chain_id().to_string(),
            who: Some(who.clone()),
        }
    }

    /// The frame of a public page, showing the member if they are signed in.
    pub(crate) async fn for_request(state: &AppState, headers: &HeaderMap) -> Shell {
        Shell {
            chain_id: state.node.chain_id().to_string(),
            who: session::who(state, headers).await.map(|(_, who)| who),
        }
    }
}

/// A page that could not be shown, in plain words.
#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage {
    shell: Shell,
    heading: String,
    message: String,
}

/// Renders a page; a template that fails to render is a bug, answered as a plain 500 page.
pub(crate) fn page<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html("<!doctype html><title>Error</title><p>This page could not be shown.</p>"),
        )
            .into_response(),
    }
}

pub(crate) fn problem(
    shell: Shell,
    status: StatusCode,
    heading: &str,
    message: String,
) -> Response {
    page(
        status,
        &ErrorPage {
            shell,
            heading: heading.into(),
            message,
        },
    )
}

/// Runs a read of the node on a blocking thread; a node failure is a plain 503 page.
async fn read<T: Send + 'static>(
    state: &AppState,
    shell: &Shell,
    read: impl FnOnce(&Node) -> Result<T, medledger_node::NodeError> + Send + 'static,
) -> Result<T, Response> {
    let reader = state.node.clone();
    match tokio::task::spawn_blocking(move || read(&reader)).await {
        Ok(Ok(found)) => Ok(found),
        _ => Err(unreadable(shell.clone(), "its chain")),
    }
}

/// The page for a read of the node that failed: it could not read `what` just now.
pub(crate) fn unreadable(shell: Shell, what: &str) -> Response {
    problem(
        shell,
        StatusCode::SERVICE_UNAVAILABLE,
        "The node could not answer",
        format!(
            "The node could not read {what} just now. Try again in a moment; if it keeps \
             failing, the node's operator will find the reason in its log."
        ),
    )
}

/// This node's service `S`, or the page that says this node keeps no `what`, and where to go
/// `instead`.
pub(crate) fn service<S: medledger_node::Service>(
    state: &AppState,
    shell: &Shell,
    what: &str,
    instead: &str,
) -> Result<S, Response> {
    state.services.get::<S>().ok_or_else(|| {
        problem(
            shell.clone(),
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("This node keeps no {what}"),
            instead.to_string(),
        )
    })
}

/// A time in milliseconds since 1970 as `YYYY-MM-DD hh:mm:ss` (UTC), without a clock.
pub(crate) fn utc(time_ms: u64) -> String {
    let seconds = time_ms / 1_000;
    let (days, rest) = ((seconds / 86_400) as i64, seconds % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

pub(crate) fn short(text: &str) -> String {
    format!("{}…", &text[..text.len().min(16)])
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct Home {
    shell: Shell,
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page(
        StatusCode::OK,
        &Home {
            shell: Shell::for_request(&state, &headers).await,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_times_read_as_utc_dates() {
        for (ms, text) in [
            (0, "1970-01-01 00:00:00"),
            (951_782_400_000, "2000-02-29 00:00:00"),
            (1_796_688_000_000 + 3_723_000, "2026-12-08 01:02:03"),
            (1_796_605_200_000, "2026-12-07 01:00:00"),
        ] {
            assert_eq!(utc(ms), text, "{ms}");
        }
    }
}
