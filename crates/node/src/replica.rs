//! Blocks agreed by a BFT engine: building this validator's proposal, checking a peer's, and
//! committing a decided block with its certificate. The engine adapter (`medledger-consensus`)
//! calls these; nothing here knows the engine.
//!
//! A block is executed once, when it is proposed or first checked; the result waits in a small
//! cache keyed by block hash until the block is decided, so committing costs only the write.
//!
//! **Invariant:** a block is committed only with a certificate that verifies against the
//! validator set in force at its height, and only if executing it reproduces every root its
//! header claims.

use std::collections::BTreeMap;
use std::time::Duration;

use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::Tx;
use medledger_ledger::{
    Block, BlockContext, ParentLink, check_execution, check_header, execute_block, execute_tx,
    finish_block,
};
use medledger_state::{Overlay, Snapshot, Stacked, apply_writes};
use medledger_storage::{BlockCommit, StoreReader, TreeUpdateBatch};
use medledger_types::{BLOCK_TXS_MAX, CommitCertificate, Header, Height, Receipt, ValidatorSet};

use crate::mempool::PooledTx;
use crate::{Node, NodeError, lock};

/// How far ahead of this node's clock a proposer's time may be.
pub const CLOCK_DRIFT_MAX: Duration = Duration::from_secs(5);
/// How many executed, undecided blocks are kept (a few rounds' worth of proposals).
const EXECUTED_KEPT_MAX: usize = 32;

/// Why a proposed block is refused. The proposer is faulty (or its clock is).
#[derive(Debug, thiserror::Error)]
pub enum InvalidBlock {
    #[error("block is for height {got}, the next height is {expected}")]
    WrongHeight { got: Height, expected: Height },
    #[error("invalid block: {0}")]
    Invalid(String),
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl From<medledger_storage::StoreError> for InvalidBlock {
    fn from(error: medledger_storage::StoreError) -> Self {
        InvalidBlock::Node(error.into())
    }
}

impl From<medledger_state::StateError> for InvalidBlock {
    fn from(error: medledger_state::StateError) -> Self {
        InvalidBlock::Node(error.into())
    }
}

/// A block executed against the head, waiting to be decided.
#[derive(Debug)]
pub(crate) struct Executed {
    pub(crate) receipts: Vec<Receipt>,
    pub(crate) tree: jmt::storage::TreeUpdateBatch,
}

/// A block built by this validator, with its execution.
#[derive(Debug)]
pub(crate) struct Built {
    pub(crate) block: Block,
    pub(crate) executed: Executed,
    /// The validator set that decides the block.
    pub(crate) validators: ValidatorSet,
    pub(crate) failed: Vec<PooledTx>,
}

pub(crate) type ExecutedCache = BTreeMap<Hash, Executed>;

/// A block this node built and certified alone (a single validator), on its way to disk.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) header: Header,
    pub(crate) certificate: CommitCertificate,
    pub(crate) txs: Vec<Tx>,
    pub(crate) receipts: Vec<Receipt>,
    pub(crate) tree: TreeUpdateBatch,
}

/// The block a new one extends: the store's head, or a sealed block above it that is still
/// being written, read through (the pipeline: block H+1 is executed while H commits).
pub(crate) struct Tip<'a> {
    pub(crate) reader: &'a StoreReader,
    pub(crate) sealed: Option<&'a Sealed>,
}

impl<'a> Tip<'a> {
    /// The store's head alone.
    pub(crate) fn head(reader: &'a StoreReader) -> Self {
        Tip {
            reader,
            sealed: None,
        }
    }

    pub(crate) fn height(&self) -> Result<Height, NodeError> {
        match self.sealed {
            Some(sealed) => Ok(sealed.header.height),
            None => Ok(self.reader.head()?),
        }
    }

    /// The state tree as of the tip: the sealed block's nodes and values over the store's.
    pub(crate) fn tree(&self) -> Stacked<'a, StoreReader> {
        let top = self
            .sealed
            .map(|sealed| (sealed.header.height, &sealed.tree.node_batch));
        Stacked::new(self.reader, top)
    }
}

/// What a proposal needs to know about the block it extends.
struct Parent {
    height: Height,
    hash: Hash,
    time_ms: u64,
    certificate: Option<CommitCertificate>,
}

/// How many senders [`Node::has_pending_txs`] checks against the state before it counts the
/// pool as busy.
pub const READY_SENDERS_CHECKED_MAX: usize = 64;

impl Node {
    /// The next height to decide.
    pub fn next_height(&self) -> Result<Height, NodeError> {
        Ok(self.inner.store.reader()?.head()? + 1)
    }

    /// The validator set that decides `height`: the one in the state before it.
    pub fn validators_for(&self, height: Height) -> Result<ValidatorSet, NodeError> {
        let reader = self.inner.store.reader()?;
        let head = reader.head()?;
        let base = reader.base()?;
        if base > 0 && height <= base {
            // The set that decided the snapshot's height is the one its proof walked to.
            if height == base {
                return crate::snapshot::validators_at_base(&reader, &self.inner.genesis);
            }
            return Err(NodeError::NotKept {
                height,
                earliest: base,
            });
        }
        let version = height.saturating_sub(1).min(head);
        Ok(medledger_ledger::validators(&Snapshot {
            reader: &reader,
            version: Some(version),
        })?)
    }

    /// This validator's key.
    pub fn validator_key(&self) -> PublicKey {
        self.inner.key.public_key()
    }

    /// True when a transaction that a block could take is waiting: some sender's lowest pending
    /// nonce is its next one. A transaction parked behind a nonce gap cannot go in a block, so it
    /// must not keep an idle chain making empty ones. Past [`READY_SENDERS_CHECKED_MAX`]
    /// senders the pool is busy and counts as ready without reading the state.
    pub fn has_pending_txs(&self) -> bool {
        let first = lock(&self.inner.mempool).first_nonces(READY_SENDERS_CHECKED_MAX + 1);
        if first.is_empty() {
            return false;
        }
        if first.len() > READY_SENDERS_CHECKED_MAX {
            return true;
        }
        let Ok(reader) = self.inner.store.reader() else {
            return true;
        };
        let Ok(head) = reader.head() else {
            return true;
        };
        let state = Snapshot {
            reader: &reader,
            version: Some(head),
        };
        first.iter().any(|(sender, nonce)| {
            medledger_ledger::next_nonce(&state, sender).map_or(true, |next| *nonce <= next)
        })
    }

    fn parent(&self, tip: &Tip<'_>) -> Result<Parent, NodeError> {
        if let Some(sealed) = tip.sealed {
            return Ok(Parent {
                height: sealed.header.height,
                hash: sealed.header.hash(),
                time_ms: sealed.header.time_ms,
                certificate: Some(sealed.certificate.clone()),
            });
        }
        let reader = tip.reader;
        let head = reader.head()?;
        if head == 0 {
            return Ok(Parent {
                height: 0,
                hash: self.inner.genesis_hash,
                time_ms: self.inner.genesis.genesis_time_ms,
                certificate: None,
            });
        }
        let missing = |what: &str| NodeError::Tampered {
            height: head,
            reason: format!("the head's {what} is missing"),
        };
        let header = reader.header(head)?.ok_or_else(|| missing("header"))?;
        let certificate = reader
            .certificate(head)?
            .ok_or_else(|| missing("certificate"))?;
        Ok(Parent {
            height: head,
            hash: header.hash(),
            time_ms: header.time_ms,
            certificate: Some(certificate),
        })
    }

    /// Builds this validator's block for the next height from the mempool, at the proposer's
    /// time `now_ms`. The transactions stay in the mempool until a block holding them is
    /// committed, since a proposal can lose its round.
    pub fn propose(&self, now_ms: u64) -> Result<Block, NodeError> {
        let inner = &self.inner;
        let reader = inner.store.reader()?;
        let head = reader.head()?;
        let base = Snapshot {
            reader: &reader,
            version: Some(head),
        };
        let (candidates, stale) = lock(&inner.mempool).select(inner.block_txs_max, |sender| {
            medledger_ledger::next_nonce(&base, sender)
        })?;
        self.reject_stale(stale);
        let built = self.build_block(&Tip::head(&reader), candidates, now_ms)?;
        lock(&inner.mempool).remove(&built.failed);
        self.remember_executed(built.block.hash(), built.executed);
        Ok(built.block)
    }

    /// Tells the submitters of transactions whose nonce was used meanwhile.
    pub(crate) fn reject_stale(&self, stale: Vec<PooledTx>) {
        for pooled in stale {
            let reason = "nonce already used by a committed transaction";
            self.remember_rejected(pooled.id, "nonce_used".into(), reason.into());
        }
    }

    /// Executes `candidates` on the head and builds the next block from those that apply, at
    /// time `now_ms` (moved past the parent's if the clock lags). Candidates that fail
    /// authentication are recorded as rejected and returned in `failed`. Shared by the
    /// single-validator producer and by proposals under consensus.
    pub(crate) fn build_block(
        &self,
        tip: &Tip<'_>,
        candidates: Vec<PooledTx>,
        now_ms: u64,
    ) -> Result<Built, NodeError> {
        let inner = &self.inner;
        let parent = self.parent(tip)?;
        let height = parent.height + 1;
        let tree = tip.tree();
        let base = Snapshot {
            reader: &tree,
            version: Some(parent.height),
        };
        let ctx = BlockContext {
            chain_id: inner.genesis.chain_id.clone(),
            height,
            time_ms: now_ms.max(parent.time_ms + 1),
            proposer: inner.key.public_key(),
        };
        let validators = medledger_ledger::validators(&base)?;
        let mut overlay = Overlay::new(&base);
        let mut txs = Vec::with_capacity(candidates.len());
        let mut receipts = Vec::with_capacity(candidates.len());
        let mut failed = Vec::new();
        for pooled in candidates {
            match execute_tx(&mut overlay, &ctx, txs.len() as u32, pooled.id, &pooled.tx) {
                Ok(receipt) => {
                    receipts.push(receipt);
                    txs.push(pooled.tx);
                }
                Err(error) => {
                    self.remember_rejected(pooled.id, error.code().into(), error.to_string());
                    failed.push(pooled);
                }
            }
        }
        let execution = finish_block(&mut overlay, &ctx, &txs, receipts)?;
        let (state_root, tree) = apply_writes(&tree, height, &overlay.into_writes())?;
        let header = Header {
            chain_id: ctx.chain_id.clone(),
            height,
            time_ms: ctx.time_ms,
            prev_hash: parent.hash,
            last_commit_hash: CommitCertificate::last_commit_hash(parent.certificate.as_ref()),
            txs_root: execution.txs_root,
            receipts_root: execution.receipts_root,
            state_root,
            validators_hash: validators.hash(),
            proposer: ctx.proposer,
        };
        Ok(Built {
            block: Block {
                header,
                txs,
                last_commit: parent.certificate,
            },
            executed: Executed {
                receipts: execution.receipts,
                tree,
            },
            validators,
            failed,
        })
    }

    /// Checks a peer's block for the next height: links, time, validator set, the parent's
    /// certificate, every signature, and that executing it gives the roots its header claims.
    /// `now_ms` bounds how far in the future its time may be.
    pub fn validate(&self, block: &Block, now_ms: u64) -> Result<(), InvalidBlock> {
        let hash = block.hash();
        if lock(&self.inner.executed).contains_key(&hash) {
            return Ok(());
        }
        let executed = self.execute(block, Some(now_ms))?;
        self.remember_executed(hash, executed);
        Ok(())
    }

    fn execute(&self, block: &Block, now_ms: Option<u64>) -> Result<Executed, InvalidBlock> {
        let inner = &self.inner;
        let reader = inner.store.reader()?;
        let parent = self.parent(&Tip::head(&reader))?;
        let header = &block.header;
        let invalid = |reason: String| InvalidBlock::Invalid(reason);
        if header.height != parent.height + 1 {
            return Err(InvalidBlock::WrongHeight {
                got: header.height,
                expected: parent.height + 1,
            });
        }
        if let Some(now_ms) = now_ms
            && header.time_ms > now_ms + CLOCK_DRIFT_MAX.as_millis() as u64
        {
            return Err(invalid("block time is too far in the future".into()));
        }
        if block.txs.len() > BLOCK_TXS_MAX {
            return Err(invalid("block holds too many transactions".into()));
        }
        let base = Snapshot {
            reader: &reader,
            version: Some(parent.height),
        };
        let validators = medledger_ledger::validators(&base)?;
        // Validators may hold different 2f+1 certificates of the parent, so the header is linked
        // to the one the block carries, and that one must finalise the parent.
        let link = ParentLink {
            height: parent.height,
            hash: parent.hash,
            time_ms: parent.time_ms,
            certificate_hash: CommitCertificate::last_commit_hash(block.last_commit.as_ref()),
        };
        check_header(header, &inner.genesis.chain_id, &link, &validators).map_err(invalid)?;
        if validators.get(&header.proposer).is_none() {
            return Err(invalid("block proposer is not a validator".into()));
        }
        match (&block.last_commit, parent.height) {
            (None, 0) => {}
            (Some(_), 0) => return Err(invalid("first block carries a certificate".into())),
            (None, _) => return Err(invalid("block lacks its parent's certificate".into())),
            (Some(certificate), height) => {
                let parent_header = reader.header(height)?.ok_or(NodeError::Tampered {
                    height,
                    reason: "the head's header is missing".into(),
                })?;
                let parent_validators = self.validators_for(height)?;
                certificate
                    .verify(&parent_header, &parent_validators)
                    .map_err(|error| invalid(format!("parent certificate: {error}")))?;
            }
        }
        // Transactions this node admitted (usually all of them, thanks to gossip) had their
        // signatures verified then, and are compared byte for byte; only the rest are verified.
        let unverified: Vec<usize> = {
            let mempool = lock(&inner.mempool);
            (0..block.txs.len())
                .filter(|&index| !mempool.holds_exact(&block.txs[index]))
                .collect()
        };
        let to_verify: Vec<medledger_ledger::Tx> = unverified
            .iter()
            .map(|&index| block.txs[index].clone())
            .collect();
        if let Some(position) = medledger_types::verify_tx_signatures(&to_verify).first() {
            return Err(invalid(format!(
                "signature of transaction {} does not verify",
                unverified[*position]
            )));
        }
        let ctx = BlockContext {
            chain_id: header.chain_id.clone(),
            height: header.height,
            time_ms: header.time_ms,
            proposer: header.proposer,
        };
        let mut overlay = Overlay::new(&base);
        let execution = execute_block(&mut overlay, &ctx, &block.txs)
            .map_err(|error| invalid(error.to_string()))?;
        check_execution(header, &execution).map_err(invalid)?;
        let (state_root, tree) = apply_writes(&reader, header.height, &overlay.into_writes())
            .map_err(NodeError::from)?;
        if state_root != header.state_root {
            return Err(invalid(format!(
                "executing the block gives state root {state_root}, the header says {}",
                header.state_root
            )));
        }
        Ok(Executed {
            receipts: execution.receipts,
            tree,
        })
    }

    fn remember_executed(&self, hash: Hash, executed: Executed) {
        let mut cache = lock(&self.inner.executed);
        if cache.len() >= EXECUTED_KEPT_MAX
            && let Some(oldest) = cache.keys().next().copied()
        {
            cache.remove(&oldest);
        }
        cache.insert(hash, executed);
    }

    /// Makes a decided block durable with the certificate that finalised it, then settles the
    /// mempool and wakes receipt waiters. A block this node has not executed yet (one learned
    /// from a peer while catching up) is checked and executed first.
    pub fn commit_decided(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
    ) -> Result<(), InvalidBlock> {
        let inner = &self.inner;
        #[allow(clippy::disallowed_methods)] // Shell: measures commit time for metrics only.
        let started = std::time::Instant::now();
        let hash = block.hash();
        let validators = self.validators_for(block.header.height)?;
        certificate
            .verify(&block.header, &validators)
            .map_err(|error| InvalidBlock::Invalid(format!("certificate: {error}")))?;
        let cached = lock(&inner.executed).remove(&hash);
        let executed = match cached {
            Some(executed) => executed,
            None => self.execute(block, None)?,
        };
        inner
            .store
            .commit_block(BlockCommit {
                header: &block.header,
                txs: &block.txs,
                receipts: &executed.receipts,
                certificate,
                last_commit: block.last_commit.as_ref(),
                tree: &executed.tree,
            })
            .map_err(NodeError::from)?;
        lock(&inner.executed).clear();
        let superseded = lock(&inner.mempool).committed(&block.txs);
        self.reject_stale(superseded);
        let height = block.header.height;
        inner.head.send_replace(height);
        inner.rounds.send_modify(|round| *round += 1);
        if block.txs.is_empty() {
            inner.metrics.blocks_empty.inc();
        }
        if certificate.round > 0 {
            inner.metrics.blocks_late_round.inc();
        }
        self.committed_metrics(height, &executed.receipts, started);
        Ok(())
    }

    /// A committed block in its canonical encoding, with its certificate, for a peer catching up.
    pub fn decided_block(
        &self,
        height: Height,
    ) -> Result<Option<(Vec<u8>, CommitCertificate)>, NodeError> {
        Ok(self
            .block(height)?
            .map(|certified| (certified.block.to_bytes(), certified.certificate)))
    }
}
