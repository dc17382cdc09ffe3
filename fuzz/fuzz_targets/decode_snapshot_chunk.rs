//! State snapshot chunks arrive from validators at a new full node: decoding must never panic,
//! must stay within its bounds and be canonical, and restoring from any chunk must refuse it
//! rather than crash.
#![no_main]
use libfuzzer_sys::fuzz_target;
use medledger_state::snapshot::{SnapshotChunk, SnapshotRestore};

fuzz_target!(|data: &[u8]| {
    if let Ok(chunk) = SnapshotChunk::from_bytes(data) {
        assert_eq!(chunk.to_bytes(), data);
        if let Ok(mut restore) = SnapshotRestore::new(1, medledger_crypto::Hash([7; 32])) {
            let _ = restore.add(&chunk);
        }
    }
});
