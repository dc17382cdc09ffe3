//! Splitting a block into proposal parts and putting received parts back together.
//!
//! A stream is `Init` (height, round, block hash and the proposer's signature over them), the
//! block's encoding in `Data` chunks, then `Fin`. Parts may arrive in any order and through any
//! peer; they are grouped by the publishing peer and stream id.
//!
//! **Invariant:** memory held by unfinished streams is bounded: at most `STREAMS_MAX` streams, each
//! at most `medledger_types::BLOCK_BYTES_MAX` bytes and `PARTS_MAX` parts.

use std::collections::BTreeMap;

use malachitebft_app_channel::app::types::core::Round;
use malachitebft_app_channel::app::types::streaming::{StreamId, StreamMessage};
use malachitebft_engine::util::streaming::StreamContent;
use medledger_crypto::SecretKey;
use medledger_ledger::Block;
use medledger_types::BLOCK_BYTES_MAX;

use crate::context::{Address, Height, ProposalPart, StreamInit};

/// The size of one `Data` part.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Streams being assembled at once; the oldest is dropped beyond this.
pub const STREAMS_MAX: usize = 64;
/// Parts in one stream: enough for the largest block in chunks, plus `Init` and `Fin`.
pub const PARTS_MAX: u64 = (BLOCK_BYTES_MAX / CHUNK_BYTES) as u64 + 4;

/// The parts of a block, ready to publish in order.
pub fn split(
    chain_id: &str,
    key: &SecretKey,
    block: &Block,
    round: Round,
    pol_round: Round,
) -> Vec<StreamMessage<ProposalPart>> {
    let height = Height(block.header.height);
    let block_hash = block.hash();
    let signature = key.sign(&StreamInit::sign_bytes(
        chain_id,
        height,
        round,
        &block_hash,
    ));
    let stream_id = stream_id(height, round);
    let mut parts = vec![ProposalPart::Init(StreamInit {
        height,
        round,
        pol_round,
        proposer: Address(key.public_key()),
        block_hash,
        signature,
    })];
    let bytes = block.to_bytes();
    parts.extend(
        bytes
            .chunks(CHUNK_BYTES)
            .map(|chunk| ProposalPart::Data(chunk.to_vec())),
    );
    parts.push(ProposalPart::Fin);
    let mut messages: Vec<StreamMessage<ProposalPart>> = parts
        .into_iter()
        .enumerate()
        .map(|(sequence, part)| {
            StreamMessage::new(
                stream_id.clone(),
                sequence as u64,
                StreamContent::Data(part),
            )
        })
        .collect();
    let fin = messages.len() as u64;
    messages.push(StreamMessage::new(stream_id, fin, StreamContent::Fin));
    messages
}

fn stream_id(height: Height, round: Round) -> StreamId {
    let mut bytes = height.0.to_be_bytes().to_vec();
    bytes.extend(round.as_i64().to_be_bytes());
    StreamId::new(bytes.into())
}

/// A stream whose parts have all arrived.
#[derive(Debug)]
pub struct Assembled {
    pub init: StreamInit,
    /// The concatenated `Data` parts: the block's encoding, not yet decoded or checked.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Partial {
    init: Option<StreamInit>,
    parts: BTreeMap<u64, ProposalPart>,
    /// The sequence number of the closing `StreamContent::Fin`.
    end: Option<u64>,
    bytes: usize,
}

/// Streams in progress, keyed by (publisher, stream id).
#[derive(Debug, Default)]
pub struct Streams {
    partial: BTreeMap<(Vec<u8>, Vec<u8>), (u64, Partial)>,
    arrivals: u64,
}

impl Streams {
    /// Adds one part; returns the stream once it is complete. Malformed or oversized streams are
    /// dropped whole.
    pub fn insert(
        &mut self,
        publisher: Vec<u8>,
        message: StreamMessage<ProposalPart>,
    ) -> Option<Assembled> {
        if message.sequence >= PARTS_MAX {
            return None;
        }
        let key = (publisher, message.stream_id.to_bytes().to_vec());
        self.arrivals += 1;
        if !self.partial.contains_key(&key) && self.partial.len() >= STREAMS_MAX {
            let oldest = self
                .partial
                .iter()
                .min_by_key(|(_, (arrival, _))| *arrival)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.partial.remove(&oldest);
            }
        }
        let (_, partial) = self
            .partial
            .entry(key.clone())
            .or_insert_with(|| (self.arrivals, Partial::default()));
        match message.content {
            StreamContent::Fin => partial.end = Some(message.sequence),
            StreamContent::Data(part) => {
                if let ProposalPart::Data(chunk) = &part {
                    partial.bytes += chunk.len();
                }
                if let ProposalPart::Init(init) = &part {
                    if message.sequence != 0 {
                        self.partial.remove(&key);
                        return None;
                    }
                    partial.init = Some(init.clone());
                }
                partial.parts.insert(message.sequence, part);
            }
        }
        if partial.bytes > BLOCK_BYTES_MAX {
            self.partial.remove(&key);
            return None;
        }
        let end = partial.end?;
        partial.init.as_ref()?;
        // Complete when every sequence number before the end has arrived and the last one is
        // the `Fin` part.
        if partial.parts.len() as u64 != end
            || partial.parts.keys().next_back() != Some(&(end - 1))
            || !matches!(partial.parts.get(&(end - 1)), Some(ProposalPart::Fin))
        {
            return None;
        }
        let (_, partial) = self.partial.remove(&key)?;
        let mut bytes = Vec::with_capacity(partial.bytes);
        for part in partial.parts.values() {
            if let ProposalPart::Data(chunk) = part {
                bytes.extend_from_slice(chunk);
            }
        }
        Some(Assembled {
            init: partial.init?,
            bytes,
        })
    }

    /// Forgets streams for heights below `height`.
    pub fn prune_below(&mut self, height: Height) {
        self.partial.retain(|_, (_, partial)| {
            partial
                .init
                .as_ref()
                .is_none_or(|init| init.height >= height)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_crypto::Hash;
    use medledger_types::Header;

    fn block(txs_padding: usize) -> Block {
        let key = SecretKey::from_seed(3);
        Block {
            header: Header {
                chain_id: "test".into(),
                height: 5,
                time_ms: 1,
                prev_hash: Hash::ZERO,
                last_commit_hash: Hash::ZERO,
                txs_root: Hash::ZERO,
                receipts_root: Hash::ZERO,
                state_root: Hash::ZERO,
                validators_hash: Hash::ZERO,
                proposer: key.public_key(),
            },
            txs: Vec::new(),
            last_commit: (txs_padding > 0).then(|| medledger_types::CommitCertificate {
                height: 4,
                round: 0,
                block_hash: Hash::ZERO,
                signatures: vec![
                    medledger_types::CommitSignature {
                        validator: key.public_key(),
                        signature: medledger_crypto::Signature([7; 64]),
                    };
                    txs_padding
                ],
            }),
        }
    }

    /// A block split into parts comes back byte for byte, whatever order the parts arrive in.
    #[test]
    fn reassembles_in_any_order() {
        let key = SecretKey::from_seed(3);
        let block = block(4000); // ~400 KB: more than one chunk.
        let mut parts = split("test", &key, &block, Round::new(1), Round::Nil);
        assert!(parts.len() > 4);
        parts.reverse();
        let mut streams = Streams::default();
        let mut done = None;
        for part in parts {
            assert!(done.is_none(), "completed before the last part");
            done = streams.insert(b"peer".to_vec(), part);
        }
        let done = done.expect("complete");
        assert_eq!(done.init.block_hash, block.hash());
        assert_eq!(Block::from_bytes(&done.bytes).expect("decodes"), block);
    }

    /// A stream missing a part never completes, and a stream with `Init` out of place is dropped.
    #[test]
    fn incomplete_or_malformed_streams_never_complete() {
        let key = SecretKey::from_seed(3);
        let parts = split("test", &key, &block(4000), Round::new(0), Round::Nil);
        let mut streams = Streams::default();
        for (index, part) in parts.iter().cloned().enumerate() {
            if index == 1 {
                continue;
            }
            assert!(streams.insert(b"peer".to_vec(), part).is_none());
        }
        let mut moved = parts[0].clone();
        moved.sequence = 2;
        let mut streams = Streams::default();
        assert!(streams.insert(b"peer".to_vec(), moved).is_none());
        assert!(streams.partial.is_empty());
    }
}
