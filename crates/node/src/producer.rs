//! Block production on a single validator: take transactions from the mempool, execute them,
//! certify the block, and make it durable.
//!
//! Blocks are cut as soon as the previous one is sealed, so under load a block holds whatever
//! arrived during the previous one (group commit), and when idle a lone transaction commits at
//! once. No empty blocks are made.
//!
//! Two threads form a pipeline of depth one: the producer executes and hashes block H+1, reading
//! through block H's new state (`replica::Tip`), while the writer makes H durable. The hand-over
//! is a rendezvous, so the producer gives the writer H+1 only once H is on disk, and at most one
//! block is ever sealed but not durable. Crash safety is unchanged: a transaction leaves the
//! mempool's in-flight set, and so reads as committed, only after its block's fsync; a crash
//! loses at most the block being written, whose transactions no one was told about.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use medledger_crypto::Hash;
use medledger_ledger::Block;
use medledger_state::{MemoryTree, Overlay, Snapshot, apply_writes};
use medledger_storage::{BlockCommit, Store};
use medledger_types::{CommitCertificate, Genesis};

use crate::mempool::PooledTx;
use crate::replica::{Sealed, Tip};
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

/// A sealed block handed to the writer, with what it needs to settle the mempool afterwards.
struct ToWrite {
    sealed: Arc<Sealed>,
    /// Every transaction taken for the block, applied or refused: in flight until it is durable.
    ids: Vec<Hash>,
    started: Instant,
}

/// The producer loop; returns when the node stops or a commit fails, once the block being
/// written is durable.
pub(crate) fn run(node: &Node) {
    let (to_writer, from_producer) = std::sync::mpsc::sync_channel::<ToWrite>(0);
    let writer_node = node.clone();
    let writer = match std::thread::Builder::new()
        .name("block-writer".into())
        .spawn(move || write_blocks(&writer_node, from_producer))
    {
        Ok(writer) => writer,
        Err(error) => {
            return fail(
                node,
                NodeError::Stopped(format!("cannot start the block writer: {error}")),
            );
        }
    };
    produce_blocks(node, to_writer);
    // The sender is gone: the writer finishes the block in hand and returns.
    let _ = writer.join();
}

fn produce_blocks(node: &Node, to_writer: SyncSender<ToWrite>) {
    let inner = &node.inner;
    // The last block handed to the writer; read through until the store holds it.
    let mut sealed: Option<Arc<Sealed>> = None;
    loop {
        let reader = match inner.store.reader() {
            Ok(reader) => reader,
            Err(error) => return fail(node, error.into()),
        };
        let durable = match reader.head() {
            Ok(head) => head,
            Err(error) => return fail(node, error.into()),
        };
        if sealed
            .as_ref()
            .is_some_and(|sealed| sealed.header.height <= durable)
        {
            sealed = None;
        }
        let tip = Tip {
            reader: &reader,
            sealed: sealed.as_deref(),
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
            let height = match tip.height() {
                Ok(height) => height,
                Err(error) => return fail(node, error),
            };
            let tree = tip.tree();
            let state = Snapshot {
                reader: &tree,
                version: Some(height),
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
        match seal(node, &tip, taken) {
            Ok(Some((block, started))) => {
                let block = Arc::new(block);
                let handed = to_writer.send(ToWrite {
                    sealed: block.clone(),
                    ids,
                    started,
                });
                if handed.is_err() {
                    // The writer stopped on a failed commit and recorded why.
                    return;
                }
                sealed = Some(block);
            }
            Ok(None) => {
                // Every candidate was refused and recorded as such: nothing is in flight.
                lock(&inner.mempool).finish(ids);
                inner.rounds.send_modify(|round| *round += 1);
            }
            Err(error) => return fail(node, error),
        }
    }
}

/// Makes each sealed block durable, then lets its transactions read as committed.
fn write_blocks(node: &Node, from_producer: Receiver<ToWrite>) {
    let inner = &node.inner;
    while let Ok(ToWrite {
        sealed,
        ids,
        started,
    }) = from_producer.recv()
    {
        let committed = inner.store.commit_block(BlockCommit {
            header: &sealed.header,
            txs: &sealed.txs,
            receipts: &sealed.receipts,
            certificate: &sealed.certificate,
            last_commit: None,
            tree: &sealed.tree,
        });
        // Only now, with each receipt or rejection recorded, may the ids stop reading as pending.
        lock(&inner.mempool).finish(ids);
        if let Err(error) = committed {
            return fail(node, error.into());
        }
        let height = sealed.header.height;
        inner.head.send_replace(height);
        inner.rounds.send_modify(|round| *round += 1);
        node.committed_metrics(height, &sealed.receipts, started);
        tracing::debug!(
            height,
            txs = sealed.txs.len(),
            total_ms = started.elapsed().as_millis() as u64,
            "committed block"
        );
    }
}

fn fail(node: &Node, error: NodeError) {
    tracing::error!(%error, "block production stopped");
    *lock(&node.inner.failure) = Some(error.to_string());
}

/// Builds and certifies the next block on `tip`; `None` if no candidate applied.
fn seal(
    node: &Node,
    tip: &Tip<'_>,
    candidates: Vec<PooledTx>,
) -> Result<Option<(Sealed, Instant)>, NodeError> {
    let inner = &node.inner;
    #[allow(clippy::disallowed_methods)] // Shell: measures commit time for metrics only.
    let started = Instant::now();
    // The proposer's clock enters the chain here and only here; `build_block` moves it forward.
    #[allow(clippy::disallowed_methods)] // Shell: the proposer's clock becomes the block's time.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    let built = node.build_block(tip, candidates, now_ms)?;
    let Block { header, txs, .. } = built.block;
    if txs.is_empty() {
        return Ok(None);
    }
    let certificate = CommitCertificate::sign(
        &header.chain_id,
        header.height,
        0,
        header.hash(),
        &[&inner.key],
    );
    // Pair the assertion: what we store must verify the way a reader will check it.
    debug_assert!(certificate.verify(&header, &built.validators).is_ok());
    tracing::trace!(
        height = header.height,
        build_ms = started.elapsed().as_millis() as u64,
        "sealed block"
    );
    Ok(Some((
        Sealed {
            header,
            certificate,
            txs,
            receipts: built.executed.receipts,
            tree: built.executed.tree,
        },
        started,
    )))
}
