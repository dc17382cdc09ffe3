//! The block store and the state store, together in one embedded redb database.
//!
//! One redb write transaction per block holds the header, the transactions, their index and
//! receipts, the commit certificate and the state tree's new nodes and values, so a block and its
//! state become durable together or not at all. redb commits with an fsync (`Durability::Immediate`)
//! before `commit_block` returns, so a receipt is only ever reported after its block is on disk.
//!
//! **Invariant:** the store holds either nothing, or genesis and blocks `1..=head` with their
//! certificates and the state tree at every version `0..=head`. There is no other state on disk.
//! **API boundary:** the store trusts nothing it reads: callers in `medledger-node` check
//! certificates, roots and hashes before serving what it returns.

use std::path::Path;
use std::sync::Arc;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, Version};
use medledger_crypto::Hash;
use medledger_ledger::Tx;
use medledger_types::{
    CommitCertificate, Genesis, Header, Height, Receipt, TypesError, decode, encode,
};
use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle,
};

pub use jmt::storage::TreeUpdateBatch;

mod hot;
mod packed;

use hot::HotCache;
pub use hot::{HOT_ENTRIES_MAX, HOT_VALUE_BYTES_MAX};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const CERTIFICATES: TableDefinition<u64, &[u8]> = TableDefinition::new("certificates");
const BLOCK_HASHES: TableDefinition<&[u8], u64> = TableDefinition::new("block_hashes");
/// Each block's transactions as one packed list (`packed`): one entry per block, appended at the
/// right edge of the B-tree, instead of one per transaction.
const BLOCK_TXS: TableDefinition<u64, &[u8]> = TableDefinition::new("block_txs");
/// Each block's receipts, in transaction order, as one packed list.
const BLOCK_RECEIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("block_receipts");
/// Transaction id to its height and index: the one entry per transaction that lookups by id need,
/// 12 bytes beside the id.
const TX_INDEX: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("tx_index");
/// The layout before block bodies were packed: transactions by (height, index) and receipts by
/// transaction id. `Store::open` moves a store written that way to the packed layout.
const LEGACY_TXS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("txs");
const LEGACY_TX_RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tx_receipts");
/// State tree nodes by version (8 bytes, big-endian) then the node key: a block's new nodes share
/// a version, so they append at the right edge of the B-tree instead of landing all over it.
const TREE_NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tree_nodes");
/// State values by key hash (32 bytes) then version (8 bytes, big-endian), so that the newest
/// version at or below a height is one reverse range step away.
const TREE_VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tree_values");

const META_GENESIS: &str = "genesis";
const META_HEAD: &str = "head";
/// The height a store restored from a snapshot starts at (absent: 0, a store from genesis).
const META_BASE: &str = "base";
/// The snapshot's proof (JSON of a light proof of the validator set at the base height), which
/// certifies the base header from genesis.
const META_SNAPSHOT_PROOF: &str = "snapshot-proof";

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(String),
    /// redb found the file damaged when opening it (it checks page checksums when it recovers
    /// from an unclean shutdown).
    #[error("database file is corrupt: {0}")]
    CorruptFile(String),
    #[error("stored {what} at height {height} does not decode: {reason}")]
    Corrupt {
        what: &'static str,
        height: Height,
        reason: String,
    },
    #[error("store is not initialised: it has no genesis")]
    NoGenesis,
    #[error("store already holds a chain with genesis {stored}, not {given}")]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("block {got} does not follow the head {head}")]
    NotNext { head: Height, got: Height },
}

fn db_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Db(error.to_string())
}

fn corrupt(what: &'static str, height: Height) -> impl Fn(TypesError) -> StoreError {
    move |error| StoreError::Corrupt {
        what,
        height,
        reason: error.to_string(),
    }
}

/// A block with everything that must become durable with it.
#[derive(Debug)]
pub struct BlockCommit<'a> {
    pub header: &'a Header,
    pub txs: &'a [Tx],
    pub receipts: &'a [Receipt],
    pub certificate: &'a CommitCertificate,
    /// The parent's certificate as this block carries it. Any 2f+1 precommits finalise a block
    /// and validators may hold different sets, so the copy the chain carries replaces the one this
    /// node collected, keeping `last_commit_hash` checkable against the stored certificate.
    pub last_commit: Option<&'a CommitCertificate>,
    pub tree: &'a TreeUpdateBatch,
}

/// The node's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    /// The database file, for [`Store::copy_to`].
    path: std::path::PathBuf,
    /// Small, hot state values at the head, shared with every reader.
    hot: Arc<HotCache>,
}

impl Store {
    /// Opens the database at `path`, creating it if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::builder()
            .set_cache_size(512 * 1024 * 1024)
            .create(path)
            .map_err(|error| match error {
                redb::DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
                    StoreError::CorruptFile(reason)
                }
                other => db_error(other),
            })?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            txn.open_table(META).map_err(db_error)?;
            txn.open_table(HEADERS).map_err(db_error)?;
            txn.open_table(CERTIFICATES).map_err(db_error)?;
            txn.open_table(BLOCK_HASHES).map_err(db_error)?;
            txn.open_table(BLOCK_TXS).map_err(db_error)?;
            txn.open_table(BLOCK_RECEIPTS).map_err(db_error)?;
            txn.open_table(TX_INDEX).map_err(db_error)?;
            txn.open_table(TREE_NODES).map_err(db_error)?;
            txn.open_table(TREE_VALUES).map_err(db_error)?;
        }
        migrate_legacy_bodies(&txn)?;
        txn.commit().map_err(db_error)?;
        let mut store = Store {
            db,
            path: path.to_path_buf(),
            hot: Arc::new(HotCache::new(None, HOT_ENTRIES_MAX)),
        };
        let head = match store.reader()?.head() {
            Ok(head) => Some(head),
            Err(StoreError::NoGenesis) => None,
            Err(error) => return Err(error),
        };
        store.hot = Arc::new(HotCache::new(head, HOT_ENTRIES_MAX));
        Ok(store)
    }

    /// Copies the database file to `dest` as of its last commit, for a backup of a running node:
    /// a write transaction is held (and then abandoned) while the file is copied, so no commit
    /// lands half-way and the copy opens as that committed state. Returns the head height the
    /// copy holds. Writers wait for the length of the copy.
    pub fn copy_to(&self, dest: &Path) -> Result<Height, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let head = self.reader()?.head()?;
        std::fs::copy(&self.path, dest).map_err(|error| {
            StoreError::Db(format!(
                "copying {} to {}: {error}",
                self.path.display(),
                dest.display()
            ))
        })?;
        txn.abort().map_err(db_error)?;
        Ok(head)
    }

    /// A consistent snapshot for reading.
    pub fn reader(&self) -> Result<StoreReader, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let meta = txn.open_table(META).map_err(db_error)?;
        let head = meta
            .get(META_HEAD)
            .map_err(db_error)?
            .and_then(|bytes| read_u64(bytes.value()));
        Ok(StoreReader {
            meta,
            head,
            hot: self.hot.clone(),
            headers: txn.open_table(HEADERS).map_err(db_error)?,
            certificates: txn.open_table(CERTIFICATES).map_err(db_error)?,
            block_hashes: txn.open_table(BLOCK_HASHES).map_err(db_error)?,
            block_txs: txn.open_table(BLOCK_TXS).map_err(db_error)?,
            block_receipts: txn.open_table(BLOCK_RECEIPTS).map_err(db_error)?,
            tx_index: txn.open_table(TX_INDEX).map_err(db_error)?,
            tree_nodes: txn.open_table(TREE_NODES).map_err(db_error)?,
            tree_values: txn.open_table(TREE_VALUES).map_err(db_error)?,
        })
    }

    /// Stores genesis and its state (tree version 0) in one durable transaction.
    pub fn init_genesis(&self, genesis: &Genesis, tree: TreeUpdateBatch) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error)?;
        {
            let mut meta = txn.open_table(META).map_err(db_error)?;
            claim_genesis(&mut meta, genesis)?;
            meta.insert(META_HEAD, 0u64.to_be_bytes().as_slice())
                .map_err(db_error)?;
        }
        write_tree(&txn, &tree)?;
        txn.commit().map_err(db_error)?;
        self.hot.reset(0);
        Ok(())
    }

    /// Initialises an empty store from a state snapshot: genesis, the certified header and
    /// certificate of `header.height` (the base: the store holds no block at or below it), the
    /// restored tree at that version, and the proof that certifies the header from genesis. One
    /// durable transaction: a crash leaves the store empty or whole.
    pub fn init_from_snapshot(
        &self,
        genesis: &Genesis,
        header: &Header,
        certificate: &CommitCertificate,
        nodes: &jmt::storage::NodeBatch,
        proof_json: &[u8],
    ) -> Result<(), StoreError> {
        let height = header.height;
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error)?;
        {
            let mut meta = txn.open_table(META).map_err(db_error)?;
            claim_genesis(&mut meta, genesis)?;
            meta.insert(META_HEAD, height.to_be_bytes().as_slice())
                .map_err(db_error)?;
            meta.insert(META_BASE, height.to_be_bytes().as_slice())
                .map_err(db_error)?;
            meta.insert(META_SNAPSHOT_PROOF, proof_json)
                .map_err(db_error)?;
            txn.open_table(HEADERS)
                .map_err(db_error)?
                .insert(height, encode(header).as_slice())
                .map_err(db_error)?;
            txn.open_table(CERTIFICATES)
                .map_err(db_error)?
                .insert(height, encode(certificate).as_slice())
                .map_err(db_error)?;
            txn.open_table(BLOCK_HASHES)
                .map_err(db_error)?
                .insert(header.hash().0.as_slice(), height)
                .map_err(db_error)?;
        }
        write_nodes(&txn, nodes)?;
        txn.commit().map_err(db_error)?;
        self.hot.reset(height);
        Ok(())
    }

    /// Appends the next block and its state, durably: when this returns, an fsync has completed.
    pub fn commit_block(&self, block: BlockCommit<'_>) -> Result<(), StoreError> {
        let height = block.header.height;
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error)?;
        {
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let head = match meta.get(META_HEAD).map_err(db_error)? {
                Some(bytes) => read_u64(bytes.value()).ok_or(StoreError::Corrupt {
                    what: "head marker",
                    height,
                    reason: "not 8 bytes".into(),
                })?,
                None => return Err(StoreError::NoGenesis),
            };
            if height != head + 1 {
                return Err(StoreError::NotNext { head, got: height });
            }
            meta.insert(META_HEAD, height.to_be_bytes().as_slice())
                .map_err(db_error)?;

            let hash = block.header.hash();
            txn.open_table(HEADERS)
                .map_err(db_error)?
                .insert(height, encode(block.header).as_slice())
                .map_err(db_error)?;
            let mut certificates = txn.open_table(CERTIFICATES).map_err(db_error)?;
            certificates
                .insert(height, encode(block.certificate).as_slice())
                .map_err(db_error)?;
            if let Some(last_commit) = block.last_commit {
                certificates
                    .insert(height - 1, encode(last_commit).as_slice())
                    .map_err(db_error)?;
            }
            txn.open_table(BLOCK_HASHES)
                .map_err(db_error)?
                .insert(hash.0.as_slice(), height)
                .map_err(db_error)?;
            write_body(&txn, height, block.txs, block.receipts)?;
        }
        write_tree(&txn, block.tree)?;
        txn.commit().map_err(db_error)?;
        self.hot.advance(height, &block.tree.node_batch);
        Ok(())
    }
}

/// Records `genesis` in a new store; refuses a store that already holds a chain.
fn claim_genesis(
    meta: &mut redb::Table<&'static str, &'static [u8]>,
    genesis: &Genesis,
) -> Result<(), StoreError> {
    if let Some(stored) = meta.get(META_GENESIS).map_err(db_error)? {
        let stored: Genesis =
            decode("genesis", stored.value(), usize::MAX).map_err(corrupt("genesis", 0))?;
        return Err(StoreError::GenesisMismatch {
            stored: stored.hash(),
            given: genesis.hash(),
        });
    }
    meta.insert(META_GENESIS, encode(genesis).as_slice())
        .map_err(db_error)?;
    Ok(())
}

fn malformed(what: &'static str, height: Height) -> StoreError {
    StoreError::Corrupt {
        what,
        height,
        reason: "the packed list is malformed or too short".into(),
    }
}

fn decode_tx(bytes: &[u8]) -> Result<Tx, TypesError> {
    Tx::from_bytes(bytes)
}

fn decode_receipt(bytes: &[u8]) -> Result<Receipt, TypesError> {
    decode("receipt", bytes, usize::MAX)
}

/// Every item of a block's packed list (none if the block has no entry: it held nothing).
fn packed_all<T>(
    table: &ReadOnlyTable<u64, &'static [u8]>,
    height: Height,
    what: &'static str,
    decode_item: fn(&[u8]) -> Result<T, TypesError>,
) -> Result<Vec<T>, StoreError> {
    let Some(packed) = table.get(height).map_err(db_error)? else {
        return Ok(Vec::new());
    };
    packed::items(packed.value())
        .ok_or_else(|| malformed(what, height))?
        .into_iter()
        .map(|bytes| decode_item(bytes).map_err(corrupt(what, height)))
        .collect()
}

/// Item `index` of a block's packed list, if it has one.
fn packed_one<T>(
    table: &ReadOnlyTable<u64, &'static [u8]>,
    height: Height,
    index: u32,
    what: &'static str,
    decode_item: fn(&[u8]) -> Result<T, TypesError>,
) -> Result<Option<T>, StoreError> {
    let Some(packed) = table.get(height).map_err(db_error)? else {
        return Ok(None);
    };
    packed::item(packed.value(), index as usize)
        .map_err(|()| malformed(what, height))?
        .map(|bytes| decode_item(bytes).map_err(corrupt(what, height)))
        .transpose()
}

/// Writes a block's transactions and receipts (one entry each) and indexes its transactions.
fn write_body(
    txn: &redb::WriteTransaction,
    height: Height,
    txs: &[Tx],
    receipts: &[Receipt],
) -> Result<(), StoreError> {
    let tx_bytes: Vec<Vec<u8>> = txs.iter().map(Tx::to_bytes).collect();
    let receipt_bytes: Vec<Vec<u8>> = receipts.iter().map(encode).collect();
    txn.open_table(BLOCK_TXS)
        .map_err(db_error)?
        .insert(
            height,
            packed::pack(tx_bytes.iter().map(Vec::as_slice)).as_slice(),
        )
        .map_err(db_error)?;
    txn.open_table(BLOCK_RECEIPTS)
        .map_err(db_error)?
        .insert(
            height,
            packed::pack(receipt_bytes.iter().map(Vec::as_slice)).as_slice(),
        )
        .map_err(db_error)?;
    // Ids are random: inserted in key order, consecutive inserts walk the B-tree left to right
    // instead of jumping across it.
    let mut located: Vec<(&Hash, u32)> = receipts
        .iter()
        .map(|receipt| (&receipt.tx_id, receipt.index))
        .collect();
    located.sort_unstable();
    let mut index = txn.open_table(TX_INDEX).map_err(db_error)?;
    for (id, position) in located {
        index
            .insert(id.0.as_slice(), (height, position))
            .map_err(db_error)?;
    }
    Ok(())
}

/// Moves the bodies of a store written before they were packed (transactions by height and
/// index, receipts by transaction id) to the packed layout, inside the opening transaction: a
/// crash leaves the old layout whole, to be moved on the next start.
fn migrate_legacy_bodies(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let exists = txn
        .list_tables()
        .map_err(db_error)?
        .any(|table| table.name() == LEGACY_TXS.name());
    if !exists {
        return Ok(());
    }
    {
        let legacy_txs = txn.open_table(LEGACY_TXS).map_err(db_error)?;
        let legacy_receipts = txn.open_table(LEGACY_TX_RECEIPTS).map_err(db_error)?;
        let mut block: Option<(Height, Vec<Tx>)> = None;
        let flush = |height: Height, txs: Vec<Tx>| -> Result<(), StoreError> {
            let mut receipts = Vec::with_capacity(txs.len());
            for tx in &txs {
                let bytes = legacy_receipts
                    .get(tx.id().0.as_slice())
                    .map_err(db_error)?
                    .ok_or_else(|| StoreError::Corrupt {
                        what: "receipt",
                        height,
                        reason: format!("transaction {} has no receipt", tx.id()),
                    })?;
                receipts.push(
                    decode("receipt", bytes.value(), usize::MAX)
                        .map_err(corrupt("receipt", height))?,
                );
            }
            write_body(txn, height, &txs, &receipts)
        };
        for entry in legacy_txs.iter().map_err(db_error)? {
            let (key, bytes) = entry.map_err(db_error)?;
            let (height, _) = key.value();
            let tx = Tx::from_bytes(bytes.value()).map_err(corrupt("transaction", height))?;
            match &mut block {
                Some((current, txs)) if *current == height => txs.push(tx),
                _ => {
                    if let Some((current, txs)) = block.take() {
                        flush(current, txs)?;
                    }
                    block = Some((height, vec![tx]));
                }
            }
        }
        if let Some((current, txs)) = block.take() {
            flush(current, txs)?;
        }
    }
    txn.delete_table(LEGACY_TXS).map_err(db_error)?;
    txn.delete_table(LEGACY_TX_RECEIPTS).map_err(db_error)?;
    Ok(())
}

fn write_tree(txn: &redb::WriteTransaction, batch: &TreeUpdateBatch) -> Result<(), StoreError> {
    write_nodes(txn, &batch.node_batch)
}

fn write_nodes(
    txn: &redb::WriteTransaction,
    batch: &jmt::storage::NodeBatch,
) -> Result<(), StoreError> {
    // jmt orders nodes by nibble path, the table by encoded key (depth first): sorted by the
    // encoded key, a block's nodes append at the right edge of the B-tree in one sweep.
    let mut encoded: Vec<(Vec<u8>, &Node)> = batch
        .nodes()
        .iter()
        .map(|(key, node)| (node_key(key), node))
        .collect();
    encoded.sort_unstable_by(|(left, _), (right, _)| left.cmp(right));
    let mut nodes = txn.open_table(TREE_NODES).map_err(db_error)?;
    for (key, node) in encoded {
        nodes
            .insert(key.as_slice(), encode(node).as_slice())
            .map_err(db_error)?;
    }
    let mut values = txn.open_table(TREE_VALUES).map_err(db_error)?;
    for ((version, key_hash), value) in batch.values() {
        values
            .insert(
                value_key(key_hash, *version).as_slice(),
                encode(value).as_slice(),
            )
            .map_err(db_error)?;
    }
    Ok(())
}

fn node_key(key: &NodeKey) -> Vec<u8> {
    let mut bytes = key.version().to_be_bytes().to_vec();
    borsh::to_writer(&mut bytes, key).expect("encoding into memory never fails");
    bytes
}

fn value_key(key_hash: &KeyHash, version: Version) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(&key_hash.0);
    key[32..].copy_from_slice(&version.to_be_bytes());
    key
}

fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// A read snapshot of the store. Everything it returns is as stored: unverified.
pub struct StoreReader {
    meta: ReadOnlyTable<&'static str, &'static [u8]>,
    /// The head as this snapshot holds it; the hot cache serves reads at exactly this version.
    head: Option<Height>,
    hot: Arc<HotCache>,
    headers: ReadOnlyTable<u64, &'static [u8]>,
    certificates: ReadOnlyTable<u64, &'static [u8]>,
    block_hashes: ReadOnlyTable<&'static [u8], u64>,
    block_txs: ReadOnlyTable<u64, &'static [u8]>,
    block_receipts: ReadOnlyTable<u64, &'static [u8]>,
    tx_index: ReadOnlyTable<&'static [u8], (u64, u32)>,
    tree_nodes: ReadOnlyTable<&'static [u8], &'static [u8]>,
    tree_values: ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreReader")
    }
}

impl StoreReader {
    pub fn genesis(&self) -> Result<Genesis, StoreError> {
        let bytes = self
            .meta
            .get(META_GENESIS)
            .map_err(db_error)?
            .ok_or(StoreError::NoGenesis)?;
        decode("genesis", bytes.value(), usize::MAX).map_err(corrupt("genesis", 0))
    }

    /// The height of the last committed block; 0 when only genesis is stored.
    pub fn head(&self) -> Result<Height, StoreError> {
        let bytes = self
            .meta
            .get(META_HEAD)
            .map_err(db_error)?
            .ok_or(StoreError::NoGenesis)?;
        read_u64(bytes.value()).ok_or(StoreError::Corrupt {
            what: "head marker",
            height: 0,
            reason: "not 8 bytes".into(),
        })
    }

    /// The height this store starts at: 0 for a chain from genesis, the snapshot's height for a
    /// store restored from one (it holds no block at or below it, and the state only from it).
    pub fn base(&self) -> Result<Height, StoreError> {
        match self.meta.get(META_BASE).map_err(db_error)? {
            None => Ok(0),
            Some(bytes) => read_u64(bytes.value()).ok_or(StoreError::Corrupt {
                what: "base marker",
                height: 0,
                reason: "not 8 bytes".into(),
            }),
        }
    }

    /// The proof certifying the base header from genesis (a store restored from a snapshot).
    pub fn snapshot_proof(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(META_SNAPSHOT_PROOF)
            .map_err(db_error)?
            .map(|bytes| bytes.value().to_vec()))
    }

    pub fn header(&self, height: Height) -> Result<Option<Header>, StoreError> {
        self.headers
            .get(height)
            .map_err(db_error)?
            .map(|bytes| {
                decode("header", bytes.value(), usize::MAX).map_err(corrupt("header", height))
            })
            .transpose()
    }

    pub fn certificate(&self, height: Height) -> Result<Option<CommitCertificate>, StoreError> {
        self.certificates
            .get(height)
            .map_err(db_error)?
            .map(|bytes| {
                decode("certificate", bytes.value(), usize::MAX)
                    .map_err(corrupt("certificate", height))
            })
            .transpose()
    }

    pub fn height_of(&self, block_hash: &Hash) -> Result<Option<Height>, StoreError> {
        Ok(self
            .block_hashes
            .get(block_hash.0.as_slice())
            .map_err(db_error)?
            .map(|height| height.value()))
    }

    /// The transactions of a block, in order.
    pub fn txs(&self, height: Height) -> Result<Vec<Tx>, StoreError> {
        packed_all(&self.block_txs, height, "transaction", decode_tx)
    }

    pub fn tx(&self, height: Height, index: u32) -> Result<Option<Tx>, StoreError> {
        packed_one(&self.block_txs, height, index, "transaction", decode_tx)
    }

    /// The receipts of a block, in transaction order.
    pub fn receipts(&self, height: Height) -> Result<Vec<Receipt>, StoreError> {
        packed_all(&self.block_receipts, height, "receipt", decode_receipt)
    }

    /// Where a transaction is: its block's height and its index there.
    pub fn tx_location(&self, tx_id: &Hash) -> Result<Option<(Height, u32)>, StoreError> {
        Ok(self
            .tx_index
            .get(tx_id.0.as_slice())
            .map_err(db_error)?
            .map(|location| location.value()))
    }

    pub fn receipt(&self, tx_id: &Hash) -> Result<Option<Receipt>, StoreError> {
        let Some((height, index)) = self.tx_location(tx_id)? else {
            return Ok(None);
        };
        // The index names a place: a receipt missing from it is damage, not absence.
        packed_one(
            &self.block_receipts,
            height,
            index,
            "receipt",
            decode_receipt,
        )?
        .map(Some)
        .ok_or_else(|| malformed("receipt", height))
    }

    /// Every stored (key hash, version, value) of the state, for a full audit.
    pub fn for_each_value(
        &self,
        mut visit: impl FnMut(KeyHash, Version, Option<Vec<u8>>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for entry in self.tree_values.iter().map_err(db_error)? {
            let (key, value) = entry.map_err(db_error)?;
            let key = key.value();
            let (Ok(key_hash), Some(version)) = (
                <[u8; 32]>::try_from(&key[..32.min(key.len())]),
                key.get(32..).and_then(read_u64),
            ) else {
                return Err(StoreError::Corrupt {
                    what: "state value key",
                    height: 0,
                    reason: "not 40 bytes".into(),
                });
            };
            let value: Option<Vec<u8>> = decode("state value", value.value(), usize::MAX)
                .map_err(corrupt("state value", version))?;
            visit(KeyHash(key_hash), version, value)?;
        }
        Ok(())
    }
}

impl StoreReader {
    /// Every stored node of the state tree.
    pub fn for_each_node(
        &self,
        mut visit: impl FnMut(NodeKey, Node) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for entry in self.tree_nodes.iter().map_err(db_error)? {
            let (key, node) = entry.map_err(db_error)?;
            let bad = |reason: String| StoreError::Corrupt {
                what: "state tree node",
                height: 0,
                reason,
            };
            // Skip the big-endian version prefix written by `node_key`.
            let key: NodeKey = borsh::from_slice(key.value().get(8..).unwrap_or_default())
                .map_err(|error| bad(error.to_string()))?;
            let node: Node =
                borsh::from_slice(node.value()).map_err(|error| bad(error.to_string()))?;
            visit(key, node)?;
        }
        Ok(())
    }
}

impl TreeReader for StoreReader {
    fn get_node_option(&self, key: &NodeKey) -> anyhow::Result<Option<Node>> {
        match self.tree_nodes.get(node_key(key).as_slice())? {
            Some(bytes) => Ok(Some(borsh::from_slice(bytes.value())?)),
            None => Ok(None),
        }
    }

    fn get_value_option(
        &self,
        max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        // Only a read at this snapshot's head may use the cache: then the value redb gives is
        // the one at the version the cache is keyed by.
        let at_head = self.head == Some(max_version);
        if at_head && let Some(value) = self.hot.get(max_version, &key_hash) {
            return Ok(Some(value));
        }
        let low = value_key(&key_hash, 0);
        let high = value_key(&key_hash, max_version);
        let value: Option<Vec<u8>> = match self
            .tree_values
            .range(low.as_slice()..=high.as_slice())?
            .next_back()
        {
            Some(entry) => {
                let (_, value) = entry?;
                borsh::from_slice(value.value())?
            }
            None => None,
        };
        if at_head && let Some(value) = &value {
            self.hot.fill(max_version, key_hash, value);
        }
        Ok(value)
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Err(anyhow::anyhow!(
            "state restore is not supported by the block store"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_crypto::SecretKey;
    use medledger_state::{MemoryTree, Writes, apply_writes, prove, root_at};
    use medledger_types::{Organisation, Validator};

    fn genesis() -> Genesis {
        let key = SecretKey::from_seed(1).public_key();
        Genesis {
            chain_id: "t".into(),
            genesis_time_ms: 0,
            organisations: vec![Organisation {
                id: "o".into(),
                name: "O".into(),
                root_key: key,
                gs1_prefixes: Vec::new(),
            }],
            validators: vec![Validator {
                key,
                power: 1,
                org: "o".into(),
            }],
        }
    }

    /// What the store writes for a tree batch, it reads back the same way through every path:
    /// point reads by jmt, full scans for the audit, and proofs against the root.
    #[test]
    fn a_stored_tree_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.redb")).expect("open");
        let writes: Writes = (0..200u32)
            .map(|i| (i.to_le_bytes().to_vec(), Some(vec![i as u8; 5])))
            .collect();
        let mut memory = MemoryTree::default();
        let (root, batch) = apply_writes(&memory, 0, &writes).expect("apply");
        memory.apply(batch.clone());
        store.init_genesis(&genesis(), batch).expect("init");

        let reader = store.reader().expect("reader");
        assert_eq!(root_at(&reader, 0).expect("root"), root);
        let mut nodes = 0;
        reader
            .for_each_node(|key, node| {
                nodes += 1;
                assert_eq!(memory.node(&key), Some(&node));
                assert_eq!(
                    reader.get_node_option(&key).expect("get").as_ref(),
                    Some(&node)
                );
                Ok(())
            })
            .expect("scan nodes");
        assert_eq!(nodes, memory.nodes_count());
        let mut values = 0;
        reader
            .for_each_value(|_, _, _| {
                values += 1;
                Ok(())
            })
            .expect("scan values");
        assert_eq!(values, 200);
        for key in [5u32, 199] {
            let proof = prove(&reader, 0, &key.to_le_bytes()).expect("prove");
            assert_eq!(proof.value, Some(vec![key as u8; 5]));
            assert!(proof.verify(root).is_ok());
        }
        assert_eq!(reader.head().expect("head"), 0);
        assert_eq!(reader.genesis().expect("genesis"), genesis());
    }

    /// A block at `height` holding no transactions, committing `tree`.
    fn commit_empty(store: &Store, height: Height, tree: &TreeUpdateBatch) {
        let key = SecretKey::from_seed(1);
        let header = Header {
            chain_id: "t".into(),
            height,
            time_ms: height,
            prev_hash: Hash::ZERO,
            last_commit_hash: Hash::ZERO,
            txs_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            validators_hash: Hash::ZERO,
            proposer: key.public_key(),
        };
        let certificate = CommitCertificate::sign("t", height, 0, header.hash(), &[&key]);
        store
            .commit_block(BlockCommit {
                header: &header,
                txs: &[],
                receipts: &[],
                certificate: &certificate,
                last_commit: None,
                tree,
            })
            .expect("commit");
    }

    /// One block's writes over a small key space: new values small or over the cache's limit,
    /// and deletions, so cached keys are overwritten, grow out of the cache and disappear.
    fn block_writes() -> impl proptest::strategy::Strategy<Value = Writes> {
        use proptest::prelude::*;
        proptest::collection::btree_map(
            (0u8..24).prop_map(|key| vec![key]),
            prop_oneof![
                6 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Some),
                1 => Just(Some(vec![7; HOT_VALUE_BYTES_MAX + 1])),
                2 => Just(None),
            ],
            1..8,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The hot cache never changes what a read returns: after every block, every key read
        /// through the store (cached at the head, uncached below it, and through a reader opened
        /// a block earlier) equals the uncached in-memory tree at the same version.
        #[test]
        fn reads_through_the_hot_cache_match_the_uncached_tree(
            blocks in proptest::collection::vec(block_writes(), 1..12),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(&dir.path().join("db.redb")).expect("open");
            let mut model = MemoryTree::default();
            let genesis_writes: Writes = (0u8..24).map(|key| (vec![key], Some(vec![key]))).collect();
            let (_, batch) = apply_writes(&model, 0, &genesis_writes).expect("apply");
            model.apply(batch.clone());
            store.init_genesis(&genesis(), batch).expect("init");
            let keys: Vec<KeyHash> = (0u8..24).map(|key| medledger_state::key_hash(&[key])).collect();
            // A reader opened a block or two ago, still reading at the head it saw.
            let mut earlier = store.reader().expect("reader");
            let mut earlier_head = 0;
            for (index, writes) in blocks.iter().enumerate() {
                let height = index as u64 + 1;
                // Fill the cache at the head before the block lands.
                let before = store.reader().expect("reader");
                for key in &keys {
                    before.get_value_option(height - 1, *key).expect("read");
                }
                let (_, batch) = apply_writes(&model, height, writes).expect("apply");
                model.apply(batch.clone());
                commit_empty(&store, height, &batch);
                let now = store.reader().expect("reader");
                for key in &keys {
                    for version in 0..=height {
                        let want = model.get_value_option(version, *key).expect("model");
                        proptest::prop_assert_eq!(now.get_value_option(version, *key).expect("read"), want.clone());
                        if version <= earlier_head {
                            proptest::prop_assert_eq!(earlier.get_value_option(version, *key).expect("old read"), want);
                        }
                    }
                }
                earlier = before;
                earlier_head = height - 1;
            }
        }
    }

    /// The cache stays within its bound however many keys are read, and a read past the bound
    /// still returns the stored value.
    #[test]
    fn the_hot_cache_is_bounded() {
        let cache = HotCache::new(Some(3), 4);
        for key in 0u8..50 {
            cache.fill(3, medledger_state::key_hash(&[key]), &[key]);
            assert!(cache.len() <= 4);
        }
        let key = medledger_state::key_hash(&[49]);
        assert_eq!(cache.get(3, &key), Some(vec![49]));
        // A fill made at a version the cache has left is dropped.
        cache.advance(4, &jmt::storage::NodeBatch::default());
        cache.fill(3, medledger_state::key_hash(&[60]), &[60]);
        assert_eq!(cache.get(4, &medledger_state::key_hash(&[60])), None);
        assert_eq!(cache.get(3, &key), None);
    }

    fn anchor_tx(key: &SecretKey, nonce: u64) -> Tx {
        medledger_types::TxBody {
            chain_id: "t".into(),
            sender: key.public_key(),
            nonce,
            payload: medledger_ledger::CoreOp::Anchor {
                id: Hash([nonce as u8; 32]),
                commitment: Hash([7; 32]),
            }
            .into(),
        }
        .sign(key)
    }

    fn receipt_of(tx: &Tx, height: Height, index: u32) -> Receipt {
        Receipt {
            tx_id: tx.id(),
            height,
            index,
            outcome: medledger_types::Outcome::Committed,
        }
    }

    /// A store written with one entry per transaction (the layout before block bodies were
    /// packed) opens with every transaction and receipt where it was, readable by height, index
    /// and id, and its old tables gone.
    #[test]
    fn a_store_in_the_per_transaction_layout_is_moved_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.redb");
        let key = SecretKey::from_seed(3);
        let blocks: Vec<Vec<Tx>> = vec![
            (0..3).map(|nonce| anchor_tx(&key, nonce)).collect(),
            Vec::new(),
            (3..5).map(|nonce| anchor_tx(&key, nonce)).collect(),
        ];
        {
            let db = Database::create(&path).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut txs = txn.open_table(LEGACY_TXS).expect("txs");
                let mut receipts = txn.open_table(LEGACY_TX_RECEIPTS).expect("receipts");
                for (height, block) in (1u64..).zip(&blocks) {
                    for (index, tx) in (0u32..).zip(block) {
                        txs.insert((height, index), tx.to_bytes().as_slice())
                            .expect("insert tx");
                        let receipt = encode(&receipt_of(tx, height, index));
                        receipts
                            .insert(tx.id().0.as_slice(), receipt.as_slice())
                            .expect("insert receipt");
                    }
                }
            }
            txn.commit().expect("commit");
        }
        let store = Store::open(&path).expect("open moves the layout");
        let reader = store.reader().expect("reader");
        for (height, block) in (1u64..).zip(&blocks) {
            assert_eq!(&reader.txs(height).expect("txs"), block);
            let receipts: Vec<Receipt> = (0u32..)
                .zip(block)
                .map(|(index, tx)| receipt_of(tx, height, index))
                .collect();
            assert_eq!(reader.receipts(height).expect("receipts"), receipts);
            for (index, tx) in (0u32..).zip(block) {
                assert_eq!(reader.tx(height, index).expect("tx").as_ref(), Some(tx));
                assert_eq!(
                    reader.receipt(&tx.id()).expect("receipt"),
                    Some(receipt_of(tx, height, index))
                );
            }
        }
        // Block 2 held no transactions, so the packed layout has no entry for it.
        assert_eq!(reader.tx(1, 3).expect("past the end"), None);
        assert_eq!(reader.receipt(&Hash([9; 32])).expect("unknown id"), None);
        drop(reader);
        drop(store);
        let db = Database::open(&path).expect("reopen");
        let txn = db.begin_read().expect("read");
        let names: Vec<String> = txn
            .list_tables()
            .expect("tables")
            .map(|table| table.name().to_string())
            .collect();
        assert!(!names.contains(&"txs".to_string()), "{names:?}");
        assert!(!names.contains(&"tx_receipts".to_string()), "{names:?}");
    }

    #[test]
    fn a_second_genesis_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db.redb")).expect("open");
        let memory = MemoryTree::default();
        let writes: Writes = [(b"k".to_vec(), Some(b"v".to_vec()))].into_iter().collect();
        let (_, batch) = apply_writes(&memory, 0, &writes).expect("apply");
        store.init_genesis(&genesis(), batch.clone()).expect("init");
        let mut other = genesis();
        other.chain_id = "u".into();
        assert!(matches!(
            store.init_genesis(&other, batch),
            Err(StoreError::GenesisMismatch { .. })
        ));
    }
}
