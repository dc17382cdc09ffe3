//! medledger's types as Malachite sees them: the `Context` that tells the engine what a height,
//! an address, a value, a vote and a proposal are, and the Ed25519 signing that binds them.
//!
//! The value the validators agree on is a block hash. The block itself travels beside consensus,
//! streamed as proposal parts, and is kept by the application.
//!
//! **Invariant:** a precommit for a block is signed over exactly the bytes of
//! `CommitCertificate::vote_sign_bytes`, so the 2f+1 precommits Malachite collects are, unchanged,
//! the ledger's commit certificate, which a light client checks with nothing but the validator
//! set. Prevotes, nil precommits, proposals and proposal streams each sign under a domain tag of
//! their own, so no signature can be replayed as another kind.

use std::fmt;

use async_trait::async_trait;
use borsh::{BorshDeserialize, BorshSerialize};
use malachitebft_app_channel::app::types::core::{
    self as core, LinearTimeouts, NilOrVal, Round, SignedMessage, ValidatorProof,
    VoteExtensionScope, VoteType, VotingPower,
};
use malachitebft_app_channel::{Signer, Verifier};
use malachitebft_signing::{Error as SigningError, VerificationResult};
use medledger_crypto::{CryptoError, Hash, PublicKey, SecretKey, Signature};
use medledger_types::CommitCertificate;

const PREVOTE_DOMAIN: &[u8] = b"medledger/prevote/v1";
const NIL_PRECOMMIT_DOMAIN: &[u8] = b"medledger/precommit-nil/v1";
const PROPOSAL_DOMAIN: &[u8] = b"medledger/proposal/v1";
const STREAM_DOMAIN: &[u8] = b"medledger/proposal-stream/v1";
const EXTENSION_DOMAIN: &[u8] = b"medledger/vote-extension/v1";
const VALIDATOR_PROOF_DOMAIN: &[u8] = b"medledger/validator-proof/v1";

/// The engine's view of the chain: it carries the chain id, which every signature covers.
#[derive(Clone, Debug)]
pub struct LedgerContext {
    pub chain_id: String,
}

/// A validator's address is its consensus public key.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub PublicKey);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits name a validator in logs; the full key is in genesis.
        f.write_str(&self.0.to_hex()[..8])
    }
}

impl core::Address for Address {}

/// A block height as the engine counts it; height 0 is genesis.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    BorshSerialize,
    BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl core::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// The value consensus decides: the hash of a block header.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, BorshSerialize, BorshDeserialize,
)]
pub struct BlockId(pub Hash);

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_hex()[..12])
    }
}

impl core::Value for BlockId {
    type Id = BlockId;

    fn id(&self) -> BlockId {
        *self
    }
}

#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Validator {
    pub address: Address,
    pub public_key: PublicKey,
    pub power: VotingPower,
}

impl core::Validator<LedgerContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> VotingPower {
        self.power
    }
}

/// The validators of one height, sorted by address.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ValidatorSet {
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    /// The engine's copy of a ledger validator set (which is already sorted by key).
    pub fn from_ledger(set: &medledger_types::ValidatorSet) -> ValidatorSet {
        let mut validators: Vec<Validator> = set
            .validators
            .iter()
            .map(|validator| Validator {
                address: Address(validator.key),
                public_key: validator.key,
                power: validator.power,
            })
            .collect();
        validators.sort_by_key(|validator| validator.address);
        ValidatorSet { validators }
    }
}

impl core::ValidatorSet<LedgerContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> VotingPower {
        self.validators
            .iter()
            .map(|validator| validator.power)
            .sum()
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators
            .binary_search_by_key(address, |validator| validator.address)
            .ok()
            .map(|index| &self.validators[index])
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// A proposer's signed claim that `value` is its block for (height, round).
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub value: BlockId,
    pub pol_round: Round,
    pub proposer: Address,
}

impl core::Proposal<LedgerContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockId {
        &self.value
    }

    fn take_value(self) -> BlockId {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A prevote or precommit.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub vote_type: VoteType,
    pub height: Height,
    pub round: Round,
    pub value: NilOrVal<BlockId>,
    pub validator: Address,
    pub extension: Option<SignedMessage<LedgerContext, ()>>,
}

impl core::Vote<LedgerContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockId> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockId> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.vote_type
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    fn extension(&self) -> Option<&SignedMessage<LedgerContext, ()>> {
        self.extension.as_ref()
    }

    fn take_extension(&mut self) -> Option<SignedMessage<LedgerContext, ()>> {
        self.extension.take()
    }

    fn extend(self, extension: SignedMessage<LedgerContext, ()>) -> Self {
        Vote {
            extension: Some(extension),
            ..self
        }
    }
}

/// One piece of a streamed block. A stream is `Init`, then `Data` chunks of the block's encoding
/// in order, then `Fin`.
#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub enum ProposalPart {
    /// Names the block and carries the proposer's signature over (height, round, block hash), so
    /// a receiver can drop a stream that its claimed proposer never sent.
    Init(StreamInit),
    Data(Vec<u8>),
    Fin,
    /// Not part of a block: a batch of transactions gossiped between mempools, each in its
    /// canonical encoding (see [`crate::gossip`]). It travels on the proposal-part topic because
    /// that is the only topic of Malachite's network the application defines.
    Txs(Vec<Vec<u8>>),
}

#[derive(Clone, PartialEq, Eq, Debug, BorshSerialize, BorshDeserialize)]
pub struct StreamInit {
    pub height: Height,
    pub round: Round,
    pub pol_round: Round,
    pub proposer: Address,
    pub block_hash: Hash,
    pub signature: Signature,
}

impl StreamInit {
    pub fn sign_bytes(chain_id: &str, height: Height, round: Round, block_hash: &Hash) -> Vec<u8> {
        domain_bytes(
            STREAM_DOMAIN,
            &(chain_id, height.0, round.as_i64(), block_hash),
        )
    }
}

impl core::ProposalPart<LedgerContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init(_))
    }

    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin)
    }
}

/// Ed25519 as the engine's signing scheme, using medledger's own key and signature types.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ed25519;

impl core::SigningScheme for Ed25519 {
    type DecodingError = CryptoError;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = SecretKey;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, CryptoError> {
        let got = bytes.len();
        let array: [u8; 64] = bytes
            .try_into()
            .map_err(|_| CryptoError::WrongLength { expected: 64, got })?;
        Ok(Signature(array))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, CryptoError> {
        let got = bytes.len();
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::WrongLength { expected: 32, got })?;
        let key = PublicKey(array);
        key.check()?;
        Ok(key)
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.0.to_vec()
    }
}

impl core::Context for LedgerContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockId;
    type Vote = Vote;
    type Extension = ();
    type SigningScheme = Ed25519;

    fn select_proposer<'a>(
        &self,
        validator_set: &'a ValidatorSet,
        height: Height,
        round: Round,
    ) -> &'a Validator {
        proposer(validator_set, height, round)
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockId,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal {
            height,
            round,
            value,
            pol_round,
            proposer: address,
        }
    }

    fn new_prevote(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<BlockId>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Prevote,
            height,
            round,
            value,
            validator: address,
            extension: None,
        }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<BlockId>,
        address: Address,
    ) -> Vote {
        Vote {
            vote_type: VoteType::Precommit,
            height,
            round,
            value,
            validator: address,
            extension: None,
        }
    }
}

/// Round-robin over the validators sorted by key, moving on by one each height and each round,
/// so a silent proposer costs one round, not the height.
pub fn proposer(validator_set: &ValidatorSet, height: Height, round: Round) -> &Validator {
    let count = validator_set.validators.len();
    // An empty set is refused when genesis and governance are validated, so this is a bug.
    assert!(count > 0, "a height must have validators");
    let round = round.as_u32().unwrap_or(0) as u64;
    let index = (height.0.wrapping_add(round) % count as u64) as usize;
    &validator_set.validators[index]
}

fn domain_bytes(domain: &[u8], fields: &impl BorshSerialize) -> Vec<u8> {
    let mut bytes = domain.to_vec();
    borsh::to_writer(&mut bytes, fields).expect("encoding into memory never fails");
    bytes
}

/// The bytes a validator signs for a vote.
pub fn vote_sign_bytes(chain_id: &str, vote: &Vote) -> Vec<u8> {
    match (&vote.vote_type, &vote.value) {
        (VoteType::Precommit, NilOrVal::Val(block)) => {
            let round = vote.round.as_u32().unwrap_or(u32::MAX);
            CommitCertificate::vote_sign_bytes(chain_id, vote.height.0, round, &block.0)
        }
        (VoteType::Precommit, NilOrVal::Nil) => domain_bytes(
            NIL_PRECOMMIT_DOMAIN,
            &(chain_id, vote.height.0, vote.round.as_i64()),
        ),
        (VoteType::Prevote, value) => {
            let value: Option<Hash> = match value {
                NilOrVal::Val(block) => Some(block.0),
                NilOrVal::Nil => None,
            };
            domain_bytes(
                PREVOTE_DOMAIN,
                &(chain_id, vote.height.0, vote.round.as_i64(), value),
            )
        }
    }
}

fn proposal_sign_bytes(chain_id: &str, proposal: &Proposal) -> Vec<u8> {
    domain_bytes(
        PROPOSAL_DOMAIN,
        &(
            chain_id,
            proposal.height.0,
            proposal.round.as_i64(),
            proposal.value.0,
            proposal.pol_round.as_i64(),
        ),
    )
}

fn extension_sign_bytes(chain_id: &str, scope: &VoteExtensionScope<LedgerContext>) -> Vec<u8> {
    domain_bytes(
        EXTENSION_DOMAIN,
        &(
            chain_id,
            scope.height.0,
            scope.round.as_i64(),
            scope.value_id.0,
            scope.validator_address.0,
        ),
    )
}

fn validator_proof_bytes(public_key: &[u8], peer_id: &[u8]) -> Vec<u8> {
    let mut bytes = VALIDATOR_PROOF_DOMAIN.to_vec();
    bytes.extend(ValidatorProof::<LedgerContext>::signing_bytes(
        public_key, peer_id,
    ));
    bytes
}

/// Signs for this validator and checks other validators' signatures.
#[derive(Debug, Clone)]
pub struct Ed25519Provider {
    chain_id: String,
    key: Option<SecretKey>,
}

impl Ed25519Provider {
    pub fn new(chain_id: String, key: Option<SecretKey>) -> Ed25519Provider {
        Ed25519Provider { chain_id, key }
    }

    fn sign(&self, message: &[u8]) -> Result<Signature, SigningError> {
        match &self.key {
            Some(key) => Ok(key.sign(message)),
            None => Err(SigningError::from_source(
                "this node holds no validator key",
            )),
        }
    }
}

fn verdict(key: &PublicKey, message: &[u8], signature: &Signature) -> VerificationResult {
    VerificationResult::from_bool(key.verify(message, signature).is_ok())
}

#[async_trait]
impl Signer<LedgerContext> for Ed25519Provider {
    async fn sign_vote(
        &self,
        vote: Vote,
    ) -> Result<SignedMessage<LedgerContext, Vote>, SigningError> {
        let signature = self.sign(&vote_sign_bytes(&self.chain_id, &vote))?;
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<LedgerContext, Proposal>, SigningError> {
        let signature = self.sign(&proposal_sign_bytes(&self.chain_id, &proposal))?;
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<LedgerContext>,
        extension: (),
    ) -> Result<SignedMessage<LedgerContext, ()>, SigningError> {
        let signature = self.sign(&extension_sign_bytes(&self.chain_id, &scope))?;
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<LedgerContext>, SigningError> {
        let signature = self.sign(&validator_proof_bytes(&public_key, &peer_id))?;
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}

#[async_trait]
impl Verifier<LedgerContext> for Ed25519Provider {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(verdict(
            public_key,
            &vote_sign_bytes(&self.chain_id, vote),
            signature,
        ))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(verdict(
            public_key,
            &proposal_sign_bytes(&self.chain_id, proposal),
            signature,
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<LedgerContext>,
        _extension: &(),
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(verdict(
            public_key,
            &extension_sign_bytes(&self.chain_id, scope),
            signature,
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<LedgerContext>,
    ) -> Result<VerificationResult, SigningError> {
        let Ok(key) = <Ed25519 as core::SigningScheme>::decode_public_key(&proof.public_key) else {
            return Ok(VerificationResult::Invalid);
        };
        Ok(verdict(
            &key,
            &validator_proof_bytes(&proof.public_key, &proof.peer_id),
            &proof.signature,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_app_channel::app::types::core::Context;

    /// A precommit for a block signs exactly the ledger's certificate bytes, and no other vote
    /// kind signs those bytes.
    #[test]
    fn precommits_are_certificate_signatures() {
        let ctx = LedgerContext {
            chain_id: "test".into(),
        };
        let key = SecretKey::from_seed(1);
        let address = Address(key.public_key());
        let block = BlockId(medledger_crypto::sha256(b"block"));
        let round = Round::new(2);
        let precommit = ctx.new_precommit(Height(7), round, NilOrVal::Val(block), address);
        let certificate_bytes = CommitCertificate::vote_sign_bytes("test", 7, 2, &block.0);
        assert_eq!(vote_sign_bytes("test", &precommit), certificate_bytes);
        let prevote = ctx.new_prevote(Height(7), round, NilOrVal::Val(block), address);
        let nil = ctx.new_precommit(Height(7), round, NilOrVal::Nil, address);
        for other in [prevote, nil] {
            assert_ne!(vote_sign_bytes("test", &other), certificate_bytes);
        }
        assert_ne!(
            vote_sign_bytes("other-chain", &precommit),
            certificate_bytes
        );
    }

    /// The proposer rotates by height and by round over every validator.
    #[test]
    fn proposer_rotates() {
        let set = ValidatorSet::from_ledger(
            &medledger_types::ValidatorSet::new(
                (1..=4)
                    .map(|seed| medledger_types::Validator {
                        key: SecretKey::from_seed(seed).public_key(),
                        power: 1,
                        org: format!("org{seed}"),
                    })
                    .collect(),
            )
            .expect("valid set"),
        );
        let at = |height, round| proposer(&set, Height(height), Round::new(round)).address;
        assert_ne!(at(1, 0), at(2, 0));
        assert_eq!(at(1, 1), at(2, 0));
        let all: std::collections::BTreeSet<_> = (0..4).map(|height| at(height, 0)).collect();
        assert_eq!(all.len(), 4);
    }
}
