//! FHIR resources and Bundles from untrusted clients: parsing and resolving never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    medledger_fhir::fuzz_parse(bytes);
});
