//! The full audit behind `medledger verify`: replay the chain from genesis and check every hash,
//! signature, certificate, receipt and state root, then compare the state on disk with the replay.
//!
//! The replay builds the state in memory, so it needs memory in proportion to the state's history.

use medledger_crypto::Hash;
use medledger_ledger::{BlockContext, ParentLink, check_execution, check_header, execute_block};
use medledger_state::{MemoryTree, Overlay, Snapshot, apply_writes, root_at};
use medledger_storage::{Store, StoreError};
use medledger_types::Height;

/// The first thing found wrong, with the height it was found at.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("block {height}: {reason}")]
    Block { height: Height, reason: String },
    #[error("state at height {height}: {reason}")]
    State { height: Height, reason: String },
    #[error("genesis: {0}")]
    Genesis(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuditError {
    /// The height at which the store first differs from a valid chain.
    pub fn height(&self) -> Option<Height> {
        match self {
            AuditError::Block { height, .. } | AuditError::State { height, .. } => Some(*height),
            AuditError::Genesis(_) => Some(0),
            AuditError::Store(_) => None,
        }
    }
}

/// What a clean audit covered.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditReport {
    pub chain_id: String,
    /// The height the audit started from: 0 (genesis), or the certified snapshot this node was
    /// restored from.
    pub from_height: Height,
    pub height: Height,
    pub txs: u64,
    pub signatures: u64,
    pub state_values: u64,
    pub head_hash: Hash,
    pub state_root: Hash,
}

/// Re-checks the whole store. `progress` is called after each block with (height, head).
pub fn audit_store(
    store: &Store,
    mut progress: impl FnMut(Height, Height),
) -> Result<AuditReport, AuditError> {
    let reader = store.reader()?;
    let genesis = reader
        .genesis()
        .map_err(|error| AuditError::Genesis(error.to_string()))?;
    medledger_ledger::check_genesis(&genesis)
        .map_err(|error| AuditError::Genesis(error.to_string()))?;
    let head = reader.head()?;
    let base = reader.base()?;

    let mut tree = MemoryTree::default();
    let mut prev_hash = genesis.hash();
    let mut prev_time = genesis.genesis_time_ms;
    let mut prev_certificate_hash = Hash::ZERO;
    if base == 0 {
        let empty = Snapshot {
            reader: &tree,
            version: None,
        };
        let mut overlay = Overlay::new(&empty);
        medledger_ledger::apply_genesis(&genesis, &mut overlay)
            .map_err(|error| AuditError::Genesis(error.to_string()))?;
        let writes = overlay.into_writes();
        let (root, batch) = apply_writes(&tree, 0, &writes)
            .map_err(|error| AuditError::Genesis(error.to_string()))?;
        tree.apply(batch);
        let stored = root_at(&reader, 0).map_err(|error| AuditError::State {
            height: 0,
            reason: error.to_string(),
        })?;
        if stored != root {
            return Err(AuditError::State {
                height: 0,
                reason: format!("genesis state root on disk is {stored}, replay gives {root}"),
            });
        }
    } else {
        // A store restored from a snapshot: its base header is certified from genesis by the
        // snapshot's proof, and the state it holds at the base must rebuild, leaf by leaf, to
        // the root that header certifies. The replay starts there.
        let bad = |reason: String| AuditError::State {
            height: base,
            reason,
        };
        let (header, certificate) = crate::verified_header(&reader, &genesis, base)
            .map_err(|error| bad(error.to_string()))?;
        let mut restore = medledger_state::snapshot::SnapshotRestore::new(base, header.state_root)
            .map_err(|error| bad(error.to_string()))?;
        medledger_state::snapshot::chunk_leaves(
            std::sync::Arc::new(store.reader()?),
            base,
            medledger_state::snapshot::SNAPSHOT_CHUNK_LEAVES_MAX,
            |chunk| restore.add(&chunk),
        )
        .map_err(|error| bad(format!("the snapshot's state: {error}")))?;
        let batch = restore
            .finish()
            .map_err(|error| bad(format!("the snapshot's state: {error}")))?;
        tree.apply_nodes(&batch);
        prev_hash = header.hash();
        prev_time = header.time_ms;
        prev_certificate_hash = certificate.hash();
    }

    let (mut tx_count, mut signatures) = (0u64, 0u64);
    let mut head_hash = prev_hash;
    let mut state_root = root_at(&tree, base).map_err(|error| AuditError::State {
        height: base,
        reason: error.to_string(),
    })?;
    for height in base + 1..=head {
        let bad = |reason: String| AuditError::Block { height, reason };
        let header = reader
            .header(height)
            .map_err(|error| bad(error.to_string()))?
            .ok_or_else(|| bad("header is missing".into()))?;
        let certificate = reader
            .certificate(height)
            .map_err(|error| bad(error.to_string()))?
            .ok_or_else(|| bad("certificate is missing".into()))?;
        let txs = reader.txs(height).map_err(|error| bad(error.to_string()))?;
        let previous_state = Snapshot {
            reader: &tree,
            version: Some(height - 1),
        };
        let validators = medledger_ledger::validators(&previous_state)
            .map_err(|error| bad(error.to_string()))?;
        let parent = ParentLink {
            height: height - 1,
            hash: prev_hash,
            time_ms: prev_time,
            certificate_hash: prev_certificate_hash,
        };
        check_header(&header, &genesis.chain_id, &parent, &validators).map_err(bad)?;
        certificate
            .verify(&header, &validators)
            .map_err(|error| bad(format!("certificate: {error}")))?;
        signatures += certificate.signatures.len() as u64;
        if reader.height_of(&header.hash())? != Some(height) {
            return Err(bad("block hash index does not point at this block".into()));
        }

        if let Some(index) = medledger_types::verify_tx_signatures(&txs).first() {
            return Err(bad(format!(
                "signature of transaction {index} does not verify"
            )));
        }
        signatures += txs.len() as u64;

        let ctx = BlockContext {
            chain_id: header.chain_id.clone(),
            height,
            time_ms: header.time_ms,
            proposer: header.proposer,
        };
        let mut overlay = Overlay::new(&previous_state);
        let execution =
            execute_block(&mut overlay, &ctx, &txs).map_err(|error| bad(error.to_string()))?;
        let writes = overlay.into_writes();
        check_execution(&header, &execution).map_err(bad)?;
        let stored = reader
            .receipts(height)
            .map_err(|error| bad(error.to_string()))?;
        if stored.len() != execution.receipts.len() {
            return Err(bad(format!(
                "the block stores {} receipts for {} transactions",
                stored.len(),
                execution.receipts.len()
            )));
        }
        for ((index, tx), (stored, replayed)) in (0u32..)
            .zip(&txs)
            .zip(stored.iter().zip(&execution.receipts))
        {
            if stored != replayed {
                return Err(bad(format!(
                    "stored receipt of transaction {} differs from the replay",
                    tx.id()
                )));
            }
            if reader.tx_location(&tx.id())? != Some((height, index)) {
                return Err(bad(format!(
                    "the index does not point transaction {} at its place",
                    tx.id()
                )));
            }
        }
        let (root, batch) =
            apply_writes(&tree, height, &writes).map_err(|error| bad(error.to_string()))?;
        tree.apply(batch);
        if root != header.state_root {
            return Err(AuditError::State {
                height,
                reason: format!(
                    "replay gives state root {root}, the header says {}",
                    header.state_root
                ),
            });
        }
        let stored = root_at(&reader, height).map_err(|error| AuditError::State {
            height,
            reason: error.to_string(),
        })?;
        if stored != root {
            return Err(AuditError::State {
                height,
                reason: format!("state root on disk is {stored}, replay gives {root}"),
            });
        }
        tx_count += txs.len() as u64;
        prev_hash = header.hash();
        prev_time = header.time_ms;
        prev_certificate_hash = certificate.hash();
        head_hash = prev_hash;
        state_root = root;
        progress(height, head);
    }

    // Every value and tree node on disk must be the replay's, at the same version: a flipped byte
    // in an entry that no root check reaches would otherwise go unnoticed.
    let mut first_bad: Option<(Height, String)> = None;
    let mut note = |version: Height, reason: String| {
        if first_bad
            .as_ref()
            .is_none_or(|(height, _)| version < *height)
        {
            first_bad = Some((version, reason));
        }
    };
    let mut state_values = 0u64;
    reader.for_each_value(|key_hash, version, value| {
        state_values += 1;
        if tree.exact_value(key_hash, version) != Some(&value) {
            note(
                version,
                format!(
                    "stored value for key hash {} differs from the replay",
                    Hash(key_hash.0)
                ),
            );
        }
        Ok(())
    })?;
    let mut nodes = 0usize;
    reader.for_each_node(|key, node| {
        nodes += 1;
        if tree.node(&key) != Some(&node) {
            note(
                key.version(),
                "a stored state tree node differs from the replay".into(),
            );
        }
        Ok(())
    })?;
    if state_values as usize != tree.values_count() || nodes != tree.nodes_count() {
        note(
            head,
            "the state store holds a different number of entries than the replay".into(),
        );
    }
    if let Some((height, reason)) = first_bad {
        return Err(AuditError::State { height, reason });
    }
    Ok(AuditReport {
        chain_id: genesis.chain_id,
        from_height: base,
        height: head,
        txs: tx_count,
        signatures,
        state_values,
        head_hash,
        state_root,
    })
}
