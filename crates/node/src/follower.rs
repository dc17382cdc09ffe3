//! A full node: a read-only copy of the chain that follows it by certified blocks.
//!
//! A full node (a regulator's, an auditor's, an organisation's read replica) runs no consensus
//! engine: it never votes and never proposes. It fetches decided blocks with their commit
//! certificates from any validator ([`BlockFeed`]) and commits each through
//! [`Node::commit_decided`], which verifies the certificate against the validator set in force
//! at that height (from this node's own state), re-executes the block and checks every root its
//! header claims before anything is durable. So a full node trusts no validator: a source that
//! sends a block that fails is reported as faulty and another is tried.
//!
//! Validators serve followers from [`Node::sync_batch`]; the wire form is [`SyncBatch`] (in
//! `medledger_types::sync`), borsh, bounded by [`SYNC_BATCH_HEIGHTS_MAX`] and
//! [`SYNC_BATCH_BYTES_MAX`].
//!
//! **Invariant:** a full node commits a block only with a certificate that verifies against the
//! validator set in force and only if executing it reproduces every root of its header, exactly as
//! a validator does.

use std::time::Duration;

use medledger_ledger::Block;
use medledger_types::Height;
pub use medledger_types::sync::{
    SYNC_BATCH_BYTES_MAX, SYNC_BATCH_HEIGHTS_MAX, SYNC_BATCH_WIRE_BYTES_MAX, SyncBatch, SyncedBlock,
};

use crate::{InvalidBlock, Node, NodeError};

/// How long a follower at the head asks a validator to wait for the next block.
pub const FOLLOW_WAIT: Duration = Duration::from_secs(1);
/// How long a follower waits before asking again after a source failed.
pub const FOLLOW_RETRY: Duration = Duration::from_millis(500);

impl Node {
    /// Decided blocks from `from` with their certificates, for a full node: at most
    /// [`SYNC_BATCH_HEIGHTS_MAX`] heights and [`SYNC_BATCH_BYTES_MAX`] bytes (but at least one
    /// block), stopping at the head. Each is read back verified (certificate and transactions
    /// root), as every read is.
    pub fn sync_batch(&self, from: Height) -> Result<SyncBatch, NodeError> {
        let from = from.max(1);
        let base = self.base_height()?;
        if base > 0 && from <= base {
            return Err(NodeError::NotKept {
                height: from,
                earliest: base + 1,
            });
        }
        let mut batch = SyncBatch::default();
        let mut bytes_total = 0usize;
        for height in from..from.saturating_add(SYNC_BATCH_HEIGHTS_MAX) {
            let Some((block, certificate)) = self.decided_block(height)? else {
                break;
            };
            bytes_total += block.len();
            if bytes_total > SYNC_BATCH_BYTES_MAX && !batch.blocks.is_empty() {
                break;
            }
            batch.blocks.push(SyncedBlock { block, certificate });
        }
        Ok(batch)
    }

    /// Where this node's blocks come from.
    pub fn block_source(&self) -> crate::BlockSource {
        self.inner.block_source
    }

    /// True once the node was asked to stop.
    pub fn is_stopping(&self) -> bool {
        self.inner
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Why a feed could not answer.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// No source answered (down, refusing this node, or rate-limiting it); try again later.
    #[error("no validator served blocks: {0}")]
    Unavailable(String),
}

/// Where a full node gets certified blocks: the validators' APIs, or anything else that serves
/// [`SyncBatch`]es. The feed chooses and rotates its sources; it is told when one misbehaved.
pub trait BlockFeed {
    /// Blocks from `from` on; when `from` is past the source's head, it may wait up to `wait`
    /// for the next block and then answer an empty batch.
    fn fetch(&mut self, from: Height, wait: Duration) -> Result<SyncBatch, FeedError>;

    /// The last batch's source sent a block that failed (`reason`): use another.
    fn fault(&mut self, reason: &str);
}

/// How far one [`follow_once`] got.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// Committed this many blocks (zero: at the head, or the source had nothing new).
    Committed(usize),
    /// The source misbehaved; the feed was told.
    Faulted,
    /// No source answered.
    Unavailable,
}

/// Fetches one batch and commits what verifies, in order. A block that fails (undecodable, out
/// of order, a certificate that does not verify, roots that do not match) ends the batch and is
/// reported to the feed; what came before it stays committed. Errors only when this node's own
/// store fails.
pub fn follow_once(node: &Node, feed: &mut dyn BlockFeed) -> Result<Followed, NodeError> {
    let from = node.next_height()?;
    let batch = match feed.fetch(from, FOLLOW_WAIT) {
        Ok(batch) => batch,
        Err(error) => {
            tracing::debug!(%error, "no blocks fetched");
            return Ok(Followed::Unavailable);
        }
    };
    let mut committed = 0;
    node.metrics().follow_bytes.inc_by(
        batch
            .blocks
            .iter()
            .map(|synced| synced.block.len() as u64)
            .sum(),
    );
    for (expected, synced) in (from..).zip(batch.blocks) {
        let fault = match Block::from_bytes(&synced.block) {
            Err(error) => Some(format!("block {expected} does not decode: {error}")),
            Ok(block) if block.header.height != expected => Some(format!(
                "sent height {} where {expected} was asked",
                block.header.height
            )),
            Ok(block) => match node.commit_decided(&block, &synced.certificate) {
                Ok(()) => None,
                Err(InvalidBlock::Node(error)) => return Err(error),
                Err(invalid) => Some(format!("block {expected}: {invalid}")),
            },
        };
        if let Some(reason) = fault {
            tracing::warn!(%reason, "a validator sent a block that fails; trying another");
            feed.fault(&reason);
            return Ok(Followed::Faulted);
        }
        committed += 1;
    }
    Ok(Followed::Committed(committed))
}

/// Follows the chain until the node stops. Returns an error only when this node's own store
/// fails, and then the node stops following.
pub fn follow(node: &Node, feed: &mut dyn BlockFeed) -> Result<(), NodeError> {
    while !node.is_stopping() {
        match follow_once(node, feed)? {
            Followed::Committed(_) => {}
            Followed::Faulted | Followed::Unavailable => std::thread::sleep(FOLLOW_RETRY),
        }
    }
    Ok(())
}
