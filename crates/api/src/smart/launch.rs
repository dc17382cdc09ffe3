//! SMART App Launch (standalone launch, SMART App Launch 2 §2.0): the authorization code grant
//! with PKCE, for patient and clinician apps.
//!
//! 1. An organisation registers an app on its node: a name and its exact redirect URIs
//!    (`POST /oauth/apps`, signed by the organisation's root key); the answer is its `client_id`.
//!    Apps are public clients: PKCE (S256) is required, and no client secret exists.
//! 2. The app sends the user to `GET /oauth/authorize` (`response_type=code`, `client_id`,
//!    `redirect_uri`, `scope`, `state`, `aud` = the FHIR base, `code_challenge`). The node answers
//!    with its consent screen: the app, what it asks for, and how to approve.
//! 3. The user approves as who they are: a member's key is their only credential, so approval is
//!    a request signed with it (`POST /oauth/authorize/{id}/approve`, which
//!    `medledger fhir approve <id>` sends), naming the patient when a clinician launches with
//!    `launch/patient`. A patient's own app gets the patient bound to their key. Anyone holding
//!    the page may deny.
//! 4. `GET /oauth/authorize/{id}/continue` sends the browser back to the app's redirect URI with
//!    a one-time code (valid [`CODE_TTL_S`]), or with `error=access_denied`.
//! 5. The app redeems the code at `POST /oauth/token` with its PKCE verifier, and gets an access
//!    token with the granted `patient/` and `user/` scopes and the `patient` context, plus a
//!    refresh token when it asked for `offline_access` or `online_access`.
//!
//! Registered apps are kept in `oauth/apps.json` under the node's data directory (written to a
//! temporary file, synced, then renamed); authorization requests and codes live in memory,
//! bounded, and are forgotten after [`AUTHORIZATION_TTL_S`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use medledger_crypto::{PublicKey, sha256};
use medledger_ledger::Authority;
use medledger_records::Purpose;
use medledger_types::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Context, Scope, TokenGrant, base_url, now_s, oauth_error};
use crate::AppState;

/// How long an authorization request waits for the user.
pub const AUTHORIZATION_TTL_S: u64 = 600;
/// How long an authorization code may wait to be redeemed.
pub const CODE_TTL_S: u64 = 60;
/// Authorization requests (and codes) held at once.
pub const PENDING_MAX: usize = 10_000;
/// Registered apps per node.
pub const APPS_MAX: usize = 10_000;
/// How long a refresh token lives: a day for `online_access`, 30 days for `offline_access`.
pub const REFRESH_ONLINE_S: u64 = 86_400;
pub const REFRESH_OFFLINE_S: u64 = 30 * 86_400;

/// An app registered on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// The organisation that registered it.
    pub registered_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Waiting,
    Approved {
        key: PublicKey,
        scopes: Vec<String>,
        patient: Option<String>,
    },
    Denied,
}

#[derive(Debug, Clone)]
struct Pending {
    app: App,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    code_challenge: String,
    purpose: Option<Purpose>,
    created_s: u64,
    decision: Decision,
    /// The code handed out once the browser continued (so a second continue does not mint
    /// another).
    redeemed: bool,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    key: PublicKey,
    scopes: Vec<String>,
    patient: Option<String>,
    purpose: Option<Purpose>,
    expires_s: u64,
}

/// App registrations, and the authorizations in flight.
#[derive(Debug)]
pub struct Launch {
    apps_path: Option<PathBuf>,
    apps: Mutex<BTreeMap<String, App>>,
    pending: Mutex<BTreeMap<String, Pending>>,
    codes: Mutex<BTreeMap<String, Code>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

impl Launch {
    /// Opens the app registry in `dir` (`None`: in memory only, for tests).
    pub fn open(dir: Option<&Path>) -> std::io::Result<Launch> {
        let apps_path = dir.map(|dir| dir.join("apps.json"));
        let apps = match &apps_path {
            Some(path) if path.exists() => {
                let list: Vec<App> =
                    serde_json::from_slice(&std::fs::read(path)?).map_err(|error| {
                        std::io::Error::other(format!("{}: {error}", path.display()))
                    })?;
                list.into_iter()
                    .map(|app| (app.client_id.clone(), app))
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        Ok(Launch {
            apps_path,
            apps: Mutex::new(apps),
            pending: Mutex::new(BTreeMap::new()),
            codes: Mutex::new(BTreeMap::new()),
        })
    }

    fn save(&self, apps: &BTreeMap<String, App>) -> std::io::Result<()> {
        use std::io::Write;
        let Some(path) = &self.apps_path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let list: Vec<&App> = apps.values().collect();
        let temporary = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    fn app(&self, client_id: &str) -> Option<App> {
        lock(&self.apps).get(client_id).cloned()
    }

    fn forget_expired(&self, now_s: u64) {
        lock(&self.pending).retain(|_, pending| pending.created_s + AUTHORIZATION_TTL_S > now_s);
        lock(&self.codes).retain(|_, code| code.expires_s > now_s);
    }
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            other => other.to_string(),
        })
        .collect()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let mut response = (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title></head>\
             <body style=\"font-family: sans-serif; max-width: 40em; margin: 2em auto\">\
             <h1>{}</h1>{body}</body></html>",
            escape(title),
            escape(title)
        )),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    response
}

/// What a scope means, for the consent screen.
fn describe_scope(scope: &str) -> String {
    match scope {
        "launch/patient" => "know which patient you chose".into(),
        "offline_access" => "keep access after you close the app (up to 30 days)".into(),
        "online_access" => "keep access while you use the app (up to a day)".into(),
        other => match Scope::parse(other) {
            Some(parsed) => {
                let what = parsed
                    .resource_type
                    .as_deref()
                    .unwrap_or("all record types");
                let whose = match parsed.context {
                    Context::Patient => "of the chosen patient",
                    Context::User => "that you may see",
                    Context::System => "of any patient",
                };
                let verbs: Vec<&str> = parsed
                    .actions
                    .iter()
                    .map(|action| match action {
                        super::Action::Create => "create",
                        super::Action::Read => "read",
                        super::Action::Update => "update",
                        super::Action::Delete => "delete",
                        super::Action::Search => "search",
                    })
                    .collect();
                format!("{} {what} {whose}", verbs.join(", "))
            }
            None => format!("{other} (not granted by this server)"),
        },
    }
}

/// The scopes an App Launch can grant: patient and user clinical scopes, and the launch and
/// refresh scopes. System scopes belong to Backend Services; `openid`/`fhirUser` need an
/// id_token this server does not issue.
fn grantable(scope: &str) -> bool {
    matches!(scope, "launch/patient" | "offline_access" | "online_access")
        || Scope::parse(scope).is_some_and(|parsed| parsed.context != Context::System)
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    aud: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    purpose_of_use: Option<String>,
}

/// Sends an authorization error back to a validated redirect URI (RFC 6749 §4.1.2.1).
fn redirect_error(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{redirect_uri}{separator}{query}")).into_response()
}

/// `GET /oauth/authorize`: checks the app and its redirect URI, then shows the consent screen.
pub(crate) async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    let launch = &state.launch;
    let now = now_s();
    launch.forget_expired(now);
    // Until the app and its redirect URI check out, errors are shown here, never redirected.
    let Some(app) = params.client_id.as_deref().and_then(|id| launch.app(id)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown app",
            "<p>No app with this client_id is registered on this node.</p>",
        );
    };
    let Some(redirect_uri) = params
        .redirect_uri
        .clone()
        .filter(|uri| app.redirect_uris.contains(uri))
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "Wrong redirect URI",
            "<p>The redirect_uri is not one this app registered.</p>",
        );
    };
    let client_state = params.state.as_deref();
    if params.response_type.as_deref() != Some("code") {
        return redirect_error(
            &redirect_uri,
            "unsupported_response_type",
            "only response_type=code",
            client_state,
        );
    }
    let fhir_base = format!("{}/fhir", base_url(&headers));
    if params.aud.as_deref() != Some(fhir_base.as_str()) {
        return redirect_error(
            &redirect_uri,
            "invalid_request",
            &format!("aud must be this server's FHIR base, {fhir_base}"),
            client_state,
        );
    }
    let challenge = match (
        &params.code_challenge,
        params.code_challenge_method.as_deref(),
    ) {
        (Some(challenge), Some("S256")) if (43..=128).contains(&challenge.len()) => {
            challenge.clone()
        }
        _ => {
            return redirect_error(
                &redirect_uri,
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256",
                client_state,
            );
        }
    };
    let purpose = match params
        .purpose_of_use
        .as_deref()
        .map(str::parse::<Purpose>)
        .transpose()
    {
        Ok(purpose) => purpose,
        Err(error) => {
            return redirect_error(&redirect_uri, "invalid_request", &error, client_state);
        }
    };
    let requested: Vec<String> = params
        .scope
        .as_deref()
        .unwrap_or("")
        .split(' ')
        .filter(|word| !word.is_empty())
        .take(super::SCOPES_MAX)
        .map(str::to_string)
        .collect();
    if !requested.iter().any(|scope| Scope::parse(scope).is_some()) {
        return redirect_error(
            &redirect_uri,
            "invalid_scope",
            "ask for at least one SMART clinical scope, e.g. patient/*.rs",
            client_state,
        );
    }
    let id = random_id();
    {
        let mut pending = lock(&launch.pending);
        if pending.len() >= PENDING_MAX {
            return redirect_error(
                &redirect_uri,
                "temporarily_unavailable",
                "too many authorizations in flight",
                client_state,
            );
        }
        pending.insert(
            id.clone(),
            Pending {
                app,
                redirect_uri,
                scopes: requested,
                state: params.state.clone(),
                code_challenge: challenge,
                purpose,
                created_s: now,
                decision: Decision::Waiting,
                redeemed: false,
            },
        );
    }
    consent_page(&state, &id)
}

/// The consent screen of authorization `id`.
fn consent_page(state: &AppState, id: &str) -> Response {
    let Some(pending) = lock(&state.launch.pending).get(id).cloned() else {
        return page(
            StatusCode::NOT_FOUND,
            "Authorization expired",
            "<p>This authorization is unknown or expired. Start again from the app.</p>",
        );
    };
    let scopes: String = pending
        .scopes
        .iter()
        .map(|scope| {
            format!(
                "<li>{} <code>{}</code></li>",
                escape(&describe_scope(scope)),
                escape(scope)
            )
        })
        .collect();
    let status = match &pending.decision {
        Decision::Waiting => format!(
            "<p>To approve, sign with your key:</p>\
             <pre>medledger fhir --key YOUR.key approve {id}</pre>\
             <p>(a clinician launching for a patient adds <code>--patient &lt;Patient id&gt;</code>). \
             Then continue. Access to records stays under each patient's consent, and every \
             read is recorded on the ledger.</p>"
        ),
        Decision::Approved { .. } => {
            "<p><strong>Approved.</strong> Continue to the app.</p>".into()
        }
        Decision::Denied => "<p><strong>Denied.</strong> Continue to tell the app.</p>".into(),
    };
    page(
        StatusCode::OK,
        &format!("{} asks for access", pending.app.name),
        &format!(
            "<p data-authorization=\"{id}\">The app <strong>{}</strong> (registered by {}) asks to:</p>\
             <ul>{scopes}</ul>{status}\
             <p><a href=\"/oauth/authorize/{id}/continue\">Continue</a></p>\
             <form method=\"post\" action=\"/oauth/authorize/{id}/deny\"><button>Deny</button></form>",
            escape(&pending.app.name),
            escape(&pending.app.registered_by),
        ),
    )
}

/// `GET /oauth/authorize/{id}`: the consent screen again (e.g. after approving).
pub(crate) async fn show(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    consent_page(&state, &id)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Approval {
    /// The patient (logical id) a clinician launches for.
    #[serde(default)]
    patient: Option<String>,
}

/// `POST /oauth/authorize/{id}/approve`, signed by the member who approves.
pub(crate) async fn approve(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let failure = |status: StatusCode, message: String| {
        (
            status,
            Json(json!({"error": {"code": "approval_refused", "message": message}})),
        )
            .into_response()
    };
    let caller = match crate::fhir::caller(&state, &method, &uri, &headers, &body).await {
        Ok(caller) if caller.grant.is_none() => caller,
        Ok(_) => {
            return failure(
                StatusCode::UNAUTHORIZED,
                "approve with a signed request, not a token".into(),
            );
        }
        Err(error) => return error.into_response(),
    };
    let approval: Approval = if body.is_empty() {
        Approval::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(approval) => approval,
            Err(error) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    format!("malformed approval: {error}"),
                );
            }
        }
    };
    let Some(pending) = lock(&state.launch.pending).get(&id).cloned() else {
        return failure(
            StatusCode::NOT_FOUND,
            format!("no authorization {id} is waiting (it may have expired)"),
        );
    };
    if pending.decision != Decision::Waiting {
        return failure(
            StatusCode::CONFLICT,
            "this authorization was already decided".into(),
        );
    }
    let wants_patient = pending.scopes.iter().any(|scope| {
        scope == "launch/patient"
            || Scope::parse(scope).is_some_and(|parsed| parsed.context == Context::Patient)
    });
    // The patient context: the one a clinician names, or the approving patient's own.
    let Some(records) = state.services.get::<medledger_node::records::Records>() else {
        return failure(
            StatusCode::NOT_IMPLEMENTED,
            "this node keeps no health records".into(),
        );
    };
    let key = caller.key;
    let is_patient = matches!(
        caller.authority,
        Authority::Member {
            role: Role::Patient,
            ..
        }
    );
    let named = approval.patient.clone();
    let resolved = crate::blocking(move || {
        Ok(match named {
            Some(fhir_id) => {
                let patient = records.patient_by_fhir(&fhir_id).ok().flatten();
                match (&patient, is_patient) {
                    (None, _) => Err(format!("Patient/{fhir_id} is not held by this node")),
                    (Some(patient), true) => {
                        let own = records
                            .patient(patient)
                            .ok()
                            .flatten()
                            .and_then(|entry| entry.key);
                        if own == Some(key) {
                            Ok(Some(fhir_id))
                        } else {
                            Err("a patient launches only for themselves".into())
                        }
                    }
                    (Some(_), false) => Ok(Some(fhir_id)),
                }
            }
            None if is_patient => {
                let (ids, _, _) = records.patient_view(&key).map_err(|error| {
                    crate::ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        error.to_string(),
                    )
                })?;
                Ok(ids
                    .iter()
                    .find_map(|id| records.patient_fhir_id(id).ok().flatten()))
            }
            None => Ok(None),
        })
    })
    .await;
    let patient = match resolved {
        Ok(Ok(patient)) => patient,
        Ok(Err(message)) => return failure(StatusCode::BAD_REQUEST, message),
        Err(error) => return error.into_response(),
    };
    if wants_patient && patient.is_none() {
        return failure(
            StatusCode::BAD_REQUEST,
            "this app asks for a patient: name one with --patient <Patient id>".into(),
        );
    }
    let scopes: Vec<String> = pending
        .scopes
        .iter()
        .filter(|scope| grantable(scope))
        .cloned()
        .collect();
    let mut all = lock(&state.launch.pending);
    let Some(entry) = all.get_mut(&id) else {
        return failure(StatusCode::NOT_FOUND, "the authorization expired".into());
    };
    entry.decision = Decision::Approved {
        key,
        scopes: scopes.clone(),
        patient: patient.clone(),
    };
    Json(json!({"authorization": id, "approved_by": key, "scope": scopes.join(" "), "patient": patient})).into_response()
}

/// `POST /oauth/authorize/{id}/deny`.
pub(crate) async fn deny(State(state): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    if let Some(pending) = lock(&state.launch.pending).get_mut(&id)
        && pending.decision == Decision::Waiting
    {
        pending.decision = Decision::Denied;
    }
    consent_page(&state, &id)
}

/// `GET /oauth/authorize/{id}/continue`: back to the app, with a code or the refusal.
pub(crate) async fn continue_to_app(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let now = now_s();
    let mut all = lock(&state.launch.pending);
    let Some(pending) = all.get_mut(&id) else {
        drop(all);
        return consent_page(&state, &id);
    };
    let client_state = pending.state.clone();
    match pending.decision.clone() {
        Decision::Waiting => {
            drop(all);
            consent_page(&state, &id)
        }
        Decision::Denied => {
            let redirect_uri = pending.redirect_uri.clone();
            all.remove(&id);
            redirect_error(
                &redirect_uri,
                "access_denied",
                "the user denied the request",
                client_state.as_deref(),
            )
        }
        Decision::Approved {
            key,
            scopes,
            patient,
        } => {
            if pending.redeemed {
                return page(
                    StatusCode::CONFLICT,
                    "Already used",
                    "<p>This authorization already went back to the app.</p>",
                );
            }
            pending.redeemed = true;
            let code = random_id();
            let redirect_uri = pending.redirect_uri.clone();
            let issued = Code {
                client_id: pending.app.client_id.clone(),
                redirect_uri: redirect_uri.clone(),
                code_challenge: pending.code_challenge.clone(),
                key,
                scopes,
                patient,
                purpose: pending.purpose,
                expires_s: now + CODE_TTL_S,
            };
            all.remove(&id);
            drop(all);
            let mut codes = lock(&state.launch.codes);
            if codes.len() >= PENDING_MAX {
                return redirect_error(
                    &redirect_uri,
                    "temporarily_unavailable",
                    "too many codes in flight",
                    client_state.as_deref(),
                );
            }
            codes.insert(code.clone(), issued);
            let mut params = vec![("code", code.as_str())];
            if let Some(client_state) = &client_state {
                params.push(("state", client_state));
            }
            let query = serde_urlencoded::to_string(&params).unwrap_or_default();
            let separator = if redirect_uri.contains('?') { '&' } else { '?' };
            Redirect::to(&format!("{redirect_uri}{separator}{query}")).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Registration {
    name: String,
    redirect_uris: Vec<String>,
}

/// `POST /oauth/apps {"name", "redirect_uris"}`, signed by an organisation's root key.
pub(crate) async fn register(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |status: StatusCode, message: &str| {
        (
            status,
            Json(json!({"error": {"code": "registration_refused", "message": message}})),
        )
            .into_response()
    };
    let caller = match crate::fhir::caller(&state, &method, &uri, &headers, &body).await {
        Ok(caller) if caller.grant.is_none() => caller,
        Ok(_) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "register apps with a signed request",
            );
        }
        Err(error) => return error.into_response(),
    };
    let Authority::Organisation { org } = caller.authority else {
        return refuse(
            StatusCode::FORBIDDEN,
            "only an organisation's root key registers apps",
        );
    };
    let registration: Registration = match serde_json::from_slice(&body) {
        Ok(registration) => registration,
        Err(error) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("malformed registration: {error}"),
            );
        }
    };
    let name = registration.name.trim();
    if name.is_empty() || name.len() > 200 {
        return refuse(StatusCode::BAD_REQUEST, "name must be 1 to 200 characters");
    }
    if registration.redirect_uris.is_empty() || registration.redirect_uris.len() > 10 {
        return refuse(StatusCode::BAD_REQUEST, "give 1 to 10 redirect_uris");
    }
    for redirect in &registration.redirect_uris {
        // Visible ASCII only: anything else could never stand in a Location header, so the
        // app could be registered but never sent back to.
        let ok = (redirect.starts_with("https://") || redirect.starts_with("http://"))
            && !redirect.contains('#')
            && redirect.len() <= 2_000
            && redirect.bytes().all(|byte| byte.is_ascii_graphic());
        if !ok {
            return refuse(
                StatusCode::BAD_REQUEST,
                "each redirect URI is an absolute http(s) URL of visible ASCII, without a fragment",
            );
        }
    }
    let app = App {
        client_id: random_id(),
        name: name.to_string(),
        redirect_uris: registration.redirect_uris,
        registered_by: org,
    };
    let launch = &state.launch;
    let mut apps = lock(&launch.apps);
    if apps.len() >= APPS_MAX {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node holds as many apps as it may",
        );
    }
    apps.insert(app.client_id.clone(), app.clone());
    if let Err(error) = launch.save(&apps) {
        apps.remove(&app.client_id);
        tracing::error!(%error, "saving the app registry failed");
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not save the registration",
        );
    }
    (StatusCode::CREATED, Json(json!(app))).into_response()
}

/// The token endpoint's `authorization_code` grant.
pub(super) fn redeem_code(
    state: &AppState,
    params: &BTreeMap<String, String>,
    now: u64,
) -> Response {
    let param = |name: &str| params.get(name).map(String::as_str);
    let (Some(code), Some(verifier), Some(client_id)) =
        (param("code"), param("code_verifier"), param("client_id"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "code, code_verifier and client_id are required",
        );
    };
    let Some(issued) = lock(&state.launch.codes).remove(code) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code is unknown, used or expired",
        );
    };
    if issued.expires_s <= now {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code expired");
    }
    if issued.client_id != client_id || param("redirect_uri") != Some(issued.redirect_uri.as_str())
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code was issued to another client or redirect_uri",
        );
    }
    use base64::Engine as _;
    let computed =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()).0);
    if computed != issued.code_challenge {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code_verifier does not match the code_challenge",
        );
    }
    issue(
        state,
        &issued.key,
        client_id,
        &issued.scopes,
        issued.patient,
        issued.purpose,
        now,
        None,
    )
}

/// The claims of a refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RefreshClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
}

/// The token endpoint's `refresh_token` grant.
pub(super) async fn refresh(
    state: &AppState,
    params: &BTreeMap<String, String>,
    now: u64,
) -> Response {
    let (Some(token), Some(client_id)) = (params.get("refresh_token"), params.get("client_id"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token and client_id are required",
        );
    };
    let claims = match state.smart.verify_refresh(token) {
        Ok(claims) => claims,
        Err(error) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", error),
    };
    if claims.client_id != *client_id || state.launch.app(client_id).is_none() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the refresh token belongs to another client, or its app is gone",
        );
    }
    let Ok(key) = PublicKey::from_hex(&claims.sub) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "malformed refresh token",
        );
    };
    // The member must still stand; a revoked member's refresh token is dead.
    let node = state.node.clone();
    let standing =
        crate::blocking(move || Ok(node.account(&key).map(|(standing, _)| standing))).await;
    if !matches!(standing, Ok(Ok(Ok(_)))) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the member is not an enrolled, unrevoked member",
        );
    }
    let scopes: Vec<String> = claims
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let purpose = claims
        .purpose_of_use
        .as_deref()
        .and_then(|text| text.parse().ok());
    issue(
        state,
        &key,
        client_id,
        &scopes,
        claims.patient.clone(),
        purpose,
        now,
        Some((token.clone(), claims.exp)),
    )
}

/// Signs an access token (and a refresh token when asked for), and answers the token request.
#[allow(clippy::too_many_arguments)]
fn issue(
    state: &AppState,
    key: &PublicKey,
    client_id: &str,
    scopes: &[String],
    patient: Option<String>,
    purpose: Option<Purpose>,
    now: u64,
    refresh: Option<(String, u64)>,
) -> Response {
    let scope = scopes.join(" ");
    let grant = TokenGrant {
        scopes: scopes
            .iter()
            .filter_map(|scope| Scope::parse(scope))
            .collect(),
        patient: patient.clone(),
        purpose,
        client_id: client_id.to_string(),
    };
    let access_token = match state.smart.issue(key, &grant, &scope, now) {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "signing an access token failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not sign the token",
            );
        }
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": super::TOKEN_LIFETIME_S,
        "scope": scope,
    });
    if let Some(patient) = &patient {
        body["patient"] = json!(patient);
    }
    let lifetime = if scopes.iter().any(|s| s == "offline_access") {
        Some(REFRESH_OFFLINE_S)
    } else if scopes.iter().any(|s| s == "online_access") {
        Some(REFRESH_ONLINE_S)
    } else {
        None
    };
    match (refresh, lifetime) {
        // A refreshed grant keeps its refresh token (and its expiry).
        (Some((token, _)), _) => body["refresh_token"] = json!(token),
        (None, Some(lifetime)) => {
            let claims = RefreshClaims {
                iss: String::new(),
                aud: String::new(),
                sub: key.to_hex(),
                exp: now + lifetime,
                client_id: client_id.to_string(),
                scope: scope.clone(),
                patient,
                purpose_of_use: purpose.map(|purpose| purpose.code().to_string()),
            };
            match state.smart.issue_refresh(claims) {
                Ok(token) => body["refresh_token"] = json!(token),
                Err(error) => {
                    tracing::error!(%error, "signing a refresh token failed");
                    return oauth_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "could not sign the token",
                    );
                }
            }
        }
        (None, None) => {}
    }
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_screens_escape_and_describe_what_apps_ask_for() {
        assert_eq!(
            escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(
            describe_scope("patient/Observation.rs"),
            "read, search Observation of the chosen patient"
        );
        assert_eq!(
            describe_scope("user/*.cruds"),
            "create, read, update, delete, search all record types that you may see"
        );
        assert!(describe_scope("openid").contains("not granted"));
        assert!(
            grantable("patient/*.rs") && grantable("launch/patient") && grantable("offline_access")
        );
        assert!(!grantable("system/*.rs") && !grantable("openid") && !grantable("fhirUser"));
    }

    #[test]
    fn the_app_registry_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let launch = Launch::open(Some(dir.path())).expect("opens");
        let app = App {
            client_id: "c1".into(),
            name: "Growth chart".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            registered_by: "org-a".into(),
        };
        {
            let mut apps = lock(&launch.apps);
            apps.insert(app.client_id.clone(), app.clone());
            launch.save(&apps).expect("saves");
        }
        let again = Launch::open(Some(dir.path())).expect("reopens");
        assert_eq!(again.app("c1"), Some(app));
        assert_eq!(again.app("c2"), None);
        std::fs::write(dir.path().join("apps.json"), b"not json").expect("write");
        assert!(Launch::open(Some(dir.path())).is_err());
    }
}
