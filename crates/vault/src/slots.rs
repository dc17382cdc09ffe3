//! Patient secrets in fixed-size slots of one file, overwritten in place when destroyed.
//!
//! A copy-on-write B-tree such as redb never overwrites a page: a deleted value stays in a freed
//! page until that page happens to be reused. That is fine for ciphertext, but not for the one
//! secret whose destruction is the erasure. So secrets live here instead: slot `i` is the 64 bytes
//! at offset `64 * i`, holding the patient id and the secret. Destroying a secret writes zeros over
//! its slot and syncs the file before anything else forgets the patient, so a crash can leave a
//! patient whose secret is gone (unreadable, as erasure wants) but never the reverse.
//!
//! An all-zero slot is free. The file is created with mode 0600.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use medledger_crypto::Hash;
use medledger_crypto::envelope::PatientSecret;

use crate::{VaultError, io};

pub const SLOT_BYTES: u64 = 64;

#[derive(Debug)]
pub struct KeySlots {
    file: File,
    free: BTreeSet<u64>,
    count: u64,
}

impl KeySlots {
    pub fn open(path: &Path) -> Result<KeySlots, VaultError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io("opening the key slots"))?;
        let len = file.metadata().map_err(io("reading the key slots"))?.len();
        let count = len / SLOT_BYTES;
        let mut free = BTreeSet::new();
        let mut slot = [0u8; SLOT_BYTES as usize];
        for index in 0..count {
            file.read_exact_at(&mut slot, index * SLOT_BYTES)
                .map_err(io("reading the key slots"))?;
            if slot.iter().all(|byte| *byte == 0) {
                free.insert(index);
            }
        }
        Ok(KeySlots { file, free, count })
    }

    /// Stores a patient's secret durably and returns its slot.
    pub fn allocate(&mut self, patient: &Hash, secret: &PatientSecret) -> Result<u64, VaultError> {
        let index = match self.free.pop_first() {
            Some(index) => index,
            None => {
                self.count += 1;
                self.count - 1
            }
        };
        let mut slot = [0u8; SLOT_BYTES as usize];
        slot[..32].copy_from_slice(&patient.0);
        slot[32..].copy_from_slice(&secret.0);
        let written = self
            .file
            .write_all_at(&slot, index * SLOT_BYTES)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            self.free.insert(index);
            return Err(VaultError::Io(format!("writing a key slot: {error}")));
        }
        Ok(index)
    }

    /// The secret in `index`, checked to belong to `patient`; `None` if it was destroyed.
    pub fn read(&self, index: u64, patient: &Hash) -> Result<Option<PatientSecret>, VaultError> {
        if index >= self.count || self.free.contains(&index) {
            return Ok(None);
        }
        let mut slot = [0u8; SLOT_BYTES as usize];
        self.file
            .read_exact_at(&mut slot, index * SLOT_BYTES)
            .map_err(io("reading a key slot"))?;
        if slot[..32] != patient.0 {
            return Err(VaultError::Corrupt(format!(
                "key slot {index} does not hold patient {patient}"
            )));
        }
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&slot[32..]);
        Ok(Some(PatientSecret(secret)))
    }

    /// The patients whose secrets are in the file, by slot.
    pub fn owners(&self) -> Result<Vec<(u64, Hash)>, VaultError> {
        let mut owners = Vec::new();
        let mut slot = [0u8; SLOT_BYTES as usize];
        for index in 0..self.count {
            if self.free.contains(&index) {
                continue;
            }
            self.file
                .read_exact_at(&mut slot, index * SLOT_BYTES)
                .map_err(io("reading the key slots"))?;
            let mut patient = [0u8; 32];
            patient.copy_from_slice(&slot[..32]);
            owners.push((index, Hash(patient)));
        }
        Ok(owners)
    }

    /// Overwrites `patient`'s slot with zeros and syncs: the secret is gone from the file. A slot
    /// that holds another patient (it was freed and reused since) is left alone.
    pub fn destroy(&mut self, index: u64, patient: &Hash) -> Result<(), VaultError> {
        if index >= self.count || self.free.contains(&index) {
            return Ok(());
        }
        let mut owner = [0u8; 32];
        self.file
            .read_exact_at(&mut owner, index * SLOT_BYTES)
            .map_err(io("reading a key slot"))?;
        if owner != patient.0 {
            return Ok(());
        }
        self.file
            .write_all_at(&[0u8; SLOT_BYTES as usize], index * SLOT_BYTES)
            .and_then(|()| self.file.sync_data())
            .map_err(io("destroying a key slot"))?;
        self.free.insert(index);
        Ok(())
    }
}
