//! A full node's link to the validators, over their HTTP APIs: certified blocks fetched with
//! `GET /v1/sync/blocks` (each request signed with the node key, which validators admit only when
//! it is enrolled with role `node`), and the transactions its clients submit forwarded with
//! `POST /v1/txs`. The node checks every block itself ([`medledger_node::follower`]); the feed
//! only chooses and rotates sources.

use std::time::Duration;

use anyhow::{Result, bail};
use medledger_api::auth::{AccessHeaders, authorization, sign_bytes};
use medledger_crypto::SecretKey;
use medledger_node::Node;
use medledger_node::follower::{BlockFeed, FeedError, SyncBatch};
use medledger_types::Height;
use serde_json::Value;

use crate::client::Client;
use crate::records::now_ms;

/// How long a request to a validator may take, beyond the long-poll wait.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How many rounds over every source a forwarded batch is tried before it is given up.
const FORWARD_ROUNDS_MAX: u32 = 5;
/// How many validators each forwarded batch is given to: one may be partitioned away and never
/// gossip it.
const FORWARD_COPIES: usize = 2;
/// Empty answers in a row after which a full node asks another validator: the one it asks may
/// be stalled behind the others.
const EMPTY_ANSWERS_MAX: u32 = 3;

/// Certified blocks from the validators' APIs, trying each source in turn.
pub struct HttpFeed {
    sources: Vec<Client>,
    current: usize,
    key: SecretKey,
    chain_id: String,
    /// The last failure logged, so a source refusing this node is reported once, not twice a
    /// second.
    last_failure: Option<String>,
    /// Empty answers in a row from the current source.
    empty_answers: u32,
}

/// A random index below `len`, so that nodes (and runs) do not all start with the same source.
fn random_start(len: usize) -> usize {
    use rand_core::RngCore;
    (rand_core::OsRng.next_u64() % len.max(1) as u64) as usize
}

impl HttpFeed {
    pub fn new(sources: &[String], key: SecretKey, chain_id: String) -> HttpFeed {
        HttpFeed {
            sources: sources
                .iter()
                .map(|source| Client::with_timeout(source, REQUEST_TIMEOUT))
                .collect(),
            current: random_start(sources.len()),
            key,
            chain_id,
            last_failure: None,
            empty_answers: 0,
        }
    }

    fn fetch_from(&self, source: &Client, from: Height, wait: Duration) -> Result<SyncBatch> {
        let path = format!("/v1/sync/blocks?from={from}&wait_ms={}", wait.as_millis());
        let time_ms = now_ms();
        let signed = sign_bytes(
            &self.chain_id,
            "GET",
            &path,
            time_ms,
            b"",
            &AccessHeaders::default(),
        );
        let headers = [("authorization", authorization(&self.key, time_ms, &signed))];
        let (status, body) = source.send("GET", &path, &headers, b"")?;
        if status != 200 {
            let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            bail!(
                "{status} {}: {}",
                error["error"]["code"].as_str().unwrap_or(""),
                error["error"]["message"].as_str().unwrap_or("")
            );
        }
        Ok(SyncBatch::from_bytes(&body)?)
    }

    fn report(&mut self, failure: String) {
        if self.last_failure.as_ref() != Some(&failure) {
            tracing::warn!(%failure, "following the chain");
            self.last_failure = Some(failure);
        }
    }
}

impl BlockFeed for HttpFeed {
    fn fetch(&mut self, from: Height, wait: Duration) -> Result<SyncBatch, FeedError> {
        let mut failures = Vec::new();
        for _ in 0..self.sources.len() {
            let source = &self.sources[self.current];
            match self.fetch_from(source, from, wait) {
                Ok(batch) => {
                    if self.last_failure.take().is_some() {
                        tracing::info!(source = %source.base(), "following the chain again");
                    }
                    self.empty_answers = if batch.blocks.is_empty() {
                        self.empty_answers + 1
                    } else {
                        0
                    };
                    if self.empty_answers >= EMPTY_ANSWERS_MAX {
                        self.empty_answers = 0;
                        self.current = (self.current + 1) % self.sources.len();
                    }
                    return Ok(batch);
                }
                Err(error) => {
                    failures.push(format!("{}: {error:#}", source.base()));
                    self.current = (self.current + 1) % self.sources.len();
                }
            }
        }
        let failure = failures.join("; ");
        self.report(failure.clone());
        Err(FeedError::Unavailable(failure))
    }

    fn fault(&mut self, reason: &str) {
        let source = self.sources[self.current].base().to_string();
        self.report(format!("{source} sent a block that fails: {reason}"));
        self.current = (self.current + 1) % self.sources.len();
    }
}

/// Forwards the transactions this full node's clients (and its own services) submit to a
/// validator, from the queue a validator would gossip from. The node keeps each in its mempool,
/// pending, until the block that holds it arrives.
pub fn spawn_forwarder(node: &Node, sources: &[String]) -> Result<()> {
    let Some(mut outbox) = node.take_gossip() else {
        return Ok(());
    };
    let sources: Vec<Client> = sources
        .iter()
        .map(|source| Client::with_timeout(source, REQUEST_TIMEOUT))
        .collect();
    std::thread::Builder::new()
        .name("tx-forwarder".into())
        .spawn(move || {
            let mut current = random_start(sources.len());
            let copies = FORWARD_COPIES.min(sources.len());
            while let Some(batch) = outbox.blocking_recv() {
                let mut taken = 0;
                'rounds: for round in 0..FORWARD_ROUNDS_MAX {
                    for _ in 0..sources.len() {
                        let source = &sources[current];
                        current = (current + 1) % sources.len();
                        match source.submit_batch(&batch) {
                            Ok(results) => {
                                let refused = results
                                    .iter()
                                    .filter(|result| result["error"].is_object())
                                    .count();
                                if refused > 0 {
                                    tracing::debug!(refused, "a validator refused forwarded transactions");
                                }
                                taken += 1;
                                if taken >= copies {
                                    break 'rounds;
                                }
                            }
                            Err(error) => {
                                tracing::debug!(source = %source.base(), error = %format!("{error:#}"), "forwarding failed");
                            }
                        }
                    }
                    if taken > 0 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(200 << round));
                }
                let forwarded = taken > 0;
                if !forwarded {
                    tracing::warn!(
                        transactions = batch.len(),
                        "no validator took the forwarded transactions; they stay pending here"
                    );
                }
            }
        })?;
    Ok(())
}

/// State snapshots from the validators' APIs, trying each source in turn.
pub struct HttpSnapshots {
    feed: HttpFeed,
}

impl HttpSnapshots {
    pub fn new(sources: &[String], key: SecretKey, chain_id: String) -> HttpSnapshots {
        HttpSnapshots {
            feed: HttpFeed::new(sources, key, chain_id),
        }
    }

    /// A signed GET of `path` from the current source.
    fn get_here(&self, path: &str) -> Result<Vec<u8>, String> {
        let feed = &self.feed;
        let source = &feed.sources[feed.current];
        let time_ms = now_ms();
        let signed = sign_bytes(
            &feed.chain_id,
            "GET",
            path,
            time_ms,
            b"",
            &AccessHeaders::default(),
        );
        let headers = [("authorization", authorization(&feed.key, time_ms, &signed))];
        match source.send("GET", path, &headers, b"") {
            Ok((200, body)) => Ok(body),
            Ok((status, body)) => {
                let error: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let hint = if matches!(status, 401 | 403) {
                    " (an organisation must enrol this node's key with role node)"
                } else {
                    ""
                };
                Err(format!(
                    "{}: {status} {}{hint}",
                    source.base(),
                    error["error"]["message"].as_str().unwrap_or("")
                ))
            }
            Err(error) => Err(format!("{}: {error:#}", source.base())),
        }
    }

    /// A signed GET of `path` from the sources in turn; the first 200 answers.
    fn get(&mut self, path: &str) -> Result<Vec<u8>, String> {
        let mut failures = Vec::new();
        for _ in 0..self.feed.sources.len() {
            match self.get_here(path) {
                Ok(body) => return Ok(body),
                Err(failure) => failures.push(failure),
            }
            self.feed.current = (self.feed.current + 1) % self.feed.sources.len();
        }
        Err(failures.join("; "))
    }
}

impl medledger_node::snapshot::SnapshotSource for HttpSnapshots {
    /// Every source's snapshots: validators snapshot at different heights.
    fn heights(&mut self) -> Result<Vec<Height>, String> {
        let mut heights = std::collections::BTreeSet::new();
        let mut failures = Vec::new();
        for _ in 0..self.feed.sources.len() {
            match self.get_here("/v1/snapshots") {
                Ok(body) => {
                    let value: Value =
                        serde_json::from_slice(&body).map_err(|error| error.to_string())?;
                    heights.extend(
                        value["heights"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64),
                    );
                }
                Err(failure) => failures.push(failure),
            }
            self.feed.current = (self.feed.current + 1) % self.feed.sources.len();
        }
        if heights.is_empty() && !failures.is_empty() {
            return Err(failures.join("; "));
        }
        Ok(heights.into_iter().collect())
    }

    fn manifest(
        &mut self,
        height: Height,
    ) -> Result<medledger_node::snapshot::SnapshotManifest, String> {
        let body = self.get(&format!("/v1/snapshots/{height}"))?;
        serde_json::from_slice(&body).map_err(|error| format!("the manifest: {error}"))
    }

    fn chunk(&mut self, height: Height, index: usize) -> Result<Vec<u8>, String> {
        self.get(&format!("/v1/snapshots/{height}/chunks/{index}"))
    }

    fn fault(&mut self, reason: &str) {
        self.feed.fault(reason);
    }
}
