//! Batches of certified blocks arrive from validators at a full node: decoding must never panic,
//! must stay within its bounds, and must be canonical.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = medledger_types::sync::SyncBatch::from_bytes(data) {
        assert!(batch.blocks.len() as u64 <= medledger_types::sync::SYNC_BATCH_HEIGHTS_MAX);
        assert_eq!(batch.to_bytes(), data);
    }
});
