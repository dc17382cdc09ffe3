//! Small, hot state entries in memory, in front of the store's value table.
//!
//! Nonces, memberships, organisations, consent grants: every transaction reads a few of them, at
//! admission and again when it executes, and each is a point lookup in a B-tree keyed by key hash
//! that grows with the whole state. The cache keeps present values of at most
//! [`HOT_VALUE_BYTES_MAX`] bytes as of exactly one committed version, the store's head.
//!
//! **Invariant:** the cache answers only reads at exactly its version, and it holds for each key
//! either nothing or that key's value at that version. `Store::commit_block` moves it to the new
//! head after the commit, rewriting every cached key the block wrote (the block's tree batch names
//! them all); a read that misses fills it only if the cache is still at the version the read was
//! made at. So no read ever sees a value other than the one redb holds at its version.

use std::collections::BTreeMap;
use std::sync::Mutex;

use jmt::storage::NodeBatch;
use jmt::{KeyHash, Version};

/// How many entries the cache holds at most; past it, an entry is replaced.
pub const HOT_ENTRIES_MAX: usize = 200_000;
/// The largest value the cache keeps: records that every transaction reads are small.
pub const HOT_VALUE_BYTES_MAX: usize = 256;

#[derive(Debug, Default)]
struct Entries {
    /// The committed version the entries hold; `None` before the store has a head.
    version: Option<Version>,
    values: BTreeMap<KeyHash, Vec<u8>>,
}

/// The bounded cache of hot state values at the store's head.
#[derive(Debug)]
pub(crate) struct HotCache {
    entries: Mutex<Entries>,
    capacity: usize,
}

impl HotCache {
    pub(crate) fn new(version: Option<Version>, capacity: usize) -> Self {
        HotCache {
            entries: Mutex::new(Entries {
                version,
                values: BTreeMap::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every holder leaves the map consistent between statements, so a poisoned lock's data
        // is still good.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The value of `key_hash` at `version`, if the cache is at that version and holds it.
    pub(crate) fn get(&self, version: Version, key_hash: &KeyHash) -> Option<Vec<u8>> {
        let entries = self.lock();
        if entries.version != Some(version) {
            return None;
        }
        entries.values.get(key_hash).cloned()
    }

    /// Keeps a value read from the store at `version`, if the cache is still at that version and
    /// the value is small. When full, the entry after it in key-hash order goes: key hashes are
    /// uniform, so that is random replacement without a random number generator.
    pub(crate) fn fill(&self, version: Version, key_hash: KeyHash, value: &[u8]) {
        if value.len() > HOT_VALUE_BYTES_MAX || self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.version != Some(version) {
            return;
        }
        if entries.values.len() >= self.capacity && !entries.values.contains_key(&key_hash) {
            let victim = entries
                .values
                .range(key_hash..)
                .next()
                .or_else(|| entries.values.iter().next())
                .map(|(victim, _)| *victim);
            if let Some(victim) = victim {
                entries.values.remove(&victim);
            }
        }
        entries.values.insert(key_hash, value.to_vec());
    }

    /// Moves the cache to `version`, just committed with `batch`: each cached key the block
    /// wrote takes its new value (or leaves, if deleted or grown large). A version that does not
    /// follow the cache's empties it.
    pub(crate) fn advance(&self, version: Version, batch: &NodeBatch) {
        let mut entries = self.lock();
        let follows = entries
            .version
            .is_some_and(|cached| cached.checked_add(1) == Some(version));
        if !follows {
            entries.values.clear();
        }
        for ((written_at, key_hash), value) in batch.values() {
            if *written_at != version || !entries.values.contains_key(key_hash) {
                continue;
            }
            match value {
                Some(value) if value.len() <= HOT_VALUE_BYTES_MAX => {
                    entries.values.insert(*key_hash, value.clone());
                }
                _ => {
                    entries.values.remove(key_hash);
                }
            }
        }
        entries.version = Some(version);
    }

    /// Forgets everything and moves to `version` (a store initialised anew).
    pub(crate) fn reset(&self, version: Version) {
        let mut entries = self.lock();
        entries.values.clear();
        entries.version = Some(version);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().values.len()
    }
}
