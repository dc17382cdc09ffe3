//! The Merkle-committed state: an authenticated key-value map with one root per block, and the
//! proofs that let a light client check any entry against a block header.
//!
//! The tree is Penumbra's Jellyfish Merkle tree (`jmt`) over SHA-256. Keys are hashed into the
//! tree; the tree version is the block height (genesis is version 0). Storage of the tree's
//! nodes is behind jmt's `TreeReader` trait: `medledger-storage` implements it on disk, and
//! [`MemoryTree`] implements it in memory for replay and tests.
//!
//! **Invariant:** the root depends only on the set of (key, value) pairs, never on the order or
//! batching of writes.
//! **API boundary:** no IO, no clock; the crate knows nothing of blocks or transactions.

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::storage::{Node, NodeKey, TreeReader, TreeUpdateBatch};
pub use jmt::{KeyHash, Version};
use medledger_crypto::Hash;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub mod snapshot;

/// The tree type every node uses.
pub type Tree<'a, R> = jmt::JellyfishMerkleTree<'a, R, Sha256>;
/// A jmt proof over SHA-256.
pub type SparseProof = jmt::proof::SparseMerkleProof<Sha256>;
/// The pending writes of a block: the new value of each key, or `None` to delete it.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The largest key and value the state accepts.
pub const KEY_BYTES_MAX: usize = 256;
pub const VALUE_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store underneath failed or holds data that does not decode.
    #[error("state store: {0}")]
    Store(String),
    #[error("state proof does not verify: {0}")]
    BadProof(String),
    #[error("no state root is stored for version {0}")]
    MissingVersion(Version),
}

impl StateError {
    fn store(error: impl std::fmt::Display) -> StateError {
        StateError::Store(error.to_string())
    }
}

/// The position of a key in the tree.
pub fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash::with::<Sha256>(key)
}

/// Read access to a state.
pub trait StateRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

/// The committed state at one version of a tree.
#[derive(Debug)]
pub struct Snapshot<'a, R> {
    pub reader: &'a R,
    /// `None` before genesis, when the tree is empty.
    pub version: Option<Version>,
}

impl<R: TreeReader> StateRead for Snapshot<'_, R> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.version {
            None => Ok(None),
            Some(version) => self
                .reader
                .get_value_option(version, key_hash(key))
                .map_err(StateError::store),
        }
    }
}

/// A transaction's writes at one point (`Overlay::savepoint`).
#[derive(Debug)]
pub struct Savepoint(Writes);

/// Uncommitted writes over a committed state, with a nested level per transaction so that a
/// refused transaction leaves no trace while the block's earlier writes stay.
pub struct Overlay<'a> {
    base: &'a dyn StateRead,
    block: Writes,
    tx: Writes,
}

impl std::fmt::Debug for Overlay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("block_writes", &self.block.len())
            .finish()
    }
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn StateRead) -> Self {
        Overlay {
            base,
            block: Writes::new(),
            tx: Writes::new(),
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.tx.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.tx.insert(key, None);
    }

    /// Keeps the current transaction's writes.
    pub fn commit_tx(&mut self) {
        let tx = std::mem::take(&mut self.tx);
        self.block.extend(tx);
    }

    /// Drops the current transaction's writes.
    pub fn discard_tx(&mut self) {
        self.tx.clear();
    }

    /// The current transaction's writes so far, to go back to with `restore`: how one step of a
    /// transaction (a governance action, a contract a module calls) fails without failing the
    /// transaction.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint(self.tx.clone())
    }

    /// Drops the current transaction's writes made since `savepoint`.
    pub fn restore(&mut self, savepoint: Savepoint) {
        self.tx = savepoint.0;
    }

    /// The block's writes; any uncommitted transaction writes are dropped.
    pub fn into_writes(self) -> Writes {
        self.block
    }
}

impl StateRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        if let Some(value) = self.tx.get(key).or_else(|| self.block.get(key)) {
            return Ok(value.clone());
        }
        self.base.get(key)
    }
}

/// Computes the root after applying `writes` at `version` on top of `version - 1`, and the node
/// batch to persist. Writes are applied in key order, so the result is independent of how they
/// were produced.
pub fn apply_writes<R: TreeReader>(
    reader: &R,
    version: Version,
    writes: &Writes,
) -> Result<(Hash, TreeUpdateBatch), StateError> {
    let tree = Tree::new(reader);
    if writes.is_empty() {
        return Err(StateError::Store(
            "a state version needs at least one write".into(),
        ));
    }
    let inserts: Option<Vec<(KeyHash, Vec<u8>)>> = writes
        .iter()
        .map(|(key, value)| value.as_ref().map(|value| (key_hash(key), value.clone())))
        .collect();
    let (root, batch) = match inserts {
        // jmt's batch insertion builds the new nodes in one sorted pass instead of one walk from
        // the root per key; it is several times faster and gives the same tree.
        Some(inserts) => {
            let (roots, batch) = tree
                .batch_put_value_sets(vec![inserts], None, version)
                .map_err(StateError::store)?;
            let root = roots
                .first()
                .copied()
                .ok_or_else(|| StateError::Store("jmt returned no root".into()))?;
            (root, batch)
        }
        None => {
            let value_set = writes
                .iter()
                .map(|(key, value)| (key_hash(key), value.clone()));
            tree.put_value_set(value_set, version)
                .map_err(StateError::store)?
        }
    };
    Ok((Hash(root.0), batch))
}

/// The root of the tree at `version`.
pub fn root_at<R: TreeReader>(reader: &R, version: Version) -> Result<Hash, StateError> {
    match Tree::new(reader)
        .get_root_hash_option(version)
        .map_err(StateError::store)?
    {
        Some(root) => Ok(Hash(root.0)),
        None => Err(StateError::MissingVersion(version)),
    }
}

/// How many entries the state holds at `version` (the root's leaf count: one read).
pub fn entries_at<R: TreeReader>(reader: &R, version: Version) -> Result<u64, StateError> {
    Tree::new(reader)
        .get_leaf_count(version)
        .map(|count| count as u64)
        .map_err(StateError::store)
}

/// Proves the value of one key (or its absence) at a version.
pub fn prove<R: TreeReader>(
    reader: &R,
    version: Version,
    key: &[u8],
) -> Result<StateProof, StateError> {
    let (value, proof) = Tree::new(reader)
        .get_with_proof(key_hash(key), version)
        .map_err(StateError::store)?;
    Ok(StateProof {
        key: key.to_vec(),
        value,
        proof: borsh::to_vec(&proof).map_err(StateError::store)?,
    })
}

/// A key, its value (or `None` for a proof of absence) and the Merkle path to a state root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProof {
    #[serde(with = "hex::serde")]
    pub key: Vec<u8>,
    #[serde(with = "optional_hex")]
    pub value: Option<Vec<u8>>,
    /// The borsh encoding of jmt's `SparseMerkleProof`, as hex in JSON.
    #[serde(with = "hex::serde")]
    pub proof: Vec<u8>,
}

impl StateProof {
    /// Checks the proof against a state root taken from a trusted header.
    pub fn verify(&self, root: Hash) -> Result<(), StateError> {
        if self.key.len() > KEY_BYTES_MAX {
            return Err(StateError::BadProof("key is over the size limit".into()));
        }
        let proof: SparseProof = borsh::from_slice(&self.proof)
            .map_err(|error| StateError::BadProof(format!("malformed proof: {error}")))?;
        proof
            .verify(
                jmt::RootHash(root.0),
                key_hash(&self.key),
                self.value.as_deref(),
            )
            .map_err(|error| StateError::BadProof(error.to_string()))
    }
}

mod optional_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&hex::encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| hex::decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A whole tree in memory: for replaying a chain during verification, and for tests.
#[derive(Debug, Default)]
pub struct MemoryTree {
    nodes: BTreeMap<NodeKey, Node>,
    values: BTreeMap<(KeyHash, Version), Option<Vec<u8>>>,
}

impl MemoryTree {
    pub fn apply(&mut self, batch: TreeUpdateBatch) {
        self.apply_nodes(&batch.node_batch);
    }

    /// Adds the nodes and values of a batch (a block's, or a restored snapshot's).
    pub fn apply_nodes(&mut self, batch: &jmt::storage::NodeBatch) {
        for (key, node) in batch.nodes() {
            self.nodes.insert(key.clone(), node.clone());
        }
        for ((version, key_hash), value) in batch.values() {
            self.values.insert((*key_hash, *version), value.clone());
        }
    }
}

impl MemoryTree {
    /// The entry written for `key_hash` at exactly `version`, if any.
    pub fn exact_value(&self, key_hash: KeyHash, version: Version) -> Option<&Option<Vec<u8>>> {
        self.values.get(&(key_hash, version))
    }

    pub fn node(&self, key: &NodeKey) -> Option<&Node> {
        self.nodes.get(key)
    }

    pub fn values_count(&self) -> usize {
        self.values.len()
    }

    pub fn nodes_count(&self) -> usize {
        self.nodes.len()
    }
}

impl TreeReader for MemoryTree {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .values
            .range((key_hash, 0)..=(key_hash, max_version))
            .next_back()
            .and_then(|(_, value)| value.clone()))
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, jmt::storage::LeafNode)>> {
        Err(anyhow::anyhow!(
            "state restore is not supported by the in-memory tree"
        ))
    }
}

/// One tree version that is built but not yet durable, read on top of the committed tree, so
/// the next block can be executed and hashed while this one is written (the block pipeline).
/// With no top it reads the base alone.
#[derive(Debug)]
pub struct Stacked<'a, R> {
    top: Option<(Version, &'a jmt::storage::NodeBatch)>,
    base: &'a R,
}

impl<'a, R: TreeReader> Stacked<'a, R> {
    /// `top` holds the new nodes and values of exactly one version, the one after the base's
    /// newest (or the base's newest itself, once it has been written: then both agree).
    pub fn new(base: &'a R, top: Option<(Version, &'a jmt::storage::NodeBatch)>) -> Self {
        Stacked { top, base }
    }
}

impl<R: TreeReader> TreeReader for Stacked<'_, R> {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        if let Some((_, top)) = self.top
            && let Some(node) = top.get_node(node_key)
        {
            return Ok(Some(node.clone()));
        }
        self.base.get_node_option(node_key)
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let Some((version, top)) = self.top.filter(|(version, _)| *version <= max_version) else {
            return self.base.get_value_option(max_version, key_hash);
        };
        if let Some(value) = top.values().get(&(version, key_hash)) {
            return Ok(value.clone());
        }
        // The top holds every write of its version, so below it the base answers as of the
        // version before: the base's own head, whose reads its hot-state cache can serve.
        self.base
            .get_value_option(version.saturating_sub(1), key_hash)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, jmt::storage::LeafNode)>> {
        self.base.get_rightmost_leaf()
    }
}

/// Encodes a record for the state.
pub fn encode_value<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("encoding into memory never fails")
}

/// Decodes a record read back from the state. A failure means the store is corrupt, since only
/// the ledger writes there.
pub fn decode_value<T: BorshDeserialize>(key: &[u8], bytes: &[u8]) -> Result<T, StateError> {
    borsh::from_slice(bytes).map_err(|error| {
        StateError::Store(format!(
            "value at {} does not decode: {error}",
            String::from_utf8_lossy(key)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commit(tree: &mut MemoryTree, version: Version, writes: &Writes) -> Hash {
        let (root, batch) = apply_writes(tree, version, writes).expect("apply");
        tree.apply(batch);
        root
    }

    proptest! {
        /// Any key, present or absent, proves against the root, and the proof binds the value.
        #[test]
        fn prove_then_verify_holds_for_every_key(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..20),
                proptest::collection::vec(any::<u8>(), 0..40),
                1..40,
            ),
            absent in proptest::collection::vec(any::<u8>(), 21..30),
        ) {
            let mut tree = MemoryTree::default();
            let writes: Writes = entries.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
            let root = commit(&mut tree, 0, &writes);
            for (key, value) in &entries {
                let proof = prove(&tree, 0, key).expect("prove");
                prop_assert_eq!(proof.value.as_ref(), Some(value));
                prop_assert!(proof.verify(root).is_ok());
                let mut forged = proof.clone();
                forged.value = Some(b"forged".to_vec());
                prop_assert!(forged.verify(root).is_err());
            }
            let proof = prove(&tree, 0, &absent).expect("prove absence");
            prop_assert_eq!(proof.value.clone(), None);
            prop_assert!(proof.verify(root).is_ok());
            let mut forged = proof;
            forged.value = Some(vec![1]);
            prop_assert!(forged.verify(root).is_err());
        }

        /// The root depends on the final contents, not on how writes were split across versions.
        #[test]
        fn root_is_independent_of_batching(
            entries in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 1..8),
                proptest::collection::vec(any::<u8>(), 1..8),
                2..30,
            ),
            split in any::<prop::sample::Index>(),
        ) {
            let all: Writes = entries.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
            let mut one = MemoryTree::default();
            let root_one = commit(&mut one, 0, &all);

            let cut = split.index(all.len() - 1) + 1;
            let first: Writes = all.iter().take(cut).map(|(k, v)| (k.clone(), v.clone())).collect();
            let second: Writes = all.iter().skip(cut).map(|(k, v)| (k.clone(), v.clone())).collect();
            let mut two = MemoryTree::default();
            commit(&mut two, 0, &first);
            let root_two = if second.is_empty() { root_at(&two, 0).expect("root") } else { commit(&mut two, 1, &second) };
            prop_assert_eq!(root_one, root_two);
        }
    }

    fn writes_strategy() -> impl Strategy<Value = Writes> {
        proptest::collection::btree_map(
            proptest::collection::vec(0u8..4, 1..4),
            proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 1..6)),
            1..30,
        )
    }

    proptest! {
        /// A version read through [`Stacked`] (built, not yet written) reads and extends exactly
        /// as it does once written: the next version's root and node batch are the same, and so is
        /// every key's value at each version.
        #[test]
        fn a_stacked_version_reads_and_extends_as_a_written_one(
            first in writes_strategy(),
            second in writes_strategy(),
            third in writes_strategy(),
        ) {
            let genesis: Writes = first.iter().map(|(k, v)| (k.clone(), Some(v.clone().unwrap_or_else(|| vec![0])))).collect();
            let mut base = MemoryTree::default();
            commit(&mut base, 0, &genesis);
            let (_, pending) = apply_writes(&base, 1, &second).expect("apply second");
            let stacked = Stacked::new(&base, Some((1, &pending.node_batch)));
            let (root_stacked, batch_stacked) = apply_writes(&stacked, 2, &third).expect("stacked");

            let mut written = MemoryTree::default();
            commit(&mut written, 0, &genesis);
            written.apply(pending.clone());
            let (root_written, batch_written) = apply_writes(&written, 2, &third).expect("written");
            prop_assert_eq!(root_stacked, root_written);
            prop_assert_eq!(batch_stacked.node_batch.nodes(), batch_written.node_batch.nodes());
            for key in first.keys().chain(second.keys()).chain(third.keys()) {
                for version in [0, 1] {
                    let read = |reader: &dyn StateRead| reader.get(key).expect("get");
                    prop_assert_eq!(
                        read(&Snapshot { reader: &stacked, version: Some(version) }),
                        read(&Snapshot { reader: &written, version: Some(version) })
                    );
                }
            }
        }
    }

    proptest! {
        /// The batch path (inserts only) and the key-by-key path (with a delete) agree on the root.
        #[test]
        fn batch_and_single_insertion_build_the_same_tree(
            first in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..6), proptest::collection::vec(any::<u8>(), 1..6), 1..40),
            second in proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..6), proptest::collection::vec(any::<u8>(), 1..6), 1..40),
        ) {
            let writes = |entries: &BTreeMap<Vec<u8>, Vec<u8>>| -> Writes { entries.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect() };
            let mut batched = MemoryTree::default();
            commit(&mut batched, 0, &writes(&first));
            let root_batched = commit(&mut batched, 1, &writes(&second));

            let mut single = MemoryTree::default();
            let tree = Tree::new(&single);
            let (_, batch) = tree.put_value_set(writes(&first).into_iter().map(|(k, v)| (key_hash(&k), v)), 0).expect("put");
            single.apply(batch);
            let tree = Tree::new(&single);
            let (root_single, _) = tree.put_value_set(writes(&second).into_iter().map(|(k, v)| (key_hash(&k), v)), 1).expect("put");
            prop_assert_eq!(root_batched, Hash(root_single.0));
        }
    }

    #[test]
    fn overlay_discards_a_refused_transaction_only() {
        let tree = MemoryTree::default();
        let base = Snapshot {
            reader: &tree,
            version: None,
        };
        let mut overlay = Overlay::new(&base);
        overlay.put(b"a".to_vec(), b"1".to_vec());
        overlay.commit_tx();
        overlay.put(b"b".to_vec(), b"2".to_vec());
        assert_eq!(overlay.get(b"b").expect("get"), Some(b"2".to_vec()));
        overlay.discard_tx();
        assert_eq!(overlay.get(b"b").expect("get"), None);
        assert_eq!(overlay.get(b"a").expect("get"), Some(b"1".to_vec()));
        let writes = overlay.into_writes();
        assert_eq!(writes.len(), 1);
    }

    #[test]
    fn a_tampered_proof_is_refused_not_panicked_on() {
        let mut tree = MemoryTree::default();
        let writes: Writes = (0..50u8).map(|i| (vec![i], Some(vec![i; 3]))).collect();
        let root = commit(&mut tree, 0, &writes);
        let proof = prove(&tree, 0, &[7]).expect("prove");
        for index in 0..proof.proof.len() {
            let mut tampered = proof.clone();
            tampered.proof[index] ^= 0x40;
            // Either it no longer decodes or it no longer verifies; it never passes.
            assert!(
                tampered.verify(root).is_err(),
                "byte {index} flipped still verified"
            );
        }
        let mut other_root = root;
        other_root.0[0] ^= 1;
        assert!(proof.verify(other_root).is_err());
    }
}
