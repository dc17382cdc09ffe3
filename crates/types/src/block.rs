//! Blocks, headers, validator sets and commit certificates.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey, SecretKey, Signature, hash_tagged, verify_batch};
use serde::{Deserialize, Serialize};

use crate::{BLOCK_BYTES_MAX, Height, Tx, TypesError, decode, encode};

const HEADER_TAG: &[u8] = b"medledger/header/v1";
const VOTE_SIGN_DOMAIN: &[u8] = b"medledger/commit-vote/v1";

/// What a block commits to. Its hash is the block's hash.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: String,
    pub height: Height,
    /// The proposer's clock, in milliseconds since the Unix epoch. The only time the ledger sees:
    /// strictly greater than the previous block's.
    pub time_ms: u64,
    /// The previous block's hash; for height 1, the genesis hash.
    pub prev_hash: Hash,
    /// The hash of the previous block's commit certificate (zero at height 1), so the chain
    /// also commits to who finalised each block.
    pub last_commit_hash: Hash,
    /// The Merkle root of the transactions' leaf hashes.
    pub txs_root: Hash,
    /// The Merkle root of the receipts of those transactions.
    pub receipts_root: Hash,
    /// The state root after executing this block.
    pub state_root: Hash,
    /// The hash of the validator set that must certify this block.
    pub validators_hash: Hash,
    pub proposer: PublicKey,
}

impl Header {
    pub fn hash(&self) -> Hash {
        hash_tagged(HEADER_TAG, &[&encode(self)])
    }
}

/// A block: a header, its transactions, and the certificate that finalised its parent.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Block<P> {
    pub header: Header,
    pub txs: Vec<Tx<P>>,
    /// The certificate of block `height - 1` (none at height 1), as CometBFT's LastCommit.
    pub last_commit: Option<CommitCertificate>,
}

impl<P: BorshSerialize + BorshDeserialize> Block<P> {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Block<P>, TypesError> {
        decode("block", bytes, BLOCK_BYTES_MAX)
    }
}

/// A validator: a consensus key, its voting power and the organisation that runs it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Validator {
    pub key: PublicKey,
    pub power: u64,
    pub org: String,
}

/// The validators of a height, sorted by key with no duplicates.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ValidatorSet {
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    /// Builds a set, sorting it and refusing duplicates, zero powers and an empty set.
    pub fn new(mut validators: Vec<Validator>) -> Result<ValidatorSet, TypesError> {
        let malformed = |reason: &str| TypesError::Malformed {
            what: "validator set",
            reason: reason.to_string(),
        };
        if validators.is_empty() {
            return Err(malformed("it has no validators"));
        }
        validators.sort_by_key(|validator| validator.key);
        if validators.windows(2).any(|pair| pair[0].key == pair[1].key) {
            return Err(malformed("a key appears twice"));
        }
        if validators.iter().any(|validator| validator.power == 0) {
            return Err(malformed("a validator has zero power"));
        }
        if validators
            .iter()
            .try_fold(0u64, |sum, v| sum.checked_add(v.power))
            .is_none()
        {
            return Err(malformed("total power overflows"));
        }
        if let Some(validator) = validators.iter().find(|v| v.key.check().is_err()) {
            return Err(malformed(&format!(
                "key {} is not a valid Ed25519 key",
                validator.key
            )));
        }
        Ok(ValidatorSet { validators })
    }

    pub fn hash(&self) -> Hash {
        hash_tagged(b"medledger/validator-set/v1", &[&encode(self)])
    }

    pub fn total_power(&self) -> u64 {
        self.validators
            .iter()
            .map(|validator| validator.power)
            .sum()
    }

    pub fn get(&self, key: &PublicKey) -> Option<&Validator> {
        self.validators
            .binary_search_by_key(key, |validator| validator.key)
            .ok()
            .map(|index| &self.validators[index])
    }

    /// True when `power` is more than two thirds of the total: a Tendermint commit quorum.
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power()) * 2
    }
}

/// One validator's precommit for a block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitSignature {
    pub validator: PublicKey,
    pub signature: Signature,
}

/// The proof that a block is final: signatures of more than two thirds of the voting power over
/// (chain id, height, round, block hash). It exists only once the block is decided, so it is
/// stored beside the block and carried in the next block as `last_commit`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub height: Height,
    pub round: u32,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSignature>,
}

/// Why a certificate does not prove its block final.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("certificate is for height {got}, expected {expected}")]
    WrongHeight { got: Height, expected: Height },
    #[error("certificate is for block {got}, expected {expected}")]
    WrongBlock { got: Hash, expected: Hash },
    #[error("signer {0} is not in the validator set")]
    UnknownSigner(PublicKey),
    #[error("signer {0} signed twice")]
    DuplicateSigner(PublicKey),
    #[error("signature of validator {0} does not verify")]
    BadSignature(PublicKey),
    #[error("signers hold {signed} of {total} voting power, not more than two thirds")]
    NoQuorum { signed: u64, total: u64 },
}

impl CommitCertificate {
    /// The bytes each validator signs.
    pub fn vote_sign_bytes(
        chain_id: &str,
        height: Height,
        round: u32,
        block_hash: &Hash,
    ) -> Vec<u8> {
        let mut bytes = VOTE_SIGN_DOMAIN.to_vec();
        borsh::to_writer(&mut bytes, &(chain_id, height, round, block_hash))
            .expect("encoding into memory never fails");
        bytes
    }

    /// Signs a certificate with the given validator keys (a single-node chain has one).
    pub fn sign(
        chain_id: &str,
        height: Height,
        round: u32,
        block_hash: Hash,
        keys: &[&SecretKey],
    ) -> CommitCertificate {
        let message = Self::vote_sign_bytes(chain_id, height, round, &block_hash);
        let mut signatures: Vec<CommitSignature> = keys
            .iter()
            .map(|key| CommitSignature {
                validator: key.public_key(),
                signature: key.sign(&message),
            })
            .collect();
        signatures.sort_by_key(|signature| signature.validator);
        CommitCertificate {
            height,
            round,
            block_hash,
            signatures,
        }
    }

    pub fn hash(&self) -> Hash {
        hash_tagged(b"medledger/commit/v1", &[&encode(self)])
    }

    /// What a header's `last_commit_hash` holds for this parent certificate: its hash, or zero
    /// for block 1, whose parent (genesis) has none.
    pub fn last_commit_hash(parent: Option<&CommitCertificate>) -> Hash {
        parent.map(CommitCertificate::hash).unwrap_or(Hash::ZERO)
    }

    /// Checks that this certificate finalises `header` under `validators`.
    pub fn verify(
        &self,
        header: &Header,
        validators: &ValidatorSet,
    ) -> Result<(), CertificateError> {
        if self.height != header.height {
            return Err(CertificateError::WrongHeight {
                got: self.height,
                expected: header.height,
            });
        }
        let expected = header.hash();
        if self.block_hash != expected {
            return Err(CertificateError::WrongBlock {
                got: self.block_hash,
                expected,
            });
        }
        let message =
            Self::vote_sign_bytes(&header.chain_id, self.height, self.round, &self.block_hash);
        let mut signed = 0u64;
        let mut seen: Vec<PublicKey> = Vec::with_capacity(self.signatures.len());
        for signature in &self.signatures {
            let validator = validators
                .get(&signature.validator)
                .ok_or(CertificateError::UnknownSigner(signature.validator))?;
            if seen.contains(&signature.validator) {
                return Err(CertificateError::DuplicateSigner(signature.validator));
            }
            seen.push(signature.validator);
            signed += validator.power;
        }
        if !validators.is_quorum(signed) {
            return Err(CertificateError::NoQuorum {
                signed,
                total: validators.total_power(),
            });
        }
        let items: Vec<(PublicKey, &[u8], Signature)> = self
            .signatures
            .iter()
            .map(|signature| (signature.validator, message.as_slice(), signature.signature))
            .collect();
        match verify_batch(&items).first() {
            Some(&index) => Err(CertificateError::BadSignature(
                self.signatures[index].validator,
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[&SecretKey]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .map(|key| Validator {
                    key: key.public_key(),
                    power: 1,
                    org: "org".into(),
                })
                .collect(),
        )
        .expect("valid set")
    }

    fn header() -> Header {
        Header {
            chain_id: "test".into(),
            height: 7,
            time_ms: 1,
            prev_hash: Hash::ZERO,
            last_commit_hash: Hash::ZERO,
            txs_root: Hash::ZERO,
            receipts_root: Hash::ZERO,
            state_root: Hash::ZERO,
            validators_hash: Hash::ZERO,
            proposer: SecretKey::from_seed(0).public_key(),
        }
    }

    #[test]
    fn a_certificate_needs_more_than_two_thirds_of_the_power() {
        let keys: Vec<SecretKey> = (0..4).map(SecretKey::from_seed).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        let validators = set(&refs);
        let header = header();
        let hash = header.hash();
        let three = CommitCertificate::sign("test", 7, 0, hash, &refs[..3]);
        assert_eq!(three.verify(&header, &validators), Ok(()));
        let two = CommitCertificate::sign("test", 7, 0, hash, &refs[..2]);
        assert_eq!(
            two.verify(&header, &validators),
            Err(CertificateError::NoQuorum {
                signed: 2,
                total: 4
            })
        );
    }

    #[test]
    fn forged_or_misdirected_certificates_fail() {
        let keys: Vec<SecretKey> = (0..4).map(SecretKey::from_seed).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        let validators = set(&refs);
        let header = header();
        let good = CommitCertificate::sign("test", 7, 0, header.hash(), &refs);

        let mut bad_signature = good.clone();
        bad_signature.signatures[1].signature.0[5] ^= 1;
        assert!(matches!(
            bad_signature.verify(&header, &validators),
            Err(CertificateError::BadSignature(_))
        ));

        let mut duplicated = good.clone();
        duplicated.signatures[1] = duplicated.signatures[0].clone();
        assert!(matches!(
            duplicated.verify(&header, &validators),
            Err(CertificateError::DuplicateSigner(_))
        ));

        let outsider = SecretKey::from_seed(99);
        let foreign = CommitCertificate::sign(
            "test",
            7,
            0,
            header.hash(),
            &[&outsider, refs[0], refs[1], refs[2]],
        );
        assert_eq!(
            foreign.verify(&header, &validators),
            Err(CertificateError::UnknownSigner(outsider.public_key()))
        );

        let mut other_header = header.clone();
        other_header.state_root.0[0] = 1;
        assert!(matches!(
            good.verify(&other_header, &validators),
            Err(CertificateError::WrongBlock { .. })
        ));

        // A vote for another chain id does not count on this one.
        let other_chain = CommitCertificate::sign("other", 7, 0, header.hash(), &refs);
        assert!(matches!(
            other_chain.verify(&header, &validators),
            Err(CertificateError::BadSignature(_))
        ));
    }

    #[test]
    fn validator_sets_refuse_duplicates_and_zero_power() {
        let key = SecretKey::from_seed(1).public_key();
        let validator = Validator {
            key,
            power: 1,
            org: "a".into(),
        };
        assert!(ValidatorSet::new(vec![validator.clone(), validator.clone()]).is_err());
        assert!(
            ValidatorSet::new(vec![Validator {
                power: 0,
                ..validator
            }])
            .is_err()
        );
        assert!(ValidatorSet::new(vec![]).is_err());
    }
}
