//! Signing in to the portal: invitations (an organisation binds a member's passkey), the passkey
//! ceremonies (WebAuthn, the only script the portal runs), sessions in a `__Host-` cookie
//! (Secure, HttpOnly, SameSite=Strict), the CSRF token every form carries, sign-out and
//! sign-out everywhere, and signing a member's transaction for their session.
//!
//! A form posted after its session ended is not lost: the answer is the sign-in page holding the
//! form's fields, which it posts again, with the new session's CSRF token, once the person has
//! signed in.

use std::collections::BTreeMap;
use std::time::Duration;

use askama::Template;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::Authority;
use medledger_ledger::{Payload, TxBody};
use medledger_node::TxStatus;
use medledger_types::Role;
use serde::Deserialize;
use serde_json::json;

use super::accounts::{AccountError, Accounts, CEREMONY_BYTES_MAX, Session};
use super::{Notice, Shell, Who, page, problem, short};
use crate::{ApiError, AppState};

/// The session cookie: `__Host-` binds it to this origin, path `/`, Secure.
pub const COOKIE: &str = "__Host-medledger-portal";
/// How long the portal waits for a transaction it signed to be decided before saying so.
pub const DECISION_WAIT: Duration = Duration::from_secs(20);

#[allow(clippy::disallowed_methods)]
pub(crate) fn now_s() -> u64 {
    // The API is a shell: the clock times sessions and invitations, never the ledger.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

fn session_cookie(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        super::accounts::SESSION_LIFETIME_S
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-medledger-portal=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
    )
}

/// Compares two strings in time that depends only on their lengths.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The portal's accounts, or the page that says signing in is not available here.
pub(crate) fn accounts(state: &AppState) -> Result<&Accounts, Response> {
    match &state.portal {
        Ok(accounts) => Ok(accounts.as_ref()),
        Err(reason) => Err(problem(
            Shell::public(state),
            StatusCode::SERVICE_UNAVAILABLE,
            "Signing in is not available on this node",
            format!("This node cannot sign people in: {reason}"),
        )),
    }
}

/// Who a request comes from, if it carries a live session of a member still in good standing.
pub(crate) async fn who(state: &AppState, headers: &HeaderMap) -> Option<(Session, Who)> {
    let accounts = state.portal.as_ref().ok()?;
    let session = accounts.session(&cookie_token(headers)?, now_s(), true)?;
    let node = state.node.clone();
    let member = session.member;
    let (authority, _) = tokio::task::spawn_blocking(move || node.account(&member))
        .await
        .ok()?
        .ok()?;
    // A member revoked on chain is signed out at their next request.
    let Ok(authority) = authority else {
        accounts.end_sessions(&member);
        return None;
    };
    let who = Who::new(&session, &authority);
    Some((session, who))
}

/// Whether a browser says the request comes from this portal's own pages.
fn same_origin_request(state: &AppState, headers: &HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    let origin_ok = match (&state.portal, header("origin")) {
        (Ok(accounts), Some(origin)) => origin == accounts.origin(),
        _ => false,
    };
    header("sec-fetch-site") == Some("same-origin") || origin_ok
}

/// Whether the request's session is still live, without keeping it alive (for a stream, which
/// must end with the session, not extend it).
pub(crate) fn session_live(state: &AppState, headers: &HeaderMap) -> bool {
    match (&state.portal, cookie_token(headers)) {
        (Ok(accounts), Some(token)) => accounts.session(&token, now_s(), false).is_some(),
        _ => false,
    }
}

/// The signed-in member, or the sign-in page (which returns here afterwards).
pub(crate) async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(Session, Who), Response> {
    accounts(state)?;
    match who(state, headers).await {
        Some(found) => Ok(found),
        None => {
            let next = uri
                .path_and_query()
                .map_or("/portal", |path| path.as_str())
                .to_string();
            Err(sign_in_page(state, StatusCode::UNAUTHORIZED, Some(next), Vec::new()).await)
        }
    }
}

/// A form posted to the portal: its fields, checked against the session's CSRF token. A form
/// whose session has ended gets the sign-in page back, holding its fields to post again.
pub(crate) async fn signed_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<(Session, Who, BTreeMap<String, String>), Response> {
    accounts(state)?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|_| {
        problem(
            Shell::public(state),
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            "The browser sent a form this page cannot read. Go back and try again.".into(),
        )
    })?;
    let Some((session, who)) = who(state, headers).await else {
        // A form is kept only if it was sent from this portal's own page by a browser that
        // had a session: a form another site sends carries no cookie, and its fields must
        // never come back to be sent under the person's new session.
        let ours = same_origin_request(state, headers) && cookie_token(headers).is_some();
        if !ours {
            return Err(problem(
                Shell::public(state),
                StatusCode::FORBIDDEN,
                "This form was refused",
                "The form did not come from a page of this portal with a session, so nothing \
                 was done. Sign in and send it from the portal's own page."
                    .into(),
            ));
        }
        let kept = fields
            .into_iter()
            .filter(|(name, _)| name != "csrf")
            .collect();
        let next = uri.path().to_string();
        return Err(sign_in_page(state, StatusCode::UNAUTHORIZED, Some(next), kept).await);
    };
    let fields: BTreeMap<String, String> = fields.into_iter().collect();
    let token = fields.get("csrf").map(String::as_str).unwrap_or("");
    // A cross-site post cannot carry the cookie (SameSite=Strict), and cannot know the token.
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|site| site == "cross-site");
    if cross_site || !same(token, &session.csrf) {
        return Err(problem(
            Shell::signed_in(state, &who),
            StatusCode::FORBIDDEN,
            "This form was refused",
            "The form did not carry this session's security token, so it may not have come from \
             this portal. Nothing was done. Open the page again and send the form from there."
                .into(),
        ));
    }
    Ok((session, who, fields))
}

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
struct SignInPage {
    shell: Shell,
    next: String,
    kept: Vec<(String, String)>,
    expired: bool,
}

pub(crate) async fn sign_in_page(
    state: &AppState,
    status: StatusCode,
    next: Option<String>,
    kept: Vec<(String, String)>,
) -> Response {
    let next = next
        .filter(|next| next.starts_with("/portal") && !next.starts_with("//"))
        .unwrap_or_else(|| "/portal".into());
    page(
        status,
        &SignInPage {
            shell: Shell::public(state),
            expired: !kept.is_empty(),
            next,
            kept,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

pub(crate) async fn sign_in(State(state): State<AppState>, query: Query<Next>) -> Response {
    if let Err(response) = accounts(&state) {
        return response;
    }
    sign_in_page(&state, StatusCode::OK, query.0.next, Vec::new()).await
}

/// A JSON answer to the passkey script.
fn ceremony_error(error: AccountError) -> Response {
    let status = match &error {
        AccountError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        AccountError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        AccountError::NoCeremony | AccountError::Invitation => StatusCode::GONE,
        _ => StatusCode::UNAUTHORIZED,
    };
    if matches!(error, AccountError::Store(_)) {
        tracing::error!(%error, "the portal's account store failed");
    }
    let message = match error {
        AccountError::Store(_) => "the node could not finish this; try again".to_string(),
        other => other.to_string(),
    };
    (
        status,
        Json(json!({"error": {"code": "passkey_refused", "message": message}})),
    )
        .into_response()
}

/// The passkey endpoints take only requests from the portal's own pages.
fn same_origin(accounts: &Accounts, headers: &HeaderMap) -> Result<(), Response> {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    if origin == Some(accounts.origin()) {
        return Ok(());
    }
    Err((
        StatusCode::FORBIDDEN,
        Json(json!({"error": {"code": "wrong_origin", "message": format!(
            "open the portal at {} to use a passkey", accounts.origin()
        )}})),
    )
        .into_response())
}

/// The accounts, for a passkey endpoint: only for the portal's own pages, and an answer of at
/// most [`CEREMONY_BYTES_MAX`] bytes.
fn ceremony<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    body_len: usize,
) -> Result<&'a Accounts, Response> {
    let accounts = accounts(state)?;
    same_origin(accounts, headers)?;
    if body_len > CEREMONY_BYTES_MAX {
        return Err(ceremony_error(AccountError::Ceremony(
            "the answer is too large".into(),
        )));
    }
    Ok(accounts)
}

fn signed_in_answer(token: &str, session: &Session, next: &str) -> Response {
    let mut response = Json(json!({"next": next, "csrf": session.csrf})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(token));
    response
}

pub(crate) async fn sign_in_options(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accounts = match ceremony(&state, &headers, 0) {
        Ok(accounts) => accounts,
        Err(response) => return response,
    };
    match accounts.sign_in_options() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => ceremony_error(error),
    }
}

pub(crate) async fn sign_in_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let accounts = match ceremony(&state, &headers, body.len()) {
        Ok(accounts) => accounts,
        Err(response) => return response,
    };
    match accounts.sign_in(&body, now_s()) {
        Ok((token, session)) => signed_in_answer(&token, &session, "/portal"),
        Err(error) => ceremony_error(error),
    }
}

#[derive(Deserialize)]
pub(crate) struct Invited {
    invitation: Option<String>,
}

#[derive(Template)]
#[template(path = "portal/welcome.html")]
struct WelcomePage {
    shell: Shell,
    invitation: String,
}

pub(crate) async fn welcome(State(state): State<AppState>, query: Query<Invited>) -> Response {
    let accounts = match accounts(&state) {
        Ok(accounts) => accounts,
        Err(response) => return response,
    };
    let token = query.0.invitation.unwrap_or_default();
    if accounts.invited(&token, now_s()).is_err() {
        return problem(
            Shell::public(&state),
            StatusCode::GONE,
            "This invitation cannot be used",
            "The link is unknown, was already used, or is more than a week old. Ask your \
             organisation for a new one."
                .into(),
        );
    }
    page(
        StatusCode::OK,
        &WelcomePage {
            shell: Shell::public(&state),
            invitation: token,
        },
    )
}

#[derive(Deserialize)]
struct RegistrationStart {
    invitation: String,
}

pub(crate) async fn register_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let accounts = match ceremony(&state, &headers, 0) {
        Ok(accounts) => accounts,
        Err(response) => return response,
    };
    let Ok(start) = serde_json::from_slice::<RegistrationStart>(&body) else {
        return ceremony_error(AccountError::Invitation);
    };
    let now = now_s();
    let member = match accounts.invited(&start.invitation, now) {
        Ok(member) => member,
        Err(error) => return ceremony_error(error),
    };
    // The name the passkey is listed under on the person's device: the organisation and role,
    // never a name or anything personal.
    let node = state.node.clone();
    let authority = tokio::task::spawn_blocking(move || node.account(&member))
        .await
        .ok()
        .and_then(Result::ok)
        .and_then(|(authority, _)| authority.ok());
    let label = match authority {
        Some(Authority::Member { org, role }) => format!("{org} {}", role.as_str()),
        Some(Authority::Organisation { org }) => format!("{org} operator"),
        None => {
            return ceremony_error(AccountError::Ceremony(
                "this member is not enrolled, or was revoked".into(),
            ));
        }
    };
    let label = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .to_lowercase();
    match accounts.registration_options(&start.invitation, &label, now) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(error) => ceremony_error(error),
    }
}

pub(crate) async fn register_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let accounts = match ceremony(&state, &headers, body.len()) {
        Ok(accounts) => accounts,
        Err(response) => return response,
    };
    match accounts.register(&body, now_s()) {
        Ok((token, session)) => signed_in_answer(&token, &session, "/portal"),
        Err(error) => ceremony_error(error),
    }
}

pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let mut signed_out = Redirect::to("/portal/sign-in").into_response();
    signed_out
        .headers_mut()
        .insert(header::SET_COOKIE, cleared_cookie());
    // Without a session there is nothing to end (and nothing to keep for later).
    if who(&state, &headers).await.is_none() {
        return signed_out;
    }
    let (_, _, fields) = match signed_form(&state, &headers, &uri, &body).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Ok(accounts) = accounts(&state) else {
        return Redirect::to("/portal").into_response();
    };
    if let Some((session, _)) = who(&state, &headers).await {
        if fields.get("everywhere").is_some_and(|value| value == "yes") {
            if let Err(error) = accounts.sign_out_everywhere(&session.member) {
                return ceremony_error(error);
            }
        } else if let Some(token) = cookie_token(&headers) {
            accounts.sign_out(&token);
        }
    }
    signed_out
}

/// `POST /v1/portal/invitations`, signed by an organisation's root key: `{"member": hex}` to
/// re-bind a member this node already holds, or `{"secret_key": hex}` to hand this node custody
/// of an enrolled member's key. Answers the one-time link the member opens to bind a passkey.
#[utoipa::path(post, path = "/v1/portal/invitations",
    security(("medledger_signature" = [])),
    request_body(content = String, content_type = "application/json",
        description = "`{\"secret_key\": hex}` (first invitation) or `{\"member\": hex}` (re-bind)"),
    responses(
        (status = 201, description = "`{member, link, expires_in_s}`: the one-time link"),
        (status = 400, description = "Malformed body or key", body = crate::ErrorBody),
        (status = 403, description = "Not an organisation's root key, or not its member", body = crate::ErrorBody),
        (status = 404, description = "Re-binding a member this node holds no key for", body = crate::ErrorBody),
        (status = 409, description = "Not enrolled, or the request was replayed", body = crate::ErrorBody)))]
pub(crate) async fn invite(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        member: Option<String>,
        secret_key: Option<String>,
    }
    let (_, authority, request) =
        crate::signed_member(&state, &method, &uri, &headers, &body).await?;
    // A captured request sent again must not mint another link.
    state
        .replay
        .check(&request, crate::fhir::now_ms())
        .map_err(|error| {
            ApiError::new(StatusCode::CONFLICT, "request_replayed", error.to_string())
        })?;
    let Authority::Organisation { org } = authority else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only an organisation's root key invites members to the portal",
        ));
    };
    let request: Request = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request("malformed_body", error.to_string()))?;
    let (member, secret) = match (request.member, request.secret_key) {
        (Some(member), None) => (
            PublicKey::from_hex(member.trim())
                .map_err(|error| ApiError::bad_request("malformed_key", error.to_string()))?,
            None,
        ),
        (None, Some(secret)) => {
            let bytes: [u8; 32] = hex::decode(secret.trim())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "malformed_key",
                        "secret_key is the member's 32-byte Ed25519 secret key in hex",
                    )
                })?;
            let secret = SecretKey::from_bytes(bytes);
            (secret.public_key(), Some(secret))
        }
        _ => {
            return Err(ApiError::bad_request(
                "malformed_body",
                "give exactly one of \"member\" or \"secret_key\"",
            ));
        }
    };
    let node = state.node.clone();
    let (standing, _) = crate::blocking(move || Ok(node.account(&member)?)).await?;
    match standing {
        Ok(Authority::Member {
            org: member_org, ..
        }) if member_org == org => {}
        Ok(_) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the member is not one of the signing organisation's",
            ));
        }
        Err(reason) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_enrolled",
                format!("enrol the member first: {reason}"),
            ));
        }
    }
    let accounts = state.portal.as_ref().map_err(|reason| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_portal",
            format!("this node cannot sign people in: {reason}"),
        )
    })?;
    let token = accounts
        .invite(member, &org, secret.as_ref(), now_s())
        .map_err(|error| match error {
            AccountError::NotBound => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_held",
                "this node holds no key for the member: hand it over with \"secret_key\"",
            ),
            other => {
                tracing::error!(error = %other, "inviting to the portal failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the invitation could not be saved",
                )
            }
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "member": member,
            "link": format!("{}/portal/welcome?invitation={token}", accounts.origin()),
            "expires_in_s": super::accounts::INVITATION_TTL_S,
        })),
    )
        .into_response())
}

/// What became of a transaction the portal signed for a member, in plain words.
pub(crate) enum Decided {
    Committed(Hash),
    Refused { reason: String },
    Pending(Hash),
}

/// Signs `payload` with the session's member's key (opened only for this), submits it, and
/// waits for the chain's decision.
pub(crate) async fn sign_and_submit(
    state: &AppState,
    session: &Session,
    payload: Payload,
) -> Result<Decided, String> {
    let accounts = state
        .portal
        .as_ref()
        .map_err(|reason| format!("this node cannot sign for you: {reason}"))?;
    let secret = accounts.signing_key(session).map_err(|error| match error {
        AccountError::NotBound => {
            "your session ended when your passkey was re-bound or you signed out everywhere; \
             sign in again"
                .to_string()
        }
        other => {
            tracing::error!(error = %other, "opening a member's key failed");
            "this node could not open your signing key; tell your organisation".to_string()
        }
    })?;
    // One transaction of a member at a time, each waited for: the next takes the next nonce.
    let lock = accounts.submission_lock(&session.member);
    let _turn = lock.lock().await;
    let node = state.node.clone();
    let chain_id = node.chain_id().to_string();
    let submitted = tokio::task::spawn_blocking(move || {
        let (_, nonce) = node
            .account(&secret.public_key())
            .map_err(|e| e.to_string())?;
        let tx = TxBody {
            chain_id,
            sender: secret.public_key(),
            nonce,
            payload,
        }
        .sign(&secret);
        match node.submit(vec![tx]).pop() {
            Some(Ok((id, _))) => Ok(id),
            Some(Err(error)) => Err(error.to_string()),
            None => Err("the node did not take the transaction".to_string()),
        }
    })
    .await
    .map_err(|_| "the node could not take the transaction".to_string())??;
    match state.node.wait_tx(&submitted, DECISION_WAIT).await {
        Ok(Some(TxStatus::Committed { receipt })) => match receipt.outcome {
            medledger_types::Outcome::Rejected { reason, .. } => Ok(Decided::Refused { reason }),
            _ => Ok(Decided::Committed(submitted)),
        },
        Ok(Some(TxStatus::Rejected { reason, .. })) => Ok(Decided::Refused { reason }),
        Ok(_) => Ok(Decided::Pending(submitted)),
        Err(error) => Err(error.to_string()),
    }
}

/// Whom a page is for: the roles that may open it, and the words that turn anyone else away.
pub(crate) trait Audience: Send + Sync + 'static {
    const ROLES: &'static [Role];
    const WHAT: &'static str;
}

/// The signed-in member of a page's audience `A`, as a handler's argument: a request from anyone
/// else is answered by the sign-in page or the refusal before the handler runs.
pub(crate) struct Member<A> {
    pub who: Who,
    audience: std::marker::PhantomData<A>,
}

impl<A: Audience> axum::extract::FromRequestParts<AppState> for Member<A> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let (_, who) = member(state, &parts.headers, &parts.uri, A::ROLES, A::WHAT).await?;
        Ok(Member {
            who,
            audience: std::marker::PhantomData,
        })
    }
}

/// A form a member of audience `A` sent, checked as [`signed_form`] checks it, with its fields.
pub(crate) struct MemberForm<A> {
    pub session: Session,
    pub who: Who,
    pub fields: BTreeMap<String, String>,
    audience: std::marker::PhantomData<A>,
}

impl<A: Audience> axum::extract::FromRequest<AppState> for MemberForm<A> {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Response> {
        let (headers, uri) = (request.headers().clone(), request.uri().clone());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                problem(
                    Shell::public(state),
                    rejection.status(),
                    "The form could not be read",
                    "The browser sent a form this page cannot read. Go back and try again.".into(),
                )
            })?;
        let (session, who, fields) =
            member_form(state, &headers, &uri, &body, A::ROLES, A::WHAT).await?;
        Ok(MemberForm {
            session,
            who,
            fields,
            audience: std::marker::PhantomData,
        })
    }
}

/// The signed-in member, if they hold one of `roles`; otherwise the sign-in page, or the
/// refusal that says who the page is for (`what`).
async fn member(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    roles: &[Role],
    what: &str,
) -> Result<(Session, Who), Response> {
    let (session, who) = signed_in(state, headers, uri).await?;
    require_role(state, &who, roles, what)?;
    Ok((session, who))
}

/// A form from a signed-in member of one of `roles`, checked as [`signed_form`] checks it.
async fn member_form(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
    roles: &[Role],
    what: &str,
) -> Result<(Session, Who, BTreeMap<String, String>), Response> {
    let (session, who, fields) = signed_form(state, headers, uri, body).await?;
    require_role(state, &who, roles, what)?;
    Ok((session, who, fields))
}

/// What a member's transaction came to, in plain words for the page they return to, and its
/// status: `done` when the chain committed it; `pending`, if given, replaces the default words
/// (and is a warning) when it is not decided yet.
pub(crate) fn outcome(
    result: Result<Decided, String>,
    done: &str,
    pending: Option<&str>,
) -> (Notice, StatusCode) {
    match result {
        Ok(Decided::Committed(id)) => (
            Notice {
                good: true,
                text: format!("{done} (transaction {}).", short(&id.to_string())),
            },
            StatusCode::OK,
        ),
        Ok(Decided::Pending(id)) => (
            Notice {
                good: pending.is_none(),
                text: pending.map_or_else(
                    || {
                        format!(
                            "Sent; the chain has not decided it yet (transaction {}). Reload \
                             this page in a moment.",
                            short(&id.to_string())
                        )
                    },
                    str::to_string,
                ),
            },
            StatusCode::ACCEPTED,
        ),
        Ok(Decided::Refused { reason }) => (
            Notice {
                good: false,
                text: format!("The chain refused this, so nothing changed: {reason}."),
            },
            StatusCode::CONFLICT,
        ),
        Err(reason) => (
            Notice {
                good: false,
                text: format!("Nothing was done: {reason}."),
            },
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    }
}

/// The roles a page is for, or a plain refusal naming them.
pub(crate) fn require_role(
    state: &AppState,
    who: &Who,
    roles: &[Role],
    what: &str,
) -> Result<(), Response> {
    if who.role.is_some_and(|role| roles.contains(&role)) {
        return Ok(());
    }
    Err(problem(
        Shell::signed_in(state, who),
        StatusCode::FORBIDDEN,
        "This page is not for your role",
        format!("{what} You are signed in as {}.", who.label),
    ))
}
