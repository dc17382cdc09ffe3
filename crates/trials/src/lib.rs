//! Clinical trials, as a ledger module.
//!
//! A sponsor registers a study before anything can be enrolled in it: the SHA-256 of its protocol
//! and of its statistical analysis plan, its pre-specified outcomes, its sites and its registry id.
//! Amendments are new protocol versions, each with its reason, and each records how its outcomes
//! differ from the version before ([`OutcomeChange`]), so a switched outcome is visible to anyone
//! with the version it came in. A document's hash names the versions it was registered in, which
//! is how `verify-protocol` answers.
//!
//! A site enrols a participant (an enrolled patient key) as a subject under an opaque subject id;
//! the participant signs consent to one protocol version with their own key. An amendment may
//! require re-consent: from then on, data capture for a subject who has not consented to that
//! version is refused, as it is after their withdrawal. Capture puts only commitments on chain:
//! an opaque capture id, the form and visit, the protocol version in force and a keyed commitment
//! to the form's content, which stays encrypted at the site; a correction is a new version with
//! its reason.
//!
//! Adverse events carry seriousness, expectedness and relatedness. A serious, unexpected, related
//! event starts the regulatory clock of 21 CFR 312.32: 7 calendar days when fatal or
//! life-threatening, 15 otherwise, from the block that recorded the site's report. The sponsor's
//! acknowledgement and its report to the regulator are recorded with their block times, and at
//! the end of each block the clocks that ran out unreported are flagged overdue. Reports,
//! overdue clocks and withdrawals become numbered alerts (`trial-alert/<seq>`) that a node streams
//! to the sponsor and the regulators in order, from any cursor.
//!
//! Every signature (registration, amendment, consent, withdrawal, report, acknowledgement,
//! review) is a signed transaction, and the study's signature log records, in the spirit of 21 CFR
//! Part 11, who signed, when (the block's time) and what the signature means ([`Meaning`]).
//!
//! **Invariant:** no PHI on chain: subjects are opaque ids and patient keys, forms and visits are
//! labels, captured data and adverse-event narratives are keyed commitments and codes.

mod apply;
mod keys;
mod types;

pub use apply::{Trials, capture_allowed, check_site_author, outcome_changes};
pub use keys::*;
pub use types::*;

use medledger_state::StateError;

/// The longest id (form, visit, registry id).
pub const ID_BYTES_MAX: usize = 64;
/// The longest study id.
pub const STUDY_ID_BYTES_MAX: usize = 31;
/// The longest subject id.
pub const SUBJECT_ID_BYTES_MAX: usize = 32;
/// The longest title, outcome measure or reason.
pub const TEXT_BYTES_MAX: usize = 512;
/// The most outcomes one protocol version pre-specifies.
pub const OUTCOMES_MAX: usize = 64;
/// The most sites of one study.
pub const SITES_MAX: usize = 256;
/// The most protocol versions of one study.
pub const VERSIONS_MAX: u32 = 1_000;
/// The most captures one transaction records (256 of them fit well within `TX_BYTES_MAX`).
pub const CAPTURES_PER_TX_MAX: usize = 256;
/// The most versions (corrections included) of one capture.
pub const CAPTURE_VERSIONS_MAX: u32 = 1_000;
/// The most regulatory clocks that may fall due on one calendar day, over all studies.
pub const CLOCKS_PER_DAY_MAX: usize = 4_096;
/// How many days past its last check the end-of-block hook looks for expired clocks at most: a
/// chain idle for longer checks the days it missed over the next blocks.
pub const CLOCK_DAYS_PER_BLOCK_MAX: u64 = 64;

pub const DAY_MS: u64 = 86_400_000;
/// The most thresholds a protocol monitors.
pub const THRESHOLDS_MAX: usize = 16;
/// The most studies that monitor device readings.
pub const MONITORED_STUDIES_MAX: usize = 256;

/// The trials module's refusals. Codes and messages go into receipts: never change one.
#[derive(Debug, thiserror::Error)]
pub enum TrialsError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("study {0:?} is already registered")]
    StudyExists(String),
    #[error("no study {0:?} is registered")]
    UnknownStudy(String),
    #[error("only the study's sponsor may do this")]
    NotSponsor,
    #[error("only a site of the study may do this")]
    NotSite,
    #[error("organisation {0:?} does not exist")]
    UnknownOrganisation(String),
    #[error("the participant must be an enrolled, unrevoked patient key")]
    NotPatient,
    #[error("subject {0:?} is already enrolled in this study")]
    SubjectExists(String),
    #[error("this patient is already enrolled in this study as another subject")]
    PatientEnrolled,
    #[error("no subject {0:?} in this study")]
    UnknownSubject(String),
    #[error("only the participant signs their own consent")]
    NotParticipant,
    #[error("consent must be to the current protocol version {current}, not {given}")]
    NotCurrentVersion { given: u32, current: u32 },
    #[error("the subject has withdrawn from the study")]
    Withdrawn,
    #[error("the subject has not consented to the study")]
    NoConsent,
    #[error(
        "the subject consented to protocol version {consented}; version {required} requires re-consent before any capture"
    )]
    ReconsentRequired { consented: u32, required: u32 },
    #[error("the author or reporter must be a site of the study or an enrolled practitioner of it")]
    NotSiteAuthor,
    #[error(
        "capture {capture} is at version {current}; the next version is {expected}, not {given}"
    )]
    CaptureVersion {
        capture: String,
        current: u32,
        expected: u32,
        given: u32,
    },
    #[error("a correction must keep the capture's subject, form and visit")]
    CaptureMismatch,
    #[error("a correction (version 2 or later) must give its reason")]
    ReasonRequired,
    #[error("adverse event {0} is already reported")]
    EventExists(String),
    #[error("no adverse event {0} in this study")]
    UnknownEvent(String),
    #[error("adverse event already {0}")]
    AlreadyDone(&'static str),
    #[error("a limit is reached: {0}")]
    Limit(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl medledger_module::ModuleError for TrialsError {
    fn code(&self) -> &'static str {
        match self {
            TrialsError::Invalid { .. } => "invalid_trial_input",
            TrialsError::StudyExists(_) => "study_exists",
            TrialsError::UnknownStudy(_) => "unknown_study",
            TrialsError::NotSponsor => "not_sponsor",
            TrialsError::NotSite => "not_site",
            TrialsError::UnknownOrganisation(_) => "unknown_organisation",
            TrialsError::NotPatient => "not_patient",
            TrialsError::SubjectExists(_) => "subject_exists",
            TrialsError::PatientEnrolled => "patient_enrolled",
            TrialsError::UnknownSubject(_) => "unknown_subject",
            TrialsError::NotParticipant => "not_participant",
            TrialsError::NotCurrentVersion { .. } => "not_current_version",
            TrialsError::Withdrawn => "withdrawn",
            TrialsError::NoConsent => "no_trial_consent",
            TrialsError::ReconsentRequired { .. } => "reconsent_required",
            TrialsError::NotSiteAuthor => "not_site_author",
            TrialsError::CaptureVersion { .. } => "capture_version",
            TrialsError::CaptureMismatch => "capture_mismatch",
            TrialsError::ReasonRequired => "reason_required",
            TrialsError::EventExists(_) => "event_exists",
            TrialsError::UnknownEvent(_) => "unknown_event",
            TrialsError::AlreadyDone(_) => "already_done",
            TrialsError::Limit(_) => "trial_limit",
            TrialsError::State(_) => "state",
        }
    }
}

/// Checks an id (a form, visit or registry id): 1 to 64 ASCII letters, digits, `-` or
/// `.`, so it is also a FHIR id.
pub fn check_id(field: &'static str, id: &str) -> Result<(), TrialsError> {
    check_chars(field, id, ID_BYTES_MAX, b"-.")
}

/// Checks a subject id: 1 to 32 ASCII letters, digits, `-` or `.`, so that with its study's id
/// and a `.` it makes a FHIR ResearchSubject id (at most 64 characters).
pub fn check_subject_id(id: &str) -> Result<(), TrialsError> {
    check_chars("subject", id, SUBJECT_ID_BYTES_MAX, b"-.")
}

/// Checks a study id: 1 to 31 ASCII letters, digits or `-`. A study id and a subject id joined by
/// a `.` make a FHIR ResearchSubject id that splits back at its first `.`.
pub fn check_study_id(id: &str) -> Result<(), TrialsError> {
    check_chars("study", id, STUDY_ID_BYTES_MAX, b"-")
}

fn check_chars(field: &'static str, id: &str, max: usize, extra: &[u8]) -> Result<(), TrialsError> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || extra.contains(&byte));
    if ok {
        Ok(())
    } else {
        let extra: Vec<String> = extra
            .iter()
            .map(|byte| format!("'{}'", *byte as char))
            .collect();
        Err(TrialsError::Invalid {
            field,
            reason: format!(
                "{:?} is not 1 to {max} ASCII letters, digits or {}",
                id.chars().take(80).collect::<String>(),
                extra.join(", ")
            ),
        })
    }
}

/// Checks a short public text (a title, an outcome measure, a reason): 1 to 512 bytes, no control
/// characters.
pub fn check_text(field: &'static str, text: &str) -> Result<(), TrialsError> {
    if text.trim().is_empty() || text.len() > TEXT_BYTES_MAX {
        return Err(TrialsError::Invalid {
            field,
            reason: format!("must be 1 to {TEXT_BYTES_MAX} bytes"),
        });
    }
    if text.chars().any(char::is_control) {
        return Err(TrialsError::Invalid {
            field,
            reason: "must hold no control characters".into(),
        });
    }
    Ok(())
}
