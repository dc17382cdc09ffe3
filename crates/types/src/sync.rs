//! The wire form in which validators serve decided blocks to full nodes: consecutive blocks in
//! their canonical encoding, each with the certificate that decided it, bounded in heights and
//! bytes. A full node decodes it from untrusted bytes and checks every block itself.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::{BLOCK_BYTES_MAX, CommitCertificate, TypesError, decode, encode};

/// The most heights a validator serves a follower in one batch.
pub const SYNC_BATCH_HEIGHTS_MAX: u64 = 64;
/// The most block bytes in one batch (a batch holds at least one block, which is at most
/// `BLOCK_BYTES_MAX`).
pub const SYNC_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The largest batch a follower decodes: the byte bound plus one whole block and the framing.
pub const SYNC_BATCH_WIRE_BYTES_MAX: usize = SYNC_BATCH_BYTES_MAX + BLOCK_BYTES_MAX + 64 * 1024;

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

impl SyncBatch {
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a batch from a peer: bounded in bytes and blocks, and nothing left over.
    pub fn from_bytes(bytes: &[u8]) -> Result<SyncBatch, TypesError> {
        let batch: SyncBatch = decode("sync batch", bytes, SYNC_BATCH_WIRE_BYTES_MAX)?;
        if batch.blocks.len() as u64 > SYNC_BATCH_HEIGHTS_MAX {
            return Err(TypesError::Malformed {
                what: "sync batch",
                reason: format!(
                    "{} blocks, over the limit of {SYNC_BATCH_HEIGHTS_MAX}",
                    batch.blocks.len()
                ),
            });
        }
        Ok(batch)
    }
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
                    block_hash: crate::Hash::ZERO,
                    signatures: Vec::new(),
                },
            }],
        };
        assert_eq!(SyncBatch::from_bytes(&batch.to_bytes()), Ok(batch.clone()));
        let mut trailing = batch.to_bytes();
        trailing.push(0);
        assert!(matches!(
            SyncBatch::from_bytes(&trailing),
            Err(TypesError::Malformed { .. })
        ));
        let many = SyncBatch {
            blocks: vec![batch.blocks[0].clone(); SYNC_BATCH_HEIGHTS_MAX as usize + 1],
        };
        assert!(matches!(
            SyncBatch::from_bytes(&many.to_bytes()),
            Err(TypesError::Malformed { reason, .. }) if reason.contains("over the limit")
        ));
        assert!(matches!(
            SyncBatch::from_bytes(&vec![0; SYNC_BATCH_WIRE_BYTES_MAX + 1]),
            Err(TypesError::TooLarge { .. })
        ));
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
