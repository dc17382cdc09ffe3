//! Starting Malachite for a node: its configuration, network identity and write-ahead log, and
//! the application loop that answers it.
//!
//! Each validator's network identity is its consensus key: the libp2p peer id is derived from the
//! validator's Ed25519 public key, and libp2p's Noise handshake authenticates and encrypts every
//! connection with it. The configured peers are an address book named by validator key; only
//! those in the validator set of the current height are the network's persistent peers, and with
//! `persistent_peers_only` every other key is refused after the handshake.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use malachitebft_app_channel::app::config::{
    ConsensusConfig, DiscoveryConfig, NodeConfig, P2pConfig, PubSubProtocol, ValuePayload,
    ValueSyncConfig,
};
use malachitebft_app_channel::app::types::Keypair;
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::core::LinearTimeouts;
use malachitebft_app_channel::{
    ConsensusContext, NetworkContext, NetworkIdentity, RequestContext, Signer, SyncContext,
    WalContext,
};
use malachitebft_engine::network::Multiaddr;
use medledger_crypto::{PublicKey, SecretKey};
use medledger_node::Node;
use tokio::sync::watch;

use crate::app::{self, AppConfig, CatchUp};
use crate::codec::LedgerCodec;
use crate::context::{Address, Ed25519Provider, LedgerContext};

/// A peer validator: its consensus key and where it listens for consensus traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub key: PublicKey,
    pub address: SocketAddr,
}

impl std::str::FromStr for Peer {
    type Err = String;

    /// Parses `<validator public key>@<host>:<port>`.
    fn from_str(text: &str) -> Result<Peer, String> {
        let (key, address) = text
            .split_once('@')
            .ok_or_else(|| format!("peer {text:?} must be <validator key>@<ip>:<port>"))?;
        let key = PublicKey::from_hex(key)
            .map_err(|error| format!("peer {text:?}: bad validator key: {error}"))?;
        key.check()
            .map_err(|error| format!("peer {text:?}: bad validator key: {error}"))?;
        let address = address
            .parse()
            .map_err(|error| format!("peer {text:?}: bad address: {error}"))?;
        Ok(Peer { key, address })
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.key, self.address)
    }
}

/// The libp2p peer id of a validator key.
pub fn peer_id(key: &PublicKey) -> Result<libp2p_identity::PeerId, String> {
    let public = libp2p_identity::ed25519::PublicKey::try_from_bytes(&key.0)
        .map_err(|error| format!("validator key {key}: {error}"))?;
    Ok(libp2p_identity::PublicKey::from(public).to_peer_id())
}

fn multiaddr(address: &SocketAddr, peer: Option<&PublicKey>) -> Result<Multiaddr, String> {
    let ip = match address {
        SocketAddr::V4(v4) => format!("/ip4/{}", v4.ip()),
        SocketAddr::V6(v6) => format!("/ip6/{}", v6.ip()),
    };
    let mut text = format!("{ip}/tcp/{}", address.port());
    if let Some(key) = peer {
        text.push_str(&format!("/p2p/{}", peer_id(key)?));
    }
    text.parse()
        .map_err(|error| format!("address {text}: {error}"))
}

/// What a validator needs to join consensus.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// Where the write-ahead log lives.
    pub wal_dir: PathBuf,
    pub moniker: String,
    pub listen: SocketAddr,
    pub peers: Vec<Peer>,
    pub timeouts: LinearTimeouts,
    pub empty_block_wait: Duration,
    pub idle_block_interval: Duration,
}

impl EngineSettings {
    /// Timeouts for validators on one LAN: a few hundred milliseconds, rising each round so a
    /// slow network still converges.
    pub fn lan_timeouts() -> LinearTimeouts {
        LinearTimeouts {
            // A dead proposer costs this much at each height it would have led, so it bounds
            // finality with a validator down; 400 ms still leaves a loaded proposer time to
            // build and stream a block of thousands of transactions, and it rises each round.
            propose: Duration::from_millis(400),
            propose_delta: Duration::from_millis(300),
            prevote: Duration::from_millis(300),
            prevote_delta: Duration::from_millis(200),
            precommit: Duration::from_millis(300),
            precommit_delta: Duration::from_millis(200),
            rebroadcast: Duration::from_millis(2000),
            max_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }

    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }

    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }

    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }

    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid consensus settings: {0}")]
    Settings(String),
    #[error("starting the consensus engine: {0}")]
    Start(String),
    #[error(transparent)]
    App(#[from] app::Error),
}

/// A running engine; `progress` reports catch-up.
#[derive(Debug)]
pub struct Running {
    pub progress: watch::Receiver<CatchUp>,
    pub task: tokio::task::JoinHandle<Result<(), EngineError>>,
}

/// Starts Malachite for `node` with this validator's `key`, and the loop that answers it.
pub async fn start(
    node: Node,
    key: SecretKey,
    settings: EngineSettings,
) -> Result<Running, EngineError> {
    let chain_id = node.genesis().chain_id.clone();
    let ctx = LedgerContext {
        chain_id: chain_id.clone(),
    };
    // The configured peers are an address book; the network accepts only those that are
    // validators at the height this node resumes from, and the application loop keeps that in
    // step as governance changes the set.
    let address_book = settings
        .peers
        .iter()
        .filter(|peer| peer.key != key.public_key())
        .map(|peer| Ok((peer.key, multiaddr(&peer.address, Some(&peer.key))?)))
        .collect::<Result<Vec<_>, String>>()
        .map_err(EngineError::Settings)?;
    let validators = node
        .next_height()
        .and_then(|height| node.validators_for(height))
        .map_err(|error| EngineError::Start(error.to_string()))?;
    let admitted: BTreeSet<PublicKey> = address_book
        .iter()
        .filter(|(key, _)| validators.get(key).is_some())
        .map(|(key, _)| *key)
        .collect();
    let persistent_peers = address_book
        .iter()
        .filter(|(key, _)| admitted.contains(key))
        .map(|(_, address)| address.clone())
        .collect();
    if validators.get(&key.public_key()).is_none() {
        tracing::info!(
            key = %key.public_key(),
            "this node's key is not in the current validator set: it follows the chain and \
             joins consensus at the height a governance change adds it"
        );
    }
    let config = EngineConfig {
        moniker: settings.moniker.clone(),
        consensus: ConsensusConfig {
            enabled: true,
            p2p: P2pConfig {
                listen_addr: multiaddr(&settings.listen, None).map_err(EngineError::Settings)?,
                persistent_peers,
                persistent_peers_only: true,
                discovery: DiscoveryConfig {
                    enabled: false,
                    ..DiscoveryConfig::default()
                },
                protocol: PubSubProtocol::default(),
                rpc_max_size: ByteSize::mib(40),
                pubsub_max_size: ByteSize::mib(4),
                ..P2pConfig::default()
            },
            value_payload: ValuePayload::ProposalAndParts,
            ..ConsensusConfig::default()
        },
        value_sync: ValueSyncConfig {
            enabled: true,
            status_update_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_request_size: ByteSize::mib(1),
            max_response_size: ByteSize::mib(40),
            batch_size: 16,
            ..ValueSyncConfig::default()
        },
    };

    let mut secret = key.to_bytes();
    let keypair = Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|error| EngineError::Settings(format!("validator key: {error}")))?;
    let provider = Ed25519Provider::new(chain_id.clone(), Some(key.clone()));
    let public_key = key.public_key();
    let proof = provider
        .sign_validator_proof(
            public_key.0.to_vec(),
            keypair.public().to_peer_id().to_bytes(),
        )
        .await
        .map_err(|error| EngineError::Start(error.to_string()))?;
    let proof_bytes = LedgerCodec
        .encode(&proof)
        .map_err(|error| EngineError::Start(error.to_string()))?;
    let identity = NetworkIdentity::new_validator(
        settings.moniker.clone(),
        keypair,
        Address(public_key).to_string(),
        proof_bytes,
    );
    std::fs::create_dir_all(&settings.wal_dir).map_err(|error| {
        EngineError::Start(format!("creating {}: {error}", settings.wal_dir.display()))
    })?;
    let (channels, _handle) = malachitebft_app_channel::start_engine(
        ctx,
        config,
        WalContext::new(settings.wal_dir.join("consensus.wal"), LedgerCodec),
        NetworkContext::new(identity, LedgerCodec),
        ConsensusContext::new_validator(
            Address(public_key),
            Box::new(provider.clone()),
            Box::new(provider),
        ),
        SyncContext::new(LedgerCodec),
        RequestContext::new(100),
    )
    .await
    .map_err(|error| EngineError::Start(format!("{error:#}")))?;

    let (progress_tx, progress) = watch::channel(CatchUp::default());
    let app_config = AppConfig {
        chain_id,
        key,
        timeouts: settings.timeouts,
        host: crate::host::HostConfig {
            empty_block_wait: settings.empty_block_wait,
            idle_block_interval: settings.idle_block_interval,
            ..crate::host::HostConfig::default()
        },
        address_book,
        admitted,
        journal: crate::journal::Journal::open(&settings.wal_dir)
            .map_err(|error| EngineError::Start(format!("opening the block journal: {error}")))?,
    };
    let task = tokio::spawn(async move {
        app::run(node, app_config, channels, progress_tx)
            .await
            .map_err(EngineError::from)
    });
    Ok(Running { progress, task })
}
