//! Device readings: the codes a device may send (LOINC, with UCUM units, as the HL7 Personal
//! Health Device guide codes them), the signed batch a device sends and its two encodings, and
//! the Merkle commitments that anchor a window of readings on chain.
//!
//! Values are integers in fixed units: each code names its UCUM unit and how many decimals its
//! integer carries (a body temperature of 3712 with two decimals is 37.12 Cel). No floats.
//!
//! A reading's leaf is a keyed commitment (a salt the receiving node derives per reading and
//! keeps), never a plain hash: a plain hash of "heart rate 72 at 10:04" would let anyone confirm
//! a guess.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey, Signature, hash_tagged};
use medledger_types::{InclusionProof, merkle_root};
use serde::{Deserialize, Serialize};

/// The most readings one batch carries.
pub const BATCH_READINGS_MAX: usize = 1_000;
/// The largest encoded batch accepted (binary or JSON).
pub const BATCH_BYTES_MAX: usize = 256 * 1024;
/// How far in the future of the receiving node's clock a reading may be.
pub const SKEW_AHEAD_MAX_MS: u64 = 120_000;
/// How old a reading may be when it arrives (a device buffers while offline).
pub const AGE_MAX_MS: u64 = 7 * 86_400_000;

/// What a reading measures: a LOINC code with its UCUM unit and fixed decimals.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
pub enum Code {
    #[serde(rename = "8867-4")]
    HeartRate = 0,
    #[serde(rename = "59408-5")]
    OxygenSaturation = 1,
    #[serde(rename = "8480-6")]
    SystolicPressure = 2,
    #[serde(rename = "8462-4")]
    DiastolicPressure = 3,
    #[serde(rename = "2339-0")]
    Glucose = 4,
    #[serde(rename = "8310-5")]
    BodyTemperature = 5,
    #[serde(rename = "9279-1")]
    RespiratoryRate = 6,
    #[serde(rename = "55423-8")]
    Steps = 7,
    #[serde(rename = "29463-7")]
    BodyWeight = 8,
}

impl Code {
    pub const ALL: [Code; 9] = [
        Code::HeartRate,
        Code::OxygenSaturation,
        Code::SystolicPressure,
        Code::DiastolicPressure,
        Code::Glucose,
        Code::BodyTemperature,
        Code::RespiratoryRate,
        Code::Steps,
        Code::BodyWeight,
    ];

    /// The LOINC code.
    pub fn loinc(self) -> &'static str {
        match self {
            Code::HeartRate => "8867-4",
            Code::OxygenSaturation => "59408-5",
            Code::SystolicPressure => "8480-6",
            Code::DiastolicPressure => "8462-4",
            Code::Glucose => "2339-0",
            Code::BodyTemperature => "8310-5",
            Code::RespiratoryRate => "9279-1",
            Code::Steps => "55423-8",
            Code::BodyWeight => "29463-7",
        }
    }

    /// The LOINC display name.
    pub fn display(self) -> &'static str {
        match self {
            Code::HeartRate => "Heart rate",
            Code::OxygenSaturation => "Oxygen saturation in Arterial blood by Pulse oximetry",
            Code::SystolicPressure => "Systolic blood pressure",
            Code::DiastolicPressure => "Diastolic blood pressure",
            Code::Glucose => "Glucose [Mass/volume] in Blood",
            Code::BodyTemperature => "Body temperature",
            Code::RespiratoryRate => "Respiratory rate",
            Code::Steps => "Number of steps in unspecified time Pedometer",
            Code::BodyWeight => "Body weight",
        }
    }

    /// The UCUM unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            Code::HeartRate | Code::RespiratoryRate => "/min",
            Code::OxygenSaturation => "%",
            Code::SystolicPressure | Code::DiastolicPressure => "mm[Hg]",
            Code::Glucose => "mg/dL",
            Code::BodyTemperature => "Cel",
            Code::Steps => "{steps}",
            Code::BodyWeight => "g",
        }
    }

    /// How many decimals the integer value carries.
    pub fn decimals(self) -> u8 {
        match self {
            Code::BodyTemperature => 2,
            _ => 0,
        }
    }

    /// The values a body can produce, in the code's fixed units; anything else is a device
    /// fault and is refused.
    pub fn plausible(self) -> std::ops::RangeInclusive<i64> {
        match self {
            Code::HeartRate => 20..=300,
            Code::OxygenSaturation => 50..=100,
            Code::SystolicPressure => 40..=300,
            Code::DiastolicPressure => 20..=200,
            Code::Glucose => 10..=1_000,
            Code::BodyTemperature => 2_500..=4_500,
            Code::RespiratoryRate => 2..=80,
            Code::Steps => 0..=100_000,
            Code::BodyWeight => 500..=500_000,
        }
    }

    /// The code named by a LOINC code.
    pub fn from_loinc(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.loinc() == text)
    }

    /// The value as decimal text in the code's unit (`3712` → `37.12`).
    pub fn value_text(self, value: i64) -> String {
        let decimals = u32::from(self.decimals());
        if decimals == 0 {
            return value.to_string();
        }
        let scale = 10u64.pow(decimals);
        let magnitude = value.unsigned_abs();
        let sign = if value < 0 { "-" } else { "" };
        format!(
            "{sign}{}.{:0width$}",
            magnitude / scale,
            magnitude % scale,
            width = decimals as usize
        )
    }
}

/// One measurement.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
pub struct Reading {
    pub code: Code,
    /// When the device measured it (milliseconds since the Unix epoch, the device's clock).
    pub time_ms: u64,
    /// In the code's unit, with its fixed decimals.
    pub value: i64,
}

/// What a device signs: its next batch of readings, numbered by a per-device sequence.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Batch {
    pub device: PublicKey,
    /// One more than the previous batch's (a gap is recorded, a repeat or step back refused).
    pub seq: u64,
    pub readings: Vec<Reading>,
}

/// A batch and the device's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct SignedBatch {
    pub batch: Batch,
    pub signature: Signature,
}

/// Why a batch is refused before it is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch is not a valid encoding: {0}")]
    Malformed(String),
    #[error("the batch is {0} bytes, over the limit of {BATCH_BYTES_MAX}")]
    TooLarge(usize),
    #[error("a batch carries 1 to {BATCH_READINGS_MAX} readings, not {0}")]
    Count(usize),
    #[error("the device's signature does not verify")]
    BadSignature,
    #[error("reading {index}: {value} is not a plausible {code} value (in {unit})")]
    Implausible {
        index: usize,
        code: &'static str,
        unit: &'static str,
        value: i64,
    },
    #[error(
        "reading {index} is {ahead_ms} ms ahead of this node's clock (at most {SKEW_AHEAD_MAX_MS}): the device's clock is wrong"
    )]
    ClockAhead { index: usize, ahead_ms: u64 },
    #[error("reading {index} is {age_ms} ms old (at most {AGE_MAX_MS})")]
    TooOld { index: usize, age_ms: u64 },
    #[error("readings must be in time order; reading {0} is earlier than the one before it")]
    OutOfOrder(usize),
}

/// The bytes a device signs: a tagged hash of the chain id and the batch's canonical encoding,
/// so a batch signed for one chain is refused by another.
pub fn batch_signing_hash(chain_id: &str, batch: &Batch) -> Hash {
    let bytes = borsh::to_vec(batch).unwrap_or_default();
    hash_tagged(b"medledger/monitor-batch", &[chain_id.as_bytes(), &bytes])
}

impl SignedBatch {
    /// Signs `batch` with the device's key.
    pub fn sign(chain_id: &str, batch: Batch, key: &medledger_crypto::SecretKey) -> SignedBatch {
        let signature = key.sign(batch_signing_hash(chain_id, &batch).as_bytes());
        SignedBatch { batch, signature }
    }

    /// The compact binary encoding (borsh): 17 bytes a reading.
    pub fn to_bytes(&self) -> Vec<u8> {
        borsh::to_vec(self).unwrap_or_default()
    }

    /// Reads a batch in the binary encoding, refusing trailing bytes and oversized input.
    pub fn from_bytes(bytes: &[u8]) -> Result<SignedBatch, BatchError> {
        if bytes.len() > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge(bytes.len()));
        }
        let batch: SignedBatch =
            borsh::from_slice(bytes).map_err(|error| BatchError::Malformed(error.to_string()))?;
        if batch.batch.readings.len() > BATCH_READINGS_MAX {
            return Err(BatchError::Count(batch.batch.readings.len()));
        }
        Ok(batch)
    }

    /// Reads a batch in the JSON encoding.
    pub fn from_json(bytes: &[u8]) -> Result<SignedBatch, BatchError> {
        if bytes.len() > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|error| BatchError::Malformed(error.to_string()))
    }

    /// Checks the signature, the count, each value's plausibility, time order, and each time
    /// against the receiving node's clock `now_ms`.
    pub fn check(&self, chain_id: &str, now_ms: u64) -> Result<(), BatchError> {
        let readings = &self.batch.readings;
        if readings.is_empty() || readings.len() > BATCH_READINGS_MAX {
            return Err(BatchError::Count(readings.len()));
        }
        self.batch
            .device
            .verify(
                batch_signing_hash(chain_id, &self.batch).as_bytes(),
                &self.signature,
            )
            .map_err(|_| BatchError::BadSignature)?;
        let mut previous = 0;
        for (index, reading) in readings.iter().enumerate() {
            if !reading.code.plausible().contains(&reading.value) {
                return Err(BatchError::Implausible {
                    index,
                    code: reading.code.loinc(),
                    unit: reading.code.unit(),
                    value: reading.value,
                });
            }
            if reading.time_ms > now_ms.saturating_add(SKEW_AHEAD_MAX_MS) {
                return Err(BatchError::ClockAhead {
                    index,
                    ahead_ms: reading.time_ms - now_ms,
                });
            }
            if now_ms.saturating_sub(reading.time_ms) > AGE_MAX_MS {
                return Err(BatchError::TooOld {
                    index,
                    age_ms: now_ms - reading.time_ms,
                });
            }
            if reading.time_ms < previous {
                return Err(BatchError::OutOfOrder(index));
            }
            previous = reading.time_ms;
        }
        Ok(())
    }
}

/// A reading's leaf: a keyed commitment to the reading and where it stands (device, batch, index).
pub fn reading_leaf(
    salt: &Hash,
    device: &PublicKey,
    seq: u64,
    index: u16,
    reading: &Reading,
) -> Hash {
    hash_tagged(
        b"medledger/monitor-reading",
        &[
            salt.as_bytes(),
            &device.0,
            &seq.to_le_bytes(),
            &index.to_le_bytes(),
            &[reading.code as u8],
            &reading.time_ms.to_le_bytes(),
            &reading.value.to_le_bytes(),
        ],
    )
}

/// The root over one device's leaves in a window, in (batch, index) order.
pub fn device_root(leaves: &[Hash]) -> Hash {
    merkle_root(leaves)
}

/// The window's root: over its devices' roots, in the anchor's span order.
pub fn window_root(device_roots: &[Hash]) -> Hash {
    merkle_root(device_roots)
}

/// Proves one reading belongs to an anchored window: its leaf under its device's root, and that
/// root under the window's root, which the chain holds in `monitor-anchor/<org>/<anchor>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingProof {
    pub org: String,
    pub anchor: u64,
    pub device: PublicKey,
    pub seq: u64,
    pub index: u16,
    pub reading: Reading,
    pub salt: Hash,
    pub in_device: InclusionProof,
    pub device_root: Hash,
    pub in_window: InclusionProof,
}

impl ReadingProof {
    /// True when the reading, as stated, is under `window_root`.
    pub fn verify(&self, window_root: Hash) -> bool {
        let leaf = reading_leaf(
            &self.salt,
            &self.device,
            self.seq,
            self.index,
            &self.reading,
        );
        self.in_device.verify(self.device_root, leaf)
            && self.in_window.verify(window_root, self.device_root)
    }
}
