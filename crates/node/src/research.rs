//! The research service: what a custodian's node does for a researcher's data request.
//!
//! **Matching.** For every patient this node holds whose key is bound, the node reads the
//! patient's research consent at the head and keeps those the one rule
//! (`medledger_research::consent_permits`) allows; it records them on chain (`RecordMatches`),
//! where the ledger checks each again. Patients who did not match are named nowhere.
//!
//! **Release** (FHIR Bulk Data `$export` on the request's Group). The node takes the patients it
//! matched whose consent still permits the request, reads their records of the types both ask
//! for from the vault, de-identifies each (HIPAA Safe Harbor, `medledger_fhir::deidentify`, with
//! pseudonyms keyed per request), writes one NDJSON file per resource type, and seals each to the
//! researcher's X25519 key (HPKE-wrapped AES-256-GCM data key). It then commits `RecordRelease`
//! with the sealed files' hash, which puts the release in every released patient's research
//! access log, and only then offers the files for download.
//!
//! **Invariant:** nothing of a patient leaves the node before the release naming them is
//! committed, and only sealed to the request's recipient key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::io::{BufReader, BufWriter, Read, Write};

use medledger_crypto::envelope::{DataKey, NONCE_BYTES, WrappedKey, wrap_key_to};
use medledger_crypto::stream::{STREAM_NONCE_BYTES, SealingWriter};
use medledger_crypto::{Hash, PublicKey, Sha256Stream, sha256};
use medledger_fhir::{GenomicFile, GenomicFormat, Pseudonymizer};
use medledger_ledger::{Authority, Payload, TxError};
use medledger_research::{self as ledger, DataRequest, PATIENTS_PER_TX_MAX, ResearchOp};
use medledger_types::Height;
use medledger_vault::Vault;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Node;
use crate::service::{Service, ServiceError, wait_committed};

/// The most records one release reads per patient and type.
pub const RECORDS_PER_TYPE_MAX: usize = 10_000;
/// The most export jobs kept in memory; the oldest finished one is forgotten first.
pub const JOBS_MAX: usize = 256;

const SEAL_TAG: &[u8] = b"medledger/research-release/v1";
/// The first bytes of a released genomic file.
pub const SEALED_STREAM_MAGIC: &[u8; 17] = b"MLSEALED-STREAM1\n";
/// The longest header a sealed genomic file may declare.
pub const SEALED_STREAM_HEADER_BYTES_MAX: u32 = 4_096;
/// The resource type a released genomic file is listed under.
pub const GENOMIC_OUTPUT_TYPE: &str = "Binary";

/// What precedes the sealed bytes of a released genomic file (after [`SEALED_STREAM_MAGIC`] and
/// the header's length, u32 little-endian): its data key wrapped to the researcher, bound like an
/// NDJSON file's to the request and the file's name ([`SealedFile::aad`]). The content follows as
/// a STREAM of AES-256-GCM chunks (`medledger_crypto::stream`), so neither side holds it whole.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedStreamHeader {
    pub format: String,
    pub request: Hash,
    pub file: String,
    pub media_type: String,
    pub wrapped_key: WrappedKey,
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
}

impl SealedStreamHeader {
    /// Reads the header off a sealed genomic file, leaving `reader` at its sealed content.
    pub fn read_from(reader: &mut impl Read) -> std::io::Result<SealedStreamHeader> {
        let invalid =
            |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, reason.to_string());
        let mut magic = [0u8; 17];
        reader.read_exact(&mut magic)?;
        if &magic != SEALED_STREAM_MAGIC {
            return Err(invalid("not a sealed genomic file"));
        }
        let mut length = [0u8; 4];
        reader.read_exact(&mut length)?;
        let length = u32::from_le_bytes(length);
        if length > SEALED_STREAM_HEADER_BYTES_MAX {
            return Err(invalid("the sealed file's header is too long"));
        }
        let mut header = vec![0u8; length as usize];
        reader.read_exact(&mut header)?;
        serde_json::from_slice(&header).map_err(|error| invalid(&error.to_string()))
    }
}
/// One sealed NDJSON file of a release, as it is downloaded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SealedFile {
    pub format: String,
    pub request: Hash,
    pub resource_type: String,
    pub wrapped_key: WrappedKey,
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
    #[serde(with = "hex::serde")]
    pub ciphertext: Vec<u8>,
}

impl SealedFile {
    /// The associated data both sides bind a file's key and content to.
    pub fn aad(request: &Hash, resource_type: &str) -> Vec<u8> {
        let mut aad = SEAL_TAG.to_vec();
        aad.extend_from_slice(request.as_bytes());
        aad.extend_from_slice(resource_type.as_bytes());
        aad
    }
}

/// One output file of an export: its resource type, its name (`<type>.<part>`, one part per
/// release of up to `PATIENTS_PER_TX_MAX` patients) and how many resources it holds.
#[derive(Clone, Debug, Serialize)]
pub struct Output {
    pub resource_type: String,
    pub file: String,
    pub count: usize,
    /// `application/fhir+ndjson`, or a genomic file's own media type (the file is listed under
    /// `Binary` and named by its `MolecularSequence`'s `repository`).
    pub media_type: String,
}

/// How an export job stands.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Job {
    Running {
        request: Hash,
        researcher: PublicKey,
    },
    Done {
        request: Hash,
        researcher: PublicKey,
        height: Option<Height>,
        time_ms: u64,
        patients: usize,
        outputs: Vec<Output>,
        /// Why records of matched patients were left out (no identifiers: e.g. a genomic file
        /// that could not be de-identified).
        withheld: Vec<String>,
    },
    Failed {
        request: Hash,
        researcher: PublicKey,
        error: String,
    },
}

impl Job {
    pub fn researcher(&self) -> &PublicKey {
        match self {
            Job::Running { researcher, .. }
            | Job::Done { researcher, .. }
            | Job::Failed { researcher, .. } => researcher,
        }
    }
}

/// What matching did: how many of this node's patients were checked and how many matched.
#[derive(Clone, Debug, Serialize)]
pub struct MatchReport {
    pub request: Hash,
    pub checked: usize,
    pub matched: usize,
    pub already_matched: usize,
    pub height: Option<Height>,
}

/// The research service of one node.
#[derive(Clone)]
pub struct Research {
    node: Node,
    vault: Arc<Vault>,
    dir: PathBuf,
    jobs: Arc<Mutex<BTreeMap<Hash, Job>>>,
}

impl std::fmt::Debug for Research {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Research").finish_non_exhaustive()
    }
}

impl Service for Research {
    /// Nothing follows blocks here: matches and releases are read from the committed state.
    const FOLLOWING: Option<&'static str> = None;
}

fn refused(error: TxError) -> ServiceError {
    match error {
        TxError::State(error) => ServiceError::Node(error.into()),
        TxError::Module(failure) if failure.code() == "unknown_request" => {
            ServiceError::NotFound(failure.to_string())
        }
        other => ServiceError::Refused {
            code: other.code().into(),
            reason: other.to_string(),
        },
    }
}

fn storage(error: impl std::fmt::Display) -> ServiceError {
    ServiceError::Storage(format!("research exports: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Research {
    pub fn open(node: Node, vault: Arc<Vault>, dir: &Path) -> Result<Research, ServiceError> {
        // Files of exports from before a restart are not offered again (their jobs are gone).
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(storage)?;
        }
        std::fs::create_dir_all(dir).map_err(storage)?;
        Ok(Research {
            node,
            vault,
            dir: dir.to_path_buf(),
            jobs: Arc::default(),
        })
    }

    fn custodian(&self) -> Result<String, ServiceError> {
        match self.node.account(&self.node.key())?.0 {
            Ok(Authority::Member { org, .. } | Authority::Organisation { org }) => Ok(org),
            Err(reason) => Err(ServiceError::Unavailable(format!(
                "this node acts for no organisation: {reason}"
            ))),
        }
    }

    /// The request, open, at the head.
    pub fn request(&self, id: &Hash) -> Result<DataRequest, ServiceError> {
        let (_, found) = self.node.read_head(|state| {
            ledger::request(state, id)?
                .ok_or_else(|| ledger::ResearchError::UnknownRequest(id.to_string()).into())
        })?;
        found.map_err(refused)
    }

    /// The keys of the patients this node holds (bound to a key, not erased), with their ids here.
    fn held_patients(&self) -> Result<BTreeMap<PublicKey, Vec<Hash>>, ServiceError> {
        let custodian = self.custodian()?;
        let ids = self.vault.patients()?;
        let (_, held) = self.node.read_head(|state| {
            let mut held: BTreeMap<PublicKey, Vec<Hash>> = BTreeMap::new();
            for id in ids {
                if let Some(entry) = medledger_records::patient(state, &id)?
                    && entry.custodian == custodian
                    && entry.erased_at.is_none()
                    && let Some(key) = entry.key
                {
                    held.entry(key).or_default().push(id);
                }
            }
            Ok(held)
        })?;
        held.map_err(refused)
    }

    /// Matches the request against the research consent of every patient this node holds, and
    /// records those that match (in transactions of up to `PATIENTS_PER_TX_MAX`).
    pub async fn match_request(&self, id: Hash) -> Result<MatchReport, ServiceError> {
        let request = self.request(&id)?;
        if request.closed_at.is_some() {
            return Err(ServiceError::Refused {
                code: "request_closed".into(),
                reason: "the request is closed".into(),
            });
        }
        #[allow(clippy::disallowed_methods)]
        // The shell's clock, for the log only.
        let started = std::time::Instant::now();
        let held = self.held_patients()?;
        let checked = held.len();
        let (_, found) = self.node.read_head(|state| {
            let time_ms = medledger_module::chain_head(state)?.time_ms;
            let mut new = Vec::new();
            let mut already = 0;
            for key in held.keys() {
                let Some(consent) = ledger::consent(state, key)? else {
                    continue;
                };
                if ledger::consent_permits(&consent, &request, time_ms).is_err() {
                    continue;
                }
                if ledger::matched(state, &id, key)?.is_some() {
                    already += 1;
                } else {
                    new.push(*key);
                }
            }
            Ok((new, already))
        })?;
        let (new, already_matched) = found.map_err(refused)?;
        let judged = started.elapsed();
        // Every chunk is submitted before any is waited for, so they commit in as few blocks as
        // the producer cuts.
        let mut txs = Vec::new();
        for chunk in new.chunks(PATIENTS_PER_TX_MAX) {
            let op = ResearchOp::RecordMatches {
                request: id,
                patients: chunk.to_vec(),
            };
            let payload: Payload = op.into();
            txs.push(
                self.node
                    .submit_own_checked(payload, |_| Ok::<(), ServiceError>(()))?,
            );
        }
        let mut height = None;
        for tx in txs {
            height = Some(wait_committed(&self.node, tx).await?);
        }
        tracing::info!(
            checked,
            matched = new.len(),
            judged_ms = judged.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "research request matched"
        );
        Ok(MatchReport {
            request: id,
            checked,
            matched: new.len(),
            already_matched,
            height,
        })
    }

    async fn commit(&self, op: ResearchOp) -> Result<Height, ServiceError> {
        let payload: Payload = op.into();
        let tx = self
            .node
            .submit_own_checked(payload, |_| Ok::<(), ServiceError>(()))?;
        wait_committed(&self.node, tx).await
    }

    /// Starts an export of the request's cohort at this node for its researcher; returns the
    /// job's id, whose status [`Research::job`] reports.
    pub fn start_export(&self, researcher: PublicKey, id: Hash) -> Result<Hash, ServiceError> {
        let request = self.request(&id)?;
        if request.researcher != researcher {
            return Err(ServiceError::Forbidden(
                "only the request's researcher exports its cohort".into(),
            ));
        }
        if request.closed_at.is_some() {
            return Err(ServiceError::Refused {
                code: "request_closed".into(),
                reason: "the request is closed".into(),
            });
        }
        let mut job = [0u8; 32];
        OsRng.fill_bytes(&mut job);
        let job = Hash(job);
        {
            let mut jobs = lock(&self.jobs);
            while jobs.len() >= JOBS_MAX {
                let finished = jobs
                    .iter()
                    .find(|(_, job)| !matches!(job, Job::Running { .. }))
                    .map(|(id, _)| *id);
                match finished {
                    Some(old) => {
                        jobs.remove(&old);
                        let _ = std::fs::remove_dir_all(self.dir.join(old.to_hex()));
                    }
                    None => {
                        return Err(ServiceError::Unavailable(
                            "too many exports are running; try again later".into(),
                        ));
                    }
                }
            }
            jobs.insert(
                job,
                Job::Running {
                    request: id,
                    researcher,
                },
            );
        }
        let service = self.clone();
        tokio::spawn(async move {
            let outcome = service.export(job, request).await;
            let mut jobs = lock(&service.jobs);
            let entry = match outcome {
                Ok(done) => done,
                Err(error) => Job::Failed {
                    request: id,
                    researcher,
                    error: error.to_string(),
                },
            };
            jobs.insert(job, entry);
        });
        Ok(job)
    }

    /// An export job, for its researcher.
    pub fn job(&self, researcher: &PublicKey, job: &Hash) -> Result<Job, ServiceError> {
        let jobs = lock(&self.jobs);
        let found = jobs
            .get(job)
            .ok_or_else(|| ServiceError::NotFound(format!("no export job {job}")))?;
        if found.researcher() != researcher {
            return Err(ServiceError::Forbidden(
                "only the request's researcher reads its export".into(),
            ));
        }
        Ok(found.clone())
    }

    /// A finished export's sealed file (`<type>.<part>`), for its researcher, to be streamed:
    /// the open file, its length and its media type.
    pub fn file(
        &self,
        researcher: &PublicKey,
        job: &Hash,
        file: &str,
    ) -> Result<(std::fs::File, u64, &'static str), ServiceError> {
        match self.job(researcher, job)? {
            // Only a name the manifest lists is read, so no path comes from the caller.
            Job::Done { outputs, .. } if outputs.iter().any(|output| output.file == file) => {
                let genomic = outputs.iter().any(|output| {
                    output.file == file && output.resource_type == GENOMIC_OUTPUT_TYPE
                });
                let (name, media_type) = if genomic {
                    (file.to_string(), "application/octet-stream")
                } else {
                    (format!("{file}.json"), "application/json")
                };
                let opened =
                    std::fs::File::open(self.dir.join(job.to_hex()).join(name)).map_err(storage)?;
                let length = opened.metadata().map_err(storage)?.len();
                Ok((opened, length, media_type))
            }
            _ => Err(ServiceError::NotFound(format!(
                "export {job} has no file {file}"
            ))),
        }
    }

    async fn export(&self, job: Hash, request: DataRequest) -> Result<Job, ServiceError> {
        let custodian = self.custodian()?;
        let held = self.held_patients()?;
        let (_, found) = self.node.read_head(|state| {
            let time_ms = medledger_module::chain_head(state)?.time_ms;
            let mut chosen = Vec::new();
            for (key, ids) in &held {
                let Some(by) = ledger::matched(state, &request.id, key)? else {
                    continue;
                };
                if by.custodian != custodian {
                    continue;
                }
                // A revoked or lapsed consent stops the release, matched or not.
                if let Some(consent) = ledger::consent(state, key)?
                    && ledger::consent_permits(&consent, &request, time_ms).is_ok()
                {
                    chosen.push((
                        *key,
                        ids.clone(),
                        ledger::releasable_types(&consent, &request),
                    ));
                }
            }
            Ok((chosen, time_ms))
        })?;
        let (chosen, time_ms) = found.map_err(refused)?;
        let pseudonyms = Pseudonymizer::new(
            self.node
                .derive_secret(&format!("research/pseudonyms/{}", request.id)),
        );
        let year = medledger_fhir::time::date(time_ms)
            .get(..4)
            .and_then(|year| year.parse::<i32>().ok())
            .unwrap_or(1970);
        let dir = self.dir.join(job.to_hex());
        std::fs::create_dir_all(&dir).map_err(storage)?;
        let mut outputs = Vec::new();
        let mut height = None;
        // One release per `PATIENTS_PER_TX_MAX` patients: each part is read, sealed and committed
        // before its files are offered, and no more than that many patients are held in memory.
        let mut withheld = Vec::new();
        for (part, group) in chosen.chunks(PATIENTS_PER_TX_MAX).enumerate() {
            let vault = self.vault.clone();
            let (group_owned, pseudonyms) = (group.to_vec(), pseudonyms.clone());
            let sink = FileSink {
                dir: dir.clone(),
                job,
                part,
                request: request.clone(),
            };
            let collected = tokio::task::spawn_blocking(move || {
                collect(&vault, &group_owned, &pseudonyms, year, &sink)
            })
            .await
            .map_err(|error| ServiceError::Unavailable(error.to_string()))??;
            let Collected {
                ndjson: files,
                genomic,
                withheld: left_out,
            } = collected;
            withheld.extend(left_out);
            let mut sealed_files = Vec::new();
            let mut hashed = Vec::new();
            let mut resources = 0usize;
            for (resource_type, (count, ndjson)) in &files {
                let bytes = seal(&request, resource_type, ndjson)?;
                hashed.extend_from_slice(sha256(&bytes).as_bytes());
                let file = format!("{resource_type}.{part}");
                sealed_files.push((file.clone(), bytes));
                outputs.push(Output {
                    resource_type: resource_type.clone(),
                    file,
                    count: *count,
                    media_type: "application/fhir+ndjson".into(),
                });
                resources += count;
            }
            for (output, _, digest) in &genomic {
                hashed.extend_from_slice(digest.as_bytes());
                outputs.push(output.clone());
            }
            let committed = self
                .commit(ResearchOp::RecordRelease {
                    request: request.id,
                    patients: group.iter().map(|(key, _, _)| *key).collect(),
                    resources: u32::try_from(resources).unwrap_or(u32::MAX),
                    sealed: sha256(&hashed),
                })
                .await;
            // Genomic files were sealed to disk as they were read; they are offered (renamed to
            // their names) only once the release naming their patients is committed.
            for (output, pending, _) in &genomic {
                if committed.is_ok() {
                    std::fs::rename(pending, dir.join(&output.file)).map_err(storage)?;
                } else {
                    let _ = std::fs::remove_file(pending);
                }
            }
            height = Some(committed?);
            for (file, bytes) in sealed_files {
                std::fs::write(dir.join(format!("{file}.json")), bytes).map_err(storage)?;
            }
        }
        Ok(Job::Done {
            request: request.id,
            researcher: request.researcher,
            height,
            time_ms,
            patients: chosen.len(),
            outputs,
            withheld,
        })
    }
}

/// Seals one NDJSON file to the request's recipient: a fresh data key wrapped with HPKE, the
/// content under AES-256-GCM, both bound to the request and the resource type.
fn seal(
    request: &DataRequest,
    resource_type: &str,
    ndjson: &[u8],
) -> Result<Vec<u8>, ServiceError> {
    let data_key = DataKey::generate(OsRng);
    let aad = SealedFile::aad(&request.id, resource_type);
    let wrapped_key = wrap_key_to(&request.recipient, &data_key, &aad, OsRng)
        .map_err(|error| ServiceError::Invalid(format!("the request's recipient key: {error}")))?;
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    let ciphertext = data_key.seal(nonce, &aad, ndjson);
    let file = SealedFile {
        format: "medledger-sealed-ndjson/v1".into(),
        request: request.id,
        resource_type: resource_type.to_string(),
        wrapped_key,
        nonce: nonce.to_vec(),
        ciphertext,
    };
    serde_json::to_vec(&file).map_err(storage)
}

/// Where a part of a release writes its genomic files, and for whom.
struct FileSink {
    dir: PathBuf,
    job: Hash,
    part: usize,
    request: DataRequest,
}

/// What one part of a release read: NDJSON per type, genomic files sealed to disk under a
/// pending name (with their output entry and the SHA-256 of their sealed bytes), and what was
/// left out.
struct Collected {
    ndjson: BTreeMap<String, (usize, Vec<u8>)>,
    genomic: Vec<(Output, PathBuf, Hash)>,
    withheld: Vec<String>,
}

/// Reads, de-identifies and writes as NDJSON (one file per type) the records of each chosen
/// patient of the types their consent releases. A `MolecularSequence` naming a genomic file
/// brings the file along: de-identified as it streams and sealed to the researcher, its record
/// then pointing at the released file instead of the stored one.
fn collect(
    vault: &Vault,
    chosen: &[(PublicKey, Vec<Hash>, Vec<String>)],
    pseudonyms: &Pseudonymizer,
    year: i32,
    sink: &FileSink,
) -> Result<Collected, ServiceError> {
    let mut collected = Collected {
        ndjson: BTreeMap::new(),
        genomic: Vec::new(),
        withheld: Vec::new(),
    };
    let result = collect_into(vault, chosen, pseudonyms, year, sink, &mut collected);
    if result.is_err() {
        for (_, pending, _) in &collected.genomic {
            let _ = std::fs::remove_file(pending);
        }
    }
    result.map(|()| collected)
}

fn collect_into(
    vault: &Vault,
    chosen: &[(PublicKey, Vec<Hash>, Vec<String>)],
    pseudonyms: &Pseudonymizer,
    year: i32,
    sink: &FileSink,
    collected: &mut Collected,
) -> Result<(), ServiceError> {
    for (_, ids, types) in chosen {
        let types: BTreeSet<&String> = types.iter().collect();
        for id in ids {
            for resource_type in &types {
                let (hits, _) = vault.search(id, Some(resource_type), 0, RECORDS_PER_TYPE_MAX)?;
                for hit in hits {
                    let Some(meta) = vault.record(&hit.record)? else {
                        continue;
                    };
                    let opened = vault.decrypt(&hit.record, meta.version)?;
                    let resource: Value =
                        serde_json::from_slice(&opened.content).map_err(|error| {
                            storage(format!("a stored record is not JSON: {error}"))
                        })?;
                    let mut released = medledger_fhir::deidentify(&resource, pseudonyms, year)
                        .map_err(|error| storage(format!("de-identifying a record: {error}")))?;
                    if let Some(file) = medledger_fhir::genomic_file(&resource) {
                        let sample = match vault.patient(id)? {
                            Some(patient) => pseudonyms.pseudonym("Patient", &patient.fhir_id),
                            None => continue,
                        };
                        let name = format!(
                            "{GENOMIC_OUTPUT_TYPE}.{}.{}",
                            sink.part,
                            collected.genomic.len()
                        );
                        match release_file(
                            vault,
                            &hit.record,
                            meta.version,
                            &file,
                            &sample,
                            year,
                            sink,
                            &name,
                        )? {
                            Ok((output, pending, digest, released_file)) => {
                                collected.genomic.push((output, pending, digest));
                                released["extension"] =
                                    Value::Array(vec![medledger_fhir::genomic_file_extension(
                                        &released_file,
                                    )]);
                                released["repository"] = serde_json::json!([{
                                    "type": "directlink",
                                    "url": format!("bulkfiles/{}/{name}", sink.job),
                                    "name": released_file.format.media_type(),
                                }]);
                            }
                            Err(reason) => {
                                collected.withheld.push(reason);
                                continue;
                            }
                        }
                    }
                    let entry = collected
                        .ndjson
                        .entry((*resource_type).clone())
                        .or_default();
                    entry.0 += 1;
                    serde_json::to_writer(&mut entry.1, &released).map_err(storage)?;
                    entry.1.push(b'\n');
                }
            }
        }
    }
    Ok(())
}

/// Hashes and counts what passes through to the writer beneath.
struct Metered<W> {
    inner: W,
    hasher: Sha256Stream,
    bytes: u64,
}

impl<W: Write> Write for Metered<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(data)?;
        self.hasher.update(&data[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streams a stored genomic file through VCF de-identification (the samples renamed to the
/// patient's pseudonym) into a file sealed to the researcher, under a pending name. Answers the
/// output, the pending path, the SHA-256 of the sealed bytes and what the released record says
/// of the file; or, when the file cannot be de-identified, why it is withheld.
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
fn release_file(
    vault: &Vault,
    record: &Hash,
    version: u32,
    stored: &GenomicFile,
    sample: &str,
    year: i32,
    sink: &FileSink,
    name: &str,
) -> Result<Result<(Output, PathBuf, Hash, GenomicFile), String>, ServiceError> {
    let expected = Hash::from_hex(&stored.sha256)
        .map_err(|error| storage(format!("a record's file digest: {error}")))?;
    let source = vault
        .open_file(record, version, Some(expected))?
        .ok_or_else(|| storage("a genomic file named by its record is missing"))?;
    let data_key = DataKey::generate(OsRng);
    let mut nonce = [0u8; STREAM_NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    let aad = SealedFile::aad(&sink.request.id, name);
    let wrapped_key = wrap_key_to(&sink.request.recipient, &data_key, &aad, OsRng)
        .map_err(|error| ServiceError::Invalid(format!("the request's recipient key: {error}")))?;
    let header = serde_json::to_vec(&SealedStreamHeader {
        format: "medledger-sealed-stream/v1".into(),
        request: sink.request.id,
        file: name.to_string(),
        media_type: stored.format.media_type().into(),
        wrapped_key,
        nonce: nonce.to_vec(),
    })
    .map_err(storage)?;
    let pending = sink.dir.join(format!("{name}.pending"));
    let written = (|| -> Result<Result<(Hash, GenomicFile), String>, ServiceError> {
        let mut out = BufWriter::with_capacity(
            256 * 1024,
            std::fs::File::create(&pending).map_err(storage)?,
        );
        out.write_all(SEALED_STREAM_MAGIC)
            .and_then(|()| out.write_all(&(header.len() as u32).to_le_bytes()))
            .and_then(|()| out.write_all(&header))
            .map_err(storage)?;
        let sealed_hash = Metered {
            inner: out,
            hasher: Sha256Stream::default(),
            bytes: 0,
        };
        let mut plain = Metered {
            inner: SealingWriter::new(&data_key, nonce, &aad, sealed_hash),
            hasher: Sha256Stream::default(),
            bytes: 0,
        };
        let outcome = match stored.format {
            GenomicFormat::Vcf => {
                medledger_fhir::deidentify_vcf(BufReader::new(source), &mut plain, sample, year)
            }
            GenomicFormat::VcfGzip => {
                let mut compressed =
                    flate2::write::GzEncoder::new(&mut plain, flate2::Compression::default());
                let outcome = medledger_fhir::deidentify_vcf(
                    BufReader::new(flate2::read::MultiGzDecoder::new(source)),
                    &mut compressed,
                    sample,
                    year,
                );
                outcome.and_then(|stats| {
                    compressed
                        .finish()
                        .map(|_| stats)
                        .map_err(medledger_fhir::VcfError::Io)
                })
            }
        };
        if let Err(error) = outcome {
            return match error {
                // The stored file failed its own check, or the disk failed: not the file's fault.
                medledger_fhir::VcfError::Io(error) => Err(storage(error)),
                refused => Ok(Err(format!(
                    "a genomic file could not be de-identified, so it was not released: {refused}"
                ))),
            };
        }
        let released = GenomicFile {
            format: stored.format,
            bytes: plain.bytes,
            sha256: plain.hasher.finish().to_hex(),
        };
        let (sealed_hash, _) = plain.inner.finish().map_err(storage)?;
        let digest = sealed_hash.hasher.finish();
        let file = sealed_hash
            .inner
            .into_inner()
            .map_err(|error| storage(error.error()))?;
        file.sync_all().map_err(storage)?;
        Ok(Ok((digest, released)))
    })();
    match written {
        Ok(Ok((digest, released))) => Ok(Ok((
            Output {
                resource_type: GENOMIC_OUTPUT_TYPE.into(),
                file: name.to_string(),
                count: 1,
                media_type: released.format.media_type().into(),
            },
            pending,
            digest,
            released,
        ))),
        Ok(Err(reason)) => {
            let _ = std::fs::remove_file(&pending);
            Ok(Err(reason))
        }
        Err(error) => {
            let _ = std::fs::remove_file(&pending);
            Err(error)
        }
    }
}
