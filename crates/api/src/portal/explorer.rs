//! The chain explorer: the head, the validators, the latest blocks, and each block's header,
//! commit certificate (who signed, with what power, whether that is more than two thirds) and
//! transactions with their outcomes. Public chain data, as `/v1/blocks` is: no sign-in needed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use medledger_types::Height;
use serde::Deserialize;

use super::{BLOCK_TXS_SHOWN, LATEST_BLOCKS, Shell, page, problem, read, short, unreadable, utc};
use crate::AppState;

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
    shell: Shell,
    height: Height,
    genesis: String,
    /// Why this node stopped committing, if it did.
    failure: Option<String>,
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

pub(crate) async fn explorer(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let shell = Shell::for_request(&state, &headers).await;
    let found = read(&state, &shell, |node| {
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
            return unreadable(shell, "its validator set");
        }
    };
    page(
        StatusCode::OK,
        &Explorer {
            shell,
            failure: state.node.failure(),
            height: status.height,
            genesis: status.genesis_hash.to_string(),
            total_power: set.validators.iter().map(|v| v.power).sum(),
            validators: validator_rows(&set),
            blocks,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct Jump {
    height: Option<String>,
}

/// The explorer's "open the block at height" form.
pub(crate) async fn jump(
    State(state): State<AppState>,
    headers: HeaderMap,
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
            Shell::for_request(&state, &headers).await,
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
    shell: Shell,
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

pub(crate) async fn block(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(height): Path<String>,
) -> Response {
    let shell = Shell::for_request(&state, &headers).await;
    let Ok(height) = height.parse::<Height>() else {
        return problem(
            shell,
            StatusCode::BAD_REQUEST,
            "That is not a block height",
            "A block height is a whole number from 1, such as 12.".into(),
        );
    };
    let found = read(&state, &shell, move |node| {
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
            shell,
            StatusCode::NOT_FOUND,
            "No such block",
            format!("This chain has no block at height {height}: its head is block {head}."),
        );
    };
    let Ok(set) = set else {
        return unreadable(shell, "the validator set of this block");
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
            shell,
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
