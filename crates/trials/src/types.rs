//! The trials module's operations and the records it keeps.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::{Hash, PublicKey};
use medledger_types::Height;
use serde::{Deserialize, Serialize};

use crate::DAY_MS;

/// Whether an outcome is primary or secondary.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Primary = 0,
    Secondary = 1,
}

/// A pre-specified outcome: what is measured and when (FHIR ResearchStudy.objective, as
/// ClinicalTrials.gov words it).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct OutcomeMeasure {
    pub kind: OutcomeKind,
    pub measure: String,
    pub time_frame: String,
}

/// How a version's outcomes differ from the version before, by measure.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum OutcomeChange {
    Added {
        outcome: OutcomeMeasure,
    },
    Removed {
        outcome: OutcomeMeasure,
    },
    /// The same measure, now of another kind or time frame.
    Modified {
        before: OutcomeMeasure,
        after: OutcomeMeasure,
    },
}

/// What a signature means (21 CFR 11.50(a)(3)).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum Meaning {
    /// The signer wrote it: a registration, an amendment, a capture, a report.
    Authorship = 0,
    /// The signer approves it (e.g. an ethics committee approving an amendment).
    Approval = 1,
    /// The signer reviewed it (e.g. an investigator signing off a form, a sponsor acknowledging
    /// an adverse event).
    Review = 2,
    /// The signer takes responsibility for it (e.g. the sponsor's report to the regulator).
    Responsibility = 3,
    /// A participant's consent to a protocol version.
    Consent = 4,
    /// A participant's withdrawal.
    Withdrawal = 5,
}

/// What a signature is on.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signed {
    ProtocolVersion { version: u32 },
    Subject { subject: String },
    Capture { capture: Hash, version: u32 },
    AdverseEvent { event: Hash },
}

/// One entry of a study's signature log.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ESignature {
    /// Whose signature it is: the transaction's sender, or the practitioner a site's node acted
    /// for (who signed their request to it).
    pub signer: PublicKey,
    /// The key that signed the transaction: the signer's own, or their organisation's node.
    pub sent_by: PublicKey,
    /// The signer's organisation and role at the time, as the ledger knew them.
    pub signer_org: String,
    pub signer_role: String,
    pub meaning: Meaning,
    pub on: Signed,
    pub height: Height,
    pub time_ms: u64,
    /// The signed transaction.
    pub tx: Hash,
}

/// A registered study.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Study {
    pub id: String,
    pub title: String,
    pub sponsor: String,
    /// A public registry's id (e.g. an NCT number), if any.
    pub registry_id: Option<String>,
    pub sites: Vec<String>,
    /// The protocol version in force.
    pub version: u32,
    /// The latest version that required re-consent (1 at registration): capture needs consent to
    /// it or a later version.
    pub consent_required: u32,
    pub registered_at: Height,
    pub registered_time_ms: u64,
    pub subjects: u32,
    pub signatures: u64,
    pub captures_logged: u64,
    pub adverse_events: u32,
}

/// One protocol version: its documents' hashes, its outcomes and how they changed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct ProtocolVersion {
    pub version: u32,
    pub protocol_hash: Hash,
    pub sap_hash: Hash,
    pub outcomes: Vec<OutcomeMeasure>,
    /// Why the protocol was amended (none for version 1).
    pub reason: Option<String>,
    pub reconsent: bool,
    pub outcome_changes: Vec<OutcomeChange>,
    pub height: Height,
    pub time_ms: u64,
    pub signer: PublicKey,
}

/// Which document of a version a hash is.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Protocol = 0,
    StatisticalAnalysisPlan = 1,
}

/// Where a document's hash was registered in a study.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct DocumentVersion {
    pub version: u32,
    pub kind: DocumentKind,
}

/// A subject's standing (FHIR ResearchSubject.status, in the words that apply).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "kebab-case")]
pub enum SubjectStatus {
    /// Enrolled by the site, not yet consented.
    Candidate = 0,
    /// Consented to some version.
    OnStudy = 1,
    Withdrawn = 2,
}

/// A participant enrolled in a study.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Subject {
    pub id: String,
    pub patient: PublicKey,
    pub site: String,
    pub status: SubjectStatus,
    /// The latest protocol version the participant consented to.
    pub consented_version: Option<u32>,
    pub enrolled_at: Height,
    pub enrolled_time_ms: u64,
    pub withdrawn_at: Option<Height>,
    pub withdrawn_time_ms: Option<u64>,
}

/// One captured form, as submitted by a site's node.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CaptureEntry {
    /// An opaque id the site's node chose for the form.
    pub capture: Hash,
    /// 1 for a new form; the next version for a correction.
    pub version: u32,
    pub subject: String,
    pub form: String,
    pub visit: String,
    /// A keyed commitment to the form's content (HMAC under the site's key).
    pub commitment: Hash,
    /// Who entered it: a practitioner of the site.
    pub author: PublicKey,
    /// Why it was corrected (required from version 2).
    pub reason: Option<String>,
}

/// A capture's current state.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CaptureHead {
    pub subject: String,
    pub form: String,
    pub visit: String,
    pub site: String,
    pub versions: u32,
}

/// One version of a capture.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CaptureVersion {
    pub version: u32,
    pub commitment: Hash,
    /// The protocol version in force when it was captured.
    pub protocol_version: u32,
    pub author: PublicKey,
    pub reason: Option<String>,
    pub height: Height,
    pub time_ms: u64,
    pub tx: Hash,
}

/// An entry of a study's capture log: which capture version came next.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct CaptureLogEntry {
    pub capture: Hash,
    pub version: u32,
}

/// An adverse event's seriousness (ICH E2A), most serious last.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    BorshSerialize,
    BorshDeserialize,
    Serialize,
    Deserialize,
)]
#[borsh(use_discriminant = true)]
#[serde(rename_all = "kebab-case")]
pub enum Seriousness {
    NonSerious = 0,
    /// Serious: hospitalisation, disability, a congenital anomaly or another important medical
    /// event.
    Serious = 1,
    LifeThreatening = 2,
    Fatal = 3,
}

/// How an adverse event stands against its regulatory clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockStatus {
    /// Not a serious, unexpected, related event: no expedited report is due.
    NotExpedited,
    /// Due, not yet reported, and the deadline has not passed.
    Running,
    /// Past its deadline and not reported.
    Overdue,
    ReportedOnTime,
    ReportedLate,
}

/// An adverse event as the chain knows it: codes and times, no narrative.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct AdverseEvent {
    pub id: Hash,
    pub reporter: PublicKey,
    pub subject: String,
    pub site: String,
    pub seriousness: Seriousness,
    pub expected: bool,
    pub related: bool,
    /// A keyed commitment to the site's full report (kept off chain).
    pub commitment: Hash,
    pub reported_at: Height,
    pub reported_time_ms: u64,
    /// When an expedited report to the regulator is due, if one is.
    pub deadline_ms: Option<u64>,
    pub acknowledged_time_ms: Option<u64>,
    pub regulator_report_time_ms: Option<u64>,
    /// The sponsor's reference for its report (e.g. an IND safety report number).
    pub regulator_reference: Option<String>,
    /// When the end-of-block check found the clock run out unreported.
    pub overdue_time_ms: Option<u64>,
}

impl AdverseEvent {
    /// 21 CFR 312.32(c): a suspected adverse reaction that is both serious and unexpected is
    /// reported within 15 calendar days; a fatal or life-threatening one within 7.
    pub fn clock_days(seriousness: Seriousness, expected: bool, related: bool) -> Option<u64> {
        if expected || !related {
            return None;
        }
        match seriousness {
            Seriousness::NonSerious => None,
            Seriousness::Serious => Some(15),
            Seriousness::LifeThreatening | Seriousness::Fatal => Some(7),
        }
    }

    pub fn deadline_from(time_ms: u64, days: u64) -> u64 {
        time_ms.saturating_add(days.saturating_mul(DAY_MS))
    }

    /// The clock's status at `now_ms` (a block's time).
    pub fn clock(&self, now_ms: u64) -> ClockStatus {
        let Some(deadline) = self.deadline_ms else {
            return ClockStatus::NotExpedited;
        };
        match self.regulator_report_time_ms {
            Some(reported) if reported <= deadline => ClockStatus::ReportedOnTime,
            Some(_) => ClockStatus::ReportedLate,
            None if now_ms > deadline => ClockStatus::Overdue,
            None => ClockStatus::Running,
        }
    }
}

/// A clock due on some day: which event, in which study.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Clock {
    pub deadline_ms: u64,
    pub study: String,
    pub event: Hash,
}

/// What an alert is about.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AlertKind {
    /// A site reported an adverse event; `deadline_ms` is set when an expedited report is due.
    AdverseEvent {
        event: Hash,
        subject: String,
        seriousness: Seriousness,
        expected: bool,
        related: bool,
        deadline_ms: Option<u64>,
    },
    /// An expedited report's deadline passed unreported.
    Overdue { event: Hash, deadline_ms: u64 },
    /// A participant withdrew.
    Withdrawal { subject: String },
    /// The protocol was amended.
    Amendment { version: u32, reconsent: bool },
}

/// One alert, numbered across the chain so a subscriber resumes from its cursor.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Alert {
    pub seq: u64,
    pub study: String,
    pub sponsor: String,
    pub height: Height,
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: AlertKind,
}

/// The trials module's operations. Their order is their payload tag (from the registry's base):
/// never reorder or remove one, only append.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TrialsOp {
    /// The sponsor registers a study and its protocol version 1.
    RegisterStudy {
        study: String,
        title: String,
        registry_id: Option<String>,
        protocol_hash: Hash,
        sap_hash: Hash,
        outcomes: Vec<OutcomeMeasure>,
        sites: Vec<String>,
    },
    /// The sponsor amends the protocol: the next version, with its reason.
    AmendProtocol {
        study: String,
        protocol_hash: Hash,
        sap_hash: Hash,
        outcomes: Vec<OutcomeMeasure>,
        reason: String,
        reconsent: bool,
    },
    /// A site enrols a participant (FHIR ResearchSubject) under an opaque subject id.
    EnrolSubject {
        study: String,
        subject: String,
        patient: PublicKey,
    },
    /// The participant consents to a protocol version (the current one).
    Consent { study: String, version: u32 },
    /// The participant withdraws, or the site records their withdrawal.
    Withdraw { study: String, subject: String },
    /// A site's node records captured forms as commitments.
    Capture {
        study: String,
        captures: Vec<CaptureEntry>,
    },
    /// A site reports an adverse event: a practitioner of the site, or its node for one
    /// (`reporter`).
    ReportAdverseEvent {
        study: String,
        event: Hash,
        reporter: PublicKey,
        subject: String,
        seriousness: Seriousness,
        expected: bool,
        related: bool,
        commitment: Hash,
    },
    /// The sponsor acknowledges an adverse event.
    AcknowledgeAdverseEvent { study: String, event: Hash },
    /// The sponsor records its report of an adverse event to the regulator.
    ReportToRegulator {
        study: String,
        event: Hash,
        reference: Option<String>,
    },
    /// A signature with a stated meaning on something of the study (a review of a form, an
    /// approval of an amendment).
    Sign {
        study: String,
        on: Signed,
        meaning: Meaning,
    },
    /// The sponsor sets (or replaces, or with none clears) the thresholds of device readings the
    /// protocol monitors for its participants: a crossing at a site opens an alert there and an
    /// adverse-event draft for the site to confirm.
    SetMonitoredThresholds {
        study: String,
        thresholds: Vec<MonitoredThreshold>,
    },
}

/// A threshold of device readings a protocol monitors: a LOINC code of the Personal Health
/// Device guide, a limit below or above which a reading crosses it (in the code's fixed units,
/// as the monitoring module keeps readings), held for a duration.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct MonitoredThreshold {
    pub loinc: String,
    #[serde(default)]
    pub below: Option<i64>,
    #[serde(default)]
    pub above: Option<i64>,
    #[serde(default)]
    pub for_ms: u64,
}

/// A study's monitored thresholds, and the protocol version in force when they were set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Monitored {
    pub version: u32,
    pub thresholds: Vec<MonitoredThreshold>,
    pub height: Height,
    pub time_ms: u64,
}
