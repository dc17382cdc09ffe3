//! The application side of Malachite: the async loop that answers every message the engine
//! sends. What to answer is the host's decision ([`crate::host`]); this loop carries it out:
//! channels to the engine and the network, proposal streams, gossip, catch-up progress and the
//! network's allowed peers.
//!
//! The host's work (executing, committing, journalling) runs on tokio's blocking pool so the
//! engine's actors never wait on it.
//!
//! **Invariant:** consensus only ever receives a `Valid` verdict for a block that the node has
//! executed against its head and whose header roots all matched.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use malachitebft_app_channel::app::types::LocallyProposedValue;
use malachitebft_app_channel::app::types::core::{HeightParams, LinearTimeouts, Round};
use malachitebft_app_channel::{AppMsg, Channels, NetworkMsg, NetworkRequest};
use malachitebft_engine::host::{Next, SyncedValueOutcome};
use malachitebft_engine::network::{Multiaddr, PersistentPeersOp};
use malachitebft_engine::util::streaming::StreamContent;
use medledger_crypto::{PublicKey, SecretKey};
use medledger_ledger::Block;
use medledger_node::Node;
use tokio::sync::watch;

use crate::context::{BlockId, Height, LedgerContext, ProposalPart, ValidatorSet};
use crate::gossip::{self, Intake};
use crate::host::{Host, HostConfig, HostError, Offer};
use crate::journal::Journal;
use crate::stream::{self, Streams};

/// What the application loop needs besides the node.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub chain_id: String,
    pub key: SecretKey,
    pub timeouts: LinearTimeouts,
    /// The host's rules' settings (the empty-block wait).
    pub host: HostConfig,
    /// Where the other consortium nodes listen, by validator key. Only those in the validator
    /// set of the current height may connect (see [`State::admit_validators`]).
    pub address_book: Vec<(PublicKey, Multiaddr)>,
    /// The keys the engine was started with as its persistent peers.
    pub admitted: BTreeSet<PublicKey>,
    /// Undecided blocks this validator proposed or found valid, on disk.
    pub journal: Journal,
}

struct State {
    node: Node,
    config: AppConfig,
    /// The host, except while a call runs on the blocking pool.
    host: Option<Host<Journal>>,
    streams: Streams,
    /// The highest height any peer claims, for catch-up progress.
    progress: watch::Sender<CatchUp>,
    /// The peers the network currently accepts: the address book's validators of this height.
    admitted: BTreeSet<PublicKey>,
    /// The start of the monotonic clock the host's waits are counted on.
    started: Instant,
    /// The next height, moved to in the host but not yet started in the engine while the chain
    /// idles (see [`Host::start_wait`]).
    pending_start: Option<PendingStart>,
}

/// A height whose start the engine awaits.
struct PendingStart {
    height: Height,
    params: HeightParams<LedgerContext>,
    reply: tokio::sync::oneshot::Sender<Next<LedgerContext>>,
}

/// How far this node is behind the network, as the engine reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    pub height: u64,
    pub target: u64,
}

/// The proposer's clock: a block's time, and what a peer's block time is checked against.
fn now_ms() -> u64 {
    #[allow(clippy::disallowed_methods)] // Shell: the proposer's clock becomes the block's time.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

impl State {
    /// The host, which is always back between calls (a call that panicked never returns).
    fn host(&mut self) -> &mut Host<Journal> {
        self.host
            .as_mut()
            .expect("the host returns from every blocking call")
    }

    /// Milliseconds on the monotonic clock, for the host's waits: unlike the wall clock, it
    /// never steps back, so a wait always ends.
    fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Runs a host call off the async runtime: the host executes blocks, commits and fsyncs.
    async fn with_host<T: Send + 'static>(
        &mut self,
        call: impl FnOnce(&mut Host<Journal>) -> T + Send + 'static,
    ) -> T {
        let mut host = self
            .host
            .take()
            .expect("the host returns from every blocking call");
        match tokio::task::spawn_blocking(move || {
            let result = call(&mut host);
            (host, result)
        })
        .await
        {
            Ok((host, result)) => {
                self.host = Some(host);
                result
            }
            // A panic in the call is a bug; carry it to this task.
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Starts `height` in the host and here; returns the engine's parameters for it.
    async fn start_height(
        &mut self,
        channels: &Channels<LedgerContext>,
        height: Height,
    ) -> Result<HeightParams<LedgerContext>, Error> {
        let validators = self
            .with_host(move |host| host.start_height(height))
            .await?;
        self.admit_validators(channels, &validators);
        self.streams.prune_below(height);
        self.report_progress(|progress| {
            progress.height = height.0.saturating_sub(1);
            progress.target = progress.target.max(progress.height);
        });
        Ok(HeightParams::new(
            ValidatorSet::from_ledger(&validators),
            self.config.timeouts,
            None,
        ))
    }

    /// Decodes and checks a completed stream: the signature on its `Init`, and that the bytes
    /// are the block the `Init` names. Whether its sender may propose that block is the host's
    /// decision.
    fn open_stream(&self, assembled: stream::Assembled) -> Option<Offer> {
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
        if block.hash() != init.block_hash || block.header.height != init.height.0 {
            tracing::warn!(
                height = init.height.0,
                "dropping a proposal whose block does not match its stream"
            );
            return None;
        }
        Some(Offer {
            block: Arc::new(block),
            round: init.round,
            pol_round: init.pol_round,
            proposer: init.proposer,
        })
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
    let host = Host::open(node.clone(), config.host.clone(), config.journal.clone())?;
    let mut state = State {
        admitted: config.admitted.clone(),
        node,
        config,
        host: Some(host),
        streams: Streams::default(),
        progress,
        #[allow(clippy::disallowed_methods)] // Shell: the monotonic clock of the host's waits.
        started: Instant::now(),
        pending_start: None,
    };
    let intake = Intake::spawn(state.node.clone());
    let _outbound = gossip::spawn_outbound(&state.node, channels.network.clone());
    loop {
        // An idle chain holds the next height back (the host says how long); every message
        // that arrives meanwhile is answered, and may end the wait (a peer's proposal).
        let waiting = state.pending_start.as_ref().map(|pending| pending.height);
        let pause = waiting.map(|height| state.host().start_wait(height, now_ms()));
        let message = match pause {
            Some(Some(pause)) => tokio::select! {
                message = channels.consensus.recv() => message,
                () = tokio::time::sleep(pause) => continue,
            },
            Some(None) => {
                if let Some(pending) = state.pending_start.take() {
                    tracing::debug!(height = pending.height.0, "starting the next height");
                    let _ = pending
                        .reply
                        .send(Next::Start(pending.height, pending.params));
                }
                continue;
            }
            None => channels.consensus.recv().await,
        };
        let Some(message) = message else { break };
        match message {
            AppMsg::ConsensusReady { reply } => {
                let height = Height(state.node.next_height()?);
                let params = state.start_height(&channels, height).await?;
                tracing::info!(height = height.0, "consensus ready");
                let _ = reply.send((height, params));
            }
            AppMsg::StartedRound {
                height,
                round,
                reply_value,
                ..
            } => {
                let values = state
                    .with_host(move |host| host.started_round(height, round, now_ms()))
                    .await;
                let _ = reply_value.send(values);
            }
            AppMsg::GetValue {
                height,
                round,
                timeout,
                reply,
            } => {
                // Wait a little for transactions rather than fill the chain with empty blocks;
                // the host says how long.
                loop {
                    let clock_ms = state.clock_ms();
                    match state.host().value_wait(height, round, timeout, clock_ms) {
                        Some(pause) => tokio::time::sleep(pause).await,
                        None => break,
                    }
                }
                let built = state
                    .with_host(move |host| host.propose_value(height, round, now_ms()))
                    .await;
                match built {
                    Ok(Some(block)) => {
                        let value = BlockId(block.hash());
                        let _ = reply.send(LocallyProposedValue::new(height, round, value));
                        state.publish(&channels, &block, round, Round::Nil).await;
                    }
                    Ok(None) => {}
                    // The engine's propose timeout passes, and the next round has another
                    // proposer.
                    Err(error) => {
                        tracing::error!(height = height.0, %error, "cannot build a proposal");
                    }
                }
            }
            AppMsg::RestreamProposal {
                height,
                round,
                valid_round,
                value_id,
                ..
            } => {
                if let Some(block) = state.host().restream(height, &value_id) {
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
                let _ = reply.send(crate::host::HISTORY_MIN_HEIGHT);
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
                let offer = state
                    .streams
                    .insert(publisher, part)
                    .and_then(|assembled| state.open_stream(assembled));
                let value = match offer {
                    Some(offer) => {
                        state
                            .with_host(move |host| host.receive_proposal(offer, now_ms()))
                            .await
                    }
                    None => None,
                };
                let _ = reply.send(value);
            }
            AppMsg::Decided {
                certificate, reply, ..
            } => {
                let height = certificate.height;
                state
                    .with_host(move |host| host.decide(&certificate))
                    .await?;
                tracing::debug!(height = height.0, "committed");
                let _ = reply.send(());
            }
            AppMsg::Finalized {
                certificate, reply, ..
            } => {
                let next = Height(certificate.height.0 + 1);
                let params = state.start_height(&channels, next).await?;
                state.pending_start = Some(PendingStart {
                    height: next,
                    params,
                    reply,
                });
            }
            AppMsg::GetDecidedValues { range, reply } => {
                let values = state
                    .with_host(move |host| host.decided_values(range))
                    .await;
                let _ = reply.send(values);
            }
            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let verdict = state
                    .with_host(move |host| {
                        host.synced_value(height, round, proposer, &value_bytes, now_ms())
                    })
                    .await;
                let outcome = match verdict {
                    Some(proposed) => {
                        state.report_progress(|progress| {
                            progress.target = progress.target.max(height.0);
                        });
                        SyncedValueOutcome::Verdict(proposed)
                    }
                    None => SyncedValueOutcome::PeerFault,
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
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    NodeError(#[from] medledger_node::NodeError),
}
