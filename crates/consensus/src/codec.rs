//! The wire and WAL encoding of every consensus message: borsh, the same canonical encoding the
//! ledger uses, through the borsh support Malachite ships for its own types.
//!
//! Decoding refuses trailing bytes and anything over `MESSAGE_BYTES_MAX`; the transport has
//! already bounded each frame, and this is the second, independent bound.

use bytes::Bytes;
use malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, Round, SignedMessage,
    ValidatorProof,
};
use malachitebft_app_channel::app::types::streaming::StreamMessage;
use malachitebft_app_channel::app::types::sync::{RawDecidedValue, Request, Response, Status};
use malachitebft_app_channel::app::types::{ProposedValue, SignedConsensusMsg};
use malachitebft_core_consensus::LivenessMsg;
use malachitebft_sync::ValueResponse;
use medledger_crypto::Signature;

use crate::context::{Address, BlockId, Height, LedgerContext, ProposalPart};

/// The largest consensus message accepted: a block plus framing.
pub const MESSAGE_BYTES_MAX: usize = medledger_types::BLOCK_BYTES_MAX + 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Borsh for every message type the engine sends, stores or syncs.
#[derive(Clone, Copy, Debug, Default)]
pub struct LedgerCodec;

fn encode<T: borsh::BorshSerialize>(value: &T) -> Result<Bytes, CodecError> {
    borsh::to_vec(value)
        .map(Bytes::from)
        .map_err(|error| CodecError::Malformed(error.to_string()))
}

fn decode<T: borsh::BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    borsh::from_slice(bytes).map_err(|error| CodecError::Malformed(error.to_string()))
}

macro_rules! borsh_codec {
    ($($type:ty),* $(,)?) => {
        $(
            impl Codec<$type> for LedgerCodec {
                type Error = CodecError;

                fn decode(&self, bytes: Bytes) -> Result<$type, CodecError> {
                    decode(&bytes)
                }

                fn encode(&self, message: &$type) -> Result<Bytes, CodecError> {
                    encode(message)
                }
            }
        )*
    };
}

borsh_codec!(
    ProposalPart,
    SignedConsensusMsg<LedgerContext>,
    LivenessMsg<LedgerContext>,
    StreamMessage<ProposalPart>,
    Status<LedgerContext>,
    Request<LedgerContext>,
    ProposedValue<LedgerContext>,
    PolkaCertificate<LedgerContext>,
);

/// Malachite 0.8.2 has no borsh form for the certificate inside a sync response, so responses
/// are encoded through these mirrors, field by field.
#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct ResponseWire {
    start_height: Height,
    values: Vec<DecidedWire>,
}

#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct DecidedWire {
    value_bytes: Vec<u8>,
    height: Height,
    round: Round,
    value_id: BlockId,
    signatures: Vec<SignatureWire>,
}

#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct SignatureWire {
    address: Address,
    signature: Signature,
    extension: Option<SignedMessage<LedgerContext, ()>>,
}

fn response_wire(response: &Response<LedgerContext>) -> ResponseWire {
    let Response::ValueResponse(response) = response;
    ResponseWire {
        start_height: response.start_height,
        values: response
            .values
            .iter()
            .map(|value| DecidedWire {
                value_bytes: value.value_bytes.to_vec(),
                height: value.certificate.height,
                round: value.certificate.round,
                value_id: value.certificate.value_id,
                signatures: value
                    .certificate
                    .commit_signatures
                    .iter()
                    .map(|signature| SignatureWire {
                        address: signature.address,
                        signature: signature.signature,
                        extension: signature.extension.clone(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

impl Codec<Response<LedgerContext>> for LedgerCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<Response<LedgerContext>, CodecError> {
        let wire: ResponseWire = decode(&bytes)?;
        Ok(Response::ValueResponse(ValueResponse {
            start_height: wire.start_height,
            values: wire
                .values
                .into_iter()
                .map(|value| RawDecidedValue {
                    value_bytes: value.value_bytes.into(),
                    certificate: ExtendedCommitCertificate {
                        height: value.height,
                        round: value.round,
                        value_id: value.value_id,
                        commit_signatures: value
                            .signatures
                            .into_iter()
                            .map(|signature| {
                                ExtendedCommitSignature::new(
                                    signature.address,
                                    signature.signature,
                                    signature.extension,
                                )
                            })
                            .collect(),
                    },
                })
                .collect(),
        }))
    }

    fn encode(&self, response: &Response<LedgerContext>) -> Result<Bytes, CodecError> {
        encode(&response_wire(response))
    }
}

impl HasEncodedLen<Response<LedgerContext>> for LedgerCodec {
    fn encoded_len(&self, response: &Response<LedgerContext>) -> Result<usize, CodecError> {
        borsh::object_length(&response_wire(response))
            .map_err(|error| CodecError::Malformed(error.to_string()))
    }
}

/// Malachite's validator proof has no borsh form of its own, so it is encoded field by field.
#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct ProofWire {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Signature,
}

impl Codec<ValidatorProof<LedgerContext>> for LedgerCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<LedgerContext>, CodecError> {
        let wire: ProofWire = decode(&bytes)?;
        Ok(ValidatorProof::new(
            wire.public_key,
            wire.peer_id,
            wire.signature,
        ))
    }

    fn encode(&self, proof: &ValidatorProof<LedgerContext>) -> Result<Bytes, CodecError> {
        encode(&ProofWire {
            public_key: proof.public_key.clone(),
            peer_id: proof.peer_id.clone(),
            signature: proof.signature,
        })
    }
}
