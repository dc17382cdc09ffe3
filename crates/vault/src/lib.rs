//! The node's off-chain store of health records: ciphertext, wrapped data keys, patient secrets
//! and the FHIR index (logical ids, and records by patient and type). It lives beside the ledger in
//! the node's data directory (`vault.redb` and `vault.slots`) and never leaves the node.
//!
//! Writing is two-phase, because a record exists only once its version is on chain:
//! [`Vault::stage`] encrypts a batch and stores it durably with a pending marker; the caller puts
//! the versions on chain and then calls [`Vault::settle`], which keeps them or removes every trace.
//! A crash in between is settled by [`Vault::recover`] at the next start, from what the chain holds.
//!
//! **Invariant:** a record's plaintext is stored only encrypted, under a data key stored only
//! wrapped under its patient's secret; the secret is stored only in [`slots::KeySlots`], which
//! overwrites it on erasure. So erasure is one overwrite, after which no byte on this node can be
//! decrypted or linked to its on-chain commitment.
//! **Invariant:** while a batch is staged, its records are in flight and no other batch may write
//! them, so a version number is never handed out twice.

pub mod slots;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::Hash;
use medledger_crypto::envelope::{DataKey, NONCE_BYTES, PatientSecret};
use rand_core::{CryptoRng, RngCore};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::slots::KeySlots;

/// Patient id → `PatientMeta`.
const PATIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("patients");
/// The FHIR logical id of a patient's `Patient` resource → patient id.
const PATIENT_BY_FHIR: TableDefinition<&str, &[u8]> = TableDefinition::new("patient_by_fhir");
/// Record id → `RecordMeta`.
const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
/// `Type/id` → record id.
const RECORD_BY_FHIR: TableDefinition<&str, &[u8]> = TableDefinition::new("record_by_fhir");
/// patient id ‖ type ‖ 0 ‖ record id → FHIR logical id: the search index.
const BY_PATIENT: TableDefinition<&[u8], &str> = TableDefinition::new("by_patient");
/// (record id, version) → `Blob`.
const BLOBS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("blobs");
/// Staging id → `Pending`.
const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// Counters such as the height through which erasures were applied.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_ERASED_THROUGH: &str = "erased_through";

/// The most versions one staged batch may hold.
pub const STAGE_ITEMS_MAX: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("vault storage: {0}")]
    Io(String),
    #[error("vault is corrupt: {0}")]
    Corrupt(String),
    #[error("record {0} is being written by another request; retry when it has committed")]
    Busy(String),
    #[error("{0}")]
    Invalid(String),
    #[error("patient {0} was erased; its data can no longer be read")]
    Erased(Hash),
    #[error("no such record version")]
    NotFound,
}

fn db_error(error: impl std::fmt::Display) -> VaultError {
    VaultError::Io(error.to_string())
}

fn decode<T: BorshDeserialize>(what: &str, bytes: &[u8]) -> Result<T, VaultError> {
    borsh::from_slice(bytes).map_err(|error| VaultError::Corrupt(format!("{what}: {error}")))
}

fn encode<T: BorshSerialize>(value: &T) -> Vec<u8> {
    borsh::to_vec(value).expect("encoding into memory never fails")
}

fn hash_from(bytes: &[u8]) -> Result<Hash, VaultError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| VaultError::Corrupt("an id is not 32 bytes".into()))?;
    Ok(Hash(array))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PatientMeta {
    pub slot: u64,
    pub fhir_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct RecordMeta {
    pub patient: Hash,
    pub resource_type: String,
    pub fhir_id: String,
    /// The latest version stored here (staged or on chain).
    pub version: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
struct Blob {
    nonce: [u8; NONCE_BYTES],
    key_nonce: [u8; NONCE_BYTES],
    wrapped_key: Vec<u8>,
    ciphertext: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
struct Pending {
    /// (record, version, commitment) of every staged version.
    versions: Vec<(Hash, u32, Hash)>,
    new_patients: Vec<Hash>,
    /// The signed transaction that puts the versions on chain, once it exists: after a crash it
    /// is submitted again, so the batch is decided by the chain rather than guessed.
    tx: Option<Vec<u8>>,
}

/// What to do with a batch a crash left pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Its versions are on chain.
    Keep,
    /// It can never reach the chain.
    RollBack,
    /// Its transaction may still commit; settle it once decided.
    Wait,
}

/// Which patient an incoming resource belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatientRef<'a> {
    /// The resource is the patient's own `Patient` resource.
    Own,
    /// The FHIR logical id of the patient's `Patient` resource, stored or in the same batch.
    Fhir(&'a str),
}

/// A resource to store as a new record or a new version. `Debug` leaves out the content.
#[derive(Clone)]
pub struct Incoming<'a> {
    pub resource_type: &'a str,
    /// The logical id; a fresh one is assigned when `None`.
    pub fhir_id: Option<&'a str>,
    pub patient: PatientRef<'a>,
    pub content: &'a [u8],
}

/// A search result: a record held here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub record: Hash,
    pub resource_type: String,
    pub fhir_id: String,
}

impl std::fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("resource_type", &self.resource_type)
            .field("content_bytes", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// One staged version: what the chain must record for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedVersion {
    pub record: Hash,
    pub patient: Hash,
    pub fhir_id: String,
    pub version: u32,
    pub commitment: Hash,
}

/// A staged batch, to be settled once its versions are on chain or refused.
#[derive(Debug)]
pub struct Staged {
    pub id: Hash,
    pub versions: Vec<StagedVersion>,
}

/// A decrypted record version, and the key it was under (for wrapping to a reader). `Debug`
/// leaves out the content.
pub struct Opened {
    pub content: Vec<u8>,
    pub data_key: DataKey,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("content_bytes", &self.content.len())
            .finish_non_exhaustive()
    }
}

/// A record version as stored: ciphertext and nonce, for a reader who receives the key wrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_BYTES],
    pub ciphertext: Vec<u8>,
}

/// The associated data binding a record version's ciphertext and wrapped key to it.
pub fn record_aad(record: &Hash, version: u32) -> Vec<u8> {
    let mut aad = b"medledger/record/v1".to_vec();
    aad.extend_from_slice(&record.0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn search_key(patient: &Hash, resource_type: &str, record: &Hash) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + resource_type.len() + 1 + 32);
    key.extend_from_slice(&patient.0);
    key.extend_from_slice(resource_type.as_bytes());
    key.push(0);
    key.extend_from_slice(&record.0);
    key
}

#[derive(Debug)]
pub struct Vault {
    db: Database,
    slots: Mutex<KeySlots>,
    /// Records in a staged, unsettled batch.
    in_flight: Mutex<BTreeSet<Hash>>,
    /// Serialises staging, so two batches never plan the same version or create the same patient.
    staging: Mutex<()>,
}

impl Vault {
    /// Opens (or creates) the vault in `dir`.
    pub fn open(dir: &Path) -> Result<Vault, VaultError> {
        use std::os::unix::fs::PermissionsExt;
        // The vault holds ciphertext, wrapped keys and an index of FHIR ids: its owner only.
        std::fs::create_dir_all(dir).map_err(db_error)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(db_error)?;
        let path = dir.join("vault.redb");
        let db = Database::builder()
            .set_cache_size(128 * 1024 * 1024)
            .create(&path)
            .map_err(db_error)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(db_error)?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            txn.open_table(PATIENTS).map_err(db_error)?;
            txn.open_table(PATIENT_BY_FHIR).map_err(db_error)?;
            txn.open_table(RECORDS).map_err(db_error)?;
            txn.open_table(RECORD_BY_FHIR).map_err(db_error)?;
            txn.open_table(BY_PATIENT).map_err(db_error)?;
            txn.open_table(BLOBS).map_err(db_error)?;
            txn.open_table(PENDING).map_err(db_error)?;
            txn.open_table(META).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        let vault = Vault {
            db,
            slots: Mutex::new(KeySlots::open(&dir.join("vault.slots"))?),
            in_flight: Mutex::new(BTreeSet::new()),
            staging: Mutex::new(()),
        };
        vault.destroy_orphaned_secrets()?;
        Ok(vault)
    }

    /// Destroys secrets no patient entry refers to: left by a crash between writing a new
    /// patient's secret and committing the patient, or between removing a patient and zeroing
    /// its slot. A secret must never outlive its patient.
    fn destroy_orphaned_secrets(&self) -> Result<usize, VaultError> {
        let mut slots = lock(&self.slots);
        let mut destroyed = 0;
        for (index, patient) in slots.owners()? {
            let kept = self
                .patient(&patient)?
                .is_some_and(|meta| meta.slot == index);
            if !kept {
                slots.destroy(index, &patient)?;
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    pub fn patient_by_fhir(&self, fhir_id: &str) -> Result<Option<Hash>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(PATIENT_BY_FHIR).map_err(db_error)?;
        table
            .get(fhir_id)
            .map_err(db_error)?
            .map(|value| hash_from(value.value()))
            .transpose()
    }

    pub fn patient(&self, patient: &Hash) -> Result<Option<PatientMeta>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(PATIENTS).map_err(db_error)?;
        table
            .get(patient.0.as_slice())
            .map_err(db_error)?
            .map(|value| decode("patient", value.value()))
            .transpose()
    }

    pub fn record_by_fhir(
        &self,
        resource_type: &str,
        fhir_id: &str,
    ) -> Result<Option<(Hash, RecordMeta)>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let by_fhir = txn.open_table(RECORD_BY_FHIR).map_err(db_error)?;
        let Some(value) = by_fhir
            .get(format!("{resource_type}/{fhir_id}").as_str())
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let record = hash_from(value.value())?;
        let records = txn.open_table(RECORDS).map_err(db_error)?;
        let meta = records
            .get(record.0.as_slice())
            .map_err(db_error)?
            .ok_or_else(|| VaultError::Corrupt(format!("indexed record {record} is missing")))?;
        Ok(Some((record, decode("record", meta.value())?)))
    }

    pub fn record(&self, record: &Hash) -> Result<Option<RecordMeta>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(RECORDS).map_err(db_error)?;
        table
            .get(record.0.as_slice())
            .map_err(db_error)?
            .map(|value| decode("record", value.value()))
            .transpose()
    }

    /// A patient's records, optionally of one type: `(record id, type, FHIR logical id)` in index
    /// order (as [`Hit`]s), at most `limit` after skipping `offset`, and the total count.
    pub fn search(
        &self,
        patient: &Hash,
        resource_type: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Hit>, usize), VaultError> {
        let mut prefix = patient.0.to_vec();
        if let Some(name) = resource_type {
            prefix.extend_from_slice(name.as_bytes());
            prefix.push(0);
        }
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(BY_PATIENT).map_err(db_error)?;
        let mut found = Vec::new();
        let mut total = 0;
        for row in table.range(prefix.as_slice()..).map_err(db_error)? {
            let (key, value) = row.map_err(db_error)?;
            let key = key.value();
            if !key.starts_with(&prefix) {
                break;
            }
            total += 1;
            if total <= offset || found.len() >= limit {
                continue;
            }
            let rest = &key[32..];
            let split = rest.len().saturating_sub(33);
            let resource_type = String::from_utf8_lossy(&rest[..split]).into_owned();
            let record = hash_from(&rest[split + 1..])?;
            found.push(Hit {
                record,
                resource_type,
                fhir_id: value.value().to_string(),
            });
        }
        Ok((found, total))
    }

    fn secret(&self, patient: &Hash) -> Result<PatientSecret, VaultError> {
        let meta = self.patient(patient)?.ok_or(VaultError::Erased(*patient))?;
        lock(&self.slots)
            .read(meta.slot, patient)?
            .ok_or(VaultError::Erased(*patient))
    }

    /// Encrypts and stores a batch durably, pending. Refuses the whole batch (storing nothing) if
    /// a resource names an unknown patient or a record another batch is writing.
    ///
    /// `chain_version(record)` is the record's version on chain: a new version follows the higher
    /// of it and the vault's own, so a version the chain holds is never handed out again.
    pub fn stage(
        &self,
        items: &[Incoming<'_>],
        mut rng: impl RngCore + CryptoRng,
        chain_version: &dyn Fn(&Hash) -> Result<u32, VaultError>,
    ) -> Result<Staged, VaultError> {
        if items.len() > STAGE_ITEMS_MAX {
            return Err(VaultError::Invalid(format!(
                "a batch holds at most {STAGE_ITEMS_MAX} resources"
            )));
        }
        let _staging = lock(&self.staging);
        let mut random = [0u8; 32];
        rng.fill_bytes(&mut random);
        let staged_id = Hash(random);
        // Plan: patients first (a batch may create the patient its other resources name).
        let mut patients: Vec<(String, Hash, PatientSecret, bool)> = Vec::new();
        for item in items {
            if item.patient == PatientRef::Own {
                let fhir_id = item.fhir_id.ok_or_else(|| {
                    VaultError::Invalid("a Patient resource needs a logical id".into())
                })?;
                if patients.iter().any(|(id, ..)| id == fhir_id) {
                    continue;
                }
                match self.patient_by_fhir(fhir_id)? {
                    Some(patient) => {
                        patients.push((fhir_id.into(), patient, self.secret(&patient)?, false))
                    }
                    None => {
                        rng.fill_bytes(&mut random);
                        let secret = PatientSecret::generate(&mut rng);
                        patients.push((fhir_id.into(), Hash(random), secret, true));
                    }
                }
            }
        }
        let mut planned: Vec<(StagedVersion, &str, Blob)> = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        let mut seen_ids = BTreeSet::new();
        for item in items {
            let patient_fhir = match item.patient {
                PatientRef::Own => item.fhir_id.unwrap_or_default(),
                PatientRef::Fhir(id) => id,
            };
            let (patient, secret) = match patients.iter().find(|(id, ..)| id == patient_fhir) {
                Some((_, patient, secret, _)) => (*patient, secret.clone()),
                None => {
                    let patient = self.patient_by_fhir(patient_fhir)?.ok_or_else(|| {
                        VaultError::Invalid(format!("no patient Patient/{patient_fhir} is stored"))
                    })?;
                    let secret = self.secret(&patient)?;
                    patients.push((patient_fhir.into(), patient, secret.clone(), false));
                    (patient, secret)
                }
            };
            let existing = match item.fhir_id {
                Some(id) => self.record_by_fhir(item.resource_type, id)?,
                None => None,
            };
            let (record, fhir_id, version) = match existing {
                Some((record, meta)) => {
                    if meta.patient != patient {
                        return Err(VaultError::Invalid(format!(
                            "{}/{} belongs to another patient",
                            item.resource_type, meta.fhir_id
                        )));
                    }
                    let version = meta.version.max(chain_version(&record)?) + 1;
                    (record, meta.fhir_id, version)
                }
                None => {
                    rng.fill_bytes(&mut random);
                    let record = Hash(random);
                    let fhir_id = match item.fhir_id {
                        Some(id) => id.to_string(),
                        // Drawn apart from the record id, so the id an EHR sees does not name
                        // the record on chain.
                        None => {
                            rng.fill_bytes(&mut random);
                            random[..16].iter().map(|b| format!("{b:02x}")).collect()
                        }
                    };
                    (record, fhir_id, 1)
                }
            };
            if !seen.insert(record) || !seen_ids.insert((item.resource_type, fhir_id.clone())) {
                return Err(VaultError::Invalid(format!(
                    "{}/{fhir_id} appears twice in one batch",
                    item.resource_type
                )));
            }
            let aad = record_aad(&record, version);
            let data_key = DataKey::generate(&mut rng);
            let mut nonce = [0u8; NONCE_BYTES];
            let mut key_nonce = [0u8; NONCE_BYTES];
            rng.fill_bytes(&mut nonce);
            rng.fill_bytes(&mut key_nonce);
            let blob = Blob {
                nonce,
                key_nonce,
                wrapped_key: secret.wrap(&data_key, key_nonce, &aad),
                ciphertext: data_key.seal(nonce, &aad, item.content),
            };
            let commitment = secret.commitment(&record, version, item.content);
            planned.push((
                StagedVersion {
                    record,
                    patient,
                    fhir_id,
                    version,
                    commitment,
                },
                item.resource_type,
                blob,
            ));
        }
        // The batch's records, and the patients it creates, are in flight until it settles: a
        // batch that uses a patient another batch is creating waits, because a refusal of that
        // batch destroys the patient's secret.
        let locked: Vec<Hash> = planned
            .iter()
            .map(|(v, ..)| v.record)
            .chain(patients.iter().filter(|p| p.3).map(|p| p.1))
            .collect();
        {
            let mut in_flight = lock(&self.in_flight);
            if let Some((busy, ..)) = planned.iter().find(|(v, ..)| in_flight.contains(&v.record)) {
                return Err(VaultError::Busy(busy.fhir_id.clone()));
            }
            if let Some((fhir_id, ..)) = patients.iter().find(|p| in_flight.contains(&p.1)) {
                return Err(VaultError::Busy(format!("Patient/{fhir_id}")));
            }
            in_flight.extend(locked.iter().copied());
        }
        let result = self.write_staged(staged_id, &patients, &planned);
        if result.is_err() {
            let mut in_flight = lock(&self.in_flight);
            for id in &locked {
                in_flight.remove(id);
            }
        }
        result?;
        Ok(Staged {
            id: staged_id,
            versions: planned.into_iter().map(|(version, ..)| version).collect(),
        })
    }

    fn write_staged(
        &self,
        staged_id: Hash,
        patients: &[(String, Hash, PatientSecret, bool)],
        planned: &[(StagedVersion, &str, Blob)],
    ) -> Result<(), VaultError> {
        // New secrets are durable before anything refers to them.
        let mut new_slots = Vec::new();
        for (fhir_id, patient, secret, new) in patients {
            if *new {
                let slot = lock(&self.slots).allocate(patient, secret)?;
                new_slots.push((fhir_id, patient, slot));
            }
        }
        let written = (|| {
            let mut txn = self.db.begin_write().map_err(db_error)?;
            txn.set_durability(Durability::Immediate)
                .map_err(db_error)?;
            {
                let mut patients_table = txn.open_table(PATIENTS).map_err(db_error)?;
                let mut patient_by_fhir = txn.open_table(PATIENT_BY_FHIR).map_err(db_error)?;
                for (fhir_id, patient, slot) in &new_slots {
                    let meta = PatientMeta {
                        slot: *slot,
                        fhir_id: fhir_id.to_string(),
                    };
                    patients_table
                        .insert(patient.0.as_slice(), encode(&meta).as_slice())
                        .map_err(db_error)?;
                    patient_by_fhir
                        .insert(fhir_id.as_str(), patient.0.as_slice())
                        .map_err(db_error)?;
                }
                let mut records = txn.open_table(RECORDS).map_err(db_error)?;
                let mut by_fhir = txn.open_table(RECORD_BY_FHIR).map_err(db_error)?;
                let mut by_patient = txn.open_table(BY_PATIENT).map_err(db_error)?;
                let mut blobs = txn.open_table(BLOBS).map_err(db_error)?;
                for (version, resource_type, blob) in planned {
                    let meta = RecordMeta {
                        patient: version.patient,
                        resource_type: resource_type.to_string(),
                        fhir_id: version.fhir_id.clone(),
                        version: version.version,
                    };
                    records
                        .insert(version.record.0.as_slice(), encode(&meta).as_slice())
                        .map_err(db_error)?;
                    by_fhir
                        .insert(
                            format!("{resource_type}/{}", version.fhir_id).as_str(),
                            version.record.0.as_slice(),
                        )
                        .map_err(db_error)?;
                    by_patient
                        .insert(
                            search_key(&version.patient, resource_type, &version.record).as_slice(),
                            version.fhir_id.as_str(),
                        )
                        .map_err(db_error)?;
                    blobs
                        .insert(
                            (version.record.0.as_slice(), version.version),
                            encode(blob).as_slice(),
                        )
                        .map_err(db_error)?;
                }
                let pending = Pending {
                    versions: planned
                        .iter()
                        .map(|(v, ..)| (v.record, v.version, v.commitment))
                        .collect(),
                    new_patients: new_slots.iter().map(|(_, patient, _)| **patient).collect(),
                    tx: None,
                };
                let mut pending_table = txn.open_table(PENDING).map_err(db_error)?;
                pending_table
                    .insert(staged_id.0.as_slice(), encode(&pending).as_slice())
                    .map_err(db_error)?;
            }
            txn.commit().map_err(db_error)
        })();
        if written.is_err() {
            let mut slots = lock(&self.slots);
            for (_, patient, slot) in &new_slots {
                let _ = slots.destroy(*slot, patient);
            }
        }
        written
    }

    /// Keeps a staged batch (its versions are on chain) or removes every trace of it.
    pub fn settle(&self, staged: &Hash, committed: bool) -> Result<(), VaultError> {
        let pending: Pending = {
            let txn = self.db.begin_read().map_err(db_error)?;
            let table = txn.open_table(PENDING).map_err(db_error)?;
            let Some(value) = table.get(staged.0.as_slice()).map_err(db_error)? else {
                return Ok(());
            };
            decode("pending batch", value.value())?
        };
        let result = if committed {
            self.forget_pending(staged)
        } else {
            self.roll_back(staged, &pending)
        };
        let mut in_flight = lock(&self.in_flight);
        for (record, ..) in &pending.versions {
            in_flight.remove(record);
        }
        for patient in &pending.new_patients {
            in_flight.remove(patient);
        }
        result
    }

    fn forget_pending(&self, staged: &Hash) -> Result<(), VaultError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(PENDING)
            .map_err(db_error)?
            .remove(staged.0.as_slice())
            .map_err(db_error)?;
        txn.commit().map_err(db_error)
    }

    fn roll_back(&self, staged: &Hash, pending: &Pending) -> Result<(), VaultError> {
        let mut slots_to_destroy = Vec::new();
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error)?;
        {
            let mut records = txn.open_table(RECORDS).map_err(db_error)?;
            let mut by_fhir = txn.open_table(RECORD_BY_FHIR).map_err(db_error)?;
            let mut by_patient = txn.open_table(BY_PATIENT).map_err(db_error)?;
            let mut blobs = txn.open_table(BLOBS).map_err(db_error)?;
            for (record, version, _) in &pending.versions {
                blobs
                    .remove((record.0.as_slice(), *version))
                    .map_err(db_error)?;
                let meta = match records.get(record.0.as_slice()).map_err(db_error)? {
                    Some(value) => decode::<RecordMeta>("record", value.value())?,
                    None => continue,
                };
                if *version > 1 {
                    let previous = RecordMeta {
                        version: version - 1,
                        ..meta
                    };
                    records
                        .insert(record.0.as_slice(), encode(&previous).as_slice())
                        .map_err(db_error)?;
                } else {
                    records.remove(record.0.as_slice()).map_err(db_error)?;
                    by_fhir
                        .remove(format!("{}/{}", meta.resource_type, meta.fhir_id).as_str())
                        .map_err(db_error)?;
                    by_patient
                        .remove(search_key(&meta.patient, &meta.resource_type, record).as_slice())
                        .map_err(db_error)?;
                }
            }
            let mut patients = txn.open_table(PATIENTS).map_err(db_error)?;
            let mut patient_by_fhir = txn.open_table(PATIENT_BY_FHIR).map_err(db_error)?;
            for patient in &pending.new_patients {
                if let Some(value) = patients.remove(patient.0.as_slice()).map_err(db_error)? {
                    let meta: PatientMeta = decode("patient", value.value())?;
                    patient_by_fhir
                        .remove(meta.fhir_id.as_str())
                        .map_err(db_error)?;
                    slots_to_destroy.push((meta.slot, *patient));
                }
            }
            txn.open_table(PENDING)
                .map_err(db_error)?
                .remove(staged.0.as_slice())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        let mut slots = lock(&self.slots);
        for (slot, patient) in slots_to_destroy {
            slots.destroy(slot, &patient)?;
        }
        Ok(())
    }

    /// Records, durably, the signed transaction of a staged batch, before it is submitted.
    pub fn bind_tx(&self, staged: &Hash, tx: &[u8]) -> Result<(), VaultError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut table = txn.open_table(PENDING).map_err(db_error)?;
            let mut pending: Pending = {
                let value = table
                    .get(staged.0.as_slice())
                    .map_err(db_error)?
                    .ok_or_else(|| VaultError::Invalid("no such staged batch".into()))?;
                decode("pending batch", value.value())?
            };
            pending.tx = Some(tx.to_vec());
            table
                .insert(staged.0.as_slice(), encode(&pending).as_slice())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    /// Settles every batch a crash left pending, as `decide` says from the chain: keep it, roll
    /// it back, or wait (its transaction was submitted again and is not decided yet). A waiting
    /// batch stays in flight; its id is returned for the caller to settle once decided.
    pub fn recover(
        &self,
        decide: impl Fn(&[(Hash, u32, Hash)], Option<&[u8]>) -> Result<Recovery, VaultError>,
    ) -> Result<Vec<Hash>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(PENDING).map_err(db_error)?;
        let mut batches = Vec::new();
        for row in table.iter().map_err(db_error)? {
            let (key, value) = row.map_err(db_error)?;
            let pending: Pending = decode("pending batch", value.value())?;
            batches.push((hash_from(key.value())?, pending));
        }
        drop(table);
        drop(txn);
        let mut waiting = Vec::new();
        for (staged, pending) in batches {
            match decide(&pending.versions, pending.tx.as_deref())? {
                Recovery::Keep => self.forget_pending(&staged)?,
                Recovery::RollBack => self.roll_back(&staged, &pending)?,
                Recovery::Wait => {
                    let mut in_flight = lock(&self.in_flight);
                    in_flight.extend(pending.versions.iter().map(|(record, ..)| *record));
                    in_flight.extend(pending.new_patients.iter().copied());
                    waiting.push(staged);
                }
            }
        }
        Ok(waiting)
    }

    /// Decrypts one record version.
    pub fn decrypt(&self, record: &Hash, version: u32) -> Result<Opened, VaultError> {
        let meta = self.record(record)?.ok_or(VaultError::NotFound)?;
        let blob = self.blob(record, version)?;
        let secret = self.secret(&meta.patient)?;
        let aad = record_aad(record, version);
        let data_key = secret
            .unwrap(&blob.wrapped_key, blob.key_nonce, &aad)
            .map_err(|error| VaultError::Corrupt(format!("record {record}: {error}")))?;
        let content = data_key
            .open(blob.nonce, &aad, &blob.ciphertext)
            .map_err(|error| VaultError::Corrupt(format!("record {record}: {error}")))?;
        Ok(Opened { content, data_key })
    }

    /// The stored ciphertext of a record version, for a reader who gets its key wrapped.
    pub fn sealed(&self, record: &Hash, version: u32) -> Result<Sealed, VaultError> {
        let blob = self.blob(record, version)?;
        Ok(Sealed {
            nonce: blob.nonce,
            ciphertext: blob.ciphertext,
        })
    }

    fn blob(&self, record: &Hash, version: u32) -> Result<Blob, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(BLOBS).map_err(db_error)?;
        let value = table
            .get((record.0.as_slice(), version))
            .map_err(db_error)?
            .ok_or(VaultError::NotFound)?;
        decode("record blob", value.value())
    }

    /// Recomputes the commitment to `content` as record `record` version `version` of its
    /// patient: possible only while the patient's secret exists.
    pub fn commitment(
        &self,
        patient: &Hash,
        record: &Hash,
        version: u32,
        content: &[u8],
    ) -> Result<Hash, VaultError> {
        Ok(self.secret(patient)?.commitment(record, version, content))
    }

    /// Crypto-shreds a patient: overwrites the secret, then deletes the ciphertext, wrapped keys
    /// and index entries of every record. Idempotent. Returns how many record versions it
    /// deleted.
    pub fn shred(&self, patient: &Hash) -> Result<usize, VaultError> {
        let _staging = lock(&self.staging);
        if let Some(meta) = self.patient(patient)? {
            lock(&self.slots).destroy(meta.slot, patient)?;
        }
        let mut deleted = 0;
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error)?;
        {
            let mut patients = txn.open_table(PATIENTS).map_err(db_error)?;
            let mut patient_by_fhir = txn.open_table(PATIENT_BY_FHIR).map_err(db_error)?;
            if let Some(value) = patients.remove(patient.0.as_slice()).map_err(db_error)? {
                let meta: PatientMeta = decode("patient", value.value())?;
                patient_by_fhir
                    .remove(meta.fhir_id.as_str())
                    .map_err(db_error)?;
            }
            let mut by_patient = txn.open_table(BY_PATIENT).map_err(db_error)?;
            let mut keys = Vec::new();
            for row in by_patient.range(patient.0.as_slice()..).map_err(db_error)? {
                let (key, _) = row.map_err(db_error)?;
                if !key.value().starts_with(&patient.0) {
                    break;
                }
                keys.push(key.value().to_vec());
            }
            let mut records = txn.open_table(RECORDS).map_err(db_error)?;
            let mut by_fhir = txn.open_table(RECORD_BY_FHIR).map_err(db_error)?;
            let mut blobs = txn.open_table(BLOBS).map_err(db_error)?;
            for key in keys {
                by_patient.remove(key.as_slice()).map_err(db_error)?;
                let record = hash_from(&key[key.len() - 32..])?;
                let Some(value) = records.remove(record.0.as_slice()).map_err(db_error)? else {
                    continue;
                };
                let meta: RecordMeta = decode("record", value.value())?;
                by_fhir
                    .remove(format!("{}/{}", meta.resource_type, meta.fhir_id).as_str())
                    .map_err(db_error)?;
                for version in 1..=meta.version {
                    if blobs
                        .remove((record.0.as_slice(), version))
                        .map_err(db_error)?
                        .is_some()
                    {
                        deleted += 1;
                    }
                }
            }
        }
        txn.commit().map_err(db_error)?;
        Ok(deleted)
    }

    /// The height through which committed erasures have been applied here.
    pub fn erased_through(&self) -> Result<u64, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(META).map_err(db_error)?;
        Ok(table
            .get(META_ERASED_THROUGH)
            .map_err(db_error)?
            .map(|value| value.value())
            .unwrap_or(0))
    }

    /// Records, durably, the height through which erasures were applied.
    pub fn set_erased_through(&self, height: u64) -> Result<(), VaultError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(META)
            .map_err(db_error)?
            .insert(META_ERASED_THROUGH, height)
            .map_err(db_error)?;
        txn.commit().map_err(db_error)
    }
}

#[cfg(test)]
mod tests;
