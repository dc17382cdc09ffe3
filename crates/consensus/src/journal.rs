//! Undecided blocks on disk, beside the engine's write-ahead log.
//!
//! The engine's WAL holds this validator's own votes and proposals, so after a crash it replays
//! them and never signs a conflicting one. It does not hold the blocks those messages name. A
//! replay can therefore decide a block, or ask this node to re-propose one, that existed only in
//! the memory of the process that crashed. The journal closes that gap: a block is written and
//! fsync'd here before this validator proposes it or reports it valid (which is what lets the
//! engine vote for it), and read back on start.
//!
//! **Invariant:** every block this validator proposed or voted for at an undecided height is in
//! the journal. Files below the committed head are removed as heights start, so the journal
//! holds only the current height's and a few future heights' blocks.
//!
//! The host ([`crate::host`]) reaches the journal through [`BlockJournal`]: the node uses the
//! directory of fsync'd files ([`Journal`]), the simulation a [`MemoryJournal`] that it keeps
//! across a simulated crash, as a disk would.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use medledger_crypto::Hash;
use medledger_ledger::Block;

/// The journal's directory under the consensus WAL directory.
pub const JOURNAL_DIR: &str = "undecided-blocks";

/// Where the host keeps undecided blocks so that they outlive a crash.
pub trait BlockJournal {
    /// Writes `block` durably (it is on disk when this returns), unless it is already there.
    fn save(&mut self, block: &Block) -> std::io::Result<()>;
    /// Every intact block at height `from` or above, in (height, hash) order.
    fn load_from(&self, from: u64) -> std::io::Result<Vec<Block>>;
    /// Forgets the blocks of heights below `height`.
    fn prune_below(&mut self, height: u64) -> std::io::Result<()>;
}

/// The node's journal: one fsync'd file a block.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Opens (creating) the journal in `wal_dir`.
    pub fn open(wal_dir: &Path) -> std::io::Result<Journal> {
        let dir = wal_dir.join(JOURNAL_DIR);
        fs::create_dir_all(&dir)?;
        Ok(Journal { dir })
    }

    fn path(&self, height: u64, hash: &Hash) -> PathBuf {
        self.dir.join(format!("{height:020}-{hash}.block"))
    }

    /// Writes `block` durably, unless it is already there.
    pub fn save(&self, block: &Block) -> std::io::Result<()> {
        let path = self.path(block.header.height, &block.hash());
        if path.exists() {
            return Ok(());
        }
        let partial = path.with_extension("partial");
        let mut file = fs::File::create(&partial)?;
        file.write_all(&block.to_bytes())?;
        file.sync_all()?;
        fs::rename(&partial, &path)?;
        fs::File::open(&self.dir)?.sync_all()
    }

    /// Every journalled block at `from` or above whose bytes are the block its name says.
    /// Anything else in the directory (a torn `.partial`, a renamed or corrupted file) is
    /// skipped.
    pub fn load_from(&self, from: u64) -> std::io::Result<Vec<Block>> {
        let mut blocks = Vec::new();
        let mut names: Vec<String> = fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        for name in names {
            let Some((height, hash)) = parse_name(&name) else {
                continue;
            };
            if height < from {
                continue;
            }
            let Ok(bytes) = fs::read(self.dir.join(&name)) else {
                continue;
            };
            match Block::from_bytes(&bytes) {
                Ok(block) if block.hash() == hash && block.header.height == height => {
                    blocks.push(block)
                }
                _ => tracing::warn!(%name, "skipping a damaged journalled block"),
            }
        }
        Ok(blocks)
    }

    /// Removes the blocks of heights below `height`, and torn writes.
    pub fn prune_below(&self, height: u64) -> std::io::Result<()> {
        for entry in fs::read_dir(&self.dir)?.filter_map(|entry| entry.ok()) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let stale = match parse_name(&name) {
                Some((block_height, _)) => block_height < height,
                None => name.ends_with(".partial"),
            };
            if stale {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

impl BlockJournal for Journal {
    fn save(&mut self, block: &Block) -> std::io::Result<()> {
        Journal::save(self, block)
    }

    fn load_from(&self, from: u64) -> std::io::Result<Vec<Block>> {
        Journal::load_from(self, from)
    }

    fn prune_below(&mut self, height: u64) -> std::io::Result<()> {
        Journal::prune_below(self, height)
    }
}

/// A journal in memory, for the simulation and tests. Clones share one store, so a caller can
/// keep a clone as the "disk" that survives when the host holding the other is dropped.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    blocks: Arc<Mutex<BTreeMap<(u64, Hash), Block>>>,
}

impl MemoryJournal {
    fn blocks(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, Hash), Block>> {
        // Nothing here panics while holding the lock, and a map is never left half-updated.
        self.blocks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BlockJournal for MemoryJournal {
    fn save(&mut self, block: &Block) -> std::io::Result<()> {
        self.blocks()
            .entry((block.header.height, block.hash()))
            .or_insert_with(|| block.clone());
        Ok(())
    }

    fn load_from(&self, from: u64) -> std::io::Result<Vec<Block>> {
        Ok(self
            .blocks()
            .range((from, Hash::ZERO)..)
            .map(|(_, block)| block.clone())
            .collect())
    }

    fn prune_below(&mut self, height: u64) -> std::io::Result<()> {
        let mut blocks = self.blocks();
        *blocks = blocks.split_off(&(height, Hash::ZERO));
        Ok(())
    }
}

fn parse_name(name: &str) -> Option<(u64, Hash)> {
    let stem = name.strip_suffix(".block")?;
    let (height, hash) = stem.split_once('-')?;
    Some((height.parse().ok()?, Hash::from_hex(hash).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_crypto::SecretKey;
    use medledger_types::{Header, Validator, ValidatorSet};

    fn block(height: u64, time_ms: u64) -> Block {
        let proposer = SecretKey::from_seed(1).public_key();
        let validators = ValidatorSet::new(vec![Validator {
            key: proposer,
            power: 1,
            org: "a".into(),
        }])
        .expect("set");
        Block {
            header: Header {
                chain_id: "test".into(),
                height,
                time_ms,
                prev_hash: Hash::ZERO,
                last_commit_hash: Hash::ZERO,
                txs_root: Hash::ZERO,
                receipts_root: Hash::ZERO,
                state_root: Hash::ZERO,
                validators_hash: validators.hash(),
                proposer,
            },
            txs: Vec::new(),
            last_commit: None,
        }
    }

    /// Saved blocks come back after a "restart", pruning drops lower heights and torn writes,
    /// and a file whose bytes are not the block its name claims is never returned.
    #[test]
    fn blocks_survive_reopening_and_damage_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::open(dir.path()).expect("open");
        let (a, b, c) = (block(5, 1), block(5, 2), block(7, 3));
        for saved in [&a, &b, &c, &a] {
            journal.save(saved).expect("save");
        }
        let reopened = Journal::open(dir.path()).expect("reopen");
        let loaded = reopened.load_from(5).expect("load");
        assert_eq!(loaded.len(), 3);
        assert!(loaded.contains(&a) && loaded.contains(&b) && loaded.contains(&c));
        assert_eq!(reopened.load_from(6).expect("load"), vec![c.clone()]);

        // A block stored under another block's name is not that block.
        let journal_dir = dir.path().join(JOURNAL_DIR);
        fs::write(
            journal_dir.join(format!("{:020}-{}.block", 7, block(7, 99).hash())),
            a.to_bytes(),
        )
        .expect("write");
        fs::write(journal_dir.join("x.partial"), b"torn").expect("write");
        assert_eq!(reopened.load_from(6).expect("load"), vec![c.clone()]);

        reopened.prune_below(6).expect("prune");
        let left: Vec<_> = fs::read_dir(&journal_dir)
            .expect("read")
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(
            reopened
                .load_from(0)
                .expect("load")
                .iter()
                .all(|b| b.header.height == 7)
        );
    }
}
