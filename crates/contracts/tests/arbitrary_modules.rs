//! Arbitrary contract-shaped modules (wasm-smith), deployed and called as the chain would: no
//! panic, no call past its fuel, and a refusal with a reason for what the chain does not allow.
//! The fuzz target `contract_modules` runs the same harness without end.

mod smith;

use arbitrary::Unstructured;
use medledger_contracts::harness::deploy_and_call;
use medledger_contracts::runtime::End;
use proptest::prelude::*;

fn module(bytes: &[u8], chain_features: bool) -> Option<Vec<u8>> {
    let mut u = Unstructured::new(bytes);
    wasm_smith::Module::new(smith::config(chain_features), &mut u)
        .ok()
        .map(|module| module.to_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_modules_deploy_or_are_refused_and_calls_stay_within_their_fuel(
        bytes in prop::collection::vec(any::<u8>(), 64..2048),
        chain_features in any::<bool>(),
        fuel in 1u64..200_000,
    ) {
        let Some(code) = module(&bytes, chain_features) else { return Ok(()); };
        match deploy_and_call(&code, br#"{"any":"message"}"#, fuel) {
            Ok(outcomes) => prop_assert_eq!(outcomes.len(), 5),
            Err(refusal) => prop_assert!(!refusal.to_string().is_empty()),
        }
    }
}

#[test]
fn the_generator_makes_modules_the_chain_accepts_and_runs() {
    // Not every generated module is refused: the property above reaches the runtime.
    let mut deployed = 0;
    let mut ran = 0;
    for seed in 0u32..200 {
        let bytes: Vec<u8> = (0..1024u32)
            .map(|i| {
                (i.wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(40_503))
                    >> 13) as u8
            })
            .collect();
        let Some(code) = module(&bytes, true) else {
            continue;
        };
        if let Ok(outcomes) = deploy_and_call(&code, b"{}", 50_000) {
            deployed += 1;
            ran += outcomes
                .iter()
                .filter(|o| o.fuel_used > 0 || o.end == End::Done)
                .count();
        }
    }
    assert!(
        deployed > 20,
        "only {deployed} of 200 generated modules deployed"
    );
    assert!(ran > 0);
}

#[test]
fn arbitrary_bytes_are_refused_not_panicked_on() {
    for bytes in [
        &b""[..],
        b"\0asm",
        b"\0asm\x01\0\0\0",
        b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f",
        b"not webassembly at all",
    ] {
        assert!(deploy_and_call(bytes, b"{}", 1_000).is_err());
    }
}
