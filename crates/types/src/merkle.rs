//! Binary Merkle trees over a block's transactions and receipts, with inclusion proofs.
//!
//! The tree is rs_merkle's SHA-256 tree: an odd node is promoted, never duplicated, so two
//! different leaf lists cannot share a root the way Bitcoin's could (CVE-2012-2459). Leaves are
//! tagged hashes (see [`crate::leaf_hash`]), so a leaf can never pass for an inner node.

use medledger_crypto::Hash;
use rs_merkle::{MerkleProof, MerkleTree, algorithms::Sha256};
use serde::{Deserialize, Serialize};

/// The root over `leaves`, or the zero hash for none.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::ZERO;
    }
    let leaves: Vec<[u8; 32]> = leaves.iter().map(|leaf| leaf.0).collect();
    let tree = MerkleTree::<Sha256>::from_leaves(&leaves);
    Hash(tree.root().expect("a tree with leaves has a root"))
}

/// Proves that one leaf stands at `index` among `leaves_count` leaves under a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub leaves_count: u64,
    pub siblings: Vec<Hash>,
}

impl InclusionProof {
    pub fn build(leaves: &[Hash], index: usize) -> Option<InclusionProof> {
        if index >= leaves.len() {
            return None;
        }
        let raw: Vec<[u8; 32]> = leaves.iter().map(|leaf| leaf.0).collect();
        let tree = MerkleTree::<Sha256>::from_leaves(&raw);
        let proof = tree.proof(&[index]);
        Some(InclusionProof {
            index: index as u64,
            leaves_count: leaves.len() as u64,
            siblings: proof
                .proof_hashes()
                .iter()
                .map(|hash| Hash(*hash))
                .collect(),
        })
    }

    /// True when `leaf` is at this proof's position under `root`.
    pub fn verify(&self, root: Hash, leaf: Hash) -> bool {
        if self.index >= self.leaves_count || self.siblings.len() > 64 {
            return false;
        }
        let (Ok(index), Ok(count)) = (
            usize::try_from(self.index),
            usize::try_from(self.leaves_count),
        ) else {
            return false;
        };
        let siblings: Vec<[u8; 32]> = self.siblings.iter().map(|hash| hash.0).collect();
        MerkleProof::<Sha256>::new(siblings).verify(root.0, &[index], &[leaf.0], count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_crypto::sha256;
    use proptest::prelude::*;

    proptest! {
        /// Every leaf of every tree size proves, and no proof holds for another leaf or position.
        #[test]
        fn every_leaf_proves_and_no_other(count in 1usize..70, pick in any::<usize>()) {
            let leaves: Vec<Hash> = (0..count as u32).map(|i| sha256(&i.to_le_bytes())).collect();
            let root = merkle_root(&leaves);
            let index = pick % count;
            let proof = InclusionProof::build(&leaves, index).expect("index is in range");
            prop_assert!(proof.verify(root, leaves[index]));
            prop_assert!(!proof.verify(root, sha256(b"another leaf")));
            if count > 1 {
                let other = (index + 1) % count;
                prop_assert!(!proof.verify(root, leaves[other]));
            }
        }
    }

    #[test]
    fn a_tampered_proof_fails() {
        let leaves: Vec<Hash> = (0..5u8).map(|i| sha256(&[i])).collect();
        let root = merkle_root(&leaves);
        let mut proof = InclusionProof::build(&leaves, 2).expect("in range");
        proof.siblings[0].0[0] ^= 1;
        assert!(!proof.verify(root, leaves[2]));
        let mut proof = InclusionProof::build(&leaves, 2).expect("in range");
        proof.leaves_count = 1_000;
        assert!(!proof.verify(root, leaves[2]));
        assert_eq!(InclusionProof::build(&leaves, 5), None);
        assert_eq!(merkle_root(&[]), Hash::ZERO);
    }
}
