//! SMART on FHIR authorisation (OAuth 2.0), served by the node, so that an unmodified FHIR client
//! with a bearer token can use the FHIR face.
//!
//! - `GET /.well-known/smart-configuration` (also under `/fhir/`) says what the node supports.
//! - `POST /oauth/token` issues access tokens. SMART Backend Services: `client_credentials` with
//!   a `private_key_jwt` client assertion, where the client is an enrolled member (`client_id` is
//!   its public key in hex) and the assertion is an EdDSA JWT signed with its Ed25519 key (or
//!   ES384, below), for this token endpoint (`aud`), valid for at most five minutes and used once
//!   (`jti`).
//! - `GET /oauth/jwks` publishes the key that signs the node's tokens.
//!
//! An access token is an EdDSA JWT signed by a key the node derives from its own, lives
//! [`TOKEN_LIFETIME_S`] seconds, and names the member, the granted SMART scopes and, when asked
//! for, a purpose of use. It is checked on every request together with the member's standing at
//! the head, so it stops working the moment the member is revoked. Scopes are enforced in
//! addition to the patient's consent, never instead of it, and every access is audited on chain
//! naming the member, exactly as with a signed request.
//!
//! - App Launch (authorization code with PKCE, the node's consent screen, refresh tokens,
//!   `launch/patient`) is in [`launch`].
//!
//! - ES384 assertions are checked against a P-384 key the member registered on chain (the
//!   credentials module, `client-key/<member>/<kid>`), named by the assertion's `kid`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use medledger_crypto::{PublicKey, SecretKey};
use medledger_ledger::Authority;
use medledger_records::Purpose;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;

pub mod launch;

/// How long an access token lives.
pub const TOKEN_LIFETIME_S: u64 = 300;
/// The longest a client assertion may live (SMART: no more than five minutes).
pub const ASSERTION_LIFETIME_MAX_S: u64 = 300;
/// Client assertion ids remembered, so an assertion is used once.
pub const ASSERTIONS_REMEMBERED_MAX: usize = 100_000;
/// The clock skew tolerated on a client assertion's times.
pub const CLOCK_LEEWAY_S: u64 = 30;
/// The most scopes one token request may ask for.
pub const SCOPES_MAX: usize = 64;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What a scope lets its holder do to a resource type (SMART v2 `cruds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

/// Whose data a scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Context {
    /// The patient in the token's launch context.
    Patient,
    /// Whatever the user may see.
    User,
    /// Whatever the client (a backend system) may see.
    System,
}

/// One SMART clinical scope, e.g. `system/Observation.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub context: Context,
    /// `None` for `*`.
    pub resource_type: Option<String>,
    pub actions: Vec<Action>,
}

impl Scope {
    /// Parses a SMART v2 (`patient/Observation.rs`) or v1 (`patient/Observation.read`) scope.
    pub fn parse(text: &str) -> Option<Scope> {
        let (context, rest) = text.split_once('/')?;
        let context = match context {
            "patient" => Context::Patient,
            "user" => Context::User,
            "system" => Context::System,
            _ => return None,
        };
        // v2 allows query parameters after `?`; they narrow a scope, which is not supported.
        if rest.contains('?') {
            return None;
        }
        let (resource, permissions) = rest.split_once('.')?;
        let resource_type = match resource {
            "*" => None,
            name if medledger_fhir::is_resource_type(name) => Some(name.to_string()),
            _ => return None,
        };
        let actions = match permissions {
            "read" => vec![Action::Read, Action::Search],
            "write" => vec![Action::Create, Action::Update, Action::Delete],
            "*" => vec![
                Action::Create,
                Action::Read,
                Action::Update,
                Action::Delete,
                Action::Search,
            ],
            letters => {
                // v2: a subset of `cruds`, in that order, without repeats.
                let order = "cruds";
                let mut last = None;
                let mut actions = Vec::new();
                for letter in letters.chars() {
                    let position = order.find(letter)?;
                    if last.is_some_and(|last| position <= last) {
                        return None;
                    }
                    last = Some(position);
                    actions.push(match letter {
                        'c' => Action::Create,
                        'r' => Action::Read,
                        'u' => Action::Update,
                        'd' => Action::Delete,
                        _ => Action::Search,
                    });
                }
                if actions.is_empty() {
                    return None;
                }
                actions
            }
        };
        Some(Scope {
            context,
            resource_type,
            actions,
        })
    }

    fn covers(&self, resource_type: &str, action: Action) -> bool {
        self.resource_type
            .as_deref()
            .is_none_or(|name| name == resource_type)
            && self.actions.contains(&action)
    }
}

/// What a bearer token grants, as checked on each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub scopes: Vec<Scope>,
    /// The launch patient's logical id, for `patient/` scopes.
    pub patient: Option<String>,
    pub purpose: Option<Purpose>,
    pub client_id: String,
}

impl TokenGrant {
    /// Whether the token lets its holder do `action` on `resource_type`, for the patient with
    /// logical id `patient` when one is known: a `patient/` scope covers only the launch patient.
    pub fn allows(&self, resource_type: &str, action: Action, patient: Option<&str>) -> bool {
        self.scopes.iter().any(|scope| {
            scope.covers(resource_type, action)
                && match scope.context {
                    Context::Patient => {
                        self.patient.is_some()
                            && patient.is_none_or(|id| Some(id) == self.patient.as_deref())
                    }
                    Context::User | Context::System => true,
                }
        })
    }
}

/// The claims of the node's access tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    scope: String,
    client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<String>,
}

/// The claims SMART requires of a client assertion.
#[derive(Debug, Clone, Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: u64,
    jti: String,
}

/// The node's token authority: the key its tokens are signed with, and the client assertions it
/// has seen.
pub struct Smart {
    issuer: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_key: PublicKey,
    assertions: Mutex<BTreeMap<(String, String), u64>>,
}

impl std::fmt::Debug for Smart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smart")
            .field("issuer", &self.issuer)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// A SMART Backend Services client assertion (`private_key_jwt`), as a client builds it: an EdDSA
/// JWT signed with the member's key, naming the member as issuer and subject, for the token
/// endpoint `token_url`, with a fresh `jti`, valid for `lifetime_s` seconds from `now_s`.
pub fn client_assertion(key: &SecretKey, token_url: &str, now_s: u64, lifetime_s: u64) -> String {
    let mut jti = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut jti);
    let client_id = key.public_key().to_hex();
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now_s + lifetime_s,
        "iat": now_s,
        "jti": hex::encode(jti),
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_der(&ed25519_pkcs8(&key.to_bytes())),
    )
    .unwrap_or_default()
}

/// The form body of a Backend Services token request.
pub fn token_request(assertion: &str, scope: &str, purpose: Option<&str>) -> String {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    if let Some(purpose) = purpose {
        form.push(("purpose_of_use", purpose));
    }
    serde_urlencoded::to_string(&form).unwrap_or_default()
}

/// Ed25519 private key `seed` as PKCS#8 v1 DER (RFC 8410 §7): the fixed 16-byte header, then the
/// seed; the form the JOSE signer takes.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// The audience of refresh tokens: never the access tokens' own, so neither passes for the other.
fn refresh_audience(issuer: &str) -> String {
    format!("{issuer}#refresh")
}

/// Why a request's bearer token is refused (answered 401 with `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the bearer token is malformed, forged, for another server, or expired: {0}")]
    Invalid(String),
    #[error("the token's member is not an enrolled, unrevoked member: {0}")]
    Revoked(String),
}

/// A verified bearer token: its member and what it grants.
#[derive(Debug, Clone)]
pub struct Bearer {
    pub key: PublicKey,
    pub grant: TokenGrant,
}

impl Smart {
    /// The token authority of the node with this chain id, signing with `seed` (a key the node
    /// derives from its own for this purpose).
    pub fn new(chain_id: &str, node_key: &PublicKey, seed: [u8; 32]) -> Smart {
        let secret = SecretKey::from_bytes(seed);
        let public_key = secret.public_key();
        Smart {
            issuer: format!("urn:medledger:{chain_id}:node:{node_key}"),
            encoding: EncodingKey::from_ed_der(&ed25519_pkcs8(&seed)),
            decoding: DecodingKey::from_ed_der(&public_key.0),
            public_key,
            assertions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Signs an access token for `key` granting `grant`.
    fn issue(
        &self,
        key: &PublicKey,
        grant: &TokenGrant,
        scope: &str,
        now_s: u64,
    ) -> Result<String, String> {
        let mut jti = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut jti);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: key.to_hex(),
            aud: self.issuer.clone(),
            exp: now_s + TOKEN_LIFETIME_S,
            iat: now_s,
            jti: hex::encode(jti),
            scope: scope.to_string(),
            client_id: grant.client_id.clone(),
            patient: grant.patient.clone(),
            purpose_of_use: grant.purpose.map(|purpose| purpose.code().to_string()),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.public_key.to_hex());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|error| error.to_string())
    }

    /// Checks a bearer token's signature, issuer, audience and expiry (not yet the member's
    /// standing, which the caller checks at the head).
    pub fn verify(&self, token: &str) -> Result<Bearer, TokenError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.issuer]);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|error| TokenError::Invalid(error.to_string()))?;
        let claims = data.claims;
        let key = PublicKey::from_hex(&claims.sub)
            .map_err(|error| TokenError::Invalid(format!("sub: {error}")))?;
        let purpose = claims
            .purpose_of_use
            .as_deref()
            .map(str::parse::<Purpose>)
            .transpose()
            .map_err(TokenError::Invalid)?;
        Ok(Bearer {
            key,
            grant: TokenGrant {
                scopes: claims.scope.split(' ').filter_map(Scope::parse).collect(),
                patient: claims.patient,
                purpose,
                client_id: claims.client_id,
            },
        })
    }

    /// Signs a refresh token (its issuer and audience are filled in here).
    fn issue_refresh(&self, mut claims: launch::RefreshClaims) -> Result<String, String> {
        claims.iss = self.issuer.clone();
        claims.aud = refresh_audience(&self.issuer);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.public_key.to_hex());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|error| error.to_string())
    }

    /// Checks a refresh token: this node's signature, its audience, unexpired.
    fn verify_refresh(&self, token: &str) -> Result<launch::RefreshClaims, String> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[refresh_audience(&self.issuer)]);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<launch::RefreshClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|error| format!("the refresh token is not valid: {error}"))
    }

    /// Remembers a client assertion's id until it expires; false if it was already used.
    fn first_use(&self, client: &str, jti: &str, exp: u64, now_s: u64) -> bool {
        let mut seen = self
            .assertions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.retain(|_, expiry| *expiry + CLOCK_LEEWAY_S >= now_s);
        if seen.len() >= ASSERTIONS_REMEMBERED_MAX {
            return false;
        }
        seen.insert((client.to_string(), jti.to_string()), exp)
            .is_none()
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/.well-known/smart-configuration", get(configuration))
        .route("/fhir/.well-known/smart-configuration", get(configuration))
        .route("/oauth/token", post(token))
        .route("/oauth/jwks", get(jwks))
        .route("/oauth/apps", post(launch::register))
        .route("/oauth/authorize", get(launch::authorize))
        .route("/oauth/authorize/{id}", get(launch::show))
        .route("/oauth/authorize/{id}/approve", post(launch::approve))
        .route("/oauth/authorize/{id}/deny", post(launch::deny))
        .route(
            "/oauth/authorize/{id}/continue",
            get(launch::continue_to_app),
        )
}

/// The base URL this request reached the node at, from its `Host` header.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// `GET /.well-known/smart-configuration`: SMART App Launch 2 §2.1 discovery.
async fn configuration(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    let mut response = Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/oauth/jwks"),
        "token_endpoint": format!("{base}/oauth/token"),
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "registration_endpoint": format!("{base}/oauth/apps"),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "Ed25519", "ES384"],
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "scopes_supported": [
            "system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs",
            "patient/*.cruds", "patient/*.rs", "system/*.read", "user/*.read",
            "patient/*.read", "launch/patient", "offline_access", "online_access",
        ],
        "response_types_supported": ["code"],
        "capabilities": [
            "launch-standalone",
            "client-public",
            "client-confidential-asymmetric",
            "context-standalone-patient",
            "permission-offline",
            "permission-online",
            "permission-patient",
            "permission-user",
            "permission-v2",
            "permission-v1",
        ],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    use base64::Engine as _;
    let key = &state.smart.public_key;
    Json(json!({"keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": key.to_hex(),
        "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.0),
    }]}))
}

/// An OAuth 2.0 error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": description.into()})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn now_s() -> u64 {
    crate::fhir::now_ms() / 1_000
}

/// `POST /oauth/token`.
async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(error) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body must be application/x-www-form-urlencoded: {error}"),
            );
        }
    };
    let mut params = BTreeMap::new();
    for (name, value) in form {
        if params.insert(name.clone(), value).is_some() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{name} is given twice"),
            );
        }
    }
    let param = |name: &str| params.get(name).map(String::as_str);
    match param("grant_type") {
        Some("client_credentials") => {}
        Some("authorization_code") => return launch::redeem_code(&state, &params, now_s()),
        Some("refresh_token") => return launch::refresh(&state, &params, now_s()).await,
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use client_credentials"),
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    }
    if param("client_assertion_type") != Some(ASSERTION_TYPE) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!(
                "authenticate with private_key_jwt: client_assertion_type={ASSERTION_TYPE} and a client_assertion"
            ),
        );
    }
    let Some(assertion) = param("client_assertion") else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_assertion is required",
        );
    };
    let token_url = format!("{}/oauth/token", base_url(&headers));
    let now = now_s();
    let checker = state.clone();
    let assertion = assertion.to_string();
    let checked =
        crate::blocking(move || Ok(check_assertion(&checker, &assertion, &token_url, now))).await;
    let key = match checked {
        Ok(Ok(key)) => key,
        Ok(Err(message)) => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", message);
        }
        Err(_) => {
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the node could not check the assertion",
            );
        }
    };
    if let Some(client_id) = param("client_id")
        && client_id != key.to_hex()
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id is not the assertion's issuer",
        );
    }
    // The member must be enrolled and unrevoked now; every later request checks again.
    let node = state.node.clone();
    let standing =
        crate::blocking(move || Ok(node.account(&key).map(|(standing, _)| standing))).await;
    match standing {
        Ok(Ok(Ok(Authority::Organisation { .. } | Authority::Member { .. }))) => {}
        Ok(Ok(Err(reason))) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                format!("the client is not an enrolled, unrevoked member: {reason}"),
            );
        }
        _ => {
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the node could not read the member's standing",
            );
        }
    }
    let requested = param("scope").unwrap_or("");
    let words: Vec<&str> = requested
        .split(' ')
        .filter(|word| !word.is_empty())
        .collect();
    if words.len() > SCOPES_MAX {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("at most {SCOPES_MAX} scopes"),
        );
    }
    // Backend Services are granted system scopes; anything else asked for is left out, as
    // OAuth allows (the response's `scope` says what was granted).
    let granted: Vec<&str> = words
        .iter()
        .copied()
        .filter(|word| Scope::parse(word).is_some_and(|scope| scope.context == Context::System))
        .collect();
    if granted.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "ask for at least one SMART system scope, e.g. system/*.rs or system/Observation.read",
        );
    }
    let purpose = match param("purpose_of_use")
        .map(str::parse::<Purpose>)
        .transpose()
    {
        Ok(purpose) => purpose,
        Err(error) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", error),
    };
    let scope = granted.join(" ");
    let grant = TokenGrant {
        scopes: granted
            .iter()
            .filter_map(|word| Scope::parse(word))
            .collect(),
        patient: None,
        purpose,
        client_id: key.to_hex(),
    };
    match state.smart.issue(&key, &grant, &scope, now) {
        Ok(access_token) => {
            let mut response = Json(json!({
                "access_token": access_token,
                "token_type": "bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "scope": scope,
            }))
            .into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "signing an access token failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not sign the token",
            )
        }
    }
}

/// Checks a private_key_jwt client assertion and returns the member it authenticates.
fn check_assertion(
    state: &AppState,
    assertion: &str,
    token_url: &str,
    now_s: u64,
) -> Result<PublicKey, String> {
    // RFC 9864 names Ed25519 signatures `"alg": "Ed25519"` and deprecates the polymorphic
    // `EdDSA`; `jsonwebtoken` knows only the latter, so that one name is checked here.
    if jws_alg(assertion).as_deref() == Some("Ed25519") {
        return check_ed25519_assertion(state, assertion, token_url, now_s);
    }
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|error| format!("client_assertion is not a JWT: {error}"))?;
    if !matches!(header.alg, Algorithm::EdDSA | Algorithm::ES384) {
        return Err(format!(
            "alg {:?} is not accepted; use EdDSA (the member's Ed25519 key) or ES384 (a P-384 key the member registered on chain)",
            header.alg
        ));
    }
    // The issuer names the key to check the signature with; nothing is trusted before that.
    let unverified: serde_json::Value = {
        let payload = assertion
            .split('.')
            .nth(1)
            .ok_or("client_assertion is not a JWT")?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| "client_assertion's payload is not base64url")?;
        serde_json::from_slice(&bytes).map_err(|_| "client_assertion's payload is not JSON")?
    };
    let issuer = unverified["iss"]
        .as_str()
        .ok_or("client_assertion has no iss")?;
    let key = PublicKey::from_hex(issuer).map_err(
        |_| "the assertion's iss (the client_id) must be the member's public key in hex",
    )?;
    let decoding = match header.alg {
        Algorithm::ES384 => {
            let kid = header
                .kid
                .as_deref()
                .ok_or("an ES384 assertion names its key with kid")?;
            let (_, found) = state
                .node
                .read_head(|view| Ok(medledger_credentials::client_key(view, &key, kid)?))
                .map_err(|error| format!("the node could not read the key: {error}"))?;
            let registered = found
                .ok()
                .flatten()
                .ok_or_else(|| format!("the member registered no client key {kid:?}"))?;
            if registered.revoked_at.is_some()
                || registered.algorithm != medledger_credentials::KeyAlgorithm::Es384
            {
                return Err(format!(
                    "client key {kid:?} is revoked, or not an ES384 key"
                ));
            }
            DecodingKey::from_ec_der(&registered.public_key)
        }
        _ => DecodingKey::from_ed_der(&key.0),
    };
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[token_url]);
    validation.set_issuer(&[issuer]);
    validation.leeway = CLOCK_LEEWAY_S;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &decoding, &validation)
        .map_err(|error| format!("client_assertion refused: {error} (aud must be {token_url})"))?
        .claims;
    accept_claims(state, &claims, now_s)?;
    Ok(key)
}

/// The checks every client assertion's verified claims must pass: subject is issuer, a lifetime
/// within SMART's five minutes, and a `jti` not seen before.
fn accept_claims(state: &AppState, claims: &AssertionClaims, now_s: u64) -> Result<(), String> {
    if claims.sub != claims.iss {
        return Err("the assertion's sub must equal its iss".into());
    }
    if claims.exp > now_s + ASSERTION_LIFETIME_MAX_S + CLOCK_LEEWAY_S {
        return Err(format!(
            "the assertion expires more than {ASSERTION_LIFETIME_MAX_S} s from now"
        ));
    }
    if claims.jti.is_empty()
        || !state
            .smart
            .first_use(&claims.iss, &claims.jti, claims.exp, now_s)
    {
        return Err("the assertion's jti was already used (or is missing)".into());
    }
    Ok(())
}

fn base64url(part: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| "the client_assertion is not base64url".to_string())
}

/// The `alg` a compact JWS's header names, if it has a readable one.
fn jws_alg(token: &str) -> Option<String> {
    let header = base64url(token.split('.').next()?).ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    header["alg"].as_str().map(str::to_string)
}

/// Checks an assertion signed `"alg": "Ed25519"` (RFC 9864) with the member's key: the
/// signature over the JWS signing input, then the registered claims as `jsonwebtoken` checks
/// them for `EdDSA` (expiry with leeway, audience, issuer).
fn check_ed25519_assertion(
    state: &AppState,
    assertion: &str,
    token_url: &str,
    now_s: u64,
) -> Result<PublicKey, String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err("client_assertion is not a compact JWS".into());
    };
    let claims_value: serde_json::Value = serde_json::from_slice(&base64url(payload)?)
        .map_err(|_| "client_assertion's payload is not JSON")?;
    let claims: AssertionClaims = serde_json::from_value(claims_value.clone())
        .map_err(|error| format!("client_assertion's claims: {error}"))?;
    let key = PublicKey::from_hex(&claims.iss).map_err(
        |_| "the assertion's iss (the client_id) must be the member's public key in hex",
    )?;
    let signature: [u8; 64] = base64url(signature)?
        .try_into()
        .map_err(|_| "an Ed25519 signature is 64 bytes")?;
    key.verify(
        format!("{header}.{payload}").as_bytes(),
        &medledger_crypto::Signature(signature),
    )
    .map_err(|_| "client_assertion refused: the signature does not verify")?;
    if claims.exp + CLOCK_LEEWAY_S < now_s {
        return Err("client_assertion refused: it has expired".into());
    }
    let audience_ok = match &claims_value["aud"] {
        serde_json::Value::String(aud) => aud == token_url,
        serde_json::Value::Array(list) => list.iter().any(|aud| aud == token_url),
        _ => false,
    };
    if !audience_ok {
        return Err(format!("client_assertion refused: aud must be {token_url}"));
    }
    accept_claims(state, &claims, now_s)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_as_smart_v1_and_v2() {
        let check = |text: &str, expected: Option<(Context, Option<&str>, &[Action])>| {
            let parsed = Scope::parse(text);
            let got = parsed.as_ref().map(|scope| {
                (
                    scope.context,
                    scope.resource_type.as_deref(),
                    scope.actions.as_slice(),
                )
            });
            assert_eq!(got, expected, "{text}");
        };
        use Action::*;
        check(
            "system/*.rs",
            Some((Context::System, None, &[Read, Search])),
        );
        check(
            "patient/Observation.rs",
            Some((Context::Patient, Some("Observation"), &[Read, Search])),
        );
        check(
            "user/Observation.cruds",
            Some((
                Context::User,
                Some("Observation"),
                &[Create, Read, Update, Delete, Search],
            )),
        );
        check("user/*.read", Some((Context::User, None, &[Read, Search])));
        check(
            "system/Patient.write",
            Some((Context::System, Some("Patient"), &[Create, Update, Delete])),
        );
        check("system/*.sr", None);
        check("system/*.rr", None);
        check("system/*.x", None);
        check("system/*.", None);
        check("system/Nope.rs", None);
        check("admin/*.rs", None);
        check("patient/Observation.rs?category=laboratory", None);
        check("launch/patient", None);
        check("openid", None);
    }

    #[test]
    fn grants_cover_only_their_types_actions_and_patient() {
        let grant = |scopes: &[&str], patient: Option<&str>| TokenGrant {
            scopes: scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            patient: patient.map(str::to_string),
            purpose: None,
            client_id: "c".into(),
        };
        let system = grant(&["system/Observation.rs"], None);
        assert!(system.allows("Observation", Action::Read, Some("p1")));
        assert!(system.allows("Observation", Action::Search, None));
        assert!(!system.allows("Observation", Action::Create, None));
        assert!(!system.allows("Condition", Action::Read, None));
        let patient = grant(&["patient/*.rs"], Some("p1"));
        assert!(patient.allows("Condition", Action::Read, Some("p1")));
        assert!(!patient.allows("Condition", Action::Read, Some("p2")));
        let unlaunched = grant(&["patient/*.rs"], None);
        assert!(!unlaunched.allows("Condition", Action::Read, Some("p1")));
    }

    #[test]
    fn tokens_verify_only_with_the_nodes_key_and_until_they_expire() {
        let node = SecretKey::from_seed(1).public_key();
        let smart = Smart::new("chain", &node, [7; 32]);
        let member = SecretKey::from_seed(2).public_key();
        let grant = TokenGrant {
            scopes: vec![Scope::parse("system/*.rs").expect("scope")],
            patient: None,
            purpose: Some(Purpose::Treat),
            client_id: member.to_hex(),
        };
        let now = now_s();
        let token = smart
            .issue(&member, &grant, "system/*.rs", now)
            .expect("signs");
        let bearer = smart.verify(&token).expect("verifies");
        assert_eq!(bearer.key, member);
        assert_eq!(bearer.grant, grant);
        // Another node (another key) does not accept it; nor does a tampered or expired token.
        let other = Smart::new("chain", &node, [8; 32]);
        assert!(other.verify(&token).is_err());
        let mut tampered = token.clone();
        tampered.insert(tampered.len() / 2, 'x');
        assert!(smart.verify(&tampered).is_err());
        let old = smart
            .issue(&member, &grant, "system/*.rs", now - TOKEN_LIFETIME_S - 10)
            .expect("signs");
        assert!(matches!(smart.verify(&old), Err(TokenError::Invalid(_))));
        // A client's assertion, as a client builds it, verifies as this node checks it.
        let assertion = client_assertion(&SecretKey::from_seed(3), "http://n/oauth/token", now, 60);
        let header = jsonwebtoken::decode_header(&assertion).expect("a JWT");
        assert_eq!(header.alg, Algorithm::EdDSA);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["http://n/oauth/token"]);
        let key = SecretKey::from_seed(3).public_key();
        assert!(
            jsonwebtoken::decode::<AssertionClaims>(
                &assertion,
                &DecodingKey::from_ed_der(&key.0),
                &validation
            )
            .is_ok()
        );
        // Assertion ids are used once.
        assert!(smart.first_use("c", "j1", now + 60, now));
        assert!(!smart.first_use("c", "j1", now + 60, now));
        assert!(smart.first_use("d", "j1", now + 60, now));
    }
}
