//! The trials service: what a site's node keeps of clinical-trial data off chain, and the reads
//! sponsors, sites and regulators make of a trial.
//!
//! Case report forms and adverse-event reports stay at the site that captured them, sealed with
//! AES-256-GCM under a key the node derives from its own (`trials/blob-encryption`), in
//! `trials/blobs.redb`. On chain go opaque ids and a keyed commitment (HMAC-SHA256 under
//! `trials/commitment`) to the exact bytes kept, so a later change to captured data shows: every
//! read recomputes the commitment and says whether it matches the chain's.
//!
//! A capture is all or nothing: its forms are checked against the head first (for a clear error
//! before anything is kept), sealed and kept, then committed in one transaction; if the ledger
//! refuses it, what was kept is deleted. Kept bytes are served only where the chain names their
//! commitment, so a blob left behind by a crash between keeping and committing is never served.
//!
//! **Invariant:** nothing of a form's or report's content reaches the chain or the logs.

use std::path::Path;
use std::sync::Arc;

use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::{Authority, Payload, TxError};
use medledger_state::StateRead;
use medledger_trials::{self as ledger, Alert, CaptureEntry, Seriousness, Study, TrialsError};
use medledger_types::{Height, Role};
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Node;
use crate::sealed::{Kept, SealedStore};
use crate::service::{Service, ServiceError, wait_committed};

/// The largest form (its JSON) one capture may hold.
pub const FORM_BYTES_MAX: usize = 64 * 1024;
/// The largest adverse-event report (a FHIR AdverseEvent).
pub const REPORT_BYTES_MAX: usize = 256 * 1024;
/// The most alerts one read scans.
pub const ALERTS_SCANNED_MAX: u64 = 10_000;
/// The most capture-log entries one audit page lists.
pub const AUDIT_CAPTURES_PAGE_MAX: u64 = 1_000;
/// The most signatures or adverse events an audit view lists (beyond it, the view says so).
pub const AUDIT_ENTRIES_MAX: u64 = 100_000;

const CAPTURE_TAG: &[u8] = b"medledger/trial-capture/v1";
const REPORT_TAG: &[u8] = b"medledger/trial-adverse-event/v1";

/// One form to capture, as a site's practitioner submits it.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormInput {
    pub subject: String,
    pub form: String,
    pub visit: String,
    /// The form's content: any JSON object (e.g. a FHIR QuestionnaireResponse).
    pub data: Value,
    /// The capture a correction is of; absent for a new form.
    #[serde(default)]
    pub capture: Option<Hash>,
    /// Why a correction was made.
    #[serde(default)]
    pub reason: Option<String>,
}

/// One captured form.
#[derive(Clone, Debug, Serialize)]
pub struct Captured {
    pub capture: Hash,
    pub version: u32,
    pub subject: String,
    pub form: String,
    pub visit: String,
    pub commitment: Hash,
}

/// What a capture did.
#[derive(Clone, Debug, Serialize)]
pub struct CaptureReceipt {
    pub tx: Hash,
    pub height: Height,
    pub captures: Vec<Captured>,
}

/// An adverse event as a site reports it: its classification and the full report, which stays
/// here.
#[derive(Clone, Debug)]
pub struct AdverseEventReport {
    pub study: String,
    pub subject: String,
    pub seriousness: Seriousness,
    pub expected: bool,
    pub related: bool,
    pub report: Vec<u8>,
}

/// A protocol version with the state key a light client proves it by.
#[derive(Clone, Debug, Serialize)]
pub struct VersionEntry {
    pub key: String,
    pub version: ledger::ProtocolVersion,
}

/// A study's public registration at a height.
#[derive(Clone, Debug, Serialize)]
pub struct StudyView {
    pub height: Height,
    pub study: Study,
    pub versions: Vec<VersionEntry>,
    /// The device-reading thresholds the protocol monitors, if any.
    pub monitored: Option<ledger::Monitored>,
}

/// An adverse event at a height: its classification, its clock at the head, and the site's
/// report where this node holds it, checked against the chain's commitment.
#[derive(Clone, Debug, Serialize)]
pub struct AdverseEventView {
    pub height: Height,
    pub study: String,
    pub clock: ledger::ClockStatus,
    pub event: ledger::AdverseEvent,
    pub report: Value,
    pub matches_commitment: Option<bool>,
}

/// The trials service of one node.
#[derive(Clone)]
pub struct Trials {
    node: Node,
    inner: Arc<Inner>,
}

struct Inner {
    blobs: SealedStore,
    webhooks: crate::webhooks::Webhooks,
}

impl std::fmt::Debug for Trials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trials").finish_non_exhaustive()
    }
}

/// Trial alerts, each to the subscribers [`Trials::may_alert`] lets see it.
impl crate::webhooks::AlertFeed for Trials {
    type Alert = Alert;
    const SIGNATURE_DOMAIN: &'static [u8] = b"medledger/trial-alert-webhook/v1";

    fn node(&self) -> &Node {
        &self.node
    }

    fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.webhooks
    }

    fn page(&self, subscriber: &PublicKey, cursor: u64) -> Result<(Vec<Alert>, u64), ServiceError> {
        self.alerts(&self.authenticate(subscriber)?, cursor)
    }

    fn seq(alert: &Alert) -> u64 {
        alert.seq
    }

    fn kind(alert: &Alert) -> &'static str {
        match alert.kind {
            medledger_trials::AlertKind::AdverseEvent { .. } => "adverse_event",
            medledger_trials::AlertKind::Overdue { .. } => "overdue",
            medledger_trials::AlertKind::Withdrawal { .. } => "withdrawal",
            medledger_trials::AlertKind::Amendment { .. } => "amendment",
        }
    }
}

impl Service for Trials {
    /// Nothing follows blocks here: alerts and clocks are read from the committed state.
    const FOLLOWING: Option<&'static str> = None;
}

fn read_error(error: TxError) -> ServiceError {
    match error {
        TxError::State(error) => ServiceError::Node(error.into()),
        other => ServiceError::Invalid(other.to_string()),
    }
}

fn blob_key(kind: &str, study: &str, id: &Hash, version: u32) -> String {
    format!("{kind}/{study}/{id}/{version}")
}

impl Trials {
    pub fn open(node: Node, dir: &Path) -> Result<Trials, ServiceError> {
        let blobs = SealedStore::open(
            &node,
            dir,
            "blobs.redb",
            "trial_blobs",
            "trials",
            "trial data store",
        )?;
        let webhooks = crate::webhooks::Webhooks::open(dir)?;
        let trials = Trials {
            node,
            inner: Arc::new(Inner { blobs, webhooks }),
        };
        crate::webhooks::Webhooks::spawn_all(&trials);
        Ok(trials)
    }

    /// Who `key` acts as at the head.
    pub fn authenticate(&self, key: &PublicKey) -> Result<Authority, ServiceError> {
        self.node.authenticate(key)
    }

    /// The organisation this node acts for.
    fn site(&self) -> Result<String, ServiceError> {
        match self.authenticate(&self.node.key())? {
            Authority::Member { org, .. } | Authority::Organisation { org } => Ok(org),
        }
    }

    fn keep(&self, blobs: &[(String, Vec<u8>)]) -> Result<(), ServiceError> {
        self.inner.blobs.keep(blobs)
    }

    fn forget(&self, keys: &[String]) {
        self.inner.blobs.forget(keys)
    }

    fn kept(&self, key: &str) -> Result<Kept, ServiceError> {
        self.inner.blobs.kept(key)
    }

    fn capture_commitment(
        &self,
        study: &str,
        capture: &Hash,
        version: u32,
        content: &[u8],
    ) -> Hash {
        self.inner.blobs.commitment(
            CAPTURE_TAG,
            &[
                study.as_bytes(),
                capture.as_bytes(),
                &version.to_le_bytes(),
                content,
            ],
        )
    }

    /// Captures forms for subjects of this site, entered by `author`, in one transaction.
    pub async fn capture(
        &self,
        author: PublicKey,
        study: String,
        forms: Vec<FormInput>,
    ) -> Result<CaptureReceipt, ServiceError> {
        if forms.is_empty() || forms.len() > ledger::CAPTURES_PER_TX_MAX {
            return Err(ServiceError::Invalid(format!(
                "a capture holds 1 to {} forms",
                ledger::CAPTURES_PER_TX_MAX
            )));
        }
        let mut contents = Vec::with_capacity(forms.len());
        for form in &forms {
            if !form.data.is_object() {
                return Err(ServiceError::Invalid(
                    "a form's data is a JSON object".into(),
                ));
            }
            let content = serde_json::to_vec(&form.data)
                .map_err(|error| ServiceError::Invalid(error.to_string()))?;
            if content.len() > FORM_BYTES_MAX {
                return Err(ServiceError::Invalid(format!(
                    "a form holds at most {FORM_BYTES_MAX} bytes of JSON"
                )));
            }
            contents.push(content);
        }
        let site = self.site()?;
        // Checked at the head first, so a refusal is clear and nothing is kept for it; the ledger
        // checks again when it applies the transaction.
        let (_, versions) = self.node.read_head(|state| {
            let record = existing(state, &study)?;
            ledger::check_site_author(state, &author, &site)?;
            let mut versions = Vec::with_capacity(forms.len());
            for form in &forms {
                let subject = ledger::subject(state, &study, &form.subject)?
                    .ok_or_else(|| TrialsError::UnknownSubject(form.subject.clone()))?;
                if subject.site != site {
                    return Err(TrialsError::NotSite.into());
                }
                ledger::capture_allowed(&record, &subject)?;
                let version = match &form.capture {
                    None => 1,
                    Some(capture) => {
                        let head = ledger::capture(state, &study, capture)?.ok_or_else(|| {
                            TrialsError::Invalid {
                                field: "capture",
                                reason: format!("study {study} has no capture {capture}"),
                            }
                        })?;
                        head.versions + 1
                    }
                };
                versions.push(version);
            }
            Ok(versions)
        })?;
        let versions = versions.map_err(module_refusal)?;
        let mut entries = Vec::with_capacity(forms.len());
        let mut blobs = Vec::with_capacity(forms.len());
        let mut captured = Vec::with_capacity(forms.len());
        for ((form, version), content) in forms.into_iter().zip(versions).zip(contents) {
            let capture = form.capture.unwrap_or_else(|| {
                let mut id = [0u8; 32];
                OsRng.fill_bytes(&mut id);
                Hash(id)
            });
            let commitment = self.capture_commitment(&study, &capture, version, &content);
            blobs.push((blob_key("capture", &study, &capture, version), content));
            captured.push(Captured {
                capture,
                version,
                subject: form.subject.clone(),
                form: form.form.clone(),
                visit: form.visit.clone(),
                commitment,
            });
            entries.push(CaptureEntry {
                capture,
                version,
                subject: form.subject,
                form: form.form,
                visit: form.visit,
                commitment,
                author,
                reason: form.reason,
            });
        }
        let keys: Vec<String> = blobs.iter().map(|(key, _)| key.clone()).collect();
        self.keep(&blobs)?;
        let op = ledger::TrialsOp::Capture {
            study,
            captures: entries,
        };
        let (tx, height) = match self.commit(op).await {
            Ok(done) => done,
            Err(error) => {
                self.forget(&keys);
                return Err(error);
            }
        };
        Ok(CaptureReceipt {
            tx,
            height,
            captures: captured,
        })
    }

    async fn commit(&self, op: ledger::TrialsOp) -> Result<(Hash, Height), ServiceError> {
        let payload: Payload = op.into();
        let tx = self
            .node
            .submit_own_checked(payload, |_| Ok::<(), ServiceError>(()))?;
        let height = wait_committed(&self.node, tx).await?;
        Ok((tx, height))
    }

    /// A site reports an adverse event for `reporter`, one of its practitioners: the report is
    /// kept here, its classification and commitment go on chain.
    pub async fn report_adverse_event(
        &self,
        reporter: PublicKey,
        report: AdverseEventReport,
    ) -> Result<(Hash, Height), ServiceError> {
        let mut id = [0u8; 32];
        OsRng.fill_bytes(&mut id);
        self.report_adverse_event_as(reporter, report, Hash(id))
            .await
    }

    /// Reports an adverse event under a given id: a draft's, which reporting closes (the
    /// monitoring service's drafts from alerts of monitored thresholds; the caller checks the
    /// draft is open and of this study and subject).
    pub async fn report_adverse_event_as(
        &self,
        reporter: PublicKey,
        report: AdverseEventReport,
        event: Hash,
    ) -> Result<(Hash, Height), ServiceError> {
        if report.report.len() > REPORT_BYTES_MAX {
            return Err(ServiceError::Invalid(format!(
                "an adverse-event report holds at most {REPORT_BYTES_MAX} bytes"
            )));
        }
        let site = self.site()?;
        let (_, checked) = self.node.read_head(|state| {
            existing(state, &report.study)?;
            let subject = ledger::subject(state, &report.study, &report.subject)?
                .ok_or_else(|| TrialsError::UnknownSubject(report.subject.clone()))?;
            if subject.site != site {
                return Err(TrialsError::NotSite.into());
            }
            Ok(ledger::check_site_author(state, &reporter, &site)?)
        })?;
        checked.map_err(module_refusal)?;
        let commitment = self.inner.blobs.commitment(
            REPORT_TAG,
            &[report.study.as_bytes(), event.as_bytes(), &report.report],
        );
        let key = blob_key("adverse-event", &report.study, &event, 1);
        self.keep(&[(key.clone(), report.report)])?;
        let op = ledger::TrialsOp::ReportAdverseEvent {
            study: report.study,
            event,
            reporter,
            subject: report.subject,
            seriousness: report.seriousness,
            expected: report.expected,
            related: report.related,
            commitment,
        };
        match self.commit(op).await {
            Ok((_, height)) => Ok((event, height)),
            Err(error) => {
                self.forget(&[key]);
                Err(error)
            }
        }
    }

    /// May `viewer` see a study's subjects, captures and adverse events? Its sponsor, its sites
    /// and the regulators (auditors) may.
    pub fn may_view(viewer: &Authority, study: &Study) -> bool {
        match viewer {
            Authority::Organisation { org } => *org == study.sponsor || study.sites.contains(org),
            Authority::Member {
                role: Role::Auditor,
                ..
            } => true,
            Authority::Member {
                role: Role::Patient,
                ..
            } => false,
            Authority::Member { org, .. } => *org == study.sponsor || study.sites.contains(org),
        }
    }

    /// May `viewer` receive this alert? The study's sponsor and the regulators receive them.
    pub fn may_alert(viewer: &Authority, alert: &Alert) -> bool {
        match viewer {
            Authority::Organisation { org } => *org == alert.sponsor,
            Authority::Member {
                role: Role::Auditor,
                ..
            } => true,
            Authority::Member {
                org,
                role: Role::Sponsor | Role::Validator,
            } => *org == alert.sponsor,
            Authority::Member { .. } => false,
        }
    }

    /// The alerts from sequence number `after` on that `viewer` may receive, and the cursor to
    /// resume from (scanning at most `ALERTS_SCANNED_MAX`).
    pub fn alerts(
        &self,
        viewer: &Authority,
        after: u64,
    ) -> Result<(Vec<Alert>, u64), ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            let count = ledger::alerts_count(state)?;
            let end = count.min(after.saturating_add(ALERTS_SCANNED_MAX));
            let mut out = Vec::new();
            for seq in after..end {
                if let Some(alert) = ledger::alert(state, seq)?
                    && Self::may_alert(viewer, &alert)
                {
                    out.push(alert);
                }
            }
            Ok((out, end.max(after)))
        })?;
        found.map_err(read_error)
    }

    /// A study's public registration: its versions, with their documents' hashes and outcome
    /// changes.
    pub fn study(&self, study: &str) -> Result<StudyView, ServiceError> {
        let (height, found) = self.node.read_head(|state| {
            let record = existing(state, study)?;
            let versions = versions(state, &record)?;
            let monitored = ledger::monitored(state, study)?;
            Ok((record, versions, monitored))
        })?;
        let (study, versions, monitored) = found.map_err(not_found)?;
        Ok(StudyView {
            height,
            study,
            versions,
            monitored,
        })
    }

    /// Which registered versions of a study a document (by its SHA-256) is.
    pub fn document(&self, study: &str, hash: &Hash) -> Result<Value, ServiceError> {
        let (height, found) = self.node.read_head(|state| {
            existing(state, study)?;
            Ok(ledger::document_versions(state, study, hash)?)
        })?;
        let found = found.map_err(not_found)?;
        Ok(json!({
            "height": height,
            "study": study,
            "sha256": hash,
            "registered": !found.is_empty(),
            "versions": found,
            "key": String::from_utf8_lossy(&ledger::key_document(study, hash)),
        }))
    }

    /// The regulator's view of a trial at the head: registration and amendments, every subject
    /// with their consents and withdrawal, the signature log, the adverse events with their
    /// clocks, and one page of the capture history. Every item names its state key, so a light
    /// client proves each against genesis (`/v1/state/<key>?height=`).
    pub fn audit(
        &self,
        viewer: &Authority,
        study: &str,
        captures_from: u64,
    ) -> Result<Value, ServiceError> {
        let (height, found) = self.node.read_head(|state| {
            let record = existing(state, study)?;
            if !Self::may_view(viewer, &record) {
                return Ok(None);
            }
            let head = medledger_module::chain_head(state)?;
            let mut signatures = Vec::new();
            let mut subjects = Vec::new();
            for seq in 0..record.signatures.min(AUDIT_ENTRIES_MAX) {
                let Some(signature) = ledger::signature(state, study, seq)? else {
                    continue;
                };
                if let ledger::Signed::Subject { subject } = &signature.on
                    && signature.meaning == ledger::Meaning::Authorship
                    && let Some(found) = ledger::subject(state, study, subject)?
                {
                    subjects.push(json!({
                        "key": text_key(&ledger::key_subject(study, subject)),
                        "subject": found,
                    }));
                }
                signatures.push(json!({
                    "key": text_key(&ledger::key_signature(study, seq)),
                    "signature": signature,
                }));
            }
            let mut events = Vec::new();
            for seq in 0..record.adverse_events {
                let Some(id) = ledger::adverse_event_log(state, study, seq)? else {
                    continue;
                };
                if let Some(event) = ledger::adverse_event(state, study, &id)? {
                    events.push(json!({
                        "key": text_key(&ledger::key_adverse_event(study, &id)),
                        "clock": event.clock(head.time_ms),
                        "event": event,
                    }));
                }
            }
            let end = record
                .captures_logged
                .min(captures_from.saturating_add(AUDIT_CAPTURES_PAGE_MAX));
            let mut captures = Vec::new();
            for seq in captures_from..end {
                let Some(entry) = ledger::capture_log(state, study, seq)? else {
                    continue;
                };
                let head = ledger::capture(state, study, &entry.capture)?;
                let version =
                    ledger::capture_version(state, study, &entry.capture, entry.version)?;
                captures.push(json!({
                    "key": text_key(&ledger::key_capture_version(study, &entry.capture, entry.version)),
                    "capture": entry.capture,
                    "subject": head.as_ref().map(|head| &head.subject),
                    "form": head.as_ref().map(|head| &head.form),
                    "visit": head.as_ref().map(|head| &head.visit),
                    "version": version,
                }));
            }
            Ok(Some(json!({
                "time_ms": head.time_ms,
                "study": record,
                "study_key": text_key(&ledger::key_study(study)),
                "versions": versions(state, &record)?,
                "subjects": subjects,
                "signatures": signatures,
                "adverse_events": events,
                "captures": captures,
                "captures_next": (end < record.captures_logged).then_some(end),
            })))
        })?;
        match found.map_err(not_found)? {
            Some(mut view) => {
                view["height"] = json!(height);
                Ok(view)
            }
            None => Err(ServiceError::Forbidden(
                "only the study's sponsor, its sites and regulators see its trail".into(),
            )),
        }
    }

    /// Every version of a capture, with its content where this node holds it, and whether that
    /// content still matches the chain's commitment.
    pub fn capture_history(
        &self,
        viewer: &Authority,
        study: &str,
        capture: &Hash,
    ) -> Result<Value, ServiceError> {
        let (height, found) = self.node.read_head(|state| {
            let record = existing(state, study)?;
            if !Self::may_view(viewer, &record) {
                return Ok(None);
            }
            let head =
                ledger::capture(state, study, capture)?.ok_or_else(|| TrialsError::Invalid {
                    field: "capture",
                    reason: format!("study {study} has no capture {capture}"),
                })?;
            let mut versions = Vec::new();
            for version in 1..=head.versions {
                if let Some(found) = ledger::capture_version(state, study, capture, version)? {
                    versions.push(found);
                }
            }
            Ok(Some((head, versions)))
        })?;
        let Some((head, versions)) = found.map_err(not_found)? else {
            return Err(ServiceError::Forbidden(
                "only the study's sponsor, its sites and regulators see its data".into(),
            ));
        };
        let mut out = Vec::new();
        for version in versions {
            let kept = self.kept(&blob_key("capture", study, capture, version.version))?;
            let (data, verified) = kept.check(
                |content| self.capture_commitment(study, capture, version.version, content),
                &version.commitment,
            );
            out.push(json!({
                "version": version,
                "data": data,
                "matches_commitment": verified,
            }));
        }
        Ok(json!({
            "height": height,
            "study": study,
            "capture": capture,
            "subject": head.subject,
            "form": head.form,
            "visit": head.visit,
            "site": head.site,
            "held_here": out.iter().any(|version| !version["matches_commitment"].is_null()),
            "versions": out,
        }))
    }

    /// An adverse event by id, with its clock at the head, and the report where this node holds
    /// it (for those who may view the study).
    pub fn adverse_event(
        &self,
        viewer: &Authority,
        event: &Hash,
    ) -> Result<AdverseEventView, ServiceError> {
        let (height, found) = self.node.read_head(|state| {
            let study = ledger::event_study(state, event)?
                .ok_or_else(|| TrialsError::UnknownEvent(event.to_string()))?;
            let record = existing(state, &study)?;
            let found = ledger::adverse_event(state, &study, event)?
                .ok_or_else(|| TrialsError::UnknownEvent(event.to_string()))?;
            let head = medledger_module::chain_head(state)?;
            Ok((record, found, head.time_ms))
        })?;
        let (record, found, now) = found.map_err(not_found)?;
        if !Self::may_view(viewer, &record) {
            return Err(ServiceError::Forbidden(
                "only the study's sponsor, its sites and regulators see its adverse events".into(),
            ));
        }
        let kept = self.kept(&blob_key("adverse-event", &record.id, event, 1))?;
        let (report, matches) = kept.check(
            |content| {
                self.inner.blobs.commitment(
                    REPORT_TAG,
                    &[record.id.as_bytes(), event.as_bytes(), content],
                )
            },
            &found.commitment,
        );
        Ok(AdverseEventView {
            height,
            study: record.id,
            clock: found.clock(now),
            event: found,
            report,
            matches_commitment: matches,
        })
    }

    /// A subject of a study, for those who may view it.
    pub fn subject(
        &self,
        viewer: &Authority,
        study: &str,
        subject: &str,
    ) -> Result<(Study, ledger::Subject), ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            let record = existing(state, study)?;
            let found = ledger::subject(state, study, subject)?
                .ok_or_else(|| TrialsError::UnknownSubject(subject.into()))?;
            Ok((record, found))
        })?;
        let (record, found) = found.map_err(not_found)?;
        if !Self::may_view(viewer, &record) {
            return Err(ServiceError::Forbidden(
                "only the study's sponsor, its sites and regulators see its subjects".into(),
            ));
        }
        Ok((record, found))
    }
}

impl Trials {
    /// A participant's eConsent as the chain holds it: the study, the subject, and the consent
    /// and withdrawal signatures of the participant in the study's signature log (its first
    /// `AUDIT_ENTRIES_MAX` entries), oldest first. For the study's viewers and the participant.
    pub fn subject_consent(
        &self,
        viewer_key: &PublicKey,
        viewer: &Authority,
        study: &str,
        subject: &str,
    ) -> Result<(Study, ledger::Subject, Vec<ledger::ESignature>), ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            let record = existing(state, study)?;
            let found = ledger::subject(state, study, subject)?
                .ok_or_else(|| TrialsError::UnknownSubject(subject.into()))?;
            if !(Self::may_view(viewer, &record) || found.patient == *viewer_key) {
                return Ok(None);
            }
            let mut signatures = Vec::new();
            for seq in 0..record.signatures.min(AUDIT_ENTRIES_MAX) {
                let Some(signature) = ledger::signature(state, study, seq)? else {
                    continue;
                };
                // A consent is the participant's signature on a protocol version; a withdrawal
                // is a signature on the subject (theirs, or the site's for them).
                let theirs = match (&signature.on, signature.meaning) {
                    (ledger::Signed::ProtocolVersion { .. }, ledger::Meaning::Consent) => {
                        signature.signer == found.patient
                    }
                    (ledger::Signed::Subject { subject: on }, ledger::Meaning::Withdrawal) => {
                        on == subject
                    }
                    _ => false,
                };
                if theirs {
                    signatures.push(signature);
                }
            }
            Ok(Some((record, found, signatures)))
        })?;
        found.map_err(not_found)?.ok_or_else(|| {
            ServiceError::Forbidden(
                "only the participant, the study's sponsor, its sites and regulators see a participant's consent"
                    .into(),
            )
        })
    }
}

fn text_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn existing(state: &dyn StateRead, study: &str) -> Result<Study, TxError> {
    ledger::check_study_id(study).map_err(TxError::from)?;
    ledger::study(state, study)?
        .ok_or_else(|| TxError::from(TrialsError::UnknownStudy(study.into())))
}

fn versions(state: &dyn StateRead, record: &Study) -> Result<Vec<VersionEntry>, TxError> {
    let mut out = Vec::new();
    for version in 1..=record.version {
        if let Some(found) = ledger::protocol_version(state, &record.id, version)? {
            out.push(VersionEntry {
                key: text_key(&ledger::key_version(&record.id, version)),
                version: found,
            });
        }
    }
    Ok(out)
}

fn module_refusal(error: TxError) -> ServiceError {
    match error {
        TxError::Module(failure) => ServiceError::Refused {
            code: failure.code().into(),
            reason: failure.to_string(),
        },
        other => read_error(other),
    }
}

fn not_found(error: TxError) -> ServiceError {
    match error {
        TxError::State(error) => ServiceError::Node(error.into()),
        TxError::Module(failure) if failure.code() == "unknown_study" => {
            ServiceError::NotFound(failure.to_string())
        }
        TxError::Module(failure) if failure.code() == "unknown_event" => {
            ServiceError::NotFound(failure.to_string())
        }
        other => module_refusal(other),
    }
}
