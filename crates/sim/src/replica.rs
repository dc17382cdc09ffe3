//! One simulated validator: a real `medledger_node::Node` on its own directory, and Malachite's
//! consensus core (`State` plus the `process!` coroutine) driven directly, with every effect the
//! core yields answered here the way `medledger_consensus::app` and Malachite's engine answer it.
//!
//! What survives a crash is what survives a real crash: the node's redb store, the engine's
//! write-ahead log (kept here in memory, outside the validator, and written before any message it
//! records is sent, which is what the engine's fsync before publishing guarantees), and, as an
//! assumption of the simulation, the blocks of the height in progress (see `Disk::candidates`).
//! A restarted validator replays its log exactly as the engine does: start the height, index the
//! log, feed every entry back, drop the index. Replay re-derives the same votes, so it never signs
//! a conflicting one.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use malachitebft_core_consensus::{
    Effect, Input, LivenessMsg, Params, PeerId, ProposedValue, Resumable, Resume,
    SignedConsensusMsg, State, ValuePayload,
};
use malachitebft_core_types::{
    ExtendedCommitCertificate, LinearTimeouts, NilOrVal, Round, SignedMessage, ThresholdParams,
    Timeout, Validity, ValueOrigin, ValueResponse, VoteExtensionPolicy, VoteExtensions,
};
use malachitebft_metrics::Metrics;
use malachitebft_signing::{Signer, Verifier, VerifierExt};
use medledger_consensus::certificate::{to_engine, to_ledger};
use medledger_consensus::context::{
    Address, BlockId, Ed25519Provider, Height, LedgerContext, Proposal, ValidatorSet, Vote,
    proposer,
};
use medledger_consensus::engine::EngineSettings;
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::{Block, Tx};
use medledger_node::{BlockSource, InvalidBlock, Node, NodeConfig};
use medledger_types::Genesis;

use crate::SimError;
use crate::net::Message;

type Ctx = LedgerContext;

/// How long a proposer with an empty mempool waits before proposing an empty block, as the
/// engine adapter's default `empty_block_wait` (500 ms).
pub const EMPTY_BLOCK_WAIT_MS: u64 = 500;
/// How far ahead of this validator a kept block may be, as in `app.rs`.
const FUTURE_HEIGHTS_MAX: u64 = 2;
/// How many blocks are kept per future height, as in `app.rs`.
const FUTURE_BLOCKS_MAX: usize = 8;
/// How long a sync request may go unanswered before another is sent.
const SYNC_RETRY_MS: u64 = 1_000;
/// The engine's input queue: heights ahead, and inputs per height (Malachite's defaults).
const QUEUE_HEIGHTS_MAX: usize = 10;
const QUEUE_PER_HEIGHT_MAX: usize = 500;

/// The virtual clock as the wall clock a proposer would read: genesis time plus one second plus
/// the time since the run started.
pub fn block_time_ms(genesis: &Genesis, now_ms: u64) -> u64 {
    genesis.genesis_time_ms + 1_000 + now_ms
}

/// Runs a future that never waits (every signing and verification call here) to completion.
fn ready<T>(future: impl Future<Output = T>) -> Result<T, SimError> {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(value) => Ok(value),
        Poll::Pending => Err(SimError::Pending),
    }
}

/// A block this validator holds for an undecided height, with the verdict it gave the engine.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub block: Arc<Block>,
    pub proposed: ProposedValue<Ctx>,
    /// Which life of the validator stored it; an older one means it was kept across a crash.
    pub incarnation: u32,
}

/// What outlives a crash.
#[derive(Debug)]
pub struct Disk {
    pub dir: PathBuf,
    /// The height the write-ahead log is at, and its entries for that height.
    wal_height: u64,
    wal: Vec<Input<Ctx>>,
    /// The blocks of the height in progress. `app.rs` keeps these in memory only; the simulation
    /// keeps them across a crash, because a restarted validator whose log replays a precommit for
    /// a block may decide that block and must then hold it. Decisions that needed this are counted
    /// (`Stats::restored_block_decides`), as they mark a gap in the real adapter.
    candidates: BTreeMap<Hash, Candidate>,
    /// The committed height, as of the last commit.
    pub head: u64,
}

/// What a validator's step asks the simulation to do.
#[derive(Debug)]
pub enum Action {
    /// Feed this input to the same validator once the current one is done.
    Input(Input<Ctx>),
    Send {
        to: usize,
        message: Message,
    },
    /// Send to every other validator.
    Broadcast(Message),
    /// A signed proposal or vote of this validator's, for every other validator.
    Publish(SignedConsensusMsg<Ctx>),
    /// This validator's block, for every other validator.
    PublishBlock {
        block: Arc<Block>,
        round: Round,
        pol_round: Round,
    },
    Timer {
        timeout: Timeout,
        id: u64,
        after_ms: u64,
    },
    BuildValue {
        height: u64,
        round: Round,
        after_ms: u64,
    },
    /// The node checked a block and told the engine this.
    Judged {
        hash: Hash,
        valid: bool,
    },
    Decided {
        height: u64,
        round: u32,
        hash: Hash,
        /// The block was held only because it was kept across a crash.
        restored: bool,
    },
    Finalized {
        height: u64,
        evidence: usize,
    },
    SyncedValue,
    /// The engine failed to process an input. The real engine stops the node when this happens.
    EngineError(String),
}

/// A block this validator built to propose, with the actions that propose and publish it.
#[derive(Debug)]
pub struct Built {
    pub block: Arc<Block>,
    pub actions: Vec<Action>,
}

/// The parts of a validator that never change.
#[derive(Debug)]
struct Identity {
    index: usize,
    key: SecretKey,
    address: Address,
    provider: Ed25519Provider,
    ctx: LedgerContext,
    genesis: Genesis,
    /// Every validator's key and network id, by index.
    keys: Vec<PublicKey>,
    peers: Vec<PeerId>,
    restream: Restream,
}

/// Which blocks a round's proposer restreams when the engine re-proposes a value from an earlier
/// round, and which blocks its peers accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Restream {
    /// The adapter's first rule, kept to show what the simulation caught: a validator restreamed
    /// only blocks it built, and a peer dropped a block whose header named another proposer than
    /// the round's. A locked block built by another validator could then reach a peer that missed
    /// it only once it was decided, so some seeds stalled for ever (`REGRESSION_SEEDS` in
    /// `tests/seeds.rs`).
    OwnBlocksOnly,
    /// Tendermint's rule, which `medledger_consensus::app` follows: the round's proposer
    /// restreams the block it re-proposes whoever built it, and a peer accepts it when the
    /// proposal carries a proof-of-lock round.
    #[default]
    AnyLockedBlock,
}

/// A block that arrived for a height this validator has not reached.
#[derive(Debug)]
struct FutureBlock {
    from: usize,
    block: Arc<Block>,
    round: Round,
    pol_round: Round,
}

/// The memory of a running validator, lost on a crash.
struct Live {
    core: State<Ctx>,
    metrics: Metrics,
    app: App,
}

struct App {
    node: Node,
    /// Takes the client transactions the node queued for gossip.
    gossip: Box<dyn FnMut() -> Vec<Tx>>,
    /// The validator set of the height in progress.
    validators: ValidatorSet,
    /// Scheduled timeouts and the id of each one's latest schedule.
    timers: Vec<(Timeout, u64)>,
    future: BTreeMap<u64, Vec<FutureBlock>>,
    /// True while the write-ahead log is being replayed: entries are not written again.
    recovering: bool,
    /// The height last asked for by sync, and when.
    sync_pending: Option<(u64, u64)>,
    /// Every validator's committed height as it last said.
    tips: Vec<u64>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("node", &self.node)
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

/// A simulated validator.
pub struct Replica {
    identity: Identity,
    pub disk: Disk,
    live: Option<Live>,
    incarnation: u32,
    next_timer_id: u64,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("index", &self.identity.index)
            .field("live", &self.live.is_some())
            .field("head", &self.disk.head)
            .finish()
    }
}

/// The round as the ledger's certificate counts it.
fn round_number(round: Round) -> u32 {
    round.as_u32().unwrap_or(0)
}

impl Replica {
    pub fn new(
        index: usize,
        key: SecretKey,
        genesis: Genesis,
        dir: PathBuf,
        keys: Vec<PublicKey>,
        peers: Vec<PeerId>,
        restream: Restream,
    ) -> Replica {
        let chain_id = genesis.chain_id.clone();
        Replica {
            identity: Identity {
                index,
                address: Address(key.public_key()),
                provider: Ed25519Provider::new(chain_id.clone(), Some(key.clone())),
                key,
                ctx: LedgerContext { chain_id },
                genesis,
                keys,
                peers,
                restream,
            },
            disk: Disk {
                dir,
                wal_height: 0,
                wal: Vec::new(),
                candidates: BTreeMap::new(),
                head: 0,
            },
            live: None,
            incarnation: 0,
            next_timer_id: 0,
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    pub fn key(&self) -> PublicKey {
        self.identity.key.public_key()
    }

    /// Opens the node on its directory and a fresh consensus core at the height after its head.
    /// Returns the height's start input and the log entries to replay after it.
    pub fn start(&mut self) -> Result<(Input<Ctx>, Vec<Input<Ctx>>), SimError> {
        let identity = &self.identity;
        let node = Node::start(NodeConfig {
            data_dir: self.disk.dir.clone(),
            genesis: identity.genesis.clone(),
            validator_key: identity.key.clone(),
            mempool_txs_max: 10_000,
            block_txs_max: 64,
            block_source: BlockSource::Consensus,
        })?;
        let height = node.next_height()?;
        self.disk.head = height - 1;
        let validators = ValidatorSet::from_ledger(&node.validators_for(height)?);
        let core = State::new(
            identity.ctx.clone(),
            Height(height),
            validators.clone(),
            Params {
                address: identity.address,
                threshold_params: ThresholdParams::default(),
                value_payload: ValuePayload::ProposalAndParts,
                enabled: true,
            },
            QUEUE_HEIGHTS_MAX,
            QUEUE_PER_HEIGHT_MAX,
        );
        let replay = if self.disk.wal_height == height {
            self.disk.wal.clone()
        } else {
            self.disk.wal_height = height;
            self.disk.wal.clear();
            Vec::new()
        };
        self.disk
            .candidates
            .retain(|_, candidate| candidate.proposed.height.0 >= height);
        self.incarnation += 1;
        let mut outbox = node.take_gossip();
        let gossip = Box::new(move || {
            let mut txs = Vec::new();
            if let Some(outbox) = &mut outbox {
                while let Ok(batch) = outbox.try_recv() {
                    txs.extend(batch);
                }
            }
            txs
        });
        self.live = Some(Live {
            core,
            metrics: Metrics::new(),
            app: App {
                node,
                gossip,
                validators: validators.clone(),
                timers: Vec::new(),
                future: BTreeMap::new(),
                recovering: false,
                sync_pending: None,
                tips: vec![0; identity.keys.len()],
            },
        });
        let start = Input::StartHeight(
            Height(height),
            validators,
            false,
            None,
            VoteExtensionPolicy::Disabled,
        );
        Ok((start, replay))
    }

    /// Marks the start or end of a write-ahead log replay, as the engine does around it.
    pub fn set_replaying(&mut self, entries: Option<&[Input<Ctx>]>) {
        if let Some(live) = &mut self.live {
            match entries {
                Some(entries) => {
                    live.core.index_wal_entries(entries.iter());
                    live.app.recovering = true;
                }
                None => {
                    live.core.reset_entries_index();
                    live.app.recovering = false;
                }
            }
        }
    }

    /// The consensus state in one line: height, round, step, the locked and valid values, and
    /// the blocks held with their verdicts. Printed when a run stalls.
    pub fn describe(&self) -> String {
        let Some(live) = &self.live else {
            return "down".into();
        };
        let short = |value: &BlockId| value.0.to_hex()[..8].to_string();
        let state = live.core.driver.round_state();
        let locked = state
            .locked
            .as_ref()
            .map(|locked| format!("{} at round {}", short(&locked.value), locked.round));
        let valid = state
            .valid
            .as_ref()
            .map(|valid| format!("{} at round {}", short(&valid.value), valid.round));
        let held: Vec<String> = self
            .disk
            .candidates
            .values()
            .map(|candidate| {
                format!(
                    "{} (round {}, {:?})",
                    short(&candidate.proposed.value),
                    candidate.proposed.round,
                    candidate.proposed.validity
                )
            })
            .collect();
        format!(
            "height {} round {} step {:?}, locked {:?}, valid {:?}, holds {}",
            live.core.height(),
            live.core.round(),
            state.step,
            locked,
            valid,
            held.join(", ")
        )
    }

    /// Loses everything but the disk. Dropping the node closes its store.
    pub fn crash(&mut self) {
        self.live = None;
    }

    /// The node, while the validator runs.
    pub fn node(&self) -> Option<&Node> {
        self.live.as_ref().map(|live| &live.app.node)
    }

    /// Feeds one input to the consensus core and answers every effect it yields.
    pub fn process(&mut self, input: Input<Ctx>, now_ms: u64) -> Result<Vec<Action>, SimError> {
        let Replica {
            identity,
            disk,
            live,
            incarnation,
            next_timer_id,
        } = self;
        let Some(Live { core, metrics, app }) = live.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut failure: Option<SimError> = None;
        let mut step = Step {
            identity,
            disk,
            app,
            incarnation: *incarnation,
            next_timer_id,
            now_ms,
            out: &mut out,
        };
        let result: Result<(), malachitebft_core_consensus::Error<Ctx>> = malachitebft_core_consensus::process!(
            input: input,
            state: core,
            metrics: metrics,
            with: effect => match step.on_effect(effect) {
                Ok(resume) => Ok::<Resume<Ctx>, String>(resume),
                Err(error) => {
                    let message = error.to_string();
                    failure.get_or_insert(error);
                    Err(message)
                }
            }
        );
        if let Some(error) = failure {
            return Err(error);
        }
        if let Err(error) = result {
            out.push(Action::EngineError(error.to_string()));
        }
        Ok(out)
    }

    /// A timer went off: the timeout input, if that timer is still the scheduled one.
    pub fn on_timer(&mut self, timeout: Timeout, id: u64) -> Option<Input<Ctx>> {
        let app = &mut self.live.as_mut()?.app;
        let position = app
            .timers
            .iter()
            .position(|(scheduled, scheduled_id)| *scheduled == timeout && *scheduled_id == id)?;
        app.timers.remove(position);
        Some(Input::TimeoutElapsed(timeout))
    }

    /// Handles a message from validator `from`.
    pub fn on_message(
        &mut self,
        from: usize,
        message: Message,
        now_ms: u64,
    ) -> Result<Vec<Action>, SimError> {
        let Some(live) = self.live.as_mut() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        match message {
            Message::Consensus(SignedConsensusMsg::Vote(vote)) => {
                out.push(Action::Input(Input::Vote(vote)));
            }
            Message::Consensus(SignedConsensusMsg::Proposal(proposal)) => {
                out.push(Action::Input(Input::Proposal(proposal)));
            }
            Message::Liveness(LivenessMsg::Vote(vote)) => {
                out.push(Action::Input(Input::Vote(vote)))
            }
            Message::Liveness(LivenessMsg::PolkaCertificate(certificate)) => {
                out.push(Action::Input(Input::PolkaCertificate(certificate)));
            }
            Message::Liveness(LivenessMsg::SkipRoundCertificate(certificate)) => {
                out.push(Action::Input(Input::RoundCertificate(certificate)));
            }
            Message::Block {
                block,
                round,
                pol_round,
            } => {
                let height = live.core.height().0;
                let block_height = block.header.height;
                if block_height > height {
                    // A peer ahead of this validator: keep the block and judge it once this
                    // validator reaches its height.
                    if block_height <= height + FUTURE_HEIGHTS_MAX {
                        let kept = live.app.future.entry(block_height).or_default();
                        if kept.len() < FUTURE_BLOCKS_MAX {
                            kept.push(FutureBlock {
                                from,
                                block,
                                round,
                                pol_round,
                            });
                        }
                    }
                } else if block_height == height {
                    let expected = *live.core.get_proposer(Height(height), round);
                    let sender = self.identity.keys[from];
                    let built_by_sender = block.header.proposer == sender
                        || self.identity.restream == Restream::AnyLockedBlock
                            && pol_round.is_defined();
                    if expected == Address(sender) && built_by_sender {
                        let mut step = Step {
                            identity: &self.identity,
                            disk: &mut self.disk,
                            app: &mut live.app,
                            incarnation: self.incarnation,
                            next_timer_id: &mut self.next_timer_id,
                            now_ms,
                            out: &mut out,
                        };
                        let proposed = step.judge(block, round, pol_round, expected)?;
                        out.push(Action::Input(Input::ProposedValue(
                            proposed,
                            ValueOrigin::Consensus,
                        )));
                    }
                }
            }
            Message::Status { tip } => {
                if let Some(known) = live.app.tips.get_mut(from) {
                    *known = (*known).max(tip);
                }
                if let Some(action) = self.sync_request(now_ms) {
                    out.push(action);
                }
            }
            Message::SyncRequest { height } => {
                if let Some((block_bytes, certificate)) = live.app.node.decided_block(height)? {
                    out.push(Action::Send {
                        to: from,
                        message: Message::SyncResponse {
                            block_bytes,
                            certificate,
                        },
                    });
                }
            }
            Message::Txs(txs) => {
                // Refusals (a nonce already used, a duplicate) are the mempool's business.
                let _ = live.app.node.submit_gossiped(txs);
            }
            Message::SyncResponse {
                block_bytes,
                certificate,
            } => {
                if certificate.height == live.core.height().0 {
                    let certificate =
                        ExtendedCommitCertificate::from_commit_certificate_and_extensions(
                            to_engine(&certificate),
                            VoteExtensions::new(Vec::new()),
                        );
                    out.push(Action::Input(Input::SyncValueResponse(ValueResponse::new(
                        self.identity.peers[from],
                        block_bytes.into(),
                        certificate,
                    ))));
                }
            }
        }
        Ok(out)
    }

    /// Asks a validator that has committed the height this one needs for it, unless a request
    /// for that height is already waiting.
    pub fn sync_request(&mut self, now_ms: u64) -> Option<Action> {
        let live = self.live.as_mut()?;
        let needed = self.disk.head + 1;
        if let Some((height, at_ms)) = live.app.sync_pending
            && height == needed
            && now_ms < at_ms + SYNC_RETRY_MS
        {
            return None;
        }
        // The validator with the highest tip, the lowest index among equals.
        let (peer, tip) = live
            .app
            .tips
            .iter()
            .enumerate()
            .filter(|(peer, _)| *peer != self.identity.index)
            .max_by_key(|(peer, tip)| (**tip, std::cmp::Reverse(*peer)))?;
        if *tip < needed {
            return None;
        }
        live.app.sync_pending = Some((needed, now_ms));
        Some(Action::Send {
            to: peer,
            message: Message::SyncRequest { height: needed },
        })
    }

    /// Builds this validator's block for (height, round), or reuses the one it already proposed at
    /// this height. Returns the block with the actions that propose and publish it.
    pub fn build_value(
        &mut self,
        height: u64,
        round: Round,
        now_ms: u64,
    ) -> Result<Option<Built>, SimError> {
        let Some(live) = self.live.as_mut() else {
            return Ok(None);
        };
        if live.core.height().0 != height {
            return Ok(None);
        }
        let own = self.identity.key.public_key();
        let reused = self
            .disk
            .candidates
            .values()
            .find(|candidate| {
                candidate.block.header.height == height && candidate.block.header.proposer == own
            })
            .map(|candidate| candidate.block.clone());
        let block = match reused {
            Some(block) => block,
            None => Arc::new(
                live.app
                    .node
                    .propose(block_time_ms(&self.identity.genesis, now_ms))?,
            ),
        };
        let hash = block.hash();
        self.disk.candidates.insert(
            hash,
            Candidate {
                block: block.clone(),
                proposed: ProposedValue {
                    height: Height(height),
                    round,
                    valid_round: Round::Nil,
                    proposer: self.identity.address,
                    value: BlockId(hash),
                    validity: Validity::Valid,
                },
                incarnation: self.incarnation,
            },
        );
        let actions = vec![
            Action::Input(Input::Propose(
                malachitebft_core_consensus::LocallyProposedValue::new(
                    Height(height),
                    round,
                    BlockId(hash),
                ),
            )),
            Action::PublishBlock {
                block: block.clone(),
                round,
                pol_round: Round::Nil,
            },
        ];
        Ok(Some(Built { block, actions }))
    }

    /// A second valid block for the height in progress, at a later time: what an equivocating
    /// proposer sends to some peers.
    pub fn propose_other(&self, time_ms: u64) -> Result<Option<Block>, SimError> {
        match &self.live {
            Some(live) => Ok(Some(live.app.node.propose(time_ms)?)),
            None => Ok(None),
        }
    }

    /// Keeps a block this validator made, so it can commit it if it is decided.
    pub fn keep_own(&mut self, block: Arc<Block>, round: Round) {
        let hash = block.hash();
        self.disk.candidates.insert(
            hash,
            Candidate {
                proposed: ProposedValue {
                    height: Height(block.header.height),
                    round,
                    valid_round: Round::Nil,
                    proposer: self.identity.address,
                    value: BlockId(hash),
                    validity: Validity::Valid,
                },
                block,
                incarnation: self.incarnation,
            },
        );
    }

    pub fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<Ctx, Proposal>, SimError> {
        ready(self.identity.provider.sign_proposal(proposal))?.map_err(SimError::signing)
    }

    pub fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<Ctx, Vote>, SimError> {
        ready(self.identity.provider.sign_vote(vote))?.map_err(SimError::signing)
    }

    /// Admits client transactions into the node's mempool; refusals (a nonce already used) are
    /// what clients see too, and are ignored.
    pub fn submit(&self, txs: Vec<Tx>) -> usize {
        match self.node() {
            Some(node) => node
                .submit(txs)
                .into_iter()
                .filter(|result| result.is_ok())
                .count(),
            None => 0,
        }
    }

    /// The client transactions the node queued for gossip since the last call.
    pub fn take_gossip(&mut self) -> Vec<Tx> {
        match &mut self.live {
            Some(live) => (live.app.gossip)(),
            None => Vec::new(),
        }
    }

    /// The next nonce of `key` in the committed state.
    pub fn next_nonce(&self, key: &PublicKey) -> Result<Option<u64>, SimError> {
        match self.node() {
            Some(node) => Ok(Some(node.account(key)?.1)),
            None => Ok(None),
        }
    }
}

/// The context of one effect: everything but the consensus core, which the coroutine holds.
struct Step<'a> {
    identity: &'a Identity,
    disk: &'a mut Disk,
    app: &'a mut App,
    incarnation: u32,
    next_timer_id: &'a mut u64,
    now_ms: u64,
    out: &'a mut Vec<Action>,
}

impl Step<'_> {
    fn timeouts() -> LinearTimeouts {
        EngineSettings::lan_timeouts()
    }

    /// Checks a complete block against the head and records the verdict, as `app.rs` does.
    fn judge(
        &mut self,
        block: Arc<Block>,
        round: Round,
        valid_round: Round,
        proposer: Address,
    ) -> Result<ProposedValue<Ctx>, SimError> {
        let hash = block.hash();
        let now = block_time_ms(&self.identity.genesis, self.now_ms);
        let validity = match self.app.node.validate(&block, now) {
            Ok(()) => Validity::Valid,
            Err(InvalidBlock::Node(error)) => return Err(error.into()),
            Err(InvalidBlock::Invalid(_) | InvalidBlock::WrongHeight { .. }) => Validity::Invalid,
        };
        self.out.push(Action::Judged {
            hash,
            valid: validity == Validity::Valid,
        });
        let proposed = ProposedValue {
            height: Height(block.header.height),
            round,
            valid_round,
            proposer,
            value: BlockId(hash),
            validity,
        };
        self.disk.candidates.insert(
            hash,
            Candidate {
                block,
                proposed: proposed.clone(),
                incarnation: self.incarnation,
            },
        );
        Ok(proposed)
    }

    fn on_effect(&mut self, effect: Effect<Ctx>) -> Result<Resume<Ctx>, SimError> {
        let provider = &self.identity.provider;
        let ctx = &self.identity.ctx;
        Ok(match effect {
            Effect::CancelAllTimeouts(resume) => {
                self.app.timers.clear();
                resume.resume_with(())
            }
            Effect::CancelTimeout(timeout, resume) => {
                self.app
                    .timers
                    .retain(|(scheduled, _)| *scheduled != timeout);
                resume.resume_with(())
            }
            Effect::ScheduleTimeout(timeout, resume) => {
                *self.next_timer_id += 1;
                let id = *self.next_timer_id;
                self.app
                    .timers
                    .retain(|(scheduled, _)| *scheduled != timeout);
                self.app.timers.push((timeout, id));
                let after_ms = Self::timeouts().duration_for(timeout).as_millis() as u64;
                self.out.push(Action::Timer {
                    timeout,
                    id,
                    after_ms,
                });
                resume.resume_with(())
            }
            Effect::StartRound(height, round, _proposer, _role, resume) => {
                // Blocks that arrived before this validator reached the height.
                if let Some(kept) = self.app.future.remove(&height.0) {
                    for future in kept {
                        let expected = proposer(&self.app.validators, height, future.round).address;
                        if expected == Address(self.identity.keys[future.from])
                            && future.block.header.proposer == expected.0
                        {
                            self.judge(future.block, future.round, future.pol_round, expected)?;
                        }
                    }
                }
                for candidate in self.disk.candidates.values() {
                    if candidate.proposed.height == height && candidate.proposed.round == round {
                        self.out.push(Action::Input(Input::ProposedValue(
                            candidate.proposed.clone(),
                            ValueOrigin::Consensus,
                        )));
                    }
                }
                resume.resume_with(())
            }
            Effect::PublishConsensusMsg(message, resume) => {
                self.out.push(Action::Publish(message));
                resume.resume_with(())
            }
            Effect::PublishLivenessMsg(message, resume) => {
                self.out.push(Action::Broadcast(Message::Liveness(message)));
                resume.resume_with(())
            }
            Effect::RepublishVote(vote, resume) => {
                self.out
                    .push(Action::Broadcast(Message::Liveness(LivenessMsg::Vote(
                        vote,
                    ))));
                resume.resume_with(())
            }
            Effect::RepublishRoundCertificate(certificate, resume) => {
                self.out.push(Action::Broadcast(Message::Liveness(
                    LivenessMsg::SkipRoundCertificate(certificate),
                )));
                resume.resume_with(())
            }
            Effect::GetValue(height, round, timeout, resume) => {
                // Wait a little for transactions rather than propose an empty block, but leave
                // most of the engine's allowance, as `app.rs` does.
                let after_ms = if self.app.node.has_pending_txs() {
                    0
                } else {
                    let allowance = Self::timeouts().duration_for(timeout).as_millis() as u64;
                    EMPTY_BLOCK_WAIT_MS.min(allowance / 2)
                };
                self.out.push(Action::BuildValue {
                    height: height.0,
                    round,
                    after_ms,
                });
                resume.resume_with(())
            }
            Effect::RestreamProposal(height, round, valid_round, _address, value_id, resume) => {
                if let Some(candidate) = self.disk.candidates.get(&value_id.0)
                    && candidate.proposed.height == height
                    && (candidate.block.header.proposer == self.identity.key.public_key()
                        || self.identity.restream == Restream::AnyLockedBlock)
                {
                    self.out.push(Action::PublishBlock {
                        block: candidate.block.clone(),
                        round,
                        pol_round: valid_round,
                    });
                }
                resume.resume_with(())
            }
            Effect::CertVerifiedSyncValue(value, proposer, resume) => {
                self.app.sync_pending = None;
                self.out.push(Action::SyncedValue);
                if let Ok(block) = Block::from_bytes(&value.value_bytes)
                    && block.header.height == value.certificate.height.0
                {
                    let proposed = self.judge(
                        Arc::new(block),
                        value.certificate.round,
                        Round::Nil,
                        proposer,
                    )?;
                    self.out.push(Action::Input(Input::ProposedValue(
                        proposed,
                        ValueOrigin::Sync,
                    )));
                }
                resume.resume_with(())
            }
            Effect::CertRejectedSyncValue(_peer, _height, _error, resume) => {
                self.app.sync_pending = None;
                resume.resume_with(())
            }
            Effect::Decide(certificate, _extensions, resume) => {
                let height = certificate.height.0;
                let hash = certificate.value_id.0;
                let candidate = self
                    .disk
                    .candidates
                    .get(&hash)
                    .ok_or(SimError::MissingBlock {
                        node: self.identity.index,
                        height,
                    })?;
                let restored = candidate.incarnation < self.incarnation;
                self.app
                    .node
                    .commit_decided(&candidate.block, &to_ledger(&certificate))?;
                self.disk.head = height;
                self.out.push(Action::Decided {
                    height,
                    round: round_number(certificate.round),
                    hash,
                    restored,
                });
                resume.resume_with(())
            }
            Effect::Finalize(certificate, _extensions, evidence, resume) => {
                let height = certificate.height.0;
                let next = height + 1;
                let evidence = evidence
                    .proposals
                    .iter()
                    .map(|(_, proposals)| proposals.len())
                    .sum::<usize>()
                    + evidence
                        .votes
                        .iter()
                        .map(|(_, votes)| votes.len())
                        .sum::<usize>();
                // The engine's log moves to the next height, and the height's blocks are done.
                self.disk.wal_height = next;
                self.disk.wal.clear();
                self.disk
                    .candidates
                    .retain(|_, candidate| candidate.proposed.height.0 >= next);
                self.app.future.retain(|kept, _| *kept >= next);
                self.app.validators =
                    ValidatorSet::from_ledger(&self.app.node.validators_for(next)?);
                self.out.push(Action::Input(Input::StartHeight(
                    Height(next),
                    self.app.validators.clone(),
                    false,
                    None,
                    VoteExtensionPolicy::Disabled,
                )));
                self.out.push(Action::Finalized { height, evidence });
                resume.resume_with(())
            }
            Effect::SignVote(vote, resume) => {
                let signed = ready(provider.sign_vote(vote))?.map_err(SimError::signing)?;
                resume.resume_with(signed)
            }
            Effect::SignProposal(proposal, resume) => {
                let signed = ready(provider.sign_proposal(proposal))?.map_err(SimError::signing)?;
                resume.resume_with(signed)
            }
            Effect::VerifySignature(message, public_key, resume) => {
                use malachitebft_core_consensus::ConsensusMsg;
                let verdict = match &message.message {
                    ConsensusMsg::Vote(vote) => {
                        ready(provider.verify_signed_vote(vote, &message.signature, &public_key))?
                    }
                    ConsensusMsg::Proposal(proposal) => ready(provider.verify_signed_proposal(
                        proposal,
                        &message.signature,
                        &public_key,
                    ))?,
                };
                // An incomplete check counts as invalid, as in the engine.
                resume.resume_with(verdict.map(|result| result.is_valid()).unwrap_or(false))
            }
            Effect::VerifyCommitCertificate(certificate, validators, thresholds, resume) => resume
                .resume_with(ready(provider.verify_commit_certificate(
                    ctx,
                    &certificate,
                    &validators,
                    thresholds,
                ))?),
            Effect::VerifyExtendedCommitCertificate(
                certificate,
                validators,
                thresholds,
                policy,
                resume,
            ) => resume.resume_with(ready(provider.verify_extended_commit_certificate(
                ctx,
                &certificate,
                &validators,
                thresholds,
                policy,
            ))?),
            Effect::VerifyPolkaCertificate(certificate, validators, thresholds, resume) => resume
                .resume_with(ready(provider.verify_polka_certificate(
                    ctx,
                    &certificate,
                    &validators,
                    thresholds,
                ))?),
            Effect::VerifyRoundCertificate(certificate, validators, thresholds, resume) => resume
                .resume_with(ready(provider.verify_round_certificate(
                    ctx,
                    &certificate,
                    &validators,
                    thresholds,
                ))?),
            Effect::WalAppend(height, entry, resume) => {
                if !self.app.recovering && height.0 == self.disk.wal_height {
                    self.disk.wal.push(entry);
                }
                resume.resume_with(())
            }
            // Vote extensions are disabled, as in the engine adapter.
            Effect::ExtendVote(_, _, _, _, resume) => resume.resume_with(None),
            Effect::VerifyVoteExtension(_, _, _, _, _, _, resume) => resume.resume_with(Ok(())),
        })
    }
}

/// A vote that contradicts `vote`: for `other` if the voter has another block, else nil for a
/// block vote, else a vote for a block that does not exist.
pub fn conflicting_vote(vote: &Vote, other: Option<BlockId>) -> Vote {
    let value = match (&vote.value, other) {
        (_, Some(other)) if vote.value != NilOrVal::Val(other) => NilOrVal::Val(other),
        (NilOrVal::Val(_), _) => NilOrVal::Nil,
        (NilOrVal::Nil, _) => NilOrVal::Val(BlockId(medledger_crypto::sha256(b"no such block"))),
    };
    Vote {
        vote_type: vote.vote_type,
        height: vote.height,
        round: vote.round,
        value,
        validator: vote.validator,
        extension: None,
    }
}
