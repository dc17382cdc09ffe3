//! State snapshots: every leaf of one tree version, in key-hash order, cut into chunks that each
//! carry the range proof of their last leaf, so a node restoring the state checks every chunk
//! against the certified state root as it arrives (jmt's restore), and the finished tree's root
//! once more at the end. Pure: the caller reads the tree and stores what a restore produces.

use std::sync::{Arc, Mutex};

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::proof::SparseMerkleRangeProof;
use jmt::restore::{JellyfishMerkleRestore, StateSnapshotReceiver};
use jmt::storage::{NodeBatch, NodeKey, TreeReader, TreeWriter};
use jmt::{KeyHash, RootHash, Version};
use medledger_crypto::Hash;
use sha2::Sha256;

use crate::{StateError, Tree};

/// The most leaves one chunk may hold.
pub const SNAPSHOT_CHUNK_LEAVES_MAX: usize = 100_000;
/// The most bytes one chunk's encoding may have.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 64 * 1024 * 1024;
/// A chunk is cut once its leaves reach this many bytes, so that a state of large values still
/// makes chunks under [`SNAPSHOT_CHUNK_BYTES_MAX`] (one leaf is at most 64 KiB).
pub const SNAPSHOT_CHUNK_BYTES_BUDGET: usize = 16 * 1024 * 1024;

/// Consecutive leaves of a tree version, and the range proof of the last one.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotChunk {
    pub leaves: Vec<([u8; 32], Vec<u8>)>,
    /// A borsh `SparseMerkleRangeProof` over SHA-256.
    pub proof: Vec<u8>,
}

impl SnapshotChunk {
    pub fn to_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).expect("encoding into memory never fails")
    }

    /// Decodes a chunk from a peer: bounded, and nothing left over.
    pub fn from_bytes(bytes: &[u8]) -> Result<SnapshotChunk, StateError> {
        if bytes.len() > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(StateError::Store(format!(
                "a snapshot chunk of {} bytes is over the limit",
                bytes.len()
            )));
        }
        let chunk: SnapshotChunk =
            borsh::from_slice(bytes).map_err(|error| StateError::Store(error.to_string()))?;
        if chunk.leaves.is_empty() || chunk.leaves.len() > SNAPSHOT_CHUNK_LEAVES_MAX {
            return Err(StateError::Store(format!(
                "a snapshot chunk holds {} leaves; it must hold 1 to {SNAPSHOT_CHUNK_LEAVES_MAX}",
                chunk.leaves.len()
            )));
        }
        Ok(chunk)
    }
}

/// Cuts the leaves of `version` into chunks of `chunk_leaves` leaves or
/// [`SNAPSHOT_CHUNK_BYTES_BUDGET`] bytes, whichever comes first (the last may be shorter), and
/// hands each to `visit` in order; returns how many leaves there were.
pub fn chunk_leaves<R: TreeReader>(
    reader: Arc<R>,
    version: Version,
    chunk_leaves: usize,
    mut visit: impl FnMut(SnapshotChunk) -> Result<(), StateError>,
) -> Result<u64, StateError> {
    let chunk_leaves = chunk_leaves.clamp(1, SNAPSHOT_CHUNK_LEAVES_MAX);
    let iterator = jmt::JellyfishMerkleIterator::new(reader.clone(), version, KeyHash([0; 32]))
        .map_err(StateError::store)?;
    let mut leaves = Vec::with_capacity(chunk_leaves);
    let mut total = 0u64;
    let mut bytes = 0usize;
    let emit = |leaves: Vec<([u8; 32], Vec<u8>)>,
                visit: &mut dyn FnMut(SnapshotChunk) -> Result<(), StateError>|
     -> Result<(), StateError> {
        let last = KeyHash(leaves.last().expect("a chunk is never empty").0);
        let proof = Tree::new(&*reader)
            .get_range_proof(last, version)
            .map_err(StateError::store)?;
        visit(SnapshotChunk {
            leaves,
            proof: borsh::to_vec(&proof).map_err(StateError::store)?,
        })
    };
    for item in iterator {
        let (key, value) = item.map_err(StateError::store)?;
        bytes += 32 + value.len();
        leaves.push((key.0, value));
        total += 1;
        if leaves.len() == chunk_leaves || bytes >= SNAPSHOT_CHUNK_BYTES_BUDGET {
            emit(std::mem::take(&mut leaves), &mut visit)?;
            bytes = 0;
        }
    }
    if !leaves.is_empty() {
        emit(leaves, &mut visit)?;
    }
    Ok(total)
}

/// Collects what a restore writes, in memory.
#[derive(Default)]
struct Collected(Mutex<NodeBatch>);

impl TreeWriter for Collected {
    fn write_node_batch(&self, node_batch: &NodeBatch) -> anyhow::Result<()> {
        self.0
            .lock()
            .map_err(|_| anyhow::anyhow!("a restore panicked"))?
            .merge(node_batch.clone());
        Ok(())
    }
}

/// Reads the nodes a restore produced, to find their root.
struct BatchReader<'a>(&'a NodeBatch);

impl TreeReader for BatchReader<'_> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<jmt::storage::Node>> {
        Ok(self.0.get_node(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .0
            .values()
            .range((0, key_hash)..=(max_version, key_hash))
            .rfind(|((_, key), _)| *key == key_hash)
            .and_then(|(_, value)| value.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, jmt::storage::LeafNode)>> {
        Err(anyhow::anyhow!("not needed to read a root"))
    }
}

/// Rebuilds the tree of one version from its chunks, each checked against the expected root as
/// it is added.
pub struct SnapshotRestore {
    restore: JellyfishMerkleRestore<Sha256>,
    collected: Arc<Collected>,
    version: Version,
    expected_root: Hash,
    leaves: u64,
}

impl std::fmt::Debug for SnapshotRestore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotRestore")
            .field("version", &self.version)
            .field("leaves", &self.leaves)
            .finish_non_exhaustive()
    }
}

impl SnapshotRestore {
    pub fn new(version: Version, expected_root: Hash) -> Result<SnapshotRestore, StateError> {
        let collected = Arc::new(Collected::default());
        let restore = JellyfishMerkleRestore::new_overwrite(
            collected.clone(),
            version,
            RootHash(expected_root.0),
        )
        .map_err(StateError::store)?;
        Ok(SnapshotRestore {
            restore,
            collected,
            version,
            expected_root,
            leaves: 0,
        })
    }

    /// Adds the next chunk; refuses one whose leaves are out of order or do not prove against
    /// the expected root with what came before. A refused chunk leaves the restore unusable:
    /// start again from the first chunk.
    pub fn add(&mut self, chunk: &SnapshotChunk) -> Result<(), StateError> {
        let proof: SparseMerkleRangeProof<Sha256> = borsh::from_slice(&chunk.proof)
            .map_err(|error| StateError::BadProof(format!("range proof: {error}")))?;
        let leaves: Vec<(KeyHash, Vec<u8>)> = chunk
            .leaves
            .iter()
            .map(|(key, value)| (KeyHash(*key), value.clone()))
            .collect();
        let count = leaves.len() as u64;
        // jmt checks its own invariants with asserts; bytes from a peer must never crash the
        // node, so a panic there is a bad chunk.
        let restore = &mut self.restore;
        let added = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            restore.add_chunk(leaves, proof)
        }))
        .map_err(|_| StateError::BadProof("the chunk breaks the tree's structure".into()))?;
        added.map_err(|error| StateError::BadProof(error.to_string()))?;
        self.leaves += count;
        Ok(())
    }

    /// How many leaves were added.
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    /// Finishes the tree and checks its root; returns the nodes and values to store at the
    /// restored version.
    pub fn finish(self) -> Result<NodeBatch, StateError> {
        let SnapshotRestore {
            restore,
            collected,
            version,
            expected_root,
            ..
        } = self;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| restore.finish()))
            .map_err(|_| StateError::BadProof("the snapshot ends inside the tree".into()))?
            .map_err(|error| StateError::BadProof(error.to_string()))?;
        let batch = std::mem::take(
            &mut *collected
                .0
                .lock()
                .map_err(|_| StateError::Store("a restore panicked".into()))?,
        );
        let root = crate::root_at(&BatchReader(&batch), version)
            .map_err(|_| StateError::BadProof("the restored tree has no root".into()))?;
        if root != expected_root {
            return Err(StateError::BadProof(format!(
                "the restored state's root is {root}, the certified root is {expected_root}"
            )));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryTree, Writes, apply_writes};
    use proptest::prelude::*;

    fn tree(entries: u32) -> (MemoryTree, Hash) {
        let mut memory = MemoryTree::default();
        let writes: Writes = (0..entries)
            .map(|i| (i.to_le_bytes().to_vec(), Some(vec![i as u8; 3])))
            .collect();
        let (root, batch) = apply_writes(&memory, 0, &writes).expect("apply");
        memory.apply(batch);
        let more: Writes = (0..entries / 2)
            .map(|i| ((i * 7).to_le_bytes().to_vec(), Some(vec![9; 4])))
            .chain([(0u32.to_le_bytes().to_vec(), None)])
            .collect();
        let (root_1, batch) = apply_writes(&memory, 1, &more).expect("apply");
        memory.apply(batch);
        let _ = root;
        (memory, root_1)
    }

    fn chunks(memory: MemoryTree, size: usize) -> (Vec<SnapshotChunk>, u64) {
        let mut out = Vec::new();
        let total = chunk_leaves(Arc::new(memory), 1, size, |chunk| {
            out.push(chunk);
            Ok(())
        })
        .expect("chunks");
        (out, total)
    }

    /// A snapshot restores to the certified root in any chunk size; the restored nodes are the
    /// tree's own at that version.
    #[test]
    fn snapshots_restore_to_the_root() {
        for size in [1, 7, 100, 1_000] {
            let (memory, root) = tree(300);
            let (chunks, total) = chunks(memory, size);
            // 300 keys, then 107 more (multiples of 7 from 301 to 1,043), key 0 deleted.
            assert_eq!(total, 406);
            let mut restore = SnapshotRestore::new(1, root).expect("restore");
            for chunk in &chunks {
                let bytes = chunk.to_bytes();
                restore
                    .add(&SnapshotChunk::from_bytes(&bytes).expect("decodes"))
                    .expect("a true chunk proves");
            }
            assert_eq!(restore.leaves(), 406);
            let batch = restore.finish().expect("finishes at the root");
            assert_eq!(batch.values().len(), 406);
        }
    }

    /// An altered value, a missing chunk, a reordered chunk, a truncated end or another root are
    /// refused.
    #[test]
    fn false_snapshots_are_refused() {
        let (memory, root) = tree(300);
        let (chunks, _) = chunks(memory, 50);
        let replay = |chunks: &[SnapshotChunk], root: Hash| -> Result<(), StateError> {
            let mut restore = SnapshotRestore::new(1, root)?;
            for chunk in chunks {
                restore.add(chunk)?;
            }
            restore.finish().map(|_| ())
        };
        assert!(replay(&chunks, root).is_ok());
        let mut altered = chunks.clone();
        altered[2].leaves[3].1.push(1);
        assert!(replay(&altered, root).is_err(), "altered value");
        let mut missing = chunks.clone();
        missing.remove(1);
        assert!(replay(&missing, root).is_err(), "missing chunk");
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert!(replay(&swapped, root).is_err(), "reordered");
        assert!(
            replay(&chunks[..chunks.len() - 1], root).is_err(),
            "truncated"
        );
        assert!(replay(&chunks, Hash([7; 32])).is_err(), "another root");
        let mut bad_proof = chunks.clone();
        bad_proof[0].proof = vec![1, 2, 3];
        assert!(
            replay(&bad_proof, root).is_err(),
            "a proof that does not decode"
        );
    }

    proptest! {
        /// Any bytes decode to a bounded chunk or are refused, and a chunk round-trips.
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(chunk) = SnapshotChunk::from_bytes(&bytes) {
                prop_assert!(!chunk.leaves.is_empty());
                prop_assert_eq!(chunk.to_bytes(), bytes);
                // Restoring from it refuses it rather than crash (the fuzz target's body).
                let mut restore = SnapshotRestore::new(1, Hash([7; 32])).expect("restore");
                prop_assert!(restore.add(&chunk).is_err());
            }
        }
    }
}
