//! Proof files are handed to `medledger proof verify` by anyone: parsing and verifying one must
//! never panic, whatever it holds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = serde_json::from_slice::<medledger_ledger::light::LightProof>(data) {
        if let medledger_ledger::light::LightProof::State { proof, header, .. } = &proof {
            let _ = proof.verify(header.state_root);
        }
    }
});
