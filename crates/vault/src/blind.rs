//! The vault's blind key (`vault.blind-key`): 32 random bytes, made at the first open, under which
//! every index by FHIR id is keyed (see [`crate::layout`]).
//!
//! It must outlive every erasure, since tombstones are found by it, so it is kept apart from the
//! patients' secrets. It is written to a temporary file, synced and renamed into place, so a crash
//! never leaves a partial key; the file is created with mode 0600. Losing it loses every lookup by
//! FHIR id (a changed key is refused at open, see [`crate::layout::prepare`]), so a backup of the
//! vault must include it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use medledger_crypto::envelope::BlindKey;
use rand_core::OsRng;

use crate::{VaultError, io, sync_dir};

pub(crate) const BLIND_KEY_FILE: &str = "vault.blind-key";
const BLIND_KEY_FILE_NEW: &str = "vault.blind-key.new";

/// Reads the blind key of the vault in `dir`, or makes one if there is none yet.
pub(crate) fn open_or_create(dir: &Path) -> Result<BlindKey, VaultError> {
    let path = dir.join(BLIND_KEY_FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return create(dir),
        Err(error) => return Err(io("opening the blind key")(error)),
    };
    let mut key = [0u8; 32];
    let len = file.metadata().map_err(io("reading the blind key"))?.len();
    if len != key.len() as u64 {
        return Err(VaultError::Corrupt(format!(
            "{BLIND_KEY_FILE} holds {len} bytes, not 32"
        )));
    }
    file.read_exact(&mut key)
        .map_err(io("reading the blind key"))?;
    Ok(BlindKey(key))
}

fn create(dir: &Path) -> Result<BlindKey, VaultError> {
    let key = BlindKey::generate(OsRng);
    let temporary = dir.join(BLIND_KEY_FILE_NEW);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io("creating the blind key"))?;
    file.write_all(&key.0)
        .and_then(|()| file.sync_all())
        .map_err(io("writing the blind key"))?;
    drop(file);
    std::fs::rename(&temporary, dir.join(BLIND_KEY_FILE)).map_err(io("writing the blind key"))?;
    sync_dir(dir)?;
    Ok(key)
}
