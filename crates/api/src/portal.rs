//! `/portal`: the web portal, server-rendered (askama templates in `templates/portal`, one
//! stylesheet in `static/portal.css`), with no script and nothing fetched from anywhere but this
//! node. This first part is the chain explorer: the head, the validators, the latest blocks, and
//! each block's header, commit certificate (who signed, with what power, whether that is more
//! than two thirds) and transactions with their outcomes. It reads what the API reads; every
//! page answers in plain words, never a raw error, and carries a strict Content-Security-Policy.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use medledger_node::Node;
use medledger_types::Height;
use serde::Deserialize;

use crate::AppState;

/// Blocks the explorer's front page lists.
pub const LATEST_BLOCKS: u64 = 20;
/// Transactions a block page lists (the API lists them all).
pub const BLOCK_TXS_SHOWN: usize = 200;

const STYLESHEET: &str = include_str!("../static/portal.css");

/// No script, styles only from this node, no frames, forms only to this node.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/portal", get(home))
        .route("/portal/explorer", get(explorer))
        .route("/portal/explorer/block", get(jump))
        .route("/portal/explorer/blocks/{height}", get(block))
        .route("/portal/static/portal.css", get(stylesheet))
        .layer(axum::middleware::map_response(secure))
}

/// The headers every portal answer carries.
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
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A page that could not be shown, in plain words.
#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage {
    chain_id: String,
    heading: String,
    message: String,
}

/// Renders a page; a template that fails to render is a bug, answered as a plain 500 page.
fn page<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Html("<!doctype html><title>Error</title><p>This page could not be shown.</p>"),
        )
            .into_response(),
    }
}

fn problem(chain_id: String, status: StatusCode, heading: &str, message: String) -> Response {
    page(
        status,
        &ErrorPage {
            chain_id,
            heading: heading.into(),
            message,
        },
    )
}

/// Runs a read of the node on a blocking thread; a node failure is a plain 503 page.
async fn read<T: Send + 'static>(
    node: &Node,
    read: impl FnOnce(&Node) -> Result<T, medledger_node::NodeError> + Send + 'static,
) -> Result<T, Response> {
    let reader = node.clone();
    let chain_id = node.chain_id().to_string();
    match tokio::task::spawn_blocking(move || read(&reader)).await {
        Ok(Ok(found)) => Ok(found),
        _ => Err(problem(
            chain_id,
            StatusCode::SERVICE_UNAVAILABLE,
            "The node could not answer",
            "The node could not read its chain just now. Try again in a moment; if it keeps \
             failing, the node's operator will find the reason in its log."
                .into(),
        )),
    }
}

/// A time in milliseconds since 1970 as `YYYY-MM-DD hh:mm:ss` (UTC), without a clock.
fn utc(time_ms: u64) -> String {
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

fn short(text: &str) -> String {
    format!("{}…", &text[..text.len().min(16)])
}

#[derive(Template)]
#[template(path = "portal/home.html")]
struct Home {
    chain_id: String,
}

async fn home(State(state): State<AppState>) -> Response {
    page(
        StatusCode::OK,
        &Home {
            chain_id: state.node.chain_id().to_string(),
        },
    )
}

struct ValidatorRow {
    org: String,
    key: String,
    power: u64,
}

struct BlockRow {
    height: Height,
    time: String,
    txs: usize,
    signatures: usize,
    hash_short: String,
}

#[derive(Template)]
#[template(path = "portal/explorer.html")]
struct Explorer {
    chain_id: String,
    height: Height,
    genesis: String,
    validators: Vec<ValidatorRow>,
    total_power: u64,
    blocks: Vec<BlockRow>,
}

fn validator_rows(set: &medledger_types::ValidatorSet) -> Vec<ValidatorRow> {
    set.validators
        .iter()
        .map(|validator| ValidatorRow {
            org: validator.org.clone(),
            key: validator.key.to_string(),
            power: validator.power,
        })
        .collect()
}

async fn explorer(State(state): State<AppState>) -> Response {
    let found = read(&state.node, |node| {
        let status = node.status()?;
        let (_, set) = node.read_head(|view| Ok(medledger_module::validators(view)?))?;
        let mut blocks = Vec::new();
        let lowest = status.height.saturating_sub(LATEST_BLOCKS - 1).max(1);
        for height in (lowest..=status.height).rev() {
            if let Some(certified) = node.block(height)? {
                blocks.push(BlockRow {
                    height,
                    time: utc(certified.block.header.time_ms),
                    txs: certified.block.txs.len(),
                    signatures: certified.certificate.signatures.len(),
                    hash_short: short(&certified.block.hash().to_string()),
                });
            }
        }
        Ok((status, set, blocks))
    })
    .await;
    let (status, set, blocks) = match found {
        Ok(found) => found,
        Err(response) => return response,
    };
    let set = match set {
        Ok(set) => set,
        Err(_) => {
            return problem(
                status.chain_id,
                StatusCode::SERVICE_UNAVAILABLE,
                "The node could not answer",
                "The node could not read its validator set just now. Try again in a moment.".into(),
            );
        }
    };
    page(
        StatusCode::OK,
        &Explorer {
            chain_id: status.chain_id,
            height: status.height,
            genesis: status.genesis_hash.to_string(),
            total_power: set.validators.iter().map(|v| v.power).sum(),
            validators: validator_rows(&set),
            blocks,
        },
    )
}

#[derive(Deserialize)]
struct Jump {
    height: Option<String>,
}

/// The explorer's "open the block at height" form.
async fn jump(
    State(state): State<AppState>,
    query: Result<Query<Jump>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let text = query
        .ok()
        .and_then(|Query(jump)| jump.height)
        .unwrap_or_default();
    match text.trim().parse::<Height>() {
        Ok(height) if height >= 1 => {
            Redirect::to(&format!("/portal/explorer/blocks/{height}")).into_response()
        }
        _ => problem(
            state.node.chain_id().to_string(),
            StatusCode::BAD_REQUEST,
            "That is not a block height",
            format!(
                "A block height is a whole number from 1, such as 12; {:?} is not one.",
                text.chars().take(40).collect::<String>()
            ),
        ),
    }
}

struct Signer {
    org: String,
    key: String,
    power: u64,
}

struct TxRow {
    index: usize,
    kind: &'static str,
    committed: bool,
    outcome: String,
    sender: String,
    id: String,
    id_short: String,
}

#[derive(Template)]
#[template(path = "portal/block.html")]
struct BlockPage {
    chain_id: String,
    height: Height,
    head: Height,
    hash: String,
    time: String,
    proposer: String,
    prev_hash: String,
    txs_root: String,
    receipts_root: String,
    state_root: String,
    round: u32,
    final_: bool,
    signed_power: u64,
    total_power: u64,
    signers: Vec<Signer>,
    txs: Vec<TxRow>,
    more_txs: usize,
}

async fn block(State(state): State<AppState>, Path(height): Path<String>) -> Response {
    let chain_id = state.node.chain_id().to_string();
    let Ok(height) = height.parse::<Height>() else {
        return problem(
            chain_id,
            StatusCode::BAD_REQUEST,
            "That is not a block height",
            "A block height is a whole number from 1, such as 12.".into(),
        );
    };
    let found = read(&state.node, move |node| {
        let head = node.status()?.height;
        let Some(certified) = node.block(height)? else {
            return Ok((head, None));
        };
        // The set that decides height h is the one in the state after block h - 1.
        let (_, set) = node.read_at(Some(height - 1), |view| {
            Ok(medledger_module::validators(view)?)
        })?;
        let txs = node.committed_txs(height)?;
        Ok((head, Some((certified, set, txs))))
    })
    .await;
    let (head, found) = match found {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some((certified, set, txs)) = found else {
        return problem(
            chain_id,
            StatusCode::NOT_FOUND,
            "No such block",
            format!("This chain has no block at height {height}: its head is block {head}."),
        );
    };
    let Ok(set) = set else {
        return problem(
            chain_id,
            StatusCode::SERVICE_UNAVAILABLE,
            "The node could not answer",
            "The node could not read the validator set of this block. Try again in a moment."
                .into(),
        );
    };
    let header = &certified.block.header;
    let total_power: u64 = set.validators.iter().map(|v| v.power).sum();
    let signers: Vec<Signer> = certified
        .certificate
        .signatures
        .iter()
        .map(|signature| {
            let validator = set.get(&signature.validator);
            Signer {
                org: validator.map_or_else(|| "(not a validator)".into(), |v| v.org.clone()),
                key: signature.validator.to_string(),
                power: validator.map_or(0, |v| v.power),
            }
        })
        .collect();
    let signed_power: u64 = signers.iter().map(|signer| signer.power).sum();
    let more_txs = txs.len().saturating_sub(BLOCK_TXS_SHOWN);
    let rows = txs
        .iter()
        .take(BLOCK_TXS_SHOWN)
        .enumerate()
        .map(|(index, (tx, receipt))| {
            let id = tx.id().to_string();
            let (committed, outcome) = match receipt.as_ref().map(|r| &r.outcome) {
                Some(medledger_types::Outcome::Rejected { code, .. }) => (false, code.clone()),
                _ => (true, String::new()),
            };
            TxRow {
                index,
                kind: tx.body.payload.kind(),
                committed,
                outcome,
                sender: short(&tx.body.sender.to_string()),
                id_short: short(&id),
                id,
            }
        })
        .collect();
    page(
        StatusCode::OK,
        &BlockPage {
            chain_id,
            height,
            head,
            hash: certified.block.hash().to_string(),
            time: utc(header.time_ms),
            proposer: header.proposer.to_string(),
            prev_hash: header.prev_hash.to_string(),
            txs_root: header.txs_root.to_string(),
            receipts_root: header.receipts_root.to_string(),
            state_root: header.state_root.to_string(),
            round: certified.certificate.round,
            final_: signed_power * 3 > total_power * 2,
            signed_power,
            total_power,
            signers,
            txs: rows,
            more_txs,
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
