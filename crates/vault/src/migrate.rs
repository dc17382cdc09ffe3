//! Conversion of a vault of layout 1, which held FHIR logical ids in clear, to layout 2 (see
//! [`crate::layout`]).
//!
//! Layout 1 keyed `patient_by_fhir` and `record_by_fhir` by the ids themselves and stored them in
//! clear in `patients`, `records` and `by_patient`. Rewriting those tables in place would leave
//! every id in the file: redb is copy-on-write and does not overwrite the pages it frees. So the
//! conversion writes a fresh file and destroys the old one:
//!
//! 1. convert into `vault.redb.next`, in one durable write transaction;
//! 2. rename `vault.redb` to `vault.redb.old`, then `vault.redb.next` to `vault.redb`, syncing the
//!    directory after each;
//! 3. overwrite `vault.redb.old` with zeros, sync it and remove it.
//!
//! A crash at any point leaves files that [`finish_interrupted`] recognises at the next open:
//! before step 2 the old file is intact and is converted again; from step 2 on, the conversion is
//! finished. The zeros are a best effort: a filesystem or a drive may keep old blocks elsewhere,
//! out of reach of any file operation.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use medledger_crypto::Hash;
use medledger_crypto::envelope::{BlindKey, IndexKey};
use rand_core::OsRng;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle, WriteTransaction,
};

use crate::layout::{
    self, BLOBS, IndexedRecord, META, PATIENT_INDEX, PATIENTS, PENDING, RECORD_INDEX, RECORDS,
    SEARCH, StoredPatient, StoredRecord, TOMBSTONES, put, table,
};
use crate::slots::KeySlots;
use crate::{
    DB_FILE, PatientMeta, RecordMeta, VaultError, db_error, decode, hash_from, io, sync_dir,
};

/// Layout 1: patient id → `PatientMeta`, with the FHIR id in clear.
const LEGACY_PATIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("patients");
/// Layout 1: the FHIR id of a patient → patient id. Only layout 1 has it.
const LEGACY_PATIENT_BY_FHIR: TableDefinition<&str, &[u8]> =
    TableDefinition::new("patient_by_fhir");
/// Layout 1: record id → `RecordMeta`, with the FHIR id in clear.
const LEGACY_RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");

const NEXT_FILE: &str = "vault.redb.next";
const OLD_FILE: &str = "vault.redb.old";
const SCRUB_CHUNK_BYTES: usize = 1024 * 1024;

/// Whether `db` is of layout 1.
pub(crate) fn is_legacy(db: &Database) -> Result<bool, VaultError> {
    let txn = db.begin_read().map_err(db_error)?;
    Ok(txn
        .list_tables()
        .map_err(db_error)?
        .any(|handle| handle.name() == LEGACY_PATIENT_BY_FHIR.name()))
}

/// Converts the layout-1 vault `legacy` (the file `vault.redb` in `dir`) and returns the converted
/// database, opened from the same path.
pub(crate) fn convert(
    dir: &Path,
    legacy: Database,
    blind: &BlindKey,
    slots: &KeySlots,
) -> Result<Database, VaultError> {
    let next_path = dir.join(NEXT_FILE);
    let next = layout::open_db(&next_path)?;
    {
        let old = legacy.begin_read().map_err(db_error)?;
        let mut txn = next.begin_write().map_err(db_error)?;
        txn.set_durability(Durability::Immediate)
            .map_err(db_error)?;
        copy(&old, &txn, blind, slots)?;
        txn.commit().map_err(db_error)?;
    }
    drop(next);
    drop(legacy);
    let current = dir.join(DB_FILE);
    let old = dir.join(OLD_FILE);
    std::fs::rename(&current, &old).map_err(io("setting the old vault aside"))?;
    sync_dir(dir)?;
    std::fs::rename(&next_path, &current).map_err(io("putting the converted vault in place"))?;
    sync_dir(dir)?;
    scrub(dir, &old)?;
    layout::open_db(&current)
}

/// Writes layout 2 from the layout-1 tables of `old`. The search and FHIR indexes are rebuilt from
/// the patients and records rather than copied.
fn copy(
    old: &ReadTransaction,
    new: &WriteTransaction,
    blind: &BlindKey,
    slots: &KeySlots,
) -> Result<(), VaultError> {
    let mut rng = OsRng;
    let mut patients = table(new, PATIENTS)?;
    let mut patient_index = table(new, PATIENT_INDEX)?;
    let mut records = table(new, RECORDS)?;
    let mut record_index = table(new, RECORD_INDEX)?;
    let mut search = table(new, SEARCH)?;
    let mut tombstones = table(new, TOMBSTONES)?;
    let mut keys: BTreeMap<Hash, IndexKey> = BTreeMap::new();
    let legacy_patients = old.open_table(LEGACY_PATIENTS).map_err(db_error)?;
    for row in legacy_patients.iter().map_err(db_error)? {
        let (id, value) = row.map_err(db_error)?;
        let patient = hash_from(id.value())?;
        let meta: PatientMeta = decode("patient", value.value())?;
        let index = layout::patient_blind(blind, &meta.fhir_id);
        let Some(secret) = slots.read(meta.slot, &patient)? else {
            // Its secret is gone: an erasure was interrupted after destroying it. It is finished
            // here: the patient's entries stay behind, and its ids become tombstones.
            tombstones
                .insert(index.0.as_slice(), patient.0.as_slice())
                .map_err(db_error)?;
            continue;
        };
        let key = secret.index_key();
        let stored = StoredPatient {
            slot: meta.slot,
            fhir_id: layout::seal_patient_fhir_id(&key, &mut rng, &patient, &meta.fhir_id),
        };
        put(&mut patients, &patient.0, &stored)?;
        patient_index
            .insert(index.0.as_slice(), patient.0.as_slice())
            .map_err(db_error)?;
        keys.insert(patient, key);
    }
    let legacy_records = old.open_table(LEGACY_RECORDS).map_err(db_error)?;
    for row in legacy_records.iter().map_err(db_error)? {
        let (id, value) = row.map_err(db_error)?;
        let record = hash_from(id.value())?;
        let meta: RecordMeta = decode("record", value.value())?;
        let index = layout::record_blind(blind, &meta.resource_type, &meta.fhir_id);
        let Some(key) = keys.get(&meta.patient) else {
            // Its patient was erased (or is missing, which layout 1 also answered as erased).
            tombstones
                .insert(index.0.as_slice(), meta.patient.0.as_slice())
                .map_err(db_error)?;
            continue;
        };
        let fhir_id = layout::seal_record_fhir_id(key, &mut rng, &record, &meta.fhir_id);
        let indexed = IndexedRecord {
            patient: meta.patient,
            record: layout::seal_record_id(key, &mut rng, &index, &record),
        };
        put(&mut record_index, &index.0, &indexed)?;
        search
            .insert(
                layout::search_key(&meta.patient, &meta.resource_type, &record).as_slice(),
                fhir_id.as_slice(),
            )
            .map_err(db_error)?;
        let stored = StoredRecord {
            patient: meta.patient,
            resource_type: meta.resource_type,
            fhir_id,
            version: meta.version,
        };
        put(&mut records, &record.0, &stored)?;
    }
    // Versions of records no longer held (their patient was erased) are left behind.
    let mut blobs = table(new, BLOBS)?;
    for row in old
        .open_table(BLOBS)
        .map_err(db_error)?
        .iter()
        .map_err(db_error)?
    {
        let (key, value) = row.map_err(db_error)?;
        let (record, version) = key.value();
        if records.get(record).map_err(db_error)?.is_some() {
            blobs
                .insert((record, version), value.value())
                .map_err(db_error)?;
        }
    }
    let mut pending = table(new, PENDING)?;
    for row in old
        .open_table(PENDING)
        .map_err(db_error)?
        .iter()
        .map_err(db_error)?
    {
        let (key, value) = row.map_err(db_error)?;
        pending
            .insert(key.value(), value.value())
            .map_err(db_error)?;
    }
    let mut meta = table(new, META)?;
    for row in old
        .open_table(META)
        .map_err(db_error)?
        .iter()
        .map_err(db_error)?
    {
        let (key, value) = row.map_err(db_error)?;
        meta.insert(key.value(), value.value()).map_err(db_error)?;
    }
    Ok(())
}

/// Finishes, or undoes so that it is redone, a conversion a crash interrupted.
pub(crate) fn finish_interrupted(dir: &Path) -> Result<(), VaultError> {
    let exists = |name: &str| {
        dir.join(name)
            .try_exists()
            .map_err(io("looking for an interrupted conversion"))
    };
    match (exists(DB_FILE)?, exists(NEXT_FILE)?, exists(OLD_FILE)?) {
        (_, false, false) => Ok(()),
        // Step 1 did not finish: the old file is intact and is converted again. The new one
        // holds no FHIR id in clear, so removing it is enough.
        (true, true, false) => {
            std::fs::remove_file(dir.join(NEXT_FILE))
                .map_err(io("removing a partial conversion"))?;
            sync_dir(dir)
        }
        // Between the renames of step 2: the converted file was committed before the first.
        (false, true, true) => {
            std::fs::rename(dir.join(NEXT_FILE), dir.join(DB_FILE))
                .map_err(io("putting the converted vault in place"))?;
            sync_dir(dir)?;
            scrub(dir, &dir.join(OLD_FILE))
        }
        // Step 3 did not finish.
        (true, false, true) => scrub(dir, &dir.join(OLD_FILE)),
        (current, next, old) => Err(VaultError::Corrupt(format!(
            "an interrupted conversion left {DB_FILE} {}, {NEXT_FILE} {}, {OLD_FILE} {}",
            presence(current),
            presence(next),
            presence(old),
        ))),
    }
}

fn presence(exists: bool) -> &'static str {
    if exists { "present" } else { "absent" }
}

/// Overwrites a file with zeros, syncs it and removes it.
fn scrub(dir: &Path, path: &Path) -> Result<(), VaultError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io("opening the old vault"))?;
    let len = file.metadata().map_err(io("reading the old vault"))?.len();
    let zeros = vec![0u8; SCRUB_CHUNK_BYTES];
    let mut offset = 0;
    while offset < len {
        let count = (len - offset).min(SCRUB_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..count], offset)
            .map_err(io("overwriting the old vault"))?;
        offset += count as u64;
    }
    file.sync_all().map_err(io("overwriting the old vault"))?;
    drop(file);
    std::fs::remove_file(path).map_err(io("removing the old vault"))?;
    sync_dir(dir)
}
