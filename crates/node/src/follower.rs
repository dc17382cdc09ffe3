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
//! Validators serve followers from [`Node::sync_batch`]; the wire form is [`SyncBatch`], borsh,
//! bounded by [`SYNC_BATCH_HEIGHTS_MAX`] and [`SYNC_BATCH_BYTES_MAX`].
//!
//! **Invariant:** a full node commits a block only with a certificate that verifies against the
//! validator set in force and only if executing it reproduces every root of its header, exactly as
//! a validator does.

use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_ledger::Block;
use medledger_types::{CommitCertificate, Height};

use crate::{InvalidBlock, Node, NodeError};

/// The most heights a validator serves a follower in one batch.
pub const SYNC_BATCH_HEIGHTS_MAX: u64 = 64;
/// The most block bytes in one batch (a batch holds at least one block, which is at most
/// `BLOCK_BYTES_MAX`).
pub const SYNC_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The largest batch a follower decodes: the byte bound plus one whole block and the framing.
pub const SYNC_BATCH_WIRE_BYTES_MAX: usize =
    SYNC_BATCH_BYTES_MAX + medledger_types::BLOCK_BYTES_MAX + 64 * 1024;
/// How long a follower at the head asks a validator to wait for the next block.
pub const FOLLOW_WAIT: Duration = Duration::from_secs(1);
/// How long a follower waits before asking again after a source failed.
pub const FOLLOW_RETRY: Duration = Duration::from_millis(500);

/// One decided block in its canonical encoding, with the certificate that decided it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncedBlock {
    pub block: Vec<u8>,
    pub certificate: CommitCertificate,
}

/// Consecutive decided blocks from one height, as a validator serves them to a full node.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncBatch {
    pub blocks: Vec<SyncedBlock>,
}

/// Why a batch's bytes were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("a batch of {0} bytes is over the limit of {SYNC_BATCH_WIRE_BYTES_MAX}")]
    TooLarge(usize),
    #[error("a batch of {0} blocks is over the limit of {SYNC_BATCH_HEIGHTS_MAX}")]
    TooManyBlocks(usize),
    #[error("malformed batch: {0}")]
    Malformed(String),
}

impl SyncBatch {
    pub fn to_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("encoding into memory never fails")
    }

    /// Decodes a batch from a peer: bounded in bytes and blocks, and nothing left over.
    pub fn from_bytes(bytes: &[u8]) -> Result<SyncBatch, BatchError> {
        if bytes.len() > SYNC_BATCH_WIRE_BYTES_MAX {
            return Err(BatchError::TooLarge(bytes.len()));
        }
        let batch = borsh::from_slice::<SyncBatch>(bytes)
            .map_err(|error| BatchError::Malformed(error.to_string()))?;
        if batch.blocks.len() as u64 > SYNC_BATCH_HEIGHTS_MAX {
            return Err(BatchError::TooManyBlocks(batch.blocks.len()));
        }
        Ok(batch)
    }
}

impl Node {
    /// Decided blocks from `from` with their certificates, for a full node: at most
    /// [`SYNC_BATCH_HEIGHTS_MAX`] heights and [`SYNC_BATCH_BYTES_MAX`] bytes (but at least one
    /// block), stopping at the head. Each is read back verified (certificate and transactions
    /// root), as every read is.
    pub fn sync_batch(&self, from: Height) -> Result<SyncBatch, NodeError> {
        let from = from.max(1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any bytes decode to a bounded batch or are refused, and a batch round-trips.
    #[test]
    fn batches_are_bounded_and_round_trip() {
        let batch = SyncBatch {
            blocks: vec![SyncedBlock {
                block: vec![1, 2, 3],
                certificate: CommitCertificate {
                    height: 1,
                    round: 0,
                    block_hash: medledger_crypto::Hash::ZERO,
                    signatures: Vec::new(),
                },
            }],
        };
        assert_eq!(SyncBatch::from_bytes(&batch.to_bytes()), Ok(batch.clone()));
        let mut trailing = batch.to_bytes();
        trailing.push(0);
        assert!(matches!(
            SyncBatch::from_bytes(&trailing),
            Err(BatchError::Malformed(_))
        ));
        let many = SyncBatch {
            blocks: vec![batch.blocks[0].clone(); SYNC_BATCH_HEIGHTS_MAX as usize + 1],
        };
        assert_eq!(
            SyncBatch::from_bytes(&many.to_bytes()),
            Err(BatchError::TooManyBlocks(
                SYNC_BATCH_HEIGHTS_MAX as usize + 1
            ))
        );
        assert_eq!(
            SyncBatch::from_bytes(&vec![0; SYNC_BATCH_WIRE_BYTES_MAX + 1]),
            Err(BatchError::TooLarge(SYNC_BATCH_WIRE_BYTES_MAX + 1))
        );
        // A length prefix claiming four billion blocks is refused without allocating them.
        assert!(SyncBatch::from_bytes(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(batch) = SyncBatch::from_bytes(&bytes) {
                prop_assert!(batch.blocks.len() as u64 <= SYNC_BATCH_HEIGHTS_MAX);
                prop_assert_eq!(batch.to_bytes(), bytes);
            }
        }
    }
}
