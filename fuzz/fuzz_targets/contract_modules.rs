//! Contracts are code the consortium deploys: arbitrary modules (wasm-smith, contract-shaped, with
//! and without the features the chain refuses) and arbitrary bytes are deployed and called as the
//! chain would. No panic, no call past its fuel (`deploy_and_call` asserts it).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/contracts/tests/smith/mod.rs"]
mod smith;

fuzz_target!(|data: &[u8]| {
    let mut u = arbitrary::Unstructured::new(data);
    let chain_features: bool = u.arbitrary().unwrap_or(true);
    if let Ok(module) = wasm_smith::Module::new(smith::config(chain_features), &mut u) {
        let _ = medledger_contracts::harness::deploy_and_call(&module.to_bytes(), b"{}", 100_000);
    }
    let _ = medledger_contracts::harness::deploy_and_call(data, b"{}", 10_000);
});
