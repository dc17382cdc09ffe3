//! Files too large to hold in memory (genomic files: VCF, BAM, CRAM), kept as sealed streams in
//! `files/` beside `vault.redb`, one file per record version.
//!
//! A file arrives before its record exists: it is streamed into a draft (`<draft>.part`) under a
//! fresh data key, wrapped under its patient's secret like every data key here, while its SHA-256
//! and length are counted. The caller puts the digest and length into the record's FHIR content
//! (so the record's keyed commitment on chain covers the file) and stages that record with the
//! draft; staging renames the draft to `<record>-<version>.bin` before the batch commits.
//!
//! **Invariant:** a file exists only beside the blob of its record version. A draft left by a
//! crash, a file renamed for a batch whose commit failed, and the file of a version rolled back or
//! shredded are deleted: at once where possible, else by the sweep when the vault opens. A file's
//! key is wrapped under its patient's secret, so erasure makes it unreadable even before the
//! file is deleted.
//! **Invariant:** no file name says anything about a patient: drafts are named by random ids, files
//! by the opaque record id, which the chain holds anyway.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use borsh::{BorshDeserialize, BorshSerialize};
use medledger_crypto::envelope::{DataKey, NONCE_BYTES, PatientSecret};
use medledger_crypto::stream::{OpenStream, STREAM_NONCE_BYTES, plain_len, seal_stream};
use medledger_crypto::{Hash, Sha256Stream};

use crate::{VaultError, decode, encode, io};

pub(crate) const FILES_DIR: &str = "files";
const MAGIC: &[u8; 8] = b"MLVFILE1";
const FILE_AAD: &[u8] = b"medledger/vault/file/v1";
/// The longest header a file may declare (it holds a wrapped key and a few ids).
const HEADER_BYTES_MAX: u32 = 1_024;

/// What precedes a file's sealed stream.
#[derive(BorshSerialize, BorshDeserialize)]
struct FileHeader {
    draft: Hash,
    patient: Hash,
    key_nonce: [u8; NONCE_BYTES],
    wrapped_key: Vec<u8>,
    stream_nonce: [u8; STREAM_NONCE_BYTES],
}

fn file_aad(draft: &Hash, patient: &Hash) -> Vec<u8> {
    let mut aad = FILE_AAD.to_vec();
    aad.extend_from_slice(&draft.0);
    aad.extend_from_slice(&patient.0);
    aad
}

/// A file streamed into the vault and not yet part of a record. Dropping it deletes what was
/// written, unless a staged batch took it.
#[derive(Debug)]
pub struct FileDraft {
    pub(crate) patient: Hash,
    pub(crate) path: PathBuf,
    /// The plaintext's length.
    pub bytes: u64,
    /// The plaintext's SHA-256, for the record's content (never stored in clear).
    pub sha256: Hash,
}

impl Drop for FileDraft {
    fn drop(&mut self) {
        // Gone already if a batch renamed it.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The content of a stored file, decrypted as it is read. A read fails (`InvalidData`) if the
/// file was altered, cut short, or is not the content its record names.
pub struct VaultFile {
    stream: OpenStream<BufReader<File>>,
    /// The plaintext's length.
    pub bytes: u64,
    hasher: Option<Sha256Stream>,
    expected: Option<Hash>,
}

impl std::fmt::Debug for VaultFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultFile")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Read for VaultFile {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.stream.read(buffer)?;
        match (&mut self.hasher, read) {
            (Some(hasher), 1..) => hasher.update(&buffer[..read]),
            (Some(_), 0) => {
                let matches = match (self.hasher.take(), self.expected) {
                    (Some(hasher), Some(expected)) => hasher.finish() == expected,
                    _ => true,
                };
                if !matches {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the stored file is not the content its record names",
                    ));
                }
            }
            (None, _) => {}
        }
        Ok(read)
    }
}

/// Counts, hashes and bounds what passes through.
struct Metered<R> {
    inner: R,
    bytes: u64,
    bytes_max: u64,
    hasher: Sha256Stream,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.bytes += read as u64;
        if self.bytes > self.bytes_max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("a file holds at most {} bytes", self.bytes_max),
            ));
        }
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

pub(crate) fn dir(vault_dir: &Path) -> PathBuf {
    vault_dir.join(FILES_DIR)
}

pub(crate) fn path_of(files: &Path, record: &Hash, version: u32) -> PathBuf {
    files.join(format!("{}-{version}.bin", record.to_hex()))
}

/// Streams `reader` into a new draft for `patient`, sealed under a fresh key wrapped under
/// `secret`. The draft is durable when this returns.
pub(crate) fn write_draft(
    files: &Path,
    patient: Hash,
    secret: &PatientSecret,
    reader: impl Read,
    bytes_max: u64,
    random: [u8; 32 + 32 + NONCE_BYTES + STREAM_NONCE_BYTES],
) -> Result<FileDraft, VaultError> {
    use std::os::unix::fs::OpenOptionsExt;
    let draft = Hash(random[..32].try_into().expect("32 bytes"));
    let data_key = DataKey(random[32..64].try_into().expect("32 bytes"));
    let key_nonce: [u8; NONCE_BYTES] = random[64..64 + NONCE_BYTES].try_into().expect("nonce");
    let stream_nonce: [u8; STREAM_NONCE_BYTES] =
        random[64 + NONCE_BYTES..].try_into().expect("stream nonce");
    let aad = file_aad(&draft, &patient);
    let header = encode(&FileHeader {
        draft,
        patient,
        key_nonce,
        wrapped_key: secret.wrap(&data_key, key_nonce, &aad),
        stream_nonce,
    });
    let path = files.join(format!("{}.part", draft.to_hex()));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io("creating a file draft"))?;
    // From here the draft deletes itself if anything below fails.
    let mut draft = FileDraft {
        patient,
        path,
        bytes: 0,
        sha256: Hash([0; 32]),
    };
    let mut writer = BufWriter::with_capacity(256 * 1024, file);
    writer.write_all(MAGIC).map_err(io("writing a file"))?;
    writer
        .write_all(&(header.len() as u32).to_le_bytes())
        .and_then(|()| writer.write_all(&header))
        .map_err(io("writing a file"))?;
    let mut metered = Metered {
        inner: reader,
        bytes: 0,
        bytes_max,
        hasher: Sha256Stream::default(),
    };
    seal_stream(&data_key, stream_nonce, &aad, &mut metered, &mut writer).map_err(|error| {
        use std::io::ErrorKind;
        match error.kind() {
            ErrorKind::FileTooLarge => VaultError::TooLarge(error.to_string()),
            // The sender's fault: content refused by the reader, or an upload cut short.
            ErrorKind::InvalidInput | ErrorKind::ConnectionAborted | ErrorKind::UnexpectedEof => {
                VaultError::Invalid(error.to_string())
            }
            _ => VaultError::Io(format!("receiving a file: {error}")),
        }
    })?;
    let file = writer
        .into_inner()
        .map_err(|error| VaultError::Io(format!("writing a file: {}", error.error())))?;
    file.sync_all().map_err(io("syncing a file"))?;
    draft.bytes = metered.bytes;
    draft.sha256 = metered.hasher.finish();
    Ok(draft)
}

/// Opens a stored file; `None` if the record version has none. `unwrap_with` gives the secret of
/// the patient the file claims, which must be the record's.
pub(crate) fn open(
    path: &Path,
    patient: &Hash,
    secret: &PatientSecret,
    expected: Option<Hash>,
) -> Result<Option<VaultFile>, VaultError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io("opening a file")(error)),
    };
    let length = file.metadata().map_err(io("reading a file"))?.len();
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut magic = [0u8; 8];
    let mut header_length = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .and_then(|()| reader.read_exact(&mut header_length))
        .map_err(|error| VaultError::Corrupt(format!("a file's header: {error}")))?;
    let header_length = u32::from_le_bytes(header_length);
    if &magic != MAGIC || header_length > HEADER_BYTES_MAX {
        return Err(VaultError::Corrupt(
            "a file's header is not a vault file's".into(),
        ));
    }
    let mut header = vec![0u8; header_length as usize];
    reader
        .read_exact(&mut header)
        .map_err(|error| VaultError::Corrupt(format!("a file's header: {error}")))?;
    let header: FileHeader = decode("file header", &header)?;
    if header.patient != *patient {
        return Err(VaultError::Corrupt(
            "a file is another patient's than its record's".into(),
        ));
    }
    let aad = file_aad(&header.draft, &header.patient);
    let data_key = secret
        .unwrap(&header.wrapped_key, header.key_nonce, &aad)
        .map_err(|error| VaultError::Corrupt(format!("a file's key: {error}")))?;
    let sealed = length.saturating_sub(12 + u64::from(header_length));
    let bytes =
        plain_len(sealed).ok_or_else(|| VaultError::Corrupt("a file was cut short".into()))?;
    Ok(Some(VaultFile {
        stream: OpenStream::new(&data_key, header.stream_nonce, &aad, reader),
        bytes,
        hasher: expected.map(|_| Sha256Stream::default()),
        expected,
    }))
}

/// Deletes a record version's file, if any.
pub(crate) fn remove(files: &Path, record: &Hash, version: u32) -> Result<(), VaultError> {
    match std::fs::remove_file(path_of(files, record, version)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(io("deleting a file")(error))
        }
        _ => Ok(()),
    }
}

/// What `files/` holds: drafts, and record versions' files by (record, version).
pub(crate) struct Listing {
    pub drafts: Vec<PathBuf>,
    pub stored: Vec<(Hash, u32)>,
}

/// The files in `files`. Names that are neither drafts nor versions' files are left alone.
pub(crate) fn listing(files: &Path) -> Result<Listing, VaultError> {
    let mut drafts = Vec::new();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(files).map_err(io("listing files"))? {
        let entry = entry.map_err(io("listing files"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".part") {
            drafts.push(entry.path());
        } else if let Some(stem) = name.strip_suffix(".bin")
            && let Some((record, version)) = stem.split_once('-')
            && let (Ok(record), Ok(version)) = (Hash::from_hex(record), version.parse::<u32>())
        {
            stored.push((record, version));
        }
    }
    Ok(Listing { drafts, stored })
}
