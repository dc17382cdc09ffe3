//! Mempool gossip: each transaction a client submits to one validator reaches the mempools of
//! all the others, so whichever validator proposes next can include it.
//!
//! Malachite 0.8.2's network carries consensus messages, proposal parts and sync, and has no
//! topic for application data. Transactions therefore travel on the proposal-part topic as a
//! [`ProposalPart::Txs`] message of their own stream, which the application loop hands to the
//! intake below instead of to block reassembly. They share the validators' authenticated,
//! encrypted transport (Noise with the validator keys; only listed validators may connect).
//!
//! Validators are fully connected, so a transaction is sent once, by the validator a client gave
//! it to, and never relayed. Each receiver admits it with every mempool check (signature, sender,
//! nonce, duplicates, capacity).
//!
//! **Invariant:** gossip holds bounded memory: at most `GOSSIP_BATCHES_MAX` outgoing batches (in
//! the node) and `INTAKE_BATCHES_MAX` incoming ones, each at most `GOSSIP_MESSAGE_BYTES_MAX`
//! bytes. What does not fit is dropped and counted; the transaction still reaches a block through
//! the validator that took it in.

use bytes::Bytes;
use malachitebft_app_channel::NetworkMsg;
use malachitebft_app_channel::app::types::streaming::{StreamId, StreamMessage};
use malachitebft_engine::util::streaming::StreamContent;
use medledger_ledger::Tx;
use medledger_node::Node;
use tokio::sync::mpsc;

use crate::context::{LedgerContext, ProposalPart};

/// The most transaction bytes in one gossip message; well under the transport's 4 MiB.
pub const GOSSIP_MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// The most transactions in one gossip message.
pub const GOSSIP_MESSAGE_TXS_MAX: usize = 8192;
/// Received batches waiting to be admitted.
pub const INTAKE_BATCHES_MAX: usize = 256;

/// Stream ids of gossip messages start with this, so they never collide with a block's
/// (height, round) stream id, which is 16 bytes.
const STREAM_PREFIX: &[u8] = b"medledger/txs/";

/// The task that sends this node's client transactions to the other validators; it stops when
/// dropped.
#[derive(Debug)]
pub struct Outbound(tokio::task::JoinHandle<()>);

impl Drop for Outbound {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts sending the node's client transactions to the other validators. `None` if the node
/// has no gossip queue (it is not driven by consensus, or the queue was already taken).
pub fn spawn_outbound(
    node: &Node,
    network: mpsc::Sender<NetworkMsg<LedgerContext>>,
) -> Option<Outbound> {
    let mut outbox = node.take_gossip()?;
    Some(Outbound(tokio::spawn(async move {
        let mut sequence = 0u64;
        while let Some(first) = outbox.recv().await {
            // Coalesce what has queued up meanwhile, so a busy node sends few large messages.
            let mut txs = first;
            while txs.len() < GOSSIP_MESSAGE_TXS_MAX {
                match outbox.try_recv() {
                    Ok(more) => txs.extend(more),
                    Err(_) => break,
                }
            }
            for message in messages(&txs) {
                sequence += 1;
                if network
                    .send(NetworkMsg::PublishProposalPart(stream_message(
                        sequence, message,
                    )))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })))
}

/// Splits transactions into gossip messages within the size and count bounds.
fn messages(txs: &[Tx]) -> Vec<Vec<Vec<u8>>> {
    let mut messages = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    for tx in txs {
        let encoded = tx.to_bytes();
        if !current.is_empty()
            && (bytes + encoded.len() > GOSSIP_MESSAGE_BYTES_MAX
                || current.len() >= GOSSIP_MESSAGE_TXS_MAX)
        {
            messages.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += encoded.len();
        current.push(encoded);
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
}

fn stream_message(sequence: u64, txs: Vec<Vec<u8>>) -> StreamMessage<ProposalPart> {
    let mut id = STREAM_PREFIX.to_vec();
    id.extend(sequence.to_be_bytes());
    StreamMessage::new(
        StreamId::new(Bytes::from(id)),
        0,
        StreamContent::Data(ProposalPart::Txs(txs)),
    )
}

/// Admits transactions gossiped by other validators, off the engine's loop.
#[derive(Debug, Clone)]
pub struct Intake {
    batches: mpsc::Sender<Vec<Vec<u8>>>,
}

impl Intake {
    pub fn spawn(node: Node) -> Intake {
        let (batches, mut receiver) = mpsc::channel::<Vec<Vec<u8>>>(INTAKE_BATCHES_MAX);
        tokio::spawn(async move {
            while let Some(batch) = receiver.recv().await {
                let node = node.clone();
                let admitted = tokio::task::spawn_blocking(move || admit(&node, batch)).await;
                if admitted.is_err() {
                    return;
                }
            }
        });
        Intake { batches }
    }

    /// Queues a received batch; drops it if the intake is full or the batch is over the bounds.
    pub fn offer(&self, txs: Vec<Vec<u8>>) {
        let bytes: usize = txs.iter().map(Vec::len).sum();
        if txs.len() > GOSSIP_MESSAGE_TXS_MAX || bytes > GOSSIP_MESSAGE_BYTES_MAX {
            tracing::warn!(
                txs = txs.len(),
                bytes,
                "dropping an oversized transaction gossip message"
            );
            return;
        }
        if self.batches.try_send(txs).is_err() {
            tracing::debug!("transaction gossip intake is full; dropping a batch");
        }
    }
}

fn admit(node: &Node, batch: Vec<Vec<u8>>) {
    let count = batch.len();
    let txs: Vec<Tx> = batch
        .iter()
        .filter_map(|bytes| Tx::from_bytes(bytes).ok())
        .collect();
    // One line per batch, not per transaction: a faulty peer must not be able to flood the log.
    if txs.len() < count {
        tracing::warn!(
            dropped = count - txs.len(),
            "dropping undecodable gossiped transactions"
        );
    }
    node.submit_gossiped(txs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_crypto::SecretKey;
    use medledger_ledger::{CoreOp, TxBody};

    fn tx(nonce: u64, data: usize) -> Tx {
        let key = SecretKey::from_seed(7);
        TxBody {
            chain_id: "test".into(),
            sender: key.public_key(),
            nonce,
            payload: CoreOp::Anchor {
                id: medledger_crypto::sha256(&vec![1; data]),
                commitment: medledger_crypto::sha256(&nonce.to_be_bytes()),
            }
            .into(),
        }
        .sign(&key)
    }

    /// Gossip messages keep every transaction, in order, and respect both bounds.
    #[test]
    fn messages_are_bounded_and_lose_nothing() {
        let txs: Vec<Tx> = (1..=GOSSIP_MESSAGE_TXS_MAX as u64 * 2 + 5)
            .map(|nonce| tx(nonce, 1))
            .collect();
        let split = messages(&txs);
        assert_eq!(split.len(), 3);
        assert!(split.iter().all(|m| m.len() <= GOSSIP_MESSAGE_TXS_MAX));
        assert!(
            split
                .iter()
                .all(|m| m.iter().map(Vec::len).sum::<usize>() <= GOSSIP_MESSAGE_BYTES_MAX)
        );
        let back: Vec<Tx> = split
            .iter()
            .flatten()
            .map(|bytes| Tx::from_bytes(bytes).expect("decodes"))
            .collect();
        assert_eq!(back, txs);
        assert!(messages(&[]).is_empty());
    }

    /// A gossip stream id can never be mistaken for a block's (height, round) stream id.
    #[test]
    fn gossip_stream_ids_are_distinct_from_block_streams() {
        let message = stream_message(1, vec![]);
        assert!(message.stream_id.to_bytes().starts_with(STREAM_PREFIX));
        assert_ne!(message.stream_id.to_bytes().len(), 16);
    }
}
