//! The simulated network's messages and the run's event queue on a virtual clock.
//!
//! Events are kept in a `BTreeMap` keyed by (virtual time, sequence number), so two events due at
//! the same millisecond run in the order they were scheduled, on every run of the same seed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use malachitebft_core_consensus::{LivenessMsg, SignedConsensusMsg};
use malachitebft_core_types::{ExtendedCommitCertificate, Round, Timeout};
use medledger_consensus::context::LedgerContext;
use medledger_ledger::{Block, Tx};

/// What validators send each other. Consensus and liveness messages are the engine's own; the
/// rest stand in for what the real node does beside the engine.
#[derive(Clone, Debug)]
pub enum Message {
    Consensus(SignedConsensusMsg<LedgerContext>),
    Liveness(LivenessMsg<LedgerContext>),
    /// A proposed block, which the real node streams as proposal parts. The receiver checks that
    /// the sender is the round's proposer (the real network authenticates senders by key).
    Block {
        block: Arc<Block>,
        round: Round,
        pol_round: Round,
    },
    /// The sender's committed height, sent periodically, so a validator that fell behind learns
    /// whom to ask.
    Status {
        tip: u64,
    },
    /// Asks for the decided block at `height` with its certificate.
    SyncRequest {
        height: u64,
    },
    /// A decided block and its certificate, as the host serves them to the engine's sync.
    SyncResponse {
        value_bytes: Bytes,
        certificate: ExtendedCommitCertificate<LedgerContext>,
    },
    /// Client transactions one validator took in, for the others' mempools (the adapter's
    /// mempool gossip).
    Txs(Vec<Tx>),
}

impl Message {
    /// A short name for the message counts in the trace.
    pub fn kind(&self) -> usize {
        match self {
            Message::Consensus(SignedConsensusMsg::Proposal(_)) => 0,
            Message::Consensus(SignedConsensusMsg::Vote(_)) => 1,
            Message::Liveness(_) => 2,
            Message::Block { .. } => 3,
            Message::Status { .. } => 4,
            Message::SyncRequest { .. } => 5,
            Message::SyncResponse { .. } => 6,
            Message::Txs(_) => 7,
        }
    }
}

/// How many message kinds [`Message::kind`] distinguishes.
pub const MESSAGE_KINDS: usize = 8;

/// Something due at a virtual time.
#[derive(Debug)]
pub enum Event {
    Deliver {
        from: usize,
        to: usize,
        message: Message,
    },
    Timer {
        node: usize,
        timeout: Timeout,
        id: u64,
    },
    /// The application builds the block a validator was asked to propose, or waits again.
    BuildValue {
        node: usize,
        height: u64,
        round: Round,
        timeout: Duration,
    },
    /// The application starts the height it moved to in the engine, or waits again.
    StartHeight {
        node: usize,
        height: u64,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    /// Every validator tells the others its committed height.
    StatusTick,
    /// Clients submit transactions.
    SubmitTick,
}

/// Events ordered by (virtual time, sequence).
#[derive(Debug, Default)]
pub struct Queue {
    events: BTreeMap<(u64, u64), Event>,
    sequence: u64,
}

impl Queue {
    pub fn push(&mut self, at_ms: u64, event: Event) {
        self.sequence += 1;
        self.events.insert((at_ms, self.sequence), event);
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        self.events
            .pop_first()
            .map(|((at_ms, _), event)| (at_ms, event))
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events come out by time, and in scheduling order within one millisecond.
    #[test]
    fn queue_orders_by_time_then_sequence() {
        let mut queue = Queue::default();
        queue.push(5, Event::Restart { node: 1 });
        queue.push(3, Event::Restart { node: 2 });
        queue.push(5, Event::Restart { node: 3 });
        let order: Vec<(u64, usize)> = std::iter::from_fn(|| queue.pop())
            .map(|(at, event)| match event {
                Event::Restart { node } => (at, node),
                _ => (at, usize::MAX),
            })
            .collect();
        assert_eq!(order, vec![(3, 2), (5, 1), (5, 3)]);
        assert!(queue.is_empty());
    }
}
