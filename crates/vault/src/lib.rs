//! The node's off-chain store of health records: ciphertext, wrapped data keys, patient secrets
//! and the FHIR index (logical ids, and records by patient and type). It lives beside the ledger in
//! the node's data directory (`vault.redb`, `vault.slots` and `vault.blind-key`) and never leaves
//! the node.
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
//! **Invariant:** no file here holds a FHIR logical id in clear, ever (see `layout.rs`): indexes are
//! keyed by blind indexes, and ids, and links from an id to a record, are sealed under a key
//! derived from the patient's secret. So after erasure nothing here names the patient's resources,
//! not even a page redb freed; only tombstones say that an id was erased, and of which patient.
//! **Invariant:** while a batch is staged, its records are in flight and no other batch may write
//! them, so a version number is never handed out twice.

mod blind;
mod files;
mod layout;
mod migrate;
pub mod slots;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::Hash;
use medledger_crypto::envelope::{BlindKey, DataKey, IndexKey, NONCE_BYTES, PatientSecret};
use rand_core::{CryptoRng, RngCore};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use crate::layout::{
    BLOBS, IndexedRecord, META, META_ERASED_THROUGH, PATIENT_INDEX, PATIENTS, PENDING,
    RECORD_INDEX, RECORDS, SEARCH, StoredPatient, StoredRecord, TOMBSTONES, get, put, table,
};
use crate::slots::KeySlots;
pub use files::{FileDraft, VaultFile};

const DB_FILE: &str = "vault.redb";
const SLOTS_FILE: &str = "vault.slots";

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
    #[error("{0}")]
    TooLarge(String),
    #[error("{resource}: the writer expected version {expected}, the current version is {current}")]
    VersionMismatch {
        resource: String,
        expected: u32,
        current: u32,
    },
}

fn db_error(error: impl std::fmt::Display) -> VaultError {
    VaultError::Io(error.to_string())
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> VaultError {
    move |error| VaultError::Io(format!("{what}: {error}"))
}

/// Makes renames and new files in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), VaultError> {
    std::fs::File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io("syncing the vault directory"))
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

/// A patient held here, as callers see it. (Its Borsh encoding is how layout 1 stored it, with the
/// FHIR id in clear; layout 2 stores the id sealed.)
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PatientMeta {
    pub slot: u64,
    pub fhir_id: String,
}

/// A record held here, as callers see it. (Its Borsh encoding is how layout 1 stored it.)
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
    /// A file streamed in with [`Vault::write_file`] for the same patient, kept beside this
    /// version (the content should name its digest, so the commitment covers it).
    pub file: Option<&'a FileDraft>,
    /// The version the writer expects to replace (an `If-Match`; 0: that the record is new).
    /// Checked under the staging lock, so two writers expecting the same version cannot both
    /// stage.
    pub expected_version: Option<u32>,
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

/// A patient a staged batch writes to, with its keys.
struct BatchPatient {
    fhir_id: String,
    patient: Hash,
    secret: PatientSecret,
    index_key: IndexKey,
    /// Created by this batch.
    new: bool,
}

/// A record version a staged batch writes.
struct Planned<'a> {
    version: StagedVersion,
    resource_type: &'a str,
    /// Its patient's place in the batch's patients.
    patient_at: usize,
    blob: Blob,
    file: Option<&'a FileDraft>,
}

#[derive(Debug)]
pub struct Vault {
    db: Database,
    /// The vault's directory, for [`Vault::copy_to`].
    dir: std::path::PathBuf,
    /// Where record versions' files live (see `files.rs`).
    files: std::path::PathBuf,
    slots: Mutex<KeySlots>,
    /// The key of every blind index here; it outlives erasures, so tombstones can be found.
    blind: BlindKey,
    /// Records in a staged, unsettled batch.
    in_flight: Mutex<BTreeSet<Hash>>,
    /// Serialises staging, so two batches never plan the same version or create the same patient.
    staging: Mutex<()>,
}

impl Vault {
    /// Opens (or creates) the vault in `dir`. A vault of layout 1 (FHIR ids in clear) is converted
    /// first, once, into a fresh file (see `migrate.rs`).
    pub fn open(dir: &Path) -> Result<Vault, VaultError> {
        use std::os::unix::fs::PermissionsExt;
        // The vault holds ciphertext, wrapped keys and blind indexes: its owner only.
        std::fs::create_dir_all(dir).map_err(db_error)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(db_error)?;
        migrate::finish_interrupted(dir)?;
        let blind = blind::open_or_create(dir)?;
        let slots = KeySlots::open(&dir.join(SLOTS_FILE))?;
        let mut db = layout::open_db(&dir.join(DB_FILE))?;
        if migrate::is_legacy(&db)? {
            db = migrate::convert(dir, db, &blind, &slots)?;
        }
        layout::prepare(&db, &blind)?;
        let files = files::dir(dir);
        std::fs::create_dir_all(&files).map_err(db_error)?;
        std::fs::set_permissions(&files, std::fs::Permissions::from_mode(0o700))
            .map_err(db_error)?;
        let vault = Vault {
            db,
            dir: dir.to_path_buf(),
            files,
            slots: Mutex::new(slots),
            blind,
            in_flight: Mutex::new(BTreeSet::new()),
            staging: Mutex::new(()),
        };
        vault.destroy_orphaned_secrets()?;
        vault.sweep_files()?;
        Ok(vault)
    }

    /// Copies the vault's database, key slots and blind key into `dest` as of the last commit, for
    /// a backup of a running node: the write transaction and the slots are held (then released
    /// unchanged) while they are copied, so the three agree. The files of record versions are
    /// written once before the commit that names them, so a plain copy of `files/` taken after
    /// this is enough: a file no record names is swept when the copy is opened. Returns the
    /// names copied.
    pub fn copy_to(&self, dest: &Path) -> Result<Vec<&'static str>, VaultError> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dest).map_err(db_error)?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o700)).map_err(db_error)?;
        let txn = self.db.begin_write().map_err(db_error)?;
        let _slots = lock(&self.slots);
        let names = [DB_FILE, SLOTS_FILE, blind::BLIND_KEY_FILE];
        for name in names {
            std::fs::copy(self.dir.join(name), dest.join(name)).map_err(db_error)?;
        }
        txn.abort().map_err(db_error)?;
        Ok(names.to_vec())
    }

    /// Deletes drafts a crash left, and files whose record version is not here (a batch rolled
    /// back or a patient shredded before the file could be deleted).
    fn sweep_files(&self) -> Result<usize, VaultError> {
        let files::Listing { drafts, stored } = files::listing(&self.files)?;
        let mut deleted = 0;
        for draft in drafts {
            std::fs::remove_file(draft).map_err(io("deleting a draft"))?;
            deleted += 1;
        }
        let txn = self.db.begin_read().map_err(db_error)?;
        let blobs = txn.open_table(BLOBS).map_err(db_error)?;
        for (record, version) in stored {
            if blobs
                .get((record.0.as_slice(), version))
                .map_err(db_error)?
                .is_none()
            {
                files::remove(&self.files, &record, version)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Streams `reader` into the vault as a file of the stored patient `patient_fhir_id`, sealed
    /// under a fresh key wrapped under the patient's secret, refusing more than `bytes_max`
    /// bytes. The draft becomes a record version's file when staged with it ([`Incoming::file`]);
    /// dropped, it is deleted. Holds no lock while the bytes arrive.
    pub fn write_file(
        &self,
        patient_fhir_id: &str,
        reader: impl std::io::Read,
        bytes_max: u64,
        mut rng: impl RngCore + CryptoRng,
    ) -> Result<FileDraft, VaultError> {
        let patient = self.patient_by_fhir(patient_fhir_id)?.ok_or_else(|| {
            VaultError::Invalid(format!("no patient Patient/{patient_fhir_id} is stored"))
        })?;
        let secret = self.secret(&patient)?;
        let mut random =
            [0u8; 32 + 32 + NONCE_BYTES + medledger_crypto::stream::STREAM_NONCE_BYTES];
        rng.fill_bytes(&mut random);
        files::write_draft(&self.files, patient, &secret, reader, bytes_max, random)
    }

    /// The file kept beside a record version, decrypted as it is read; `None` if it has none.
    /// With `expected`, reading to the end fails unless the content has that SHA-256.
    pub fn open_file(
        &self,
        record: &Hash,
        version: u32,
        expected: Option<Hash>,
    ) -> Result<Option<VaultFile>, VaultError> {
        let stored: StoredRecord = {
            let txn = self.db.begin_read().map_err(db_error)?;
            let records = txn.open_table(RECORDS).map_err(db_error)?;
            get(&records, &record.0, "record")?.ok_or(VaultError::NotFound)?
        };
        if stored.version < version {
            return Err(VaultError::NotFound);
        }
        let secret = self.secret(&stored.patient)?;
        files::open(
            &files::path_of(&self.files, record, version),
            &stored.patient,
            &secret,
            expected,
        )
    }

    /// Destroys secrets no patient entry refers to: left by a crash between writing a new
    /// patient's secret and committing the patient. A secret must never outlive its patient.
    fn destroy_orphaned_secrets(&self) -> Result<usize, VaultError> {
        let mut slots = lock(&self.slots);
        let mut destroyed = 0;
        for (index, patient) in slots.owners()? {
            let kept = self
                .stored_patient(&patient)?
                .is_some_and(|stored| stored.slot == index);
            if !kept {
                slots.destroy(index, &patient)?;
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    fn stored_patient(&self, patient: &Hash) -> Result<Option<StoredPatient>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(PATIENTS).map_err(db_error)?;
        get(&table, &patient.0, "patient")
    }

    /// A patient's secret, found through its entry in `patients`: `None` if the patient is not
    /// held here, or its secret is gone (it is being erased).
    fn secret_in(
        &self,
        patients: &impl ReadableTable<&'static [u8], &'static [u8]>,
        patient: &Hash,
    ) -> Result<Option<(StoredPatient, PatientSecret)>, VaultError> {
        let Some(stored) = get::<StoredPatient>(patients, &patient.0, "patient")? else {
            return Ok(None);
        };
        let secret = lock(&self.slots).read(stored.slot, patient)?;
        Ok(secret.map(|secret| (stored, secret)))
    }

    fn index_key_in(
        &self,
        patients: &impl ReadableTable<&'static [u8], &'static [u8]>,
        patient: &Hash,
    ) -> Result<Option<IndexKey>, VaultError> {
        Ok(self
            .secret_in(patients, patient)?
            .map(|(_, secret)| secret.index_key()))
    }

    pub fn patient_by_fhir(&self, fhir_id: &str) -> Result<Option<Hash>, VaultError> {
        let blind = layout::patient_blind(&self.blind, fhir_id);
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(PATIENT_INDEX).map_err(db_error)?;
        table
            .get(blind.0.as_slice())
            .map_err(db_error)?
            .map(|value| hash_from(value.value()))
            .transpose()
    }

    /// Every patient held here (their opaque ids), in id order. A patient being erased may still
    /// be listed until its shredding finishes; callers check the chain's erasure mark.
    pub fn patients(&self) -> Result<Vec<Hash>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let patients = txn.open_table(PATIENTS).map_err(db_error)?;
        let mut out = Vec::new();
        for row in patients.iter().map_err(db_error)? {
            let (key, _) = row.map_err(db_error)?;
            out.push(hash_from(key.value())?);
        }
        Ok(out)
    }

    /// A patient held here; `None` once it is erased (or while it is, its secret gone).
    pub fn patient(&self, patient: &Hash) -> Result<Option<PatientMeta>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let patients = txn.open_table(PATIENTS).map_err(db_error)?;
        let Some((stored, secret)) = self.secret_in(&patients, patient)? else {
            return Ok(None);
        };
        let fhir_id = layout::open_patient_fhir_id(&secret.index_key(), patient, &stored.fhir_id)?;
        Ok(Some(PatientMeta {
            slot: stored.slot,
            fhir_id,
        }))
    }

    pub fn record_by_fhir(
        &self,
        resource_type: &str,
        fhir_id: &str,
    ) -> Result<Option<(Hash, RecordMeta)>, VaultError> {
        let blind = layout::record_blind(&self.blind, resource_type, fhir_id);
        let txn = self.db.begin_read().map_err(db_error)?;
        let index = txn.open_table(RECORD_INDEX).map_err(db_error)?;
        let Some(indexed) = get::<IndexedRecord>(&index, &blind.0, "record index entry")? else {
            return Ok(None);
        };
        let patients = txn.open_table(PATIENTS).map_err(db_error)?;
        let Some(key) = self.index_key_in(&patients, &indexed.patient)? else {
            return Ok(None);
        };
        let record = layout::open_record_id(&key, &blind, &indexed.record)?;
        let records = txn.open_table(RECORDS).map_err(db_error)?;
        let stored = get::<StoredRecord>(&records, &record.0, "record")?
            .ok_or_else(|| VaultError::Corrupt(format!("indexed record {record} is missing")))?;
        if stored.patient != indexed.patient || stored.resource_type != resource_type {
            return Err(VaultError::Corrupt(format!(
                "record {record} is indexed under another patient or type"
            )));
        }
        Ok(Some((
            record,
            RecordMeta {
                patient: stored.patient,
                resource_type: stored.resource_type,
                fhir_id: fhir_id.to_string(),
                version: stored.version,
            },
        )))
    }

    /// A record held here; `None` once its patient is erased (or while it is).
    pub fn record(&self, record: &Hash) -> Result<Option<RecordMeta>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let records = txn.open_table(RECORDS).map_err(db_error)?;
        let Some(stored) = get::<StoredRecord>(&records, &record.0, "record")? else {
            return Ok(None);
        };
        let patients = txn.open_table(PATIENTS).map_err(db_error)?;
        let Some(key) = self.index_key_in(&patients, &stored.patient)? else {
            return Ok(None);
        };
        Ok(Some(RecordMeta {
            fhir_id: layout::open_record_fhir_id(&key, record, &stored.fhir_id)?,
            patient: stored.patient,
            resource_type: stored.resource_type,
            version: stored.version,
        }))
    }

    /// A patient's records, optionally of one type: `(record id, type, FHIR logical id)` in index
    /// order (as [`Hit`]s), at most `limit` after skipping `offset`, and the total count. Only the
    /// ids returned are decrypted.
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
        let patients = txn.open_table(PATIENTS).map_err(db_error)?;
        let Some(key) = self.index_key_in(&patients, patient)? else {
            // Not held here, or erased.
            return Ok((Vec::new(), 0));
        };
        let table = txn.open_table(SEARCH).map_err(db_error)?;
        let mut found = Vec::new();
        let mut total = 0;
        for row in table.range(prefix.as_slice()..).map_err(db_error)? {
            let (search_key, value) = row.map_err(db_error)?;
            let search_key = search_key.value();
            if !search_key.starts_with(&prefix) {
                break;
            }
            total += 1;
            if total <= offset || found.len() >= limit {
                continue;
            }
            let (resource_type, record) = layout::parse_search_key(search_key)?;
            found.push(Hit {
                record,
                resource_type: resource_type.to_string(),
                fhir_id: layout::open_record_fhir_id(&key, &record, value.value())?,
            });
        }
        Ok((found, total))
    }

    /// The id of the erased patient whose `Patient` resource had the logical id `fhir_id`: the id
    /// its audit trail is kept under on chain. `None` if no such patient was erased here. (If the
    /// id was imported again since, [`Vault::patient_by_fhir`] finds the new patient.)
    pub fn erased_patient_by_fhir(&self, fhir_id: &str) -> Result<Option<Hash>, VaultError> {
        self.tombstone(&layout::patient_blind(&self.blind, fhir_id))
    }

    /// The id of the erased patient the record `resource_type/fhir_id` belonged to; `None` if no
    /// such record was erased here.
    pub fn erased_record_by_fhir(
        &self,
        resource_type: &str,
        fhir_id: &str,
    ) -> Result<Option<Hash>, VaultError> {
        self.tombstone(&layout::record_blind(&self.blind, resource_type, fhir_id))
    }

    fn tombstone(&self, blind: &Hash) -> Result<Option<Hash>, VaultError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(TOMBSTONES).map_err(db_error)?;
        table
            .get(blind.0.as_slice())
            .map_err(db_error)?
            .map(|value| hash_from(value.value()))
            .transpose()
    }

    fn secret(&self, patient: &Hash) -> Result<PatientSecret, VaultError> {
        let stored = self
            .stored_patient(patient)?
            .ok_or(VaultError::Erased(*patient))?;
        lock(&self.slots)
            .read(stored.slot, patient)?
            .ok_or(VaultError::Erased(*patient))
    }

    /// The record `resource_type/fhir_id` of `owner` and its stored version: `None` if there is
    /// none, refused if it is another patient's.
    fn existing_record(
        &self,
        resource_type: &str,
        fhir_id: &str,
        owner: &BatchPatient,
    ) -> Result<Option<(Hash, u32)>, VaultError> {
        let blind = layout::record_blind(&self.blind, resource_type, fhir_id);
        let txn = self.db.begin_read().map_err(db_error)?;
        let index = txn.open_table(RECORD_INDEX).map_err(db_error)?;
        let Some(indexed) = get::<IndexedRecord>(&index, &blind.0, "record index entry")? else {
            return Ok(None);
        };
        if indexed.patient != owner.patient {
            return Err(VaultError::Invalid(format!(
                "{resource_type}/{fhir_id} belongs to another patient"
            )));
        }
        let record = layout::open_record_id(&owner.index_key, &blind, &indexed.record)?;
        let records = txn.open_table(RECORDS).map_err(db_error)?;
        let stored = get::<StoredRecord>(&records, &record.0, "record")?
            .ok_or_else(|| VaultError::Corrupt(format!("indexed record {record} is missing")))?;
        Ok(Some((record, stored.version)))
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
        let mut patients: Vec<BatchPatient> = Vec::new();
        let mut patients_by_fhir: BTreeMap<&str, usize> = BTreeMap::new();
        for item in items {
            if item.patient == PatientRef::Own {
                let fhir_id = item.fhir_id.ok_or_else(|| {
                    VaultError::Invalid("a Patient resource needs a logical id".into())
                })?;
                if patients_by_fhir.contains_key(fhir_id) {
                    continue;
                }
                let (patient, secret, new) = match self.patient_by_fhir(fhir_id)? {
                    Some(patient) => (patient, self.secret(&patient)?, false),
                    None => {
                        rng.fill_bytes(&mut random);
                        (Hash(random), PatientSecret::generate(&mut rng), true)
                    }
                };
                patients_by_fhir.insert(fhir_id, patients.len());
                patients.push(BatchPatient {
                    fhir_id: fhir_id.to_string(),
                    patient,
                    index_key: secret.index_key(),
                    secret,
                    new,
                });
            }
        }
        let mut planned: Vec<Planned<'_>> = Vec::with_capacity(items.len());
        let mut seen = BTreeSet::new();
        let mut seen_ids = BTreeSet::new();
        for item in items {
            let patient_fhir = match item.patient {
                PatientRef::Own => item.fhir_id.unwrap_or_default(),
                PatientRef::Fhir(id) => id,
            };
            let patient_at = match patients_by_fhir.get(patient_fhir) {
                Some(at) => *at,
                None => {
                    let patient = self.patient_by_fhir(patient_fhir)?.ok_or_else(|| {
                        VaultError::Invalid(format!("no patient Patient/{patient_fhir} is stored"))
                    })?;
                    let secret = self.secret(&patient)?;
                    patients_by_fhir.insert(patient_fhir, patients.len());
                    patients.push(BatchPatient {
                        fhir_id: patient_fhir.to_string(),
                        patient,
                        index_key: secret.index_key(),
                        secret,
                        new: false,
                    });
                    patients.len() - 1
                }
            };
            let owner = &patients[patient_at];
            let existing = match item.fhir_id {
                Some(id) => self
                    .existing_record(item.resource_type, id, owner)?
                    .map(|(record, stored)| (record, id.to_string(), stored)),
                None => None,
            };
            let (record, fhir_id, version) = match existing {
                Some((record, fhir_id, stored)) => {
                    let version = stored.max(chain_version(&record)?) + 1;
                    (record, fhir_id, version)
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
            if let Some(expected) = item.expected_version
                && expected != version - 1
            {
                return Err(VaultError::VersionMismatch {
                    resource: format!("{}/{fhir_id}", item.resource_type),
                    expected,
                    current: version - 1,
                });
            }
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
                wrapped_key: owner.secret.wrap(&data_key, key_nonce, &aad),
                ciphertext: data_key.seal(nonce, &aad, item.content),
            };
            if let Some(file) = item.file
                && file.patient != owner.patient
            {
                return Err(VaultError::Invalid(format!(
                    "{}/{fhir_id}: its file was written for another patient",
                    item.resource_type
                )));
            }
            let commitment = owner.secret.commitment(&record, version, item.content);
            planned.push(Planned {
                version: StagedVersion {
                    record,
                    patient: owner.patient,
                    fhir_id,
                    version,
                    commitment,
                },
                resource_type: item.resource_type,
                patient_at,
                blob,
                file: item.file,
            });
        }
        // The batch's records, and the patients it creates, are in flight until it settles: a
        // batch that uses a patient another batch is creating waits, because a refusal of that
        // batch destroys the patient's secret.
        let locked: Vec<Hash> = planned
            .iter()
            .map(|planned| planned.version.record)
            .chain(patients.iter().filter(|p| p.new).map(|p| p.patient))
            .collect();
        {
            let mut in_flight = lock(&self.in_flight);
            if let Some(busy) = planned
                .iter()
                .find(|planned| in_flight.contains(&planned.version.record))
            {
                return Err(VaultError::Busy(busy.version.fhir_id.clone()));
            }
            if let Some(busy) = patients.iter().find(|p| in_flight.contains(&p.patient)) {
                return Err(VaultError::Busy(format!("Patient/{}", busy.fhir_id)));
            }
            in_flight.extend(locked.iter().copied());
        }
        let result = self.write_staged(staged_id, &patients, &planned, &mut rng);
        if result.is_err() {
            let mut in_flight = lock(&self.in_flight);
            for id in &locked {
                in_flight.remove(id);
            }
        }
        result?;
        Ok(Staged {
            id: staged_id,
            versions: planned.into_iter().map(|planned| planned.version).collect(),
        })
    }

    fn write_staged<R: RngCore + CryptoRng>(
        &self,
        staged_id: Hash,
        patients: &[BatchPatient],
        planned: &[Planned<'_>],
        rng: &mut R,
    ) -> Result<(), VaultError> {
        // New secrets are durable before anything refers to them.
        let mut new_slots = Vec::new();
        // Files take their version's name before the batch commits; if it does not, they go.
        let mut renamed = Vec::new();
        let written = (|| {
            for planned in planned {
                if let Some(file) = planned.file {
                    let target = files::path_of(
                        &self.files,
                        &planned.version.record,
                        planned.version.version,
                    );
                    std::fs::rename(&file.path, &target).map_err(io("keeping a file"))?;
                    renamed.push(target);
                }
            }
            if !renamed.is_empty() {
                sync_dir(&self.files)?;
            }
            for patient in patients.iter().filter(|p| p.new) {
                let slot = lock(&self.slots).allocate(&patient.patient, &patient.secret)?;
                new_slots.push((patient, slot));
            }
            let mut txn = self.db.begin_write().map_err(db_error)?;
            txn.set_durability(Durability::Immediate)
                .map_err(db_error)?;
            {
                let mut patients_table = table(&txn, PATIENTS)?;
                let mut patient_index = table(&txn, PATIENT_INDEX)?;
                for (patient, slot) in &new_slots {
                    let stored = StoredPatient {
                        slot: *slot,
                        fhir_id: layout::seal_patient_fhir_id(
                            &patient.index_key,
                            rng,
                            &patient.patient,
                            &patient.fhir_id,
                        ),
                    };
                    put(&mut patients_table, &patient.patient.0, &stored)?;
                    let blind = layout::patient_blind(&self.blind, &patient.fhir_id);
                    patient_index
                        .insert(blind.0.as_slice(), patient.patient.0.as_slice())
                        .map_err(db_error)?;
                }
                let mut records = table(&txn, RECORDS)?;
                let mut record_index = table(&txn, RECORD_INDEX)?;
                let mut search = table(&txn, SEARCH)?;
                let mut blobs = table(&txn, BLOBS)?;
                for planned in planned {
                    let version = &planned.version;
                    let key = &patients[planned.patient_at].index_key;
                    let fhir_id =
                        layout::seal_record_fhir_id(key, rng, &version.record, &version.fhir_id);
                    let blind =
                        layout::record_blind(&self.blind, planned.resource_type, &version.fhir_id);
                    let indexed = IndexedRecord {
                        patient: version.patient,
                        record: layout::seal_record_id(key, rng, &blind, &version.record),
                    };
                    put(&mut record_index, &blind.0, &indexed)?;
                    search
                        .insert(
                            layout::search_key(
                                &version.patient,
                                planned.resource_type,
                                &version.record,
                            )
                            .as_slice(),
                            fhir_id.as_slice(),
                        )
                        .map_err(db_error)?;
                    let stored = StoredRecord {
                        patient: version.patient,
                        resource_type: planned.resource_type.to_string(),
                        fhir_id,
                        version: version.version,
                    };
                    put(&mut records, &version.record.0, &stored)?;
                    blobs
                        .insert(
                            (version.record.0.as_slice(), version.version),
                            encode(&planned.blob).as_slice(),
                        )
                        .map_err(db_error)?;
                }
                let pending = Pending {
                    versions: planned
                        .iter()
                        .map(|p| (p.version.record, p.version.version, p.version.commitment))
                        .collect(),
                    new_patients: new_slots.iter().map(|(p, _)| p.patient).collect(),
                    tx: None,
                };
                put(&mut table(&txn, PENDING)?, &staged_id.0, &pending)?;
            }
            txn.commit().map_err(db_error)
        })();
        if written.is_err() {
            let mut slots = lock(&self.slots);
            for (patient, slot) in &new_slots {
                let _ = slots.destroy(*slot, &patient.patient);
            }
            for path in &renamed {
                let _ = std::fs::remove_file(path);
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
        table(&txn, PENDING)?
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
            let mut patients = table(&txn, PATIENTS)?;
            let mut patient_index = table(&txn, PATIENT_INDEX)?;
            let mut records = table(&txn, RECORDS)?;
            let mut record_index = table(&txn, RECORD_INDEX)?;
            let mut search = table(&txn, SEARCH)?;
            let mut blobs = table(&txn, BLOBS)?;
            let mut keys: BTreeMap<Hash, Option<IndexKey>> = BTreeMap::new();
            for (record, version, _) in &pending.versions {
                blobs
                    .remove((record.0.as_slice(), *version))
                    .map_err(db_error)?;
                let Some(stored) = get::<StoredRecord>(&records, &record.0, "record")? else {
                    continue;
                };
                if *version > 1 {
                    let previous = StoredRecord {
                        version: version - 1,
                        ..stored
                    };
                    put(&mut records, &record.0, &previous)?;
                    continue;
                }
                let key = match keys.entry(stored.patient) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => {
                        entry.insert(self.index_key_in(&patients, &stored.patient)?)
                    }
                };
                // Without its patient's secret the record cannot be unindexed: the patient is
                // being erased, and the erasure (retried until it completes) removes the record.
                let Some(key) = key else {
                    continue;
                };
                let fhir_id = layout::open_record_fhir_id(key, record, &stored.fhir_id)?;
                let blind = layout::record_blind(&self.blind, &stored.resource_type, &fhir_id);
                records.remove(record.0.as_slice()).map_err(db_error)?;
                record_index.remove(blind.0.as_slice()).map_err(db_error)?;
                search
                    .remove(
                        layout::search_key(&stored.patient, &stored.resource_type, record)
                            .as_slice(),
                    )
                    .map_err(db_error)?;
            }
            for patient in &pending.new_patients {
                let Some((stored, secret)) = self.secret_in(&patients, patient)? else {
                    continue;
                };
                let fhir_id =
                    layout::open_patient_fhir_id(&secret.index_key(), patient, &stored.fhir_id)?;
                let blind = layout::patient_blind(&self.blind, &fhir_id);
                patients.remove(patient.0.as_slice()).map_err(db_error)?;
                patient_index.remove(blind.0.as_slice()).map_err(db_error)?;
                slots_to_destroy.push((stored.slot, *patient));
            }
            table(&txn, PENDING)?
                .remove(staged.0.as_slice())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        for (record, version, _) in &pending.versions {
            files::remove(&self.files, record, *version)?;
        }
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
            let mut table = table(&txn, PENDING)?;
            let mut pending: Pending = get(&table, &staged.0, "pending batch")?
                .ok_or_else(|| VaultError::Invalid("no such staged batch".into()))?;
            pending.tx = Some(tx.to_vec());
            put(&mut table, &staged.0, &pending)?;
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
        let stored: StoredRecord = {
            let txn = self.db.begin_read().map_err(db_error)?;
            let records = txn.open_table(RECORDS).map_err(db_error)?;
            get(&records, &record.0, "record")?.ok_or(VaultError::NotFound)?
        };
        let blob = self.blob(record, version)?;
        let secret = self.secret(&stored.patient)?;
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
    /// and index entries of every record, and keeps a tombstone of each of the patient's FHIR ids
    /// (its `Patient` id and every record's `(type, id)`), in the same transaction. Idempotent.
    /// Returns how many record versions it deleted.
    ///
    /// The index entries to delete are named by FHIR ids only the secret decrypts, so they are
    /// found first, within the write transaction. If the secret is already gone (an earlier shred
    /// destroyed it and then failed), they are found by scanning the indexes for the patient id.
    pub fn shred(&self, patient: &Hash) -> Result<usize, VaultError> {
        let _staging = lock(&self.staging);
        let mut deleted = 0;
        let mut versions = Vec::new();
        let mut txn = self.db.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error)?;
        {
            let mut patients = table(&txn, PATIENTS)?;
            let mut patient_index = table(&txn, PATIENT_INDEX)?;
            let mut records = table(&txn, RECORDS)?;
            let mut record_index = table(&txn, RECORD_INDEX)?;
            let mut search = table(&txn, SEARCH)?;
            let mut blobs = table(&txn, BLOBS)?;
            let mut tombstones = table(&txn, TOMBSTONES)?;
            let stored = get::<StoredPatient>(&patients, &patient.0, "patient")?;
            let key = match &stored {
                Some(stored) => lock(&self.slots)
                    .read(stored.slot, patient)?
                    .map(|secret| secret.index_key()),
                None => None,
            };
            let mut rows = Vec::new();
            for row in search.range(patient.0.as_slice()..).map_err(db_error)? {
                let (search_key, value) = row.map_err(db_error)?;
                if !search_key.value().starts_with(&patient.0) {
                    break;
                }
                rows.push((search_key.value().to_vec(), value.value().to_vec()));
            }
            // The blind indexes of the patient's ids, to delete from the indexes and keep as
            // tombstones.
            let mut patient_blinds = Vec::new();
            let mut record_blinds = Vec::new();
            match (&stored, &key) {
                (Some(stored), Some(key)) => {
                    let fhir_id = layout::open_patient_fhir_id(key, patient, &stored.fhir_id)?;
                    patient_blinds.push(layout::patient_blind(&self.blind, &fhir_id));
                    for (search_key, sealed) in &rows {
                        let (resource_type, record) = layout::parse_search_key(search_key)?;
                        let fhir_id = layout::open_record_fhir_id(key, &record, sealed)?;
                        record_blinds.push(layout::record_blind(
                            &self.blind,
                            resource_type,
                            &fhir_id,
                        ));
                    }
                }
                (Some(_), None) => {
                    for row in patient_index.iter().map_err(db_error)? {
                        let (blind, owner) = row.map_err(db_error)?;
                        if owner.value() == patient.0.as_slice() {
                            patient_blinds.push(hash_from(blind.value())?);
                        }
                    }
                    for row in record_index.iter().map_err(db_error)? {
                        let (blind, value) = row.map_err(db_error)?;
                        let indexed: IndexedRecord = decode("record index entry", value.value())?;
                        if indexed.patient == *patient {
                            record_blinds.push(hash_from(blind.value())?);
                        }
                    }
                }
                // Not held here, or shredded before.
                (None, _) => {}
            }
            // The secret goes first, and durably: from here on the patient's data cannot be
            // read, whatever becomes of this transaction, and a retry finds the rest by the
            // patient id as above.
            if let Some(stored) = &stored {
                lock(&self.slots).destroy(stored.slot, patient)?;
            }
            patients.remove(patient.0.as_slice()).map_err(db_error)?;
            for blind in &patient_blinds {
                patient_index.remove(blind.0.as_slice()).map_err(db_error)?;
            }
            for blind in &record_blinds {
                record_index.remove(blind.0.as_slice()).map_err(db_error)?;
            }
            for blind in patient_blinds.iter().chain(&record_blinds) {
                tombstones
                    .insert(blind.0.as_slice(), patient.0.as_slice())
                    .map_err(db_error)?;
            }
            for (search_key, _) in &rows {
                search.remove(search_key.as_slice()).map_err(db_error)?;
                let (_, record) = layout::parse_search_key(search_key)?;
                let Some(stored) = records.remove(record.0.as_slice()).map_err(db_error)? else {
                    continue;
                };
                let stored: StoredRecord = decode("record", stored.value())?;
                for version in 1..=stored.version {
                    versions.push((record, version));
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
        // Unreadable already (their keys were wrapped under the destroyed secret); a failure
        // here leaves them to the sweep at the next start.
        for (record, version) in versions {
            files::remove(&self.files, &record, version)?;
        }
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
        table(&txn, META)?
            .insert(META_ERASED_THROUGH, height)
            .map_err(db_error)?;
        txn.commit().map_err(db_error)
    }
}

#[cfg(test)]
mod tests;
