//! A deterministic simulation of a four-validator medledger network, for tests only.
//!
//! Malachite's engine (ractor actors, libp2p, tokio timers) is not deterministic, so the
//! simulation drives its pure consensus core (`malachitebft-core-consensus`) directly, with
//! medledger's own `Context`, signing and certificate mapping from `medledger-consensus`, and a
//! real `medledger_node::Node` with its redb store under each validator. Messages travel through a
//! seeded network on a virtual clock that loses, duplicates, delays, reorders and partitions them;
//! honest validators crash and restart from their disks; one validator is Byzantine: it
//! equivocates on proposals and votes and proposes invalid blocks.
//!
//! Every run is checked for agreement (no two blocks final at one height), for equal state roots
//! at every height on every honest validator, for blocks the Byzantine validator made invalid
//! being refused, and for progress once the faults end ([`check`]). A seed fixes the whole run, so
//! a failing seed replays with one command ([`replay_command`]).
//!
//! - [`plan`]: the faults a seed chooses.
//! - [`net`]: messages and the event queue.
//! - [`replica`]: one validator, the consensus core's effects answered by the node's own consensus
//!   host (`medledger_consensus::host`), the same rules the node runs.
//! - [`run`]: the run itself, the network and the Byzantine validator.
//! - [`check`]: the checkers.
//!
//! **Determinism.** Everything a run does follows from its seed: the event queue is a `BTreeMap`
//! keyed by (virtual time, sequence), randomness is one ChaCha stream, time is the virtual clock
//! (a block's time is genesis time plus the virtual time), and there are no hash maps or floats.
//! The only wall-clock reads are inside the engine's metrics and the node's commit-time metric,
//! which decide nothing.

pub mod check;
pub mod net;
pub mod plan;
pub mod replica;
pub mod run;

use std::fmt;

use medledger_crypto::Hash;

pub use check::Violation;
pub use medledger_consensus::host::Flaw;
pub use plan::FaultPlan;
pub use run::{Stats, run, run_with};

/// Why a run could not be completed (as opposed to a run that completed and broke an invariant,
/// which is a [`Violation`]).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Host(#[from] medledger_consensus::host::HostError),
    #[error(transparent)]
    Node(#[from] medledger_node::NodeError),
    #[error(transparent)]
    Block(#[from] medledger_node::InvalidBlock),
    #[error(transparent)]
    Store(#[from] medledger_storage::StoreError),
    #[error(transparent)]
    State(#[from] medledger_state::StateError),
    #[error("creating the run's directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("a signing or verification call waited, which the simulation cannot drive")]
    Pending,
    #[error("node {node} cannot address validator {peer}: {reason}")]
    Peer {
        node: usize,
        peer: usize,
        reason: String,
    },
}

impl SimError {
    fn signing(error: malachitebft_signing::Error) -> SimError {
        SimError::Signing(error.to_string())
    }
}

/// What one seed did and whether it broke anything.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub plan: FaultPlan,
    pub stats: Stats,
    /// Each validator's committed height at the end.
    pub heads: Vec<u64>,
    /// The height every honest validator had to reach after the faults ended.
    pub target: u64,
    /// Virtual milliseconds the run lasted.
    pub virtual_ms: u64,
    pub violations: Vec<Violation>,
    /// A hash of everything the run decided, in order, and of its message counts: equal for two
    /// runs of one seed.
    pub digest: Hash,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = &self.stats;
        write!(
            f,
            "seed {}: byzantine {}, heads {:?} (target {}), {} virtual ms, {} txs, \
             {} delivered / {} dropped / {} duplicated, {} partitions, {} crashes, \
             {} wal entries replayed, {} synced, {} equivocated votes, {} equivocated proposals, \
             {} invalid proposals, {} silent proposals, {} evidence, {} restored-block decides",
            self.seed,
            self.plan.byzantine,
            self.heads,
            self.target,
            self.virtual_ms,
            stats.txs_committed,
            stats.delivered.iter().sum::<u64>(),
            stats.dropped,
            stats.duplicated,
            self.plan.partitions.len(),
            stats.crashes,
            stats.wal_entries_replayed,
            stats.synced_values,
            stats.equivocated_votes,
            stats.equivocated_proposals,
            stats.invalid_proposals,
            stats.silent_proposals,
            stats.evidence,
            stats.restored_block_decides,
        )?;
        for violation in &self.violations {
            write!(f, "\n  violation: {violation}")?;
        }
        Ok(())
    }
}

/// The one command that replays `seed` and prints its run (`cargo xtask sim --seed <seed>` runs
/// the same).
pub fn replay_command(seed: u64) -> String {
    format!(
        "MEDLEDGER_SIM_SEED={seed} cargo test -p medledger-sim --test seeds -- seeds_hold_invariants --nocapture"
    )
}
