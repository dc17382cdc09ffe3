//! Remote patient monitoring, as a ledger module (tags 80 to 87 of its block 80 to 95).
//!
//! - **Devices are members** (role `device`), enrolled by an organisation. A device is paired to
//!   a patient (an opaque patient id of the records module) by the patient's key or by the care
//!   provider (the device organisation's root key, node or practitioners), and unpaired the same
//!   way. The organisation that enrolled the device holds the patient and receives its readings,
//!   so they sit beside the patient's records, under the same consent.
//! - **Readings never reach the chain.** The receiving node checks each signed batch (see
//!   [`readings`]), keeps it encrypted, and anchors a window of batches with one `AnchorWindow`:
//!   a Merkle root over every reading of the window (per device, then over the devices), and for
//!   each device the batches it covers. The chain holds, per device, the next batch it expects:
//!   a batch that repeats or goes back is refused, a gap is counted.
//! - **Alerts.** The care team (the patient's custodian: its root key, node or practitioners)
//!   sets alert rules per patient (a threshold held for a duration, a rate of change, missing
//!   data). The receiving node evaluates them and commits `RaiseAlert`: the patient, the rule,
//!   the device and the time, never a value. One alert per rule is open at a time; a
//!   practitioner acknowledges it, and the node escalates it once the rule's timeout has passed
//!   in block time.
//!
//! **Invariant:** no reading value is ever in state or in a transaction: anchors carry roots and
//! counts, alerts carry the rule and the time.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_module::{
    Authority, Module, ModuleError, Standing, TxContext, View, custodian_of, read, standing,
};
use medledger_state::{StateError, StateRead, encode_value};
use medledger_types::{Height, Role};
use serde::{Deserialize, Serialize};

pub mod alerts;
pub mod readings;

pub use readings::{Code, Reading};

/// The most devices one anchor covers: 52 bytes each, so an anchor stays well under the
/// transaction size limit (a node anchors more devices in several transactions).
pub const SPANS_PER_ANCHOR_MAX: usize = 1_000;
/// The shortest and longest anchor windows.
pub const WINDOW_MS_MIN: u64 = 1_000;
pub const WINDOW_MS_MAX: u64 = 3_600_000;
/// How far past the block's time an anchored window or an alert may end (clocks differ).
pub const SKEW_MS_MAX: u64 = 120_000;
/// The most alert rules one patient has.
pub const RULES_PER_PATIENT_MAX: usize = 32;
/// The longest duration a rule looks back over.
pub const RULE_SPAN_MS_MAX: u64 = 86_400_000;
const RULE_ID_BYTES_MAX: usize = 32;

/// One device's part of an anchored window: the batches `first_seq..=last_seq` (some may be
/// missing: a gap the device left), holding `readings` readings under `root`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Span {
    pub device: PublicKey,
    pub first_seq: u64,
    pub last_seq: u64,
    pub readings: u32,
}

/// What an alert rule watches for on one code.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// Every reading below `limit` for at least `for_ms` (0: one reading is enough).
    Below { limit: i64, for_ms: u64 },
    /// Every reading above `limit` for at least `for_ms`.
    Above { limit: i64, for_ms: u64 },
    /// A change of at least `delta` (up or down) within `within_ms`.
    Change { delta: i64, within_ms: u64 },
    /// No reading of the code for `for_ms`.
    Missing { for_ms: u64 },
}

/// A care team's rule for one patient.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AlertRule {
    /// 1 to 32 lower-case letters, digits or hyphens, unique for the patient.
    pub id: String,
    pub code: Code,
    pub condition: Condition,
    /// Escalate an alert nobody acknowledged after this long, if set.
    #[serde(default)]
    pub escalate_after_ms: Option<u64>,
}

/// A device's pairing, and what its anchors have covered.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Pairing {
    pub device: PublicKey,
    /// The opaque patient id (records' `patient/<id>`).
    pub patient: Hash,
    /// The organisation that enrolled the device, whose node receives its readings.
    pub org: String,
    pub paired_by: PublicKey,
    pub paired_at: Height,
    pub unpaired_at: Option<Height>,
    /// The batch the next anchor must start at (or after, leaving a gap).
    pub next_seq: u64,
    pub readings: u64,
    /// Batches the device never delivered.
    pub missing_batches: u64,
    pub anchors: u64,
}

impl Pairing {
    pub fn active(&self) -> bool {
        self.unpaired_at.is_none()
    }
}

/// One anchored window of readings.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Anchor {
    pub org: String,
    pub seq: u64,
    pub root: Hash,
    pub window_start_ms: u64,
    pub window_ms: u64,
    pub devices: u32,
    pub readings: u64,
    /// Batches missing before this window's, over all its devices.
    pub missing_batches: u64,
    pub tx: Hash,
    pub height: Height,
}

/// Where an alert stands.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Escalated {
        height: Height,
        time_ms: u64,
    },
    Acknowledged {
        by: PublicKey,
        height: Height,
        time_ms: u64,
    },
}

/// What happened to an alert.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertChange {
    Raised,
    Escalated,
    Acknowledged,
}

impl AlertChange {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertChange::Raised => "raised",
            AlertChange::Escalated => "escalated",
            AlertChange::Acknowledged => "acknowledged",
        }
    }
}

/// One entry of an organisation's alert feed: every raise, escalation and acknowledgement is
/// numbered in the order its block committed, so a subscriber that follows the feed (a stream,
/// a webhook) hears of each change once, in order, and resumes from a number.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Its number in the organisation's feed.
    pub seq: u64,
    /// The alert it concerns.
    pub alert: u64,
    pub change: AlertChange,
    pub height: Height,
    pub time_ms: u64,
}

/// An alert: which rule fired for which patient and when. Never a value.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Alert {
    pub org: String,
    pub seq: u64,
    pub patient: Hash,
    pub rule: String,
    pub device: PublicKey,
    /// The time of the reading (or of the silence) that fired the rule.
    pub at_ms: u64,
    pub raised_height: Height,
    pub raised_ms: u64,
    pub escalate_after_ms: Option<u64>,
    pub state: AlertState,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MonitorOp {
    /// Pairs an enrolled device with a patient (the patient's key, or the device's organisation).
    PairDevice { device: PublicKey, patient: Hash },
    /// Ends a device's pairing: its readings are refused from this block on.
    UnpairDevice { device: PublicKey },
    /// The receiving organisation's node anchors a window of readings.
    AnchorWindow {
        window_start_ms: u64,
        window_ms: u64,
        root: Hash,
        spans: Vec<Span>,
    },
    /// The care team sets (or replaces) an alert rule for a patient.
    SetAlertRule { patient: Hash, rule: AlertRule },
    /// The care team removes a rule.
    RemoveAlertRule { patient: Hash, rule: String },
    /// The receiving node raises an alert: a rule fired on a device's readings.
    RaiseAlert {
        patient: Hash,
        rule: String,
        device: PublicKey,
        at_ms: u64,
    },
    /// A practitioner of the care team acknowledges an alert.
    AcknowledgeAlert { org: String, seq: u64 },
    /// The raising node escalates an alert nobody acknowledged within its rule's timeout.
    EscalateAlert { org: String, seq: u64 },
    /// The receiving organisation's node raises an alert of a trial's monitored threshold for a
    /// participant on study at this organisation (a site of the study).
    RaiseTrialAlert {
        patient: Hash,
        study: String,
        threshold: u16,
        device: PublicKey,
        at_ms: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} is not an enrolled, unrevoked device")]
    NotADevice(PublicKey),
    #[error("no patient {0}, or the patient was erased")]
    UnknownPatient(Hash),
    #[error("device {device} was enrolled by {org}, which does not hold the patient")]
    NotCustodian { device: PublicKey, org: String },
    #[error("device {0} is paired already; unpair it first")]
    AlreadyPaired(PublicKey),
    #[error("device {0} is not paired")]
    NotPaired(PublicKey),
    #[error(
        "only the patient or the device's organisation (its root key, node or practitioners) pairs and unpairs it"
    )]
    NotAllowed,
    #[error("only an organisation's root key or node anchors readings and raises alerts")]
    NotANode,
    #[error("device {device} reports to {org}, not to the sender's organisation")]
    WrongOrganisation { device: PublicKey, org: String },
    #[error(
        "device {device}'s batches from {first_seq} were anchored already (the next is {next_seq})"
    )]
    Replay {
        device: PublicKey,
        first_seq: u64,
        next_seq: u64,
    },
    #[error("the window ends {ahead_ms} ms after the block's time (at most {SKEW_MS_MAX})")]
    ClockAhead { ahead_ms: u64 },
    #[error(
        "only the patient's care team (its custodian's root key, node or practitioners) sets rules and acknowledges alerts"
    )]
    NotCareTeam,
    #[error("patient {0} has no rule {1}")]
    UnknownRule(Hash, String),
    #[error("patient {patient} has {RULES_PER_PATIENT_MAX} rules already")]
    TooManyRules { patient: Hash },
    #[error("device {device} is not paired with patient {patient}")]
    NotThePatientsDevice { device: PublicKey, patient: Hash },
    #[error("rule {0} has an open alert already")]
    AlertOpen(String),
    #[error("no alert {org}/{seq}")]
    UnknownAlert { org: String, seq: u64 },
    #[error("the alert was acknowledged already")]
    Acknowledged,
    #[error("the alert cannot be escalated yet (or at all): {0}")]
    NotDue(String),
    #[error("the patient is not a participant of study {0:?} on study at this organisation")]
    NotATrialParticipant(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ModuleError for MonitorError {
    fn code(&self) -> &'static str {
        match self {
            MonitorError::Invalid { .. } => "invalid",
            MonitorError::NotADevice(_) => "not_a_device",
            MonitorError::UnknownPatient(_) => "unknown_patient",
            MonitorError::NotCustodian { .. } => "not_custodian",
            MonitorError::AlreadyPaired(_) => "already_paired",
            MonitorError::NotPaired(_) => "not_paired",
            MonitorError::NotAllowed => "not_allowed",
            MonitorError::NotANode => "not_a_node",
            MonitorError::WrongOrganisation { .. } => "wrong_organisation",
            MonitorError::Replay { .. } => "replay",
            MonitorError::ClockAhead { .. } => "clock_ahead",
            MonitorError::NotCareTeam => "not_care_team",
            MonitorError::UnknownRule(..) => "unknown_rule",
            MonitorError::TooManyRules { .. } => "too_many_rules",
            MonitorError::NotThePatientsDevice { .. } => "not_the_patients_device",
            MonitorError::AlertOpen(_) => "alert_open",
            MonitorError::UnknownAlert { .. } => "unknown_alert",
            MonitorError::Acknowledged => "acknowledged",
            MonitorError::NotDue(_) => "not_due",
            MonitorError::NotATrialParticipant(_) => "not_a_trial_participant",
            MonitorError::State(_) => "state_error",
        }
    }
}

// Keys.

pub fn key_pairing(device: &PublicKey) -> Vec<u8> {
    format!("monitor-device/{device}").into_bytes()
}

pub fn key_anchor(org: &str, seq: u64) -> Vec<u8> {
    format!("monitor-anchor/{org}/{seq:020}").into_bytes()
}

pub fn key_anchor_count(org: &str) -> Vec<u8> {
    format!("monitor-anchor-count/{org}").into_bytes()
}

pub fn key_rule(patient: &Hash, id: &str) -> Vec<u8> {
    format!("monitor-rule/{patient}/{id}").into_bytes()
}

/// The ids of a patient's rules, sorted.
pub fn key_rules(patient: &Hash) -> Vec<u8> {
    format!("monitor-rules/{patient}").into_bytes()
}

pub fn key_alert(org: &str, seq: u64) -> Vec<u8> {
    format!("monitor-alert/{org}/{seq:020}").into_bytes()
}

pub fn key_alert_count(org: &str) -> Vec<u8> {
    format!("monitor-alert-count/{org}").into_bytes()
}

/// The n-th change in an organisation's alert feed.
pub fn key_alert_event(org: &str, n: u64) -> Vec<u8> {
    format!("monitor-alert-event/{org}/{n:020}").into_bytes()
}

pub fn key_alert_event_count(org: &str) -> Vec<u8> {
    format!("monitor-alert-event-count/{org}").into_bytes()
}

/// The open alert of a patient's rule: (org, seq).
pub fn key_open(patient: &Hash, rule: &str) -> Vec<u8> {
    format!("monitor-open/{patient}/{rule}").into_bytes()
}

/// The n-th alert of a patient: (org, seq), so the patient sees theirs.
pub fn key_patient_alert(patient: &Hash, n: u64) -> Vec<u8> {
    format!("monitor-patient-alert/{patient}/{n:020}").into_bytes()
}

pub fn key_patient_alert_count(patient: &Hash) -> Vec<u8> {
    format!("monitor-patient-alert-count/{patient}").into_bytes()
}

/// The record that stands for a device's readings of a patient in the records module (an
/// Observation of category vital-signs, written by the custodian's node when the device first
/// reports): consent over the patient's Observations governs the readings, and every read of them
/// is an access event on this record.
pub fn stream_record(device: &PublicKey, patient: &Hash) -> Hash {
    medledger_crypto::hash_tagged(b"medledger/monitor-stream", &[&device.0, &patient.0])
}

// Queries.

pub fn pairing(state: &dyn StateRead, device: &PublicKey) -> Result<Option<Pairing>, StateError> {
    read(state, &key_pairing(device))
}

pub fn anchor(state: &dyn StateRead, org: &str, seq: u64) -> Result<Option<Anchor>, StateError> {
    read(state, &key_anchor(org, seq))
}

pub fn anchor_count(state: &dyn StateRead, org: &str) -> Result<u64, StateError> {
    Ok(read(state, &key_anchor_count(org))?.unwrap_or(0))
}

pub fn rule(
    state: &dyn StateRead,
    patient: &Hash,
    id: &str,
) -> Result<Option<AlertRule>, StateError> {
    read(state, &key_rule(patient, id))
}

/// A patient's rules, by id.
pub fn rules(state: &dyn StateRead, patient: &Hash) -> Result<Vec<AlertRule>, StateError> {
    let ids: Vec<String> = read(state, &key_rules(patient))?.unwrap_or_default();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(found) = rule(state, patient, &id)? {
            out.push(found);
        }
    }
    Ok(out)
}

pub fn alert(state: &dyn StateRead, org: &str, seq: u64) -> Result<Option<Alert>, StateError> {
    read(state, &key_alert(org, seq))
}

pub fn alert_count(state: &dyn StateRead, org: &str) -> Result<u64, StateError> {
    Ok(read(state, &key_alert_count(org))?.unwrap_or(0))
}

pub fn alert_event(
    state: &dyn StateRead,
    org: &str,
    n: u64,
) -> Result<Option<AlertEvent>, StateError> {
    read(state, &key_alert_event(org, n))
}

/// How many changes an organisation's alert feed holds.
pub fn alert_event_count(state: &dyn StateRead, org: &str) -> Result<u64, StateError> {
    Ok(read(state, &key_alert_event_count(org))?.unwrap_or(0))
}

/// Numbers a change of alert `seq` in `org`'s feed.
fn push_alert_event(
    state: &mut View<'_, '_>,
    org: &str,
    alert: u64,
    change: AlertChange,
    block: &medledger_module::BlockContext,
) -> Result<(), StateError> {
    let seq = alert_event_count(&*state, org)?;
    state.put(
        key_alert_event(org, seq),
        encode_value(&AlertEvent {
            seq,
            alert,
            change,
            height: block.height,
            time_ms: block.time_ms,
        }),
    );
    state.put(key_alert_event_count(org), encode_value(&(seq + 1)));
    Ok(())
}

/// A patient's alerts from `offset`, at most `limit`, oldest first, and their total.
pub fn patient_alerts(
    state: &dyn StateRead,
    patient: &Hash,
    offset: u64,
    limit: u64,
) -> Result<(u64, Vec<Alert>), StateError> {
    let total: u64 = read(state, &key_patient_alert_count(patient))?.unwrap_or(0);
    let mut out = Vec::new();
    for n in offset..total.min(offset.saturating_add(limit)) {
        if let Some((org, seq)) = read::<(String, u64)>(state, &key_patient_alert(patient, n))?
            && let Some(found) = alert(state, &org, seq)?
        {
            out.push(found);
        }
    }
    Ok((total, out))
}

// Checks.

fn invalid(field: &'static str, reason: impl Into<String>) -> MonitorError {
    MonitorError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The organisation of an enrolled, unrevoked device.
fn device_org(state: &dyn StateRead, device: &PublicKey) -> Result<String, MonitorError> {
    match standing(state, device)? {
        Standing::Acts(Authority::Member {
            org,
            role: Role::Device,
        }) => Ok(org),
        _ => Err(MonitorError::NotADevice(*device)),
    }
}

/// Whether the sender acts for `org` as its root key, its node or one of its practitioners.
fn acts_for(authority: &Authority, org: &str) -> bool {
    match authority {
        Authority::Organisation { org: own } => own == org,
        Authority::Member { org: own, role } => {
            own == org && matches!(role, Role::Validator | Role::Practitioner)
        }
    }
}

/// The patient's record (records' `patient/<id>`), unless unknown or erased.
fn live_patient(
    state: &dyn StateRead,
    patient: &Hash,
) -> Result<medledger_records::PatientEntry, MonitorError> {
    medledger_records::patient(state, patient)?
        .filter(|entry| entry.erased_at.is_none())
        .ok_or(MonitorError::UnknownPatient(*patient))
}

/// The care team of a patient: its custodian's root key, node or practitioners.
fn check_care_team(
    tx: &TxContext<'_>,
    state: &dyn StateRead,
    patient: &Hash,
) -> Result<(), MonitorError> {
    let entry = live_patient(state, patient)?;
    if acts_for(tx.authority, &entry.custodian) {
        Ok(())
    } else {
        Err(MonitorError::NotCareTeam)
    }
}

fn check_rule(rule: &AlertRule) -> Result<(), MonitorError> {
    if rule.id.is_empty()
        || rule.id.len() > RULE_ID_BYTES_MAX
        || !rule
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(
            "rule id",
            format!("1 to {RULE_ID_BYTES_MAX} lower-case letters, digits or hyphens"),
        ));
    }
    let span = match &rule.condition {
        Condition::Below { limit, for_ms } | Condition::Above { limit, for_ms } => {
            if !rule.code.plausible().contains(limit) {
                return Err(invalid(
                    "limit",
                    format!(
                        "a plausible {} value, in {} with {} decimals",
                        rule.code.loinc(),
                        rule.code.unit(),
                        rule.code.decimals()
                    ),
                ));
            }
            *for_ms
        }
        Condition::Change { delta, within_ms } => {
            let range = rule.code.plausible();
            if *delta <= 0 || *delta > range.end() - range.start() {
                return Err(invalid(
                    "delta",
                    "a positive change within the code's plausible range",
                ));
            }
            if *within_ms == 0 {
                return Err(invalid("within_ms", "a positive duration"));
            }
            *within_ms
        }
        Condition::Missing { for_ms } => {
            if *for_ms < WINDOW_MS_MIN {
                return Err(invalid("for_ms", "at least a second"));
            }
            *for_ms
        }
    };
    if span > RULE_SPAN_MS_MAX {
        return Err(invalid("duration", "at most a day"));
    }
    if rule
        .escalate_after_ms
        .is_some_and(|after| !(60_000..=RULE_SPAN_MS_MAX).contains(&after))
    {
        return Err(invalid("escalate_after_ms", "between a minute and a day"));
    }
    Ok(())
}

/// The organisation a node or root key acts for.
/// The organisation of the node raising an alert for `patient` from `device`: the device must be
/// paired with the patient at that organisation.
fn paired_here(
    tx: &TxContext<'_>,
    state: &View<'_, '_>,
    patient: &Hash,
    device: &PublicKey,
) -> Result<String, MonitorError> {
    let org = node_org(tx)?;
    let paired = pairing(state, device)?
        .filter(|found| found.patient == *patient)
        .ok_or(MonitorError::NotThePatientsDevice {
            device: *device,
            patient: *patient,
        })?;
    if paired.org != org {
        return Err(MonitorError::WrongOrganisation {
            device: *device,
            org: paired.org,
        });
    }
    Ok(org)
}

/// An alert about to be raised.
struct Raised {
    org: String,
    patient: Hash,
    rule: String,
    device: PublicKey,
    at_ms: u64,
    escalate_after_ms: Option<u64>,
}

/// Raises an alert: numbered in its organisation's alerts and feed, listed for the patient, the
/// one open alert of its rule.
fn raise(tx: &TxContext<'_>, state: &mut View<'_, '_>, raised: Raised) -> Result<(), MonitorError> {
    let Raised {
        org,
        patient,
        rule: id,
        device,
        at_ms,
        escalate_after_ms,
    } = raised;
    if at_ms > tx.block.time_ms.saturating_add(SKEW_MS_MAX) {
        return Err(MonitorError::ClockAhead {
            ahead_ms: at_ms - tx.block.time_ms,
        });
    }
    if state.get(&key_open(&patient, &id))?.is_some() {
        return Err(MonitorError::AlertOpen(id));
    }
    let seq = alert_count(&*state, &org)?;
    state.put(
        key_alert(&org, seq),
        encode_value(&Alert {
            org: org.clone(),
            seq,
            patient,
            rule: id.clone(),
            device,
            at_ms,
            raised_height: tx.block.height,
            raised_ms: tx.block.time_ms,
            escalate_after_ms,
            state: AlertState::Open,
        }),
    );
    state.put(key_alert_count(&org), encode_value(&(seq + 1)));
    state.put(key_open(&patient, &id), encode_value(&(org.clone(), seq)));
    let n: u64 = read(&*state, &key_patient_alert_count(&patient))?.unwrap_or(0);
    state.put(
        key_patient_alert(&patient, n),
        encode_value(&(org.clone(), seq)),
    );
    state.put(key_patient_alert_count(&patient), encode_value(&(n + 1)));
    push_alert_event(state, &org, seq, AlertChange::Raised, tx.block)?;
    Ok(())
}

/// The rule id of a trial's monitored threshold: `trial:<study>:<index>`. Care-team rule ids
/// hold no colon, so the two never meet.
pub fn trial_rule_id(study: &str, threshold: u16) -> String {
    format!("trial:{study}:{threshold}")
}

/// The study and threshold a trial rule id names.
pub fn parse_trial_rule(id: &str) -> Option<(&str, u16)> {
    let (study, threshold) = id.strip_prefix("trial:")?.rsplit_once(':')?;
    Some((study, threshold.parse().ok()?))
}

/// The rules a patient's trials add at organisation `org`: each monitored threshold of every
/// study of `studies` (those that monitor readings: `medledger_trials::monitored_studies`) the
/// patient is on at that site, as a rule `trial:<study>:<index>` (a threshold of a code devices
/// do not report is left out).
pub fn trial_rules(
    state: &dyn StateRead,
    patient: &Hash,
    org: &str,
    studies: &[String],
) -> Result<Vec<AlertRule>, StateError> {
    if studies.is_empty() {
        return Ok(Vec::new());
    }
    let Some(key) = medledger_records::patient(state, patient)?.and_then(|entry| entry.key) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for study in studies {
        let Some(subject) = medledger_trials::participant(state, study, &key)? else {
            continue;
        };
        let on_study = medledger_trials::subject(state, study, &subject)?.is_some_and(|found| {
            found.site == org && found.status == medledger_trials::SubjectStatus::OnStudy
        });
        let Some(monitored) = medledger_trials::monitored(state, study)?.filter(|_| on_study)
        else {
            continue;
        };
        for (index, threshold) in monitored.thresholds.iter().enumerate() {
            let (Some(code), Ok(index)) =
                (Code::from_loinc(&threshold.loinc), u16::try_from(index))
            else {
                continue;
            };
            let condition = match (threshold.below, threshold.above) {
                (Some(limit), _) => Condition::Below {
                    limit,
                    for_ms: threshold.for_ms,
                },
                (None, Some(limit)) => Condition::Above {
                    limit,
                    for_ms: threshold.for_ms,
                },
                (None, None) => continue,
            };
            out.push(AlertRule {
                id: trial_rule_id(study, index),
                code,
                condition,
                escalate_after_ms: None,
            });
        }
    }
    Ok(out)
}

fn node_org(tx: &TxContext<'_>) -> Result<String, MonitorError> {
    custodian_of(tx.authority)
        .map(str::to_string)
        .ok_or(MonitorError::NotANode)
}

#[derive(Debug)]
pub struct Monitor;

impl Module for Monitor {
    const NAME: &'static str = "monitor";
    const PREFIXES: &'static [&'static str] = &[
        "monitor-device/",
        "monitor-anchor/",
        "monitor-anchor-count/",
        "monitor-rule/",
        "monitor-rules/",
        "monitor-alert/",
        "monitor-alert-count/",
        "monitor-alert-event/",
        "monitor-alert-event-count/",
        "monitor-open/",
        "monitor-patient-alert/",
        "monitor-patient-alert-count/",
    ];
    // Pairing and alert rules name a patient of the records module, and its custodian.
    const READS: &'static [&'static str] = &["patient/", "trial/", "trial-monitored/"];
    const KINDS: &'static [&'static str] = &[
        "pair_device",
        "unpair_device",
        "anchor_window",
        "set_alert_rule",
        "remove_alert_rule",
        "raise_alert",
        "acknowledge_alert",
        "escalate_alert",
        "raise_trial_alert",
    ];
    type Op = MonitorOp;
    type Error = MonitorError;

    fn kind(op: &MonitorOp) -> &'static str {
        match op {
            MonitorOp::PairDevice { .. } => "pair_device",
            MonitorOp::UnpairDevice { .. } => "unpair_device",
            MonitorOp::AnchorWindow { .. } => "anchor_window",
            MonitorOp::SetAlertRule { .. } => "set_alert_rule",
            MonitorOp::RemoveAlertRule { .. } => "remove_alert_rule",
            MonitorOp::RaiseAlert { .. } => "raise_alert",
            MonitorOp::AcknowledgeAlert { .. } => "acknowledge_alert",
            MonitorOp::EscalateAlert { .. } => "escalate_alert",
            MonitorOp::RaiseTrialAlert { .. } => "raise_trial_alert",
        }
    }

    fn apply(
        op: &MonitorOp,
        tx: &TxContext<'_>,
        state: &mut View<'_, '_>,
    ) -> Result<(), MonitorError> {
        match op {
            MonitorOp::PairDevice { device, patient } => {
                let org = device_org(&*state, device)?;
                let entry = live_patient(&*state, patient)?;
                // The readings join the patient's records at the custodian, under the same
                // consent: a device is enrolled by the organisation that holds its patient.
                if entry.custodian != org {
                    return Err(MonitorError::NotCustodian {
                        device: *device,
                        org,
                    });
                }
                let by_patient = entry.key == Some(tx.sender)
                    && matches!(
                        tx.authority,
                        Authority::Member {
                            role: Role::Patient,
                            ..
                        }
                    );
                if !by_patient && !acts_for(tx.authority, &org) {
                    return Err(MonitorError::NotAllowed);
                }
                let before = pairing(&*state, device)?;
                if before.as_ref().is_some_and(Pairing::active) {
                    return Err(MonitorError::AlreadyPaired(*device));
                }
                // A device paired again goes on from its last batch: its sequence never restarts.
                let next_seq = before.map_or(0, |earlier| earlier.next_seq);
                state.put(
                    key_pairing(device),
                    encode_value(&Pairing {
                        device: *device,
                        patient: *patient,
                        org,
                        paired_by: tx.sender,
                        paired_at: tx.block.height,
                        unpaired_at: None,
                        next_seq,
                        readings: 0,
                        missing_batches: 0,
                        anchors: 0,
                    }),
                );
                Ok(())
            }
            MonitorOp::UnpairDevice { device } => {
                let mut found = pairing(&*state, device)?
                    .filter(Pairing::active)
                    .ok_or(MonitorError::NotPaired(*device))?;
                let patient_key = medledger_records::patient(&*state, &found.patient)?
                    .and_then(|entry| entry.key);
                if patient_key != Some(tx.sender) && !acts_for(tx.authority, &found.org) {
                    return Err(MonitorError::NotAllowed);
                }
                found.unpaired_at = Some(tx.block.height);
                state.put(key_pairing(device), encode_value(&found));
                Ok(())
            }
            MonitorOp::AnchorWindow {
                window_start_ms,
                window_ms,
                root,
                spans,
            } => {
                let org = node_org(tx)?;
                if !(WINDOW_MS_MIN..=WINDOW_MS_MAX).contains(window_ms) {
                    return Err(invalid(
                        "window_ms",
                        format!("{WINDOW_MS_MIN} to {WINDOW_MS_MAX} milliseconds"),
                    ));
                }
                let end = window_start_ms
                    .checked_add(*window_ms)
                    .ok_or_else(|| invalid("window_start_ms", "out of range"))?;
                if end > tx.block.time_ms.saturating_add(SKEW_MS_MAX) {
                    return Err(MonitorError::ClockAhead {
                        ahead_ms: end - tx.block.time_ms,
                    });
                }
                if spans.is_empty() || spans.len() > SPANS_PER_ANCHOR_MAX {
                    return Err(invalid(
                        "spans",
                        format!("1 to {SPANS_PER_ANCHOR_MAX} devices"),
                    ));
                }
                if !spans.windows(2).all(|pair| pair[0].device < pair[1].device) {
                    return Err(invalid("spans", "sorted by device, each device once"));
                }
                let mut readings = 0u64;
                let mut missing = 0u64;
                for span in spans {
                    let mut found = pairing(&*state, &span.device)?
                        .ok_or(MonitorError::NotPaired(span.device))?;
                    if found.org != org {
                        return Err(MonitorError::WrongOrganisation {
                            device: span.device,
                            org: found.org,
                        });
                    }
                    if span.first_seq < found.next_seq {
                        return Err(MonitorError::Replay {
                            device: span.device,
                            first_seq: span.first_seq,
                            next_seq: found.next_seq,
                        });
                    }
                    let batches = span
                        .last_seq
                        .checked_sub(span.first_seq)
                        .and_then(|d| d.checked_add(1))
                        .ok_or_else(|| invalid("spans", "last_seq before first_seq"))?;
                    let most = batches.saturating_mul(readings::BATCH_READINGS_MAX as u64);
                    if span.readings == 0 || u64::from(span.readings) > most {
                        return Err(invalid(
                            "spans",
                            format!(
                                "device {}: {} readings cannot fill {batches} batches",
                                span.device, span.readings
                            ),
                        ));
                    }
                    let gap = span.first_seq - found.next_seq;
                    found.missing_batches += gap;
                    found.next_seq = span.last_seq + 1;
                    found.readings += u64::from(span.readings);
                    found.anchors += 1;
                    readings += u64::from(span.readings);
                    missing += gap;
                    state.put(key_pairing(&span.device), encode_value(&found));
                }
                let seq = anchor_count(&*state, &org)?;
                state.put(
                    key_anchor(&org, seq),
                    encode_value(&Anchor {
                        org: org.clone(),
                        seq,
                        root: *root,
                        window_start_ms: *window_start_ms,
                        window_ms: *window_ms,
                        devices: spans.len() as u32,
                        readings,
                        missing_batches: missing,
                        tx: tx.id,
                        height: tx.block.height,
                    }),
                );
                state.put(key_anchor_count(&org), encode_value(&(seq + 1)));
                Ok(())
            }
            MonitorOp::SetAlertRule { patient, rule } => {
                check_care_team(tx, &*state, patient)?;
                check_rule(rule)?;
                let mut ids: Vec<String> = read(&*state, &key_rules(patient))?.unwrap_or_default();
                if let Err(at) = ids.binary_search(&rule.id) {
                    if ids.len() >= RULES_PER_PATIENT_MAX {
                        return Err(MonitorError::TooManyRules { patient: *patient });
                    }
                    ids.insert(at, rule.id.clone());
                    state.put(key_rules(patient), encode_value(&ids));
                }
                state.put(key_rule(patient, &rule.id), encode_value(rule));
                Ok(())
            }
            MonitorOp::RemoveAlertRule { patient, rule: id } => {
                check_care_team(tx, &*state, patient)?;
                let mut ids: Vec<String> = read(&*state, &key_rules(patient))?.unwrap_or_default();
                let at = ids
                    .binary_search(id)
                    .map_err(|_| MonitorError::UnknownRule(*patient, id.clone()))?;
                ids.remove(at);
                state.put(key_rules(patient), encode_value(&ids));
                state.delete(key_rule(patient, id));
                Ok(())
            }
            MonitorOp::RaiseAlert {
                patient,
                rule: id,
                device,
                at_ms,
            } => {
                let org = paired_here(tx, state, patient, device)?;
                let found = rule(&*state, patient, id)?
                    .ok_or_else(|| MonitorError::UnknownRule(*patient, id.clone()))?;
                let raised = Raised {
                    org,
                    patient: *patient,
                    rule: id.clone(),
                    device: *device,
                    at_ms: *at_ms,
                    escalate_after_ms: found.escalate_after_ms,
                };
                raise(tx, state, raised)
            }
            MonitorOp::RaiseTrialAlert {
                patient,
                study,
                threshold,
                device,
                at_ms,
            } => {
                let org = paired_here(tx, state, patient, device)?;
                let not_participant = || MonitorError::NotATrialParticipant(study.clone());
                let key = live_patient(&*state, patient)?
                    .key
                    .ok_or_else(not_participant)?;
                let subject = medledger_trials::participant(&*state, study, &key)?
                    .ok_or_else(not_participant)?;
                let on_study =
                    medledger_trials::subject(&*state, study, &subject)?.is_some_and(|found| {
                        found.site == org
                            && found.status == medledger_trials::SubjectStatus::OnStudy
                    });
                if !on_study {
                    return Err(not_participant());
                }
                let id = trial_rule_id(study, *threshold);
                medledger_trials::monitored(&*state, study)?
                    .filter(|monitored| monitored.thresholds.len() > usize::from(*threshold))
                    .ok_or_else(|| MonitorError::UnknownRule(*patient, id.clone()))?;
                let raised = Raised {
                    org,
                    patient: *patient,
                    rule: id,
                    device: *device,
                    at_ms: *at_ms,
                    escalate_after_ms: None,
                };
                raise(tx, state, raised)
            }
            MonitorOp::AcknowledgeAlert { org, seq } => {
                let mut found =
                    alert(&*state, org, *seq)?.ok_or_else(|| MonitorError::UnknownAlert {
                        org: org.clone(),
                        seq: *seq,
                    })?;
                let custodian = live_patient(&*state, &found.patient)?.custodian;
                let practitioner = |of: &str| matches!(tx.authority, Authority::Member { org, role: Role::Practitioner } if org == of);
                // A trial alert is closed by the site's node once its draft is reported.
                let site_node = parse_trial_rule(&found.rule).is_some()
                    && matches!(tx.authority, Authority::Member { org, role: Role::Validator } if *org == found.org);
                if !practitioner(&custodian) && !practitioner(&found.org) && !site_node {
                    return Err(MonitorError::NotCareTeam);
                }
                if matches!(found.state, AlertState::Acknowledged { .. }) {
                    return Err(MonitorError::Acknowledged);
                }
                found.state = AlertState::Acknowledged {
                    by: tx.sender,
                    height: tx.block.height,
                    time_ms: tx.block.time_ms,
                };
                state.delete(key_open(&found.patient, &found.rule));
                state.put(key_alert(org, *seq), encode_value(&found));
                push_alert_event(state, org, *seq, AlertChange::Acknowledged, tx.block)?;
                Ok(())
            }
            MonitorOp::EscalateAlert { org, seq } => {
                if node_org(tx)? != *org {
                    return Err(MonitorError::NotANode);
                }
                let mut found =
                    alert(&*state, org, *seq)?.ok_or_else(|| MonitorError::UnknownAlert {
                        org: org.clone(),
                        seq: *seq,
                    })?;
                if found.state != AlertState::Open {
                    return Err(MonitorError::NotDue("it is not open".into()));
                }
                let Some(after) = found.escalate_after_ms else {
                    return Err(MonitorError::NotDue("its rule never escalates".into()));
                };
                let due = found.raised_ms.saturating_add(after);
                if tx.block.time_ms < due {
                    return Err(MonitorError::NotDue(format!(
                        "due at {due} ms, the block is at {} ms",
                        tx.block.time_ms
                    )));
                }
                found.state = AlertState::Escalated {
                    height: tx.block.height,
                    time_ms: tx.block.time_ms,
                };
                state.put(key_alert(org, *seq), encode_value(&found));
                push_alert_event(state, org, *seq, AlertChange::Escalated, tx.block)?;
                Ok(())
            }
        }
    }

    fn describe(key: &str, value: &[u8]) -> Option<serde_json::Value> {
        fn json<T: BorshDeserialize + Serialize>(value: &[u8]) -> Option<serde_json::Value> {
            serde_json::to_value(borsh::from_slice::<T>(value).ok()?).ok()
        }
        if key.starts_with("monitor-device/") {
            json::<Pairing>(value)
        } else if key.starts_with("monitor-anchor/") {
            json::<Anchor>(value)
        } else if key.starts_with("monitor-rule/") {
            json::<AlertRule>(value)
        } else if key.starts_with("monitor-rules/") {
            json::<Vec<String>>(value)
        } else if key.starts_with("monitor-alert/") {
            json::<Alert>(value)
        } else if key.starts_with("monitor-alert-event/") {
            json::<AlertEvent>(value)
        } else if key.starts_with("monitor-open/") || key.starts_with("monitor-patient-alert/") {
            json::<(String, u64)>(value)
        } else if key.starts_with("monitor-anchor-count/")
            || key.starts_with("monitor-alert-count/")
            || key.starts_with("monitor-alert-event-count/")
            || key.starts_with("monitor-patient-alert-count/")
        {
            json::<u64>(value)
        } else {
            None
        }
    }
}
