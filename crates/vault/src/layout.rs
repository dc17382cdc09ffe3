//! The layout of `vault.redb` (layout 2), and how the FHIR ids in it are blinded and sealed.
//!
//! No table holds a FHIR logical id in clear, in a key or in a value, at any time: redb is
//! copy-on-write, so whatever a page once held stays readable in the file after the page is freed,
//! until the page happens to be reused. Instead:
//!
//! - an index by FHIR id is keyed by a blind index of `(type, id)`: HMAC-SHA256 under the vault's
//!   [`BlindKey`], with one domain tag for patients and another for records;
//! - a FHIR id kept in order to answer with it, and the record id an index entry leads to, are
//!   sealed (AES-256-GCM, random nonce, bound to their place by associated data) under the
//!   patient's [`IndexKey`], which derives from the secret erasure destroys;
//! - the patient id stays in clear where a lookup needs it to find that secret. It is opaque and
//!   random, and the chain holds it anyway.
//!
//! So once a patient's secret is destroyed, what is left of the patient in any page, live or
//! freed, is ciphertext under a destroyed key, blind indexes and opaque ids. A tombstone maps the
//! blind index of each erased id to the patient id: enough to answer 410 Gone for the id and to
//! find the patient's audit trail on chain, and nothing that names the patient.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::Hash;
use medledger_crypto::envelope::{BlindKey, IndexKey, NONCE_BYTES};
use rand_core::{CryptoRng, RngCore};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use crate::{VaultError, db_error, decode, encode, hash_from};

/// Patient id → [`StoredPatient`].
pub(crate) const PATIENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("patients/v2");
/// Blind index of a patient's `Patient` id → patient id.
pub(crate) const PATIENT_INDEX: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("patient_index");
/// Record id → [`StoredRecord`].
pub(crate) const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records/v2");
/// Blind index of a record's `(type, id)` → [`IndexedRecord`].
pub(crate) const RECORD_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("record_index");
/// patient id ‖ type ‖ 0 ‖ record id → the record's FHIR id, sealed: the search index.
pub(crate) const SEARCH: TableDefinition<&[u8], &[u8]> = TableDefinition::new("by_patient/v2");
/// (record id, version) → `Blob`.
pub(crate) const BLOBS: TableDefinition<(&[u8], u32), &[u8]> = TableDefinition::new("blobs");
/// Staging id → `Pending`.
pub(crate) const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");
/// Counters and markers: the height through which erasures were applied, the layout, and a check
/// of the blind key.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Blind index of an erased patient's `Patient` id, or of an erased record's `(type, id)` → the
/// erased patient's id.
pub(crate) const TOMBSTONES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tombstones");

pub(crate) const META_ERASED_THROUGH: &str = "erased_through";
const META_LAYOUT: &str = "layout";
const META_BLIND_KEY_CHECK: &str = "blind_key_check";
const LAYOUT: u64 = 2;

const PATIENT_INDEX_TAG: &[u8] = b"medledger/vault/patient-index/v1";
const RECORD_INDEX_TAG: &[u8] = b"medledger/vault/record-index/v1";
const BLIND_KEY_CHECK_TAG: &[u8] = b"medledger/vault/blind-key-check/v1";
const PATIENT_FHIR_ID_AAD: &[u8] = b"medledger/vault/patient-fhir-id/v1";
const RECORD_FHIR_ID_AAD: &[u8] = b"medledger/vault/record-fhir-id/v1";
const RECORD_ID_AAD: &[u8] = b"medledger/vault/record-id/v1";

/// A patient held here. `fhir_id` is sealed under the patient's index key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct StoredPatient {
    pub slot: u64,
    pub fhir_id: Vec<u8>,
}

/// A record held here. `fhir_id` is sealed under its patient's index key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct StoredRecord {
    pub patient: Hash,
    pub resource_type: String,
    pub fhir_id: Vec<u8>,
    /// The latest version stored here (staged or on chain).
    pub version: u32,
}

/// Where a blind index of `(type, id)` leads: the patient in clear (its secret opens the rest),
/// and the record id sealed under the patient's index key.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub(crate) struct IndexedRecord {
    pub patient: Hash,
    pub record: Vec<u8>,
}

/// Opens (or creates) a redb file readable by its owner only.
pub(crate) fn open_db(path: &std::path::Path) -> Result<Database, VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let db = Database::builder()
        .set_cache_size(128 * 1024 * 1024)
        .create(path)
        .map_err(db_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(db_error)?;
    Ok(db)
}

/// Creates the tables of layout 2 where missing and checks that `blind` is the key the vault was
/// written with: with another key every lookup by FHIR id would silently find nothing.
pub(crate) fn prepare(db: &Database, blind: &BlindKey) -> Result<(), VaultError> {
    let txn = db.begin_write().map_err(db_error)?;
    {
        txn.open_table(PATIENTS).map_err(db_error)?;
        txn.open_table(PATIENT_INDEX).map_err(db_error)?;
        txn.open_table(RECORDS).map_err(db_error)?;
        txn.open_table(RECORD_INDEX).map_err(db_error)?;
        txn.open_table(SEARCH).map_err(db_error)?;
        txn.open_table(BLOBS).map_err(db_error)?;
        txn.open_table(PENDING).map_err(db_error)?;
        txn.open_table(TOMBSTONES).map_err(db_error)?;
        let mut meta = txn.open_table(META).map_err(db_error)?;
        let check = blind_key_check(blind);
        for (name, expected) in [(META_LAYOUT, LAYOUT), (META_BLIND_KEY_CHECK, check)] {
            let found = meta.get(name).map_err(db_error)?.map(|value| value.value());
            match found {
                None => {
                    meta.insert(name, expected).map_err(db_error)?;
                }
                Some(found) if found == expected => {}
                Some(found) => {
                    return Err(VaultError::Corrupt(match name {
                        META_LAYOUT => format!("unknown vault layout {found}"),
                        _ => "vault.blind-key is not the key this vault was written with".into(),
                    }));
                }
            }
        }
    }
    txn.commit().map_err(db_error)
}

/// A value stored with the blind key, so a vault can tell its own key from another.
fn blind_key_check(blind: &BlindKey) -> u64 {
    let check = blind.blind(BLIND_KEY_CHECK_TAG, &[]);
    u64::from_le_bytes(check.0[..8].try_into().expect("8 of 32 bytes"))
}

pub(crate) fn patient_blind(blind: &BlindKey, fhir_id: &str) -> Hash {
    blind.blind(PATIENT_INDEX_TAG, &[fhir_id.as_bytes()])
}

pub(crate) fn record_blind(blind: &BlindKey, resource_type: &str, fhir_id: &str) -> Hash {
    blind.blind(
        RECORD_INDEX_TAG,
        &[resource_type.as_bytes(), fhir_id.as_bytes()],
    )
}

fn aad(tag: &[u8], id: &Hash) -> Vec<u8> {
    let mut aad = tag.to_vec();
    aad.extend_from_slice(&id.0);
    aad
}

/// Seals `plaintext` as nonce ‖ ciphertext.
fn seal<R: RngCore + CryptoRng>(
    key: &IndexKey,
    rng: &mut R,
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);
    let mut sealed = nonce.to_vec();
    sealed.extend(key.seal(nonce, aad, plaintext));
    sealed
}

fn open(key: &IndexKey, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>, VaultError> {
    if sealed.len() < NONCE_BYTES {
        return Err(VaultError::Corrupt(format!("{what}: too short")));
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().expect("split at the nonce length");
    key.open(nonce, aad, ciphertext)
        .map_err(|error| VaultError::Corrupt(format!("{what}: {error}")))
}

fn open_text(key: &IndexKey, aad: &[u8], sealed: &[u8], what: &str) -> Result<String, VaultError> {
    String::from_utf8(open(key, aad, sealed, what)?)
        .map_err(|_| VaultError::Corrupt(format!("{what}: not UTF-8")))
}

pub(crate) fn seal_patient_fhir_id<R: RngCore + CryptoRng>(
    key: &IndexKey,
    rng: &mut R,
    patient: &Hash,
    fhir_id: &str,
) -> Vec<u8> {
    seal(
        key,
        rng,
        &aad(PATIENT_FHIR_ID_AAD, patient),
        fhir_id.as_bytes(),
    )
}

pub(crate) fn open_patient_fhir_id(
    key: &IndexKey,
    patient: &Hash,
    sealed: &[u8],
) -> Result<String, VaultError> {
    open_text(
        key,
        &aad(PATIENT_FHIR_ID_AAD, patient),
        sealed,
        "a patient's FHIR id",
    )
}

pub(crate) fn seal_record_fhir_id<R: RngCore + CryptoRng>(
    key: &IndexKey,
    rng: &mut R,
    record: &Hash,
    fhir_id: &str,
) -> Vec<u8> {
    seal(
        key,
        rng,
        &aad(RECORD_FHIR_ID_AAD, record),
        fhir_id.as_bytes(),
    )
}

pub(crate) fn open_record_fhir_id(
    key: &IndexKey,
    record: &Hash,
    sealed: &[u8],
) -> Result<String, VaultError> {
    open_text(
        key,
        &aad(RECORD_FHIR_ID_AAD, record),
        sealed,
        "a record's FHIR id",
    )
}

/// Seals the record id an index entry leads to, bound to the entry's blind index.
pub(crate) fn seal_record_id<R: RngCore + CryptoRng>(
    key: &IndexKey,
    rng: &mut R,
    blind: &Hash,
    record: &Hash,
) -> Vec<u8> {
    seal(key, rng, &aad(RECORD_ID_AAD, blind), &record.0)
}

pub(crate) fn open_record_id(
    key: &IndexKey,
    blind: &Hash,
    sealed: &[u8],
) -> Result<Hash, VaultError> {
    hash_from(&open(
        key,
        &aad(RECORD_ID_AAD, blind),
        sealed,
        "an indexed record id",
    )?)
}

pub(crate) fn search_key(patient: &Hash, resource_type: &str, record: &Hash) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + resource_type.len() + 1 + 32);
    key.extend_from_slice(&patient.0);
    key.extend_from_slice(resource_type.as_bytes());
    key.push(0);
    key.extend_from_slice(&record.0);
    key
}

/// The type and record id of a search key.
pub(crate) fn parse_search_key(key: &[u8]) -> Result<(&str, Hash), VaultError> {
    if key.len() < 32 + 1 + 32 || key[key.len() - 33] != 0 {
        return Err(VaultError::Corrupt("a search key is malformed".into()));
    }
    let resource_type = std::str::from_utf8(&key[32..key.len() - 33])
        .map_err(|_| VaultError::Corrupt("a search key's type is not UTF-8".into()))?;
    Ok((resource_type, hash_from(&key[key.len() - 32..])?))
}

/// Reads and decodes one value of a table keyed by bytes.
pub(crate) fn get<T: BorshDeserialize>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, VaultError> {
    table
        .get(key)
        .map_err(db_error)?
        .map(|value| decode(what, value.value()))
        .transpose()
}

/// Writes one encoded value into a table keyed by bytes.
pub(crate) fn put<T: BorshSerialize>(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8],
    value: &T,
) -> Result<(), VaultError> {
    table
        .insert(key, encode(value).as_slice())
        .map_err(db_error)?;
    Ok(())
}

/// Opens a table of a write transaction (creating it if missing), mapping the error.
pub(crate) fn table<'txn, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'txn WriteTransaction,
    definition: TableDefinition<K, V>,
) -> Result<redb::Table<'txn, K, V>, VaultError> {
    txn.open_table(definition).map_err(db_error)
}
