//! Block production on a single validator: take transactions from the mempool, execute them,
//! certify the block, and make it durable, one block at a time.
//!
//! Blocks are cut as soon as the previous one is durable, so under load a block holds whatever
//! arrived during the previous fsync (group commit), and when idle a lone transaction commits at
//! once. No empty blocks are made.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use medledger_ledger::Block;
use medledger_state::{MemoryTree, Overlay, Snapshot, apply_writes};
use medledger_storage::{BlockCommit, Store, StoreReader};
use medledger_types::{CommitCertificate, Genesis};

use crate::mempool::PooledTx;
use crate::{Node, NodeError, lock};

/// Writes genesis into an empty store; leaves an initialised one alone.
pub(crate) fn init_genesis(store: &Store, genesis: &Genesis) -> Result<(), NodeError> {
    let reader = store.reader()?;
    match reader.genesis() {
        Ok(_) => return Ok(()),
        Err(medledger_storage::StoreError::NoGenesis) => {}
        Err(error) => return Err(error.into()),
    }
    let empty = MemoryTree::default();
    let base = Snapshot {
        reader: &empty,
        version: None,
    };
    let mut overlay = Overlay::new(&base);
    medledger_ledger::apply_genesis(genesis, &mut overlay)?;
    let (_, batch) = apply_writes(&empty, 0, &overlay.into_writes())?;
    store.init_genesis(genesis, batch)?;
    Ok(())
}

/// The producer loop; returns when the node stops or a commit fails.
pub(crate) fn run(node: &Node) {
    let inner = &node.inner;
    loop {
        let reader = match inner.store.reader() {
            Ok(reader) => reader,
            Err(error) => return fail(node, error.into()),
        };
        let (taken, stale) = {
            let mut pool = lock(&inner.mempool);
            while pool.is_empty() && !inner.stopping.load(Ordering::SeqCst) {
                pool = inner
                    .wake
                    .wait_timeout(pool, Duration::from_millis(500))
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
            if inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            let head = match reader.head() {
                Ok(head) => head,
                Err(error) => return fail(node, error.into()),
            };
            let state = Snapshot {
                reader: &reader,
                version: Some(head),
            };
            match pool.take(inner.block_txs_max, |sender| {
                medledger_ledger::next_nonce(&state, sender)
            }) {
                Ok(taken) => taken,
                Err(error) => return fail(node, error.into()),
            }
        };
        node.reject_stale(stale);
        if taken.is_empty() {
            inner.rounds.send_modify(|round| *round += 1);
            continue;
        }
        let ids: Vec<_> = taken.iter().map(|pooled| pooled.id).collect();
        let produced = produce(node, &reader, taken);
        // Only now, with each receipt or rejection recorded, may the ids stop reading as pending.
        lock(&inner.mempool).finish(ids);
        match produced {
            Ok(Some(height)) => {
                inner.head.send_replace(height);
            }
            Ok(None) => {}
            Err(error) => return fail(node, error),
        }
        inner.rounds.send_modify(|round| *round += 1);
        inner
            .metrics
            .mempool_txs
            .set(lock(&inner.mempool).len() as i64);
    }
}

fn fail(node: &Node, error: NodeError) {
    tracing::error!(%error, "block production stopped");
    *lock(&node.inner.failure) = Some(error.to_string());
}

/// Builds, certifies and commits one block; returns its height, or `None` if no candidate applied.
fn produce(
    node: &Node,
    reader: &StoreReader,
    candidates: Vec<PooledTx>,
) -> Result<Option<u64>, NodeError> {
    let inner = &node.inner;
    #[allow(clippy::disallowed_methods)] // Shell: measures commit time for metrics only.
    let started = Instant::now();
    // The proposer's clock enters the chain here and only here; `build_block` moves it forward.
    #[allow(clippy::disallowed_methods)] // Shell: the proposer's clock becomes the block's time.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    let built = node.build_block(reader, candidates, now_ms)?;
    let Block { header, txs, .. } = built.block;
    if txs.is_empty() {
        return Ok(None);
    }
    let height = header.height;
    let built_in = started.elapsed();
    let certificate =
        CommitCertificate::sign(&header.chain_id, height, 0, header.hash(), &[&inner.key]);
    // Pair the assertion: what we store must verify the way a reader will check it.
    debug_assert!(certificate.verify(&header, &built.validators).is_ok());
    inner.store.commit_block(BlockCommit {
        header: &header,
        txs: &txs,
        receipts: &built.executed.receipts,
        certificate: &certificate,
        last_commit: None,
        tree: built.executed.tree,
    })?;
    let metrics = &inner.metrics;
    metrics.blocks_committed.inc();
    metrics.head_height.set(height as i64);
    metrics.block_txs.observe(txs.len() as f64);
    metrics
        .block_seconds
        .observe(started.elapsed().as_secs_f64());
    node.outcome_metrics(&built.executed.receipts);
    tracing::debug!(
        height,
        txs = txs.len(),
        build_ms = built_in.as_millis() as u64,
        store_ms = (started.elapsed() - built_in).as_millis() as u64,
        "committed block"
    );
    Ok(Some(height))
}
