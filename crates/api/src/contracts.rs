//! `/v1/contracts` and `/v1/governance`: reads of deployed contracts (their code, state, calls
//! and events), read-only contract queries, the chain's contract event feed, and governance
//! proposals and chain parameters. Every change is a signed transaction sent to `/v1/txs`
//! (`upload_code`, `execute_contract`, `propose`, `approve_proposal`); every entry read here is
//! proven to a light client like any other (`/v1/state/{key}?proof=true` with the `key` each
//! answer names).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use medledger_contracts as contracts;
use medledger_crypto::Hash;
use medledger_ledger::governance;
use medledger_node::contracts::Contracts;
use medledger_types::Height;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState, blocking, parse_hash, parse_query};

pub(crate) const API: crate::ModuleApi = crate::ModuleApi {
    routes,
    openapi: <ContractsDoc as utoipa::OpenApi>::openapi,
    consent: None,
    audit: None,
    fhir: None,
    fhir_source: None,
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list,
    contract,
    query,
    value,
    contract_events,
    events,
    add_webhook,
    list_webhooks,
    call,
    code,
    proposals,
    proposal,
    parameters
))]
struct ContractsDoc;

fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/contracts", get(list))
        .route("/v1/contracts/events", get(events))
        .route(
            "/v1/contracts/webhooks",
            post(add_webhook).get(list_webhooks),
        )
        .route("/v1/contracts/calls/{tx}", get(call))
        .route("/v1/contracts/code/{hash}", get(code))
        .route("/v1/contracts/{address}", get(contract))
        .route("/v1/contracts/{address}/query", post(query))
        .route("/v1/contracts/{address}/state/{key}", get(value))
        .route("/v1/contracts/{address}/events", get(contract_events))
        .route("/v1/governance/proposals", get(proposals))
        .route("/v1/governance/proposals/{id}", get(proposal))
        .route("/v1/governance/parameters", get(parameters))
}

fn service(state: &AppState) -> ApiResult<Contracts> {
    crate::service::<Contracts>(state, "contracts")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    /// The first item (default 0).
    from: Option<u64>,
    /// At most this many (default and most 100).
    limit: Option<u64>,
}

const PAGE_MAX: u64 = 100;

fn page(query: Result<Query<Page>, QueryRejection>) -> ApiResult<(u64, u64)> {
    let Query(page) = parse_query(query)?;
    Ok((
        page.from.unwrap_or(0),
        page.limit.unwrap_or(PAGE_MAX).min(PAGE_MAX),
    ))
}

/// Reads the head on a blocking thread: `Ok(None)` answers 404 with `missing`; the answer
/// carries the height it was read at.
async fn at_head(
    state: &AppState,
    read: impl FnOnce(
        &dyn medledger_state::StateRead,
    ) -> Result<Option<Value>, medledger_state::StateError>
    + Send
    + 'static,
    missing: String,
) -> ApiResult<Json<Value>> {
    match crate::read_at_head(state, read).await? {
        (height, Some(mut value)) => {
            value["height"] = json!(height);
            Ok(Json(value))
        }
        (_, None) => Err(ApiError::not_found(missing)),
    }
}

fn text(key: Vec<u8>) -> String {
    String::from_utf8_lossy(&key).into_owned()
}

#[utoipa::path(get, path = "/v1/contracts", tag = "contracts",
    params(("from" = Option<u64>, Query), ("limit" = Option<u64>, Query, description = "At most 100")),
    responses((status = 200, description = "The deployed contracts in order of deployment: address, code, label, version, frozen")))]
async fn list(
    State(state): State<AppState>,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (from, limit) = page(query)?;
    at_head(
        &state,
        move |view| {
            let mut found = Vec::new();
            for address in contracts::list(view, from, limit)? {
                found.extend(contracts::contract(view, &address)?);
            }
            Ok(Some(json!({ "contracts": found })))
        },
        String::new(),
    )
    .await
}

#[utoipa::path(get, path = "/v1/contracts/{address}", tag = "contracts",
    params(("address" = String, Path, description = "The contract's address, hex")),
    responses((status = 200, description = "The contract: its code's hash, label, version, whether it is frozen, the proposal that deployed it, its event count, and the state key that proves it"),
        (status = 404, description = "No such contract")))]
async fn contract(
    State(state): State<AppState>,
    Path(address): Path<String>,
) -> ApiResult<Json<Value>> {
    let address = parse_hash(&address, "the contract address")?;
    at_head(
        &state,
        move |view| {
            Ok(contracts::contract(view, &address)?.map(
                |info| json!({ "contract": info, "key": text(contracts::key_contract(&address)) }),
            ))
        },
        format!("no contract {address}"),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtHeight {
    height: Option<Height>,
}

#[utoipa::path(post, path = "/v1/contracts/{address}/query", tag = "contracts",
    params(("address" = String, Path), ("height" = Option<u64>, Query, description = "Query the state after this block (default: the head)")),
    request_body(content = Object, description = "The query message, JSON, as the contract defines it"),
    responses((status = 200, description = "The contract's answer: status (done, refused, or the fault: out_of_fuel, trap, abort, limit, write_in_query), result (its JSON), fuel used and the height"),
        (status = 400, description = "The body is not JSON"),
        (status = 404, description = "No such contract or height")))]
async fn query(
    State(state): State<AppState>,
    Path(address): Path<String>,
    height: Result<Query<AtHeight>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let address = parse_hash(&address, "the contract address")?;
    let Query(at) = parse_query(height)?;
    let body = body.map_err(|error| ApiError::bad_request("malformed_body", error.body_text()))?;
    let msg = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("malformed_body", "the message must be UTF-8 JSON"))?;
    if serde_json::from_str::<Value>(&msg).is_err() {
        return Err(ApiError::bad_request(
            "message_not_json",
            "the query message must be JSON",
        ));
    }
    let service = service(&state)?;
    blocking(move || Ok(Json(json!(service.query(address, msg, at.height)?)))).await
}

#[utoipa::path(get, path = "/v1/contracts/{address}/state/{key}", tag = "contracts",
    params(("address" = String, Path), ("key" = String, Path, description = "The contract's own key, hex")),
    responses((status = 200, description = "The value (hex, and as text if it is UTF-8) and the state key that proves it"),
        (status = 404, description = "No such contract, or no value under the key")))]
async fn value(
    State(state): State<AppState>,
    Path((address, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let address = parse_hash(&address, "the contract address")?;
    let key = hex::decode(&key)
        .map_err(|error| ApiError::bad_request("malformed_key", format!("the key: {error}")))?;
    if key.len() > contracts::runtime::KEY_BYTES_MAX {
        return Err(ApiError::bad_request(
            "malformed_key",
            format!(
                "a contract key is at most {} bytes",
                contracts::runtime::KEY_BYTES_MAX
            ),
        ));
    }
    at_head(
        &state,
        move |view| {
            Ok(contracts::value(view, &address, &key)?.map(|value| {
                json!({
                    "hex": hex::encode(&value),
                    "text": String::from_utf8(value).ok(),
                    "key": text(contracts::key_value(&address, &key)),
                })
            }))
        },
        "no such contract or no value under the key".into(),
    )
    .await
}

#[utoipa::path(get, path = "/v1/contracts/{address}/events", tag = "contracts",
    params(("address" = String, Path), ("from" = Option<u64>, Query, description = "The contract's first event (default 0)"), ("limit" = Option<u64>, Query)),
    responses((status = 200, description = "The contract's events, oldest first, each with its number in the chain's log, its block and transaction")))]
async fn contract_events(
    State(state): State<AppState>,
    Path(address): Path<String>,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let address = parse_hash(&address, "the contract address")?;
    let (from, limit) = page(query)?;
    at_head(
        &state,
        move |view| {
            if contracts::contract(view, &address)?.is_none() {
                return Ok(None);
            }
            Ok(Some(
                json!({ "events": contracts::events_of(view, &address, from, limit)? }),
            ))
        },
        format!("no contract {address}"),
    )
    .await
}

#[utoipa::path(get, path = "/v1/contracts/events", tag = "contracts",
    params(("after" = Option<u64>, Query, description = "The log number to start from (default 0); the Last-Event-ID header resumes after the last event received"),
        ("follow" = Option<bool>, Query, description = "false: one JSON page instead of a stream")),
    responses((status = 200, description = "text/event-stream of every contract's events as their blocks commit (event `contract_event`, the log number as the id), for any enrolled member (signed request)")))]
async fn events(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<crate::feed::AlertsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let feed = service(&state)?;
    crate::feed::alerts(&state, feed, (&method, &uri, &headers), query).await
}

#[utoipa::path(post, path = "/v1/contracts/webhooks", tag = "contracts",
    request_body(content = Object, description = r#"{"url": "https://...", "after"?: <log number>}"#),
    responses((status = 201, description = "The webhook: the node POSTs each contract event to the URL, in order, signed by the node (X-Medledger-Signature over \"medledger/contract-event-webhook/v1\" and the body), retrying until a 2xx answer")))]
async fn add_webhook(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let feed = service(&state)?;
    crate::feed::add_webhook(&state, feed, (&method, &uri, &headers), body).await
}

#[utoipa::path(get, path = "/v1/contracts/webhooks", tag = "contracts",
    responses((status = 200, description = "The signer's contract-event webhooks at this node")))]
async fn list_webhooks(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let feed = service(&state)?;
    crate::feed::list_webhooks(&state, feed, (&method, &uri, &headers)).await
}

#[utoipa::path(get, path = "/v1/contracts/calls/{tx}", tag = "contracts",
    params(("tx" = String, Path, description = "The calling transaction's id")),
    responses((status = 200, description = "The call's record: contract, entry point, caller, fuel used, the contract's answer and its events; the transaction and receipt are proven at /v1/txs/{tx}/proof"),
        (status = 404, description = "No call committed under that transaction")))]
async fn call(State(state): State<AppState>, Path(tx): Path<String>) -> ApiResult<Json<Value>> {
    let tx = parse_hash(&tx, "the transaction id")?;
    at_head(
        &state,
        move |view| {
            let Some(record) = contracts::call_record(view, &tx)? else {
                return Ok(None);
            };
            let mut events = Vec::new();
            for seq in record.first_event..record.first_event + record.events {
                events.extend(contracts::event(view, seq)?);
            }
            Ok(Some(
                json!({ "call": record, "events": events, "key": text(contracts::key_call(&tx)) }),
            ))
        },
        format!("no contract call in transaction {tx}"),
    )
    .await
}

#[utoipa::path(get, path = "/v1/contracts/code/{hash}", tag = "contracts",
    params(("hash" = String, Path, description = "The code's SHA-256, hex")),
    responses((status = 200, description = "Stored code's facts (size, imports, memory, whether it migrates, who stored it), or the progress of its upload"),
        (status = 404, description = "No such code or upload")))]
async fn code(State(state): State<AppState>, Path(hash): Path<String>) -> ApiResult<Json<Value>> {
    let hash = parse_hash(&hash, "the code hash")?;
    at_head(
        &state,
        move |view| {
            if let Some(info) = contracts::code_info(view, &hash)? {
                return Ok(Some(json!({ "code": info })));
            }
            Ok(
                medledger_module::read::<contracts::Upload>(view, &contracts::key_upload(&hash))?
                    .map(|upload| json!({ "upload": upload })),
            )
        },
        format!("no code {hash}"),
    )
    .await
}

/// A proposal as the API shows it: its record, its kind, and whether it is still open.
fn proposal_json(id: &Hash, found: governance::AnyProposal, height: Height) -> Value {
    let (kind, open, key) = match &found {
        governance::AnyProposal::Validators(proposal) => (
            "change_validators",
            proposal.status == governance::ProposalStatus::Pending
                && height < proposal.effective_height,
            governance::key_proposal(id),
        ),
        governance::AnyProposal::Other(proposal) => (
            proposal.action.kind(),
            proposal.status == governance::Enactment::Pending && height <= proposal.expires_at,
            governance::key_motion(id),
        ),
    };
    let state = match &found {
        governance::AnyProposal::Validators(proposal) => match proposal.status {
            governance::ProposalStatus::Pending if !open => "expired",
            governance::ProposalStatus::Pending => "pending",
            governance::ProposalStatus::Scheduled { .. } => "scheduled",
            governance::ProposalStatus::Applied => "applied",
            governance::ProposalStatus::Failed { .. } => "failed",
        },
        governance::AnyProposal::Other(proposal) => match proposal.status {
            governance::Enactment::Pending if !open => "expired",
            governance::Enactment::Pending => "pending",
            governance::Enactment::Enacted { .. } => "enacted",
            governance::Enactment::Failed { .. } => "failed",
        },
    };
    json!({
        "id": id,
        "kind": kind,
        "state": state,
        "proposal": found,
        "key": String::from_utf8_lossy(&key),
    })
}

#[utoipa::path(get, path = "/v1/governance/proposals", tag = "governance",
    params(("from" = Option<u64>, Query), ("limit" = Option<u64>, Query, description = "At most 100")),
    responses((status = 200, description = "Proposals made with `propose` (every kind but validator changes proposed the old way), in order, each with its state: pending, expired, enacted or failed")))]
async fn proposals(
    State(state): State<AppState>,
    query: Result<Query<Page>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let (from, limit) = page(query)?;
    let (height, found) = crate::read_at_head(&state, move |view| {
        let mut found = Vec::new();
        for id in governance::motions(view, from, limit)? {
            if let Some(proposal) = governance::any_proposal(view, &id)? {
                found.push((id, proposal));
            }
        }
        Ok(found)
    })
    .await?;
    let proposals: Vec<Value> = found
        .into_iter()
        .map(|(id, proposal)| proposal_json(&id, proposal, height))
        .collect();
    Ok(Json(json!({ "height": height, "proposals": proposals })))
}

#[utoipa::path(get, path = "/v1/governance/proposals/{id}", tag = "governance",
    params(("id" = String, Path, description = "The proposal's id: the id of the transaction that proposed it")),
    responses((status = 200, description = "The proposal, its approvals and state (pending, expired, enacted, failed with the reason; for a validator change: scheduled, applied), and the state key that proves it"),
        (status = 404, description = "No such proposal")))]
async fn proposal(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let id = parse_hash(&id, "the proposal id")?;
    let (height, found) =
        crate::read_at_head(&state, move |view| governance::any_proposal(view, &id)).await?;
    let found = found.ok_or_else(|| ApiError::not_found(format!("no proposal {id}")))?;
    let mut answer = proposal_json(&id, found, height);
    answer["height"] = json!(height);
    Ok(Json(answer))
}

#[utoipa::path(get, path = "/v1/governance/parameters", tag = "governance",
    responses((status = 200, description = "Every chain parameter governance may set: its value in force, default and range")))]
async fn parameters(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    at_head(
        &state,
        |view| {
            let mut found = Vec::new();
            for parameter in governance::parameters() {
                found.push(json!({
                    "name": parameter.name,
                    "value": medledger_module::parameter(view, parameter.name)?.unwrap_or(parameter.default),
                    "default": parameter.default,
                    "min": parameter.min,
                    "max": parameter.max,
                    "key": String::from_utf8_lossy(&medledger_module::key_parameter(parameter.name)),
                }));
            }
            Ok(Some(json!({ "parameters": found })))
        },
        String::new(),
    )
    .await
}
