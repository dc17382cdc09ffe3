//! The application side of Malachite: answers every message the engine sends, using the node to
//! build, check and commit blocks.
//!
//! Block execution runs on tokio's blocking pool so the engine's actors never wait on it.
//!
//! **Invariant:** consensus only ever receives a `Valid` verdict for a block that the node has
//! executed against its head and whose header roots all matched.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, HeightParams, LinearTimeouts, Round, Validity, VoteExtensions,
};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{LocallyProposedValue, ProposedValue};
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg, NetworkRequest};
use malachitebft_engine::host::{Next, SyncedValueOutcome};
use malachitebft_engine::network::{Multiaddr, PersistentPeersOp};
use malachitebft_engine::util::streaming::StreamContent;
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::Block;
use medledger_node::{InvalidBlock, Node};
use tokio::sync::watch;

use crate::certificate::{to_engine, to_ledger};
use crate::context::{
    Address, BlockId, Height, LedgerContext, ProposalPart, ValidatorSet, proposer,
};
use crate::gossip::{self, Intake};
use crate::journal::Journal;
use crate::stream::{self, Streams};

/// How far ahead of this node a kept proposal may be.
const FUTURE_HEIGHTS_MAX: u64 = 2;
/// How many proposals are kept per future height (a few rounds' worth).
const FUTURE_BLOCKS_MAX: usize = 8;

/// The most heights served to a syncing peer in one reply.
pub const SYNC_BATCH_MAX: u64 = 64;
/// The most block bytes served to a syncing peer in one reply.
pub const SYNC_REPLY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// What the application loop needs besides the node.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub chain_id: String,
    pub key: SecretKey,
    pub timeouts: LinearTimeouts,
    /// How long a proposer with an empty mempool waits for a transaction before proposing an
    /// empty block. Bounds both idle block production and the latency of a lone transaction.
    pub empty_block_wait: Duration,
    /// Where the other consortium nodes listen, by validator key. Only those in the validator
    /// set of the current height may connect (see [`State::admit_validators`]).
    pub address_book: Vec<(PublicKey, Multiaddr)>,
    /// The keys the engine was started with as its persistent peers.
    pub admitted: BTreeSet<PublicKey>,
    /// Undecided blocks this validator proposed or found valid, on disk.
    pub journal: Journal,
}

/// How a block reached this node: streamed by a proposer (the engine may vote for it), or by
/// value sync with its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Proposal,
    Sync,
}

/// A block this node holds for an undecided height: its own proposal, a peer's, or a synced one.
#[derive(Debug)]
struct Candidate {
    block: Arc<Block>,
    proposed: ProposedValue<LedgerContext>,
}

struct State {
    node: Node,
    config: AppConfig,
    streams: Streams,
    /// Complete blocks for the current and future heights, by hash.
    candidates: BTreeMap<Hash, Candidate>,
    /// The block this node proposed at the current height, reused in later rounds.
    own_proposal: Option<Arc<Block>>,
    height: Height,
    /// Complete blocks for heights this node has not reached yet.
    future: BTreeMap<Height, Vec<(crate::context::StreamInit, Block)>>,
    /// The highest height any peer claims, for catch-up progress.
    progress: watch::Sender<CatchUp>,
    /// The peers the network currently accepts: the address book's validators of this height.
    admitted: BTreeSet<PublicKey>,
    /// Blocks read back from the journal at start: what the engine's WAL replay may decide or
    /// ask to re-propose.
    journalled: BTreeMap<Hash, Arc<Block>>,
}

/// How far this node is behind the network, as the engine reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    pub height: u64,
    pub target: u64,
}

fn now_ms() -> u64 {
    #[allow(clippy::disallowed_methods)] // Shell: the proposer's clock becomes the block's time.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

impl State {
    /// The engine's parameters for `height`, and the ledger's validator set behind them.
    fn params(
        &self,
        height: Height,
    ) -> Result<(HeightParams<LedgerContext>, medledger_types::ValidatorSet), InvalidBlock> {
        let validators = self.node.validators_for(height.0)?;
        let params = HeightParams::new(
            ValidatorSet::from_ledger(&validators),
            self.config.timeouts,
            None,
        );
        Ok((params, validators))
    }

    /// Runs a blocking node call off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Node) -> T + Send + 'static,
    ) -> T {
        let node = self.node.clone();
        match tokio::task::spawn_blocking(move || call(&node)).await {
            Ok(result) => result,
            // A panic in the call is a bug; carry it to this task.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Checks a complete block against the head and records the verdict.
    async fn judge(
        &mut self,
        block: Block,
        round: Round,
        valid_round: Round,
        proposer: Address,
        origin: Origin,
    ) -> ProposedValue<LedgerContext> {
        let hash = block.hash();
        let block = Arc::new(block);
        let checked = block.clone();
        // A proposal is durable before the engine may vote for it (see `journal`). A synced block
        // comes with its certificate and no vote of this node's, and sync fetches it again after
        // a crash, so catch-up pays no fsync per height.
        let journal = (origin == Origin::Proposal).then(|| self.config.journal.clone());
        let verdict = self
            .blocking(move |node| {
                node.validate(&checked, now_ms())?;
                match journal {
                    Some(journal) => journal
                        .save(&checked)
                        .map_err(|error| InvalidBlock::Invalid(format!("journalling it: {error}"))),
                    None => Ok(()),
                }
            })
            .await;
        let validity = match verdict {
            Ok(()) => Validity::Valid,
            Err(error) => {
                tracing::warn!(height = block.header.height, %error, "refusing a proposed block");
                Validity::Invalid
            }
        };
        let proposed = ProposedValue {
            height: Height(block.header.height),
            round,
            valid_round,
            proposer,
            value: BlockId(hash),
            validity,
        };
        self.candidates.insert(
            hash,
            Candidate {
                block,
                proposed: proposed.clone(),
            },
        );
        proposed
    }

    /// Decodes and checks a completed stream: the signature on its `Init`, that its sender is
    /// the proposer of that round, and that the bytes are the block the `Init` names.
    fn open_stream(&self, assembled: stream::Assembled) -> Option<(stream::Assembled, Block)> {
        let init = &assembled.init;
        let message = crate::context::StreamInit::sign_bytes(
            &self.config.chain_id,
            init.height,
            init.round,
            &init.block_hash,
        );
        if init.proposer.0.verify(&message, &init.signature).is_err() {
            tracing::warn!(
                height = init.height.0,
                "dropping a proposal stream with a bad signature"
            );
            return None;
        }
        let block = match Block::from_bytes(&assembled.bytes) {
            Ok(block) => block,
            Err(error) => {
                tracing::warn!(height = init.height.0, %error, "dropping an undecodable proposal");
                return None;
            }
        };
        // A fresh proposal is the proposer's own block. A re-proposal (with a proof-of-lock
        // round) carries a block some earlier round's proposer built, which the new proposer
        // found valid and is locked on; consensus, not the header, vouches for it then.
        let fresh = init.pol_round == Round::Nil;
        if block.hash() != init.block_hash
            || block.header.height != init.height.0
            || (fresh && block.header.proposer != init.proposer.0)
        {
            tracing::warn!(
                height = init.height.0,
                "dropping a proposal whose block does not match its stream"
            );
            return None;
        }
        Some((assembled, block))
    }

    fn expected_proposer(&self, height: Height, round: Round) -> Option<Address> {
        let validators = self.node.validators_for(height.0).ok()?;
        let set = ValidatorSet::from_ledger(&validators);
        Some(proposer(&set, height, round).address)
    }

    async fn publish(
        &self,
        channels: &Channels<LedgerContext>,
        block: &Block,
        round: Round,
        pol_round: Round,
    ) {
        for part in stream::split(
            &self.config.chain_id,
            &self.config.key,
            block,
            round,
            pol_round,
        ) {
            if channels
                .network
                .send(NetworkMsg::PublishProposalPart(part))
                .await
                .is_err()
            {
                tracing::warn!("network stopped while publishing a proposal");
                return;
            }
        }
    }

    async fn build(&mut self, height: Height, timeout: Duration) -> Option<Arc<Block>> {
        if let Some(block) = &self.own_proposal
            && block.header.height == height.0
        {
            return Some(block.clone());
        }
        // After a restart, propose what this validator proposed before the crash, never a
        // second block for the same height.
        let own = self.config.key.public_key();
        if let Some(block) = self
            .journalled
            .values()
            .find(|block| block.header.height == height.0 && block.header.proposer == own)
        {
            let block = block.clone();
            self.own_proposal = Some(block.clone());
            return Some(block);
        }
        // Wait a little for transactions rather than fill the chain with empty blocks, but leave
        // most of the engine's allowance for building and streaming.
        let wait = self.config.empty_block_wait.min(timeout / 2);
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(5);
        while waited < wait && !self.node.has_pending_txs() {
            tokio::time::sleep(step).await;
            waited += step;
        }
        let journal = self.config.journal.clone();
        let built = self
            .blocking(move |node| {
                let block = node.propose(now_ms())?;
                journal.save(&block).map_err(|error| {
                    medledger_node::NodeError::Stopped(format!("journalling a proposal: {error}"))
                })?;
                Ok::<_, medledger_node::NodeError>(block)
            })
            .await;
        match built {
            Ok(block) => {
                let block = Arc::new(block);
                self.own_proposal = Some(block.clone());
                Some(block)
            }
            Err(error) => {
                tracing::error!(height = height.0, %error, "cannot build a proposal");
                None
            }
        }
    }

    fn decided_values(&self, range: RangeInclusive<Height>) -> Vec<RawDecidedValue<LedgerContext>> {
        let (start, end) = (range.start().0, range.end().0);
        let end = end.min(start.saturating_add(SYNC_BATCH_MAX - 1));
        let mut values = Vec::new();
        let mut bytes_total = 0usize;
        for height in start..=end {
            match self.node.decided_block(height) {
                Ok(Some((bytes, certificate))) => {
                    bytes_total += bytes.len();
                    if bytes_total > SYNC_REPLY_BYTES_MAX && !values.is_empty() {
                        break;
                    }
                    let certificate =
                        ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                            to_engine(&certificate),
                            VoteExtensions::new(Vec::new()),
                        );
                    values.push(RawDecidedValue::new(Bytes::from(bytes), certificate));
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(height, %error, "cannot serve a decided block");
                    break;
                }
            }
        }
        values
    }

    fn keep_future(&mut self, init: crate::context::StreamInit, block: Block) {
        if init.height.0 > self.height.0 + FUTURE_HEIGHTS_MAX {
            return;
        }
        let kept = self.future.entry(init.height).or_default();
        if kept.len() < FUTURE_BLOCKS_MAX {
            kept.push((init, block));
        }
    }

    /// Judges the blocks that arrived before this node reached `height`.
    async fn judge_future(&mut self, height: Height) {
        let Some(kept) = self.future.remove(&height) else {
            return;
        };
        for (init, block) in kept {
            if self.expected_proposer(init.height, init.round) == Some(init.proposer) {
                self.judge(
                    block,
                    init.round,
                    init.pol_round,
                    init.proposer,
                    Origin::Proposal,
                )
                .await;
            }
        }
    }

    fn start_height(&mut self, height: Height) {
        self.future.retain(|kept, _| *kept >= height);
        self.journalled
            .retain(|_, block| block.header.height >= height.0);
        if let Err(error) = self.config.journal.prune_below(height.0) {
            tracing::warn!(%error, "cannot prune the block journal");
        }
        self.height = height;
        self.own_proposal = None;
        self.candidates
            .retain(|_, candidate| candidate.proposed.height >= height);
        self.streams.prune_below(height);
        self.report_progress(|progress| {
            progress.height = height.0.saturating_sub(1);
            progress.target = progress.target.max(progress.height);
        });
    }

    /// Makes the network accept exactly the address book's members of `validators`: a key
    /// added by governance may connect from the height it joins, and a removed one is cut off.
    fn admit_validators(
        &mut self,
        channels: &Channels<LedgerContext>,
        validators: &medledger_types::ValidatorSet,
    ) {
        let own = self.config.key.public_key();
        for (key, address) in &self.config.address_book {
            let wanted = *key != own && validators.get(key).is_some();
            let op = match (wanted, self.admitted.contains(key)) {
                (true, false) => {
                    self.admitted.insert(*key);
                    PersistentPeersOp::Add(address.clone())
                }
                (false, true) => {
                    self.admitted.remove(key);
                    PersistentPeersOp::Remove(address.clone())
                }
                _ => continue,
            };
            tracing::info!(peer = %key, ?op, "validator set changed; updating the peers allowed to connect");
            let (reply, answer) = tokio::sync::oneshot::channel();
            let request = NetworkRequest::UpdatePersistentPeers(op, reply);
            if channels.net_requests.try_send(request).is_err() {
                tracing::error!(peer = %key, "cannot reach the network to update its peers");
                continue;
            }
            tokio::spawn(async move {
                if let Ok(Err(error)) = answer.await {
                    tracing::warn!(%error, "updating the network's peers failed");
                }
            });
        }
    }

    /// A block this validator holds for an undecided height, from this run or the journal.
    fn held(&self, hash: &Hash) -> Option<Arc<Block>> {
        self.candidates
            .get(hash)
            .map(|candidate| candidate.block.clone())
            .or_else(|| self.journalled.get(hash).cloned())
    }

    /// Updates catch-up progress, for the CLI's bar and for the metrics.
    fn report_progress(&self, modify: impl FnOnce(&mut CatchUp)) {
        self.progress.send_modify(modify);
        let progress = *self.progress.borrow();
        let metrics = self.node.metrics();
        metrics.sync_target_height.set(progress.target as i64);
        metrics
            .sync_behind_heights
            .set(progress.target.saturating_sub(progress.height) as i64);
    }
}

/// Answers the engine until it stops. Returns an error only when this node can no longer follow
/// the chain (its store failed).
pub async fn run(
    node: Node,
    config: AppConfig,
    mut channels: Channels<LedgerContext>,
    progress: watch::Sender<CatchUp>,
) -> Result<(), Error> {
    let mut state = State {
        height: Height(0),
        node,
        config,
        streams: Streams::default(),
        future: BTreeMap::new(),
        candidates: BTreeMap::new(),
        own_proposal: None,
        progress,
        admitted: BTreeSet::new(),
        journalled: BTreeMap::new(),
    };
    state.admitted = state.config.admitted.clone();
    let from = state.node.next_height()?;
    for block in state
        .config
        .journal
        .load_from(from)
        .map_err(Error::Journal)?
    {
        state.journalled.insert(block.hash(), Arc::new(block));
    }
    let intake = Intake::spawn(state.node.clone());
    let _outbound = gossip::spawn_outbound(&state.node, channels.network.clone());
    while let Some(message) = channels.consensus.recv().await {
        match message {
            AppMsg::ConsensusReady { reply } => {
                let height = Height(state.node.next_height()?);
                let (params, validators) = state.params(height)?;
                state.admit_validators(&channels, &validators);
                state.start_height(height);
                tracing::info!(height = height.0, "consensus ready");
                let _ = reply.send((height, params));
            }
            AppMsg::StartedRound {
                height,
                round,
                reply_value,
                ..
            } => {
                state.judge_future(height).await;
                let values: Vec<_> = state
                    .candidates
                    .values()
                    .filter(|candidate| {
                        candidate.proposed.height == height && candidate.proposed.round == round
                    })
                    .map(|candidate| candidate.proposed.clone())
                    .collect();
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                timeout,
                reply,
            } => {
                if let Some(block) = state.build(height, timeout).await {
                    let hash = block.hash();
                    let proposed = ProposedValue {
                        height,
                        round,
                        valid_round: Round::Nil,
                        proposer: Address(state.config.key.public_key()),
                        value: BlockId(hash),
                        validity: Validity::Valid,
                    };
                    state.candidates.insert(
                        hash,
                        Candidate {
                            block: block.clone(),
                            proposed,
                        },
                    );
                    let _ = reply.send(LocallyProposedValue::new(height, round, BlockId(hash)));
                    state.publish(&channels, &block, round, Round::Nil).await;
                }
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                value_id,
                ..
            } => {
                // This validator leads `round` and is locked on a block from `valid_round`,
                // whoever built it: send that block again under this round.
                if let Some(block) = state.held(&value_id.0)
                    && block.header.height == height.0
                {
                    state.publish(&channels, &block, round, valid_round).await;
                }
            }
            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }
            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                // Extensions are disabled; none should arrive, and any that do carry nothing.
                let verdicts = extensions
                    .into_iter()
                    .map(|(address, _)| (address, Ok(())))
                    .collect();
                let _ = reply.send(verdicts);
            }
            AppMsg::GetHistoryMinHeight { reply } => {
                // Every node keeps the whole chain, so a new node can join from genesis.
                let _ = reply.send(Height(1));
            }
            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                if let StreamContent::Data(ProposalPart::Txs(txs)) = part.content {
                    intake.offer(txs);
                    let _ = reply.send(None);
                    continue;
                }
                let publisher = published_by.unwrap_or(from).to_bytes();
                let value = match state.streams.insert(publisher, part) {
                    None => None,
                    Some(assembled) => match state.open_stream(assembled) {
                        None => None,
                        Some((assembled, block)) => {
                            let init = assembled.init;
                            let expected = state.expected_proposer(init.height, init.round);
                            if init.height < state.height {
                                None
                            } else if init.height > state.height {
                                // A peer ahead of this node: keep the block and judge it once
                                // this node reaches its height.
                                state.keep_future(init, block);
                                None
                            } else if expected != Some(init.proposer) {
                                tracing::warn!(
                                    height = init.height.0,
                                    "dropping a proposal from a validator that is not this round's proposer"
                                );
                                None
                            } else {
                                Some(
                                    state
                                        .judge(
                                            block,
                                            init.round,
                                            init.pol_round,
                                            init.proposer,
                                            Origin::Proposal,
                                        )
                                        .await,
                                )
                            }
                        }
                    },
                };
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate, reply, ..
            } => {
                let height = certificate.height;
                let hash = certificate.value_id.0;
                let Some(block) = state.held(&hash) else {
                    return Err(Error::Missing(height.0));
                };
                let certificate = to_ledger(&certificate);
                let committed = state
                    .blocking(move |node| node.commit_decided(&block, &certificate))
                    .await;
                if let Err(error) = committed {
                    return Err(Error::Commit(height.0, error.to_string()));
                }
                tracing::debug!(height = height.0, "committed");
                let _ = reply.send(());
            }
            AppMsg::Finalized {
                certificate, reply, ..
            } => {
                let next = Height(certificate.height.0 + 1);
                let (params, validators) = state.params(next)?;
                state.admit_validators(&channels, &validators);
                state.start_height(next);
                let _ = reply.send(Next::Start(next, params));
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let values = state.decided_values(range);
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = match Block::from_bytes(&value_bytes) {
                    Err(_) => SyncedValueOutcome::PeerFault,
                    Ok(block) if block.header.height != height.0 => SyncedValueOutcome::PeerFault,
                    Ok(block) => {
                        state.report_progress(|progress| {
                            progress.target = progress.target.max(height.0);
                        });
                        SyncedValueOutcome::Verdict(
                            state
                                .judge(block, round, Round::Nil, proposer, Origin::Sync)
                                .await,
                        )
                    }
                };
                let _ = reply.send(outcome);
            }
        }
    }
    Ok(())
}

/// Why the application loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("consensus decided block at height {0}, which this node never saw")]
    Missing(u64),
    #[error("committing height {0} failed: {1}")]
    Commit(u64, String),
    #[error("reading the block journal: {0}")]
    Journal(std::io::Error),
    #[error(transparent)]
    Node(#[from] InvalidBlock),
    #[error(transparent)]
    NodeError(#[from] medledger_node::NodeError),
}
