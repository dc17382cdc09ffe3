//! Encryption of content too large to hold in memory (genomic files): the STREAM construction
//! (Hoang, Reyhanitabar, Rogaway and Vizár, "Online Authenticated-Encryption and its
//! Nonce-Reuse Misuse-Resistance", 2015) over AES-256-GCM, as RustCrypto's `aead::stream`
//! implements it (`StreamBE32`).
//!
//! The plaintext is cut into chunks of [`STREAM_CHUNK_BYTES`]; each is sealed under the same key
//! with the nonce `prefix ‖ counter (32-bit big-endian) ‖ last flag`, so chunks cannot be
//! reordered, dropped, duplicated or cut short without the opening failing: the final chunk is
//! sealed with the last flag set, so a stream truncated at a chunk boundary does not open either.
//! The sealed form is the chunks back to back, each [`STREAM_TAG_BYTES`] longer than its
//! plaintext; only the final one may be short (or empty), so the plaintext's length follows from
//! the sealed length ([`plain_len`]).
//!
//! A key must seal one stream only: the nonce prefix is random, but the caller draws a fresh key
//! per stream anyway, as every data key here is per record version.
//!
//! Nothing here touches files or sockets: it reads and writes through `std::io` traits.

use std::io::{self, Read, Write};

use aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{KeyInit, Payload};

use crate::envelope::DataKey;

/// The plaintext bytes of every chunk but the last.
pub const STREAM_CHUNK_BYTES: usize = 64 * 1024;
/// What sealing adds to each chunk (the GCM tag).
pub const STREAM_TAG_BYTES: usize = 16;
/// The random part of each chunk's nonce (12 bytes less the counter and the last flag).
pub const STREAM_NONCE_BYTES: usize = 7;

const SEALED_CHUNK_BYTES: usize = STREAM_CHUNK_BYTES + STREAM_TAG_BYTES;

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_string())
}

/// Reads until `buffer` is full or the reader ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Seals everything `reader` yields into `writer`, chunk by chunk, holding two chunks in memory
/// at most. Returns the plaintext's length.
pub fn seal_stream(
    key: &DataKey,
    nonce: [u8; STREAM_NONCE_BYTES],
    aad: &[u8],
    mut reader: impl Read,
    writer: impl Write,
) -> io::Result<u64> {
    let mut sealing = SealingWriter::new(key, nonce, aad, writer);
    io::copy(&mut reader, &mut sealing)?;
    let (_, length) = sealing.finish()?;
    Ok(length)
}

/// A writer that seals what is written to it into `inner`, for producers that push (a
/// de-identifier, a compressor). Nothing is complete until [`SealingWriter::finish`] seals the
/// last chunk: a writer dropped unfinished leaves a stream that does not open.
pub struct SealingWriter<W> {
    inner: W,
    encryptor: Option<EncryptorBE32<Aes256Gcm>>,
    aad: Vec<u8>,
    /// Plaintext not sealed yet: a full chunk is held until more arrives, since only then is it
    /// known not to be the last.
    pending: Vec<u8>,
    total: u64,
}

impl<W> std::fmt::Debug for SealingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingWriter").finish_non_exhaustive()
    }
}

impl<W: Write> SealingWriter<W> {
    pub fn new(
        key: &DataKey,
        nonce: [u8; STREAM_NONCE_BYTES],
        aad: &[u8],
        inner: W,
    ) -> SealingWriter<W> {
        SealingWriter {
            inner,
            encryptor: Some(EncryptorBE32::from_aead(
                Aes256Gcm::new((&key.0).into()),
                (&nonce).into(),
            )),
            aad: aad.to_vec(),
            pending: Vec::with_capacity(STREAM_CHUNK_BYTES),
            total: 0,
        }
    }

    /// Seals the last chunk; returns the inner writer (flushed) and the plaintext's length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        let encryptor = self
            .encryptor
            .take()
            .ok_or_else(|| invalid("the stream was finished already"))?;
        let sealed = encryptor
            .encrypt_last(Payload {
                msg: &self.pending,
                aad: &self.aad,
            })
            .map_err(|_| invalid("the stream is longer than 2^32 chunks"))?;
        self.inner.write_all(&sealed)?;
        self.inner.flush()?;
        self.total += self.pending.len() as u64;
        Ok((self.inner, self.total))
    }
}

impl<W: Write> Write for SealingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.pending.len() == STREAM_CHUNK_BYTES {
            let sealed = self
                .encryptor
                .as_mut()
                .ok_or_else(|| invalid("the stream was finished already"))?
                .encrypt_next(Payload {
                    msg: &self.pending,
                    aad: &self.aad,
                })
                .map_err(|_| invalid("the stream is longer than 2^32 chunks"))?;
            self.inner.write_all(&sealed)?;
            self.total += self.pending.len() as u64;
            self.pending.clear();
        }
        let taken = data.len().min(STREAM_CHUNK_BYTES - self.pending.len());
        self.pending.extend_from_slice(&data[..taken]);
        Ok(taken)
    }

    /// Flushes the inner writer; a chunk still pending stays pending.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The length of what sealing `plain` bytes produces.
pub fn sealed_len(plain: u64) -> u64 {
    let chunk = STREAM_CHUNK_BYTES as u64;
    let chunks = plain.div_ceil(chunk).max(1);
    plain + chunks * STREAM_TAG_BYTES as u64
}

/// The plaintext length of a sealed stream of `sealed` bytes, or `None` if no stream has that
/// length.
pub fn plain_len(sealed: u64) -> Option<u64> {
    let chunk = SEALED_CHUNK_BYTES as u64;
    let chunks = sealed.div_ceil(chunk);
    let last = sealed.checked_sub(chunks.checked_sub(1)? * chunk)?;
    if last < STREAM_TAG_BYTES as u64 {
        return None;
    }
    Some(sealed - chunks * STREAM_TAG_BYTES as u64)
}

/// A reader of the plaintext of a sealed stream, opening one chunk at a time. A read fails
/// (`InvalidData`) at the first chunk that does not open, and at the end if the stream was cut
/// short, so a consumer must treat everything it read as unverified until it reads the end.
pub struct OpenStream<R> {
    reader: R,
    decryptor: Option<DecryptorBE32<Aes256Gcm>>,
    aad: Vec<u8>,
    plain: Vec<u8>,
    at: usize,
    /// One byte read past a full chunk, to learn that it was not the last.
    carried: Option<u8>,
}

impl<R> std::fmt::Debug for OpenStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStream").finish_non_exhaustive()
    }
}

impl<R: Read> OpenStream<R> {
    pub fn new(
        key: &DataKey,
        nonce: [u8; STREAM_NONCE_BYTES],
        aad: &[u8],
        reader: R,
    ) -> OpenStream<R> {
        OpenStream {
            reader,
            decryptor: Some(DecryptorBE32::from_aead(
                Aes256Gcm::new((&key.0).into()),
                (&nonce).into(),
            )),
            aad: aad.to_vec(),
            plain: Vec::new(),
            at: 0,
            carried: None,
        }
    }

    /// Opens the next chunk into `plain`; leaves it empty at the end.
    fn next_chunk(&mut self) -> io::Result<()> {
        self.plain.clear();
        self.at = 0;
        if self.decryptor.is_none() {
            return Ok(());
        }
        let mut sealed = vec![0u8; SEALED_CHUNK_BYTES];
        let mut filled = 0;
        if let Some(byte) = self.carried.take() {
            sealed[0] = byte;
            filled = 1;
        }
        filled += read_full(&mut self.reader, &mut sealed[filled..])?;
        sealed.truncate(filled);
        let last = if filled < SEALED_CHUNK_BYTES {
            true
        } else {
            let mut one = [0u8; 1];
            if read_full(&mut self.reader, &mut one)? == 0 {
                true
            } else {
                self.carried = Some(one[0]);
                false
            }
        };
        let payload = Payload {
            msg: &sealed,
            aad: &self.aad,
        };
        self.plain = if last {
            let decryptor = self
                .decryptor
                .take()
                .ok_or_else(|| invalid("stream ended"))?;
            decryptor
                .decrypt_last(payload)
                .map_err(|_| invalid("the sealed stream does not open: altered or cut short"))?
        } else {
            self.decryptor
                .as_mut()
                .ok_or_else(|| invalid("stream ended"))?
                .decrypt_next(payload)
                .map_err(|_| invalid("the sealed stream does not open: altered or reordered"))?
        };
        Ok(())
    }
}

impl<R: Read> Read for OpenStream<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() {
            if self.decryptor.is_none() {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let count = buffer.len().min(self.plain.len() - self.at);
        buffer[..count].copy_from_slice(&self.plain[self.at..self.at + count]);
        self.at += count;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: DataKey = DataKey([7; 32]);
    const NONCE: [u8; STREAM_NONCE_BYTES] = [1, 2, 3, 4, 5, 6, 7];

    /// A reader that yields at most `step` bytes per read, as a socket does.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
            let count = buffer.len().min(self.step).min(self.bytes.len());
            buffer[..count].copy_from_slice(&self.bytes[..count]);
            self.bytes = &self.bytes[count..];
            Ok(count)
        }
    }

    fn seal(plain: &[u8]) -> Vec<u8> {
        let mut sealed = Vec::new();
        let length = seal_stream(&KEY, NONCE, b"aad", plain, &mut sealed).expect("seals");
        assert_eq!(length, plain.len() as u64);
        sealed
    }

    fn open(sealed: &[u8], aad: &[u8]) -> io::Result<Vec<u8>> {
        let mut plain = Vec::new();
        OpenStream::new(&KEY, NONCE, aad, sealed).read_to_end(&mut plain)?;
        Ok(plain)
    }

    /// Lengths at and around chunk boundaries round-trip, and their sealed lengths are predicted
    /// both ways.
    #[test]
    fn boundary_lengths_round_trip() {
        for length in [
            0,
            1,
            STREAM_CHUNK_BYTES - 1,
            STREAM_CHUNK_BYTES,
            STREAM_CHUNK_BYTES + 1,
            2 * STREAM_CHUNK_BYTES,
            3 * STREAM_CHUNK_BYTES + 17,
        ] {
            let plain: Vec<u8> = (0..length).map(|i| (i % 251) as u8).collect();
            let sealed = seal(&plain);
            assert_eq!(sealed.len() as u64, sealed_len(length as u64), "{length}");
            assert_eq!(
                plain_len(sealed.len() as u64),
                Some(length as u64),
                "{length}"
            );
            assert_eq!(open(&sealed, b"aad").expect("opens"), plain, "{length}");
        }
    }

    /// Altering, truncating (even at a chunk boundary), extending, reordering or rebinding a
    /// sealed stream makes it fail to open.
    #[test]
    fn tampering_is_detected() {
        let plain: Vec<u8> = (0..3 * STREAM_CHUNK_BYTES + 5).map(|i| i as u8).collect();
        let sealed = seal(&plain);
        let mut flipped = sealed.clone();
        flipped[SEALED_CHUNK_BYTES + 3] ^= 1;
        let boundary = sealed[..2 * SEALED_CHUNK_BYTES].to_vec();
        let mut longer = sealed.clone();
        longer.extend_from_slice(&[0; STREAM_TAG_BYTES]);
        let mut swapped = sealed[SEALED_CHUNK_BYTES..2 * SEALED_CHUNK_BYTES].to_vec();
        swapped.extend_from_slice(&sealed[..SEALED_CHUNK_BYTES]);
        swapped.extend_from_slice(&sealed[2 * SEALED_CHUNK_BYTES..]);
        for (name, bytes, aad) in [
            ("flipped", flipped, &b"aad"[..]),
            ("cut at a boundary", boundary, b"aad"),
            ("cut mid-chunk", sealed[..sealed.len() - 1].to_vec(), b"aad"),
            ("extended", longer, b"aad"),
            ("swapped", swapped, b"aad"),
            ("other aad", sealed.clone(), b"other"),
            ("empty", Vec::new(), b"aad"),
        ] {
            let error = open(&bytes, aad).expect_err(name);
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{name}");
        }
        assert_eq!(plain_len(0), None);
        assert_eq!(plain_len(STREAM_TAG_BYTES as u64 - 1), None);
        assert_eq!(plain_len(SEALED_CHUNK_BYTES as u64 + 3), None);
    }

    proptest! {
        /// Any content round-trips whatever sizes the reads come in.
        #[test]
        fn round_trips_through_short_reads(
            plain in proptest::collection::vec(any::<u8>(), 0..3 * STREAM_CHUNK_BYTES),
            step in 1usize..70_000,
        ) {
            let mut sealed = Vec::new();
            seal_stream(&KEY, NONCE, b"aad", Trickle { bytes: &plain, step }, &mut sealed)
                .expect("seals");
            prop_assert_eq!(sealed.len() as u64, sealed_len(plain.len() as u64));
            let mut opened = Vec::new();
            OpenStream::new(&KEY, NONCE, b"aad", Trickle { bytes: &sealed, step })
                .read_to_end(&mut opened)
                .expect("opens");
            prop_assert_eq!(opened, plain);
        }
    }
}
