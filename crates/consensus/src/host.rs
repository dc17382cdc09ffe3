//! The consensus host: every decision the application side of Malachite makes, in one synchronous
//! type that both the node's engine loop ([`crate::app`]) and the deterministic simulation
//! (`medledger-sim`) drive, so the simulation's seeds test the rules production runs.
//!
//! The host decides which blocks are candidates for a height and what verdict each gets, which
//! proposals it accepts and from whom, which blocks it keeps for heights it has not reached, what
//! it forgets when a height starts, what it restreams when the engine re-proposes a locked value,
//! which block it commits when the engine decides, how long a proposer waits for transactions
//! before it builds an empty block, and what it serves to a peer catching up.
//!
//! It does no networking, spawns nothing and reads no clock. The caller passes the time in: the
//! proposer's wall-clock time as `time_ms` (it becomes a block's time, and bounds a peer's), and
//! a monotonic `clock_ms` for waiting (an `Instant` in the node, the virtual clock in the
//! simulation). The caller carries out what the host returns: replying to the engine, publishing
//! a block, sleeping. The host's blocking work is the node's (executing, committing) and the
//! journal's (an fsync), which is why the node's loop runs it on tokio's blocking pool.
//!
//! **Invariant:** consensus only ever receives a `Valid` verdict for a block that the node has
//! executed against its head, whose header roots all matched, and that is in the journal (when
//! the engine may vote for it).
//!
//! **Determinism:** the host reads no clock, uses no randomness and keeps its maps in `BTreeMap`s,
//! so the same inputs give the same outputs.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use malachitebft_core_consensus::ProposedValue;
use malachitebft_core_types::{
    CommitCertificate, ExtendedCommitCertificate, Round, Validity, VoteExtensions,
};
use malachitebft_sync::RawDecidedValue;
use medledger_crypto::Hash;
use medledger_ledger::Block;
use medledger_node::{InvalidBlock, Node, NodeError};

use crate::certificate::{to_engine, to_ledger};
use crate::context::{Address, BlockId, Height, LedgerContext, ValidatorSet, proposer};
use crate::journal::BlockJournal;

/// How far ahead of this node a kept proposal may be.
pub const FUTURE_HEIGHTS_MAX: u64 = 2;
/// How many proposals are kept per future height (a few rounds' worth).
pub const FUTURE_BLOCKS_MAX: usize = 8;
/// The most heights served to a syncing peer in one reply.
pub const SYNC_BATCH_MAX: u64 = 64;
/// The most block bytes served to a syncing peer in one reply.
pub const SYNC_REPLY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long a proposer with an empty mempool waits for a transaction by default (a node's
/// `empty_block_wait_ms`).
pub const EMPTY_BLOCK_WAIT_DEFAULT: Duration = Duration::from_millis(500);
/// How often a waiting proposer looks at its mempool again.
pub const EMPTY_BLOCK_POLL: Duration = Duration::from_millis(5);
/// How long an idle chain goes without a block by default (a node's `idle_block_interval_ms`).
/// An idle network then commits 2,880 blocks a day instead of one every few hundred
/// milliseconds, while a light client or a monitor still sees a freshly certified head at least
/// twice a minute, so a head older than a minute or two means the chain is stalled.
pub const IDLE_BLOCK_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
/// The lowest height this node serves: every node keeps the whole chain, so a new node can join
/// from genesis.
pub const HISTORY_MIN_HEIGHT: Height = Height(1);

/// What the host needs besides the node and its journal.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// How long a proposer with an empty mempool waits for a transaction before proposing an
    /// empty block. Bounds both idle block production and the latency of a lone transaction.
    pub empty_block_wait: Duration,
    /// How long after a block's time a validator at the head waits, with nothing to propose and
    /// no proposal from a peer, before it starts the next height (zero: start at once). It
    /// bounds an idle chain to one block per interval and costs a transaction nothing: the
    /// height starts as soon as one arrives.
    pub idle_block_interval: Duration,
    /// A deliberately wrong rule, for the simulation's test that its checkers catch a broken
    /// host. Production never sets one.
    #[doc(hidden)]
    pub flaw: Option<Flaw>,
}

impl Default for HostConfig {
    fn default() -> HostConfig {
        HostConfig {
            empty_block_wait: EMPTY_BLOCK_WAIT_DEFAULT,
            idle_block_interval: IDLE_BLOCK_INTERVAL_DEFAULT,
            flaw: None,
        }
    }
}

/// Rules the host must not follow, kept so a test can show that the simulation fails a host
/// that does. Each names the one place it bends.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flaw {
    /// The adapter's first restream rule: a round's proposer restreams only a locked block it
    /// built itself, and a peer accepts only blocks whose header names the sender. A locked block
    /// built by another validator then never reaches a peer that missed it, and some runs stall.
    OwnBlocksOnly,
    /// No decided block is served to a peer catching up, as if this node kept no history: a
    /// validator that falls behind never catches up.
    NoHistory,
}

/// A complete block a peer proposed: the round it was streamed for, its proof-of-lock round
/// (defined when the sender re-proposes a block it is locked on), and the validator that sent
/// it, authenticated by the stream's signature (node) or the transport (simulation).
#[derive(Clone, Debug)]
pub struct Offer {
    pub block: Arc<Block>,
    pub round: Round,
    pub pol_round: Round,
    pub proposer: Address,
}

/// How a block reached this node: streamed by a proposer (the engine may vote for it, so it is
/// journalled), or by value sync with its certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Proposal,
    Sync,
}

/// A block this node holds for an undecided height, with the verdict it gave the engine.
#[derive(Debug)]
struct Candidate {
    block: Arc<Block>,
    proposed: ProposedValue<LedgerContext>,
    /// Fetched by value sync: the node was behind when it held it.
    synced: bool,
}

/// The last block this node committed, as the idle wait needs it.
#[derive(Clone, Copy, Debug)]
struct LastDecided {
    height: Height,
    time_ms: u64,
    /// It came by value sync, so this node is catching up and must not idle.
    synced: bool,
}

/// A decided block, committed.
#[derive(Clone, Debug)]
pub struct Decided {
    pub block: Arc<Block>,
    /// True when the block was held only because the journal kept it across a restart.
    pub from_journal: bool,
}

/// Why the host cannot go on: the node can no longer follow the chain.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("consensus decided block {hash} at height {height}, which this node never saw")]
    MissingBlock { height: u64, hash: Hash },
    #[error("committing height {height} failed: {source}")]
    Commit {
        height: u64,
        #[source]
        source: InvalidBlock,
    },
    #[error("the block journal: {0}")]
    Journal(#[source] std::io::Error),
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// The application side of consensus for one validator.
#[derive(Debug)]
pub struct Host<J> {
    node: Node,
    config: HostConfig,
    journal: J,
    /// The height in progress.
    height: Height,
    /// Complete blocks for the current and future heights, by hash.
    candidates: BTreeMap<Hash, Candidate>,
    /// The block this node proposed at the current height, reused in later rounds.
    own_proposal: Option<Arc<Block>>,
    /// Complete blocks for heights this node has not reached yet.
    future: BTreeMap<Height, Vec<Offer>>,
    /// Blocks read back from the journal at start: what the engine's WAL replay may decide or
    /// ask to re-propose.
    journalled: BTreeMap<Hash, Arc<Block>>,
    /// When this node, leading (height, round), stops waiting for transactions (`clock_ms`).
    value_deadline: Option<(Height, Round, u64)>,
    /// The block this node last committed, since it started.
    last_decided: Option<LastDecided>,
}

impl<J: BlockJournal> Host<J> {
    /// A host for `node`, holding the journal's blocks at or above the node's next height.
    pub fn open(node: Node, config: HostConfig, journal: J) -> Result<Host<J>, HostError> {
        let from = node.next_height()?;
        let journalled = journal
            .load_from(from)
            .map_err(HostError::Journal)?
            .into_iter()
            .map(|block| (block.hash(), Arc::new(block)))
            .collect();
        Ok(Host {
            node,
            config,
            journal,
            height: Height(from),
            candidates: BTreeMap::new(),
            own_proposal: None,
            future: BTreeMap::new(),
            journalled,
            value_deadline: None,
            last_decided: None,
        })
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The height in progress.
    pub fn height(&self) -> Height {
        self.height
    }

    /// Moves to `height` (the engine is ready, or the last height was finalised) and forgets
    /// what belongs to lower heights. Returns the validator set that decides `height`.
    pub fn start_height(
        &mut self,
        height: Height,
    ) -> Result<medledger_types::ValidatorSet, HostError> {
        let validators = self.node.validators_for(height.0)?;
        self.future.retain(|kept, _| *kept >= height);
        self.journalled
            .retain(|_, block| block.header.height >= height.0);
        // A stale file costs only disk space, and the next height prunes it again.
        if let Err(error) = self.journal.prune_below(height.0) {
            tracing::warn!(%error, "cannot prune the block journal");
        }
        self.height = height;
        self.own_proposal = None;
        self.value_deadline = None;
        self.candidates
            .retain(|_, candidate| candidate.proposed.height >= height);
        Ok(validators)
    }

    /// A round started: judges the blocks kept for this height, and returns the verdicts on the
    /// blocks held for this round, which the engine needs before it can vote.
    pub fn started_round(
        &mut self,
        height: Height,
        round: Round,
        time_ms: u64,
    ) -> Vec<ProposedValue<LedgerContext>> {
        if let Some(kept) = self.future.remove(&height) {
            for offer in kept {
                if self.sent_by_round_proposer(&offer) {
                    self.judge(offer, Origin::Proposal, time_ms);
                }
            }
        }
        self.candidates
            .values()
            .filter(|candidate| {
                candidate.proposed.height == height && candidate.proposed.round == round
            })
            .map(|candidate| candidate.proposed.clone())
            .collect()
    }

    /// A peer's complete proposal: judged now if it is for the height in progress and came from
    /// that round's proposer, kept if it is for a height a little ahead, dropped otherwise.
    /// Returns the verdict to give the engine.
    pub fn receive_proposal(
        &mut self,
        offer: Offer,
        time_ms: u64,
    ) -> Option<ProposedValue<LedgerContext>> {
        let height = Height(offer.block.header.height);
        if height < self.height || !self.built_by_sender(&offer) {
            return None;
        }
        if height > self.height {
            // A peer ahead of this node: keep the block and judge it once this node reaches its
            // height, when it knows that height's validators.
            self.keep_future(height, offer);
            return None;
        }
        if !self.sent_by_round_proposer(&offer) {
            tracing::warn!(
                height = height.0,
                "dropping a proposal from a validator that is not this round's proposer"
            );
            return None;
        }
        Some(self.judge(offer, Origin::Proposal, time_ms))
    }

    /// A decided block value sync fetched with its certificate (which the engine verified).
    /// Returns the verdict to give the engine, or `None` when the peer sent bytes that are not a
    /// block of `height` (its fault).
    pub fn synced_value(
        &mut self,
        height: Height,
        round: Round,
        proposer: Address,
        value_bytes: &[u8],
        time_ms: u64,
    ) -> Option<ProposedValue<LedgerContext>> {
        let block = Block::from_bytes(value_bytes).ok()?;
        if block.header.height != height.0 {
            return None;
        }
        let offer = Offer {
            block: Arc::new(block),
            round,
            pol_round: Round::Nil,
            proposer,
        };
        Some(self.judge(offer, Origin::Sync, time_ms))
    }

    /// How much longer this node, leading (`height`, `round`), waits for transactions before it
    /// builds its block, or `None` when it should build now: it has a block for this height
    /// already, transactions are waiting, or the wait is over. The wait is `empty_block_wait`,
    /// at most half the engine's propose `timeout` (the rest is for building and streaming),
    /// counted on `clock_ms` from the first call for the round. Ask again after the returned
    /// pause.
    pub fn value_wait(
        &mut self,
        height: Height,
        round: Round,
        timeout: Duration,
        clock_ms: u64,
    ) -> Option<Duration> {
        if height != self.height || self.reusable().is_some() || self.node.has_pending_txs() {
            return None;
        }
        let deadline_ms = match self.value_deadline {
            Some((waiting_height, waiting_round, deadline_ms))
                if waiting_height == height && waiting_round == round =>
            {
                deadline_ms
            }
            _ => {
                let wait = self.config.empty_block_wait.min(timeout / 2);
                let deadline_ms = clock_ms.saturating_add(wait.as_millis() as u64);
                self.value_deadline = Some((height, round, deadline_ms));
                deadline_ms
            }
        };
        let left_ms = deadline_ms.checked_sub(clock_ms).filter(|left| *left > 0)?;
        Some(Duration::from_millis(left_ms).min(EMPTY_BLOCK_POLL))
    }

    /// How much longer this node, having committed the height before `height`, waits before it
    /// starts `height`, or `None` when it should start now. An idle chain commits no more than
    /// one block per `idle_block_interval`: the node waits until the last block's time plus the
    /// interval has passed on its clock (`time_ms`), unless a transaction is waiting, a peer
    /// already proposed a block for `height` (so the peers started it), or the last block came
    /// by value sync (the node is catching up). Ask again after the returned pause.
    ///
    /// Only the start is held back: the engine's propose timeout runs from the start, so a dead
    /// proposer still costs one timeout once the height starts, and votes and proposals for
    /// `height` that arrive meanwhile wait in the engine's buffer.
    pub fn start_wait(&self, height: Height, time_ms: u64) -> Option<Duration> {
        let interval = self.config.idle_block_interval;
        let last = self.last_decided?;
        if interval.is_zero()
            || height != self.height
            || Height(last.height.0.saturating_add(1)) != height
            || last.synced
            || self.node.has_pending_txs()
            || self.future.contains_key(&height)
            || self
                .candidates
                .values()
                .any(|candidate| candidate.proposed.height == height)
        {
            return None;
        }
        let due_ms = last
            .time_ms
            .saturating_add(u64::try_from(interval.as_millis()).unwrap_or(u64::MAX));
        let left_ms = due_ms.checked_sub(time_ms).filter(|left| *left > 0)?;
        Some(Duration::from_millis(left_ms).min(EMPTY_BLOCK_POLL))
    }

    /// This node's block for (`height`, `round`): the one it already proposed at this height
    /// (also before a restart, from the journal), never a second one, or else a new block from
    /// the mempool at `time_ms`, journalled before it is returned. `None` when the height moved
    /// on. The caller tells the engine and publishes the block with no proof-of-lock round.
    pub fn propose_value(
        &mut self,
        height: Height,
        round: Round,
        time_ms: u64,
    ) -> Result<Option<Arc<Block>>, HostError> {
        if height != self.height {
            return Ok(None);
        }
        self.value_deadline = None;
        let block = match self.reusable() {
            Some(block) => block,
            None => {
                let block = self.node.propose(time_ms)?;
                self.journal.save(&block).map_err(HostError::Journal)?;
                Arc::new(block)
            }
        };
        self.own_proposal = Some(block.clone());
        self.hold_own_block(block.clone(), round);
        Ok(Some(block))
    }

    /// The block to send again when the engine makes this node re-propose `value_id` at
    /// `height`: the node is locked on it from an earlier round, whoever built it (Tendermint's
    /// rule). The caller publishes it with the engine's valid round as its proof-of-lock round.
    pub fn restream(&self, height: Height, value_id: &BlockId) -> Option<Arc<Block>> {
        let block = self.held(&value_id.0)?;
        let own_only = self.config.flaw == Some(Flaw::OwnBlocksOnly);
        if block.header.height != height.0
            || own_only && block.header.proposer != self.node.validator_key()
        {
            return None;
        }
        Some(block)
    }

    /// Commits the block the engine decided, with its certificate.
    pub fn decide(
        &mut self,
        certificate: &CommitCertificate<LedgerContext>,
    ) -> Result<Decided, HostError> {
        let height = certificate.height.0;
        let hash = certificate.value_id.0;
        let candidate = self.candidates.get(&hash);
        let from_journal = candidate.is_none();
        let synced = candidate.is_some_and(|candidate| candidate.synced);
        let block = self
            .held(&hash)
            .ok_or(HostError::MissingBlock { height, hash })?;
        self.node
            .commit_decided(&block, &to_ledger(certificate))
            .map_err(|source| HostError::Commit { height, source })?;
        self.last_decided = Some(LastDecided {
            height: certificate.height,
            time_ms: block.header.time_ms,
            synced,
        });
        Ok(Decided {
            block,
            from_journal,
        })
    }

    /// Decided blocks with their certificates for a peer catching up: from the start of `range`,
    /// at most [`SYNC_BATCH_MAX`] heights and [`SYNC_REPLY_BYTES_MAX`] bytes (but at least one
    /// block), stopping at the first height this node has not committed.
    pub fn decided_values(
        &self,
        range: RangeInclusive<Height>,
    ) -> Vec<RawDecidedValue<LedgerContext>> {
        let (start, end) = (range.start().0, range.end().0);
        if self.config.flaw == Some(Flaw::NoHistory) {
            return Vec::new();
        }
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

    /// The verdicts this node holds for undecided heights, by block hash.
    pub fn candidates(&self) -> impl Iterator<Item = &ProposedValue<LedgerContext>> {
        self.candidates
            .values()
            .map(|candidate| &candidate.proposed)
    }

    /// Holds a block this validator built for the height in progress as its own valid proposal
    /// for `round`, so it can commit the block if it is decided. Besides [`Self::propose_value`],
    /// only the simulation's Byzantine validator, which sends a second block to some peers,
    /// calls this.
    #[doc(hidden)]
    pub fn hold_own_block(&mut self, block: Arc<Block>, round: Round) {
        let hash = block.hash();
        let proposed = ProposedValue {
            height: Height(block.header.height),
            round,
            valid_round: Round::Nil,
            proposer: Address(self.node.validator_key()),
            value: BlockId(hash),
            validity: Validity::Valid,
        };
        self.candidates.insert(
            hash,
            Candidate {
                block,
                proposed,
                synced: false,
            },
        );
    }

    /// Checks a complete block against the head, journals it if the engine may vote for it, and
    /// records the verdict.
    fn judge(
        &mut self,
        offer: Offer,
        origin: Origin,
        time_ms: u64,
    ) -> ProposedValue<LedgerContext> {
        let block = offer.block;
        let hash = block.hash();
        // A proposal is durable before the engine may vote for it (see `journal`). A synced block
        // comes with its certificate and no vote of this node's, and sync fetches it again after
        // a crash, so catch-up pays no fsync per height.
        let verdict = self
            .node
            .validate(&block, time_ms)
            .and_then(|()| match origin {
                Origin::Proposal => self
                    .journal
                    .save(&block)
                    .map_err(|error| InvalidBlock::Invalid(format!("journalling it: {error}"))),
                Origin::Sync => Ok(()),
            });
        let validity = match verdict {
            Ok(()) => Validity::Valid,
            Err(error) => {
                tracing::warn!(height = block.header.height, %error, "refusing a proposed block");
                Validity::Invalid
            }
        };
        let proposed = ProposedValue {
            height: Height(block.header.height),
            round: offer.round,
            valid_round: offer.pol_round,
            proposer: offer.proposer,
            value: BlockId(hash),
            validity,
        };
        self.candidates.insert(
            hash,
            Candidate {
                block,
                proposed: proposed.clone(),
                synced: origin == Origin::Sync,
            },
        );
        proposed
    }

    /// A fresh proposal is its sender's own block. A re-proposal (with a proof-of-lock round)
    /// carries a block some earlier round's proposer built, which the sender found valid and is
    /// locked on; consensus, not the header, vouches for it then.
    fn built_by_sender(&self, offer: &Offer) -> bool {
        let reproposal =
            offer.pol_round.is_defined() && self.config.flaw != Some(Flaw::OwnBlocksOnly);
        reproposal || offer.block.header.proposer == offer.proposer.0
    }

    /// The offer came from its round's proposer, by the validator set of its height (known once
    /// this node reaches that height).
    fn sent_by_round_proposer(&self, offer: &Offer) -> bool {
        let height = Height(offer.block.header.height);
        let Ok(validators) = self.node.validators_for(height.0) else {
            return false;
        };
        let set = ValidatorSet::from_ledger(&validators);
        proposer(&set, height, offer.round).address == offer.proposer
    }

    fn keep_future(&mut self, height: Height, offer: Offer) {
        if height.0 > self.height.0 + FUTURE_HEIGHTS_MAX {
            return;
        }
        let kept = self.future.entry(height).or_default();
        if kept.len() < FUTURE_BLOCKS_MAX {
            kept.push(offer);
        }
    }

    /// The block this node already proposed at the height in progress: in this run, or before a
    /// restart (from the journal).
    fn reusable(&self) -> Option<Arc<Block>> {
        if let Some(block) = &self.own_proposal
            && block.header.height == self.height.0
        {
            return Some(block.clone());
        }
        let own = self.node.validator_key();
        self.journalled
            .values()
            .find(|block| block.header.height == self.height.0 && block.header.proposer == own)
            .cloned()
    }

    /// A block this validator holds for an undecided height, from this run or the journal.
    fn held(&self, hash: &Hash) -> Option<Arc<Block>> {
        self.candidates
            .get(hash)
            .map(|candidate| candidate.block.clone())
            .or_else(|| self.journalled.get(hash).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::MemoryJournal;
    use medledger_crypto::SecretKey;
    use medledger_node::{BlockSource, NodeConfig};
    use medledger_types::{Genesis, Organisation, Validator};

    const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
    /// A proposer's clock a second after genesis.
    const TIME_MS: u64 = GENESIS_TIME_MS + 1_000;

    /// Four validators' nodes on one genesis, each on its own store, at height 1.
    struct Network {
        keys: Vec<SecretKey>,
        nodes: Vec<Node>,
        _dir: tempfile::TempDir,
    }

    impl Network {
        fn new() -> Network {
            let dir = tempfile::tempdir().expect("tempdir");
            let keys: Vec<SecretKey> = (1..=4).map(SecretKey::from_seed).collect();
            // One organisation per validator, each with a root key of its own.
            let mut genesis = Genesis {
                chain_id: "host-test".into(),
                genesis_time_ms: GENESIS_TIME_MS,
                organisations: Vec::new(),
                validators: Vec::new(),
            };
            for (seed, key) in (100..).zip(&keys) {
                let org = format!("org{seed}");
                genesis.validators.push(Validator {
                    key: key.public_key(),
                    power: 1,
                    org: org.clone(),
                });
                genesis.organisations.push(Organisation {
                    name: org.clone(),
                    id: org,
                    root_key: SecretKey::from_seed(seed).public_key(),
                    gs1_prefixes: Vec::new(),
                });
            }
            let nodes = keys
                .iter()
                .enumerate()
                .map(|(index, key)| {
                    Node::start(NodeConfig {
                        data_dir: dir.path().join(format!("node{index}")),
                        genesis: genesis.clone(),
                        validator_key: key.clone(),
                        mempool_txs_max: 100,
                        block_txs_max: 16,
                        block_source: BlockSource::Consensus,
                    })
                    .expect("the node starts")
                })
                .collect();
            Network {
                keys,
                nodes,
                _dir: dir,
            }
        }

        fn address(&self, index: usize) -> Address {
            Address(self.keys[index].public_key())
        }

        /// The validator that leads (`height`, `round`).
        fn leader(&self, height: Height, round: Round) -> usize {
            let validators = self.nodes[0].validators_for(height.0).expect("validators");
            let leader = proposer(&ValidatorSet::from_ledger(&validators), height, round).address;
            (0..self.keys.len())
                .find(|index| self.address(*index) == leader)
                .expect("the leader is one of the validators")
        }

        /// A host over validator `index`'s node, started at height 1.
        fn host(
            &self,
            index: usize,
            config: HostConfig,
            journal: MemoryJournal,
        ) -> Host<MemoryJournal> {
            let mut host =
                Host::open(self.nodes[index].clone(), config, journal).expect("the host opens");
            host.start_height(Height(1)).expect("height 1 starts");
            host
        }

        fn block(&self, index: usize) -> Arc<Block> {
            Arc::new(self.nodes[index].propose(TIME_MS).expect("a block"))
        }
    }

    fn flawed(flaw: Flaw) -> HostConfig {
        HostConfig {
            flaw: Some(flaw),
            ..HostConfig::default()
        }
    }

    /// A proposal is judged only when it comes from its round's proposer, and a block another
    /// validator built only as a re-proposal (with a proof-of-lock round), which the
    /// `OwnBlocksOnly` flaw refuses.
    #[test]
    fn proposals_are_judged_only_from_the_rounds_proposer() {
        let network = Network::new();
        let round = Round::new(1);
        let leader = network.leader(Height(1), round);
        let (other, judge) = ((leader + 1) % 4, (leader + 2) % 4);
        let leaders_block = network.block(leader);
        let others_block = network.block(other);
        let check = |config: HostConfig,
                     block: &Arc<Block>,
                     sender: usize,
                     pol_round: Round,
                     expected: Option<Validity>| {
            let mut host = network.host(judge, config, MemoryJournal::default());
            let offer = Offer {
                block: block.clone(),
                round,
                pol_round,
                proposer: network.address(sender),
            };
            let verdict = host
                .receive_proposal(offer, TIME_MS)
                .map(|proposed| proposed.validity);
            assert_eq!(
                verdict, expected,
                "sender {sender}, pol_round {pol_round:?}"
            );
        };
        let sound = HostConfig::default;
        check(
            sound(),
            &leaders_block,
            leader,
            Round::Nil,
            Some(Validity::Valid),
        );
        check(sound(), &leaders_block, other, Round::Nil, None);
        check(sound(), &others_block, leader, Round::Nil, None);
        check(
            sound(),
            &others_block,
            leader,
            Round::new(0),
            Some(Validity::Valid),
        );
        let own_only = || flawed(Flaw::OwnBlocksOnly);
        check(
            own_only(),
            &leaders_block,
            leader,
            Round::Nil,
            Some(Validity::Valid),
        );
        check(own_only(), &others_block, leader, Round::new(0), None);
    }

    /// A block up to `FUTURE_HEIGHTS_MAX` heights ahead is kept and judged when a round of its
    /// height starts; one further ahead is dropped.
    #[test]
    fn future_blocks_are_kept_within_bounds() {
        let network = Network::new();
        let round = Round::new(0);
        let mut host = network.host(0, HostConfig::default(), MemoryJournal::default());
        for ahead in 1..=FUTURE_HEIGHTS_MAX + 1 {
            let height = Height(1 + ahead);
            let leader = network.leader(height, round);
            let mut block = (*network.block(leader)).clone();
            block.header.height = height.0;
            let offer = Offer {
                block: Arc::new(block),
                round,
                pol_round: Round::Nil,
                proposer: network.address(leader),
            };
            assert!(host.receive_proposal(offer, TIME_MS).is_none());
            // Judged against this node's head, the block is for the wrong height; what matters
            // here is whether it was kept to be judged at all.
            let judged = host.started_round(height, round, TIME_MS);
            let expected = if ahead <= FUTURE_HEIGHTS_MAX { 1 } else { 0 };
            assert_eq!(judged.len(), expected, "{ahead} heights ahead");
        }
    }

    /// A proposer with an empty mempool waits `empty_block_wait`, at most half the propose
    /// timeout, polling; a new round waits afresh, and a block already proposed at the height is
    /// proposed again at once.
    #[test]
    fn the_empty_block_wait() {
        let network = Network::new();
        let mut host = network.host(0, HostConfig::default(), MemoryJournal::default());
        let timeout = Duration::from_millis(400);
        let (height, first, second) = (Height(1), Round::new(0), Round::new(1));
        let waits = [
            (first, 1_000, Some(EMPTY_BLOCK_POLL)),
            (first, 1_198, Some(Duration::from_millis(2))),
            (first, 1_200, None),
            (second, 1_200, Some(EMPTY_BLOCK_POLL)),
            (second, 1_399, Some(Duration::from_millis(1))),
        ];
        for (round, clock_ms, expected) in waits {
            assert_eq!(
                host.value_wait(height, round, timeout, clock_ms),
                expected,
                "round {round:?} at {clock_ms} ms"
            );
        }
        let block = host
            .propose_value(height, second, TIME_MS)
            .expect("proposes")
            .expect("at this height");
        let third = Round::new(2);
        assert_eq!(host.value_wait(height, third, timeout, 1_400), None);
        let again = host
            .propose_value(height, third, TIME_MS + 50)
            .expect("proposes")
            .expect("at this height");
        assert_eq!(again.hash(), block.hash());
        assert_eq!(host.value_wait(Height(2), third, timeout, 1_400), None);
        assert!(
            host.propose_value(Height(2), third, TIME_MS)
                .expect("no error")
                .is_none()
        );
    }

    /// After a block decided live, the next height waits until the block's time plus the idle
    /// interval, unless a transaction a block can take (not one behind a nonce gap) or a peer's
    /// proposal for that height arrives first; after a
    /// block fetched by sync (catching up), or with the interval at zero, it starts at once.
    #[test]
    fn the_idle_wait_before_a_height() {
        let network = Network::new();
        let interval = Duration::from_secs(30);
        let config = |idle_block_interval| HostConfig {
            idle_block_interval,
            ..HostConfig::default()
        };
        let keys: Vec<&SecretKey> = network.keys.iter().collect();
        // Validator `index` decides validator 0's block of height 1 (held as proposed, or
        // fetched by sync) and moves on.
        let first = network.block(0);
        let decided = |index: usize, idle_block_interval, synced: bool| {
            let mut host =
                network.host(index, config(idle_block_interval), MemoryJournal::default());
            let block = first.clone();
            let round = Round::new(0);
            if synced {
                host.synced_value(
                    Height(1),
                    round,
                    network.address(0),
                    &block.to_bytes(),
                    TIME_MS,
                )
                .expect("a block of height 1");
            } else {
                host.hold_own_block(block.clone(), round);
            }
            let certificate =
                medledger_types::CommitCertificate::sign("host-test", 1, 0, block.hash(), &keys);
            host.decide(&to_engine(&certificate)).expect("decides");
            host.start_height(Height(2)).expect("height 2 starts");
            (host, block.header.time_ms)
        };
        let (host, time_ms) = decided(0, interval, false);
        let due_ms = time_ms + 30_000;
        assert_eq!(host.start_wait(Height(2), time_ms), Some(EMPTY_BLOCK_POLL));
        assert_eq!(
            host.start_wait(Height(2), due_ms - 2),
            Some(Duration::from_millis(2))
        );
        assert_eq!(host.start_wait(Height(2), due_ms), None);
        assert_eq!(
            host.start_wait(Height(3), time_ms),
            None,
            "not the height in progress"
        );
        // Caught up by sync, or no interval: start at once.
        assert_eq!(
            decided(1, interval, true).0.start_wait(Height(2), time_ms),
            None
        );
        assert_eq!(
            decided(2, Duration::ZERO, false)
                .0
                .start_wait(Height(2), time_ms),
            None
        );
        // A transaction arrives: start at once.
        let root = SecretKey::from_seed(100);
        let anchor = |nonce: u64| {
            medledger_ledger::TxBody {
                chain_id: "host-test".into(),
                sender: root.public_key(),
                nonce,
                payload: medledger_ledger::Payload::Core(medledger_ledger::CoreOp::Anchor {
                    id: Hash([nonce as u8; 32]),
                    commitment: Hash::ZERO,
                }),
            }
            .sign(&root)
        };
        // One parked behind a nonce gap cannot go in a block: the chain still idles.
        let admitted = host.node().submit(vec![anchor(3)]);
        assert!(admitted.iter().all(Result::is_ok), "{admitted:?}");
        assert!(host.start_wait(Height(2), time_ms).is_some());
        let admitted = host.node().submit(vec![anchor(1)]);
        assert!(admitted.iter().all(Result::is_ok), "{admitted:?}");
        assert_eq!(host.start_wait(Height(2), time_ms), None);
        // A peer's proposal for height 2 arrives (its height started): start at once. Validator
        // 0 committed height 1 above and builds on it; it sends in a round it leads.
        let (mut host, _) = decided(3, interval, false);
        assert!(host.start_wait(Height(2), time_ms).is_some());
        let round = (0..4)
            .map(Round::new)
            .find(|round| network.leader(Height(2), *round) == 0)
            .expect("validator 0 leads a round of height 2");
        let offer = Offer {
            block: Arc::new(network.nodes[0].propose(TIME_MS + 10).expect("a block")),
            round,
            pol_round: Round::Nil,
            proposer: network.address(0),
        };
        assert!(host.receive_proposal(offer, TIME_MS + 10).is_some());
        assert_eq!(host.start_wait(Height(2), time_ms), None);
    }

    /// After a restart, the host re-proposes and restreams the block it journalled, never a
    /// second one, and restreams a locked block whoever built it (not under `OwnBlocksOnly`).
    #[test]
    fn journalled_and_locked_blocks_are_restreamed() {
        let network = Network::new();
        let journal = MemoryJournal::default();
        let mut host = network.host(0, HostConfig::default(), journal.clone());
        let proposed = host
            .propose_value(Height(1), Round::new(0), TIME_MS)
            .expect("proposes")
            .expect("at this height");
        drop(host);
        let mut host = network.host(0, HostConfig::default(), journal);
        let id = BlockId(proposed.hash());
        assert!(host.restream(Height(1), &id).is_some());
        assert!(host.restream(Height(2), &id).is_none());
        let again = host
            .propose_value(Height(1), Round::new(3), TIME_MS + 500)
            .expect("proposes")
            .expect("at this height");
        assert_eq!(again.hash(), proposed.hash());

        let round = Round::new(0);
        let leader = network.leader(Height(1), round);
        let judge = (leader + 1) % 4;
        for (config, restreamed) in [
            (HostConfig::default(), true),
            (flawed(Flaw::OwnBlocksOnly), false),
        ] {
            let mut host = network.host(judge, config, MemoryJournal::default());
            let block = network.block(leader);
            let offer = Offer {
                block: block.clone(),
                round,
                pol_round: Round::Nil,
                proposer: network.address(leader),
            };
            assert!(host.receive_proposal(offer, TIME_MS).is_some());
            let id = BlockId(block.hash());
            assert_eq!(host.restream(Height(1), &id).is_some(), restreamed);
            assert!(host.restream(Height(1), &BlockId(Hash::ZERO)).is_none());
        }
    }

    /// Sync serves nothing this node has not committed, and a synced value that is not a block
    /// of its height is the peer's fault.
    #[test]
    fn sync_serves_and_accepts_only_what_it_should() {
        let network = Network::new();
        let mut host = network.host(1, HostConfig::default(), MemoryJournal::default());
        assert!(host.decided_values(Height(1)..=Height(5)).is_empty());
        let block = network.block(0);
        let proposer = network.address(0);
        let round = Round::new(0);
        assert!(
            host.synced_value(Height(1), round, proposer, b"junk", TIME_MS)
                .is_none()
        );
        let bytes = block.to_bytes();
        assert!(
            host.synced_value(Height(2), round, proposer, &bytes, TIME_MS)
                .is_none()
        );
        let verdict = host.synced_value(Height(1), round, proposer, &bytes, TIME_MS);
        assert_eq!(
            verdict.map(|proposed| proposed.validity),
            Some(Validity::Valid)
        );
    }
}
