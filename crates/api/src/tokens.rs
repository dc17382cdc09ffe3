//! `/v1/tokens`: reads of the token ledger (classes, balances, statements, escrows, reward
//! programs), answered from the committed state with the height they were read at. Amounts are
//! decimal strings of minor units. Every operation is a transaction sent to `/v1/txs`; a balance
//! or a movement is proven to a light client like any state entry (`/v1/state/{key}?proof=true`,
//! e.g. `token-balance/<symbol>/<account>`).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use medledger_crypto::{Hash, PublicKey};
use serde::Deserialize;
use serde_json::{Value, json};

use medledger_node::tokens::Tokens;

use crate::{ApiError, ApiResult, AppState};

pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <TokensDoc as utoipa::OpenApi>::openapi,
    consent: None,
    audit: None,
    fhir: None,
    fhir_source: None,
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(class, balance, statement, escrow, program))]
struct TokensDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tokens/classes/{symbol}", get(class))
        .route(
            "/v1/tokens/classes/{symbol}/balances/{account}",
            get(balance),
        )
        .route("/v1/tokens/statements/{account}", get(statement))
        .route("/v1/tokens/escrows/{id}", get(escrow))
        .route("/v1/tokens/programs/{id}", get(program))
}

/// An account: a member's key or a contract's address (no curve point), 32 bytes of hex.
fn key(text: &str) -> ApiResult<PublicKey> {
    text.parse::<PublicKey>()
        .map_err(|error| ApiError::bad_request("malformed_key", format!("the account: {error}")))
}

fn symbol(text: &str) -> ApiResult<()> {
    medledger_tokens::check_symbol(text)
        .map_err(|error| ApiError::bad_request("malformed_symbol", error.to_string()))
}

/// Reads the head on a blocking thread; a missing entry answers 404.
async fn read_head<T: serde::Serialize + Send + 'static>(
    state: &AppState,
    read: impl FnOnce(&dyn medledger_state::StateRead) -> Result<Option<T>, medledger_state::StateError>
    + Send
    + 'static,
    missing: String,
) -> ApiResult<Json<Value>> {
    match crate::read_at_head(state, read).await? {
        (height, Some(value)) => Ok(Json(json!({ "height": height, "entry": value }))),
        (_, None) => Err(ApiError::not_found(missing)),
    }
}

#[utoipa::path(get, path = "/v1/tokens/classes/{symbol}", tag = "tokens",
    params(("symbol" = String, Path)),
    responses((status = 200, description = "The class: name, decimals, issuers, minted, burned, escrowed, its movements' count, or its proposal while it awaits approval"),
        (status = 404, description = "No such class or proposal")))]
async fn class(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    symbol(&id)?;
    let missing = format!("no token class or proposal {id}");
    read_head(
        &state,
        move |view| {
            if let Some(found) = medledger_tokens::class(view, &id)? {
                return Ok(Some(
                    json!({ "class": found, "supply": found.supply().to_string() }),
                ));
            }
            Ok(
                medledger_tokens::proposal(view, &id)?
                    .map(|pending| json!({ "proposal": pending })),
            )
        },
        missing,
    )
    .await
}

#[utoipa::path(get, path = "/v1/tokens/classes/{symbol}/balances/{account}", tag = "tokens",
    params(("symbol" = String, Path), ("account" = String, Path, description = "The account's public key, hex")),
    responses((status = 200, description = "The balance in minor units (a decimal string) at the head; prove it with /v1/state/token-balance/{symbol}/{account}?proof=true")))]
async fn balance(
    State(state): State<AppState>,
    Path((id, account)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    symbol(&id)?;
    let account = key(&account)?;
    let missing = format!("no token class {id}");
    read_head(
        &state,
        move |view| {
            if medledger_tokens::class(view, &id)?.is_none() {
                return Ok(None);
            }
            let held = medledger_tokens::balance(view, &id, &account)?;
            Ok(Some(json!({
                "symbol": id,
                "account": account,
                "balance": held.to_string(),
                "key": String::from_utf8_lossy(&medledger_tokens::key_balance(&id, &account)),
            })))
        },
        missing,
    )
    .await
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    offset: u64,
    limit: Option<u64>,
}

#[utoipa::path(get, path = "/v1/tokens/statements/{account}", tag = "tokens",
    params(("account" = String, Path), ("offset" = Option<u64>, Query), ("limit" = Option<u64>, Query, description = "At most 1,000")),
    responses((status = 200, description = "Every movement that touched the account, oldest first, and their total")))]
async fn statement(
    State(state): State<AppState>,
    Path(account): Path<String>,
    query: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(page) = crate::parse_query(query)?;
    let account = key(&account)?;
    let tokens: Tokens = crate::service(&state, "token statement")?;
    let statement = tokens
        .statement(&account, page.offset, page.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({
        "height": statement.height,
        "entry": { "total": statement.total, "movements": statement.movements },
    })))
}

#[utoipa::path(get, path = "/v1/tokens/escrows/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Escrow id, hex")),
    responses((status = 200, description = "The escrow: payer, payee, amount, arbiter, reference and state")))]
async fn escrow(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = Hash::from_hex(&id).map_err(|error| {
        ApiError::bad_request("malformed_id", format!("the escrow id: {error}"))
    })?;
    read_head(
        &state,
        move |view| Ok(medledger_tokens::escrow(view, &id)?.map(|held| json!(held))),
        format!("no escrow {id}"),
    )
    .await
}

#[utoipa::path(get, path = "/v1/tokens/programs/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Reward program id")),
    responses((status = 200, description = "The reward program: class, issuer, purpose, cap per patient and period")))]
async fn program(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let missing = format!("no reward program {id}");
    read_head(
        &state,
        move |view| Ok(medledger_tokens::reward_program(view, &id)?.map(|found| json!(found))),
        missing,
    )
    .await
}
