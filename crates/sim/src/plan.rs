//! The faults of one run, drawn from its seed before the run starts: which validator is
//! Byzantine, how lossy and slow the network is, when it partitions and heals, and which honest
//! validators crash and when they restart. Every fault ends by `faults_end_ms`; after that the
//! network only delays (and reorders) messages, and the Byzantine validator keeps misbehaving.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Validators in the simulated network: n = 3f + 1 with f = 1.
pub const VALIDATORS: usize = 4;

/// A split of the validators into two sides that cannot reach each other from `start_ms` until
/// `heal_ms`. Bit `i` of `side` set means validator `i` is on the first side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub start_ms: u64,
    pub heal_ms: u64,
    pub side: u8,
}

/// An honest validator that stops at `at_ms` (losing everything but its disk) and starts again
/// from its disk at `restart_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub node: usize,
    pub at_ms: u64,
    pub restart_ms: u64,
}

/// Everything the seed decides about a run's faults. Times are virtual milliseconds since the
/// start of the run; probabilities are per mille, so no floats are involved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    pub byzantine: usize,
    /// Chance that a message sent before `faults_end_ms` is lost.
    pub drop_per_mille: u32,
    /// Chance that a message sent before `faults_end_ms` is delivered twice.
    pub duplicate_per_mille: u32,
    /// Chance that the Byzantine validator equivocates on a vote it casts.
    pub equivocate_per_mille: u32,
    /// Every message takes at least this long.
    pub latency_ms: u64,
    /// Plus up to this much, drawn per message, which reorders messages.
    pub jitter_ms: u64,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    /// No loss, duplication, partition or crash after this time.
    pub faults_end_ms: u64,
}

fn between(rng: &mut ChaCha8Rng, low: u64, high: u64) -> u64 {
    low + rng.next_u64() % (high - low + 1)
}

impl FaultPlan {
    pub fn from_seed(seed: u64) -> FaultPlan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d65_646c_6564_6765);
        let faults_end_ms = between(&mut rng, 8_000, 16_000);
        let byzantine = (rng.next_u64() % VALIDATORS as u64) as usize;
        let drop_per_mille = between(&mut rng, 0, 250) as u32;
        let duplicate_per_mille = between(&mut rng, 0, 50) as u32;
        let equivocate_per_mille = between(&mut rng, 200, 1000) as u32;
        let latency_ms = between(&mut rng, 1, 20);
        let jitter_ms = between(&mut rng, 0, 300);
        let mut partitions = Vec::new();
        for _ in 0..between(&mut rng, 0, 2) {
            let start_ms = between(&mut rng, 0, faults_end_ms - 1_000);
            let heal_ms = between(&mut rng, start_ms + 500, faults_end_ms);
            // A proper, non-empty subset of the validators.
            let side = between(&mut rng, 1, (1 << VALIDATORS) - 2) as u8;
            partitions.push(Partition {
                start_ms,
                heal_ms,
                side,
            });
        }
        let mut crashes = Vec::new();
        for _ in 0..between(&mut rng, 0, 2) {
            let honest = (byzantine + 1 + (rng.next_u64() % 3) as usize) % VALIDATORS;
            let at_ms = between(&mut rng, 0, faults_end_ms - 1_000);
            let restart_ms = between(&mut rng, at_ms + 200, faults_end_ms);
            // One crash of a node at a time: drop a crash that overlaps an earlier one of the
            // same node.
            let overlaps = crashes.iter().any(|other: &Crash| {
                other.node == honest && at_ms <= other.restart_ms && other.at_ms <= restart_ms
            });
            if !overlaps {
                crashes.push(Crash {
                    node: honest,
                    at_ms,
                    restart_ms,
                });
            }
        }
        FaultPlan {
            byzantine,
            drop_per_mille,
            duplicate_per_mille,
            equivocate_per_mille,
            latency_ms,
            jitter_ms,
            partitions,
            crashes,
            faults_end_ms,
        }
    }

    /// True when `a` and `b` are on different sides of a partition at `now_ms`.
    pub fn partitioned(&self, now_ms: u64, a: usize, b: usize) -> bool {
        self.partitions.iter().any(|partition| {
            let side = |node: usize| partition.side & (1 << node) != 0;
            partition.start_ms <= now_ms && now_ms < partition.heal_ms && side(a) != side(b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan depends only on its seed, keeps the Byzantine validator out of the crashes, and
    /// ends every fault by `faults_end_ms`.
    #[test]
    fn plans_are_seeded_and_bounded() {
        for seed in 0..200 {
            let plan = FaultPlan::from_seed(seed);
            assert_eq!(plan, FaultPlan::from_seed(seed));
            assert!(plan.byzantine < VALIDATORS);
            for crash in &plan.crashes {
                assert_ne!(crash.node, plan.byzantine);
                assert!(crash.at_ms < crash.restart_ms);
                assert!(crash.restart_ms <= plan.faults_end_ms);
            }
            for partition in &plan.partitions {
                assert!(partition.start_ms < partition.heal_ms);
                assert!(partition.heal_ms <= plan.faults_end_ms);
                assert!(partition.side != 0 && partition.side != 0b1111);
            }
        }
    }

    /// A partition separates exactly the validators on different sides, and only while it holds.
    #[test]
    fn partition_separates_sides() {
        let plan = FaultPlan {
            partitions: vec![Partition {
                start_ms: 100,
                heal_ms: 200,
                side: 0b0011,
            }],
            ..FaultPlan::from_seed(0)
        };
        assert!(plan.partitioned(150, 0, 2));
        assert!(!plan.partitioned(150, 0, 1));
        assert!(!plan.partitioned(150, 2, 3));
        assert!(!plan.partitioned(99, 0, 2));
        assert!(!plan.partitioned(200, 0, 2));
    }
}
