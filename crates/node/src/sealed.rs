//! A node's sealed store for content a module keeps off chain (trial forms and reports, FHIR
//! Claims): AES-256-GCM under a key the node derives from its own, in one redb file, with a keyed
//! commitment (HMAC-SHA256 under another derived key) that the chain holds instead of the content.
//!
//! Keep, commit the transaction, and forget what the ledger refused: bytes are served only where
//! the chain names their commitment, so what a crash leaves between keeping and committing is
//! never served.

use std::path::Path;

use medledger_crypto::Hash;
use medledger_crypto::envelope::{BlindKey, DataKey, NONCE_BYTES};
use rand_core::{OsRng, RngCore};
use redb::{ReadableDatabase, TableDefinition};
use serde_json::Value;

use crate::Node;
use crate::service::ServiceError;

/// What the node keeps under a key.
pub(crate) enum Kept {
    Absent,
    Plain(Vec<u8>),
    /// Bytes that fail their authentication: changed since they were kept.
    Undecryptable,
}

impl Kept {
    /// The content as JSON and whether it matches `commitment` (computed by `commit`); `None`
    /// for the match when nothing is kept here.
    pub(crate) fn check(
        self,
        commit: impl Fn(&[u8]) -> Hash,
        commitment: &Hash,
    ) -> (Value, Option<bool>) {
        match self {
            Kept::Absent => (Value::Null, None),
            Kept::Undecryptable => (Value::Null, Some(false)),
            Kept::Plain(content) => (
                serde_json::from_slice(&content).unwrap_or(Value::Null),
                Some(commit(&content) == *commitment),
            ),
        }
    }
}

pub(crate) struct SealedStore {
    db: std::sync::Arc<redb::Database>,
    table: TableDefinition<'static, &'static str, &'static [u8]>,
    what: &'static str,
    seal: DataKey,
    commit: BlindKey,
}

impl SealedStore {
    /// Opens (or creates) `dir/file`, sealing under the node's key derived for `label`.
    pub(crate) fn open(
        node: &Node,
        dir: &Path,
        file: &str,
        table: &'static str,
        label: &str,
        what: &'static str,
    ) -> Result<SealedStore, ServiceError> {
        let storage =
            |error: &dyn std::fmt::Display| ServiceError::Storage(format!("{what}: {error}"));
        std::fs::create_dir_all(dir).map_err(|e| storage(&e))?;
        let db = redb::Database::create(dir.join(file)).map_err(|e| storage(&e))?;
        let table = TableDefinition::new(table);
        let txn = db.begin_write().map_err(|e| storage(&e))?;
        txn.open_table(table).map_err(|e| storage(&e))?;
        txn.commit().map_err(|e| storage(&e))?;
        let db = std::sync::Arc::new(db);
        node.register_database(&dir.join(file), &db);
        Ok(SealedStore {
            db,
            table,
            what,
            seal: DataKey(node.derive_secret(&format!("{label}/blob-encryption"))),
            commit: BlindKey(node.derive_secret(&format!("{label}/commitment"))),
        })
    }

    fn storage(&self, error: impl std::fmt::Display) -> ServiceError {
        ServiceError::Storage(format!("{}: {error}", self.what))
    }

    /// The keyed commitment of `parts` under `tag`.
    pub(crate) fn commitment(&self, tag: &[u8], parts: &[&[u8]]) -> Hash {
        self.commit.blind(tag, parts)
    }

    /// Seals and keeps each (key, plaintext), in one write transaction.
    pub(crate) fn keep(&self, blobs: &[(String, Vec<u8>)]) -> Result<(), ServiceError> {
        let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
        {
            let mut table = txn.open_table(self.table).map_err(|e| self.storage(e))?;
            for (key, plaintext) in blobs {
                let mut nonce = [0u8; NONCE_BYTES];
                OsRng.fill_bytes(&mut nonce);
                let mut sealed = nonce.to_vec();
                sealed.extend(self.seal.seal(nonce, key.as_bytes(), plaintext));
                table
                    .insert(key.as_str(), sealed.as_slice())
                    .map_err(|e| self.storage(e))?;
            }
        }
        txn.commit().map_err(|e| self.storage(e))
    }

    /// Deletes what a refused transaction would have committed; a failure is only logged, as
    /// nothing on chain names those bytes.
    pub(crate) fn forget(&self, keys: &[String]) {
        let forget = || -> Result<(), ServiceError> {
            let txn = self.db.begin_write().map_err(|e| self.storage(e))?;
            {
                let mut table = txn.open_table(self.table).map_err(|e| self.storage(e))?;
                for key in keys {
                    table.remove(key.as_str()).map_err(|e| self.storage(e))?;
                }
            }
            txn.commit().map_err(|e| self.storage(e))
        };
        if let Err(error) = forget() {
            tracing::warn!(%error, store = self.what, "could not delete the data of a refused transaction");
        }
    }

    /// What is kept under `key`: nothing, its plaintext, or bytes that no longer decrypt (changed
    /// on disk), which a read reports as not matching the chain.
    pub(crate) fn kept(&self, key: &str) -> Result<Kept, ServiceError> {
        let txn = self.db.begin_read().map_err(|e| self.storage(e))?;
        let table = txn.open_table(self.table).map_err(|e| self.storage(e))?;
        let Some(sealed) = table.get(key).map_err(|e| self.storage(e))? else {
            return Ok(Kept::Absent);
        };
        let sealed = sealed.value();
        let Some((nonce, ciphertext)) = sealed.split_first_chunk::<NONCE_BYTES>() else {
            return Ok(Kept::Undecryptable);
        };
        Ok(match self.seal.open(*nonce, key.as_bytes(), ciphertext) {
            Ok(plaintext) => Kept::Plain(plaintext),
            Err(_) => Kept::Undecryptable,
        })
    }
}
