//! The node service: admits transactions into a bounded mempool, produces and commits blocks,
//! and serves verified reads. It owns no sockets; `medledger-api` puts HTTP in front of it and
//! the `medledger` binary wires the two together.
//!
//! On a single node the node is the only validator: it proposes every block and signs its
//! certificate. The BFT engine replaces the producer, not the rest.
//!
//! **Invariant:** a receipt says committed only after the block that holds it is durable.
//! **Invariant:** blocks, transactions and state entries are checked before they are served: a
//! block against its certificate and roots, a transaction against its id and signature, a state
//! entry against the certified state root. A failed check is an error, never data. Receipt status
//! reads are the exception: they are checked only for naming their own transaction, and
//! `tx_proof` and the audit check receipts against the block's receipts root.

mod audit;
pub mod backup;
pub mod claims;
pub mod contracts;
pub mod follower;
mod mempool;
mod metrics;
pub mod monitor;
mod producer;
pub mod records;
mod replica;
pub mod research;
mod sealed;
pub mod service;
pub mod snapshot;
pub mod supply;
pub mod tokens;
pub mod trials;
pub mod webhooks;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use audit::{AuditError, AuditReport, audit_store};
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::light::{LightProof, ValidatorStep};
use medledger_ledger::{
    Authority, Block, BlockError, KEY_VALIDATORS, NONCE_WINDOW, Payload, Tx, TxBody, TxError,
};
use medledger_state::{Snapshot, StateError, StateRead};
use medledger_storage::{Store, StoreError, StoreReader};
use medledger_types::{
    CommitCertificate, Genesis, Header, Height, InclusionProof, Outcome, Receipt, merkle_root,
};
pub use mempool::{Inserted, MempoolError};
pub use metrics::Metrics;
pub use replica::{CLOCK_DRIFT_MAX, InvalidBlock};
use serde::Serialize;
pub use service::{Service, ServiceError, ServiceSettings, Services, open_services};
use tokio::sync::{mpsc, watch};

/// The most transactions the mempool holds by default.
pub const MEMPOOL_TXS_MAX: usize = 200_000;
/// How many refused transactions the node remembers, so their submitters can learn why.
pub const REJECTED_REMEMBERED_MAX: usize = 100_000;
/// How many client batches may wait to be gossiped to the other validators. When the network
/// falls this far behind, further batches are not gossiped (and counted): their transactions stay
/// in this node's mempool and go into its own next proposal, so none is lost.
pub const GOSSIP_BATCHES_MAX: usize = 1024;
/// The longest a client may wait for a receipt in one request.
pub const RECEIPT_WAIT_MAX: Duration = Duration::from_secs(60);

/// What a node needs to start.
#[derive(Debug)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub genesis: Genesis,
    /// This node's validator key; it must be in the genesis validator set.
    pub validator_key: SecretKey,
    pub mempool_txs_max: usize,
    pub block_txs_max: usize,
    pub block_source: BlockSource,
}

/// Where blocks come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSource {
    /// This node is the only validator and cuts blocks itself (group commit).
    Producer,
    /// A BFT engine decides blocks and drives this node through `propose`, `validate` and
    /// `commit_decided`.
    Consensus,
    /// A full node: it follows certified blocks fetched from validators
    /// ([`follower::follow`]), never votes and never proposes, and forwards the transactions it
    /// is given to a validator (from the same queue gossip uses).
    Follower,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("invalid genesis: {0}")]
    Genesis(String),
    #[error("the module registry of this build is inconsistent: {0}")]
    Registry(String),
    #[error("the store is tampered or corrupt at height {height}: {reason}")]
    Tampered { height: Height, reason: String },
    #[error("validator key {0} is not in the genesis validator set")]
    NotAValidator(PublicKey),
    #[error("the node has stopped: {0}")]
    Stopped(String),
    /// A block or a state version this node does not hold: it started from a snapshot at a
    /// later height (or prunes old versions).
    #[error(
        "height {height} is not kept on this node: it holds blocks and state from height {earliest} \
         on (it started from a snapshot, or prunes older state); ask a node that keeps them"
    )]
    NotKept { height: Height, earliest: Height },
}

/// Why a submitted transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(transparent)]
    Mempool(#[from] MempoolError),
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl From<StoreError> for SubmitError {
    fn from(error: StoreError) -> Self {
        SubmitError::Node(error.into())
    }
}

impl From<StateError> for SubmitError {
    fn from(error: StateError) -> Self {
        SubmitError::Node(error.into())
    }
}

impl SubmitError {
    pub fn code(&self) -> &'static str {
        match self {
            SubmitError::Tx(error) => error.code(),
            SubmitError::Mempool(error) => error.code(),
            SubmitError::Node(_) => "node_error",
        }
    }
}

/// The state of a transaction as this node knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TxStatus {
    /// Waiting in the mempool.
    Pending,
    /// In a durable block; `receipt.outcome` says whether its payload applied.
    Committed { receipt: Receipt },
    /// Never put on chain: refused after admission (its nonce was used meanwhile, or its sender
    /// revoked).
    Rejected { code: String, reason: String },
}

/// A block with the certificate that finalised it, checked against each other.
#[derive(Clone, Debug, Serialize)]
pub struct CertifiedBlock {
    pub block: Block,
    pub certificate: CommitCertificate,
}

/// A summary of the node.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub validator: PublicKey,
    pub height: Height,
    pub head: Option<Header>,
    pub mempool_txs: usize,
    /// Entries in the state at the head.
    pub state_entries: u64,
}

/// A handle to a running node; cheap to clone.
#[derive(Clone, Debug)]
pub struct Node {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    genesis: Genesis,
    genesis_hash: Hash,
    key: SecretKey,
    block_txs_max: usize,
    mempool: Mutex<mempool::Mempool>,
    wake: Condvar,
    head: watch::Sender<Height>,
    /// Counts finished production rounds. It moves only after the round's transactions have left
    /// the in-flight set, so a waiter woken by it sees their final state.
    rounds: watch::Sender<u64>,
    rejected: Mutex<Remembered>,
    metrics: Metrics,
    stopping: AtomicBool,
    /// Where blocks come from: a full node holds no organisation's devices or data to anchor.
    block_source: BlockSource,
    /// The stores a backup copies under their own locks.
    backup_sources: Mutex<Vec<backup::Source>>,
    /// Held while a backup is made: one at a time.
    backing_up: Mutex<()>,
    /// Held while a snapshot is exported: one at a time.
    exporting: Mutex<()>,
    failure: Mutex<Option<String>>,
    producer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Blocks executed while proposed or checked, waiting to be decided.
    executed: Mutex<replica::ExecutedCache>,
    /// Transactions clients submitted here, for the consensus engine to gossip to the other
    /// validators. Only a node driven by consensus has it.
    gossip: Option<mpsc::Sender<Vec<Tx>>>,
    gossip_outbox: Mutex<Option<mpsc::Receiver<Vec<Tx>>>>,
    /// The next nonce for transactions this node signs itself (0: ask the chain).
    own_nonce: Mutex<u64>,
    data_dir: PathBuf,
}

/// Where submitted transactions came from: a client of this node, whose new transactions are
/// gossiped to the other validators, or a peer's gossip, which is never relayed (validators are
/// fully connected, so every validator hears each transaction from the node that took it in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Client,
    Peer,
    /// Signed by this node's own key a moment ago: its signature needs no second check.
    Own,
}

#[derive(Debug, Default)]
struct Remembered {
    order: VecDeque<Hash>,
    by_id: BTreeMap<Hash, (String, String)>,
}

impl Remembered {
    fn insert(&mut self, id: Hash, code: String, reason: String) {
        if self.by_id.insert(id, (code, reason)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > REJECTED_REMEMBERED_MAX {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a thread panicked while holding it: a bug. Carry on with the data,
    // which every holder leaves consistent between statements.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Node {
    /// Opens (or initialises) the store, checks its head, and starts producing blocks.
    pub fn start(config: NodeConfig) -> Result<Node, NodeError> {
        // The module list is code: an overlap of state prefixes or payload tags is a bug in this
        // build, and no block may be executed with it.
        medledger_ledger::registry::check_prefixes()
            .and_then(|()| medledger_ledger::registry::check_tags())
            .map_err(NodeError::Registry)?;
        let validators = medledger_ledger::check_genesis(&config.genesis)
            .map_err(|error| NodeError::Genesis(error.to_string()))?;
        // A node driven by consensus may start outside the set: it follows the chain and votes
        // from the height a governance change adds its key. A single producer must be the set.
        if config.block_source == BlockSource::Producer
            && validators.get(&config.validator_key.public_key()).is_none()
        {
            return Err(NodeError::NotAValidator(config.validator_key.public_key()));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            StoreError::Db(format!("creating {}: {error}", config.data_dir.display()))
        })?;
        let store = Store::open(&config.data_dir.join("ledger.redb"))?;
        // Backup copies left by a crash mid-backup hold key slots erasures may have destroyed.
        backup::sweep(&config.data_dir.join(backup::BACKUPS_DIR));
        producer::init_genesis(&store, &config.genesis)?;
        let head = check_head(&store.reader()?, &config.genesis)?;
        let metrics = Metrics::new();
        metrics.head_height.set(head as i64);
        let (gossip, gossip_outbox) = match config.block_source {
            BlockSource::Consensus | BlockSource::Follower => {
                let (sender, receiver) = mpsc::channel(GOSSIP_BATCHES_MAX);
                (Some(sender), Some(receiver))
            }
            BlockSource::Producer => (None, None),
        };
        let node = Node {
            inner: Arc::new(Inner {
                store,
                genesis_hash: config.genesis.hash(),
                genesis: config.genesis,
                key: config.validator_key,
                block_txs_max: config
                    .block_txs_max
                    .clamp(1, medledger_types::BLOCK_TXS_MAX),
                mempool: Mutex::new(mempool::Mempool::new(config.mempool_txs_max)),
                wake: Condvar::new(),
                head: watch::Sender::new(head),
                rounds: watch::Sender::new(0),
                rejected: Mutex::new(Remembered::default()),
                metrics,
                stopping: AtomicBool::new(false),
                failure: Mutex::new(None),
                producer: Mutex::new(None),
                executed: Mutex::new(replica::ExecutedCache::new()),
                gossip,
                gossip_outbox: Mutex::new(gossip_outbox),
                own_nonce: Mutex::new(0),
                data_dir: config.data_dir.clone(),
                block_source: config.block_source,
                backup_sources: Mutex::new(Vec::new()),
                backing_up: Mutex::new(()),
                exporting: Mutex::new(()),
            }),
        };
        if config.block_source != BlockSource::Producer {
            return Ok(node);
        }
        let producer = node.clone();
        let handle = std::thread::Builder::new()
            .name("block-producer".into())
            .spawn(move || producer::run(&producer))
            .map_err(|error| {
                NodeError::Stopped(format!("cannot start the block producer: {error}"))
            })?;
        *lock(&node.inner.producer) = Some(handle);
        Ok(node)
    }

    /// Follows the chain from `feed` on a thread of its own until the node stops (a full node);
    /// [`Node::stop`] waits for the block in progress. A failure of this node's store stops
    /// following and is reported as the node's failure.
    pub fn spawn_follower(
        &self,
        mut feed: Box<dyn follower::BlockFeed + Send>,
    ) -> Result<(), NodeError> {
        let node = self.clone();
        let handle = std::thread::Builder::new()
            .name("block-follower".into())
            .spawn(move || {
                if let Err(error) = follower::follow(&node, feed.as_mut()) {
                    tracing::error!(%error, "following the chain stopped");
                    *lock(&node.inner.failure) = Some(error.to_string());
                }
            })
            .map_err(|error| {
                NodeError::Stopped(format!("cannot start following the chain: {error}"))
            })?;
        *lock(&self.inner.producer) = Some(handle);
        Ok(())
    }

    /// Stops producing blocks and returns once the block in progress is durable.
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
        if let Some(handle) = lock(&self.inner.producer).take() {
            let _ = handle.join();
        }
    }

    pub fn genesis(&self) -> &Genesis {
        &self.inner.genesis
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Why the node stopped working, if it did (an IO failure while committing).
    pub fn failure(&self) -> Option<String> {
        lock(&self.inner.failure).clone()
    }

    /// Watches the committed height.
    pub fn subscribe_head(&self) -> watch::Receiver<Height> {
        self.inner.head.subscribe()
    }

    /// The chain this node runs (its genesis's chain id).
    pub fn chain_id(&self) -> &str {
        &self.inner.genesis.chain_id
    }

    pub fn status(&self) -> Result<Status, NodeError> {
        let reader = self.inner.store.reader()?;
        let height = reader.head()?;
        let head = if height == 0 {
            None
        } else {
            Some(self.verified_header(&reader, height)?.0)
        };
        Ok(Status {
            chain_id: self.inner.genesis.chain_id.clone(),
            genesis_hash: self.inner.genesis_hash,
            validator: self.inner.key.public_key(),
            height,
            head,
            mempool_txs: lock(&self.inner.mempool).len(),
            state_entries: medledger_state::entries_at(&reader, height)?,
        })
    }

    /// Admits transactions into the mempool, checking each one's chain id, signature (in one
    /// batch), sender and nonce against the committed state. One result per transaction.
    ///
    /// On a node driven by consensus, the transactions new to this mempool are queued for gossip
    /// to the other validators (see [`Node::take_gossip`]).
    pub fn submit(&self, txs: Vec<Tx>) -> Vec<Result<(Hash, Inserted), SubmitError>> {
        self.submit_from(txs, Origin::Client)
    }

    /// Admits transactions another validator gossiped, with the same checks as [`Node::submit`],
    /// and does not gossip them again.
    pub fn submit_gossiped(&self, txs: Vec<Tx>) -> Vec<Result<(Hash, Inserted), SubmitError>> {
        self.inner
            .metrics
            .gossip_txs_received
            .inc_by(txs.len() as u64);
        self.submit_from(txs, Origin::Peer)
    }

    /// The queue of client transactions to gossip, as batches. The consensus engine takes it
    /// once; `None` on a single-validator node or once taken.
    pub fn take_gossip(&self) -> Option<mpsc::Receiver<Vec<Tx>>> {
        lock(&self.inner.gossip_outbox).take()
    }

    fn submit_from(
        &self,
        txs: Vec<Tx>,
        origin: Origin,
    ) -> Vec<Result<(Hash, Inserted), SubmitError>> {
        if let Some(failure) = self.failure() {
            return txs
                .iter()
                .map(|_| Err(NodeError::Stopped(failure.clone()).into()))
                .collect();
        }
        let bad_signatures = match origin {
            Origin::Own => Vec::new(),
            Origin::Client | Origin::Peer => medledger_types::verify_tx_signatures(&txs),
        };
        let reader = match self.inner.store.reader() {
            Ok(reader) => reader,
            Err(error) => {
                let message = error.to_string();
                return txs
                    .iter()
                    .map(|_| Err(NodeError::Store(StoreError::Db(message.clone())).into()))
                    .collect();
            }
        };
        let gossip = match (&self.inner.gossip, origin) {
            (Some(sender), Origin::Client | Origin::Own) => Some(sender),
            _ => None,
        };
        // A full node's pending transaction reached a validator only if forwarding worked: a
        // client that submits it again has it forwarded again.
        let forward_again =
            self.inner.block_source == BlockSource::Follower && matches!(origin, Origin::Client);
        let mut fresh = Vec::new();
        let results: Vec<_> = txs
            .into_iter()
            .enumerate()
            .map(|(index, tx)| {
                if bad_signatures.contains(&index) {
                    return Err(TxError::BadSignature(tx.body.sender).into());
                }
                // A block holding a transaction over the limit could not be read back.
                if matches!(origin, Origin::Own) {
                    let size = tx.to_bytes().len();
                    if size > medledger_types::TX_BYTES_MAX {
                        return Err(MempoolError::TooLarge(size).into());
                    }
                }
                let copy = gossip.map(|_| tx.clone());
                let result = self.admit(&reader, tx);
                match (&result, copy) {
                    (Ok((_, Inserted::New)), Some(copy)) => fresh.push(copy),
                    (Ok((_, Inserted::AlreadyPending)), Some(copy)) if forward_again => {
                        fresh.push(copy)
                    }
                    _ => {}
                }
                result
            })
            .collect();
        if let Some(sender) = gossip
            && !fresh.is_empty()
        {
            let count = fresh.len() as u64;
            match sender.try_send(fresh) {
                Ok(()) => self.inner.metrics.gossip_txs_queued.inc_by(count),
                Err(_) => self.inner.metrics.gossip_txs_unsent.inc_by(count),
            };
        }
        for result in &results {
            match result {
                Ok(_) => {
                    self.inner.metrics.txs_admitted.inc();
                }
                Err(error) => self.inner.metrics.refused(error.code()),
            }
        }
        self.inner
            .metrics
            .mempool_txs
            .set(lock(&self.inner.mempool).len() as i64);
        self.inner.wake.notify_one();
        results
    }

    fn admit(&self, reader: &StoreReader, tx: Tx) -> Result<(Hash, Inserted), SubmitError> {
        let id = tx.id();
        let chain_id = &self.inner.genesis.chain_id;
        if &tx.body.chain_id != chain_id {
            return Err(TxError::WrongChain {
                expected: chain_id.clone(),
                got: tx.body.chain_id,
            }
            .into());
        }
        let state = Snapshot {
            reader,
            version: Some(reader.head()?),
        };
        if reader.receipt(&id)?.is_some() {
            // Already on chain: resubmitting is harmless and says so.
            return Ok((id, Inserted::AlreadyPending));
        }
        medledger_ledger::authority(&state, &tx.body.sender)?;
        let expected = medledger_ledger::next_nonce(&state, &tx.body.sender)?;
        let (sender, got) = (tx.body.sender, tx.body.nonce);
        if got < expected {
            return Err(TxError::NonceUsed {
                sender,
                expected,
                got,
            }
            .into());
        }
        if got >= expected + NONCE_WINDOW {
            return Err(TxError::NonceGap {
                sender,
                expected,
                got,
            }
            .into());
        }
        let inserted = lock(&self.inner.mempool).insert(mempool::PooledTx { id, tx })?;
        Ok((id, inserted))
    }

    /// The status of a transaction, or `None` if this node has never seen it.
    ///
    /// The mempool is asked first: the producer records a transaction's receipt or rejection
    /// before it forgets it, so asking in this order never misses one in between.
    pub fn tx_status(&self, id: &Hash) -> Result<Option<TxStatus>, NodeError> {
        if lock(&self.inner.mempool).contains(id) {
            return Ok(Some(TxStatus::Pending));
        }
        let reader = self.inner.store.reader()?;
        if let Some(receipt) = reader.receipt(id)? {
            if receipt.tx_id != *id || receipt.height > reader.head()? {
                return Err(NodeError::Tampered {
                    height: receipt.height,
                    reason: format!("receipt of {id} is not its own"),
                });
            }
            return Ok(Some(TxStatus::Committed { receipt }));
        }
        if let Some((code, reason)) = lock(&self.inner.rejected).by_id.get(id) {
            return Ok(Some(TxStatus::Rejected {
                code: code.clone(),
                reason: reason.clone(),
            }));
        }
        Ok(None)
    }

    /// Waits up to `timeout` for a transaction to leave the mempool.
    pub async fn wait_tx(
        &self,
        id: &Hash,
        timeout: Duration,
    ) -> Result<Option<TxStatus>, NodeError> {
        let mut rounds = self.inner.rounds.subscribe();
        let deadline = tokio::time::Instant::now() + timeout.min(RECEIPT_WAIT_MAX);
        loop {
            let status = self.tx_status(id)?;
            if !matches!(status, Some(TxStatus::Pending)) {
                return Ok(status);
            }
            if tokio::time::timeout_at(deadline, rounds.changed())
                .await
                .is_err()
            {
                return Ok(status);
            }
        }
    }

    /// A block with its certificate, checked: the header against the certificate and the
    /// validator set, the transactions against the header's root.
    pub fn block(&self, height: Height) -> Result<Option<CertifiedBlock>, NodeError> {
        let reader = self.inner.store.reader()?;
        if height == 0 || height > reader.head()? {
            return Ok(None);
        }
        // A store from a snapshot holds the base's header and certificate but not its
        // transactions, and nothing below it.
        let base = reader.base()?;
        if height <= base {
            return Err(NodeError::NotKept {
                height,
                earliest: base + 1,
            });
        }
        let (header, certificate) = self.verified_header(&reader, height)?;
        let txs = reader.txs(height)?;
        let leaves: Vec<Hash> = txs.iter().map(Tx::leaf_hash).collect();
        if merkle_root(&leaves) != header.txs_root {
            return Err(NodeError::Tampered {
                height,
                reason: "transactions do not match the header's root".into(),
            });
        }
        let last_commit = if height > 1 {
            reader.certificate(height - 1)?
        } else {
            None
        };
        if CommitCertificate::last_commit_hash(last_commit.as_ref()) != header.last_commit_hash {
            return Err(NodeError::Tampered {
                height,
                reason: "previous certificate does not match the header".into(),
            });
        }
        Ok(Some(CertifiedBlock {
            block: Block {
                header,
                txs,
                last_commit,
            },
            certificate,
        }))
    }

    pub fn block_by_hash(&self, hash: &Hash) -> Result<Option<CertifiedBlock>, NodeError> {
        let height = self.inner.store.reader()?.height_of(hash)?;
        match height {
            Some(height) => {
                let block = self.block(height)?;
                if let Some(found) = &block
                    && found.block.hash() != *hash
                {
                    return Err(NodeError::Tampered {
                        height,
                        reason: "block hash index points elsewhere".into(),
                    });
                }
                Ok(block)
            }
            None => Ok(None),
        }
    }

    /// A committed transaction, read by its location and checked against its id and signature. For its
    /// inclusion in the block, ask [`Node::tx_proof`], which costs a whole block.
    pub fn committed_tx(&self, id: &Hash) -> Result<Option<Tx>, NodeError> {
        let reader = self.inner.store.reader()?;
        let Some(receipt) = reader.receipt(id)? else {
            return Ok(None);
        };
        match reader.tx(receipt.height, receipt.index)? {
            // The id covers the body only, so the signature is checked too.
            Some(tx) if tx.id() == *id && tx.verify_signature().is_ok() => Ok(Some(tx)),
            _ => Err(NodeError::Tampered {
                height: receipt.height,
                reason: format!("the stored transaction at the receipt's position is not {id}"),
            }),
        }
    }

    /// A committed transaction with the proofs of its inclusion and receipt.
    pub fn tx_proof(&self, id: &Hash) -> Result<Option<LightProof>, NodeError> {
        let reader = self.inner.store.reader()?;
        let Some(receipt) = reader.receipt(id)? else {
            return Ok(None);
        };
        let height = receipt.height;
        let Some(CertifiedBlock { block, certificate }) = self.block(height)? else {
            return Err(NodeError::Tampered {
                height,
                reason: format!("receipt of {id} names a missing block"),
            });
        };
        let index = receipt.index as usize;
        let tampered = |reason: &str| NodeError::Tampered {
            height,
            reason: reason.to_string(),
        };
        let tx = block
            .txs
            .get(index)
            .filter(|tx| tx.id() == *id)
            .cloned()
            .ok_or_else(|| tampered("receipt points at another transaction"))?;
        let receipts = reader.receipts(height)?;
        if receipts.len() != block.txs.len()
            || receipts.get(index) != Some(&receipt)
            || receipts
                .iter()
                .zip(&block.txs)
                .any(|(stored, tx)| stored.tx_id != tx.id())
        {
            return Err(tampered("the block's receipts are not its transactions'"));
        }
        let receipt_leaves: Vec<Hash> = receipts.iter().map(Receipt::leaf_hash).collect();
        if merkle_root(&receipt_leaves) != block.header.receipts_root {
            return Err(tampered("receipts do not match the header's root"));
        }
        let leaves: Vec<Hash> = block.txs.iter().map(Tx::leaf_hash).collect();
        let tx_proof =
            InclusionProof::build(&leaves, index).ok_or_else(|| tampered("index out of range"))?;
        let receipt_proof = InclusionProof::build(&receipt_leaves, index)
            .ok_or_else(|| tampered("index out of range"))?;
        let validator_trail = self.validator_trail(&reader, height)?;
        Ok(Some(LightProof::Tx {
            header: block.header,
            certificate,
            tx,
            tx_proof,
            receipt,
            receipt_proof,
            validator_trail,
        }))
    }

    /// A state entry (or its absence) after block `height` (default: the head), with its proof,
    /// checked against the certified state root before it is returned.
    pub fn state(
        &self,
        key: &[u8],
        height: Option<Height>,
    ) -> Result<Option<LightProof>, NodeError> {
        let reader = self.inner.store.reader()?;
        let head = reader.head()?;
        let height = height.unwrap_or(head);
        if height == 0 || height > head {
            return Ok(None);
        }
        let earliest = reader.base()?;
        if height < earliest {
            return Err(NodeError::NotKept { height, earliest });
        }
        let (header, certificate) = self.verified_header(&reader, height)?;
        let proof = medledger_state::prove(&reader, height, key)?;
        if let Err(error) = proof.verify(header.state_root) {
            return Err(NodeError::Tampered {
                height,
                reason: format!("state entry fails its proof: {error}"),
            });
        }
        let validator_trail = self.validator_trail(&reader, height)?;
        Ok(Some(LightProof::State {
            header,
            certificate,
            proof,
            validator_trail,
        }))
    }

    /// Who a key acts as and its next nonce, from the committed state.
    pub fn account(&self, key: &PublicKey) -> Result<(Result<Authority, String>, u64), NodeError> {
        let reader = self.inner.store.reader()?;
        let state = Snapshot {
            reader: &reader,
            version: Some(reader.head()?),
        };
        let authority = match medledger_ledger::authority(&state, key) {
            Ok(authority) => Ok(authority),
            Err(TxError::State(error)) => return Err(error.into()),
            Err(error) => Err(error.to_string()),
        };
        Ok((authority, medledger_ledger::next_nonce(&state, key)?))
    }

    /// Runs `read` against the committed state at the head, and returns the head too.
    pub fn read_head<T>(
        &self,
        read: impl FnOnce(&dyn StateRead) -> Result<T, TxError>,
    ) -> Result<(Height, Result<T, TxError>), NodeError> {
        self.read_at(None, read)
    }

    /// Runs `read` against the committed state after block `height` (the head if `None` or
    /// beyond it), and returns the height read.
    pub fn read_at<T>(
        &self,
        height: Option<Height>,
        read: impl FnOnce(&dyn StateRead) -> Result<T, TxError>,
    ) -> Result<(Height, Result<T, TxError>), NodeError> {
        let reader = self.inner.store.reader()?;
        let head = reader.head()?;
        let height = height.map_or(head, |height| height.min(head));
        let earliest = reader.base()?;
        if height < earliest {
            return Err(NodeError::NotKept { height, earliest });
        }
        let state = Snapshot {
            reader: &reader,
            version: Some(height),
        };
        match read(&state) {
            Err(TxError::State(error)) => Err(error.into()),
            other => Ok((height, other)),
        }
    }

    /// The transactions of a committed block with their receipts, from this node's own store
    /// (checked when it was committed, not again).
    pub fn committed_txs(&self, height: Height) -> Result<Vec<(Tx, Option<Receipt>)>, NodeError> {
        let reader = self.inner.store.reader()?;
        let txs = reader.txs(height)?;
        let mut receipts = reader.receipts(height)?.into_iter();
        Ok(txs
            .into_iter()
            .map(|tx| {
                let receipt = receipts.next().filter(|receipt| receipt.tx_id == tx.id());
                (tx, receipt)
            })
            .collect())
    }

    /// The directory this node keeps its data in.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// A 32-byte secret derived from this node's key for one purpose (`label`), e.g. the key that
    /// signs its SMART access tokens: stable across restarts, and no use for signing blocks.
    pub fn derive_secret(&self, label: &str) -> [u8; 32] {
        medledger_crypto::hash_tagged(
            b"medledger/node-derived-secret/v1",
            &[label.as_bytes(), &self.inner.key.to_bytes()],
        )
        .0
    }

    /// This node's own key: the one that signs its blocks, votes and its own transactions.
    pub fn key(&self) -> PublicKey {
        self.inner.key.public_key()
    }

    /// Signs `message` with the node's key (a webhook delivery: the caller prefixes its domain).
    pub fn sign(&self, message: &[u8]) -> medledger_crypto::Signature {
        self.inner.key.sign(message)
    }

    /// Signs one payload with this node's key and the next nonce (its own counter, so many may be
    /// pending at once), runs `before_submit` on the signed transaction (e.g. to make a record of
    /// it durable), then submits it without checking its signature again. Nothing is submitted if
    /// `before_submit` fails.
    pub fn submit_own_checked<E: From<SubmitError>>(
        &self,
        payload: Payload,
        before_submit: impl FnOnce(&Tx) -> Result<(), E>,
    ) -> Result<Hash, E> {
        let mut next = lock(&self.inner.own_nonce);
        let committed = self
            .account(&self.inner.key.public_key())
            .map_err(|error| E::from(error.into()))?
            .1;
        if *next < committed || *next > committed + NONCE_WINDOW / 2 {
            *next = committed;
        }
        let tx = TxBody {
            chain_id: self.inner.genesis.chain_id.clone(),
            sender: self.inner.key.public_key(),
            nonce: *next,
            payload,
        }
        .sign(&self.inner.key);
        before_submit(&tx)?;
        match self.submit_from(vec![tx], Origin::Own).pop() {
            Some(Ok((id, _))) => {
                *next += 1;
                Ok(id)
            }
            Some(Err(error)) => {
                if matches!(
                    error,
                    SubmitError::Tx(TxError::NonceGap { .. } | TxError::NonceUsed { .. })
                ) {
                    *next = 0;
                }
                Err(error.into())
            }
            None => Err(E::from(SubmitError::Node(NodeError::Stopped(
                "no result for a submitted transaction".into(),
            )))),
        }
    }

    /// Submits again a transaction this node signed before a restart (its mempool is gone), so
    /// it is decided one way or the other; later transactions of ours take the nonces after it.
    pub fn resubmit_own(&self, tx: Tx) -> Result<Hash, SubmitError> {
        let mut next = lock(&self.inner.own_nonce);
        let nonce = tx.body.nonce;
        match self.submit_from(vec![tx], Origin::Client).pop() {
            Some(Ok((id, _))) => {
                *next = (*next).max(nonce + 1);
                Ok(id)
            }
            Some(Err(error)) => Err(error),
            None => Err(SubmitError::Node(NodeError::Stopped(
                "no result for a submitted transaction".into(),
            ))),
        }
    }

    /// The validator-set changes a light client walks to check a header at `height`.
    fn validator_trail(
        &self,
        reader: &StoreReader,
        height: Height,
    ) -> Result<Vec<ValidatorStep>, NodeError> {
        let changes = medledger_ledger::governance::validator_changes(&Snapshot {
            reader,
            version: Some(height - 1),
        })?;
        let mut trail = Vec::with_capacity(changes.len());
        // Changes before a snapshot's base: the snapshot's own proof carries their steps.
        let base = reader.base()?;
        let before_base: Vec<ValidatorStep> = if base > 0 {
            match snapshot::stored_proof(reader)? {
                LightProof::State {
                    validator_trail, ..
                } => validator_trail,
                LightProof::Tx { .. } => Vec::new(),
            }
        } else {
            Vec::new()
        };
        for changed_after in changes {
            if changed_after < base {
                let step = before_base
                    .iter()
                    .find(|step| step.header.height == changed_after)
                    .cloned()
                    .ok_or_else(|| NodeError::Tampered {
                        height: base,
                        reason: format!(
                            "the snapshot's proof lacks the validator change after {changed_after}"
                        ),
                    })?;
                trail.push(step);
                continue;
            }
            let (header, certificate) = self.verified_header(reader, changed_after)?;
            let validators = medledger_state::prove(reader, changed_after, KEY_VALIDATORS)?;
            trail.push(ValidatorStep {
                header,
                certificate,
                validators,
            });
        }
        Ok(trail)
    }

    fn verified_header(
        &self,
        reader: &StoreReader,
        height: Height,
    ) -> Result<(Header, CommitCertificate), NodeError> {
        verified_header(reader, &self.inner.genesis, height)
    }

    fn remember_rejected(&self, id: Hash, code: String, reason: String) {
        lock(&self.inner.rejected).insert(id, code, reason);
    }

    /// Counts a block just made durable at `height`, `started` when it began to be built.
    fn committed_metrics(&self, height: Height, receipts: &[Receipt], started: std::time::Instant) {
        let metrics = &self.inner.metrics;
        metrics.blocks_committed.inc();
        metrics.head_height.set(height as i64);
        metrics.block_txs.observe(receipts.len() as f64);
        metrics
            .block_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics
            .mempool_txs
            .set(lock(&self.inner.mempool).len() as i64);
        metrics.txs_committed.inc_by(receipts.len() as u64);
        for receipt in receipts {
            if let Outcome::Rejected { code, .. } = &receipt.outcome {
                metrics.refused(code);
            }
        }
    }
}

/// Loads a header and its certificate and checks that the certificate finalises it under the
/// validator set in force (the set in the state before the block).
pub(crate) fn verified_header(
    reader: &StoreReader,
    genesis: &Genesis,
    height: Height,
) -> Result<(Header, CommitCertificate), NodeError> {
    let tampered = |reason: String| NodeError::Tampered { height, reason };
    let header = reader
        .header(height)?
        .ok_or_else(|| tampered("header is missing".into()))?;
    let certificate = reader
        .certificate(height)?
        .ok_or_else(|| tampered("certificate is missing".into()))?;
    if header.height != height || header.chain_id != genesis.chain_id {
        return Err(tampered("header names another height or chain".into()));
    }
    // The base of a store restored from a snapshot: the set before it is not held, so the
    // snapshot's proof certifies the header from genesis instead.
    if height == reader.base()? && height > 0 {
        let proof = snapshot::stored_proof(reader)?;
        proof
            .verify(genesis)
            .map_err(|error| tampered(format!("the snapshot's proof: {error}")))?;
        if proof.header().hash() != header.hash() {
            return Err(tampered(
                "the snapshot's proof certifies another header".into(),
            ));
        }
        return Ok((header, certificate));
    }
    let validators = medledger_ledger::validators(&Snapshot {
        reader,
        version: Some(height - 1),
    })
    .map_err(|error| tampered(format!("validator set unreadable: {error}")))?;
    if validators.hash() != header.validators_hash {
        return Err(tampered("header names another validator set".into()));
    }
    certificate
        .verify(&header, &validators)
        .map_err(|error| tampered(format!("certificate: {error}")))?;
    Ok((header, certificate))
}

/// The start-up check: the head block's certificate holds, and the state tree's root at the head
/// is the one that block certifies. A node whose store fails it refuses to start.
fn check_head(reader: &StoreReader, genesis: &Genesis) -> Result<Height, NodeError> {
    let stored = reader.genesis()?;
    if stored.hash() != genesis.hash() {
        return Err(NodeError::Genesis(format!(
            "the store holds chain {} with genesis {}, the configuration names genesis {}",
            stored.chain_id,
            stored.hash(),
            genesis.hash()
        )));
    }
    let head = reader.head()?;
    if head == 0 {
        return Ok(0);
    }
    let (header, _) = verified_header(reader, genesis, head)?;
    let root = medledger_state::root_at(reader, head)?;
    if root != header.state_root {
        return Err(NodeError::Tampered {
            height: head,
            reason: format!(
                "state root on disk is {root}, the certified root is {}",
                header.state_root
            ),
        });
    }
    Ok(head)
}
