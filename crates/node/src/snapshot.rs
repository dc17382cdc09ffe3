//! State snapshots and state sync: how a new node starts from a certified state instead of
//! replaying the chain from genesis.
//!
//! A node exports a snapshot of its state at its head ([`Node::export_snapshot`]) into
//! `<data>/snapshots/<height>/`: the tree's leaves in chunks (`medledger_state::snapshot`), each
//! hashed in the manifest, and the manifest bound to the certified header of that height by a
//! light proof of the validator set under it (which a new node checks against genesis alone).
//! Full nodes fetch manifests and chunks from validators' APIs; [`state_sync`] verifies the
//! manifest, checks each chunk's hash and its range proof against the certified state root as it
//! arrives, keeps verified chunks on disk so a crash resumes where it stopped, checks the
//! finished tree's root, and initialises the store at that height in one durable transaction.
//! The node then follows the chain from the next height.
//!
//! **Invariant:** a store restored from a snapshot holds exactly the state the certified header
//! commits to, and nothing below its base height.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use medledger_crypto::{Hash, sha256};
use medledger_ledger::KEY_VALIDATORS;
use medledger_ledger::light::LightProof;
use medledger_state::snapshot::{SnapshotChunk, SnapshotRestore, chunk_leaves};
use medledger_storage::{Store, StoreReader};
use medledger_types::{Genesis, Height};
use serde::{Deserialize, Serialize};

use crate::{Node, NodeError};

/// Where snapshots are kept, inside the data directory.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Where a state sync keeps the chunks it verified, inside the data directory.
pub const STATESYNC_DIR: &str = "statesync";
/// The manifest's format.
pub const MANIFEST_FORMAT: &str = "medledger-snapshot/1";
/// Leaves per chunk by default (about a megabyte of anchors).
pub const CHUNK_LEAVES_DEFAULT: usize = 10_000;
/// The most chunks a manifest may list.
pub const SNAPSHOT_CHUNKS_MAX: usize = 1_000_000;
/// How many snapshots a node keeps; older ones are deleted as new ones are made.
pub const SNAPSHOTS_KEPT: usize = 2;
/// How many times a chunk no source served is asked for again, and the pause (times the
/// attempt) before each.
const CHUNK_ATTEMPTS_MAX: u32 = 4;
const CHUNK_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// One chunk as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub sha256: Hash,
    pub leaves: u64,
    pub bytes: u64,
}

/// What a snapshot holds, and the proof that binds it to a certified header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub format: String,
    pub chain_id: String,
    pub height: Height,
    /// The certified state root at `height`: the root the chunks rebuild.
    pub state_root: Hash,
    pub leaves: u64,
    pub chunks: Vec<ChunkInfo>,
    /// The validator set's entry at `height`, proven under the certified header: checking it
    /// against genesis certifies the header, hence `state_root`.
    pub proof: LightProof,
}

impl SnapshotManifest {
    /// Checks the manifest against genesis: the chain, the certified header, the root it names,
    /// and its bounds. Says nothing yet of the chunks, which are checked as they arrive.
    pub fn verify(&self, genesis: &Genesis) -> Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!("format {:?}, not {MANIFEST_FORMAT}", self.format));
        }
        if self.chain_id != genesis.chain_id {
            return Err(format!("a snapshot of chain {:?}", self.chain_id));
        }
        let LightProof::State { header, proof, .. } = &self.proof else {
            return Err("the proof is not of a state entry".into());
        };
        if proof.key != KEY_VALIDATORS {
            return Err("the proof is not of the validator set".into());
        }
        if header.height != self.height || header.state_root != self.state_root {
            return Err("the proof certifies another height or root".into());
        }
        if self.height == 0 {
            return Err("a snapshot of genesis is genesis itself".into());
        }
        self.proof
            .verify(genesis)
            .map_err(|error| format!("the proof does not certify the header: {error}"))?;
        if self.chunks.is_empty() || self.chunks.len() > SNAPSHOT_CHUNKS_MAX {
            return Err(format!("{} chunks", self.chunks.len()));
        }
        let leaves: u64 = self.chunks.iter().map(|chunk| chunk.leaves).sum();
        if leaves != self.leaves {
            return Err("the chunks' leaves do not add up".into());
        }
        Ok(())
    }
}

fn io_error(what: &str, path: &Path, error: impl std::fmt::Display) -> NodeError {
    NodeError::Stopped(format!("snapshot: {what} {}: {error}", path.display()))
}

fn chunk_file(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("chunk-{index:06}.bin"))
}

/// Writes `bytes` to `path` durably: a temporary file renamed into place, so a crash leaves
/// the whole file or none.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    use std::io::Write;
    let temporary = path.with_extension("partial");
    let mut file = std::fs::File::create(&temporary)
        .map_err(|error| io_error("creating", &temporary, error))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| io_error("writing", &temporary, error))?;
    std::fs::rename(&temporary, path).map_err(|error| io_error("renaming", path, error))
}

/// The proof a restored store keeps of its base header.
pub(crate) fn stored_proof(reader: &StoreReader) -> Result<LightProof, NodeError> {
    let bytes = reader
        .snapshot_proof()?
        .ok_or_else(|| NodeError::Tampered {
            height: reader.base().unwrap_or(0),
            reason: "the store starts from a snapshot but keeps no proof of it".into(),
        })?;
    serde_json::from_slice(&bytes).map_err(|error| NodeError::Tampered {
        height: reader.base().unwrap_or(0),
        reason: format!("the snapshot's proof does not decode: {error}"),
    })
}

/// The validator set that decided a restored store's base height: the one the snapshot's proof
/// walks to from genesis.
pub(crate) fn validators_at_base(
    reader: &StoreReader,
    genesis: &Genesis,
) -> Result<medledger_types::ValidatorSet, NodeError> {
    let base = reader.base()?;
    let trail = match stored_proof(reader)? {
        LightProof::State {
            validator_trail, ..
        }
        | LightProof::Tx {
            validator_trail, ..
        } => validator_trail,
    };
    medledger_ledger::light::walk_trail(genesis, &trail, base).map_err(|error| {
        NodeError::Tampered {
            height: base,
            reason: format!("the snapshot's proof: {error}"),
        }
    })
}

impl Node {
    /// The first height whose state this node holds (0 unless it started from a snapshot).
    pub fn base_height(&self) -> Result<Height, NodeError> {
        Ok(self.inner.store.reader()?.base()?)
    }

    /// Exports a snapshot of the state at the head into `<data>/snapshots/<height>/`, chunks of
    /// `chunk_leaves` leaves; keeps the newest [`SNAPSHOTS_KEPT`]. Returns its manifest.
    pub fn export_snapshot(
        &self,
        chunk_leaves_count: usize,
    ) -> Result<SnapshotManifest, NodeError> {
        let _one = crate::lock(&self.inner.exporting);
        let reader = self.inner.store.reader()?;
        let height = reader.head()?;
        if height == 0 || height <= reader.base()? {
            return Err(NodeError::Stopped(
                "snapshot: no block committed here yet to snapshot".into(),
            ));
        }
        let proof = self
            .state(KEY_VALIDATORS, Some(height))?
            .ok_or_else(|| NodeError::Stopped("snapshot: the head vanished".into()))?;
        let state_root = proof.header().state_root;
        let root = self.data_dir().join(SNAPSHOTS_DIR);
        let dir = root.join(height.to_string());
        let building = root.join(format!("{height}.building"));
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building)
            .map_err(|error| io_error("creating", &building, error))?;
        let mut chunks = Vec::new();
        let leaves = chunk_leaves(Arc::new(reader), height, chunk_leaves_count, |chunk| {
            let bytes = chunk.to_bytes();
            let path = chunk_file(&building, chunks.len());
            write_durably(&path, &bytes)
                .map_err(|error| medledger_state::StateError::Store(error.to_string()))?;
            chunks.push(ChunkInfo {
                sha256: sha256(&bytes),
                leaves: chunk.leaves.len() as u64,
                bytes: bytes.len() as u64,
            });
            Ok(())
        })?;
        let manifest = SnapshotManifest {
            format: MANIFEST_FORMAT.into(),
            chain_id: self.genesis().chain_id.clone(),
            height,
            state_root,
            leaves,
            chunks,
            proof,
        };
        let text = serde_json::to_vec_pretty(&manifest)
            .map_err(|error| NodeError::Stopped(format!("snapshot manifest: {error}")))?;
        write_durably(&building.join("manifest.json"), &text)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&building, &dir).map_err(|error| io_error("renaming", &dir, error))?;
        // Keep the newest few.
        let mut heights = self.snapshot_heights()?;
        heights.sort_unstable_by(|a, b| b.cmp(a));
        for old in heights.into_iter().skip(SNAPSHOTS_KEPT) {
            let _ = std::fs::remove_dir_all(root.join(old.to_string()));
        }
        tracing::info!(
            height,
            leaves,
            chunks = manifest.chunks.len(),
            "snapshot exported"
        );
        Ok(manifest)
    }

    /// The heights of the snapshots this node holds.
    pub fn snapshot_heights(&self) -> Result<Vec<Height>, NodeError> {
        let root = self.data_dir().join(SNAPSHOTS_DIR);
        let Ok(entries) = std::fs::read_dir(&root) else {
            return Ok(Vec::new());
        };
        let mut heights: Vec<Height> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .filter(|height: &Height| root.join(height.to_string()).join("manifest.json").exists())
            .collect();
        heights.sort_unstable();
        Ok(heights)
    }

    /// The manifest of the snapshot at `height`, if this node holds it.
    pub fn snapshot_manifest(&self, height: Height) -> Result<Option<Vec<u8>>, NodeError> {
        let path = self
            .data_dir()
            .join(SNAPSHOTS_DIR)
            .join(height.to_string())
            .join("manifest.json");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error("reading", &path, error)),
        }
    }

    /// Chunk `index` of the snapshot at `height`, if this node holds it.
    pub fn snapshot_chunk(
        &self,
        height: Height,
        index: usize,
    ) -> Result<Option<Vec<u8>>, NodeError> {
        let path = chunk_file(
            &self.data_dir().join(SNAPSHOTS_DIR).join(height.to_string()),
            index,
        );
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io_error("reading", &path, error)),
        }
    }
}

/// Where a new node gets snapshots: the validators' APIs.
pub trait SnapshotSource {
    /// The heights of the snapshots the sources offer.
    fn heights(&mut self) -> Result<Vec<Height>, String>;
    /// The manifest of the snapshot at `height`.
    fn manifest(&mut self, height: Height) -> Result<SnapshotManifest, String>;
    /// Chunk `index` of the snapshot at `height`.
    fn chunk(&mut self, height: Height, index: usize) -> Result<Vec<u8>, String>;
    /// The last chunk's source sent one that does not verify: use another.
    fn fault(&mut self, reason: &str);
}

/// What a state sync did.
#[derive(Clone, Debug, Serialize)]
pub struct Synced {
    pub height: Height,
    pub state_root: Hash,
    pub leaves: u64,
    pub chunks: usize,
    /// Chunks fetched in this run (the rest were on disk from an earlier, interrupted one).
    pub chunks_fetched: usize,
    /// Bytes fetched in this run: the manifest and the chunks.
    pub bytes_fetched: u64,
}

/// Why a state sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("this node's store already holds a chain; state sync starts an empty one")]
    NotEmpty,
    #[error("no snapshot: {0}")]
    NoSnapshot(String),
    #[error("the snapshot's manifest does not verify: {0}")]
    BadManifest(String),
    #[error("chunk {index}: {reason}")]
    Chunk { index: usize, reason: String },
    #[error("stopped after {0} chunks, as asked")]
    Interrupted(usize),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// Restores the newest snapshot (or the one at `height`) from `source` into the empty store in
/// `data_dir`, resuming from the verified chunks an interrupted run left there. With
/// `stop_after`, stops (as a crash would) once that many chunks were fetched in this run.
pub fn state_sync(
    data_dir: &Path,
    genesis: &Genesis,
    source: &mut dyn SnapshotSource,
    height: Option<Height>,
    stop_after: Option<usize>,
) -> Result<Synced, SyncError> {
    std::fs::create_dir_all(data_dir).map_err(|error| io_error("creating", data_dir, error))?;
    let store = Store::open(&data_dir.join("ledger.redb")).map_err(NodeError::from)?;
    if store.reader().map_err(NodeError::from)?.genesis().is_ok() {
        return Err(SyncError::NotEmpty);
    }
    let height = match height {
        Some(height) => height,
        None => source
            .heights()
            .map_err(SyncError::NoSnapshot)?
            .into_iter()
            .max()
            .ok_or_else(|| SyncError::NoSnapshot("the sources hold none".into()))?,
    };
    let manifest = source.manifest(height).map_err(SyncError::NoSnapshot)?;
    manifest.verify(genesis).map_err(SyncError::BadManifest)?;
    if manifest.height != height {
        return Err(SyncError::BadManifest(format!(
            "asked for height {height}, got {}",
            manifest.height
        )));
    }
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|error| SyncError::BadManifest(error.to_string()))?;
    // Resume only what was fetched for this very manifest.
    let dir = data_dir.join(STATESYNC_DIR).join(height.to_string());
    let kept = dir.join("manifest.json");
    if std::fs::read(&kept).ok().as_deref() != Some(manifest_bytes.as_slice()) {
        let _ = std::fs::remove_dir_all(data_dir.join(STATESYNC_DIR));
        std::fs::create_dir_all(&dir).map_err(|error| io_error("creating", &dir, error))?;
        write_durably(&kept, &manifest_bytes)?;
    }
    let mut bytes_fetched = manifest_bytes.len() as u64;
    let mut chunks_fetched = 0;
    let mut restore = SnapshotRestore::new(height, manifest.state_root)
        .map_err(|error| SyncError::BadManifest(error.to_string()))?;
    let mut index = 0;
    let mut faults = 0;
    while index < manifest.chunks.len() {
        let expected = &manifest.chunks[index];
        let path = chunk_file(&dir, index);
        let on_disk = std::fs::read(&path)
            .ok()
            .filter(|bytes| sha256(bytes) == expected.sha256);
        let (bytes, fetched) = match on_disk {
            Some(bytes) => (bytes, false),
            None => {
                if stop_after.is_some_and(|limit| chunks_fetched >= limit) {
                    return Err(SyncError::Interrupted(chunks_fetched));
                }
                // A source busy or rate-limiting this node is asked again after a pause.
                let mut attempt = 0;
                let bytes = loop {
                    match source.chunk(height, index) {
                        Ok(bytes) => break bytes,
                        Err(reason) if attempt >= CHUNK_ATTEMPTS_MAX => {
                            return Err(SyncError::Chunk { index, reason });
                        }
                        Err(reason) => {
                            attempt += 1;
                            tracing::warn!(index, %reason, attempt, "fetching a snapshot chunk failed; retrying");
                            std::thread::sleep(CHUNK_RETRY * attempt);
                        }
                    }
                };
                (bytes, true)
            }
        };
        let verdict = if sha256(&bytes) != expected.sha256 {
            Err("its hash is not the manifest's".to_string())
        } else {
            SnapshotChunk::from_bytes(&bytes)
                .and_then(|chunk| restore.add(&chunk))
                .map_err(|error| error.to_string())
        };
        match verdict {
            Ok(()) => {
                if fetched {
                    write_durably(&path, &bytes)?;
                    chunks_fetched += 1;
                    bytes_fetched += bytes.len() as u64;
                }
                index += 1;
            }
            Err(reason) => {
                // A chunk that fails leaves the restore unusable: drop it, tell the source,
                // and start again from the first chunk (the verified ones are on disk).
                let _ = std::fs::remove_file(&path);
                faults += 1;
                if faults > 8 {
                    return Err(SyncError::Chunk { index, reason });
                }
                tracing::warn!(index, %reason, "a snapshot chunk does not verify; fetching it elsewhere");
                source.fault(&reason);
                restore = SnapshotRestore::new(height, manifest.state_root)
                    .map_err(|error| SyncError::BadManifest(error.to_string()))?;
                index = 0;
            }
        }
    }
    let batch = restore.finish().map_err(|error| SyncError::Chunk {
        index: manifest.chunks.len(),
        reason: error.to_string(),
    })?;
    let LightProof::State {
        header,
        certificate,
        ..
    } = &manifest.proof
    else {
        return Err(SyncError::BadManifest("not a state proof".into()));
    };
    let proof_json = serde_json::to_vec(&manifest.proof)
        .map_err(|error| SyncError::BadManifest(error.to_string()))?;
    store
        .init_from_snapshot(genesis, header, certificate, &batch, &proof_json)
        .map_err(NodeError::from)?;
    let _ = std::fs::remove_dir_all(data_dir.join(STATESYNC_DIR));
    Ok(Synced {
        height,
        state_root: manifest.state_root,
        leaves: manifest.leaves,
        chunks: manifest.chunks.len(),
        chunks_fetched,
        bytes_fetched,
    })
}
