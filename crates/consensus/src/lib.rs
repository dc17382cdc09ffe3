//! The adapter between the Malachite BFT engine and the ledger. Only this crate knows the engine:
//! the ledger crates, storage and the node's block logic never depend on it.
//!
//! - [`certificate`]: the engine's commit certificate as the ledger's, and back.
//! - [`context`]: medledger's types as the engine's `Context`, and the Ed25519 signing that makes
//!   the engine's precommits the ledger's commit certificates.
//! - [`codec`]: borsh on the wire and in the write-ahead log.
//! - [`stream`]: blocks as streams of proposal parts.
//! - [`host`]: every decision the application side makes, synchronous and clock-free, shared by
//!   the node and the simulation.
//! - [`app`]: the async loop that answers the engine with the host.
//! - [`gossip`]: transactions from one validator's clients to every validator's mempool.
//! - [`journal`]: undecided blocks on disk, so a restart never loses a block the WAL names.
//! - [`engine`]: configuration, network identity and start-up.

pub mod app;
pub mod certificate;
pub mod codec;
pub mod context;
pub mod engine;
pub mod gossip;
pub mod host;
pub mod journal;
pub mod stream;

pub use app::CatchUp;
pub use engine::{EngineError, EngineSettings, Peer, Running, peer_id, start};
