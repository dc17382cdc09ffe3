//! Transactions arrive from clients and peers: decoding must never panic, and whatever decodes
//! must re-encode to the same bytes (the encoding is canonical).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tx) = medledger_ledger::Tx::from_bytes(data) {
        assert_eq!(tx.to_bytes(), data);
        let _ = tx.verify_signature();
    }
});
