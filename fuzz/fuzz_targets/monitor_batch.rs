//! Reading batches from untrusted devices, in both encodings: decoding and checking never panic,
//! and what decodes re-encodes to the same bytes (the binary encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use medledger_monitor::readings::SignedBatch;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(batch) = SignedBatch::from_bytes(bytes) {
        assert_eq!(batch.to_bytes(), bytes);
        let _ = batch.check("medledger-fuzz", 1_800_000_000_000);
    }
    if let Ok(batch) = SignedBatch::from_json(bytes) {
        let _ = batch.check("medledger-fuzz", 1_800_000_000_000);
    }
});
