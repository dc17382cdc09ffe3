//! Blocks arrive from peers during sync: decoding must never panic and must be canonical.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = medledger_ledger::Block::from_bytes(data) {
        assert_eq!(block.to_bytes(), data);
    }
});
