//! One simulated validator: a real `medledger_node::Node` on its own directory, Malachite's
//! consensus core (`State` plus the `process!` coroutine) driven directly, and the node's own
//! consensus host (`medledger_consensus::host::Host`), which decides every answer the
//! application gives the engine, exactly as in `medledger_consensus::app`. What this file adds
//! is only what Malachite's engine does around the core (timers, the write-ahead log, value
//! sync's requests) and the simulated network's delivery.
//!
//! What survives a crash is what survives a real crash: the node's redb store, the engine's
//! write-ahead log (kept here in memory, outside the validator, and written before any message it
//! records is sent, which is what the engine's fsync before publishing guarantees), and the
//! host's block journal (a `MemoryJournal` kept outside the validator, written before the host
//! returns, as the node's journal is fsync'd). A restarted validator replays its log exactly as
//! the engine does: start the height, index the log, feed every entry back, drop the index.
//! Replay re-derives the same votes, so it never signs a conflicting one.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use malachitebft_core_consensus::{
    Effect, Input, LivenessMsg, Params, PeerId, ProposedValue, Resumable, Resume,
    SignedConsensusMsg, State, ValuePayload,
};
use malachitebft_core_types::{
    LinearTimeouts, NilOrVal, Round, SignedMessage, ThresholdParams, Timeout, Validity,
    ValueOrigin, ValueResponse, VoteExtensionPolicy,
};
use malachitebft_metrics::Metrics;
use malachitebft_signing::{Signer, Verifier, VerifierExt};
use medledger_consensus::context::{
    Address, BlockId, Ed25519Provider, Height, LedgerContext, Proposal, ValidatorSet, Vote,
};
use medledger_consensus::engine::EngineSettings;
use medledger_consensus::host::{Host, HostConfig, Offer};
use medledger_consensus::journal::MemoryJournal;
use medledger_crypto::{Hash, PublicKey, SecretKey};
use medledger_ledger::{Block, Tx};
use medledger_node::{BlockSource, Node, NodeConfig};
use medledger_types::Genesis;

use crate::SimError;
use crate::net::Message;

type Ctx = LedgerContext;

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

/// What outlives a crash.
#[derive(Debug)]
pub struct Disk {
    pub dir: PathBuf,
    /// The height the write-ahead log is at, and its entries for that height.
    wal_height: u64,
    wal: Vec<Input<Ctx>>,
    /// The host's block journal: a restarted validator whose log replays a precommit for a block
    /// may decide that block, and finds it here (decisions that needed it are counted in
    /// `Stats::restored_block_decides`).
    journal: MemoryJournal,
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
    /// Ask the host for this validator's block for (height, round) after `after_ms`.
    BuildValue {
        height: u64,
        round: Round,
        /// The engine's propose timeout for the round, which bounds the host's empty-block wait.
        timeout: Duration,
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
        /// The block was held only because the journal kept it across a crash.
        restored: bool,
    },
    Finalized {
        height: u64,
        evidence: usize,
    },
    /// The host moved to `height`; start it in the engine once the host's idle wait allows.
    StartHeight {
        height: u64,
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

/// What asking the host for this validator's block gave.
#[derive(Debug)]
pub enum Build {
    Built(Built),
    /// The host waits for transactions: ask again after this long.
    Wait(Duration),
    /// The validator is down or has moved on to another height.
    Nothing,
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
    /// The host's settings: the node's default empty-block wait, and the flaw a test injects.
    host: HostConfig,
}

/// The memory of a running validator, lost on a crash.
struct Live {
    core: State<Ctx>,
    metrics: Metrics,
    app: App,
}

struct App {
    /// The node's consensus host, over this validator's node.
    host: Host<MemoryJournal>,
    /// Takes the client transactions the node queued for gossip.
    gossip: Box<dyn FnMut() -> Vec<Tx>>,
    /// Scheduled timeouts and the id of each one's latest schedule.
    timers: Vec<(Timeout, u64)>,
    /// True while the write-ahead log is being replayed: entries are not written again.
    recovering: bool,
    /// The height last asked for by sync, and when.
    sync_pending: Option<(u64, u64)>,
    /// Every validator's committed height as it last said.
    tips: Vec<u64>,
    /// The height the host moved to at the last finalisation, with its validators, until the
    /// engine starts it.
    pending_start: Option<(Height, ValidatorSet)>,
}

/// What [`Replica::start_pending`] did.
#[derive(Debug)]
pub enum StartPending {
    /// The engine starts the height with this input.
    Start(Input<Ctx>),
    /// The chain idles: ask again after the pause.
    Wait(Duration),
    /// Nothing is waiting to start (the validator crashed or moved on).
    Nothing,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("host", &self.host)
            .field("timers", &self.timers)
            .finish_non_exhaustive()
    }
}

/// A simulated validator.
pub struct Replica {
    identity: Identity,
    pub disk: Disk,
    live: Option<Live>,
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
        host: HostConfig,
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
                host,
            },
            disk: Disk {
                dir,
                wal_height: 0,
                wal: Vec::new(),
                journal: MemoryJournal::default(),
                head: 0,
            },
            live: None,
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
        let mut outbox = node.take_gossip();
        let mut host = Host::open(node, identity.host.clone(), self.disk.journal.clone())?;
        let validators = ValidatorSet::from_ledger(&host.start_height(Height(height))?);
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
                host,
                gossip,
                timers: Vec::new(),
                recovering: false,
                sync_pending: None,
                tips: vec![0; identity.keys.len()],
                pending_start: None,
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
        let held: Vec<String> = live
            .app
            .host
            .candidates()
            .map(|proposed| {
                format!(
                    "{} (round {}, {:?})",
                    short(&proposed.value),
                    proposed.round,
                    proposed.validity
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
        self.live.as_ref().map(|live| live.app.host.node())
    }

    /// Feeds one input to the consensus core and answers every effect it yields.
    pub fn process(&mut self, input: Input<Ctx>, now_ms: u64) -> Result<Vec<Action>, SimError> {
        let Replica {
            identity,
            disk,
            live,
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
                // The network authenticates the sender, as the stream's signature does in the node.
                let offer = Offer {
                    block,
                    round,
                    pol_round,
                    proposer: Address(self.identity.keys[from]),
                };
                let time_ms = block_time_ms(&self.identity.genesis, now_ms);
                if let Some(proposed) = live.app.host.receive_proposal(offer, time_ms) {
                    offer_value(&mut out, proposed, ValueOrigin::Consensus);
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
                // The engine's sync asks for one height at a time here; the host serves it.
                let served = live
                    .app
                    .host
                    .decided_values(Height(height)..=Height(height));
                if let Some(value) = served.into_iter().next() {
                    out.push(Action::Send {
                        to: from,
                        message: Message::SyncResponse {
                            value_bytes: value.value_bytes,
                            certificate: value.certificate,
                        },
                    });
                }
            }
            Message::Txs(txs) => {
                // Refusals (a nonce already used, a duplicate) are the mempool's business.
                let _ = live.app.host.node().submit_gossiped(txs);
            }
            Message::SyncResponse {
                value_bytes,
                certificate,
            } => {
                if certificate.height == live.core.height() {
                    out.push(Action::Input(Input::SyncValueResponse(ValueResponse::new(
                        self.identity.peers[from],
                        value_bytes,
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

    /// Asks the host for this validator's block for (height, round): it may wait for
    /// transactions first, or reuse the block it already proposed at this height. Returns the
    /// block with the actions that propose and publish it.
    pub fn build_value(
        &mut self,
        height: u64,
        round: Round,
        timeout: Duration,
        now_ms: u64,
    ) -> Result<Build, SimError> {
        let Some(live) = self.live.as_mut() else {
            return Ok(Build::Nothing);
        };
        let height = Height(height);
        if live.core.height() != height {
            return Ok(Build::Nothing);
        }
        let host = &mut live.app.host;
        if let Some(pause) = host.value_wait(height, round, timeout, now_ms) {
            return Ok(Build::Wait(pause));
        }
        let time_ms = block_time_ms(&self.identity.genesis, now_ms);
        let Some(block) = host.propose_value(height, round, time_ms)? else {
            return Ok(Build::Nothing);
        };
        let actions = vec![
            Action::Input(Input::Propose(
                malachitebft_core_consensus::LocallyProposedValue::new(
                    height,
                    round,
                    BlockId(block.hash()),
                ),
            )),
            Action::PublishBlock {
                block: block.clone(),
                round,
                pol_round: Round::Nil,
            },
        ];
        Ok(Build::Built(Built { block, actions }))
    }

    /// Starts the height the last finalisation moved to, when the host's idle wait
    /// ([`Host::start_wait`]) allows it at `now_ms`.
    pub fn start_pending(&mut self, height: u64, now_ms: u64) -> StartPending {
        let time_ms = block_time_ms(&self.identity.genesis, now_ms);
        let Some(live) = self.live.as_mut() else {
            return StartPending::Nothing;
        };
        match &live.app.pending_start {
            Some((pending, _)) if pending.0 == height => {}
            _ => return StartPending::Nothing,
        }
        if let Some(pause) = live.app.host.start_wait(Height(height), time_ms) {
            return StartPending::Wait(pause);
        }
        let Some((height, validators)) = live.app.pending_start.take() else {
            return StartPending::Nothing;
        };
        StartPending::Start(Input::StartHeight(
            height,
            validators,
            false,
            None,
            VoteExtensionPolicy::Disabled,
        ))
    }

    /// A second valid block for the height in progress, at a later time: what an equivocating
    /// proposer sends to some peers.
    pub fn propose_other(&self, time_ms: u64) -> Result<Option<Block>, SimError> {
        match self.node() {
            Some(node) => Ok(Some(node.propose(time_ms)?)),
            None => Ok(None),
        }
    }

    /// Keeps a block this validator made, so it can commit it if it is decided.
    pub fn keep_own(&mut self, block: Arc<Block>, round: Round) {
        if let Some(live) = &mut self.live {
            live.app.host.hold_own_block(block, round);
        }
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

/// Tells the engine the host's verdict on a block, and the run what the verdict was.
fn offer_value(out: &mut Vec<Action>, proposed: ProposedValue<Ctx>, origin: ValueOrigin) {
    out.push(Action::Judged {
        hash: proposed.value.0,
        valid: proposed.validity == Validity::Valid,
    });
    out.push(Action::Input(Input::ProposedValue(proposed, origin)));
}

/// The context of one effect: everything but the consensus core, which the coroutine holds.
struct Step<'a> {
    identity: &'a Identity,
    disk: &'a mut Disk,
    app: &'a mut App,
    next_timer_id: &'a mut u64,
    now_ms: u64,
    out: &'a mut Vec<Action>,
}

impl Step<'_> {
    fn timeouts() -> LinearTimeouts {
        EngineSettings::lan_timeouts()
    }

    /// The proposer's clock this validator would read now.
    fn time_ms(&self) -> u64 {
        block_time_ms(&self.identity.genesis, self.now_ms)
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
                let time_ms = self.time_ms();
                for proposed in self.app.host.started_round(height, round, time_ms) {
                    offer_value(self.out, proposed, ValueOrigin::Consensus);
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
                // The host decides how long to wait for transactions (`Replica::build_value`).
                self.out.push(Action::BuildValue {
                    height: height.0,
                    round,
                    timeout: Self::timeouts().duration_for(timeout),
                    after_ms: 0,
                });
                resume.resume_with(())
            }
            Effect::RestreamProposal(height, round, valid_round, _address, value_id, resume) => {
                if let Some(block) = self.app.host.restream(height, &value_id) {
                    self.out.push(Action::PublishBlock {
                        block,
                        round,
                        pol_round: valid_round,
                    });
                }
                resume.resume_with(())
            }
            Effect::CertVerifiedSyncValue(value, proposer, resume) => {
                self.app.sync_pending = None;
                self.out.push(Action::SyncedValue);
                let time_ms = self.time_ms();
                if let Some(proposed) = self.app.host.synced_value(
                    value.certificate.height,
                    value.certificate.round,
                    proposer,
                    &value.value_bytes,
                    time_ms,
                ) {
                    offer_value(self.out, proposed, ValueOrigin::Sync);
                }
                resume.resume_with(())
            }
            Effect::CertRejectedSyncValue(_peer, _height, _error, resume) => {
                self.app.sync_pending = None;
                resume.resume_with(())
            }
            Effect::Decide(certificate, _extensions, resume) => {
                let height = certificate.height.0;
                let decided = self.app.host.decide(&certificate)?;
                self.disk.head = height;
                self.out.push(Action::Decided {
                    height,
                    round: round_number(certificate.round),
                    hash: certificate.value_id.0,
                    restored: decided.from_journal,
                });
                resume.resume_with(())
            }
            Effect::Finalize(certificate, _extensions, evidence, resume) => {
                let height = certificate.height.0;
                let next = Height(height + 1);
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
                // The engine's log moves to the next height, and so does the host.
                self.disk.wal_height = next.0;
                self.disk.wal.clear();
                let validators = ValidatorSet::from_ledger(&self.app.host.start_height(next)?);
                // As the node's application loop does, the engine starts the next height only
                // once the host's idle wait allows it.
                self.app.pending_start = Some((next, validators));
                self.out.push(Action::StartHeight { height: next.0 });
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
