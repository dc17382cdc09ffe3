//! The checkers run on every seed. Each is a plain function over what the run recorded, so a
//! test can hand it a broken history and see it complain.
//!
//! - [`agreement`]: no two different blocks are final at one height, across every validator's
//!   decisions and every honest validator's stored chain.
//! - [`state_roots`]: every honest validator's tree has the same root at each height, and it is
//!   the root that height's certified header claims.
//! - [`progress`]: after the faults end, every honest validator reaches the target height.
//! - [`invalid_accepted`]: no honest validator judged one of the Byzantine validator's invalid
//!   blocks valid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use medledger_crypto::Hash;

/// A block a validator decided (or holds as committed) at a height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub node: usize,
    pub height: u64,
    pub hash: Hash,
}

/// One height of a validator's stored chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredHeight {
    pub height: u64,
    pub hash: Hash,
    /// The state root the certified header claims.
    pub header_root: Hash,
    /// The root of the validator's tree at that version, read from its disk.
    pub tree_root: Hash,
}

/// Something that must never happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// Two different blocks final at one height.
    Fork {
        height: u64,
        blocks: Vec<(usize, Hash)>,
    },
    /// A validator's tree disagrees with its own certified header.
    TreeRoot {
        node: usize,
        height: u64,
        header_root: Hash,
        tree_root: Hash,
    },
    /// Two honest validators hold different state roots at one height.
    StateRoots {
        height: u64,
        roots: Vec<(usize, Hash)>,
    },
    /// Some honest validator did not reach the target height in time. `states` describes each
    /// validator's consensus state at the end, for diagnosis.
    NoProgress {
        target: u64,
        heads: Vec<(usize, u64)>,
        states: Vec<String>,
    },
    /// An honest validator told the engine an invalid block was valid.
    InvalidAccepted { node: usize, hash: Hash },
    /// A validator's store failed the full audit (`medledger verify`).
    Audit { node: usize, reason: String },
    /// The consensus core failed on an honest validator's input; the real engine stops there.
    Engine { node: usize, error: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Fork { height, blocks } => {
                write!(f, "fork at height {height}:")?;
                for (node, hash) in blocks {
                    write!(f, " node {node} has {hash}")?;
                }
                Ok(())
            }
            Violation::TreeRoot {
                node,
                height,
                header_root,
                tree_root,
            } => write!(
                f,
                "node {node} height {height}: tree root {tree_root}, header says {header_root}"
            ),
            Violation::StateRoots { height, roots } => {
                write!(f, "state roots differ at height {height}:")?;
                for (node, root) in roots {
                    write!(f, " node {node} has {root}")?;
                }
                Ok(())
            }
            Violation::NoProgress {
                target,
                heads,
                states,
            } => {
                write!(f, "no progress to height {target} after healing:")?;
                for (node, head) in heads {
                    write!(f, " node {node} at {head}")?;
                }
                for (node, state) in states.iter().enumerate() {
                    write!(f, "\n    node {node}: {state}")?;
                }
                Ok(())
            }
            Violation::InvalidAccepted { node, hash } => {
                write!(f, "node {node} accepted invalid block {hash}")
            }
            Violation::Audit { node, reason } => write!(f, "node {node} fails its audit: {reason}"),
            Violation::Engine { node, error } => write!(f, "node {node} engine error: {error}"),
        }
    }
}

/// No two different blocks at one height.
pub fn agreement(decisions: &[Decision]) -> Vec<Violation> {
    let mut by_height: BTreeMap<u64, BTreeMap<Hash, usize>> = BTreeMap::new();
    for decision in decisions {
        by_height
            .entry(decision.height)
            .or_default()
            .entry(decision.hash)
            .or_insert(decision.node);
    }
    by_height
        .into_iter()
        .filter(|(_, blocks)| blocks.len() > 1)
        .map(|(height, blocks)| Violation::Fork {
            height,
            blocks: blocks
                .into_iter()
                .map(|(hash, node)| (node, hash))
                .collect(),
        })
        .collect()
}

/// The same state root at each height on every honest validator, and every tree root equal to
/// its certified header's.
pub fn state_roots(chains: &[(usize, Vec<StoredHeight>)]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut by_height: BTreeMap<u64, BTreeMap<Hash, usize>> = BTreeMap::new();
    for (node, chain) in chains {
        for stored in chain {
            if stored.header_root != stored.tree_root {
                violations.push(Violation::TreeRoot {
                    node: *node,
                    height: stored.height,
                    header_root: stored.header_root,
                    tree_root: stored.tree_root,
                });
            }
            by_height
                .entry(stored.height)
                .or_default()
                .entry(stored.tree_root)
                .or_insert(*node);
        }
    }
    violations.extend(
        by_height
            .into_iter()
            .filter(|(_, roots)| roots.len() > 1)
            .map(|(height, roots)| Violation::StateRoots {
                height,
                roots: roots.into_iter().map(|(root, node)| (node, root)).collect(),
            }),
    );
    violations
}

/// Every honest validator at or past `target`.
pub fn progress(heads: &[(usize, u64)], target: u64) -> Option<Violation> {
    if heads.iter().all(|(_, head)| *head >= target) {
        return None;
    }
    Some(Violation::NoProgress {
        target,
        heads: heads.to_vec(),
        states: Vec::new(),
    })
}

/// No honest validator judged an invalid block valid.
pub fn invalid_accepted(
    accepted: &BTreeSet<(usize, Hash)>,
    invalid: &BTreeSet<Hash>,
) -> Vec<Violation> {
    accepted
        .iter()
        .filter(|(_, hash)| invalid.contains(hash))
        .map(|(node, hash)| Violation::InvalidAccepted {
            node: *node,
            hash: *hash,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use medledger_crypto::sha256;

    use super::*;

    fn decision(node: usize, height: u64, block: &[u8]) -> Decision {
        Decision {
            node,
            height,
            hash: sha256(block),
        }
    }

    fn stored(height: u64, root: &[u8], tree: &[u8]) -> StoredHeight {
        StoredHeight {
            height,
            hash: sha256(&height.to_le_bytes()),
            header_root: sha256(root),
            tree_root: sha256(tree),
        }
    }

    /// The agreement checker reports two different blocks at one height, and nothing else.
    #[test]
    fn agreement_catches_a_fork() {
        let same = [
            decision(0, 1, b"a"),
            decision(1, 1, b"a"),
            decision(2, 2, b"b"),
        ];
        assert_eq!(agreement(&same), Vec::new());
        let forked = [
            decision(0, 1, b"a"),
            decision(1, 1, b"a"),
            decision(3, 1, b"x"),
        ];
        let violations = agreement(&forked);
        assert_eq!(violations.len(), 1);
        assert!(
            matches!(&violations[0], Violation::Fork { height: 1, blocks } if blocks.len() == 2)
        );
    }

    /// The state-root checker reports validators that disagree at a height, and a tree that
    /// disagrees with its own header.
    #[test]
    fn state_roots_catch_divergence() {
        let agree = [
            (0, vec![stored(1, b"r1", b"r1"), stored(2, b"r2", b"r2")]),
            (1, vec![stored(1, b"r1", b"r1")]),
        ];
        assert_eq!(state_roots(&agree), Vec::new());
        let differ = [
            (0, vec![stored(1, b"r1", b"r1")]),
            (1, vec![stored(1, b"r9", b"r9")]),
        ];
        assert!(matches!(
            state_roots(&differ).as_slice(),
            [Violation::StateRoots { height: 1, .. }]
        ));
        let own = [(2, vec![stored(1, b"r1", b"tampered")])];
        assert!(state_roots(&own).iter().any(|violation| matches!(
            violation,
            Violation::TreeRoot {
                node: 2,
                height: 1,
                ..
            }
        )));
    }

    /// The progress checker reports a validator short of the target.
    #[test]
    fn progress_catches_a_stall() {
        assert_eq!(progress(&[(0, 12), (1, 10)], 10), None);
        assert!(matches!(
            progress(&[(0, 12), (1, 9)], 10),
            Some(Violation::NoProgress { target: 10, .. })
        ));
    }

    /// The invalid-block checker reports an honest validator that accepted a block the Byzantine
    /// validator made invalid on purpose.
    #[test]
    fn invalid_accepted_catches_acceptance() {
        let invalid: BTreeSet<Hash> = [sha256(b"bad")].into();
        let fine: BTreeSet<(usize, Hash)> = [(0, sha256(b"good"))].into();
        assert_eq!(invalid_accepted(&fine, &invalid), Vec::new());
        let accepted: BTreeSet<(usize, Hash)> = [(0, sha256(b"good")), (2, sha256(b"bad"))].into();
        assert_eq!(
            invalid_accepted(&accepted, &invalid),
            vec![Violation::InvalidAccepted {
                node: 2,
                hash: sha256(b"bad")
            }]
        );
    }
}
