//! The monitoring service: device batches received, kept sealed, anchored, and proven.
//!
//! - **Ingestion.** A device's signed batch is checked (signature, chain, plausibility, order,
//!   clock: `SignedBatch::check` against this node's clock), then against the head: the device
//!   is enrolled and unrevoked, paired, and reports to this node's organisation. Batches are
//!   written by one writer thread that commits many at once (one fsync for a group), so a
//!   batch is acknowledged only once durable, and a repeated or earlier sequence number is
//!   refused there, in order.
//! - **What is kept** (`data/monitor/readings.redb`): each batch's readings sealed
//!   (AES-256-GCM under a key derived from the node's, the device and sequence as associated
//!   data), each reading's Merkle leaf (a keyed commitment: the salt is derived from the node's
//!   key, the device, the batch and the index), and an index by patient, code and time.
//! - **Anchoring.** Every window the node anchors what it received since the last: a root per
//!   device over its leaves, a root over the devices, one `AnchorWindow` transaction. The plan
//!   is journalled before it is submitted, so a crash between submitting and recording it is
//!   finished on restart from what the chain holds.
//! - **Proofs.** A reading's proof is its leaf's path to its device root and that root's path to
//!   the anchored root; the chain's anchor entry is proven by the ledger's state proofs.
//!
//! **Invariant:** a reading is served with its proof only if its sealed bytes still open and
//! their leaf is the one anchored: a changed reading is reported, never served as the chain's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use medledger_crypto::envelope::{BlindKey, DataKey, NONCE_BYTES};
use medledger_crypto::{Hash, PublicKey};
use medledger_ledger::{Authority, Payload};
use medledger_module::{Standing, standing};
use medledger_monitor::alerts::{Firing, Watch};
use medledger_monitor::readings::{
    BatchError, ReadingProof, SignedBatch, device_root, reading_leaf, window_root,
};
use medledger_monitor::{MonitorOp, Pairing, Reading, Span};
use medledger_types::{Height, InclusionProof, Role};
use rand_core::{OsRng, RngCore};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use crate::Node;
use crate::service::{Service, ServiceError, wait_committed};

// Batches by (device, seq): the sealed readings, and their leaves (32 bytes each, in order).
const READINGS: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("readings");
const LEAVES: TableDefinition<(&[u8; 32], u64), &[u8]> = TableDefinition::new("leaves");
// The patient each batch was received for.
const BATCH_PATIENT: TableDefinition<(&[u8; 32], u64), &[u8; 32]> =
    TableDefinition::new("batch_patient");
// The devices that reported for each patient: (patient, device).
const PATIENT_DEVICES: TableDefinition<(&[u8; 32], &[u8; 32]), ()> =
    TableDefinition::new("patient_devices");
// The next sequence number each device may send.
const NEXT_SEQ: TableDefinition<&[u8; 32], u64> = TableDefinition::new("next_seq");
// Batches received and not yet anchored: (device, seq) -> readings.
const PENDING: TableDefinition<(&[u8; 32], u64), u32> = TableDefinition::new("pending");
// Anchored batches: (device, seq) -> (anchor, the device's place among the anchor's spans).
const ANCHORED: TableDefinition<(&[u8; 32], u64), (u64, u32)> = TableDefinition::new("anchored");
// Each anchor's spans with their device roots (borsh `Vec<AnchoredSpan>`).
const ANCHORS: TableDefinition<u64, &[u8]> = TableDefinition::new("anchors");
// Readings by (patient, code, time, device, seq, index), for searches.
type PatientKey<'a> = (&'a [u8; 32], u8, u64, &'a [u8; 32], u64, u16);
const BY_PATIENT: TableDefinition<PatientKey<'static>, ()> = TableDefinition::new("by_patient");
// The anchor being submitted, if any (borsh `Planned`).
const JOURNAL: TableDefinition<&str, &[u8]> = TableDefinition::new("journal");
const JOURNAL_KEY: &str = "planned";

/// The most alerts one page of the alert feed reads.
pub const ALERTS_PAGE_MAX: u64 = 500;
/// How many alerts one escalation round reads at most.
const ESCALATION_SCAN_MAX: u64 = 10_000;

/// This node's clock, for missing-data rules (never the ledger's).
#[allow(clippy::disallowed_methods)] // Shell: silence is measured on the receiving node's clock.
fn clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How often a node anchors what its devices sent.
pub const WINDOW_MS_DEFAULT: u64 = 5_000;
/// The most batches one group commit writes.
const GROUP_MAX: usize = 512;
/// How long an anchor's transaction is searched for among the organisation's latest anchors.
const ANCHOR_SEARCH_BACK: u64 = 64;

fn storage(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Storage(format!("monitor store: {error}"))
}

/// One device's part of an anchor, as this node recorded it.
#[derive(Clone, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
struct AnchoredSpan {
    device: PublicKey,
    first_seq: u64,
    last_seq: u64,
    root: Hash,
    /// The batches of the span that arrived (a gap leaves some out), in order.
    batches: Vec<u64>,
}

/// An anchor planned and submitted, not yet recorded.
#[derive(Clone, Debug, borsh::BorshSerialize, borsh::BorshDeserialize)]
struct Planned {
    tx: Hash,
    spans: Vec<AnchoredSpan>,
}

/// What a batch's ingestion did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ingested {
    pub device: PublicKey,
    pub seq: u64,
    pub readings: usize,
    /// Batches the device skipped before this one.
    pub missing_batches: u64,
}

/// What anchoring did: anchors `anchor..anchor + anchors` of this organisation, the last
/// committed at `height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Anchored {
    pub anchor: u64,
    pub anchors: u64,
    pub height: Height,
    pub devices: usize,
    pub readings: u64,
}

/// Which of a patient's readings a read asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadingFilter {
    /// One code, or every code.
    pub code: Option<medledger_monitor::Code>,
    /// Some devices, or every device of the patient.
    pub devices: Option<std::collections::BTreeSet<PublicKey>>,
    /// `[from_ms, to_ms)` of the readings' own times.
    pub period: (u64, u64),
}

/// The most readings one read may match (a wider read is asked to narrow its period).
pub const READINGS_MATCHED_MAX: usize = 200_000;

/// Where a reading is kept, as the patient index holds it: enough to match and order it
/// without opening it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadingRef {
    pub time_ms: u64,
    pub device: PublicKey,
    pub seq: u64,
    pub index: u16,
    pub code: medledger_monitor::Code,
}

/// The identifier system of an adverse-event draft, in the FHIR AdverseEvent that reports it.
pub const DRAFT_SYSTEM: &str = "urn:medledger:adverse-event-draft";

/// How many of an organisation's latest alerts are searched for drafts.
pub const DRAFTS_SCANNED_MAX: u64 = 10_000;

/// An adverse-event draft: an alert of a trial's monitored threshold for a participant, which
/// the site confirms by reporting an AdverseEvent that names the draft (its identifier in the
/// `DRAFT_SYSTEM`; the event takes the draft's id), or dismisses by acknowledging the alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Draft {
    /// The draft's id, which the reported event takes.
    pub draft: Hash,
    pub study: String,
    pub subject: String,
    /// The threshold as the protocol stands now (`None` if the sponsor has since removed it).
    pub threshold: Option<medledger_trials::MonitoredThreshold>,
    pub alert: medledger_monitor::Alert,
}

/// A kept reading, as a reader receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeptReading {
    pub device: PublicKey,
    pub seq: u64,
    pub index: u16,
    pub reading: Reading,
    /// The anchor that holds it, once anchored.
    pub anchor: Option<u64>,
}

struct Request {
    batch: SignedBatch,
    patient: Hash,
    reply: tokio::sync::oneshot::Sender<Result<Ingested, ServiceError>>,
}

/// A rule's watch over one patient's readings, and the device that last reported for it.
struct Watched {
    rule: medledger_monitor::AlertRule,
    watch: Watch,
    device: Option<PublicKey>,
}

struct Inner {
    node: Node,
    /// Each (patient, rule)'s watch, in memory: after a restart the rules watch afresh.
    watches: Mutex<BTreeMap<(Hash, String), Watched>>,
    /// Alerts of this organisation below this sequence number are not open.
    open_from: Mutex<u64>,
    records: crate::records::Records,
    /// Stream records on chain or being written.
    streams: Mutex<std::collections::BTreeSet<Hash>>,
    db: Arc<redb::Database>,
    seal: DataKey,
    salts: BlindKey,
    window_ms: u64,
    writer: Mutex<std::sync::mpsc::SyncSender<Request>>,
    anchoring: tokio::sync::Mutex<()>,
    webhooks: crate::webhooks::Webhooks,
    /// The studies that monitor readings, at a head height.
    monitored: Mutex<Option<(medledger_types::Height, Vec<String>)>>,
}

/// The monitoring service of one node.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("window_ms", &self.inner.window_ms)
            .finish_non_exhaustive()
    }
}

/// A change of an alert, as the organisation's alert feed tells it: the change (raised,
/// escalated, acknowledged), its number in the feed and its block, and the alert as it stood
/// after the change (the same every time it is read). Never a value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertNotice {
    pub seq: u64,
    pub change: medledger_monitor::AlertChange,
    pub height: medledger_types::Height,
    pub time_ms: u64,
    pub alert: medledger_monitor::Alert,
}

impl crate::webhooks::AlertFeed for Monitor {
    type Alert = AlertNotice;
    const SIGNATURE_DOMAIN: &'static [u8] = b"medledger/monitor-alert-webhook/v1";

    fn node(&self) -> &Node {
        &self.inner.node
    }

    fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.webhooks
    }

    fn page(
        &self,
        subscriber: &PublicKey,
        cursor: u64,
    ) -> Result<(Vec<AlertNotice>, u64), ServiceError> {
        self.alerts(
            subscriber,
            &self.inner.node.authenticate(subscriber)?,
            cursor,
        )
    }

    fn seq(notice: &AlertNotice) -> u64 {
        notice.seq
    }

    fn kind(notice: &AlertNotice) -> &'static str {
        notice.change.as_str()
    }
}

impl Service for Monitor {
    const FOLLOWING: Option<&'static str> = None;

    fn background(&self) -> Option<crate::service::Background> {
        // A full node receives no device's readings and raises no alert: its organisation's
        // node does.
        if self.inner.node.block_source() == crate::BlockSource::Follower {
            return None;
        }
        Some(Box::pin(self.clone().run_anchoring()))
    }
}

impl Monitor {
    /// Opens (or creates) the store in `dir` and starts its writer; anchors every `window_ms`
    /// once [`Monitor::run_anchoring`] runs.
    pub fn open(
        node: Node,
        records: crate::records::Records,
        dir: &Path,
        window_ms: u64,
    ) -> Result<Monitor, ServiceError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let db = redb::Database::create(dir.join("readings.redb")).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(READINGS).map_err(storage)?;
        txn.open_table(LEAVES).map_err(storage)?;
        txn.open_table(NEXT_SEQ).map_err(storage)?;
        txn.open_table(BATCH_PATIENT).map_err(storage)?;
        txn.open_table(PENDING).map_err(storage)?;
        txn.open_table(ANCHORED).map_err(storage)?;
        txn.open_table(ANCHORS).map_err(storage)?;
        txn.open_table(BY_PATIENT).map_err(storage)?;
        txn.open_table(JOURNAL).map_err(storage)?;
        {
            // A store from before this table: fill it from the batches kept.
            let mut devices = txn.open_table(PATIENT_DEVICES).map_err(storage)?;
            if redb::ReadableTableMetadata::is_empty(&devices).map_err(storage)? {
                let batches = txn.open_table(BATCH_PATIENT).map_err(storage)?;
                for row in batches.iter().map_err(storage)? {
                    let (key, patient) = row.map_err(storage)?;
                    let (device, _) = key.value();
                    devices
                        .insert((patient.value(), device), ())
                        .map_err(storage)?;
                }
            }
        }
        txn.commit().map_err(storage)?;
        let db = Arc::new(db);
        node.register_database(&dir.join("readings.redb"), &db);
        let (sender, receiver) = std::sync::mpsc::sync_channel(4 * GROUP_MAX);
        let inner = Arc::new(Inner {
            seal: DataKey(node.derive_secret("monitor/reading-encryption")),
            salts: BlindKey(node.derive_secret("monitor/reading-salt")),
            node,
            watches: Mutex::new(BTreeMap::new()),
            open_from: Mutex::new(0),
            records,
            streams: Mutex::new(std::collections::BTreeSet::new()),
            db,
            window_ms: window_ms.clamp(
                medledger_monitor::WINDOW_MS_MIN,
                medledger_monitor::WINDOW_MS_MAX,
            ),
            writer: Mutex::new(sender),
            anchoring: tokio::sync::Mutex::new(()),
            webhooks: crate::webhooks::Webhooks::open(dir)?,
            monitored: Mutex::new(None),
        });
        let writer = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("monitor-writer".into())
            .spawn(move || write_loop(&writer, &receiver))
            .map_err(storage)?;
        let monitor = Monitor { inner };
        crate::webhooks::Webhooks::spawn_all(&monitor);
        Ok(monitor)
    }

    /// Checks a batch and keeps it durably; `now_ms` is this node's clock.
    pub async fn ingest(&self, batch: SignedBatch, now_ms: u64) -> Result<Ingested, ServiceError> {
        let chain_id = self.inner.node.genesis().chain_id.clone();
        batch.check(&chain_id, now_ms).map_err(batch_error)?;
        let (patient, org) = self.paired_patient(&batch.batch.device)?;
        self.ensure_stream(&batch.batch.device, &patient)?;
        let (device, readings) = (batch.batch.device, batch.batch.readings.clone());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = Request {
            batch,
            patient,
            reply,
        };
        {
            let writer = self
                .inner
                .writer
                .lock()
                .map_err(|_| ServiceError::Unavailable("the monitor writer stopped".into()))?;
            writer.try_send(request).map_err(|error| match error {
                std::sync::mpsc::TrySendError::Full(_) => {
                    ServiceError::Unavailable("the monitor is saturated; retry shortly".into())
                }
                std::sync::mpsc::TrySendError::Disconnected(_) => {
                    ServiceError::Unavailable("the monitor writer stopped".into())
                }
            })?;
        }
        let ingested = answer
            .await
            .map_err(|_| ServiceError::Unavailable("the monitor writer stopped".into()))??;
        // Kept durably: now the patient's rules see the readings.
        for (rule, firing) in self.evaluate(&patient, &org, &readings)? {
            self.raise(patient, rule, device, firing.at_ms);
        }
        Ok(ingested)
    }

    /// Feeds readings to the patient's rules (read at the head); returns what fired.
    fn evaluate(
        &self,
        patient: &Hash,
        org: &str,
        readings: &[Reading],
    ) -> Result<Vec<(String, Firing)>, ServiceError> {
        let studies = self.monitored_studies()?;
        let (_, rules) = self.inner.node.read_head(|state| {
            let mut rules = medledger_monitor::rules(state, patient)?;
            rules.extend(medledger_monitor::trial_rules(
                state, patient, org, &studies,
            )?);
            Ok(rules)
        })?;
        let rules = rules.map_err(|error| ServiceError::Storage(error.to_string()))?;
        if rules.is_empty() {
            return Ok(Vec::new());
        }
        let mut watches = self
            .inner
            .watches
            .lock()
            .map_err(|_| storage("a watch lock holder panicked"))?;
        let mut fired = Vec::new();
        for rule in &rules {
            let start = readings.first().map_or(0, |reading| reading.time_ms);
            let entry = watches
                .entry((*patient, rule.id.clone()))
                .or_insert_with(|| Watched {
                    rule: rule.clone(),
                    watch: Watch::starting_at(start),
                    device: None,
                });
            if entry.rule != *rule {
                // The care team changed the rule: watch afresh.
                *entry = Watched {
                    rule: rule.clone(),
                    watch: Watch::starting_at(start),
                    device: None,
                };
            }
            for reading in readings {
                if let Some(firing) = entry.watch.observe(rule, reading) {
                    fired.push((rule.id.clone(), firing));
                }
            }
        }
        Ok(fired)
    }

    /// Commits `RaiseAlert` in the background; an alert already open for the rule is not an
    /// error (the care team has it).
    fn raise(&self, patient: Hash, rule: String, device: PublicKey, at_ms: u64) {
        if let Ok(mut watches) = self.inner.watches.lock()
            && let Some(watched) = watches.get_mut(&(patient, rule.clone()))
        {
            watched.device = Some(device);
        }
        let node = self.inner.node.clone();
        tokio::spawn(async move {
            let op = match medledger_monitor::parse_trial_rule(&rule) {
                Some((study, threshold)) => MonitorOp::RaiseTrialAlert {
                    patient,
                    study: study.to_string(),
                    threshold,
                    device,
                    at_ms,
                },
                None => MonitorOp::RaiseAlert {
                    patient,
                    rule: rule.clone(),
                    device,
                    at_ms,
                },
            };
            let submitted = node.submit_own_checked(op.into(), |_| Ok::<(), ServiceError>(()));
            let result = match submitted {
                Ok(tx) => wait_committed(&node, tx).await.map(|_| ()),
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => {}
                Err(ServiceError::Refused { code, .. }) if code == "alert_open" => {}
                Err(error) => tracing::warn!(%error, rule, "raising a monitoring alert failed"),
            }
        });
    }

    /// Missing-data rules and escalations, on this node's clock. An escalation is proposed once
    /// due by this clock (an idle chain's head time stands still) and committed only in a block
    /// whose time has reached it; a refusal is tried again at the next tick.
    async fn watch_clock(&self, now_ms: u64) -> Result<(), ServiceError> {
        let mut silent = Vec::new();
        {
            let mut watches = self
                .inner
                .watches
                .lock()
                .map_err(|_| storage("a watch lock holder panicked"))?;
            for ((patient, rule), watched) in watches.iter_mut() {
                if let (Some(firing), Some(device)) =
                    (watched.watch.silence(&watched.rule, now_ms), watched.device)
                {
                    silent.push((*patient, rule.clone(), device, firing.at_ms));
                }
            }
        }
        for (patient, rule, device, at_ms) in silent {
            self.raise(patient, rule, device, at_ms);
        }
        self.escalate(now_ms).await
    }

    /// This organisation's alert feed from `cursor` as `viewer` may receive it (a bounded
    /// page), and the cursor after the last change read: every change for the organisation's
    /// own people (its root key, node, practitioners and auditors), a patient's own for a
    /// patient.
    pub fn alerts(
        &self,
        viewer: &PublicKey,
        authority: &Authority,
        cursor: u64,
    ) -> Result<(Vec<AlertNotice>, u64), ServiceError> {
        let org = self.org()?;
        let everything = match authority {
            Authority::Organisation { org: own } => *own == org,
            Authority::Member { org: own, role } => {
                *own == org && matches!(role, Role::Practitioner | Role::Validator | Role::Auditor)
            }
        };
        let patient = matches!(
            authority,
            Authority::Member {
                role: Role::Patient,
                ..
            }
        );
        if !everything && !patient {
            return Err(ServiceError::Forbidden(format!(
                "monitoring alerts are for {org}'s care team and auditors, and for each patient their own"
            )));
        }
        let (_, page) = self.inner.node.read_head(|state| {
            let count = medledger_monitor::alert_event_count(state, &org)?;
            let end = count.min(cursor.saturating_add(ALERTS_PAGE_MAX));
            let mut out = Vec::new();
            for seq in cursor..end {
                let Some(event) = medledger_monitor::alert_event(state, &org, seq)? else {
                    continue;
                };
                let Some(mut alert) = medledger_monitor::alert(state, &org, event.alert)? else {
                    continue;
                };
                // As it stood after this change, so a notice reads the same every time it is
                // sent (acknowledgement is the last change an alert has).
                use medledger_monitor::{AlertChange, AlertState};
                match event.change {
                    AlertChange::Raised => alert.state = AlertState::Open,
                    AlertChange::Escalated => {
                        alert.state = AlertState::Escalated {
                            height: event.height,
                            time_ms: event.time_ms,
                        };
                    }
                    AlertChange::Acknowledged => {}
                }
                let visible = everything
                    || medledger_records::patient(state, &alert.patient)?
                        .is_some_and(|entry| entry.key == Some(*viewer));
                if visible {
                    out.push(AlertNotice {
                        seq,
                        change: event.change,
                        height: event.height,
                        time_ms: event.time_ms,
                        alert,
                    });
                }
            }
            Ok((out, end.max(cursor)))
        })?;
        page.map_err(|error| ServiceError::Storage(error.to_string()))
    }

    /// Escalates this organisation's open alerts whose rule's timeout has passed by `now_ms`.
    async fn escalate(&self, now_ms: u64) -> Result<(), ServiceError> {
        let org = self.org()?;
        let from = *self
            .inner
            .open_from
            .lock()
            .map_err(|_| storage("a cursor lock holder panicked"))?;
        let (_, due) = self.inner.node.read_head(|state| {
            let now = medledger_module::chain_head(state)?.time_ms.max(now_ms);
            let count = medledger_monitor::alert_count(state, &org)?;
            let mut due = Vec::new();
            let mut first_open = count;
            for seq in from..count.min(from.saturating_add(ESCALATION_SCAN_MAX)) {
                let Some(alert) = medledger_monitor::alert(state, &org, seq)? else {
                    continue;
                };
                if alert.state != medledger_monitor::AlertState::Open {
                    continue;
                }
                first_open = first_open.min(seq);
                if alert
                    .escalate_after_ms
                    .is_some_and(|after| now >= alert.raised_ms.saturating_add(after))
                {
                    due.push(seq);
                }
            }
            Ok((due, first_open))
        })?;
        let (due, first_open) = due.map_err(|error| ServiceError::Storage(error.to_string()))?;
        *self
            .inner
            .open_from
            .lock()
            .map_err(|_| storage("a cursor lock holder panicked"))? = first_open;
        for seq in due {
            let op = MonitorOp::EscalateAlert {
                org: org.clone(),
                seq,
            };
            let tx = self
                .inner
                .node
                .submit_own_checked(op.into(), |_| Ok::<(), ServiceError>(()))?;
            match wait_committed(&self.inner.node, tx).await {
                Ok(_) | Err(ServiceError::Refused { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Writes the device's stream record for the patient unless the chain has it, without
    /// waiting for the block: a batch is kept at once, and reads of the readings, which need the
    /// record, come blocks later. One write per stream is in flight at a time; a failed one is
    /// tried again with the device's next batch.
    fn ensure_stream(&self, device: &PublicKey, patient: &Hash) -> Result<(), ServiceError> {
        let record = medledger_monitor::stream_record(device, patient);
        {
            let mut streams = self
                .inner
                .streams
                .lock()
                .map_err(|_| storage("a stream lock holder panicked"))?;
            if !streams.insert(record) {
                return Ok(());
            }
        }
        let forget = move |inner: &Inner| {
            if let Ok(mut streams) = inner.streams.lock() {
                streams.remove(&record);
            }
        };
        let (_, found) = self
            .inner
            .node
            .read_head(|state| Ok(medledger_records::record(state, &record)?))?;
        match found {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => {}
            Err(error) => {
                forget(&self.inner);
                return Err(ServiceError::Storage(error.to_string()));
            }
        }
        let write = medledger_records::RecordWrite {
            record,
            patient: *patient,
            resource_type: "Observation".into(),
            category: Some("vital-signs".into()),
            version: 1,
            commitment: self
                .inner
                .salts
                .blind(b"medledger/monitor-stream", &[&device.0, &patient.0]),
            author: self.inner.node.key(),
        };
        let op = medledger_records::RecordsOp::PutRecords {
            records: vec![write],
        };
        let tx = match self
            .inner
            .node
            .submit_own_checked(op.into(), |_| Ok::<(), ServiceError>(()))
        {
            Ok(tx) => tx,
            Err(error) => {
                forget(&self.inner);
                return Err(error);
            }
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            match wait_committed(&inner.node, tx).await {
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "writing a device's stream record failed; retrying with its next batch");
                    forget(&inner);
                }
            }
        });
        Ok(())
    }

    /// The readings `request.reader` may see: the patient's readings of `code` in `period`, at
    /// most `limit`, each device's by the patient's consent over its stream record, the decision
    /// committed as an access event first (denied ones too). Returns the event and the readings
    /// released.
    pub async fn read(
        &self,
        request: crate::records::ReadRequest,
        filter: &ReadingFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(medledger_records::AccessEvent, usize, Vec<KeptReading>), ServiceError> {
        let (total, found) = self.readings(&request.patient, filter, offset, limit)?;
        let mut request = request;
        request.records = found
            .iter()
            .map(|kept| medledger_monitor::stream_record(&kept.device, &request.patient))
            .collect();
        request.records.sort();
        request.records.dedup();
        let event = self.inner.records.decide(&request).await?;
        let allowed: std::collections::BTreeSet<Hash> = event
            .decisions
            .iter()
            .filter(|(_, rule)| rule.allows())
            .map(|(record, _)| *record)
            .collect();
        let released = found
            .into_iter()
            .filter(|kept| {
                allowed.contains(&medledger_monitor::stream_record(
                    &kept.device,
                    &request.patient,
                ))
            })
            .collect();
        Ok((event, total, released))
    }

    /// A reading's proof, for a reader the patient's consent allows (the decision committed as
    /// an access event first).
    pub async fn read_proof(
        &self,
        request: crate::records::ReadRequest,
        device: &PublicKey,
        seq: u64,
        index: u16,
    ) -> Result<(medledger_records::AccessEvent, Option<ReadingProof>), ServiceError> {
        let event = self.decide_batch(request, device, seq).await?;
        if !event.allowed() {
            return Ok((event, None));
        }
        let proof = self.proof(device, seq, index)?;
        Ok((event, proof))
    }

    /// One reading, for a reader the patient's consent allows (the decision committed first);
    /// `None` beside a denial.
    pub async fn read_reading(
        &self,
        request: crate::records::ReadRequest,
        device: &PublicKey,
        seq: u64,
        index: u16,
    ) -> Result<(medledger_records::AccessEvent, Option<KeptReading>), ServiceError> {
        let event = self.decide_batch(request, device, seq).await?;
        if !event.allowed() {
            return Ok((event, None));
        }
        let reading = self
            .batch(device, seq)?
            .and_then(|batch| batch.get(usize::from(index)).copied())
            .ok_or_else(|| {
                ServiceError::NotFound(format!(
                    "batch {seq} of device {device} has no reading {index}"
                ))
            })?;
        let anchor = {
            let read = self.inner.db.begin_read().map_err(storage)?;
            read.open_table(ANCHORED)
                .map_err(storage)?
                .get((&device.0, seq))
                .map_err(storage)?
                .map(|place| place.value().0)
        };
        Ok((
            event,
            Some(KeptReading {
                device: *device,
                seq,
                index,
                reading,
                anchor,
            }),
        ))
    }

    /// The device whose key begins with `prefix` and that sent batch `seq` here, and the patient
    /// it was for (a reading's FHIR id names the device by the first 8 bytes of its key).
    pub fn locate(
        &self,
        prefix: [u8; 8],
        seq: u64,
    ) -> Result<Option<(PublicKey, Hash)>, ServiceError> {
        let read = self.inner.db.begin_read().map_err(storage)?;
        let devices = read.open_table(NEXT_SEQ).map_err(storage)?;
        let patients = read.open_table(BATCH_PATIENT).map_err(storage)?;
        let mut low = [0u8; 32];
        low[..8].copy_from_slice(&prefix);
        let mut high = [0xFFu8; 32];
        high[..8].copy_from_slice(&prefix);
        for row in devices.range::<&[u8; 32]>(&low..=&high).map_err(storage)? {
            let (device, _) = row.map_err(storage)?;
            let device = *device.value();
            if let Some(patient) = patients.get((&device, seq)).map_err(storage)? {
                return Ok(Some((PublicKey(device), Hash(*patient.value()))));
            }
        }
        Ok(None)
    }

    /// Records the reader's access to the stream of `device`'s batch `seq` (which must have been
    /// received for the request's patient), and returns the committed decision.
    async fn decide_batch(
        &self,
        request: crate::records::ReadRequest,
        device: &PublicKey,
        seq: u64,
    ) -> Result<medledger_records::AccessEvent, ServiceError> {
        let received_for = {
            let read = self.inner.db.begin_read().map_err(storage)?;
            read.open_table(BATCH_PATIENT)
                .map_err(storage)?
                .get((&device.0, seq))
                .map_err(storage)?
                .map(|patient| Hash(*patient.value()))
        };
        if received_for != Some(request.patient) {
            return Err(ServiceError::NotFound(format!(
                "no batch {seq} of device {device} for patient {} here",
                request.patient
            )));
        }
        let mut request = request;
        request.records = vec![medledger_monitor::stream_record(device, &request.patient)];
        self.inner.records.decide(&request).await
    }

    /// The studies that monitor device readings, read once per head height (every batch asks).
    fn monitored_studies(&self) -> Result<Vec<String>, ServiceError> {
        let head = *self.inner.node.subscribe_head().borrow();
        let mut cached = self
            .inner
            .monitored
            .lock()
            .map_err(|_| storage("a study cache lock holder panicked"))?;
        if let Some((height, studies)) = cached.as_ref()
            && *height == head
        {
            return Ok(studies.clone());
        }
        let (_, studies) = self
            .inner
            .node
            .read_head(|state| Ok(medledger_trials::monitored_studies(state)?))?;
        let studies = studies.map_err(|error| ServiceError::Storage(error.to_string()))?;
        *cached = Some((head, studies.clone()));
        Ok(studies)
    }

    /// The patient a device may report for to this node, at the head, and this node's
    /// organisation.
    fn paired_patient(&self, device: &PublicKey) -> Result<(Hash, String), ServiceError> {
        let org = self.org()?;
        let (_, found) = self.inner.node.read_head(|state| {
            Ok((
                standing(state, device)?,
                medledger_monitor::pairing(state, device)?,
            ))
        })?;
        let (standing, pairing) =
            found.map_err(|error| ServiceError::Storage(error.to_string()))?;
        match standing {
            Standing::Acts(Authority::Member {
                role: Role::Device, ..
            }) => {}
            Standing::Revoked { .. } => {
                return Err(ServiceError::Forbidden(format!(
                    "device {device} was revoked"
                )));
            }
            _ => {
                return Err(ServiceError::Forbidden(format!(
                    "{device} is not an enrolled device"
                )));
            }
        }
        match pairing {
            Some(Pairing {
                unpaired_at: None,
                org: paired_org,
                patient,
                ..
            }) if paired_org == org => Ok((patient, org)),
            Some(Pairing {
                unpaired_at: None,
                org: paired_org,
                ..
            }) => Err(ServiceError::Forbidden(format!(
                "device {device} reports to {paired_org}'s node, not this one"
            ))),
            _ => Err(ServiceError::Forbidden(format!(
                "device {device} is not paired with a patient"
            ))),
        }
    }

    /// This node's organisation: the custodian of its patients, whose devices report here.
    pub fn org(&self) -> Result<String, ServiceError> {
        self.inner.records.custodian()
    }

    /// The next batch number this node will take from `device` (what it received, anchored or
    /// not; the chain's pairing knows only what was anchored).
    pub fn next_seq(&self, device: &PublicKey) -> Result<u64, ServiceError> {
        let read = self.inner.db.begin_read().map_err(storage)?;
        Ok(read
            .open_table(NEXT_SEQ)
            .map_err(storage)?
            .get(&device.0)
            .map_err(storage)?
            .map_or(0, |value| value.value()))
    }

    /// Anchors every window, and watches the clock each second (missing data, escalations),
    /// until the node stops. A failed round is logged and retried.
    pub async fn run_anchoring(self) {
        let mut window = tokio::time::interval(Duration::from_millis(self.inner.window_ms));
        window.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut second = tokio::time::interval(Duration::from_secs(1));
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = window.tick() => {
                    if let Err(error) = self.anchor_now().await {
                        tracing::warn!(%error, "anchoring monitor readings failed; retrying next window");
                    }
                }
                _ = second.tick() => {
                    if let Err(error) = self.watch_clock(clock_ms()).await {
                        tracing::warn!(%error, "watching monitoring alerts failed; retrying");
                    }
                }
            }
        }
    }

    /// Anchors what was received and not anchored yet (first finishing a journalled anchor),
    /// in as many transactions as it takes (`SPANS_PER_ANCHOR_MAX` devices each); `None` when
    /// there was nothing to anchor.
    pub async fn anchor_now(&self) -> Result<Option<Anchored>, ServiceError> {
        let _one = self.inner.anchoring.lock().await;
        if let Some(planned) = self.journalled()? {
            self.finish(&planned, true)?;
        }
        let mut total: Option<Anchored> = None;
        while let Some(round) = self.anchor_once().await? {
            total = Some(match total {
                None => round,
                Some(sum) => Anchored {
                    anchor: sum.anchor,
                    anchors: sum.anchors + round.anchors,
                    height: round.height,
                    devices: sum.devices + round.devices,
                    readings: sum.readings + round.readings,
                },
            });
        }
        Ok(total)
    }

    /// One anchor transaction over the first `SPANS_PER_ANCHOR_MAX` devices with pending batches.
    async fn anchor_once(&self) -> Result<Option<Anchored>, ServiceError> {
        let Some((planned_spans, op, readings)) = self.plan()? else {
            return Ok(None);
        };
        let payload: Payload = op.into();
        let inner = self.inner.clone();
        let spans = planned_spans.clone();
        let tx = self
            .inner
            .node
            .submit_own_checked(payload, |tx| -> Result<(), ServiceError> {
                write_journal(&inner.db, &Planned { tx: tx.id(), spans })
            })?;
        let planned = Planned {
            tx,
            spans: planned_spans,
        };
        match wait_committed(&self.inner.node, tx).await {
            Ok(height) => {
                let anchor = self.finish(&planned, false)?.ok_or_else(|| {
                    ServiceError::Storage(format!(
                        "anchor transaction {tx} committed but not found"
                    ))
                })?;
                Ok(Some(Anchored {
                    anchor,
                    anchors: 1,
                    height,
                    devices: planned.spans.len(),
                    readings,
                }))
            }
            Err(error @ ServiceError::Refused { .. }) => {
                clear_journal(&self.inner.db)?;
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// The pending batches, as spans with their roots and the transaction to anchor them.
    fn plan(&self) -> Result<Option<(Vec<AnchoredSpan>, MonitorOp, u64)>, ServiceError> {
        let read = self.inner.db.begin_read().map_err(storage)?;
        let pending = read.open_table(PENDING).map_err(storage)?;
        let leaves_table = read.open_table(LEAVES).map_err(storage)?;
        let mut by_device: BTreeMap<[u8; 32], Vec<(u64, u32)>> = BTreeMap::new();
        for row in pending.iter().map_err(storage)? {
            let (key, count) = row.map_err(storage)?;
            let (device, seq) = key.value();
            by_device
                .entry(*device)
                .or_default()
                .push((seq, count.value()));
            if by_device.len() > medledger_monitor::SPANS_PER_ANCHOR_MAX {
                by_device.pop_last();
                break;
            }
        }
        if by_device.is_empty() {
            return Ok(None);
        }
        let mut spans = Vec::with_capacity(by_device.len());
        let mut chain_spans = Vec::with_capacity(by_device.len());
        let mut readings = 0u64;
        for (device, batches) in by_device {
            let mut leaves = Vec::new();
            let mut count = 0u32;
            for (seq, n) in &batches {
                let bytes = leaves_table
                    .get((&device, *seq))
                    .map_err(storage)?
                    .ok_or_else(|| storage(format!("no leaves for a pending batch {seq}")))?;
                leaves.extend(
                    bytes
                        .value()
                        .chunks_exact(32)
                        .filter_map(|chunk| <[u8; 32]>::try_from(chunk).ok().map(Hash)),
                );
                count = count.saturating_add(*n);
            }
            let first_seq = batches.first().map_or(0, |b| b.0);
            let last_seq = batches.last().map_or(0, |b| b.0);
            readings += u64::from(count);
            let device = PublicKey(device);
            chain_spans.push(Span {
                device,
                first_seq,
                last_seq,
                readings: count,
            });
            spans.push(AnchoredSpan {
                device,
                first_seq,
                last_seq,
                root: device_root(&leaves),
                batches: batches.iter().map(|b| b.0).collect(),
            });
        }
        let roots: Vec<Hash> = spans.iter().map(|span| span.root).collect();
        let (_, head) = self
            .inner
            .node
            .read_head(|state| Ok(medledger_module::chain_head(state)?.time_ms))?;
        let now = head.map_err(|error| ServiceError::Storage(error.to_string()))?;
        let window_ms = self.inner.window_ms;
        let window_start_ms = now.saturating_sub(window_ms);
        let op = MonitorOp::AnchorWindow {
            window_start_ms,
            window_ms,
            root: window_root(&roots),
            spans: chain_spans,
        };
        Ok(Some((spans, op, readings)))
    }

    fn journalled(&self) -> Result<Option<Planned>, ServiceError> {
        let read = self.inner.db.begin_read().map_err(storage)?;
        let table = read.open_table(JOURNAL).map_err(storage)?;
        let Some(bytes) = table.get(JOURNAL_KEY).map_err(storage)? else {
            return Ok(None);
        };
        borsh::from_slice(bytes.value())
            .map(Some)
            .map_err(|error| storage(format!("the anchor journal: {error}")))
    }

    /// Records a committed anchor's spans (moving its batches from pending to anchored) and
    /// clears the journal. When the transaction is not on chain: a journalled one found on
    /// restart is dropped (its batches stay pending and go into the next anchor).
    fn finish(&self, planned: &Planned, recovering: bool) -> Result<Option<u64>, ServiceError> {
        let org = self.org()?;
        let (_, found) = self.inner.node.read_head(|state| {
            let count = medledger_monitor::anchor_count(state, &org)?;
            for seq in (count.saturating_sub(ANCHOR_SEARCH_BACK)..count).rev() {
                if let Some(anchor) = medledger_monitor::anchor(state, &org, seq)?
                    && anchor.tx == planned.tx
                {
                    return Ok(Some(seq));
                }
            }
            Ok(None)
        })?;
        let found = found.map_err(|error| ServiceError::Storage(error.to_string()))?;
        let Some(anchor) = found else {
            if recovering {
                clear_journal(&self.inner.db)?;
            }
            return Ok(None);
        };
        let txn = self.inner.db.begin_write().map_err(storage)?;
        {
            let mut pending = txn.open_table(PENDING).map_err(storage)?;
            let mut anchored = txn.open_table(ANCHORED).map_err(storage)?;
            let mut anchors = txn.open_table(ANCHORS).map_err(storage)?;
            for (place, span) in planned.spans.iter().enumerate() {
                for seq in &span.batches {
                    pending.remove((&span.device.0, *seq)).map_err(storage)?;
                    anchored
                        .insert((&span.device.0, *seq), (anchor, place as u32))
                        .map_err(storage)?;
                }
            }
            let bytes = borsh::to_vec(&planned.spans).map_err(storage)?;
            anchors.insert(anchor, bytes.as_slice()).map_err(storage)?;
            txn.open_table(JOURNAL)
                .map_err(storage)?
                .remove(JOURNAL_KEY)
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(Some(anchor))
    }

    /// The readings of a batch, opened; `Err(Conflict)` if they no longer open or no longer
    /// match their leaves (changed on disk).
    fn batch(&self, device: &PublicKey, seq: u64) -> Result<Option<Vec<Reading>>, ServiceError> {
        let read = self.inner.db.begin_read().map_err(storage)?;
        let readings = read.open_table(READINGS).map_err(storage)?;
        let Some(sealed) = readings.get((&device.0, seq)).map_err(storage)? else {
            return Ok(None);
        };
        let leaves = read
            .open_table(LEAVES)
            .map_err(storage)?
            .get((&device.0, seq))
            .map_err(storage)?
            .map(|bytes| bytes.value().to_vec())
            .unwrap_or_default();
        let sealed = sealed.value();
        let tampered = || {
            ServiceError::Conflict(format!(
                "device {device}'s batch {seq} was changed on this node: it no longer matches what was anchored"
            ))
        };
        let (nonce, ciphertext) = sealed
            .split_first_chunk::<NONCE_BYTES>()
            .ok_or_else(tampered)?;
        let plain = self
            .inner
            .seal
            .open(*nonce, &batch_aad(device, seq), ciphertext)
            .map_err(|_| tampered())?;
        let batch: Vec<Reading> = borsh::from_slice(&plain).map_err(|_| tampered())?;
        let expected: Vec<u8> = batch
            .iter()
            .enumerate()
            .flat_map(|(index, reading)| {
                leaf(&self.inner.salts, device, seq, index as u16, reading)
                    .0
                    .to_vec()
            })
            .collect();
        if expected != leaves {
            return Err(tampered());
        }
        Ok(Some(batch))
    }

    /// A reading and its proof against its anchor (`None` while it is not anchored).
    fn proof(
        &self,
        device: &PublicKey,
        seq: u64,
        index: u16,
    ) -> Result<Option<ReadingProof>, ServiceError> {
        let Some(batch) = self.batch(device, seq)? else {
            return Err(ServiceError::NotFound(format!(
                "no batch {seq} of device {device} here"
            )));
        };
        let reading = *batch
            .get(usize::from(index))
            .ok_or_else(|| ServiceError::NotFound(format!("batch {seq} has no reading {index}")))?;
        let read = self.inner.db.begin_read().map_err(storage)?;
        let Some(place) = read
            .open_table(ANCHORED)
            .map_err(storage)?
            .get((&device.0, seq))
            .map_err(storage)?
        else {
            return Ok(None);
        };
        let (anchor, place) = place.value();
        let spans: Vec<AnchoredSpan> = read
            .open_table(ANCHORS)
            .map_err(storage)?
            .get(anchor)
            .map_err(storage)?
            .and_then(|bytes| borsh::from_slice(bytes.value()).ok())
            .ok_or_else(|| storage(format!("anchor {anchor}'s spans")))?;
        let span = spans
            .get(place as usize)
            .ok_or_else(|| storage(format!("anchor {anchor} has no span {place}")))?;
        let leaves_table = read.open_table(LEAVES).map_err(storage)?;
        let mut leaves = Vec::new();
        let mut position = None;
        for batch_seq in &span.batches {
            let bytes = leaves_table
                .get((&device.0, *batch_seq))
                .map_err(storage)?
                .ok_or_else(|| storage(format!("the leaves of batch {batch_seq}")))?;
            if *batch_seq == seq {
                position = Some(leaves.len() + usize::from(index));
            }
            leaves.extend(
                bytes
                    .value()
                    .chunks_exact(32)
                    .filter_map(|chunk| <[u8; 32]>::try_from(chunk).ok().map(Hash)),
            );
        }
        let position = position.ok_or_else(|| storage("the batch is not in its span"))?;
        let roots: Vec<Hash> = spans.iter().map(|span| span.root).collect();
        let in_device = InclusionProof::build(&leaves, position)
            .ok_or_else(|| storage("the reading is not among its span's leaves"))?;
        let in_window = InclusionProof::build(&roots, place as usize)
            .ok_or_else(|| storage("the span is not in its anchor"))?;
        Ok(Some(ReadingProof {
            org: self.org()?,
            anchor,
            device: *device,
            seq,
            index,
            reading,
            salt: salt(&self.inner.salts, device, seq, index),
            in_device,
            device_root: span.root,
            in_window,
        }))
    }

    /// A patient's readings of `code` (all codes if `None`) in `[from_ms, to_ms)`, oldest first,
    /// at most `limit`.
    fn readings(
        &self,
        patient: &Hash,
        filter: &ReadingFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<KeptReading>), ServiceError> {
        let found = self.select(patient, filter, |_| true)?;
        let page: Vec<ReadingRef> = found.iter().skip(offset).take(limit).copied().collect();
        Ok((found.len(), self.open_readings(&page)?))
    }

    /// The patient's readings that `filter` and then `keep` match, in time order (at most
    /// `READINGS_MATCHED_MAX`: a wider selection is asked to narrow its period). Read from the
    /// patient index alone: nothing is opened.
    pub fn select(
        &self,
        patient: &Hash,
        filter: &ReadingFilter,
        keep: impl Fn(&ReadingRef) -> bool,
    ) -> Result<Vec<ReadingRef>, ServiceError> {
        let period = filter.period;
        let read = self.inner.db.begin_read().map_err(storage)?;
        let index = read.open_table(BY_PATIENT).map_err(storage)?;
        let codes: Vec<medledger_monitor::Code> = match filter.code {
            Some(code) => vec![code],
            None => medledger_monitor::Code::ALL.to_vec(),
        };
        let mut found = Vec::new();
        for code in codes {
            let low = (&patient.0, code as u8, period.0, &[0u8; 32], 0u64, 0u16);
            let high = (&patient.0, code as u8, period.1, &[0u8; 32], 0u64, 0u16);
            for row in index.range(low..high).map_err(storage)? {
                let (key, _) = row.map_err(storage)?;
                let (_, _, time_ms, device, seq, index) = key.value();
                let reading = ReadingRef {
                    time_ms,
                    device: PublicKey(*device),
                    seq,
                    index,
                    code,
                };
                if filter
                    .devices
                    .as_ref()
                    .is_some_and(|only| !only.contains(&reading.device))
                    || !keep(&reading)
                {
                    continue;
                }
                if found.len() == READINGS_MATCHED_MAX {
                    return Err(ServiceError::Invalid(format!(
                        "more than {READINGS_MATCHED_MAX} readings match: narrow the period"
                    )));
                }
                found.push(reading);
            }
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Opens the readings `refs` names (those whose sealed batch still opens and matches its
    /// anchored leaves), in order.
    fn open_readings(&self, refs: &[ReadingRef]) -> Result<Vec<KeptReading>, ServiceError> {
        let read = self.inner.db.begin_read().map_err(storage)?;
        let anchored = read.open_table(ANCHORED).map_err(storage)?;
        let mut out = Vec::with_capacity(refs.len());
        let mut batches: BTreeMap<(PublicKey, u64), Vec<Reading>> = BTreeMap::new();
        for wanted in refs {
            let (device, seq) = (wanted.device, wanted.seq);
            if let std::collections::btree_map::Entry::Vacant(slot) = batches.entry((device, seq)) {
                slot.insert(self.batch(&device, seq)?.unwrap_or_default());
            }
            let Some(reading) = batches
                .get(&(device, seq))
                .and_then(|batch| batch.get(usize::from(wanted.index)))
            else {
                continue;
            };
            let anchor = anchored
                .get((&device.0, seq))
                .map_err(storage)?
                .map(|place| place.value().0);
            out.push(KeptReading {
                device,
                seq,
                index: wanted.index,
                reading: *reading,
                anchor,
            });
        }
        Ok(out)
    }

    /// The patient's devices whose readings `reader` may see for `purpose` by the patient's
    /// consent at the head, and how many consent withholds. Nothing is committed: a read of
    /// them decides again ([`Monitor::release`]).
    pub fn permitted_devices(
        &self,
        reader: &PublicKey,
        patient: &Hash,
        purpose: medledger_records::Purpose,
        break_glass: bool,
    ) -> Result<(std::collections::BTreeSet<PublicKey>, usize), ServiceError> {
        let devices = self.devices_of(patient)?;
        let mut streams: BTreeMap<Hash, PublicKey> = devices
            .iter()
            .map(|device| (medledger_monitor::stream_record(device, patient), *device))
            .collect();
        // A stream record not yet committed (its device's first batch just arrived) holds no
        // readings anyone may see yet: left out rather than failing the whole decision.
        let (_, committed) = self.inner.node.read_head(|state| {
            let mut committed = std::collections::BTreeSet::new();
            for record in streams.keys() {
                if medledger_records::record(state, record)?.is_some() {
                    committed.insert(*record);
                }
            }
            Ok(committed)
        })?;
        let committed = committed.map_err(|error| ServiceError::Storage(error.to_string()))?;
        streams.retain(|record, _| committed.contains(record));
        let allowed = self.inner.records.preview(
            reader,
            patient,
            streams.keys().copied().collect(),
            purpose,
            break_glass,
        )?;
        let permitted: std::collections::BTreeSet<PublicKey> = streams
            .iter()
            .filter(|(record, _)| allowed.contains(record))
            .map(|(_, device)| *device)
            .collect();
        Ok((permitted.clone(), devices.len() - permitted.len()))
    }

    /// The devices that ever reported for `patient` at this node.
    fn devices_of(&self, patient: &Hash) -> Result<Vec<PublicKey>, ServiceError> {
        let read = self.inner.db.begin_read().map_err(storage)?;
        let table = read.open_table(PATIENT_DEVICES).map_err(storage)?;
        let mut out = Vec::new();
        for row in table
            .range((&patient.0, &[0u8; 32])..=(&patient.0, &[0xffu8; 32]))
            .map_err(storage)?
        {
            let (key, _) = row.map_err(storage)?;
            out.push(PublicKey(*key.value().1));
        }
        Ok(out)
    }

    /// Releases the readings `refs` names to the reader of `request`: the consent decision over
    /// their devices' stream records is committed as an access event first, and only readings
    /// of allowed devices are opened.
    pub async fn release(
        &self,
        request: crate::records::ReadRequest,
        refs: &[ReadingRef],
    ) -> Result<(medledger_records::AccessEvent, Vec<KeptReading>), ServiceError> {
        let devices: Vec<PublicKey> = refs.iter().map(|found| found.device).collect();
        let (event, allowed) = self.decide_devices(request, &devices).await?;
        let permitted: Vec<ReadingRef> = refs
            .iter()
            .filter(|found| allowed.contains(&found.device))
            .copied()
            .collect();
        Ok((event, self.open_readings(&permitted)?))
    }

    /// Commits the patient's consent decision over `devices`' stream records for the reader of
    /// `request` (a read of their readings or of the devices themselves), and answers the
    /// devices it allows.
    pub async fn decide_devices(
        &self,
        request: crate::records::ReadRequest,
        devices: &[PublicKey],
    ) -> Result<
        (
            medledger_records::AccessEvent,
            std::collections::BTreeSet<PublicKey>,
        ),
        ServiceError,
    > {
        let mut request = request;
        let streams: BTreeMap<Hash, PublicKey> = devices
            .iter()
            .map(|device| {
                (
                    medledger_monitor::stream_record(device, &request.patient),
                    *device,
                )
            })
            .collect();
        request.records = streams.keys().copied().collect();
        let event = self.inner.records.decide(&request).await?;
        let allowed = event
            .decisions
            .iter()
            .filter(|(_, rule)| rule.allows())
            .filter_map(|(record, _)| streams.get(record).copied())
            .collect();
        Ok((event, allowed))
    }

    /// The pairings of the patient's devices that reported to this node, at the head.
    pub fn pairings_of(
        &self,
        patient: &Hash,
    ) -> Result<Vec<medledger_monitor::Pairing>, ServiceError> {
        let devices = self.devices_of(patient)?;
        let (_, found) = self.inner.node.read_head(|state| {
            let mut out = Vec::with_capacity(devices.len());
            for device in &devices {
                if let Some(pairing) = medledger_monitor::pairing(state, device)? {
                    out.push(pairing);
                }
            }
            Ok(out)
        })?;
        found.map_err(|error| ServiceError::Storage(error.to_string()))
    }

    /// This organisation's adverse-event drafts: alerts of a trial's monitored threshold, not
    /// acknowledged, whose event the site has not reported yet (among the latest
    /// `DRAFTS_SCANNED_MAX` alerts), for the organisation's people.
    pub fn drafts(&self, viewer: &Authority) -> Result<Vec<Draft>, ServiceError> {
        let org = self.org()?;
        let own = match viewer {
            Authority::Organisation { org: own } => *own == org,
            Authority::Member { org: own, role } => {
                *own == org && matches!(role, Role::Practitioner | Role::Validator)
            }
        };
        if !own {
            return Err(ServiceError::Forbidden(format!(
                "adverse-event drafts are for {org}'s practitioners"
            )));
        }
        let (_, found) = self.inner.node.read_head(|state| {
            let count = medledger_monitor::alert_count(state, &org)?;
            let mut out = Vec::new();
            for seq in count.saturating_sub(DRAFTS_SCANNED_MAX)..count {
                let Some(alert) = medledger_monitor::alert(state, &org, seq)? else {
                    continue;
                };
                let Some((study, index)) = medledger_monitor::parse_trial_rule(&alert.rule) else {
                    continue;
                };
                let draft = self.draft_id(&org, seq);
                if matches!(
                    alert.state,
                    medledger_monitor::AlertState::Acknowledged { .. }
                ) || state
                    .get(&medledger_trials::key_event_study(&draft))?
                    .is_some()
                {
                    continue;
                }
                let key =
                    medledger_records::patient(state, &alert.patient)?.and_then(|entry| entry.key);
                let subject = match key {
                    Some(key) => medledger_trials::participant(state, study, &key)?,
                    None => None,
                };
                let Some(subject) = subject else {
                    continue;
                };
                // A participant since withdrawn, or moved to another site, has no draft here.
                let on_study =
                    medledger_trials::subject(state, study, &subject)?.is_some_and(|found| {
                        found.site == org
                            && found.status == medledger_trials::SubjectStatus::OnStudy
                    });
                // As the protocol stands now (a threshold the sponsor removed since is `None`).
                let threshold = medledger_trials::monitored(state, study)?
                    .and_then(|monitored| monitored.thresholds.get(usize::from(index)).cloned());
                if on_study {
                    out.push(Draft {
                        draft,
                        study: study.to_string(),
                        subject,
                        threshold,
                        alert,
                    });
                }
            }
            Ok(out)
        })?;
        found.map_err(|error| ServiceError::Storage(error.to_string()))
    }

    /// The id of the draft alert `seq` of `org` opens, and of the event the site reports from
    /// it: keyed by this node's secret, so no other organisation can foresee it and take it
    /// first; a draft is open exactly while no event of that id is reported.
    fn draft_id(&self, org: &str, seq: u64) -> Hash {
        self.inner.salts.blind(
            b"medledger/monitor-trial-draft",
            &[org.as_bytes(), &seq.to_le_bytes()],
        )
    }

    /// Closes the alert of a draft the site has reported (this node acknowledges it), so the
    /// participant's next crossing raises a new alert and a new draft.
    pub async fn close_draft(&self, draft: &Draft) -> Result<(), ServiceError> {
        let op = MonitorOp::AcknowledgeAlert {
            org: draft.alert.org.clone(),
            seq: draft.alert.seq,
        };
        let tx = self
            .inner
            .node
            .submit_own_checked(op.into(), |_| Ok::<(), ServiceError>(()))?;
        match wait_committed(&self.inner.node, tx).await {
            Ok(_) | Err(ServiceError::Refused { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// A device's pairing at the head, if it was ever paired.
    pub fn pairing(
        &self,
        device: &PublicKey,
    ) -> Result<Option<medledger_monitor::Pairing>, ServiceError> {
        let (_, found) = self
            .inner
            .node
            .read_head(|state| Ok(medledger_monitor::pairing(state, device)?))?;
        found.map_err(|error| ServiceError::Storage(error.to_string()))
    }
}

/// A reading's salt: derived from the node's key, so nothing more is kept per reading.
fn salt(salts: &BlindKey, device: &PublicKey, seq: u64, index: u16) -> Hash {
    salts.blind(
        b"medledger/monitor-salt",
        &[&device.0, &seq.to_le_bytes(), &index.to_le_bytes()],
    )
}

fn leaf(salts: &BlindKey, device: &PublicKey, seq: u64, index: u16, reading: &Reading) -> Hash {
    reading_leaf(
        &salt(salts, device, seq, index),
        device,
        seq,
        index,
        reading,
    )
}

fn batch_aad(device: &PublicKey, seq: u64) -> Vec<u8> {
    let mut aad = b"medledger/monitor-batch/".to_vec();
    aad.extend_from_slice(&device.0);
    aad.extend_from_slice(&seq.to_le_bytes());
    aad
}

fn batch_error(error: BatchError) -> ServiceError {
    ServiceError::Invalid(error.to_string())
}

fn write_journal(db: &redb::Database, planned: &Planned) -> Result<(), ServiceError> {
    let bytes = borsh::to_vec(planned).map_err(storage)?;
    let txn = db.begin_write().map_err(storage)?;
    txn.open_table(JOURNAL)
        .map_err(storage)?
        .insert(JOURNAL_KEY, bytes.as_slice())
        .map_err(storage)?;
    txn.commit().map_err(storage)
}

fn clear_journal(db: &redb::Database) -> Result<(), ServiceError> {
    let txn = db.begin_write().map_err(storage)?;
    txn.open_table(JOURNAL)
        .map_err(storage)?
        .remove(JOURNAL_KEY)
        .map_err(storage)?;
    txn.commit().map_err(storage)
}

/// The writer: takes a group of batches, writes them in one transaction (refusing replays in
/// arrival order), commits once, then answers each.
fn write_loop(inner: &std::sync::Weak<Inner>, receiver: &std::sync::mpsc::Receiver<Request>) {
    // The (patient, device) pairs already in PATIENT_DEVICES, so each is written once.
    let mut known: std::collections::BTreeSet<([u8; 32], [u8; 32])> =
        std::collections::BTreeSet::new();
    while let Ok(first) = receiver.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut results: Vec<Result<Ingested, ServiceError>> = Vec::with_capacity(group.len());
        let mut new_pairs = Vec::new();
        let written = write_group(&inner, &group, &mut results, (&known, &mut new_pairs));
        if written.is_ok() {
            known.extend(new_pairs);
        }
        for (request, result) in group.into_iter().zip(results) {
            let answer = match &written {
                Ok(()) => result,
                Err(error) => Err(ServiceError::Storage(error.to_string())),
            };
            let _ = request.reply.send(answer);
        }
    }
}

/// The (patient, device) pairs known to be written, and those this group adds.
type Pairs<'a> = (
    &'a std::collections::BTreeSet<([u8; 32], [u8; 32])>,
    &'a mut Vec<([u8; 32], [u8; 32])>,
);

fn write_group(
    inner: &Inner,
    group: &[Request],
    results: &mut Vec<Result<Ingested, ServiceError>>,
    pairs: Pairs<'_>,
) -> Result<(), ServiceError> {
    let (known, new_pairs) = pairs;
    let txn = inner.db.begin_write().map_err(storage)?;
    {
        let mut readings = txn.open_table(READINGS).map_err(storage)?;
        let mut leaves = txn.open_table(LEAVES).map_err(storage)?;
        let mut next_seq = txn.open_table(NEXT_SEQ).map_err(storage)?;
        let mut batch_patient = txn.open_table(BATCH_PATIENT).map_err(storage)?;
        let mut pending = txn.open_table(PENDING).map_err(storage)?;
        let mut by_patient = txn.open_table(BY_PATIENT).map_err(storage)?;
        let mut patient_devices = txn.open_table(PATIENT_DEVICES).map_err(storage)?;
        for request in group {
            let batch = &request.batch.batch;
            let device = batch.device;
            let next = next_seq
                .get(&device.0)
                .map_err(storage)?
                .map_or(0, |value| value.value());
            if batch.seq < next {
                results.push(Err(ServiceError::Conflict(format!(
                    "device {device} sent batch {} again or out of order: the next is {next}",
                    batch.seq
                ))));
                continue;
            }
            let plain = borsh::to_vec(&batch.readings).map_err(storage)?;
            let mut nonce = [0u8; NONCE_BYTES];
            OsRng.fill_bytes(&mut nonce);
            let mut sealed = nonce.to_vec();
            sealed.extend(
                inner
                    .seal
                    .seal(nonce, &batch_aad(&device, batch.seq), &plain),
            );
            let mut leaf_bytes = Vec::with_capacity(32 * batch.readings.len());
            for (index, reading) in batch.readings.iter().enumerate() {
                let index = index as u16;
                leaf_bytes
                    .extend_from_slice(&leaf(&inner.salts, &device, batch.seq, index, reading).0);
                by_patient
                    .insert(
                        (
                            &request.patient.0,
                            reading.code as u8,
                            reading.time_ms,
                            &device.0,
                            batch.seq,
                            index,
                        ),
                        (),
                    )
                    .map_err(storage)?;
            }
            readings
                .insert((&device.0, batch.seq), sealed.as_slice())
                .map_err(storage)?;
            leaves
                .insert((&device.0, batch.seq), leaf_bytes.as_slice())
                .map_err(storage)?;
            pending
                .insert((&device.0, batch.seq), batch.readings.len() as u32)
                .map_err(storage)?;
            batch_patient
                .insert((&device.0, batch.seq), &request.patient.0)
                .map_err(storage)?;
            let pair = (request.patient.0, device.0);
            if !known.contains(&pair) && !new_pairs.contains(&pair) {
                patient_devices
                    .insert((&pair.0, &pair.1), ())
                    .map_err(storage)?;
                new_pairs.push(pair);
            }
            next_seq.insert(&device.0, batch.seq + 1).map_err(storage)?;
            results.push(Ok(Ingested {
                device,
                seq: batch.seq,
                readings: batch.readings.len(),
                missing_batches: batch.seq - next,
            }));
        }
    }
    txn.commit().map_err(storage)
}
