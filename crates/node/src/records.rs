//! The records service: health records under consent, tying the vault (ciphertext and keys, off
//! chain) to the ledger (versions, consent and access events, on chain).
//!
//! - A write stages the encrypted resources in the vault, puts their versions on chain in
//!   transactions this node signs as the custodian, and settles the vault by the outcome, so a
//!   refused write leaves nothing behind.
//! - A read first commits an access event, whose consent decision the ledger computes at that
//!   block, and releases only what that decision allows.
//! - An erasure is a transaction; every node that follows the chain shreds what its vault holds for
//!   the patient once the block is committed (see [`Service::follow`]).
//!
//! **Invariant:** no record content leaves this service before the access event that allows it is
//! durable on chain. **Invariant:** nothing here logs content, FHIR ids or keys.

use std::sync::Arc;
use std::time::Duration;

use medledger_crypto::envelope::{WrappedKey, wrap_key_to};
use medledger_crypto::{Hash, PublicKey};
use medledger_fhir::{GenomicFile, GenomicFormat};
use medledger_ledger::{Authority, Payload, Tx};
use medledger_records::{
    self as ledger, AccessEvent, AccessRequest, ConsentEntry, Purpose, RECORDS_PER_TX_MAX,
    RecordHead, RecordVersion, RecordWrite, RecordsError, RecordsOp,
};
use medledger_types::{Height, Outcome};
pub use medledger_vault::Hit;
pub use medledger_vault::record_aad;
use medledger_vault::{
    FileDraft, Incoming, PatientRef, Recovery, Sealed, Vault, VaultError, VaultFile,
};
use rand_core::OsRng;
use tokio::sync::watch;

use crate::service::{COMMIT_WAIT, Service, ServiceError, wait_committed};
use crate::{Node, NodeError, TxStatus};

/// How many heights the erasure follower may scan past its saved mark before saving it again.
pub const ERASURE_MARK_EVERY: Height = 1_000;
/// The largest genomic file a node takes (a whole-genome VCF is a few GiB).
pub const FILE_BYTES_MAX: u64 = 64 * 1024 * 1024 * 1024;

/// A genomic file to store, as the API received it: the bytes arrive through a reader.
#[derive(Clone, Debug)]
pub struct FileUpload {
    /// The FHIR logical id of the patient, held here.
    pub patient_fhir_id: String,
    pub format: GenomicFormat,
    /// The SHA-256 the sender declared (and signed): the file is refused if its bytes differ.
    pub declared_sha256: Option<Hash>,
}

/// Refuses content that does not start as its format must, after the first bytes.
struct Sniffed<R> {
    inner: R,
    format: GenomicFormat,
    head: Vec<u8>,
    checked: bool,
}

impl<R: std::io::Read> std::io::Read for Sniffed<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if !self.checked {
            self.head.extend_from_slice(&buffer[..read.min(32)]);
            if self.head.len() >= 18 || read == 0 {
                self.checked = true;
                if !self.format.starts(&self.head) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!(
                            "the file is not {}: {}",
                            self.format.media_type(),
                            match self.format {
                                GenomicFormat::Vcf => "a VCF starts with ##fileformat=VCFv4",
                                GenomicFormat::VcfGzip => "a gzip file starts with 1f 8b",
                            }
                        ),
                    ));
                }
            }
        }
        Ok(read)
    }
}

/// A resource to import, as the API parsed it. `Debug` leaves out the content.
#[derive(Clone)]
pub struct ImportItem {
    pub resource_type: String,
    pub fhir_id: Option<String>,
    /// `None` for a `Patient` resource (its own patient); else its patient's FHIR logical id.
    pub patient_fhir_id: Option<String>,
    pub category: Option<String>,
    pub content: Vec<u8>,
    /// The version the writer expects to replace (`If-Match`), checked atomically with staging.
    pub expected_version: Option<u32>,
    /// A file streamed into the vault for this version (see [`Records::import_file`]).
    pub file: Option<Arc<FileDraft>>,
}

impl std::fmt::Debug for ImportItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportItem")
            .field("resource_type", &self.resource_type)
            .field("content_bytes", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// One stored record version.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    pub resource_type: String,
    pub fhir_id: String,
    pub record: Hash,
    pub patient: Hash,
    pub version: u32,
    pub height: Height,
}

/// A record the reader may receive, with its key wrapped to them if they asked. `Debug` leaves
/// out the content.
pub struct Released {
    pub record: Hash,
    pub resource_type: String,
    pub fhir_id: String,
    pub version: u32,
    /// The block time of that version: its `meta.lastUpdated`.
    pub last_updated_ms: u64,
    pub content: Vec<u8>,
    pub sealed: Option<(Sealed, WrappedKey)>,
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Released")
            .field("record", &self.record)
            .field("version", &self.version)
            .field("content_bytes", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of a read: the event committed on chain, and what it allowed.
#[derive(Debug)]
pub struct Access {
    pub event: AccessEvent,
    pub released: Vec<Released>,
}

/// What a reader asks for.
#[derive(Clone, Debug)]
pub struct ReadRequest {
    /// The hash of the reader's signed request: the event's id, usable once.
    pub request: Hash,
    pub reader: PublicKey,
    pub patient: Hash,
    pub records: Vec<Hash>,
    pub purpose: Purpose,
    pub break_glass: bool,
    /// The reader's X25519 key, to receive each record's data key sealed with HPKE.
    pub wrap_to: Option<[u8; 32]>,
}

/// Whose records a search selects, for whom and why.
#[derive(Clone, Debug)]
pub struct Selection {
    pub reader: PublicKey,
    pub patient: Hash,
    /// One type, or every type.
    pub resource_type: Option<String>,
    pub purpose: Purpose,
    pub break_glass: bool,
}

/// A record a search may return: consent at the head allows it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub hit: Hit,
    /// Its version at the head.
    pub version: u32,
    /// The block time of that version.
    pub last_updated_ms: u64,
}

/// What [`Records::select`] found: the records kept, in order, and how many consent withheld.
#[derive(Clone, Debug)]
pub struct Selected {
    pub candidates: Vec<Candidate>,
    pub withheld: usize,
}

#[derive(Clone, Debug)]
pub struct Records {
    node: Node,
    vault: Arc<Vault>,
    /// The height through which this node has applied erasures.
    erased_through: watch::Sender<Height>,
}

impl Records {
    /// Settles what a crash left staged, against the chain, and returns the service. Call
    /// [`Service::follow`] to apply erasures as blocks commit.
    ///
    /// A batch a crash left staged is kept if the chain holds its versions, and rolled back if
    /// its transaction was never signed or was refused. Otherwise its transaction is submitted
    /// again (the mempool did not survive the restart, but peers may hold it) and the batch is
    /// settled when the chain decides it, so a version on chain never lacks its ciphertext.
    /// Must be called inside a tokio runtime.
    pub fn open(node: Node, vault: Arc<Vault>) -> Result<Records, ServiceError> {
        let resubmitted = std::sync::Mutex::new(Vec::new());
        let waiting = vault.recover(|versions, tx| {
            let io = |error: NodeError| VaultError::Io(error.to_string());
            let (_, on_chain) = node
                .read_head(|state| {
                    for (record, version, commitment) in versions {
                        match ledger::record_version(state, record, *version)? {
                            Some(entry) if entry.commitment == *commitment => {}
                            _ => return Ok(false),
                        }
                    }
                    Ok(true)
                })
                .map_err(io)?;
            if matches!(on_chain, Ok(true)) {
                return Ok(Recovery::Keep);
            }
            let Some(tx) = tx.and_then(|bytes| Tx::from_bytes(bytes).ok()) else {
                return Ok(Recovery::RollBack);
            };
            match node.tx_status(&tx.id()).map_err(io)? {
                Some(TxStatus::Committed { .. }) | Some(TxStatus::Rejected { .. }) => {
                    // Decided, and its versions are not on chain: refused.
                    Ok(Recovery::RollBack)
                }
                _ => match node.resubmit_own(tx.clone()) {
                    Ok(id) => {
                        crate::lock(&resubmitted).push(id);
                        Ok(Recovery::Wait)
                    }
                    // Its nonce was taken by another transaction: it can never commit.
                    Err(_) => Ok(Recovery::RollBack),
                },
            }
        })?;
        let erased_through = watch::Sender::new(vault.erased_through()?);
        let records = Records {
            node,
            vault,
            erased_through,
        };
        let resubmitted = resubmitted
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (staged, tx) in waiting.into_iter().zip(resubmitted) {
            records.settle_later(staged, tx);
        }
        Ok(records)
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The organisation this node is custodian for.
    pub fn custodian(&self) -> Result<String, ServiceError> {
        match self.node.account(&self.node.key())?.0 {
            Ok(authority) => ledger::custodian_of(&authority, "hold records")
                .map_err(|error| ServiceError::Unavailable(error.to_string())),
            Err(reason) => Err(ServiceError::Unavailable(format!(
                "this node's key cannot act for an organisation: {reason}"
            ))),
        }
    }

    /// Who a requester is, or why they may not ask anything.
    pub fn authenticate(&self, key: &PublicKey) -> Result<Authority, ServiceError> {
        self.node.authenticate(key)
    }

    /// Stores resources as records of this node's organisation, each version on chain before
    /// this returns. The author must be a practitioner, validator or root key of that
    /// organisation. All or nothing for up to `RECORDS_PER_TX_MAX` resources; a larger import is
    /// committed in several transactions, one after another, each all or nothing: a refusal
    /// stops it there, and the answer says so.
    pub async fn import(
        &self,
        author: &PublicKey,
        items: Vec<ImportItem>,
    ) -> Result<Vec<Imported>, ServiceError> {
        self.check_author(author)?;
        // Patients first, so a later chunk finds the patient an earlier one created; the answer
        // comes back in the caller's order.
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|index| items[*index].patient_fhir_id.is_some());
        let mut slots: Vec<Option<ImportItem>> = items.into_iter().map(Some).collect();
        let items: Vec<ImportItem> = order
            .iter()
            .filter_map(|index| slots[*index].take())
            .collect();
        let mut imported = Vec::with_capacity(items.len());
        // One chunk at a time: a chunk is staged only once the one before it has committed, so
        // a refusal stops the import there and never strands a later chunk whose patient the
        // refused one created.
        for chunk in items.chunks(RECORDS_PER_TX_MAX) {
            let (staged, writes, tx) = self.stage_and_submit(author, chunk)?;
            let outcome = self.wait_committed(tx).await;
            if let Err(ServiceError::Unavailable(_)) = &outcome {
                // Still pending: settle when it is decided, not now.
                self.settle_later(staged.id, tx);
            } else {
                self.vault.settle(&staged.id, outcome.is_ok())?;
            }
            let height = outcome?;
            imported.extend(writes.into_iter().zip(&staged.versions).map(
                |((write, resource_type), staged)| Imported {
                    resource_type,
                    fhir_id: staged.fhir_id.clone(),
                    record: write.record,
                    patient: write.patient,
                    version: write.version,
                    height,
                },
            ));
        }
        let mut in_order: Vec<Option<Imported>> = vec![None; order.len()];
        for (index, record) in order.into_iter().zip(imported) {
            in_order[index] = Some(record);
        }
        Ok(in_order.into_iter().flatten().collect())
    }

    /// Refuses an author who does not write for this node's organisation.
    fn check_author(&self, author: &PublicKey) -> Result<(), ServiceError> {
        let custodian = self.custodian()?;
        let authority = self.authenticate(author)?;
        match ledger::author_org(&authority) {
            Some(org) if org == custodian => Ok(()),
            _ => Err(ServiceError::Forbidden(format!(
                "only a practitioner or the node of {custodian} may write its records"
            ))),
        }
    }

    #[allow(clippy::type_complexity)]
    fn stage_and_submit(
        &self,
        author: &PublicKey,
        chunk: &[ImportItem],
    ) -> Result<(medledger_vault::Staged, Vec<(RecordWrite, String)>, Hash), ServiceError> {
        let incoming: Vec<Incoming<'_>> = chunk
            .iter()
            .map(|item| Incoming {
                resource_type: &item.resource_type,
                fhir_id: item.fhir_id.as_deref(),
                patient: match &item.patient_fhir_id {
                    None => PatientRef::Own,
                    Some(id) => PatientRef::Fhir(id),
                },
                content: &item.content,
                file: item.file.as_deref(),
                expected_version: item.expected_version,
            })
            .collect();
        let chain_version = |record: &Hash| -> Result<u32, VaultError> {
            let (_, head) = self
                .node
                .read_head(|state| Ok(ledger::record(state, record)?))
                .map_err(|error| VaultError::Io(error.to_string()))?;
            Ok(head.ok().flatten().map_or(0, |head| head.version))
        };
        let staged = self.vault.stage(&incoming, OsRng, &chain_version)?;
        let writes: Vec<(RecordWrite, String)> = staged
            .versions
            .iter()
            .zip(chunk)
            .map(|(version, item)| {
                (
                    RecordWrite {
                        record: version.record,
                        patient: version.patient,
                        resource_type: item.resource_type.clone(),
                        category: item.category.clone(),
                        version: version.version,
                        commitment: version.commitment,
                        author: *author,
                    },
                    item.resource_type.clone(),
                )
            })
            .collect();
        let payload = RecordsOp::PutRecords {
            records: writes.iter().map(|(write, _)| write.clone()).collect(),
        };
        // The signed transaction is kept with the staged batch before it is submitted, so a
        // restart can submit it again and learn its fate from the chain.
        let submitted = self.node.submit_own_checked(payload.into(), |tx: &Tx| {
            self.vault
                .bind_tx(&staged.id, &tx.to_bytes())
                .map_err(ServiceError::from)
        });
        match submitted {
            Ok(tx) => Ok((staged, writes, tx)),
            Err(error) => {
                self.vault.settle(&staged.id, false)?;
                Err(error)
            }
        }
    }

    /// Settles a staged batch once its transaction is decided, in the background.
    fn settle_later(&self, staged: Hash, tx: Hash) {
        let records = self.clone();
        tokio::spawn(async move {
            loop {
                match records.node.wait_tx(&tx, Duration::from_secs(60)).await {
                    Ok(Some(TxStatus::Pending)) => continue,
                    Ok(Some(TxStatus::Committed { receipt })) => {
                        let committed = receipt.outcome == Outcome::Committed;
                        let _ = records.vault.settle(&staged, committed);
                        return;
                    }
                    // Refused or unknown (the node restarted): recovery settles it at start.
                    Ok(_) | Err(_) => {
                        let _ = records.vault.settle(&staged, false);
                        return;
                    }
                }
            }
        });
    }

    async fn wait_committed(&self, tx: Hash) -> Result<Height, ServiceError> {
        wait_committed(&self.node, tx).await
    }

    fn submit_one(&self, op: RecordsOp) -> Result<Hash, ServiceError> {
        self.node
            .submit_own_checked(op.into(), |_| Ok::<(), ServiceError>(()))
    }

    /// Records the access decision on chain, then decrypts what it allows. Records must be this
    /// node's and the patient's; the decision itself comes from the committed event.
    pub async fn read(&self, request: ReadRequest) -> Result<Access, ServiceError> {
        let event = self.decide(&request).await?;
        let mut released = Vec::new();
        for (record, rule) in &event.decisions {
            if !rule.allows() {
                continue;
            }
            // The version the decision saw, not one written since.
            let (_, head) = self.node.read_at(Some(event.height), |state| {
                let head =
                    ledger::record(state, record)?.ok_or(RecordsError::UnknownRecord(*record))?;
                let written = ledger::record_version(state, record, head.version)?
                    .ok_or(RecordsError::UnknownRecord(*record))?;
                Ok((head, written))
            })?;
            let (head, written): (RecordHead, RecordVersion) =
                head.map_err(|error| ServiceError::NotFound(error.to_string()))?;
            let meta = self
                .vault
                .record(record)?
                .ok_or_else(|| ServiceError::Gone(format!("record {record} is not held here")))?;
            let opened = self.vault.decrypt(record, head.version)?;
            let sealed = match &request.wrap_to {
                Some(recipient) => {
                    let aad = record_aad(record, head.version);
                    let wrapped = wrap_key_to(recipient, &opened.data_key, &aad, OsRng)
                        .map_err(|error| ServiceError::Invalid(error.to_string()))?;
                    Some((self.vault.sealed(record, head.version)?, wrapped))
                }
                None => None,
            };
            released.push(Released {
                record: *record,
                resource_type: head.resource_type,
                fhir_id: meta.fhir_id,
                version: head.version,
                last_updated_ms: written.time_ms,
                content: opened.content,
                sealed,
            });
        }
        Ok(Access { event, released })
    }

    /// Records an access decision on chain and reads it back: the committed event decides, and
    /// an erasure committed since the decision wins (nothing of the patient may leave). Every
    /// read of health data at this node goes through here, records' and device readings'.
    pub async fn decide(&self, request: &ReadRequest) -> Result<AccessEvent, ServiceError> {
        let mut records = request.records.clone();
        records.sort();
        records.dedup();
        let access = AccessRequest {
            request: request.request,
            reader: request.reader,
            patient: request.patient,
            records,
            purpose: request.purpose,
            break_glass: request.break_glass,
        };
        let tx = self.submit_one(RecordsOp::RecordAccess { access })?;
        let height = self.wait_committed(tx).await?;
        let (_, event) = self.node.read_head(|state| {
            let (patient, seq) = ledger::access_by_request(state, &request.request)?
                .ok_or(RecordsError::UnknownRecord(request.request))?;
            ledger::access_event(state, &patient, seq)?
                .ok_or(RecordsError::UnknownRecord(request.request).into())
        })?;
        let event = event.map_err(|_| {
            ServiceError::Unavailable(format!(
                "the access event committed at height {height} cannot be read back"
            ))
        })?;
        if event.tx != tx {
            return Err(ServiceError::Conflict(
                "another access event holds this request's id".into(),
            ));
        }
        // An erasure committed since the decision wins: nothing of the patient leaves the node.
        if event.decisions.iter().any(|(_, rule)| rule.allows())
            && self
                .patient(&event.patient)?
                .is_some_and(|entry| entry.erased_at.is_some())
        {
            return Err(ServiceError::Gone(format!(
                "patient {} was erased after this access was decided",
                event.patient
            )));
        }
        Ok(event)
    }

    /// Which of `records` (of `patient`) `reader` may see for `purpose` by the patient's consent
    /// at the head. Nothing is committed: a read decides again ([`Records::decide`]).
    pub fn preview(
        &self,
        reader: &PublicKey,
        patient: &Hash,
        records: Vec<Hash>,
        purpose: Purpose,
        break_glass: bool,
    ) -> Result<std::collections::BTreeSet<Hash>, ServiceError> {
        let custodian = self.custodian()?;
        let selection = Selection {
            reader: *reader,
            patient: *patient,
            resource_type: None,
            purpose,
            break_glass,
        };
        let (_, found) = self
            .node
            .read_head(|state| preview_decisions(state, &custodian, &selection, records))?;
        let decisions = found.map_err(|error| match error {
            medledger_ledger::TxError::Module(failure)
                if failure.code() == "reader_not_enrolled" =>
            {
                ServiceError::Unauthenticated(failure.to_string())
            }
            other => ServiceError::NotFound(other.to_string()),
        })?;
        Ok(decisions
            .into_iter()
            .filter(|(_, rule)| rule.allows())
            .map(|(record, _)| record)
            .collect())
    }

    /// The records of `patient` (of one type, or all) that `reader` may see for `purpose`, by
    /// the patient's consent at the head, each judged by `judge` (with its decrypted content
    /// when `with_content`); those it keeps come back sorted by its key, with how many consent
    /// withheld. Nothing is released: the caller reads the page it wants with [`Records::read`],
    /// whose committed event decides again.
    ///
    /// This is how a search is paged by what the reader may see: consent first, then the
    /// filters, then the page.
    pub fn select<K: Ord>(
        &self,
        selection: &Selection,
        with_content: bool,
        judge: impl Fn(&Candidate, Option<&[u8]>) -> Option<K>,
    ) -> Result<Selected, ServiceError> {
        let (hits, _) = self.vault.search(
            &selection.patient,
            selection.resource_type.as_deref(),
            0,
            usize::MAX,
        )?;
        let custodian = self.custodian()?;
        let (_, found) = self.node.read_head(|state| {
            let mut on_chain = Vec::with_capacity(hits.len());
            for hit in hits {
                if let Some(head) = ledger::record(state, &hit.record)? {
                    on_chain.push((hit, head));
                }
            }
            let records: Vec<Hash> = on_chain.iter().map(|(hit, _)| hit.record).collect();
            let decisions = preview_decisions(state, &custodian, selection, records)?;
            let allowed: std::collections::BTreeSet<Hash> = decisions
                .iter()
                .filter(|(_, rule)| rule.allows())
                .map(|(record, _)| *record)
                .collect();
            let withheld = decisions.len() - allowed.len();
            let mut permitted = Vec::with_capacity(allowed.len());
            for (hit, head) in on_chain {
                if !allowed.contains(&hit.record) {
                    continue;
                }
                let written = ledger::record_version(state, &hit.record, head.version)?
                    .ok_or(RecordsError::UnknownRecord(hit.record))?;
                permitted.push(Candidate {
                    hit,
                    version: head.version,
                    last_updated_ms: written.time_ms,
                });
            }
            Ok((permitted, withheld))
        })?;
        let (permitted, withheld) = found.map_err(|error| match error {
            medledger_ledger::TxError::Module(failure)
                if failure.code() == "reader_not_enrolled" =>
            {
                ServiceError::Unauthenticated(failure.to_string())
            }
            other => ServiceError::NotFound(other.to_string()),
        })?;
        let mut kept = Vec::with_capacity(permitted.len());
        for candidate in permitted {
            let content = if with_content {
                Some(
                    self.vault
                        .decrypt(&candidate.hit.record, candidate.version)?
                        .content,
                )
            } else {
                None
            };
            if let Some(key) = judge(&candidate, content.as_deref()) {
                kept.push((key, candidate));
            }
        }
        // Stable: equal keys keep the index order (type, then record id).
        kept.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok(Selected {
            candidates: kept.into_iter().map(|(_, candidate)| candidate).collect(),
            withheld,
        })
    }

    /// Stores a genomic file of a patient held here as a new `MolecularSequence` record: the
    /// bytes stream from `reader` into the vault (never whole in memory), then the record naming
    /// the file's digest is written like any other, so the commitment on chain covers the file.
    /// Refused whole (nothing kept) if the author may not write here, the patient is unknown,
    /// the bytes are not of the format, too many, or not the ones declared.
    pub async fn import_file(
        &self,
        author: &PublicKey,
        upload: FileUpload,
        reader: impl std::io::Read + Send + 'static,
    ) -> Result<Imported, ServiceError> {
        self.check_author(author)?;
        let vault = self.vault.clone();
        let (patient, format) = (upload.patient_fhir_id.clone(), upload.format);
        let draft = tokio::task::spawn_blocking(move || {
            let sniffed = Sniffed {
                inner: reader,
                format,
                head: Vec::new(),
                checked: false,
            };
            vault.write_file(&patient, sniffed, FILE_BYTES_MAX, OsRng)
        })
        .await
        .map_err(|error| ServiceError::Unavailable(error.to_string()))??;
        if let Some(declared) = upload.declared_sha256
            && declared != draft.sha256
        {
            return Err(ServiceError::Invalid(format!(
                "the body's SHA-256 is {}, not the {declared} the request declared; nothing was kept",
                draft.sha256
            )));
        }
        let mut random = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut random);
        let fhir_id = hex::encode(random);
        let file = GenomicFile {
            format: upload.format,
            bytes: draft.bytes,
            sha256: draft.sha256.to_hex(),
        };
        let content = medledger_fhir::sequence_resource(&fhir_id, &upload.patient_fhir_id, &file);
        let item = ImportItem {
            resource_type: "MolecularSequence".into(),
            fhir_id: Some(fhir_id),
            patient_fhir_id: Some(upload.patient_fhir_id),
            category: None,
            content: serde_json::to_vec(&content)
                .map_err(|error| ServiceError::Storage(error.to_string()))?,
            expected_version: Some(0),
            file: Some(Arc::new(draft)),
        };
        self.import(author, vec![item])
            .await?
            .pop()
            .ok_or_else(|| ServiceError::Storage("the file's record was not written".into()))
    }

    /// The file of a record version released to a reader, decrypted as it is read: `content` is
    /// the released version's content, whose digest the file must match to the last byte.
    pub fn open_file(
        &self,
        record: &Hash,
        version: u32,
        content: &[u8],
    ) -> Result<Option<(VaultFile, GenomicFile)>, ServiceError> {
        let Some(file) = serde_json::from_slice(content)
            .ok()
            .and_then(|resource| medledger_fhir::genomic_file(&resource))
        else {
            return Ok(None);
        };
        let expected = Hash::from_hex(&file.sha256)
            .map_err(|error| ServiceError::Storage(format!("a record's file digest: {error}")))?;
        Ok(self
            .vault
            .open_file(record, version, Some(expected))?
            .map(|opened| (opened, file)))
    }

    /// The content of a record version as stored here, for the author who just wrote it.
    pub fn stored_content(&self, record: &Hash, version: u32) -> Result<Vec<u8>, ServiceError> {
        Ok(self.vault.decrypt(record, version)?.content)
    }

    /// Keeps only the records whose first version is on chain: a record still being written is
    /// in the vault's index but not yet something a reader can be granted.
    pub fn committed(&self, records: Vec<Hit>) -> Result<Vec<Hit>, ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            let mut kept = Vec::with_capacity(records.len());
            for hit in records {
                if ledger::record(state, &hit.record)?.is_some() {
                    kept.push(hit);
                }
            }
            Ok(kept)
        })?;
        found.map_err(|error| ServiceError::NotFound(error.to_string()))
    }

    /// Records by patient (and type) held here: `(record, type, FHIR id)`, and the total.
    pub fn search(
        &self,
        patient: &Hash,
        resource_type: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Hit>, usize), ServiceError> {
        Ok(self.vault.search(patient, resource_type, offset, limit)?)
    }

    pub fn record_by_fhir(
        &self,
        resource_type: &str,
        fhir_id: &str,
    ) -> Result<Option<(Hash, Hash)>, ServiceError> {
        Ok(self
            .vault
            .record_by_fhir(resource_type, fhir_id)?
            .map(|(record, meta)| (record, meta.patient)))
    }

    /// The patient id an erased Patient's logical id had: the vault keeps a tombstone (a keyed
    /// hash of the id), so the audit trail stays reachable by it and reads answer 410.
    pub fn erased_patient_by_fhir(&self, fhir_id: &str) -> Result<Option<Hash>, ServiceError> {
        Ok(self.vault.erased_patient_by_fhir(fhir_id)?)
    }

    /// The patient id of an erased record's `Type/id`, from its tombstone.
    pub fn erased_record_by_fhir(
        &self,
        resource_type: &str,
        fhir_id: &str,
    ) -> Result<Option<Hash>, ServiceError> {
        Ok(self.vault.erased_record_by_fhir(resource_type, fhir_id)?)
    }

    pub fn patient_by_fhir(&self, fhir_id: &str) -> Result<Option<Hash>, ServiceError> {
        Ok(self.vault.patient_by_fhir(fhir_id)?)
    }

    /// `Type/id` of a record held here.
    pub fn fhir_reference(&self, record: &Hash) -> Result<Option<String>, ServiceError> {
        Ok(self
            .vault
            .record(record)?
            .map(|meta| format!("{}/{}", meta.resource_type, meta.fhir_id)))
    }

    /// The keys a patient's key has made their delegates.
    pub fn delegates(&self, patient_key: &PublicKey) -> Result<Vec<PublicKey>, ServiceError> {
        let (_, found) = self
            .node
            .read_head(|state| Ok(ledger::consent_book(state, patient_key)?.delegates))?;
        found.map_err(|error| ServiceError::NotFound(error.to_string()))
    }

    /// The FHIR logical id of a patient held here (its `Patient` resource).
    pub fn patient_fhir_id(&self, patient: &Hash) -> Result<Option<String>, ServiceError> {
        Ok(self.vault.patient(patient)?.map(|meta| meta.fhir_id))
    }

    /// Binds a patient id held here to the patient's enrolled key.
    pub async fn bind_patient(
        &self,
        patient: Hash,
        key: PublicKey,
    ) -> Result<Height, ServiceError> {
        let tx = self.submit_one(RecordsOp::BindPatient { patient, key })?;
        self.wait_committed(tx).await
    }

    /// Erases a patient on chain, then waits until this node has shredded its data.
    pub async fn erase(&self, patient: Hash) -> Result<Height, ServiceError> {
        let tx = self.submit_one(RecordsOp::ErasePatient { patient })?;
        let height = self.wait_committed(tx).await?;
        let mut erased = self.erased_through.subscribe();
        tokio::time::timeout(COMMIT_WAIT, erased.wait_for(|through| *through >= height))
            .await
            .map_err(|_| {
                ServiceError::Unavailable(format!(
                    "erasure committed at height {height}; shredding here has not finished yet"
                ))
            })?
            .map_err(|_| ServiceError::Unavailable("the erasure follower stopped".into()))?;
        Ok(height)
    }

    fn shred_through(&self, target: Height) -> Result<(), ServiceError> {
        let saved = self.vault.erased_through()?;
        // A node started from a snapshot holds no block below its base to walk.
        let mut height = (*self.erased_through.borrow())
            .max(saved)
            .max(self.node.base_height()?);
        let mut shredded = false;
        while height < target {
            height += 1;
            for (tx, receipt) in self.node.committed_txs(height)? {
                let applied = receipt.is_some_and(|r| r.outcome == Outcome::Committed);
                if let (Payload::Records(RecordsOp::ErasePatient { patient }), true) =
                    (&tx.body.payload, applied)
                {
                    let versions = self.vault.shred(patient)?;
                    shredded = true;
                    tracing::info!(height, versions, "erasure applied: patient data shredded");
                }
            }
            self.erased_through.send_replace(height);
        }
        // The mark is saved after an erasure and otherwise every `ERASURE_MARK_EVERY` heights:
        // a restart rescans at most that many blocks, and shredding again is harmless.
        if height > saved && (shredded || height - saved >= ERASURE_MARK_EVERY) {
            self.vault.set_erased_through(height)?;
        }
        Ok(())
    }

    /// The on-chain history of a record: every version with its commitment, author and block.
    pub fn provenance(
        &self,
        record: &Hash,
    ) -> Result<(RecordHead, Vec<RecordVersion>), ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            let head =
                ledger::record(state, record)?.ok_or(RecordsError::UnknownRecord(*record))?;
            let mut versions = Vec::with_capacity(head.version as usize);
            for version in 1..=head.version {
                if let Some(entry) = ledger::record_version(state, record, version)? {
                    versions.push(entry);
                }
            }
            Ok((head, versions))
        })?;
        found.map_err(|error| ServiceError::NotFound(error.to_string()))
    }

    /// A patient id's access events, oldest first: at most `limit` after skipping `offset`, and
    /// the total.
    pub fn access_log(
        &self,
        patient: &Hash,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<AccessEvent>, u64), ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            let total = ledger::access_count(state, patient)?;
            let mut events = Vec::new();
            let mut seq = offset + 1;
            while seq <= total && (events.len() as u64) < limit {
                if let Some(event) = ledger::access_event(state, patient, seq)? {
                    events.push(event);
                }
                seq += 1;
            }
            Ok((events, total))
        })?;
        found.map_err(|error| ServiceError::NotFound(error.to_string()))
    }

    /// The patient ids bound to a key, and the grants the key's patient has on record.
    pub fn patient_view(
        &self,
        key: &PublicKey,
    ) -> Result<(Vec<Hash>, Vec<ConsentEntry>, u64), ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            let ids = ledger::patient_ids(state, key)?;
            let grants = ledger::grants_of(state, key)?;
            let time = medledger_ledger::chain_head(state)?.time_ms;
            Ok((ids, grants, time))
        })?;
        found.map_err(|error| ServiceError::NotFound(error.to_string()))
    }

    /// A patient entry on chain.
    pub fn patient(
        &self,
        patient: &Hash,
    ) -> Result<Option<medledger_records::PatientEntry>, ServiceError> {
        let (_, found) = self
            .node
            .read_head(|state| Ok(ledger::patient(state, patient)?))?;
        found.map_err(|error| ServiceError::NotFound(error.to_string()))
    }

    /// Recomputes a record version's commitment from content: possible only while the patient's
    /// secret exists on this node.
    pub fn commitment(
        &self,
        patient: &Hash,
        record: &Hash,
        version: u32,
        content: &[u8],
    ) -> Result<Hash, ServiceError> {
        Ok(self.vault.commitment(patient, record, version, content)?)
    }
}

impl Service for Records {
    const FOLLOWING: Option<&'static str> = Some("applying erasures");

    /// Shreds, block by block, the patients erased on chain. A restart resumes from the last
    /// height done, so no erasure is ever skipped.
    fn follow(&self, head: Height) -> Result<(), ServiceError> {
        self.shred_through(head)
    }
}

/// The consent decision over `records` for a selection, at the head, without committing it.
fn preview_decisions(
    state: &dyn medledger_state::StateRead,
    custodian: &str,
    selection: &Selection,
    mut records: Vec<Hash>,
) -> Result<Vec<(Hash, medledger_records::AccessRule)>, medledger_ledger::TxError> {
    records.sort();
    records.dedup();
    let request = AccessRequest {
        request: Hash([0; 32]),
        reader: selection.reader,
        patient: selection.patient,
        records,
        purpose: selection.purpose,
        break_glass: selection.break_glass,
    };
    let time_ms = medledger_ledger::chain_head(state)?.time_ms;
    let (_, decisions) = ledger::decide(state, custodian, &request, time_ms)?;
    Ok(decisions)
}
