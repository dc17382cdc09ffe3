//! One run: four validators, their network, their clients and the Byzantine validator, all on
//! one virtual clock, from one seed.
//!
//! The Byzantine validator runs the same node and consensus core as the others; what it does
//! wrong is in what it sends. When it proposes, it picks per round one of: propose honestly, send
//! a second valid block to some peers (equivocation), send a block with a wrong state root, a
//! wrong parent hash or a time too far ahead to some or all peers, or send nothing. When it votes,
//! it sends a contradicting vote to some peers, each signed with its key.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use malachitebft_core_consensus::{Input, PeerId, SignedConsensusMsg};
use malachitebft_core_types::Round;
use medledger_consensus::context::{BlockId, LedgerContext, Proposal};
use medledger_consensus::host::{Flaw, HostConfig};
use medledger_crypto::{Hash, SecretKey, hash_tagged, sha256};
use medledger_ledger::{Block, CoreOp, Tx, TxBody};
use medledger_types::{Genesis, Organisation, Validator};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::check::{self, Decision, StoredHeight, Violation};
use crate::net::{Event, MESSAGE_KINDS, Message, Queue};
use crate::plan::{FaultPlan, VALIDATORS};
use crate::replica::{Action, Build, Built, Replica, StartPending, conflicting_vote};
use crate::{Report, SimError};

/// How many heights every honest validator must gain once the faults end.
pub const PROGRESS_HEIGHTS: u64 = 10;
/// How long, after the faults end, the honest validators have to gain them.
pub const PROGRESS_WINDOW_MS: u64 = 120_000;
/// How often each validator tells the others its committed height.
const STATUS_INTERVAL_MS: u64 = 500;
/// How often clients submit transactions.
const SUBMIT_INTERVAL_MS: u64 = 400;
/// How many transactions ahead of its committed nonce a client keeps submitted.
const CLIENT_TXS_AHEAD: u64 = 3;
const GENESIS_TIME_MS: u64 = 1_700_000_000_000;

/// What a run did, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent: [u64; MESSAGE_KINDS],
    pub delivered: [u64; MESSAGE_KINDS],
    pub dropped: u64,
    pub duplicated: u64,
    pub crashes: u64,
    pub wal_entries_replayed: u64,
    pub synced_values: u64,
    pub equivocated_votes: u64,
    pub equivocated_proposals: u64,
    pub invalid_proposals: u64,
    pub silent_proposals: u64,
    /// Equivocations the honest validators' engines recorded as evidence.
    pub evidence: u64,
    pub restored_block_decides: u64,
    pub txs_committed: u64,
    /// Times a validator held the next height back because the chain was idle.
    pub idle_start_waits: u64,
}

/// What the Byzantine validator does with its proposal for one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misbehaviour {
    Honest,
    Equivocate,
    WrongStateRoot,
    WrongParent,
    FutureTime,
    Silent,
}

#[derive(Debug)]
struct ByzantineProposal {
    misbehaviour: Misbehaviour,
    /// The other block, and which validators (a bit each) get it instead of the real one.
    other: Option<Arc<Block>>,
    receivers: u8,
}

struct Sim {
    seed: u64,
    plan: FaultPlan,
    rng: ChaCha8Rng,
    now_ms: u64,
    queue: Queue,
    replicas: Vec<Replica>,
    clients: Vec<SecretKey>,
    chain_id: String,
    decisions: Vec<Decision>,
    /// (node, height, round, block) of every decision, for the digest.
    trace: Vec<u8>,
    stats: Stats,
    /// Blocks the Byzantine validator made invalid on purpose.
    invalid: BTreeSet<Hash>,
    /// Blocks honest validators judged valid.
    accepted: BTreeSet<(usize, Hash)>,
    byzantine: BTreeMap<(u64, u32), ByzantineProposal>,
    engine_errors: Vec<Violation>,
    // Dropped last, after every node has closed its store.
    _dir: tempfile::TempDir,
}

/// Runs the simulation for `seed` with the node's own consensus host, and checks it.
pub fn run(seed: u64) -> Result<Report, SimError> {
    run_with(seed, None)
}

/// Runs the simulation for `seed` with every validator's consensus host bent by `flaw` (none:
/// the node's rules), and checks it.
pub fn run_with(seed: u64, flaw: Option<Flaw>) -> Result<Report, SimError> {
    let mut sim = Sim::new(seed, flaw)?;
    sim.start()?;
    let deadline_ms = sim.plan.faults_end_ms + PROGRESS_WINDOW_MS;
    let mut target = None;
    while let Some((at_ms, event)) = sim.queue.pop() {
        if at_ms > deadline_ms {
            break;
        }
        sim.now_ms = at_ms;
        if target.is_none() && at_ms >= sim.plan.faults_end_ms {
            let best = sim.honest().map(|node| sim.replicas[node].disk.head).max();
            target = Some(best.unwrap_or(0) + PROGRESS_HEIGHTS);
        }
        sim.handle(event)?;
        if let Some(target) = target
            && sim
                .honest()
                .all(|node| sim.replicas[node].is_live() && sim.replicas[node].disk.head >= target)
        {
            break;
        }
    }
    sim.finish(target.unwrap_or(PROGRESS_HEIGHTS))
}

impl Sim {
    fn new(seed: u64, flaw: Option<Flaw>) -> Result<Sim, SimError> {
        let plan = FaultPlan::from_seed(seed);
        let dir = tempfile::Builder::new()
            .prefix("medledger-sim-")
            .tempdir()?;
        let keys: Vec<SecretKey> = (0..VALIDATORS as u64)
            .map(|index| SecretKey::from_seed(1 + index))
            .collect();
        let clients: Vec<SecretKey> = (0..VALIDATORS as u64)
            .map(|index| SecretKey::from_seed(1_000 + index))
            .collect();
        let chain_id = "medledger-sim".to_string();
        let genesis = Genesis {
            chain_id: chain_id.clone(),
            genesis_time_ms: GENESIS_TIME_MS,
            organisations: clients
                .iter()
                .enumerate()
                .map(|(index, client)| Organisation {
                    id: format!("org{index}"),
                    name: format!("Organisation {index}"),
                    root_key: client.public_key(),
                    gs1_prefixes: Vec::new(),
                })
                .collect(),
            validators: keys
                .iter()
                .enumerate()
                .map(|(index, key)| Validator {
                    key: key.public_key(),
                    power: 1,
                    org: format!("org{index}"),
                })
                .collect(),
        };
        let public: Vec<_> = keys.iter().map(SecretKey::public_key).collect();
        let mut peers = Vec::new();
        for (index, key) in public.iter().enumerate() {
            let peer_error = |reason: String| SimError::Peer {
                node: index,
                peer: index,
                reason,
            };
            let id = medledger_consensus::peer_id(key).map_err(peer_error)?;
            peers.push(
                PeerId::from_bytes(&id.to_bytes())
                    .map_err(|error| peer_error(error.to_string()))?,
            );
        }
        let replicas = keys
            .into_iter()
            .enumerate()
            .map(|(index, key)| {
                Replica::new(
                    index,
                    key,
                    genesis.clone(),
                    dir.path().join(format!("node{index}")),
                    public.clone(),
                    peers.clone(),
                    HostConfig {
                        flaw,
                        ..HostConfig::default()
                    },
                )
            })
            .collect();
        Ok(Sim {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            plan,
            now_ms: 0,
            queue: Queue::default(),
            replicas,
            clients,
            chain_id,
            decisions: Vec::new(),
            trace: Vec::new(),
            stats: Stats::default(),
            invalid: BTreeSet::new(),
            accepted: BTreeSet::new(),
            byzantine: BTreeMap::new(),
            engine_errors: Vec::new(),
            _dir: dir,
        })
    }

    fn honest(&self) -> impl Iterator<Item = usize> + use<> {
        let byzantine = self.plan.byzantine;
        (0..VALIDATORS).filter(move |node| *node != byzantine)
    }

    /// A draw below `per_mille` out of a thousand.
    fn chance(&mut self, per_mille: u32) -> bool {
        self.rng.next_u64() % 1_000 < u64::from(per_mille)
    }

    fn start(&mut self) -> Result<(), SimError> {
        for crash in self.plan.crashes.clone() {
            self.queue
                .push(crash.at_ms, Event::Crash { node: crash.node });
            self.queue
                .push(crash.restart_ms, Event::Restart { node: crash.node });
        }
        self.queue.push(0, Event::SubmitTick);
        self.queue.push(STATUS_INTERVAL_MS, Event::StatusTick);
        for node in 0..VALIDATORS {
            self.start_replica(node)?;
        }
        Ok(())
    }

    /// Starts a validator from its disk, replaying its write-ahead log as the engine does.
    fn start_replica(&mut self, node: usize) -> Result<(), SimError> {
        let (start, replay) = self.replicas[node].start()?;
        // Inputs that starting the height and replaying the log give rise to (the blocks the
        // application offers for the first round) wait until the replay is over, as actor
        // messages do in the engine; fed earlier, they could make the validator vote before it
        // has re-read its own votes.
        let mut deferred = VecDeque::new();
        let actions = self.replicas[node].process(start, self.now_ms)?;
        self.dispatch(node, actions, &mut deferred)?;
        if replay.is_empty() {
            return self.drain(node, deferred);
        }
        self.stats.wal_entries_replayed += replay.len() as u64;
        self.replicas[node].set_replaying(Some(&replay));
        for entry in replay {
            let actions = self.replicas[node].process(entry, self.now_ms)?;
            self.dispatch(node, actions, &mut deferred)?;
        }
        self.replicas[node].set_replaying(None);
        self.drain(node, deferred)
    }

    fn handle(&mut self, event: Event) -> Result<(), SimError> {
        match event {
            Event::Deliver { from, to, message } => {
                if self.now_ms < self.plan.faults_end_ms
                    && self.plan.partitioned(self.now_ms, from, to)
                    || !self.replicas[to].is_live()
                {
                    self.stats.dropped += 1;
                    return Ok(());
                }
                self.stats.delivered[message.kind()] += 1;
                let actions = self.replicas[to].on_message(from, message, self.now_ms)?;
                self.run_actions(to, actions)
            }
            Event::Timer { node, timeout, id } => match self.replicas[node].on_timer(timeout, id) {
                Some(input) => self.feed(node, input),
                None => Ok(()),
            },
            Event::BuildValue {
                node,
                height,
                round,
                timeout,
            } => self.build_value(node, height, round, timeout),
            Event::StartHeight { node, height } => {
                match self.replicas[node].start_pending(height, self.now_ms) {
                    StartPending::Start(input) => {
                        self.run_actions(node, vec![Action::Input(input)])
                    }
                    StartPending::Wait(pause) => {
                        self.stats.idle_start_waits += 1;
                        self.queue.push(
                            self.now_ms + pause.as_millis() as u64,
                            Event::StartHeight { node, height },
                        );
                        Ok(())
                    }
                    StartPending::Nothing => Ok(()),
                }
            }
            Event::Crash { node } => {
                self.stats.crashes += 1;
                self.replicas[node].crash();
                Ok(())
            }
            Event::Restart { node } => self.start_replica(node),
            Event::StatusTick => {
                for node in 0..VALIDATORS {
                    if self.replicas[node].is_live() {
                        let tip = self.replicas[node].disk.head;
                        self.broadcast(node, &Message::Status { tip });
                    }
                }
                self.queue
                    .push(self.now_ms + STATUS_INTERVAL_MS, Event::StatusTick);
                Ok(())
            }
            Event::SubmitTick => {
                self.submit()?;
                self.queue
                    .push(self.now_ms + SUBMIT_INTERVAL_MS, Event::SubmitTick);
                Ok(())
            }
        }
    }

    /// Each organisation's client keeps its next few anchors submitted to its own validator, which
    /// gossips them to the others. A transaction's content depends only on (client, nonce), so
    /// resubmitting is harmless.
    fn submit(&mut self) -> Result<(), SimError> {
        for (index, client) in self.clients.iter().enumerate() {
            let sender = client.public_key();
            let Some(next) = self.replicas[index].next_nonce(&sender)? else {
                continue;
            };
            let txs: Vec<Tx> = (next..next + CLIENT_TXS_AHEAD)
                .map(|nonce| {
                    let id = hash_tagged(
                        b"medledger/sim-anchor/v1",
                        &[&sender.0, &nonce.to_le_bytes()],
                    );
                    TxBody {
                        chain_id: self.chain_id.clone(),
                        sender,
                        nonce,
                        payload: CoreOp::Anchor {
                            id,
                            commitment: sha256(&id.0),
                        }
                        .into(),
                    }
                    .sign(client)
                })
                .collect();
            self.replicas[index].submit(txs);
        }
        for node in 0..VALIDATORS {
            let txs = self.replicas[node].take_gossip();
            if !txs.is_empty() {
                self.broadcast(node, &Message::Txs(txs));
            }
        }
        Ok(())
    }

    fn feed(&mut self, node: usize, input: Input<LedgerContext>) -> Result<(), SimError> {
        self.drain(node, VecDeque::from([input]))
    }

    fn run_actions(&mut self, node: usize, actions: Vec<Action>) -> Result<(), SimError> {
        let mut inputs = VecDeque::new();
        self.dispatch(node, actions, &mut inputs)?;
        self.drain(node, inputs)
    }

    /// Feeds inputs to a validator one at a time, each one's follow-up inputs after it.
    fn drain(
        &mut self,
        node: usize,
        mut inputs: VecDeque<Input<LedgerContext>>,
    ) -> Result<(), SimError> {
        while let Some(input) = inputs.pop_front() {
            let actions = self.replicas[node].process(input, self.now_ms)?;
            self.dispatch(node, actions, &mut inputs)?;
        }
        Ok(())
    }

    fn dispatch(
        &mut self,
        node: usize,
        actions: Vec<Action>,
        inputs: &mut VecDeque<Input<LedgerContext>>,
    ) -> Result<(), SimError> {
        for action in actions {
            match action {
                Action::Input(input) => inputs.push_back(input),
                Action::Send { to, message } => self.send(node, to, message),
                Action::Broadcast(message) => self.broadcast(node, &message),
                Action::Publish(message) => {
                    if node == self.plan.byzantine {
                        self.byzantine_publish(node, message)?;
                    } else {
                        self.broadcast(node, &Message::Consensus(message));
                    }
                }
                Action::PublishBlock {
                    block,
                    round,
                    pol_round,
                } => self.publish_block(node, block, round, pol_round),
                Action::Timer {
                    timeout,
                    id,
                    after_ms,
                } => self
                    .queue
                    .push(self.now_ms + after_ms, Event::Timer { node, timeout, id }),
                Action::BuildValue {
                    height,
                    round,
                    timeout,
                    after_ms,
                } => self.queue.push(
                    self.now_ms + after_ms,
                    Event::BuildValue {
                        node,
                        height,
                        round,
                        timeout,
                    },
                ),
                Action::StartHeight { height } => self
                    .queue
                    .push(self.now_ms, Event::StartHeight { node, height }),
                Action::Judged { hash, valid } => {
                    if valid && node != self.plan.byzantine {
                        self.accepted.insert((node, hash));
                    }
                }
                Action::Decided {
                    height,
                    round,
                    hash,
                    restored,
                } => {
                    self.decisions.push(Decision { node, height, hash });
                    self.trace.extend((node as u64).to_le_bytes());
                    self.trace.extend(height.to_le_bytes());
                    self.trace.extend(round.to_le_bytes());
                    self.trace.extend(self.now_ms.to_le_bytes());
                    self.trace.extend(hash.0);
                    if restored {
                        self.stats.restored_block_decides += 1;
                    }
                }
                Action::Finalized { evidence, .. } => {
                    if node != self.plan.byzantine {
                        self.stats.evidence += evidence as u64;
                    }
                    // A validator behind the others asks for the next height straight away.
                    if let Some(Action::Send { to, message }) =
                        self.replicas[node].sync_request(self.now_ms)
                    {
                        self.send(node, to, message);
                    }
                }
                Action::SyncedValue => self.stats.synced_values += 1,
                Action::EngineError(error) => {
                    if node != self.plan.byzantine {
                        self.engine_errors.push(Violation::Engine { node, error });
                    }
                }
            }
        }
        Ok(())
    }

    /// Puts a message on the network: lost, delayed, reordered or duplicated as the plan says.
    fn send(&mut self, from: usize, to: usize, message: Message) {
        self.stats.sent[message.kind()] += 1;
        let faulty = self.now_ms < self.plan.faults_end_ms;
        if faulty
            && (self.plan.partitioned(self.now_ms, from, to)
                || self.chance(self.plan.drop_per_mille))
        {
            self.stats.dropped += 1;
            return;
        }
        let copies = if faulty && self.chance(self.plan.duplicate_per_mille) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.plan.latency_ms + self.rng.next_u64() % (self.plan.jitter_ms + 1);
            self.queue.push(
                self.now_ms + delay,
                Event::Deliver {
                    from,
                    to,
                    message: message.clone(),
                },
            );
        }
    }

    fn broadcast(&mut self, from: usize, message: &Message) {
        for to in 0..VALIDATORS {
            if to != from {
                self.send(from, to, message.clone());
            }
        }
    }

    /// A random non-empty set of `node`'s peers, a bit each.
    fn some_peers(&mut self, node: usize) -> u8 {
        let all = ((1u8 << VALIDATORS) - 1) & !(1 << node);
        let chosen = (self.rng.next_u64() as u8) & all;
        if chosen != 0 {
            return chosen;
        }
        let peers: Vec<usize> = (0..VALIDATORS).filter(|peer| *peer != node).collect();
        1 << peers[(self.rng.next_u64() % peers.len() as u64) as usize]
    }

    fn build_value(
        &mut self,
        node: usize,
        height: u64,
        round: Round,
        timeout: Duration,
    ) -> Result<(), SimError> {
        let Built { block, actions } =
            match self.replicas[node].build_value(height, round, timeout, self.now_ms)? {
                Build::Built(built) => built,
                Build::Wait(pause) => {
                    let event = Event::BuildValue {
                        node,
                        height,
                        round,
                        timeout,
                    };
                    self.queue
                        .push(self.now_ms + pause.as_millis() as u64, event);
                    return Ok(());
                }
                Build::Nothing => return Ok(()),
            };
        if node == self.plan.byzantine {
            self.plan_misbehaviour(node, &block, round)?;
        }
        self.run_actions(node, actions)
    }

    /// Chooses what the Byzantine validator does with its proposal for this round.
    fn plan_misbehaviour(
        &mut self,
        node: usize,
        block: &Arc<Block>,
        round: Round,
    ) -> Result<(), SimError> {
        let misbehaviour = match self.rng.next_u64() % 6 {
            0 => Misbehaviour::Honest,
            1 => Misbehaviour::Equivocate,
            2 => Misbehaviour::WrongStateRoot,
            3 => Misbehaviour::WrongParent,
            4 => Misbehaviour::FutureTime,
            _ => Misbehaviour::Silent,
        };
        let mut other = (**block).clone();
        let other = match misbehaviour {
            Misbehaviour::Honest | Misbehaviour::Silent => None,
            Misbehaviour::Equivocate => {
                let time_ms = block.header.time_ms + 1;
                let replica = &mut self.replicas[node];
                match replica.propose_other(time_ms)? {
                    Some(block) => {
                        let block = Arc::new(block);
                        replica.keep_own(block.clone(), round);
                        Some(block)
                    }
                    None => None,
                }
            }
            Misbehaviour::WrongStateRoot => {
                other.header.state_root = sha256(b"not the state root");
                Some(Arc::new(other))
            }
            Misbehaviour::WrongParent => {
                other.header.prev_hash = sha256(b"not the parent");
                Some(Arc::new(other))
            }
            Misbehaviour::FutureTime => {
                other.header.time_ms += 60_000;
                Some(Arc::new(other))
            }
        };
        match misbehaviour {
            Misbehaviour::Honest => {}
            Misbehaviour::Silent => self.stats.silent_proposals += 1,
            Misbehaviour::Equivocate => self.stats.equivocated_proposals += 1,
            _ => {
                self.stats.invalid_proposals += 1;
                if let Some(other) = &other {
                    self.invalid.insert(other.hash());
                }
            }
        }
        let receivers = self.some_peers(node);
        self.byzantine.insert(
            (block.header.height, round.as_u32().unwrap_or(0)),
            ByzantineProposal {
                misbehaviour,
                other,
                receivers,
            },
        );
        Ok(())
    }

    fn publish_block(&mut self, node: usize, block: Arc<Block>, round: Round, pol_round: Round) {
        let key = (block.header.height, round.as_u32().unwrap_or(0));
        let plan = (node == self.plan.byzantine)
            .then(|| self.byzantine.get(&key))
            .flatten()
            .map(|plan| (plan.misbehaviour, plan.other.clone(), plan.receivers));
        for to in (0..VALIDATORS).filter(|to| *to != node) {
            let block = match &plan {
                Some((Misbehaviour::Silent, _, _)) => continue,
                Some((_, Some(other), receivers)) if receivers & (1 << to) != 0 => other.clone(),
                _ => block.clone(),
            };
            self.send(
                node,
                to,
                Message::Block {
                    block,
                    round,
                    pol_round,
                },
            );
        }
    }

    /// Sends the Byzantine validator's proposal or vote, equivocating as planned.
    fn byzantine_publish(
        &mut self,
        node: usize,
        message: SignedConsensusMsg<LedgerContext>,
    ) -> Result<(), SimError> {
        match &message {
            SignedConsensusMsg::Proposal(proposal) => {
                let key = (proposal.height.0, proposal.round.as_u32().unwrap_or(0));
                let plan = self
                    .byzantine
                    .get(&key)
                    .map(|plan| (plan.misbehaviour, plan.other.clone(), plan.receivers));
                match plan {
                    Some((Misbehaviour::Silent, _, _)) => {}
                    Some((_, Some(other), receivers)) => {
                        let other = self.replicas[node].sign_proposal(Proposal {
                            value: BlockId(other.hash()),
                            ..proposal.message.clone()
                        })?;
                        for to in (0..VALIDATORS).filter(|to| *to != node) {
                            let sent = if receivers & (1 << to) != 0 {
                                SignedConsensusMsg::Proposal(other.clone())
                            } else {
                                message.clone()
                            };
                            self.send(node, to, Message::Consensus(sent));
                        }
                    }
                    _ => self.broadcast(node, &Message::Consensus(message)),
                }
            }
            SignedConsensusMsg::Vote(vote) => {
                if !self.chance(self.plan.equivocate_per_mille) {
                    self.broadcast(node, &Message::Consensus(message));
                    return Ok(());
                }
                let key = (vote.height.0, vote.round.as_u32().unwrap_or(0));
                let other_block = self
                    .byzantine
                    .get(&key)
                    .and_then(|plan| plan.other.as_ref())
                    .map(|other| BlockId(other.hash()));
                let other =
                    self.replicas[node].sign_vote(conflicting_vote(&vote.message, other_block))?;
                debug_assert!(other.message.value != vote.message.value || other_block.is_none());
                self.stats.equivocated_votes += 1;
                let receivers = self.some_peers(node);
                for to in (0..VALIDATORS).filter(|to| *to != node) {
                    let sent = if receivers & (1 << to) != 0 {
                        SignedConsensusMsg::Vote(other.clone())
                    } else {
                        message.clone()
                    };
                    self.send(node, to, Message::Consensus(sent));
                }
            }
        }
        Ok(())
    }

    /// Stops every validator, reads their stores and runs the checkers.
    fn finish(mut self, target: u64) -> Result<Report, SimError> {
        let heads: Vec<u64> = self
            .replicas
            .iter()
            .map(|replica| replica.disk.head)
            .collect();
        let states: Vec<String> = self.replicas.iter().map(Replica::describe).collect();
        for replica in &mut self.replicas {
            replica.crash();
        }
        let mut violations = std::mem::take(&mut self.engine_errors);
        let mut chains = Vec::new();
        let mut decisions = self.decisions.clone();
        for node in self.honest() {
            let path = self.replicas[node].disk.dir.join("ledger.redb");
            let store = medledger_storage::Store::open(&path)?;
            if let Err(error) = medledger_node::audit_store(&store, |_, _| {}) {
                violations.push(Violation::Audit {
                    node,
                    reason: error.to_string(),
                });
            }
            let reader = store.reader()?;
            let mut chain = Vec::new();
            for height in 1..=reader.head()? {
                let Some(header) = reader.header(height)? else {
                    violations.push(Violation::Audit {
                        node,
                        reason: format!("header {height} is missing"),
                    });
                    break;
                };
                let hash = header.hash();
                decisions.push(Decision { node, height, hash });
                chain.push(StoredHeight {
                    height,
                    hash,
                    header_root: header.state_root,
                    tree_root: medledger_state::root_at(&reader, height)?,
                });
                if node == self.plan.byzantine.wrapping_add(1) % VALIDATORS {
                    self.stats.txs_committed += reader.txs(height)?.len() as u64;
                }
            }
            chains.push((node, chain));
        }
        violations.extend(check::agreement(&decisions));
        violations.extend(check::state_roots(&chains));
        violations.extend(check::invalid_accepted(&self.accepted, &self.invalid));
        let honest_heads: Vec<(usize, u64)> =
            self.honest().map(|node| (node, heads[node])).collect();
        if let Some(Violation::NoProgress { target, heads, .. }) =
            check::progress(&honest_heads, target)
        {
            violations.push(Violation::NoProgress {
                target,
                heads,
                states,
            });
        }
        let mut trace = std::mem::take(&mut self.trace);
        for count in self.stats.sent.iter().chain(&self.stats.delivered) {
            trace.extend(count.to_le_bytes());
        }
        trace.extend(self.stats.dropped.to_le_bytes());
        for head in &heads {
            trace.extend(head.to_le_bytes());
        }
        Ok(Report {
            seed: self.seed,
            plan: self.plan,
            stats: self.stats,
            heads,
            target,
            virtual_ms: self.now_ms,
            violations,
            digest: hash_tagged(b"medledger/sim-trace/v1", &[&trace]),
        })
    }
}
