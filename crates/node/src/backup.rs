//! Consistent online backups of a running node's data directory.
//!
//! redb databases cannot be copied file by file while they are written, so every database a
//! node opens is registered here ([`Node::register_database`], [`Node::register_vault`]) and a
//! backup copies each under its own write transaction: the copy is that database's last
//! commit, and writers wait only for the length of one file copy. The chain store goes first,
//! so every other store in the backup is at least as new as the chain it holds; that is a state a
//! crash can also leave, and each service already settles it when it opens (the vault sweeps
//! files and secrets no record names, the indexes follow the chain from where they stopped).
//! Every other file (genomic files, registered apps, the block journal) is copied as it is.
//!
//! Left out: the consensus engine's write-ahead log (`wal/consensus.wal`), which is written as
//! the engine votes and cannot be copied consistently; a restored validator starts without it
//! and syncs the heights decided since the backup. Keys live outside the data directory; the
//! CLI adds them, encrypted, when asked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use medledger_crypto::{Hash, Sha256Stream};
use medledger_types::Height;
use medledger_vault::Vault;
use serde::Serialize;

use crate::{Node, NodeError, lock};

/// Where backups are made, inside the data directory (and never themselves backed up).
pub const BACKUPS_DIR: &str = "backups";
/// The engine's write-ahead log, left out of backups.
pub const WAL_FILE: &str = "wal/consensus.wal";

/// A store a backup copies under its own lock.
#[derive(Debug)]
pub(crate) enum Source {
    Redb {
        file: PathBuf,
        db: Weak<redb::Database>,
    },
    Vault {
        dir: PathBuf,
        vault: Weak<Vault>,
    },
}

/// One file of a backup.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BackupFile {
    /// Relative to the data directory.
    pub path: String,
    pub bytes: u64,
    pub sha256: Hash,
}

/// What a backup holds: its manifest, also written as `manifest.json` beside the files.
#[derive(Clone, Debug, Serialize)]
pub struct Backup {
    /// Where the copy is: `<data dir>/backups/<name>`, holding `manifest.json` and `data/`.
    pub dir: PathBuf,
    pub chain_id: String,
    pub genesis_hash: Hash,
    /// The chain's head in the copied store.
    pub height: Height,
    /// The node's public key.
    pub node_key: medledger_crypto::PublicKey,
    pub files: Vec<BackupFile>,
}

fn io_error(what: &str, path: &Path, error: impl std::fmt::Display) -> NodeError {
    NodeError::Stopped(format!("backup: {what} {}: {error}", path.display()))
}

impl Node {
    /// Registers a redb database (the file `file`) for backups; the node keeps only a weak
    /// reference, so the database still closes when its owner drops it.
    pub fn register_database(&self, file: &Path, db: &Arc<redb::Database>) {
        lock(&self.inner.backup_sources).push(Source::Redb {
            file: file.to_path_buf(),
            db: Arc::downgrade(db),
        });
    }

    /// Registers the records vault in `dir` for backups.
    pub fn register_vault(&self, dir: &Path, vault: &Arc<Vault>) {
        lock(&self.inner.backup_sources).push(Source::Vault {
            dir: dir.to_path_buf(),
            vault: Arc::downgrade(vault),
        });
    }

    /// Copies the data directory, consistently, into a new directory under
    /// `<data dir>/backups/` (see the module's notes), and writes its manifest with every file's
    /// size and SHA-256.
    pub fn backup(&self) -> Result<Backup, NodeError> {
        // One at a time; a copy an earlier backup left (its CLI died before removing it) holds
        // key slots erasures have since destroyed, so it goes now.
        let _one = lock(&self.inner.backing_up);
        sweep(&self.data_dir().join(BACKUPS_DIR));
        let height = self.status()?.height;
        let mut name = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut name);
        let dir = self
            .data_dir()
            .join(BACKUPS_DIR)
            .join(format!("backup-{height}-{}", hex::encode(name)));
        let made = self.backup_into(&dir);
        if made.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        made
    }

    fn backup_into(&self, dir: &Path) -> Result<Backup, NodeError> {
        let dir = dir.to_path_buf();
        let data_dir = self.data_dir().to_path_buf();
        let into = dir.join("data");
        std::fs::create_dir_all(&into).map_err(|error| io_error("creating", &into, error))?;
        let mut copied: BTreeSet<PathBuf> = BTreeSet::new();
        // The chain first: every store copied after it is at least as new.
        let ledger = data_dir.join("ledger.redb");
        let height = self
            .inner
            .store
            .copy_to(&into.join("ledger.redb"))
            .map_err(NodeError::from)?;
        copied.insert(ledger);
        let sources: Vec<_> = lock(&self.inner.backup_sources)
            .iter()
            .map(|source| match source {
                Source::Redb { file, db } => (file.clone(), Some(db.clone()), None),
                Source::Vault { dir, vault } => (dir.clone(), None, Some(vault.clone())),
            })
            .collect();
        for (path, db, vault) in sources {
            let relative = path
                .strip_prefix(&data_dir)
                .map_err(|_| io_error("outside the data directory:", &path, "registered"))?;
            let target = into.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|error| io_error("creating", parent, error))?;
            }
            if let Some(db) = db.and_then(|db| db.upgrade()) {
                let txn = db
                    .begin_write()
                    .map_err(|error| io_error("locking", &path, error))?;
                std::fs::copy(&path, &target).map_err(|error| io_error("copying", &path, error))?;
                txn.abort()
                    .map_err(|error| io_error("releasing", &path, error))?;
                copied.insert(path);
            } else if let Some(vault) = vault.and_then(|vault| vault.upgrade()) {
                let names = vault
                    .copy_to(&target)
                    .map_err(|error| io_error("copying the vault in", &path, error))?;
                copied.extend(names.iter().map(|name| path.join(name)));
            }
        }
        copy_rest(&data_dir, &data_dir, &into, &copied)?;
        let mut files = Vec::new();
        list(&into, &into, &mut files)?;
        let backup = Backup {
            dir,
            chain_id: self.genesis().chain_id.clone(),
            genesis_hash: self.genesis().hash(),
            height,
            node_key: self.key(),
            files,
        };
        let manifest = serde_json::to_vec_pretty(&backup).map_err(|error| {
            NodeError::Stopped(format!("backup: writing the manifest: {error}"))
        })?;
        let path = backup.dir.join("manifest.json");
        std::fs::write(&path, manifest).map_err(|error| io_error("writing", &path, error))?;
        Ok(backup)
    }
}

/// Removes the backup copies under `backups` (left by a backup whose CLI never collected it).
pub fn sweep(backups: &Path) {
    if let Ok(entries) = std::fs::read_dir(backups) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_name().to_string_lossy().starts_with("backup-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Copies every file under `from` that is not in `copied`, not a backup and not the engine's
/// write-ahead log, into the same place under `into`, keeping permissions.
fn copy_rest(
    data_dir: &Path,
    from: &Path,
    into: &Path,
    copied: &BTreeSet<PathBuf>,
) -> Result<(), NodeError> {
    let entries = std::fs::read_dir(from).map_err(|error| io_error("reading", from, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| io_error("reading", from, error))?;
        let path = entry.path();
        let relative = path.strip_prefix(data_dir).unwrap_or(&path);
        if relative == Path::new(BACKUPS_DIR) || relative == Path::new(WAL_FILE) {
            continue;
        }
        let kind = entry
            .file_type()
            .map_err(|error| io_error("reading", &path, error))?;
        let target = into.join(relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|error| io_error("creating", &target, error))?;
            let mode = entry
                .metadata()
                .map_err(|error| io_error("reading", &path, error))?
                .permissions();
            std::fs::set_permissions(&target, mode)
                .map_err(|error| io_error("setting the mode of", &target, error))?;
            copy_rest(data_dir, &path, into, copied)?;
        } else if kind.is_file() && !copied.contains(&path) {
            if path
                .extension()
                .is_some_and(|extension| extension == "redb")
            {
                tracing::warn!(file = %path.display(), "backup: a database no service registered is copied as it is");
            }
            match std::fs::copy(&path, &target) {
                Ok(_) => {}
                // A file removed between listing and copying (a swept draft) is not needed.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("copying", &path, error)),
            }
        }
    }
    Ok(())
}

/// Every file under `dir`, relative to `root`, with its size and SHA-256, in path order.
pub fn list(root: &Path, dir: &Path, files: &mut Vec<BackupFile>) -> Result<(), NodeError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|error| io_error("reading", dir, error))?
        .collect::<Result<_, _>>()
        .map_err(|error| io_error("reading", dir, error))?;
    entries.sort_by_key(|entry| entry.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            list(root, &path, files)?;
            continue;
        }
        let mut file =
            std::fs::File::open(&path).map_err(|error| io_error("reading", &path, error))?;
        let mut hasher = Sha256Stream::default();
        let mut bytes = 0u64;
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let read = std::io::Read::read(&mut file, &mut buffer)
                .map_err(|error| io_error("reading", &path, error))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            bytes += read as u64;
        }
        files.push(BackupFile {
            path: path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned(),
            bytes,
            sha256: hasher.finish(),
        });
    }
    Ok(())
}
