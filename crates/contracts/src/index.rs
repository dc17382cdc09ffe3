//! The ordered index of one contract's keys, so that a contract can range over its state (the
//! Merkle tree is keyed by hash and has no order).
//!
//! Two levels: a directory (`contract-dir/<address>`) of buckets, each named by an id and its
//! first key, in key order; and buckets (`contract-bucket/<address>/<id>`) of sorted keys, at most
//! `BUCKET_KEYS_MAX`, split in two when full. A call that adds a key reads the directory and one
//! bucket and writes the bucket (and the directory when the bucket's first key changes or it
//! splits); one that only changes a value touches neither.
//!
//! **Invariant:** the buckets, in directory order, hold exactly the contract's keys, sorted; the
//! directory's first keys are the buckets' own.

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::Hash;
use medledger_module::{View, read};
use medledger_state::{StateError, StateRead, encode_value};

/// Keys in one bucket before it splits.
pub const BUCKET_KEYS_MAX: usize = 128;

#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Directory {
    /// (first key, bucket id), sorted by key.
    pub buckets: Vec<(Vec<u8>, u64)>,
    pub next_id: u64,
}

pub fn key_directory(contract: &Hash) -> Vec<u8> {
    format!("contract-dir/{contract}").into_bytes()
}

pub fn key_bucket(contract: &Hash, id: u64) -> Vec<u8> {
    format!("contract-bucket/{contract}/{id:020}").into_bytes()
}

fn directory(state: &dyn StateRead, contract: &Hash) -> Result<Directory, StateError> {
    Ok(read(state, &key_directory(contract))?.unwrap_or_default())
}

fn bucket(state: &dyn StateRead, contract: &Hash, id: u64) -> Result<Vec<Vec<u8>>, StateError> {
    Ok(read(state, &key_bucket(contract, id))?.unwrap_or_default())
}

/// The position in the directory of the bucket that holds (or would hold) `key`.
fn bucket_for(directory: &Directory, key: &[u8]) -> usize {
    directory
        .buckets
        .partition_point(|(first, _)| first.as_slice() <= key)
        .saturating_sub(1)
}

/// Records that the contract now has `key`.
pub fn insert(view: &mut View<'_, '_>, contract: &Hash, key: &[u8]) -> Result<(), StateError> {
    let mut directory = directory(view, contract)?;
    if directory.buckets.is_empty() {
        let id = directory.next_id;
        directory.next_id += 1;
        directory.buckets.push((key.to_vec(), id));
        view.put(key_bucket(contract, id), encode_value(&vec![key.to_vec()]));
        view.put(key_directory(contract), encode_value(&directory));
        return Ok(());
    }
    let position = bucket_for(&directory, key);
    let id = directory.buckets[position].1;
    let mut keys = bucket(view, contract, id)?;
    let Err(at) = keys.binary_search_by(|probe| probe.as_slice().cmp(key)) else {
        return Ok(());
    };
    keys.insert(at, key.to_vec());
    let mut directory_changed = false;
    if at == 0 {
        directory.buckets[position].0 = key.to_vec();
        directory_changed = true;
    }
    if keys.len() > BUCKET_KEYS_MAX {
        let upper = keys.split_off(keys.len() / 2);
        let new_id = directory.next_id;
        directory.next_id += 1;
        directory
            .buckets
            .insert(position + 1, (upper[0].clone(), new_id));
        view.put(key_bucket(contract, new_id), encode_value(&upper));
        directory_changed = true;
    }
    view.put(key_bucket(contract, id), encode_value(&keys));
    if directory_changed {
        view.put(key_directory(contract), encode_value(&directory));
    }
    Ok(())
}

/// Records that the contract no longer has `key`.
pub fn remove(view: &mut View<'_, '_>, contract: &Hash, key: &[u8]) -> Result<(), StateError> {
    let mut directory = directory(view, contract)?;
    if directory.buckets.is_empty() {
        return Ok(());
    }
    let position = bucket_for(&directory, key);
    let id = directory.buckets[position].1;
    let mut keys = bucket(view, contract, id)?;
    let Ok(at) = keys.binary_search_by(|probe| probe.as_slice().cmp(key)) else {
        return Ok(());
    };
    keys.remove(at);
    if keys.is_empty() {
        directory.buckets.remove(position);
        view.delete(key_bucket(contract, id));
        view.put(key_directory(contract), encode_value(&directory));
        return Ok(());
    }
    if at == 0 {
        directory.buckets[position].0 = keys[0].clone();
        view.put(key_directory(contract), encode_value(&directory));
    }
    view.put(key_bucket(contract, id), encode_value(&keys));
    Ok(())
}

/// The contract's first key after `after`.
pub fn next(
    state: &dyn StateRead,
    contract: &Hash,
    after: &[u8],
) -> Result<Option<Vec<u8>>, StateError> {
    let directory = directory(state, contract)?;
    if directory.buckets.is_empty() {
        return Ok(None);
    }
    let position = bucket_for(&directory, after);
    for (_, id) in &directory.buckets[position..] {
        let keys = bucket(state, contract, *id)?;
        let at = keys.partition_point(|key| key.as_slice() <= after);
        if let Some(key) = keys.get(at) {
            return Ok(Some(key.clone()));
        }
    }
    Ok(None)
}
