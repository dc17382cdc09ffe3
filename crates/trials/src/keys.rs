//! The trials module's state keys and their readers. Keys are readable text, so a proof names
//! what it proves; numbers are zero-padded so keys sort in order.

use medledger_crypto::{Hash, PublicKey};
use medledger_state::{StateError, StateRead};

use crate::types::*;

pub fn key_study(study: &str) -> Vec<u8> {
    format!("trial/{study}").into_bytes()
}

pub fn key_version(study: &str, version: u32) -> Vec<u8> {
    format!("trial/{study}/version/{version:010}").into_bytes()
}

pub fn key_document(study: &str, hash: &Hash) -> Vec<u8> {
    format!("trial/{study}/document/{hash}").into_bytes()
}

pub fn key_subject(study: &str, subject: &str) -> Vec<u8> {
    format!("trial/{study}/subject/{subject}").into_bytes()
}

pub fn key_participant(study: &str, patient: &PublicKey) -> Vec<u8> {
    format!("trial/{study}/participant/{patient}").into_bytes()
}

pub fn key_signature(study: &str, seq: u64) -> Vec<u8> {
    format!("trial/{study}/signature/{seq:020}").into_bytes()
}

pub fn key_capture(study: &str, capture: &Hash) -> Vec<u8> {
    format!("trial/{study}/capture/{capture}").into_bytes()
}

pub fn key_capture_version(study: &str, capture: &Hash, version: u32) -> Vec<u8> {
    format!("trial/{study}/capture/{capture}/{version:010}").into_bytes()
}

pub fn key_capture_log(study: &str, seq: u64) -> Vec<u8> {
    format!("trial/{study}/capture-log/{seq:020}").into_bytes()
}

pub fn key_adverse_event(study: &str, event: &Hash) -> Vec<u8> {
    format!("trial/{study}/adverse-event/{event}").into_bytes()
}

pub fn key_adverse_event_log(study: &str, seq: u32) -> Vec<u8> {
    format!("trial/{study}/adverse-event-log/{seq:010}").into_bytes()
}

/// The study an adverse event (by its id, unique across the chain) was reported in.
pub fn key_event_study(event: &Hash) -> Vec<u8> {
    format!("trial-event/{event}").into_bytes()
}

/// The clocks due on calendar day `day` (days since the Unix epoch, UTC).
pub fn key_clocks(day: u64) -> Vec<u8> {
    format!("trial-clocks/{day:010}").into_bytes()
}

/// The first day whose clocks the end-of-block check has not yet cleared.
pub const KEY_CLOCK_CURSOR: &[u8] = b"trial-clocks/cursor";

pub fn key_alert(seq: u64) -> Vec<u8> {
    format!("trial-alert/{seq:020}").into_bytes()
}

/// A study's monitored thresholds ([`Monitored`]).
pub fn key_monitored(study: &str) -> Vec<u8> {
    format!("trial-monitored/of/{study}").into_bytes()
}

/// The studies that monitor device readings, sorted (a `Vec<String>`).
pub const KEY_MONITORED_STUDIES: &[u8] = b"trial-monitored/studies";

pub fn monitored(state: &dyn StateRead, study: &str) -> Result<Option<Monitored>, StateError> {
    read(state, &key_monitored(study))
}

pub fn monitored_studies(state: &dyn StateRead) -> Result<Vec<String>, StateError> {
    Ok(read(state, KEY_MONITORED_STUDIES)?.unwrap_or_default())
}

/// The number of alerts so far (the next alert's sequence number).
pub const KEY_ALERTS: &[u8] = b"trial-alert/count";

fn read<T: borsh::BorshDeserialize>(
    state: &dyn StateRead,
    key: &[u8],
) -> Result<Option<T>, StateError> {
    medledger_module::read(state, key)
}

pub fn study(state: &dyn StateRead, study: &str) -> Result<Option<Study>, StateError> {
    read(state, &key_study(study))
}

pub fn protocol_version(
    state: &dyn StateRead,
    study: &str,
    version: u32,
) -> Result<Option<ProtocolVersion>, StateError> {
    read(state, &key_version(study, version))
}

/// The versions a document (by its SHA-256) was registered in.
pub fn document_versions(
    state: &dyn StateRead,
    study: &str,
    hash: &Hash,
) -> Result<Vec<DocumentVersion>, StateError> {
    Ok(read(state, &key_document(study, hash))?.unwrap_or_default())
}

pub fn subject(
    state: &dyn StateRead,
    study: &str,
    subject: &str,
) -> Result<Option<Subject>, StateError> {
    read(state, &key_subject(study, subject))
}

/// The subject id a patient key is enrolled under in a study.
pub fn participant(
    state: &dyn StateRead,
    study: &str,
    patient: &PublicKey,
) -> Result<Option<String>, StateError> {
    read(state, &key_participant(study, patient))
}

pub fn signature(
    state: &dyn StateRead,
    study: &str,
    seq: u64,
) -> Result<Option<ESignature>, StateError> {
    read(state, &key_signature(study, seq))
}

pub fn capture(
    state: &dyn StateRead,
    study: &str,
    capture: &Hash,
) -> Result<Option<CaptureHead>, StateError> {
    read(state, &key_capture(study, capture))
}

pub fn capture_version(
    state: &dyn StateRead,
    study: &str,
    capture: &Hash,
    version: u32,
) -> Result<Option<CaptureVersion>, StateError> {
    read(state, &key_capture_version(study, capture, version))
}

pub fn capture_log(
    state: &dyn StateRead,
    study: &str,
    seq: u64,
) -> Result<Option<CaptureLogEntry>, StateError> {
    read(state, &key_capture_log(study, seq))
}

pub fn adverse_event(
    state: &dyn StateRead,
    study: &str,
    event: &Hash,
) -> Result<Option<AdverseEvent>, StateError> {
    read(state, &key_adverse_event(study, event))
}

pub fn adverse_event_log(
    state: &dyn StateRead,
    study: &str,
    seq: u32,
) -> Result<Option<Hash>, StateError> {
    read(state, &key_adverse_event_log(study, seq))
}

pub fn alert(state: &dyn StateRead, seq: u64) -> Result<Option<Alert>, StateError> {
    read(state, &key_alert(seq))
}

/// The number of alerts so far.
pub fn alerts_count(state: &dyn StateRead) -> Result<u64, StateError> {
    Ok(read(state, KEY_ALERTS)?.unwrap_or(0))
}

pub fn clocks(state: &dyn StateRead, day: u64) -> Result<Vec<Clock>, StateError> {
    Ok(read(state, &key_clocks(day))?.unwrap_or_default())
}

/// The study an adverse event was reported in.
pub fn event_study(state: &dyn StateRead, event: &Hash) -> Result<Option<String>, StateError> {
    read(state, &key_event_study(event))
}
